"""One run at a time in a checkpoint directory: an advisory lock (flock) on a file inside it.

Two runs writing into one directory would each delete the other's half-written temp file as stale and rotate
away each other's checkpoints. The lock is taken without waiting, so a second run is refused at once, with
the holder's pid, host and start time (written into the lock file) in the message. The kernel drops a flock
when its holder exits, however it exits, so a killed run never leaves the directory locked (only the file,
which the next run takes over). A run that ends deletes the file while it still holds the lock; a run that
opened the file just before and locks it just after sees it is no longer the file at that path and retries.
"""
from __future__ import annotations

import os
import socket
import stat
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from xpnet.errors import CheckpointError

try:
    import fcntl
except ImportError:  # not POSIX (Windows): no lock, as before
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".xpnet.lock"
_HOLDER_BYTES = 200  # what is read back of the holder's line: it is ours, but the directory may not be


@contextmanager
def directory_lock(directory: str | os.PathLike | None) -> Iterator[None]:
    """Hold `directory`'s lock for the block; CheckpointError naming the holder if another process has it.
    None: nothing to lock."""
    if directory is None or fcntl is None:
        yield
        return
    path = Path(directory) / LOCK_NAME
    try:
        Path(directory).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CheckpointError(f"{directory}: cannot create the checkpoint directory ({exc.strerror})") from None
    fd = _acquire(path, directory)
    try:
        holder = f"pid {os.getpid()} on {socket.gethostname()}, started {time.strftime('%Y-%m-%d %H:%M:%S %Z')}"
        os.pwrite(fd, holder.encode()[:_HOLDER_BYTES], 0)
        yield
    finally:
        try:
            path.unlink(missing_ok=True)  # while still locked: see the module's docstring
        finally:
            os.close(fd)  # closing the descriptor releases the lock


def _acquire(path: Path, directory: str | os.PathLike) -> int:
    """A descriptor of the lock file at `path`, exclusively locked and still the file at that path."""
    for _ in range(5):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | os.O_NONBLOCK, 0o644)
        except OSError as exc:
            raise CheckpointError(f"{path}: cannot open the directory's lock file ({exc.strerror})") from None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise CheckpointError(f"{path}: the checkpoint directory's lock file is not a regular file")
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise CheckpointError(f"{directory} is in use by another run ({_holder(fd)}); wait for it to end, "
                                      f"or give this run its own checkpoint directory") from None
            if _still_at(fd, path):
                os.ftruncate(fd, 0)
                return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)  # its holder ended and deleted it between our open and our lock: take the new file
    raise CheckpointError(f"{path}: the checkpoint directory's lock file keeps changing; is another run starting?")


def _still_at(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path, follow_symlinks=False))
    except FileNotFoundError:
        return False


def _holder(fd: int) -> str:
    text = os.pread(fd, _HOLDER_BYTES, 0).decode("utf-8", "replace")
    text = "".join(c if c.isprintable() else " " for c in text).strip()
    return text or "no holder recorded yet"
