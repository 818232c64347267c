"""NumPy on the CPU: the backend and its registered fast kernels (kernels.py, conv.py)."""
from xpnet.backends.numpy.backend import NumpyBackend, make

__all__ = ["NumpyBackend", "make"]
