"""`xpnet bench`: end-to-end MNIST training throughput (the MLP, or LeNet with --model lenet), xpnet on each
backend beside plain NumPy and native PyTorch references, in one interleaved run. benchmarks/ (pytest-benchmark)
holds the kernel suite."""
