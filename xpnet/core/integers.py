"""The integer dtype for the indices and counts xpnet itself creates: the namespace's default, not int64.

int64 is what NumPy, torch, CuPy and array-api-strict default to, but not every Array API library has it
on by default: JAX without x64 mode truncates an explicit int64 to int32 and warns on every call. An index
or a count of rows needs no particular width, so the library's own choice is the right one everywhere.
Labels and file formats keep their own dtypes; this is only for arrays whose dtype was ours to pick.
"""
from __future__ import annotations

from typing import Any

from xpnet.core.arrays import dtype_name


def default_int(xp: Any, device: Any = None) -> Any:
    """The default integral dtype of namespace `xp` on `device` (the dtype of xp.asarray(0) where the
    namespace predates the inspection API `__array_namespace_info__`). Asked afresh each time, not cached:
    JAX's answer changes when x64 mode is switched on, and callers ask at most once per epoch or batch."""
    info = getattr(xp, "__array_namespace_info__", None)
    if info is not None:
        try:
            return info().default_dtypes(device=device)["integral"]
        except (TypeError, ValueError, KeyError, AttributeError):  # a partial or older inspection API
            pass
    # The standard makes a Python int's array the default integer dtype, so this answers the same question.
    return xp.asarray(0, device=device).dtype if device is not None else xp.asarray(0).dtype


def default_int_name(xp: Any, device: Any = None) -> str:
    """default_int's name ('int64', 'int32'), as Backend.asarray takes it."""
    return dtype_name(xp, default_int(xp, device))
