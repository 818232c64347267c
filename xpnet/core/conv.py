"""Conv2D: 2-D convolution (cross-correlation, as in every framework) of NCHW images by im2col and one GEMM.

The reference, in Array API operations only (a backend may register faster 'im2col'/'col2im' kernels):
- forward: the input is viewed as (C, H, W, N), zero-padded by concatenation (the standard has no `pad`),
  and its K*K strided window slices are stacked into columns (C*K*K, Ho*Wo*N); y = W (Cout, C*K*K) @
  columns is one GEMM for the whole batch, returned as an (N, Cout, Ho, Wo) view.
- backward: dW = dy (Cout, Ho*Wo*N) @ columns^T and dcolumns = W^T @ dy are one GEMM each; col2im adds the
  K*K slices of dcolumns back where they came from: slice `+=` into a zero buffer where arrays are
  writeable, else a functional sum of zero-padded (and, for stride > 1, zero-dilated) copies.
The window helpers serve the pooling layers too.
"""
from __future__ import annotations

from typing import Any

from xpnet.backends.host import host_namespace
from xpnet.backends.ops import COL2IM, IM2COL, lookup, out_size
from xpnet.core.arrays import check_float_dtype, check_input_dtype, is_writeable, matmul, namespace
from xpnet.core.init import initial_weight, zeros
from xpnet.core.module import Module, Parameter
from xpnet.errors import DTypeError, ShapeError


# -- windows: the K*K strided slices of two spatial axes, and their adjoint ------------------------------
def _index(ndim: int, axis: int, rows: slice, cols: slice) -> tuple[Any, ...]:
    """An index that applies `rows` to axis `axis` and `cols` to the one after it."""
    index: list[Any] = [slice(None)] * ndim
    index[axis], index[axis + 1] = rows, cols
    return tuple(index)


def window_slices(x: Any, k: int, stride: int, ho: int, wo: int, axis: int = 2) -> list[Any]:
    """The K*K views of x whose spatial axes (axis, axis + 1) are sliced [i::stride, j::stride] to ho x wo,
    row-major over the window (i, j)."""
    h_end, w_end = stride * (ho - 1) + 1, stride * (wo - 1) + 1
    return [x[_index(x.ndim, axis, slice(i, i + h_end, stride), slice(j, j + w_end, stride))]
            for i in range(k) for j in range(k)]


def _zeros(xp: Any, like: Any, shape: Any) -> Any:
    return xp.zeros(tuple(shape), dtype=like.dtype, device=like.device)


def _pad_axis(xp: Any, x: Any, axis: int, before: int, after: int) -> Any:
    if not (before or after):
        return x
    shape = list(x.shape)
    parts = []
    for width in (before, None, after):
        if width is None:
            parts.append(x)
        elif width:
            shape[axis] = width
            parts.append(_zeros(xp, x, shape))
    return xp.concat(parts, axis=axis)


def pad2d(xp: Any, x: Any, top: int, bottom: int, left: int, right: int, axis: int = 2) -> Any:
    """x with zeros concatenated around its spatial axes (axis, axis + 1): the standard has no `pad`."""
    return _pad_axis(xp, _pad_axis(xp, x, axis, top, bottom), axis + 1, left, right)


def _dilate(xp: Any, a: Any, stride: int, axis: int) -> Any:
    """stride - 1 zeros after every element along `axis`, the trailing ones dropped."""
    d = xp.stack([a] + [xp.zeros_like(a)] * (stride - 1), axis=axis + 1)  # (..., n, stride, ...)
    shape = list(a.shape)
    shape[axis] *= stride
    d = xp.reshape(d, tuple(shape))
    index: list[Any] = [slice(None)] * a.ndim
    index[axis] = slice(0, shape[axis] - stride + 1)
    return d[tuple(index)]


