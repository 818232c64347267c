"""Learning-rate schedules: lr as a function of the optimizer's step count (1 for the first step)."""
from __future__ import annotations

import math


class Constant:
    def __call__(self, base_lr: float, step: int) -> float:
        return base_lr

    def __repr__(self) -> str:
        return "Constant()"


class StepDecay:
    """Multiply the rate by `gamma` every `every` steps."""

    def __init__(self, every: int, gamma: float = 0.1) -> None:
        if every < 1:
            raise ValueError(f"StepDecay every must be >= 1, got {every}")
        self.every, self.gamma = every, gamma

    def __call__(self, base_lr: float, step: int) -> float:
        return base_lr * self.gamma ** ((step - 1) // self.every)

    def __repr__(self) -> str:
        return f"StepDecay(every={self.every}, gamma={self.gamma})"


class Cosine:
    """Half a cosine from base_lr down to `min_lr` over `total_steps`, then flat."""

    def __init__(self, total_steps: int, min_lr: float = 0.0) -> None:
        if total_steps < 1:
            raise ValueError(f"Cosine total_steps must be >= 1, got {total_steps}")
        self.total_steps, self.min_lr = total_steps, min_lr

    def __call__(self, base_lr: float, step: int) -> float:
        t = min(step - 1, self.total_steps) / self.total_steps
        return self.min_lr + 0.5 * (base_lr - self.min_lr) * (1.0 + math.cos(math.pi * t))

    def __repr__(self) -> str:
        return f"Cosine(total_steps={self.total_steps}, min_lr={self.min_lr})"
