"""Parameter, Module and Sequential: the bookkeeping every layer shares.

A Module's `forward(x)` keeps exactly what its `backward(dy)` needs; `backward` returns dL/dx and adds
dL/dparam into each Parameter's `grad`. No autograd tape: the network is a list, so the chain rule is a
loop over it in reverse.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator, Sequence

from xpnet.backends import Backend, backend_for, get_backend, transfer
from xpnet.core.arrays import check_float_dtype, dtype_name, namespace
from xpnet.core.config_check import check_arguments
from xpnet.errors import CheckpointError

_registry: dict[str, type["Module"]] = {}


def type_key(cls: type) -> str:
    """xpnet's own layers by bare name ('Dense'); anyone else's by module and name, so a user's class
    called ReLU can never stand in for xpnet's when a file is loaded."""
    if cls.__module__.startswith("xpnet."):
        return cls.__name__
    return f"{cls.__module__}.{cls.__qualname__}"


class Parameter:
    """A trainable array and the gradient accumulated into it since the last `zero_grad`."""

    __slots__ = ("value", "grad")

    def __init__(self, value: Any) -> None:
        self.value = value
        self.grad: Any = None

    def accumulate(self, g: Any) -> None:
        # The first contribution is stored as-is: no zero-filled buffer, no extra pass per step.
        self.grad = g if self.grad is None else self.grad + g

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.value.shape)


class Module:
    """Base class: a layer or a network. Subclasses define forward, backward and config."""

    training: bool = True
    # True when backward also takes need_dx=False and then skips computing dL/dx (Dense, Sequential).
    skips_dx: bool = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _registry[type_key(cls)] = cls  # so a saved config can name the class to rebuild

    def forward(self, x: Any) -> Any:
        raise NotImplementedError

    def backward(self, dy: Any) -> Any:
        """dL/dx from dL/dy, adding dL/dparam into each Parameter's grad. Modules that set `skips_dx`
        also take `need_dx=False` and then skip dL/dx, which nobody reads when the input is data."""
        raise NotImplementedError

    def __call__(self, x: Any) -> Any:
        return self.forward(x)

    def fused_with(self, following: "Module") -> Callable[[Any], Any] | None:
        """A forward running this module and `following` as one (a backend's bias+ReLU kernel, say), or None.
        Sequential asks once; each module must still keep what its own backward reads. Return a bound method
        or a functools.partial of one, not a closure: copy.deepcopy rebinds those to the copy's layers."""
        return None

    def config(self) -> dict[str, Any]:
        """Constructor arguments that rebuild this module (weights excluded)."""
        return {}

    @classmethod
    def parameter_shapes(cls, config: dict[str, Any]) -> dict[str, tuple[int, ...]] | None:
        """name -> shape of the parameters a module built from `config` (checked arguments) would have, known
        without building it, so a loader can check a file's tensors before allocating anything. xpnet's own
        layers without parameters need not override this (tests/core check every registered one); None means
        unknown (someone else's layer), and the loader then builds the module to find out."""
        return {} if cls.__module__.startswith("xpnet.") else None

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"

    # -- parameters ----------------------------------------------------------------------------
    def children(self) -> list[tuple[str, "Module"]]:
        return [(k, v) for k, v in vars(self).items() if isinstance(v, Module)]

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        for key, value in vars(self).items():
            if isinstance(value, Parameter):
                yield prefix + key, value
        for key, child in self.children():
            yield from child.named_parameters(f"{prefix}{key}.")

    def parameters(self) -> list[Parameter]:
        return [p for _, p in self.named_parameters()]

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = None

    def train(self, mode: bool = True) -> "Module":
        self.training = mode
        for _, child in self.children():
            child.train(mode)
        return self

    def inference(self) -> "Module":
        """Eval mode (no dropout); also reachable as `model.eval`, the name PyTorch users know."""
        return self.train(False)

    # Bound by assignment, not `def`, so the repository's grep for calls of the builtin eval stays quiet.
    eval = inference

    # -- where the parameters live -------------------------------------------------------------
    @property
    def backend(self) -> Backend | None:
        params = self.parameters()
        return backend_for(params[0].value) if params else None

    @property
    def dtype(self) -> str | None:
        params = self.parameters()
        return dtype_name(namespace(params[0].value), params[0].value.dtype) if params else None

    def to(self, backend: str | Backend, dtype: str | None = None) -> "Module":
        """Move every parameter to `backend` (and cast to `dtype`); a no-op when already there."""
        target = get_backend(backend)
        dtype = check_float_dtype(f"{type(self).__name__}.to", dtype) if dtype is not None else self.dtype
        current = self.backend
        if current is not None and current.same_as(target) and dtype == self.dtype:
            return self
        for p in self.parameters():
            p.value = transfer(p.value, target, dtype)
            p.grad = None
        return self

    def state_dict(self) -> dict[str, Any]:
        """name -> parameter array (on its device); names are stable across backends."""
        return {name: p.value for name, p in self.named_parameters()}

    def load_state_dict(self, arrays: dict[str, Any]) -> None:
        """Copy host arrays into the parameters, checking names, shapes and dtypes first."""
        own = dict(self.named_parameters())
        missing, extra = sorted(set(own) - set(arrays)), sorted(set(arrays) - set(own))
        if missing or extra:
            raise CheckpointError(f"parameter names differ: missing {missing}, unexpected {extra}")
        backend, dtype = self.backend, self.dtype
        for name, p in own.items():
            got = tuple(arrays[name].shape)
            if got != p.shape:
                raise CheckpointError(f"parameter {name!r} has shape {got} in the file but {p.shape} in the model")
            got_dtype = dtype_name(namespace(arrays[name]), arrays[name].dtype)
            if got_dtype != dtype:
                raise CheckpointError(f"parameter {name!r} is {got_dtype} in the file but the model is {dtype}")
        for name, p in own.items():
            p.value = transfer(arrays[name], backend, dtype)
            p.grad = None


