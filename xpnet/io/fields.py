"""Typed fields of JSON read from a file. A file decides what its JSON holds, so nothing read from one is used
before its type and range are checked here, and every refusal is one error naming the file and the
field (`state.history[3].train_loss must be a number, got 'a'`). A field of the wrong type or range is a
CheckpointError: the file is well-formed and its writer meant it (or tampered with it), so a resume stops on
it rather than skip it as damage; JSON that does not parse is CorruptFileError, damage like a torn write.

A small validator of our own rather than a schema library (jsonschema, pydantic): the fields are few and each
check is one line, a refusal must raise our error in our words, and a dependency would add more code and
install weight than it saves.
"""
from __future__ import annotations

import json
import math
from typing import Any

from xpnet.errors import CheckpointError, CorruptFileError

MAX_DEPTH = 32  # xpnet writes at most 6 levels (state.history[i].key); json itself gives up near 1000
REQUIRED: Any = object()

_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string", list: "a list",
          dict: "a JSON object"}


def parse_json(text: str | bytes, source: Any, where: str) -> Any:
    """json.loads, with nesting deeper than MAX_DEPTH (or too deep for json itself) refused as damage."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise CheckpointError(f"{source}: {where} is nested too deeply") from None
    except (UnicodeDecodeError, ValueError):
        raise CorruptFileError(f"{source}: {where} is not JSON") from None
    stack = [(value, 1)]
    while stack:  # iterative: a recursive walk would itself be the RecursionError refused above
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise CheckpointError(f"{source}: {where} is nested more than {MAX_DEPTH} levels deep")
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        stack.extend((child, depth + 1) for child in children)
    return value


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _is(value: Any, kind: type, finite: bool) -> bool:
    if isinstance(value, bool):
        return kind is bool
    if kind is float:
        return isinstance(value, (int, float)) and (not finite or math.isfinite(value))
    return isinstance(value, kind)


def check(source: Any, where: str, value: Any, kind: type, *, low: float | None = None, high: float | None = None,
          nullable: bool = False, finite: bool = True) -> Any:
    """`value` if it is of `kind` (bool, int, float (ints too; finite unless told), str, list, dict) within
    [low, high], or None where nullable; else CheckpointError naming `source` and `where`."""
    if value is None and nullable:
        return None
    if not _is(value, kind, finite):
        extra = " (finite)" if kind is float and finite else ""
        raise CheckpointError(f"{source}: field {where} must be {_NAMES[kind]}{extra}, got {_show(value)}")
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f">= {low}" if high is None else f"<= {high}" if low is None else f"in {low}..{high}"
        raise CheckpointError(f"{source}: field {where} must be {bounds}, got {_show(value)}")
    return value


class Fields:
    """One JSON object read from a file, whose fields are taken one by one with the type each must have."""

    def __init__(self, source: Any, value: Any, where: str = "") -> None:
        check(source, where or "(top level)", value, dict)
        self.source, self.value, self.where = source, value, where

    def name(self, key: str) -> str:
        """The field's full name in messages, e.g. 'optimizer.param_steps'."""
        return f"{self.where}.{key}" if self.where else key

    def get(self, key: str, kind: type, default: Any = REQUIRED, **limits: Any) -> Any:
        """The field `key`, checked (see `check`); `default` where it is absent (absent and required: an error)."""
        if key not in self.value:
            if default is REQUIRED:
                raise CheckpointError(f"{self.source}: field {self.name(key)} is missing")
            return default
        return check(self.source, self.name(key), self.value[key], kind, **limits)

    def object(self, key: str, default: Any = REQUIRED) -> "Fields":
        """The field `key` as Fields of its own; `default` (a dict) where it is absent."""
        return Fields(self.source, self.get(key, dict, default), self.name(key))

    def items(self, key: str, kind: type, **limits: Any) -> list[Any]:
        """The list field `key` (an empty list where absent), each item checked as `kind`."""
        values = self.get(key, list, [])
        return [check(self.source, f"{self.name(key)}[{i}]", v, kind, **limits) for i, v in enumerate(values)]
