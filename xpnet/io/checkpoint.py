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
from xpnet.core.module import Module, module_config, module_from_config
from xpnet.core.optim import Optimizer
from xpnet.errors import CheckpointError, CorruptFileError
from xpnet.io.safetensors_file import read_safetensors, write_safetensors

FORMAT = "xpnet-1"


def _host_arrays(arrays: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    return {prefix + k: backend_for(v).to_numpy(v) for k, v in arrays.items()}


def save_model(path: str | os.PathLike, model: Module, metadata: dict[str, Any] | None = None) -> Path:
    """Write `model` (architecture, weights, dtype) and JSON-able `metadata` atomically to `path`."""
    meta = {"format": FORMAT, "config": module_config(model), "dtype": model.dtype, "metadata": metadata or {}}
    return write_safetensors(path, _host_arrays(model.state_dict()), meta)


def _check_format(path: Any, meta: dict[str, Any]) -> None:
    if meta.get("format") != FORMAT or "config" not in meta:
        raise CheckpointError(f"{path}: a safetensors file, but not one written by xpnet (no model config)")


def load_model(path: str | os.PathLike, backend: str | Backend | None = "numpy") -> tuple[Module, dict[str, Any]]:
    """(model on `backend`, metadata) from a file written by save_model or save_checkpoint."""
    arrays, meta = read_safetensors(path)
    _check_format(path, meta)
    model = module_from_config(meta["config"]).to(get_backend(backend), dtype=meta.get("dtype") or "float32")
    if "optimizer" in meta:  # a checkpoint: take only the model's arrays
        arrays = {k[len("model."):]: v for k, v in arrays.items() if k.startswith("model.")}
    model.load_state_dict(arrays)
    return model, meta.get("metadata", {})


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
    """Restore model and optimizer in place from `path`; return the checkpoint's metadata (epoch, state)."""
    arrays, meta = read_safetensors(path)
    _check_format(path, meta)
    opt = meta.get("optimizer", {})
    if opt.get("type") != type(optimizer).__name__:
        raise CheckpointError(f"{path}: checkpoint was written with optimizer {opt.get('type')}, "
                              f"but this run uses {type(optimizer).__name__}")
    for key, value in optimizer.hyperparameters().items():
        saved = opt.get(key)
        if saved is not None and saved != value and key != "lr":  # lr may be changed on purpose
            raise CheckpointError(f"{path}: checkpoint's optimizer has {key}={saved}, this run's has {value}")
    if meta.get("dtype") != model.dtype:
        raise CheckpointError(f"{path}: checkpoint dtype is {meta.get('dtype')}, the model's is {model.dtype}")
    model.load_state_dict({k[6:]: v for k, v in arrays.items() if k.startswith("model.")})
    backend, dtype = model.backend, model.dtype
    optim_arrays = {k[6:]: v for k, v in arrays.items() if k.startswith("optim.")}
    steps = int(opt.get("steps", 0))
    param_steps = opt.get("param_steps") or [steps] * len(optimizer.params)
    optimizer.load_state_arrays(optim_arrays, steps, lambda a: backend.asarray(a, dtype), param_steps)
    return meta


def load_latest_checkpoint(directory: str | os.PathLike, model: Module, optimizer: Optimizer,
                           warn: Callable[[str], None]) -> dict[str, Any] | None:
    """Restore from the newest checkpoint that reads back intact; damaged ones are reported and skipped."""
    for path in reversed(checkpoint_files(directory)):
        try:
            meta = load_checkpoint(path, model, optimizer)
        except CorruptFileError as exc:  # a mismatch (other optimizer, dtype, shapes) is an error, not damage
            warn(f"skipping damaged checkpoint: {exc}")
            continue
        meta["path"] = str(path)
        return meta
    return None
