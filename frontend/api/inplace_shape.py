"""In-place forms that the registry's ``inplace=True`` cannot give: shape ops (``t_``, ``transpose_``,
``squeeze_``, ``unsqueeze_``), comparisons written back in the tensor's own dtype (``eq_``, ``lt_``, ...)
and ``normal_``.

A shape op in place changes only the tensor's view of its memory, as in PyTorch: the out-of-place op runs
through the registry (so its autograd node and its errors are the usual ones), and the tensor then takes
over the result's array view, autograd history and a version bump. Other views of the same memory keep
their own shape.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from ember._methods import make_inplace
from ember._state import STATE
from ember.compiler.ops import REGISTRY
from ember.runtime.errors import AutogradError, TraceError
from ember.tensor import Tensor


def _adopt(self: Any, result: Any, name: str) -> Any:
    """Make ``self`` the result of its own out-of-place shape op."""
    if STATE.tracer is not None:  # the tracer's rules for in-place ops: never on inputs or parameters
        STATE.tracer._check_mutable(self, SimpleNamespace(name=name[:-1]))
        if type(self._data) is not type(result._data):
            raise TraceError(f"{name}: an in-place shape change of a tensor from outside the traced"
                             " function cannot be traced; use the out-of-place form")
        self._data = result._data
        return self
    self._data = result._data
    self._version[0] += 1
    self.grad_fn, self._out_index, self.requires_grad = result.grad_fn, result._out_index, result.requires_grad
    return self


def _check_leaf(self: Any) -> None:
    if STATE.grad_enabled and self.requires_grad and self.is_leaf:
        raise AutogradError("a leaf Variable that requires grad is being used in an in-place operation.")


def t_(self: Any) -> Any:
    """In-place ``t()``: swaps the two dims of a matrix (a vector is unchanged)."""
    _check_leaf(self)
    return _adopt(self, self.t(), "t_")


def transpose_(self: Any, dim0: int, dim1: int) -> Any:
    """In-place ``transpose(dim0, dim1)``."""
    _check_leaf(self)
    return _adopt(self, self.transpose(dim0, dim1), "transpose_")


def squeeze_(self: Any, dim: Any = None) -> Any:
    """In-place ``squeeze(dim)``."""
    _check_leaf(self)
    return _adopt(self, self.squeeze() if dim is None else self.squeeze(dim), "squeeze_")


def unsqueeze_(self: Any, dim: int) -> Any:
    """In-place ``unsqueeze(dim)``."""
    _check_leaf(self)
    return _adopt(self, self.unsqueeze(dim), "unsqueeze_")


def normal_(self: Any, mean: float = 0.0, std: float = 1.0, *, generator: Any = None) -> Any:
    """Fill with draws from N(mean, std^2) from ember's generator (``ember.manual_seed``)."""
    from ember.creation import normal

    if std < 0:
        raise ValueError(f"normal expects std >= 0.0, but found std {std}")
    draws = normal(float(mean), float(std), tuple(self.shape), dtype=self.dtype, generator=generator)
    return self.copy_(draws)


for _fn in (t_, transpose_, squeeze_, unsqueeze_, normal_):
    setattr(Tensor, _fn.__name__, _fn)

# ``x.lt_(y)``: the comparison's 0/1 written back in x's dtype (PyTorch's in-place comparisons).
for _name in ("eq", "ne", "lt", "le", "gt", "ge"):
    if _name + "_" not in Tensor.__dict__:
        setattr(Tensor, _name + "_", make_inplace(REGISTRY[_name]))
