"""Output paths checked before any work: a run that trains for an hour and then cannot write its model, or
replaces /dev/null with a JSON file, has wasted the hour or done harm. The atomic writer refuses the same
paths again when it writes (atomic.py); this check moves the refusal to the start.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

from xpnet.errors import OutputPathError
from xpnet.io.regular import file_kind


def _existing_ancestor(path: Path) -> Path:
    """`path` if it exists, else the nearest of its parents that does (the directory a write would create under)."""
    while not os.path.lexists(path) and path != path.parent:
        path = path.parent
    return path


def _check_directory(directory: Path, what: str, target: Path) -> None:
    base = _existing_ancestor(directory)
    if not base.is_dir():
        raise OutputPathError(f"{what} {target}: {base} is not a directory")
    if not os.access(base, os.W_OK | os.X_OK):
        raise OutputPathError(f"{what} {target}: the directory {base} is not writable")


def check_output_path(path: str | os.PathLike, what: str) -> Path:
    """Refuse now, naming `what` (e.g. '--save'), an output file path that the write at the end would fail on or
    must not replace: an existing device, FIFO, socket or directory (a symlink is judged by its target), or a
    directory that is not one or cannot be written. Returns the path."""
    target = Path(path)
    try:
        mode = os.stat(target).st_mode
    except (FileNotFoundError, NotADirectoryError):  # nothing there yet (the directory check says why not)
        mode = None
    except OSError as exc:
        raise OutputPathError(f"{what} {target}: {exc.strerror}") from None
    if mode is not None and not stat.S_ISREG(mode):
        raise OutputPathError(f"{what} {target}: is {file_kind(mode)}, not a regular file; xpnet replaces only "
                              f"regular files")
    _check_directory(target.parent, what, target)  # a bare name's parent is "."
    return target


def check_output_dir(path: str | os.PathLike, what: str) -> Path:
    """Refuse now an output directory (e.g. --checkpoint-dir) that is not one or cannot be written."""
    target = Path(path)
    _check_directory(target, what, target)
    return target
