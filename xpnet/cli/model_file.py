"""Where `xpnet train` writes its model, so that a run never silently replaces an earlier run's model.

The default name (TASK-MODEL.safetensors) is never overwritten: if it exists, the run writes to the next
free name beside it (TASK-MODEL-2.safetensors, -3, ...) and says so. A file named with --save that exists
is refused before any training unless --overwrite is given.
"""
from __future__ import annotations

import os
from pathlib import Path

from xpnet.errors import OutputPathError
from xpnet.io.outputs import check_output_path


def default_name(task: str, model: str) -> str:
    return f"{task}-{model}.safetensors"


def next_free(path: Path) -> Path:
    """`path` if nothing is there, else the first of STEM-2.SUFFIX, STEM-3.SUFFIX, ... beside it that is free
    (a dangling symlink counts as taken: writing would follow it)."""
    candidate, n = path, 1
    while os.path.lexists(candidate):
        n += 1
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
    return candidate


def choose(save: str | None, default: str, overwrite: bool) -> tuple[str, str | None]:
    """(the path to write, a note to print or None), decided before training. Raises OutputPathError for a
    --save FILE that exists without --overwrite, or for any path the write could not make (io.outputs)."""
    if save is not None:
        check_output_path(save, "--save")
        if os.path.lexists(save) and not overwrite:
            raise OutputPathError(f"{save} exists; pass --overwrite to replace it or choose another --save")
        return save, None
    check_output_path(default, "--save")
    if overwrite or not os.path.lexists(default):
        return default, None
    free = next_free(Path(default))
    check_output_path(free, "--save")
    return str(free), f"{default} exists, so this run's model goes to {free} (--overwrite replaces it)"


def at_save_time(chosen: str, overwrite: bool) -> tuple[str, str | None]:
    """The path to write now, after training: `chosen` unless something appeared there meanwhile (another run
    finished first), in which case the next free name beside it, with a note. Never replaces a file that was
    not there when the run started, unless --overwrite."""
    if overwrite or not os.path.lexists(chosen):
        return chosen, None
    free = str(next_free(Path(chosen)))
    return free, f"{chosen} appeared while this run trained, so its model goes to {free}"
