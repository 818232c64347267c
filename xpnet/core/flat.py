"""One contiguous buffer for all parameters (and one per optimizer-state role), each parameter a view.

The optimizer then updates every parameter in one pass of a few elementwise operations instead of the
same operations once per parameter (Adam on the MNIST MLP: about ten operations on one buffer instead of
about ten on each of six arrays, i.e. fewer NumPy calls, or fewer kernel launches on a GPU).
Views of a reshaped slice are writeable aliases on NumPy, torch, CuPy and array-api-strict; where arrays
are immutable (JAX) the optimizer keeps its per-parameter path.
"""
from __future__ import annotations

from typing import Any, Sequence

from xpnet.backends.ops import CONCAT_INTO, lookup
from xpnet.core.arrays import is_writeable, namespace


class FlatBuffers:
    """Flat storage for `params` and for the state arrays named `roles` (e.g. ('m', 'v'))."""

    def __init__(self, params: Sequence[Any], states: list[dict[str, Any]], roles: Sequence[str]) -> None:
        values = [p.value for p in params]
        xp = self.xp = namespace(*values)
        self.shapes = [tuple(v.shape) for v in values]
        sizes = [_size(s) for s in self.shapes]
        self.spans = [(sum(sizes[:i]), sum(sizes[:i + 1])) for i in range(len(sizes))]
        self.param = self._gather(values)
        self.views = self._scatter(self.param)
        for p, view in zip(params, self.views):
            p.value = view
        self.roles: dict[str, Any] = {}
        self.state_views: dict[str, list[Any]] = {}
        for role in roles:
            existing = [st.get(role) for st in states]
            flat = (self._gather(existing) if all(e is not None for e in existing)
                    else xp.zeros_like(self.param))
            self.roles[role] = flat
            self.state_views[role] = self._scatter(flat)
            for st, view in zip(states, self.state_views[role]):
                st[role] = view
        self.grad = xp.zeros_like(self.param)
        self._concat = lookup(xp, CONCAT_INTO)

    @staticmethod
    def usable(params: Sequence[Any]) -> bool:
        """One namespace, one dtype, writeable arrays: the conditions for aliasing views."""
        try:
            namespace(*[p.value for p in params])
        except TypeError:
            return False
        dtypes = {p.value.dtype for p in params}
        return len(dtypes) == 1 and all(is_writeable(p.value) for p in params)

    def _gather(self, arrays: list[Any]) -> Any:
        xp = self.xp
        return xp.concat([xp.reshape(a, (-1,)) for a in arrays])

    def _scatter(self, flat: Any) -> list[Any]:
        return [self.xp.reshape(flat[a:b], shape) for (a, b), shape in zip(self.spans, self.shapes)]

    def intact(self, params: Sequence[Any], states: list[dict[str, Any]]) -> bool:
        """False once anything rebound a parameter or a state array (load_state_dict, model.to, ...)."""
        if any(p.value is not view for p, view in zip(params, self.views)):
            return False
        return all(st.get(role) is view for role, views in self.state_views.items()
                   for st, view in zip(states, views))

    def gather_grads(self, params: Sequence[Any]) -> Any:
        """Every parameter's gradient, copied into the flat gradient buffer."""
        grads = [p.grad for p in params]
        if self._concat is not None:
            return self._concat(grads, self.grad)
        self.grad = self._gather(grads)
        return self.grad


def _size(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n
