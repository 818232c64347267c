"""Callbacks for fit(): objects told about each finished epoch; returning True stops training."""
from __future__ import annotations

import math
from typing import Any, Protocol


class Callback(Protocol):
    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> bool | None: ...


class EarlyStopping:
    """Stop when `monitor` has not improved for `patience` epochs; `mode` 'auto' minimises losses and errors
    and maximises accuracy and R^2."""

    def __init__(self, monitor: str = "val_loss", patience: int = 3, mode: str = "auto", min_delta: float = 0.0) -> None:
        if patience < 1:
            raise ValueError(f"early-stopping patience must be >= 1, got {patience}")
        if mode == "auto":
            mode = "max" if monitor.endswith(("accuracy", "r2")) else "min"
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min', 'max' or 'auto', got {mode!r}")
        self.monitor, self.patience, self.mode, self.min_delta = monitor, patience, mode, min_delta
        self.best = math.inf if mode == "min" else -math.inf
        self.best_epoch = 0
        self.stopped_epoch: int | None = None

    def _improved(self, value: float) -> bool:
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> bool:
        if self.monitor not in logs:
            raise KeyError(f"early stopping monitors {self.monitor!r}, but the epoch logged only {sorted(logs)}")
        value = float(logs[self.monitor])
        if self._improved(value):
            self.best, self.best_epoch = value, epoch
            return False
        if epoch - self.best_epoch >= self.patience:
            self.stopped_epoch = epoch
            return True
        return False

    def state(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch}

    def load_state(self, state: dict[str, Any]) -> None:
        self.best, self.best_epoch = float(state["best"]), int(state["best_epoch"])
