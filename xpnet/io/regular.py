"""Opening a file xpnet reads (a model, a checkpoint, MNIST): a regular file of bounded size, or one error.

A path may name a FIFO (whose open or read blocks forever), a device such as /dev/zero (endless), or a sparse
file of many gigabytes. Each is refused from its metadata before a byte is read: a symlink's target is what is
checked, the open cannot block (O_NONBLOCK), and the opened descriptor is checked again, so a file swapped
between the check and the open gains nothing.
"""
from __future__ import annotations

import os
import stat
from typing import BinaryIO

from xpnet.errors import XpnetError

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def file_kind(mode: int) -> str:
    """'a directory', 'a FIFO (named pipe)', ... for a stat mode that is not a regular file's."""
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def _check(path: os.PathLike | str, st: os.stat_result, max_bytes: int, error: type[XpnetError]) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{path}: is {file_kind(st.st_mode)}, not a regular file; xpnet reads only regular files")
    if st.st_size > max_bytes:
        raise error(f"{path}: {st.st_size:,} bytes, more than the {max_bytes:,} this file may have")


def open_regular(path: os.PathLike | str, max_bytes: int, error: type[XpnetError]) -> BinaryIO:
    """An open binary file for `path` if it is a regular file (symlinks followed) of at most `max_bytes`;
    else `error` naming the path and what it is."""
    try:
        _check(path, os.stat(path), max_bytes, error)
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        raise error(f"{path}: no such file") from None
    except OSError as exc:
        raise error(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        _check(path, os.fstat(fd), max_bytes, error)  # the file opened is the file checked
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: os.PathLike | str, max_bytes: int, error: type[XpnetError]) -> bytes:
    """The whole of a regular file of at most `max_bytes` (see open_regular)."""
    with open_regular(path, max_bytes, error) as f:
        try:
            data = f.read(max_bytes + 1)
        except OSError as exc:
            raise error(f"{path}: cannot read ({exc.strerror or exc})") from None
    if len(data) > max_bytes:  # it grew after the check
        raise error(f"{path}: more than the {max_bytes:,} bytes this file may have")
    return data
