"""Choosing the array library: by name, `auto`, $XPNET_BACKEND, or from the arrays a user already has.

Each library's module is imported only inside its factory, so `import xpnet` loads neither CuPy nor torch.
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from typing import Any

from xpnet.backends.base import Backend
from xpnet.backends.host import host_rng
from xpnet.errors import BackendUnavailable

from xpnet.backends.numpy import conv as _numpy_conv
from xpnet.backends.numpy import kernels as _numpy_kernels

NAMES = ("numpy", "cupy", "torch", "strict")
# NumPy is always loaded; its kernels apply wherever NumPy arrays appear.
_numpy_kernels.register_all()
_numpy_conv.register_all()
_cache: dict[str, Backend] = {}

__all__ = ["Backend", "BackendStatus", "NAMES", "available_backends", "backend_for", "backend_status",
           "get_backend", "host_rng", "transfer"]


def _make(name: str) -> Backend:
    if name not in _cache:
        module = importlib.import_module(f"xpnet.backends.{name}")
        _cache[name] = module.make()
    return _cache[name]


def _on_device(name: str, device: Any) -> Backend:
    # One object per (library, device), so its random generator advances instead of restarting.
    default = _cache.get(name)
    if default is not None and str(default.device) == str(device):
        return default
    key = f"{name}@{device}"
    if key not in _cache:
        _cache[key] = importlib.import_module(f"xpnet.backends.{name}").make(device)
    return _cache[key]


def get_backend(name: str | Backend | None = None) -> Backend:
    """The backend called `name` ('auto', 'numpy', 'cupy', 'torch', 'strict'); None reads $XPNET_BACKEND."""
    if isinstance(name, Backend):
        return name
    name = (name or os.environ.get("XPNET_BACKEND") or "auto").lower()
    if name == "auto":
        try:
            return _make("cupy")
        except BackendUnavailable:
            return _make("numpy")
    if name not in NAMES:
        raise BackendUnavailable(f"unknown backend {name!r}; choose one of: auto, {', '.join(NAMES)}")
    return _make(name)


@dataclass
class BackendStatus:
    name: str
    available: bool
    reason: str = ""
    device: str = ""
    versions: dict[str, str] = field(default_factory=dict)


def backend_status() -> list[BackendStatus]:
    """Every known backend, whether it can run here, and why not when it cannot."""
    out = []
    for name in NAMES:
        try:
            b = _make(name)
        except BackendUnavailable as exc:
            out.append(BackendStatus(name, False, str(exc).removeprefix(f"{name}: ")))
        else:
            out.append(BackendStatus(name, True, "", b.describe_device(), b.versions))
    return out


def available_backends() -> list[str]:
    """Names of the backends that can run on this machine."""
    return [s.name for s in backend_status() if s.available]


def transfer(a: Any, target: Backend, dtype: str | None = None) -> Any:
    """A copy of array `a` (of any backend) on `target`, cast to `dtype`: through the host, never aliased."""
    return target.asarray(backend_for(a).to_numpy(a), dtype)


def backend_for(x: Any) -> Backend:
    """The backend that owns array `x`: the user's own NumPy arrays, torch tensors, ... stay where they are."""
    import array_api_compat as compat

    if compat.is_numpy_array(x):
        return _make("numpy")
    if compat.is_torch_array(x):
        return _on_device("torch", x.device)
    if compat.is_cupy_array(x):
        return _on_device("cupy", x.device)  # the Device object: its str() is what the default backend shows
    try:
        xp = compat.array_namespace(x)
    except TypeError:
        raise BackendUnavailable(f"expected an array of an Array API library, got {type(x).__name__}") from None
    if compat.is_array_api_strict_namespace(xp):
        return _make("strict") if str(x.device) == str(_make("strict").device) else _on_device("strict", x.device)
    key = f"{xp.__name__}@{compat.device(x)}"
    if key not in _cache:
        _cache[key] = Backend(xp, compat.device(x), {})
    return _cache[key]