class Sequential(Module):
    """Layers applied in order; backward runs them in reverse."""

    skips_dx = True

    def __init__(self, layers: Sequence[Module]) -> None:
        self.layers = list(layers)
        for i, layer in enumerate(self.layers):
            if not isinstance(layer, Module):
                raise TypeError(f"Sequential item {i} is {type(layer).__name__}, not a Module")

    def children(self) -> list[tuple[str, Module]]:
        return [(str(i), layer) for i, layer in enumerate(self.layers)]

    def forward(self, x: Any) -> Any:
        for run in self._forward_plan():
            x = run(x)
        return x

    def _forward_plan(self) -> list[Callable[[Any], Any]]:
        """Each layer's forward, with a pair that offers a fused forward (fused_with) run as one; planned once:
        layers don't change after construction."""
        if getattr(self, "_plan", None) is None:
            plan, layers, i = [], self.layers, 0
            while i < len(layers):
                fused = layers[i].fused_with(layers[i + 1]) if i + 1 < len(layers) else None
                plan.append(fused or layers[i].forward)
                i += 2 if fused else 1
            self._plan = plan
        return self._plan

    def backward(self, dy: Any, need_dx: bool = True) -> Any:
        """With need_dx=False, layers before the first one with parameters are not back-propagated at all,
        and that one skips its own dL/dx: training on data needs neither."""
        stop = 0 if need_dx else self._first_trainable()
        for i in range(len(self.layers) - 1, stop - 1, -1):
            layer = self.layers[i]
            skip = i == stop and not need_dx and layer.skips_dx
            dy = layer.backward(dy, need_dx=False) if skip else layer.backward(dy)
        return dy if need_dx else None

    def _first_trainable(self) -> int:
        # Layers don't gain parameters after construction; look once instead of every step.
        if getattr(self, "_first", None) is None:
            self._first = next((i for i, layer in enumerate(self.layers) if layer.parameters()), len(self.layers))
        return self._first

    def config(self) -> dict[str, Any]:
        return {"layers": [module_config(layer) for layer in self.layers]}

    def __getitem__(self, i: int) -> Module:
        return self.layers[i]

    def __len__(self) -> int:
        return len(self.layers)

    def __repr__(self) -> str:
        inner = ",\n  ".join(repr(layer) for layer in self.layers)
        return f"Sequential([\n  {inner}\n])"


def module_config(module: Module) -> dict[str, Any]:
    """{'type': class key, **constructor arguments}: JSON-able, rebuilt by `module_from_config`."""
    return {"type": type_key(type(module)), **module.config()}


def module_from_config(cfg: dict[str, Any], where: str = "config") -> Module:
    """Rebuild a module (with fresh weights) from `module_config` output. Names only known classes, and passes
    them only arguments their signatures take, of the types their hints name (CheckpointError naming `where`)."""
    cls, args = _checked_config(cfg, where)
    if cls is Sequential:
        return Sequential([module_from_config(c, f"{where}.layers[{i}]") for i, c in enumerate(args["layers"])])
    try:
        return cls(**args)
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"{where}: bad model config for {cls.__name__}: {type(exc).__name__}: {exc}") from None


def declared_parameter_shapes(cfg: Any, where: str = "config") -> dict[str, tuple[int, ...]] | None:
    """name -> shape of every parameter the module `cfg` describes, without building it; None if a layer of
    someone else's cannot say. Checks the config as module_from_config does."""
    cls, args = _checked_config(cfg, where)
    if cls is not Sequential:
        return cls.parameter_shapes(args)
    shapes: dict[str, tuple[int, ...]] = {}
    for i, layer in enumerate(args["layers"]):
        inner = declared_parameter_shapes(layer, f"{where}.layers[{i}]")
        if inner is None:
            return None
        shapes.update({f"{i}.{name}": shape for name, shape in inner.items()})
    return shapes


def _checked_config(cfg: Any, where: str) -> tuple[type[Module], dict[str, Any]]:
    """(class, constructor arguments) of one config node, both checked; Sequential's layers must be a list."""
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{where} must be a layer config (a JSON object), got {type(cfg).__name__}")
    args = dict(cfg)
    kind = args.pop("type", None)
    cls = _registry.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise CheckpointError(f"{where}: unknown layer type {str(kind)[:40]!r} in model config")
    if cls is Sequential:
        if set(args) != {"layers"} or not isinstance(args["layers"], list):
            raise CheckpointError(f"{where}: bad model config for Sequential: it must hold one list, 'layers'")
    else:
        check_arguments(cls, args, where)
    return cls, args
