"""History: what fit returns, one dict of metrics per finished epoch."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class History:
    """One dict of metrics per finished epoch."""

    epochs: list[dict[str, Any]] = field(default_factory=list)
    stopped_early: bool = False
    skipped_steps: int = 0  # batches dropped by on_nan="skip"

    def __getitem__(self, key: str) -> list[Any]:
        return [e[key] for e in self.epochs if key in e]

    @property
    def last(self) -> dict[str, Any]:
        return self.epochs[-1] if self.epochs else {}
