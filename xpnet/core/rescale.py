"""Rescale: a fixed per-feature affine map y = x * scale + offset (standardising inputs, un-scaling outputs).

Its constants are configuration, not parameters: they are saved with the model, so a model trained on
standardised data still takes raw inputs and gives answers in the data's own units.
"""
from __future__ import annotations

from typing import Any, Sequence

from xpnet.core.arrays import namespace
from xpnet.core.module import Module


class Rescale(Module):
    """x: (batch, features) -> x * scale + offset, per feature; not trained."""

    def __init__(self, scale: Sequence[float], offset: Sequence[float]) -> None:
        if len(scale) != len(offset):
            raise ValueError(f"Rescale needs as many scales as offsets, got {len(scale)} and {len(offset)}")
        self.scale, self.offset = [float(s) for s in scale], [float(o) for o in offset]
        self._key: Any = None
        self._scale_arr: Any = None
        self._offset_arr: Any = None

    @classmethod
    def standardize(cls, mean: Sequence[float], std: Sequence[float]) -> "Rescale":
        """(x - mean) / std."""
        return cls([1.0 / s for s in std], [-m / s for m, s in zip(mean, std)])

    @classmethod
    def unstandardize(cls, mean: Sequence[float], std: Sequence[float]) -> "Rescale":
        """x * std + mean."""
        return cls(list(std), list(mean))

    def _constants(self, x: Any) -> tuple[Any, Any]:
        # Built once per namespace/device/dtype and reused: no host-to-device copy per step.
        xp = namespace(x)
        key = (xp.__name__, str(x.device), x.dtype)
        if key != self._key:
            self._scale_arr = xp.asarray(self.scale, dtype=x.dtype, device=x.device)
            self._offset_arr = xp.asarray(self.offset, dtype=x.dtype, device=x.device)
            self._key = key
        return self._scale_arr, self._offset_arr

    def forward(self, x: Any) -> Any:
        scale, offset = self._constants(x)
        return x * scale + offset

    def backward(self, dy: Any) -> Any:
        scale, _ = self._constants(dy)
        return dy * scale

    def config(self) -> dict[str, Any]:
        return {"scale": self.scale, "offset": self.offset}

    def __repr__(self) -> str:
        return f"Rescale({len(self.scale)} features)"
