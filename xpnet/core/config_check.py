"""A module config read from a file, checked against the constructor it is about to be passed to.

The constructor's signature is the schema: each argument must be one it takes, the required ones present, and
each value of the JSON type its type hint names (int, float, bool, str, a list of those, None where the hint
allows it), so a file cannot hand a layer a string for a size, a list for a rate or NaN for a slope. Ranges
stay the constructor's own checks. A class whose hints cannot be evaluated (someone else's) is not checked here.
"""
from __future__ import annotations

import collections.abc
import inspect
import math
import types
import typing
from typing import Any

from xpnet.errors import CheckpointError

_SEQUENCES = (list, tuple, collections.abc.Sequence)


def check_arguments(cls: type, args: dict[str, Any], where: str) -> None:
    """Raise CheckpointError naming `where` unless `args` fit the signature and type hints of cls.__init__."""
    params = {k: p for k, p in inspect.signature(cls.__init__).parameters.items()
              if k != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    bad = f"{where}: bad model config for {cls.__name__}:"
    unknown = [k for k in args if k not in params]
    if unknown:
        raise CheckpointError(f"{bad} it takes no argument {str(unknown[0])[:40]!r}")
    missing = [k for k, p in params.items() if p.default is p.empty and k not in args]
    if missing:
        raise CheckpointError(f"{bad} the argument {missing[0]!r} is missing")
    try:
        hints = typing.get_type_hints(cls.__init__)
    except Exception:  # hints that do not evaluate: the constructor checks what it is given
        return
    for key, value in args.items():
        hint = hints.get(key, Any)
        if not _matches(value, hint):
            shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
            raise CheckpointError(f"{bad} {key} must be {_describe(hint)}, got {shown}")


def _matches(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if isinstance(value, bool) or hint is bool:
        return hint is bool and isinstance(value, bool)
    if hint is int:
        return isinstance(value, int)
    if hint is float:
        try:
            return isinstance(value, (int, float)) and math.isfinite(value)
        except OverflowError:  # an integer beyond every float (JSON allows any number of digits)
            return False
    if hint is str:
        return isinstance(value, str)
    if origin in _SEQUENCES and isinstance(value, list):
        inner = typing.get_args(hint)
        if origin is tuple and inner and inner[-1] is not Ellipsis:
            return len(value) == len(inner) and all(_matches(v, h) for v, h in zip(value, inner))
        return all(_matches(v, inner[0] if inner else Any) for v in value)
    return False  # a type JSON cannot hold (a generator, a callable): a file may not supply it


def _describe(hint: Any) -> str:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_describe(h) for h in typing.get_args(hint))
    names = {int: "an integer", float: "a finite number", bool: "true or false", str: "a string",
             type(None): "null"}
    if hint in names:
        return names[hint]
    if typing.get_origin(hint) in _SEQUENCES:
        inner = typing.get_args(hint)
        return f"a list (each {_describe(inner[0])})" if inner else "a list"
    return f"a {getattr(hint, '__name__', hint)} (which a file cannot hold)"
