"""The fast-kernel table: a backend may register a faster version of an op for its namespace.

Core asks `lookup(xp, op)` and falls back to its own pure Array API code when the answer is None, so it
never branches on a library's name. Every registered kernel is tested equal to that reference.
"""
from __future__ import annotations

import os
from typing import Any, Callable

_table: dict[tuple[str, str], Callable[..., Any]] = {}
# XPNET_FAST_PATHS=0 runs the pure Array API reference everywhere: to debug a kernel, or to measure what
# the fast paths buy (`xpnet bench --backends numpy,numpy-portable`).
_enabled = os.environ.get("XPNET_FAST_PATHS", "1") != "0"


def set_fast_paths(enabled: bool) -> None:
    """Turn every registered kernel and the optimizers' flat buffer on or off for this process."""
    global _enabled
    _enabled = enabled


def fast_paths_enabled() -> bool:
    return _enabled


def register(namespace_name: str, op: str, fn: Callable[..., Any]) -> None:
    """Register `fn` as the kernel for `op` on arrays whose namespace module is called `namespace_name`."""
    _table[(namespace_name, op)] = fn


def lookup(xp: Any, op: str) -> Callable[..., Any] | None:
    """The registered kernel for `op` in namespace `xp`, or None to use the reference code."""
    return _table.get((xp.__name__, op)) if _enabled else None


def registered() -> list[tuple[str, str]]:
    return sorted(_table)
