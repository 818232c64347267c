"""`xpnet bench`: end-to-end MNIST MLP training throughput, xpnet on each backend beside plain NumPy and
native PyTorch references, in one interleaved run. benchmarks/ (pytest-benchmark) holds the kernel suite."""
