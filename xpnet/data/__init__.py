"""Data: MNIST (IDX files, cache, checksums, mirrors), the synthetic housing set, batching, validation."""
