"""What a model or checkpoint file declares, checked before any array is read or any layer is built: the header
fields' types and ranges, and the tensors the header names against the shapes and dtype the model needs.

A file is refused from its header alone, so a 200-byte file whose config declares Dense(40000, 40000) costs
nothing. Every refusal here is a CheckpointError naming the file and the field or tensor: the header parsed,
so this is not damage a resume should skip (CorruptFileError), but a file that contradicts itself or this run.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from xpnet.core.arrays import FLOAT_NAMES
from xpnet.core.module import Module
from xpnet.core.optim import Optimizer
from xpnet.errors import CheckpointError
from xpnet.io.fields import Fields
from xpnet.io.safetensors_file import TensorInfo, tensor_label

FORMAT = "xpnet-1"
_STATE_NAME = re.compile(r"(0|[1-9][0-9]*)\.(.+)")  # optimizer state 'i.role': parameter index, then role


@dataclass(frozen=True)
class ModelFields:
    """The fields every xpnet file holds: the architecture, its dtype, the user's metadata."""

    config: dict[str, Any]
    dtype: str
    metadata: dict[str, Any]


def model_fields(path: Any, meta: dict[str, Any]) -> ModelFields:
    """The checked model fields of a file's metadata; CheckpointError for a safetensors file of another tool."""
    f = Fields(path, meta)
    if f.value.get("format") != FORMAT or "config" not in f.value:
        raise CheckpointError(f"{path}: a safetensors file, but not one written by xpnet (no model config)")
    dtype = f.get("dtype", str, None, nullable=True) or "float32"
    if dtype not in FLOAT_NAMES:
        raise CheckpointError(f"{path}: field dtype must be one of {', '.join(FLOAT_NAMES)}, got {dtype[:20]!r}")
    return ModelFields(f.get("config", dict), dtype, f.get("metadata", dict, {}))


def check_tensors(path: Any, tensors: dict[str, TensorInfo], expected: dict[str, tuple[int, ...]], dtype: str,
                  whose: str) -> None:
    """The file's tensors are exactly the parameters `expected` (name -> shape), all of `dtype`."""
    missing, extra = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
    if missing or extra:
        raise CheckpointError(f"{path}: parameter names differ from {whose}'s: missing {_few(missing)}, "
                              f"unexpected {_few(extra)}")
    for name, shape in expected.items():
        got = tensors[name]
        if got.shape != tuple(shape):
            raise CheckpointError(f"{path}: parameter {tensor_label(name)} has shape {got.shape} in the file "
                                  f"but {tuple(shape)} in {whose}")
        if got.dtype != dtype:
            raise CheckpointError(f"{path}: parameter {tensor_label(name)} is {got.dtype} in the file but {whose} "
                                  f"is {dtype}")


def _few(names: list[str]) -> str:
    shown = ", ".join(tensor_label(n) for n in names[:4])
    return f"[{shown}{', ...' if len(names) > 4 else ''}]"


def checkpoint_counts(path: Any, meta: dict[str, Any], model: Module, optimizer: Optimizer) -> tuple[int, list[int]]:
    """Check a checkpoint's fields against this run's model and optimizer; (optimizer steps, steps per parameter)."""
    f = Fields(path, meta)
    opt = f.object("optimizer", {})
    saved_type = opt.get("type", str, None, nullable=True)
    if saved_type != type(optimizer).__name__:
        raise CheckpointError(f"{path}: checkpoint was written with optimizer {saved_type}, "
                              f"but this run uses {type(optimizer).__name__}")
    for key, value in optimizer.hyperparameters().items():
        saved = opt.value.get(key)
        if saved is not None and saved != value and key != "lr":  # lr may be changed on purpose
            raise CheckpointError(f"{path}: checkpoint's optimizer has {key}={str(saved)[:40]}, this run's has {value}")
    saved_dtype = f.get("dtype", str, None, nullable=True)
    if saved_dtype != model.dtype:
        raise CheckpointError(f"{path}: checkpoint dtype is {str(saved_dtype)[:20]}, the model's is {model.dtype}")
    f.get("epoch", int, low=1)
    f.get("batch", int, None, low=0)
    f.object("state", {})
    steps = opt.get("steps", int, 0, low=0)
    n = len(optimizer.params)
    param_steps = opt.items("param_steps", int, low=0, high=steps) or [steps] * n
    if len(param_steps) != n:
        raise CheckpointError(f"{path}: field optimizer.param_steps has {len(param_steps)} entries, "
                               f"the optimizer {n} parameters")
    return steps, param_steps


def check_optimizer_tensors(path: Any, tensors: dict[str, TensorInfo], optimizer: Optimizer, dtype: str) -> None:
    """Each optimizer-state tensor 'i.role' names a parameter i of this optimizer and one of its roles, with
    that parameter's shape and the model's dtype."""
    for name, info in tensors.items():
        match = _STATE_NAME.fullmatch(name)
        index = int(match.group(1)) if match else -1
        if not (0 <= index < len(optimizer.params) and match.group(2) in optimizer.roles):
            raise CheckpointError(f"{path}: tensor {tensor_label('optim.' + name)} names no state of this "
                                   f"{type(optimizer).__name__} ({len(optimizer.params)} parameters, "
                                   f"roles {list(optimizer.roles)})")
        shape = optimizer.params[index].shape
        if info.shape != shape or info.dtype != dtype:
            raise CheckpointError(f"{path}: tensor {tensor_label('optim.' + name)} is {info.dtype} {info.shape}, "
                                   f"but parameter {index} is {dtype} {shape}")
