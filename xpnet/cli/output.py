"""What the command line writes: one-line error messages, JSON files, and the versions recorded in them."""
from __future__ import annotations

import json
import math
import platform
import sys
from pathlib import Path
from typing import Any


def one_line(exc: BaseException) -> str:
    """An exception as one line of text: a file error names the file, other messages lose their line breaks."""
    if isinstance(exc, OSError) and exc.filename:
        return f"{exc.filename}: {exc.strerror or exc}"
    return " ".join(str(exc).split()) or type(exc).__name__


def print_error(message: str) -> None:
    """`xpnet: MESSAGE` on stderr, the form every failure of a command takes."""
    print(f"xpnet: {message}", file=sys.stderr)


def write_json(path: str, payload: dict[str, Any]) -> None:
    """Write `payload` as indented JSON, atomically: a crash leaves the old file or the new one, never half."""
    from xpnet.io.atomic import atomic_write_bytes

    text = json.dumps(_finite_or_null(payload), indent=2, allow_nan=False)
    atomic_write_bytes(Path(path), (text + "\n").encode())


def _finite_or_null(value: Any) -> Any:
    """JSON has no NaN or Infinity: write null so every parser reads the file."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_null(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_null(v) for v in value]
    return value


def versions(backend_versions: dict[str, str]) -> dict[str, str]:
    """xpnet's and Python's versions, then the backend's libraries': what a result file records."""
    from xpnet import __version__

    return {"xpnet": __version__, "python": platform.python_version(), **backend_versions}
