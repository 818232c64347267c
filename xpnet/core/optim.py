"""Optimizers: SGD (momentum, Nesterov), Adam, AdamW, with L2 weight decay and a schedule.

Updates use augmented assignment on attributes and dict entries (`p.value -= d`): in place where the
array is writeable, and a rebinding, so still correct, where it is not (JAX).
"""
from __future__ import annotations

import math
from typing import Any, Callable, Iterable

from xpnet.core.arrays import namespace
from xpnet.core.module import Parameter
from xpnet.core.schedules import Constant


class Optimizer:
    """Base class: holds parameters, the step count, per-parameter state and the schedule."""

    def __init__(self, params: Iterable[Parameter], lr: float, weight_decay: float = 0.0,
                 schedule: Callable[[float, int], float] | None = None) -> None:
        self.params = list(params)
        if not self.params:
            raise ValueError(f"{type(self).__name__} got no parameters to optimise")
        if lr <= 0 or not math.isfinite(lr):
            raise ValueError(f"learning rate must be a positive number, got {lr}")
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        self.lr, self.weight_decay = lr, weight_decay
        self.schedule = schedule or Constant()
        self.steps = 0
        self.state: list[dict[str, Any]] = [{} for _ in self.params]

    @property
    def current_lr(self) -> float:
        return self.schedule(self.lr, max(self.steps, 1))

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        """Apply one update from the accumulated gradients; parameters without a gradient are left alone."""
        self.steps += 1
        lr = self.current_lr
        for p, st in zip(self.params, self.state):
            if p.grad is not None:
                self.update(p, st, lr)

    def update(self, p: Parameter, state: dict[str, Any], lr: float) -> None:
        raise NotImplementedError

    def _l2(self, p: Parameter) -> Any:
        return p.grad + self.weight_decay * p.value if self.weight_decay else p.grad

    # -- saving -------------------------------------------------------------------------------
    def hyperparameters(self) -> dict[str, Any]:
        return {"lr": self.lr, "weight_decay": self.weight_decay}

    def state_arrays(self) -> dict[str, Any]:
        """'i.name' -> array for every per-parameter state array (momentum buffers, moments)."""
        return {f"{i}.{k}": v for i, st in enumerate(self.state) for k, v in st.items() if k != "step"}

    def param_steps(self) -> list[int]:
        """How many updates each parameter has had (Adam's bias correction counts per parameter)."""
        return [int(st.get("step", 0)) for st in self.state]

    def load_state_arrays(self, arrays: dict[str, Any], steps: int, to_device: Callable[[Any], Any],
                          param_steps: list[int] | None = None) -> None:
        self.state = [{} for _ in self.params]
        for key, value in arrays.items():
            i, name = key.split(".", 1)
            self.state[int(i)][name] = to_device(value)
        for st, n in zip(self.state, param_steps or []):
            if n:
                st["step"] = n
        self.steps = steps


class SGD(Optimizer):
    """p -= lr * g; with momentum: v = mu v + g, p -= lr * v (Nesterov: p -= lr * (g + mu v))."""

    def __init__(self, params: Iterable[Parameter], lr: float = 0.01, momentum: float = 0.0,
                 nesterov: bool = False, weight_decay: float = 0.0,
                 schedule: Callable[[float, int], float] | None = None) -> None:
        super().__init__(params, lr, weight_decay, schedule)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        if nesterov and momentum == 0.0:
            raise ValueError("Nesterov momentum needs momentum > 0")
        self.momentum, self.nesterov = momentum, nesterov

    def update(self, p: Parameter, state: dict[str, Any], lr: float) -> None:
        g = self._l2(p)
        if self.momentum:
            if "velocity" not in state:
                state["velocity"] = g * 1.0  # a copy: g may be the gradient array itself
            else:
                state["velocity"] *= self.momentum
                state["velocity"] += g
            g = g + self.momentum * state["velocity"] if self.nesterov else state["velocity"]
        p.value -= lr * g

    def hyperparameters(self) -> dict[str, Any]:
        return {**super().hyperparameters(), "momentum": self.momentum, "nesterov": self.nesterov}


class Adam(Optimizer):
    """Adam (Kingma & Ba), bias-corrected exactly as torch.optim.Adam; weight_decay is L2 on the gradient."""

    decoupled = False

    def __init__(self, params: Iterable[Parameter], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0,
                 schedule: Callable[[float, int], float] | None = None) -> None:
        super().__init__(params, lr, weight_decay, schedule)
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"Adam betas must be in [0, 1), got {betas}")
        self.betas, self.eps = (float(betas[0]), float(betas[1])), eps

    def update(self, p: Parameter, state: dict[str, Any], lr: float) -> None:
        b1, b2 = self.betas
        # Counted per parameter, as torch does: one that had no gradient on some steps was not updated.
        state["step"] = t = state.get("step", 0) + 1
        if self.decoupled:
            p.value *= 1.0 - lr * self.weight_decay
            g = p.grad
        else:
            g = self._l2(p)
        if "m" not in state:
            state["m"] = (1.0 - b1) * g
            state["v"] = (1.0 - b2) * (g * g)
        else:
            state["m"] *= b1
            state["m"] += (1.0 - b1) * g
            state["v"] *= b2
            state["v"] += (1.0 - b2) * (g * g)
        xp = namespace(g)
        c1, c2 = 1.0 - b1 ** t, 1.0 - b2 ** t
        denom = xp.sqrt(state["v"]) * (1.0 / math.sqrt(c2)) + self.eps
        p.value -= (lr / c1) * (state["m"] / denom)

    def hyperparameters(self) -> dict[str, Any]:
        return {**super().hyperparameters(), "betas": list(self.betas), "eps": self.eps}


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter): p *= 1 - lr*wd, then the Adam step."""

    decoupled = True

    def __init__(self, params: Iterable[Parameter], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.01,
                 schedule: Callable[[float, int], float] | None = None) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, schedule)



DEFAULT_LR = {"sgd": 0.1, "momentum": 0.05, "nesterov": 0.05, "adam": 1e-3, "adamw": 1e-3}


def make_optimizer(name: str, params: Iterable[Parameter], lr: float | None = None, weight_decay: float = 0.0,
                   schedule: Callable[[float, int], float] | None = None) -> Optimizer:
    """An optimizer by CLI name: sgd, momentum (0.9), nesterov, adam, adamw; lr None takes its default."""
    if name not in DEFAULT_LR:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(DEFAULT_LR)}")
    lr = DEFAULT_LR[name] if lr is None else lr
    if name in ("sgd", "momentum", "nesterov"):
        mu = 0.0 if name == "sgd" else 0.9
        return SGD(params, lr, momentum=mu, nesterov=name == "nesterov", weight_decay=weight_decay, schedule=schedule)
    cls = Adam if name == "adam" else AdamW
    return cls(params, lr, weight_decay=weight_decay, schedule=schedule)
