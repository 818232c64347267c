"""The fast-kernel table: a backend may register a faster version of an op for its namespace.

Core asks `lookup(xp, op)` and falls back to its own pure Array API code when the answer is None, so it
never branches on a library's name. Every registered kernel is tested equal to that reference.
"""
from __future__ import annotations

from typing import Any, Callable

_table: dict[tuple[str, str], Callable[..., Any]] = {}


def register(namespace_name: str, op: str, fn: Callable[..., Any]) -> None:
    """Register `fn` as the kernel for `op` on arrays whose namespace module is called `namespace_name`."""
    _table[(namespace_name, op)] = fn


def lookup(xp: Any, op: str) -> Callable[..., Any] | None:
    """The registered kernel for `op` in namespace `xp`, or None to use the reference code."""
    return _table.get((xp.__name__, op))


def registered() -> list[tuple[str, str]]:
    return sorted(_table)