def add_windows(xp: Any, parts: list[Any], shape: tuple[int, ...], k: int, stride: int, axis: int = 2) -> Any:
    """The adjoint of window_slices: a zero array of `shape` with each part added where its view came from."""
    ho, wo = parts[0].shape[axis], parts[0].shape[axis + 1]
    h_end, w_end = stride * (ho - 1) + 1, stride * (wo - 1) + 1
    if is_writeable(parts[0]):
        out = _zeros(xp, parts[0], shape)
        for n, part in enumerate(parts):
            i, j = divmod(n, k)
            out[_index(len(shape), axis, slice(i, i + h_end, stride), slice(j, j + w_end, stride))] += part
        return out
    total = None  # immutable arrays (JAX): place each part by dilating and padding, then sum
    for n, part in enumerate(parts):
        i, j = divmod(n, k)
        if stride > 1:
            part = _dilate(xp, _dilate(xp, part, stride, axis), stride, axis + 1)
        placed = pad2d(xp, part, i, shape[axis] - i - h_end, j, shape[axis + 1] - j - w_end, axis)
        total = placed if total is None else total + placed
    return total


# Convolutions work in (C, H, W, N) layout: every window slice then copies runs of Wo * N contiguous values
# (in (C, N, H, W) the runs are Wo long), which made LeNet's im2col 2-3x and col2im 4x faster on NumPy.
def im2col(xp: Any, x: Any, k: int, stride: int, padding: int) -> Any:
    """x: (C, H, W, N) -> columns (C*K*K, Ho*Wo*N), rows ordered (c, i, j) like a (Cout, C, K, K) weight."""
    c, h, w, n = x.shape
    ho, wo = out_size(h, k, stride, padding), out_size(w, k, stride, padding)
    if padding:
        x = pad2d(xp, x, padding, padding, padding, padding, axis=1)
    cols = xp.stack(window_slices(x, k, stride, ho, wo, axis=1), axis=1)  # (C, K*K, Ho, Wo, N)
    return xp.reshape(cols, (c * k * k, ho * wo * n))


def col2im(xp: Any, cols: Any, shape: tuple[int, int, int, int], k: int, stride: int, padding: int) -> Any:
    """The adjoint of im2col: columns (C*K*K, Ho*Wo*N) -> (C, H, W, N) of `shape`, overlaps summed."""
    c, h, w, n = shape
    ho, wo = out_size(h, k, stride, padding), out_size(w, k, stride, padding)
    cols = xp.reshape(cols, (c, k * k, ho, wo, n))
    parts = [cols[:, i, ...] for i in range(k * k)]
    full = add_windows(xp, parts, (c, h + 2 * padding, w + 2 * padding, n), k, stride, axis=1)
    return full[:, padding:padding + h, padding:padding + w, :] if padding else full


# -- input checks -------------------------------------------------------------------------------------
def check_images(owner: Any, x: Any, k: int, padding: int = 0, channels: int | None = None, dtype: Any = None) -> None:
    """Raise a message naming `owner` unless x is (N, C, H, W) with C == channels, room for one window and
    the layer's dtype. Reads shapes and dtypes only."""
    shape = getattr(x, "shape", None)
    if shape is None:
        raise DTypeError(f"{owner!r} expects an array, got {type(x).__name__}")
    want = f"(batch, {channels if channels is not None else 'channels'}, height, width)"
    if len(shape) != 4:
        raise ShapeError(f"{owner!r} expects input of shape {want}, got {tuple(shape)}"
                         + (" (add a Reshape layer first, e.g. Reshape((1, 28, 28)) for MNIST rows)"
                            if len(shape) == 2 else ""))
    if channels is not None and shape[1] != channels:
        raise ShapeError(f"{owner!r} expects {channels} input channel(s), got {shape[1]} (input shape {tuple(shape)})")
    if min(shape[2], shape[3]) + 2 * padding < k:
        raise ShapeError(f"{owner!r} needs images of at least {k - 2 * padding}x{k - 2 * padding}, "
                         f"got {shape[2]}x{shape[3]} (input shape {tuple(shape)})")
    if dtype is not None:
        check_input_dtype(repr(owner), x, dtype)


def check_sizes(layer: str, **values: int) -> None:
    for name, value in values.items():
        if not isinstance(value, int) or value < (0 if name == "padding" else 1):
            raise ValueError(f"{layer} {name} must be a {'non-negative' if name == 'padding' else 'positive'} "
                             f"integer, got {value!r}")


