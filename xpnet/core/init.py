"""Initial weights, drawn on the host from one seeded generator so every backend starts identical."""
from __future__ import annotations

import math
from typing import Any, Callable

from xpnet.backends.host import host_namespace, host_rng

_default = host_rng(0)


def seed(value: int) -> None:
    """Reseed the generator that layers built without an explicit `rng` draw from."""
    global _default
    _default = host_rng(value)


def default_rng() -> Any:
    return _default


def glorot_uniform(rng: Any, fan_in: int, fan_out: int) -> Any:
    """Glorot/Xavier: U(-a, a), a = sqrt(6 / (fan_in + fan_out)); keeps variance through tanh/sigmoid."""
    a = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-a, a, size=(fan_in, fan_out))


def he_normal(rng: Any, fan_in: int, fan_out: int) -> Any:
    """He/Kaiming: N(0, 2 / fan_in); keeps variance through ReLU, which zeroes half its inputs."""
    return rng.normal(0.0, math.sqrt(2.0 / fan_in), size=(fan_in, fan_out))


def scaled_normal(rng: Any, fan_in: int, fan_out: int) -> Any:
    """The seeds' N(0, 1) * 0.1 (before the above were known; fine for tiny networks)."""
    return rng.normal(0.0, 1.0, size=(fan_in, fan_out)) * 0.1


INITIALISERS: dict[str, Callable[[Any, int, int], Any]] = {
    "glorot": glorot_uniform, "he": he_normal, "normal": scaled_normal,
}


def initial_weight(name: str, fan_in: int, fan_out: int, dtype: str, rng: Any = None) -> Any:
    """A (fan_in, fan_out) host array of `dtype` from initialiser `name`."""
    if name not in INITIALISERS:
        raise ValueError(f"unknown initialiser {name!r}; choose one of {sorted(INITIALISERS)}")
    xp = host_namespace()
    w = INITIALISERS[name](rng if rng is not None else _default, fan_in, fan_out)
    return xp.asarray(w, dtype=getattr(xp, dtype))


def zeros(shape: tuple[int, ...], dtype: str) -> Any:
    xp = host_namespace()
    return xp.zeros(shape, dtype=getattr(xp, dtype))
