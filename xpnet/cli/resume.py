"""`xpnet train --resume`: the options given must agree with the run the checkpoint holds.

The Python API lets a resumed fit() change its learning rate (the optimizer is the caller's to build), so the
command line checks its own options here, before any data is loaded or any step is taken: an option given on a
resume that differs from the checkpoint's is refused, naming both values, unless `--override` names it; an
option not given takes the checkpoint's value, so `--resume` alone continues the run as it was.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from xpnet.cli.output import plural
from xpnet.cli.settings import FLAGS, Settings, checked_record, derived_record
from xpnet.errors import CorruptFileError, XpnetError
from xpnet.io.checkpoint import checkpoint_files
from xpnet.io.safetensors_file import SafetensorsFile

# Changed on purpose with --override: the checkpoint's state does not depend on them.
OVERRIDABLE = ("lr", "schedule")
# Normal to change on a resume: how long to train and when to stop early. A cosine or step schedule is
# stretched over the new number of epochs (said in a note).
FREE = ("epochs", "early_stopping")
# Why the rest cannot change within a run: the checkpoint's contents (or the order of its batches) follow them.
FIXED_WHY = {
    "model": "the checkpoint holds that network's weights",
    "optimizer": "the checkpoint holds that optimizer's state",
    "weight_decay": "the checkpoint's optimizer was built with it",
    "clip_norm": "the checkpointed run was clipped that way",
    "seed": "the shuffle order and dropout follow it",
    "batch_size": "the checkpoint's position counts batches of that size",
    "dtype": "the checkpoint's arrays are of that dtype",
}


def override_option(text: str) -> list[str]:
    """argparse type of --override: 'lr', '--lr' or 'lr,schedule' -> ['lr', ...]."""
    names = [t.strip().lstrip("-").replace("-", "_") for t in text.split(",") if t.strip()]
    for name in names:
        if name in FIXED_WHY:
            raise argparse.ArgumentTypeError(f"{FLAGS[name]} cannot be overridden on a resume: {FIXED_WHY[name]}")
        if name in FREE:
            raise argparse.ArgumentTypeError(f"{FLAGS[name]} may change on a resume without --override")
        if name not in OVERRIDABLE:
            raise argparse.ArgumentTypeError(f"unknown option {name!r}; --override takes "
                                             f"{' or '.join(OVERRIDABLE)}")
    return names


def overrides(args: argparse.Namespace) -> set[str]:
    """The options --override names (it may be given several times), checked against the rest of the command."""
    names = {name for group in (getattr(args, "override", None) or []) for name in group}
    if names and not args.resume:
        raise ValueError("--override applies to --resume only (a new run takes any option as given)")
    for name in sorted(names):
        if getattr(args, name) is None:
            raise ValueError(f"--override {name}: give the new value with {FLAGS[name]}")
    return names


def saved_settings(directory: str) -> tuple[Path, dict[str, Any]] | None:
    """(file, settings record) of the newest checkpoint whose header reads, or None when there is none or the
    newest is refused (the checkpoint loader then stops on it with its own message). A damaged file is passed
    over here as the loader passes over it."""
    for path in reversed(checkpoint_files(directory)):
        try:
            with SafetensorsFile(path) as f:
                meta = f.metadata
        except CorruptFileError:
            continue
        except (XpnetError, OSError):
            return None
        metadata = meta.get("metadata")
        if isinstance(metadata, dict) and "settings" in metadata:
            record = checked_record(path, metadata["settings"])
        else:  # written before checkpoints carried the record: what its other fields say
            record = derived_record(meta)
        task = metadata.get("task") if isinstance(metadata, dict) else None
        return path, {**record, "task": task} if isinstance(task, str) else record
    return None


def _shown(value: Any) -> str:
    if value is None:
        return "none"
    return f"{value:g}" if isinstance(value, float) else str(value)


def resolve(args: argparse.Namespace) -> Settings:
    """The run's settings: on --resume, checked against the newest checkpoint and completed from it."""
    allowed = overrides(args)
    found = saved_settings(args.checkpoint_dir) if args.resume and args.checkpoint_dir else None
    if found is None:
        return Settings.from_args(args)
    path, saved = found
    if saved.get("task", args.task) != args.task:
        raise ValueError(f"{path} is a checkpoint of `xpnet train {saved['task']}`, not of {args.task}")
    for name, flag in FLAGS.items():
        given, before = getattr(args, name, None), saved.get(name)
        if given is None or name not in saved or given == before or name in FREE:
            continue
        if name in allowed:
            print(f"xpnet: {flag} {_shown(given)} replaces the checkpoint's {_shown(before)} (--override {name})",
                  file=sys.stderr)
            continue
        how = (f"pass --override {name} to change it on purpose" if name in OVERRIDABLE
               else f"it cannot change within a run ({FIXED_WHY[name]}): start a new run in another --checkpoint-dir")
        raise ValueError(f"{flag} {_shown(given)} differs from {_shown(before)} in the checkpoint {path}; {how}")
    settings = Settings.from_args(args, saved)
    if "epochs" in saved and settings.epochs != saved["epochs"] and settings.schedule != "constant":
        print(f"xpnet: note: training to epoch {settings.epochs} instead of {saved['epochs']}: the {settings.schedule} "
              f"learning-rate schedule now spans {plural(settings.epochs, 'epoch')}", file=sys.stderr)
    return settings
