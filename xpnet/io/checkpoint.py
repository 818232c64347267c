"""Models and training checkpoints on disk, loadable on any backend, never running code.

A model file holds the weights (safetensors) and, in its header, the architecture as a JSON config, the
dtype and free-form metadata (task, preprocessing), so `load_model` rebuilds it with no Python code of
the user's. A checkpoint adds the optimizer state and the counters needed to resume.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from xpnet.backends import Backend, backend_for, get_backend
from xpnet.core.module import Module, declared_parameter_shapes, module_config, module_from_config
from xpnet.core.optim import Optimizer
from xpnet.errors import CheckpointError, CorruptFileError
from xpnet.io.declared import (FORMAT, check_optimizer_tensors, check_tensors, checkpoint_counts,
                               model_fields)
from xpnet.io.safetensors_file import SafetensorsFile, write_safetensors


def _host_arrays(arrays: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    return {prefix + k: backend_for(v).to_numpy(v) for k, v in arrays.items()}


def save_model(path: str | os.PathLike, model: Module, metadata: dict[str, Any] | None = None) -> Path:
    """Write `model` (architecture, weights, dtype) and JSON-able `metadata` atomically to `path`."""
    meta = {"format": FORMAT, "config": module_config(model), "dtype": model.dtype, "metadata": metadata or {}}
    return write_safetensors(path, _host_arrays(model.state_dict()), meta)


def _in_file(path: Any, call: Callable[[], Any]) -> Any:
    """`call()`, its CheckpointError about the model config said to be about the file at `path`."""
    try:
        return call()
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None


def load_model(path: str | os.PathLike, backend: str | Backend | None = "numpy") -> Module:
    """The model on `backend` from a file written by save_model or save_checkpoint (its metadata: see
    model_metadata). The header is checked first (config, dtype, the tensors the config needs), then the
    arrays are read, then the model built."""
    with SafetensorsFile(path) as f:
        fields = model_fields(path, f.metadata)
        prefix = "model." if "optimizer" in f.metadata else ""  # a checkpoint: take only the model's arrays
        tensors = {k[len(prefix):]: t for k, t in f.tensors.items() if k.startswith(prefix)}
        declared = _in_file(path, lambda: declared_parameter_shapes(fields.config))
        if declared is not None:  # else a layer of someone else's: load_state_dict checks once it is built
            check_tensors(path, tensors, declared, fields.dtype, "the model config")
        arrays = f.read_arrays()
    model = _in_file(path, lambda: module_from_config(fields.config)).to(get_backend(backend), dtype=fields.dtype)
    model.load_state_dict({k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)})
    return model


def model_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The free-form metadata save_model stored with a model (task, preprocessing), or a checkpoint's, read from
    the header alone: no array is read and no layer built. The file is opened and its header read and checked
    as load_model does first (a regular file of bounded size, a bounded header, typed fields, xpnet's format,
    dtype and config); the tensors are not compared with the config, and a damaged data section is noticed
    only when the weights are loaded."""
    with SafetensorsFile(path) as f:
        return model_fields(path, f.metadata).metadata


@dataclass
class Checkpoints:
    """Where and how often fit() checkpoints, how many files it keeps, and whether it resumes."""

    directory: str | os.PathLike
    every_steps: int | None = None  # also checkpoint mid-epoch, every this many steps
    keep: int | None = 3  # newest files kept; None keeps all
    resume: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)  # e.g. the task, so `xpnet eval` can read one

    def __post_init__(self) -> None:
        for name in ("every_steps", "keep"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"checkpoint {name} must be a positive integer or None, got {value!r}")


_NAME = re.compile(r"ckpt-e(\d+)-b(\d+)\.safetensors")


