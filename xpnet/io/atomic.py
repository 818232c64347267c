"""Atomic file writes: a reader sees the old file or the new one, never half of one."""
from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from xpnet.errors import OutputPathError
from xpnet.io.regular import file_kind


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _refuse_special(path: Path) -> None:
    # The rename would replace a device, FIFO or socket with a regular file (as root, /dev/null itself).
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return  # absent (or unreadable): the write below says what is wrong
    if not stat.S_ISREG(mode):
        raise OutputPathError(f"{path}: is {file_kind(mode)}, not a regular file; xpnet replaces only regular files")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to a temp file beside `path`, fsync it, rename it over `path`, fsync the directory.
    Only a regular file (or nothing) at `path` is replaced; an OSError names `path`."""
    path = Path(path)
    _refuse_special(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a saved model should read like any file
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.filename is None:  # ENOSPC from write or fsync names no file
            raise type(exc)(exc.errno, exc.strerror or str(exc), str(path)) from exc
        raise
    try:  # make the rename itself durable; not every platform can open a directory
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return path
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path
