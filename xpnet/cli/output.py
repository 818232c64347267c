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


def plural(count: int, noun: str, plural_form: str | None = None) -> str:
    """'1 epoch', '5 epochs', '60,000 samples': a count and its noun, in the number the count asks for."""
    return f"{count:,} {noun if count == 1 else plural_form or noun + 's'}"


def show_progress(no_progress: bool, stream: Any = None) -> bool:
    """Whether to draw progress bars: only on a terminal (a log file or a pipe would collect every redraw of
    every bar), and not when --no-progress was given."""
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return not no_progress and callable(isatty) and bool(isatty())


def status_line(show: bool) -> Any:
    """`xpnet bench`'s one progress line on stderr: the time elapsed and what runs now (set_postfix_str);
    drawn only if `show` (see show_progress), closed when its `with` block ends."""
    from tqdm.auto import tqdm

    return tqdm(desc="xpnet bench", disable=not show, bar_format="{desc}: {elapsed} {postfix}", file=sys.stderr)


def interrupt_message(exc: BaseException, resuming: bool) -> str:
    """The command line's words for a run stopped by Ctrl-C or SIGTERM: where it stopped (the head of the
    exception's message) and how to go on, in terms of the command line rather than the Python API."""
    where = str(exc).split(";")[0].strip()
    where = where if where.startswith("interrupted") else "interrupted"
    again = "run the same command again" if resuming else "run the same command plus --resume"
    saved = getattr(exc, "checkpoint", None)
    if saved:  # the path stands alone before " (", so that a script can cut it out of the line
        return f"{where}; checkpoint saved to {saved} (to continue, {again})"
    return f"{where}; nothing saved: pass --checkpoint-dir DIR to be able to resume"


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
