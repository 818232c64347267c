"""Optimizers: SGD (momentum, Nesterov), Adam, AdamW, with L2 weight decay and a schedule.

The arithmetic lives in update_math.py as pure functions; this file holds the bookkeeping: state per
parameter, step counts, saving, and running the update over one flat buffer when that is possible.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Iterable

from xpnet.backends import backend_for, transfer
from xpnet.backends import ops
from xpnet.backends.ops import fast_paths_enabled, lookup
from xpnet.core.arrays import namespace
from xpnet.core.flat import FlatBuffers
from xpnet.core.module import Parameter
from xpnet.core.schedules import Constant
from xpnet.core.update_math import adam_update, sgd_update


class Optimizer:
    """Base class: parameters, step count, per-parameter state, schedule, and the flat fast path.

    A subclass names its state arrays (`roles`) and its update function; `step` runs that function once
    over one flat buffer when it can (every parameter has a gradient and aliasing views work), else once
    per parameter. A backend may register a faster version of the update under `kernel` (same maths).
    """

    roles: tuple[str, ...] = ()
    kernel = ""

    def __init__(self, params: Iterable[Parameter], lr: float, weight_decay: float = 0.0,
                 schedule: Callable[[float, int], float] | None = None, flat: bool | None = None) -> None:
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
        self.flat = fast_paths_enabled() if flat is None else flat
        self._flat: FlatBuffers | None = None

    @property
    def current_lr(self) -> float:
        return self.schedule(self.lr, max(self.steps, 1))

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def to(self, backend: Any, dtype: str | None) -> "Optimizer":
        """Move the state arrays to `backend` (fit calls this after moving the model there)."""
        for st in self.state:
            for key, value in st.items():
                if key != "step" and not backend_for(value).same_as(backend):
                    st[key] = transfer(value, backend, dtype)
                    self._flat = None
        return self

    def step(self, gate: Any = None, lr: Any = None, step: Any = None) -> None:
        """Apply one update from the accumulated gradients; parameters without a gradient are left alone.

        gate: a 0-d boolean device array; False drops the update on the device (a NaN loss) without the
        host reading it. lr, step: 0-d device arrays replacing the schedule's rate and the update number
        (a captured graph reads them at each replay). With `step` given the caller counts the update
        (count_update): this Python runs once when a step is captured, not once per replay.
        """
        counted = step is None
        if counted:
            self.steps += 1
        lr = self.current_lr if lr is None else lr
        # Stateless updates (plain SGD) gain nothing from the flat buffer but would pay for gathering into it.
        if self.flat and self.roles and self._step_flat(lr, gate, step):
            return
        roles = self.roles
        for p, st in zip(self.params, self.state):
            if p.grad is None:
                continue
            xp = namespace(p.value)
            if counted:
                st["step"] = st.get("step", 0) + 1
            count = st["step"] if counted else step
            if not roles:
                p.value = self._update(xp, p.value, p.grad, [], lr, count, gate)[0]
                continue
            for role in roles:
                if role not in st:
                    st[role] = xp.zeros_like(p.value)
            p.value, *arrays = self._update(xp, p.value, p.grad, [st[r] for r in roles], lr, count, gate)
            st.update(zip(roles, arrays))

    def _step_flat(self, lr: Any, gate: Any = None, device_step: Any = None) -> bool:
        """One update over the flat buffer; False (nothing done) where the per-parameter path must run."""
        if any(p.grad is None for p in self.params) or len({st.get("step", 0) for st in self.state}) != 1:
            return False
        if self._flat is None or not self._flat.intact(self.params, self.state):
            if not FlatBuffers.usable(self.params):
                self.flat = False
                return False
            self._flat = FlatBuffers(self.params, self.state, self.roles)
        fb = self._flat
        step = self.state[0].get("step", 0) + 1
        fb.param, *arrays = self._update(fb.xp, fb.param, fb.gather_grads(self.params),
                                         [fb.roles[r] for r in self.roles], lr,
                                         step if device_step is None else device_step, gate)
        if device_step is None:
            for st in self.state:
                st["step"] = step
        return True

    def count_update(self, n: int = 1) -> None:
        """Count n updates made from a device state (whose `step` argument the optimizer does not count
        itself); a negative n takes back updates the device dropped after a non-finite loss."""
        self.steps += n
        for st in self.state:
            st["step"] = st.get("step", 0) + n

    def uses_flat_buffer(self) -> bool:
        """True once updates run over one flat buffer (what a captured graph step needs: fixed addresses)."""
        return self._flat is not None and self._flat.intact(self.params, self.state)

    def _update(self, xp: Any, p: Any, g: Any, arrays: list[Any], lr: Any, step: Any,
                gate: Any = None) -> tuple[Any, ...]:
        raise NotImplementedError

    def _kernel(self, xp: Any, reference: Callable[..., Any]) -> Callable[..., Any]:
        return lookup(xp, self.kernel) or reference

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

    kernel = ops.SGD_UPDATE

    def __init__(self, params: Iterable[Parameter], lr: float = 0.01, momentum: float = 0.0,
                 nesterov: bool = False, weight_decay: float = 0.0,
                 schedule: Callable[[float, int], float] | None = None, flat: bool | None = None) -> None:
        super().__init__(params, lr, weight_decay, schedule, flat)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        if nesterov and momentum == 0.0:
            raise ValueError("Nesterov momentum needs momentum > 0")
        self.momentum, self.nesterov = momentum, nesterov
        self.roles = ("velocity",) if momentum else ()

    def _update(self, xp: Any, p: Any, g: Any, arrays: list[Any], lr: Any, step: Any,
                gate: Any = None) -> tuple[Any, ...]:
        velocity = arrays[0] if arrays else None
        p, velocity = self._kernel(xp, sgd_update)(xp, p, g, velocity, lr=lr, momentum=self.momentum,
                                                   nesterov=self.nesterov, weight_decay=self.weight_decay, gate=gate)
        return (p, velocity) if self.momentum else (p,)

    def hyperparameters(self) -> dict[str, Any]:
        return {**super().hyperparameters(), "momentum": self.momentum, "nesterov": self.nesterov}


class Adam(Optimizer):
    """Adam (Kingma & Ba), bias-corrected exactly as torch.optim.Adam; weight_decay is L2 on the gradient."""

    decoupled = False
    roles = ("m", "v")
    kernel = ops.ADAM_UPDATE

    def __init__(self, params: Iterable[Parameter], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0,
                 schedule: Callable[[float, int], float] | None = None, flat: bool | None = None) -> None:
        super().__init__(params, lr, weight_decay, schedule, flat)
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"Adam betas must be in [0, 1), got {betas}")
        self.betas, self.eps = (float(betas[0]), float(betas[1])), eps

    def _update(self, xp: Any, p: Any, g: Any, arrays: list[Any], lr: Any, step: Any,
                gate: Any = None) -> tuple[Any, ...]:
        m, v = arrays
        return self._kernel(xp, adam_update)(xp, p, g, m, v, lr=lr, beta1=self.betas[0], beta2=self.betas[1],
                                             eps=self.eps, step=step, weight_decay=self.weight_decay,
                                             decoupled=self.decoupled, gate=gate)

    def hyperparameters(self) -> dict[str, Any]:
        return {**super().hyperparameters(), "betas": list(self.betas), "eps": self.eps}


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter): p *= 1 - lr*wd, then the Adam step."""

    decoupled = True

    def __init__(self, params: Iterable[Parameter], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.01,
                 schedule: Callable[[float, int], float] | None = None, flat: bool | None = None) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, schedule, flat)


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
