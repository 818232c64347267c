"""CuPy on an NVIDIA GPU: the backend, its CUDA kernels (the .cu files beside their loaders), the cuBLAS route
that works inside a CUDA-graph capture, and Philox dropout. Importing this package does not import CuPy."""
from xpnet.backends.cupy.backend import CupyBackend, cuda_device_present, make

__all__ = ["CupyBackend", "cuda_device_present", "make"]
