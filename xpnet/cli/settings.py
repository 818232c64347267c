"""A training run's settings: what the command line gave, else (on --resume) what the checkpoint recorded, else
the task's defaults. The same record is written into every checkpoint, so a resume can compare against it."""
from __future__ import annotations

import argparse
import math
from dataclasses import asdict, dataclass
from typing import Any

from xpnet.core.optim import DEFAULT_LR
from xpnet.errors import CheckpointError
from xpnet.recipes import DEFAULTS, SCHEDULES

# What each option is called on the command line, by its field here and in a checkpoint's record.
FLAGS = {"model": "--model", "epochs": "--epochs", "batch_size": "--batch-size", "optimizer": "--optimizer",
         "lr": "--lr", "weight_decay": "--weight-decay", "schedule": "--schedule", "clip_norm": "--clip-norm",
         "seed": "--seed", "dtype": "--dtype", "early_stopping": "--early-stopping"}
DTYPES = ("float32", "float64")


@dataclass(frozen=True)
class Settings:
    """The options that decide what a run computes, each resolved to a value."""

    model: str
    epochs: int
    batch_size: int
    optimizer: str
    lr: float
    weight_decay: float
    schedule: str
    clip_norm: float | None
    seed: int
    dtype: str
    early_stopping: int | None

    @classmethod
    def from_args(cls, args: argparse.Namespace, saved: dict[str, Any] | None = None) -> Settings:
        """The command line's value of each option; one not given takes `saved` (the checkpoint's record on a
        resume), else the task's default. Checking that given values agree with `saved` is resume.py's job."""
        d, saved = DEFAULTS[args.task], saved or {}

        def pick(name: str, default: Any) -> Any:
            given = getattr(args, name, None)
            return given if given is not None else saved.get(name, default)

        optimizer = pick("optimizer", d.optimizer)
        # the task's rate is tuned for its optimizer; another optimizer starts from its own default
        lr = d.lr if optimizer == d.optimizer else DEFAULT_LR[optimizer]
        if saved.get("optimizer") == optimizer:
            lr = saved.get("lr", lr)
        return cls(model=pick("model", d.models[0]), epochs=pick("epochs", d.epochs),
                   batch_size=pick("batch_size", d.batch_size), optimizer=optimizer,
                   lr=args.lr if args.lr is not None else lr,
                   weight_decay=pick("weight_decay", 0.01 if optimizer == "adamw" else 0.0),
                   schedule=pick("schedule", d.schedule), clip_norm=pick("clip_norm", None), seed=pick("seed", 0),
                   dtype=pick("dtype", "float32"), early_stopping=pick("early_stopping", None))

    def record(self) -> dict[str, Any]:
        """What a checkpoint stores of these settings (JSON)."""
        return asdict(self)


def _positive_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


def _number(v: Any, low: float = 0.0, strict: bool = True) -> bool:
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    return ok and (v > low if strict else v >= low)


# Each field of a checkpoint's record and what a valid value is: a file is checked before it is believed.
VALID = {
    "model": lambda v: isinstance(v, str),
    "epochs": _positive_int,
    "batch_size": _positive_int,
    "optimizer": lambda v: v in DEFAULT_LR,
    "lr": _number,
    "weight_decay": lambda v: _number(v, strict=False),
    "schedule": lambda v: v in SCHEDULES,
    "clip_norm": lambda v: v is None or _number(v),
    "seed": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "dtype": lambda v: v in DTYPES,
    "early_stopping": lambda v: v is None or _positive_int(v),
}


def checked_record(path: Any, record: Any) -> dict[str, Any]:
    """A checkpoint's settings record, every field checked; CheckpointError naming the file and the field."""
    if not isinstance(record, dict):
        raise CheckpointError(f"{path}: field metadata.settings is not an object")
    for name, valid in VALID.items():
        if name in record and not (isinstance(record[name], (str, int, float, type(None))) and valid(record[name])):
            raise CheckpointError(f"{path}: field metadata.settings.{name} holds {str(record[name])[:40]!r}, "
                                  f"not a valid {FLAGS[name]}")
    return {name: record[name] for name in VALID if name in record}


def derived_record(meta: dict[str, Any]) -> dict[str, Any]:
    """What a checkpoint written without a settings record says of them anyway (its optimizer, counters and
    dtype); a field of the wrong type is left out here, for the checkpoint loader to refuse with its message."""
    out: dict[str, Any] = {}
    metadata, opt, state = (meta.get(k) if isinstance(meta.get(k), dict) else {}
                            for k in ("metadata", "optimizer", "state"))
    name = {"Adam": "adam", "AdamW": "adamw"}.get(opt.get("type"))
    if opt.get("type") == "SGD":
        name = "nesterov" if opt.get("nesterov") is True else "momentum" if opt.get("momentum") else "sgd"
    candidates = {"model": metadata.get("model"), "optimizer": name, "lr": opt.get("lr"),
                  "weight_decay": opt.get("weight_decay"), "seed": state.get("seed"),
                  "batch_size": state.get("batch_size"), "dtype": meta.get("dtype")}
    if "clip_norm" in state:
        candidates["clip_norm"] = state["clip_norm"]
    for key, value in candidates.items():
        if (value is not None or key == "clip_norm") and VALID[key](value):
            out[key] = value
    return out