class Conv2D(Module):
    """x: (N, in_channels, H, W) -> (N, out_channels, Ho, Wo), Ho = (H + 2 padding - kernel_size) // stride + 1.

    Square kernels, one stride and one zero padding for both axes. Weight (out, in, k, k) as in torch."""

    skips_dx = True

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 bias: bool = True, init: str = "he", dtype: str = "float32", rng: Any = None) -> None:
        check_sizes("Conv2D", in_channels=in_channels, out_channels=out_channels, kernel_size=kernel_size,
                    stride=stride, padding=padding)
        check_float_dtype("Conv2D", dtype)
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.stride, self.padding, self.init = stride, padding, init
        # Initialisers draw (fan_in, fan_out); a filter's fan-in is in_channels * k * k (glorot takes
        # out_channels as fan-out, not out_channels * k * k; he, the default, uses fan-in only).
        host = host_namespace()
        w = initial_weight(init, in_channels * kernel_size * kernel_size, out_channels, dtype, rng)
        self.weight = Parameter(host.reshape(host.permute_dims(w, (1, 0)),
                                             (out_channels, in_channels, kernel_size, kernel_size)))
        self.bias = Parameter(zeros((out_channels,), dtype)) if bias else None
        self._cols: Any = None

    def forward(self, x: Any) -> Any:
        w = self.weight.value
        check_images(self, x, self.kernel_size, self.padding, self.in_channels, w.dtype)
        xp = namespace(x)
        n, _, h, wd = x.shape
        k, s, p = self.kernel_size, self.stride, self.padding
        ho, wo = out_size(h, k, s, p), out_size(wd, k, s, p)
        cols = (lookup(xp, IM2COL) or im2col)(xp, xp.permute_dims(x, (1, 2, 3, 0)), k, s, p)
        self._cols, self._in_shape = (cols if self.training else None), (h, wd, n)
        y = matmul(xp.reshape(w, (self.out_channels, -1)), cols)  # (Cout, Ho*Wo*N)
        if self.bias is not None:
            b = xp.reshape(self.bias.value, (-1, 1))
            if is_writeable(y):
                y += b
            else:
                y = y + b
        return xp.permute_dims(xp.reshape(y, (self.out_channels, ho, wo, n)), (3, 0, 1, 2))

    def backward(self, dy: Any, need_dx: bool = True) -> Any:
        if self._cols is None:
            raise RuntimeError(f"{self!r}: backward needs a forward pass in training mode first (model.train())")
        xp = namespace(dy)
        w = self.weight.value
        dy2 = xp.reshape(xp.permute_dims(dy, (1, 2, 3, 0)), (self.out_channels, -1))  # (Cout, Ho*Wo*N)
        self.weight.accumulate(xp.reshape(matmul(dy2, self._cols.mT), tuple(w.shape)))
        if self.bias is not None:
            self.bias.accumulate(xp.sum(dy2, axis=1))
        if not need_dx:
            return None
        dcols = matmul(xp.reshape(w, (self.out_channels, -1)).mT, dy2)
        dx = (lookup(xp, COL2IM) or col2im)(xp, dcols, (self.in_channels, *self._in_shape), self.kernel_size,
                                            self.stride, self.padding)
        return xp.permute_dims(dx, (3, 0, 1, 2))

    def config(self) -> dict[str, Any]:
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel_size": self.kernel_size, "stride": self.stride, "padding": self.padding,
                "bias": self.bias is not None, "init": self.init}

    @classmethod
    def parameter_shapes(cls, config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
        n_out, k = config["out_channels"], config["kernel_size"]
        weight = (n_out, config["in_channels"], k, k)
        return {"weight": weight, **({"bias": (n_out,)} if config.get("bias", True) else {})}

    def __repr__(self) -> str:
        extra = f", stride={self.stride}" if self.stride != 1 else ""
        extra += f", padding={self.padding}" if self.padding else ""
        return f"Conv2D({self.in_channels}, {self.out_channels}, {self.kernel_size}{extra})"