def checkpoint_files(directory: str | os.PathLike) -> list[Path]:
    """Checkpoints in `directory`, oldest first, ordered by (epoch, batch) position."""
    found = [(tuple(map(int, m.groups())), p) for p in Path(directory).glob("ckpt-*.safetensors")
             if (m := _NAME.fullmatch(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(directory: str | os.PathLike) -> Path | None:
    """The newest checkpoint file by position (not checked for damage: see load_latest_checkpoint)."""
    files = checkpoint_files(directory)
    return files[-1] if files else None


def save_checkpoint(directory: str | os.PathLike, model: Module, optimizer: Optimizer, epoch: int, batch: int,
                    state: dict[str, Any], metadata: dict[str, Any] | None = None, keep: int | None = None) -> Path:
    """Write `ckpt-eEPOCH-bBATCH.safetensors` (after BATCH batches of EPOCH): model, optimizer state, counters
    and `state` (history, RNG, partial sums); then delete all but the newest `keep` checkpoints."""
    arrays = {**_host_arrays(model.state_dict(), "model."), **_host_arrays(optimizer.state_arrays(), "optim.")}
    for stale in Path(directory).glob(".ckpt-*.tmp"):  # left by a run killed while writing
        stale.unlink(missing_ok=True)
    meta = {"format": FORMAT, "config": module_config(model), "dtype": model.dtype, "epoch": epoch, "batch": batch,
            "optimizer": {"type": type(optimizer).__name__, "steps": optimizer.steps,
                          "param_steps": optimizer.param_steps(), **optimizer.hyperparameters()},
            "state": state, "metadata": metadata or {}}
    path = write_safetensors(Path(directory) / f"ckpt-e{epoch:04d}-b{batch:06d}.safetensors", arrays, meta)
    if keep is not None:
        for old in checkpoint_files(directory)[:-keep]:
            old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: str | os.PathLike, model: Module, optimizer: Optimizer) -> dict[str, Any]:
    """Restore model and optimizer in place from `path`; return the checkpoint's metadata (epoch, state).
    Every field and tensor the header declares is checked before anything is read or changed."""
    with SafetensorsFile(path) as f:
        meta = f.metadata
        model_fields(path, meta)
        steps, param_steps = checkpoint_counts(path, meta, model, optimizer)
        unknown = sorted(k for k in f.tensors if not k.startswith(("model.", "optim.")))
        if unknown:
            raise CheckpointError(f"{path}: tensor {unknown[0][:40]!r} is neither the model's nor the optimizer's")
        own = {name: p.shape for name, p in model.named_parameters()}
        check_tensors(path, {k[6:]: t for k, t in f.tensors.items() if k.startswith("model.")}, own, model.dtype,
                      "the model")
        check_optimizer_tensors(path, {k[6:]: t for k, t in f.tensors.items() if k.startswith("optim.")},
                                optimizer, model.dtype)
        arrays = f.read_arrays()
    model.load_state_dict({k[6:]: v for k, v in arrays.items() if k.startswith("model.")})
    backend, dtype = model.backend, model.dtype
    optim_arrays = {k[6:]: v for k, v in arrays.items() if k.startswith("optim.")}
    optimizer.load_state_arrays(optim_arrays, steps, lambda a: backend.asarray(a, dtype), param_steps)
    return meta


def delete_damaged(checkpoints: Checkpoints, meta: dict[str, Any] | None) -> None:
    """Delete the checkpoints a resume skipped as damaged (`meta` from load_latest_checkpoint; None: every one
    was). Left in place they sort as the newest, and rotation would delete intact ones to keep them.
    keep=None keeps every file, so nothing is deleted then."""
    if checkpoints.keep is None:
        return
    for name in meta.get("skipped", []) if meta is not None else checkpoint_files(checkpoints.directory):
        try:
            Path(name).unlink(missing_ok=True)
        except OSError:  # a directory in the checkpoint's name: left for its owner
            pass


def load_latest_checkpoint(directory: str | os.PathLike, model: Module, optimizer: Optimizer,
                           warn: Callable[[str], None]) -> dict[str, Any] | None:
    """Restore from the newest checkpoint that reads back intact; damaged ones are reported and skipped, and
    listed under 'skipped' in the metadata returned (all newer than the one restored)."""
    skipped: list[str] = []
    for path in reversed(checkpoint_files(directory)):
        try:
            meta = load_checkpoint(path, model, optimizer)
        except CorruptFileError as exc:  # a mismatch (other optimizer, dtype, shapes) is an error, not damage
            warn(f"skipping damaged checkpoint: {exc}")
            skipped.append(str(path))
            continue
        meta["path"], meta["skipped"] = str(path), skipped
        return meta
    return None
