"""MaxPool2D and AvgPool2D over NCHW images, from the K*K strided window slices of conv.py.

Supported: square k x k windows, any stride >= 1 (default k; overlapping windows with stride < k work too),
no padding. Ho = (H - k) // stride + 1, so rows and columns no window reaches are dropped, as torch does by
default (ceil_mode=False); they get zero gradient.
"""
from __future__ import annotations

from typing import Any

from xpnet.backends.ops import MAX_POOL2D, MAX_POOL2D_BACKWARD, lookup, out_size
from xpnet.core.arrays import namespace
from xpnet.core.conv import add_windows, check_images, check_sizes, window_slices
from xpnet.core.module import Module


def max_pool2d(xp: Any, x: Any, k: int, stride: int) -> tuple[Any, Any]:
    """(y, saved): each window's first maximum, and (which window position won, x's shape) for backward."""
    ho, wo = out_size(x.shape[2], k, stride), out_size(x.shape[3], k, stride)
    parts = window_slices(x, k, stride, ho, wo)
    best = parts[0]
    index = xp.zeros(tuple(best.shape), dtype=xp.int16, device=x.device)
    for i, part in enumerate(parts[1:], 1):
        better = xp.astype(part > best, xp.int16)  # strictly greater: the first maximum keeps the window
        best = xp.maximum(best, part)
        index = index + better * (i - index)  # 2-3x faster than `where` with a scalar on NumPy
    return best, (index, tuple(x.shape))


def max_pool2d_backward(xp: Any, dy: Any, saved: Any, k: int, stride: int) -> Any:
    """dx: each window's dy at its winning position, zero elsewhere (summed where windows overlap)."""
    index, shape = saved[0], saved[1]
    parts = [dy * xp.astype(index == i, dy.dtype) for i in range(k * k)]
    return add_windows(xp, parts, shape, k, stride)


class _Pool2D(Module):
    def __init__(self, kernel_size: int, stride: int | None = None) -> None:
        stride = kernel_size if stride is None else stride
        check_sizes(type(self).__name__, kernel_size=kernel_size, stride=stride)
        self.kernel_size, self.stride = kernel_size, stride

    def config(self) -> dict[str, Any]:
        return {"kernel_size": self.kernel_size, "stride": self.stride}

    def __repr__(self) -> str:
        extra = f", stride={self.stride}" if self.stride != self.kernel_size else ""
        return f"{type(self).__name__}({self.kernel_size}{extra})"


class MaxPool2D(_Pool2D):
    """x: (N, C, H, W) -> (N, C, Ho, Wo), the maximum of each window.

    Backward sends each window's gradient to exactly one element, the first maximum in row-major window
    order (as torch does), ties included: after a ReLU a window of zeros passes its gradient to one zero,
    not to all four. The winner's index is kept, never an equality mask on values."""

    def forward(self, x: Any) -> Any:
        check_images(self, x, self.kernel_size)
        xp = namespace(x)
        y, self._saved = (lookup(xp, MAX_POOL2D) or max_pool2d)(xp, x, self.kernel_size, self.stride)
        return y

    def backward(self, dy: Any) -> Any:
        xp = namespace(dy)
        kernel = lookup(xp, MAX_POOL2D_BACKWARD) or max_pool2d_backward
        return kernel(xp, dy, self._saved, self.kernel_size, self.stride)


class AvgPool2D(_Pool2D):
    """x: (N, C, H, W) -> (N, C, Ho, Wo), the mean of each window; backward spreads dy / k^2 over it."""

    def forward(self, x: Any) -> Any:
        check_images(self, x, self.kernel_size)
        k, s = self.kernel_size, self.stride
        self._shape = tuple(x.shape)
        parts = window_slices(x, k, s, out_size(x.shape[2], k, s), out_size(x.shape[3], k, s))
        total = parts[0]
        for part in parts[1:]:
            total = total + part
        return total * (1.0 / len(parts))

    def backward(self, dy: Any) -> Any:
        share = dy * (1.0 / self.kernel_size ** 2)
        return add_windows(namespace(dy), [share] * self.kernel_size ** 2, self._shape, self.kernel_size, self.stride)
