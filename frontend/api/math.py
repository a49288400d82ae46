"""Math adapters: PyTorch signatures with overloads or optional tensor arguments (``max(x)``,
``max(x, dim)``, ``max(x, other)``; ``clamp(x, min=t)``), results as named tuples with ``.values`` and
``.indices`` (like ``torch.return_types``), and the aliases PyTorch keeps (``clip``, ``absolute``, ...).
Each adapter picks one registry op; none computes anything itself.
"""

from __future__ import annotations

from collections import namedtuple
from typing import Any

from ember._methods import make_function
from ember.api import FUNCTIONS, alias, function, method
from ember.compiler.ops import REGISTRY
from ember.dispatch import apply

_op = REGISTRY.__getitem__


class _ReturnTypes:
    """``ember.return_types``: the named tuples of ops returning (values, indices)."""

    def __init__(self) -> None:
        for name in ("max", "min", "sort", "topk", "kthvalue", "median", "mode"):
            setattr(self, name, namedtuple(name, ["values", "indices"]))


return_types = _ReturnTypes()


def _named(kind: str, pair: tuple[Any, Any]) -> Any:
    return getattr(return_types, kind)(*pair)


# ---- max / min overloads --------------------------------------------------------------------------


def _extremum(kind: str, input: Any, dim: Any, keepdim: bool) -> Any:
    if dim is None:
        return apply(_op("a" + kind), (input,), {})
    if hasattr(dim, "shape"):  # max(input, other): the elementwise maximum
        return apply(_op("maximum" if kind == "max" else "minimum"), (input, dim), {})
    return _named(kind, apply(_op(kind + "_dim"), (input,), {"dim": dim, "keepdim": keepdim}))


@method
def max(input: Any, dim: Any = None, keepdim: bool = False) -> Any:  # noqa: A001  (PyTorch's name)
    """``max(x)``: the largest element; ``max(x, dim)``: (values, indices); ``max(x, other)``: maximum.

    >>> import ember
    >>> ember.tensor([[1, 5], [7, 2]]).max(1).indices
    tensor([1, 0])
    """
    return _extremum("max", input, dim, keepdim)


@method
def min(input: Any, dim: Any = None, keepdim: bool = False) -> Any:  # noqa: A001
    """``min(x)``, ``min(x, dim)`` -> (values, indices), ``min(x, other)``; see ``max``."""
    return _extremum("min", input, dim, keepdim)


# ---- ops returning (values, indices) -----------------------------------------------------------------


@method
def median(input: Any, dim: int | None = None, keepdim: bool = False) -> Any:
    """The lower median of all elements, or (values, indices) along ``dim``.

    >>> import ember
    >>> ember.tensor([4.0, 1.0, 3.0, 2.0]).median()
    tensor(2.)
    """
    out = apply(_op("median"), (input,), {"dim": dim, "keepdim": keepdim})
    return out if dim is None else _named("median", out)


@method
def sort(input: Any, dim: int = -1, descending: bool = False, *, stable: bool = False) -> Any:
    """(values, indices) sorted along ``dim``; NaN sorts as the largest value."""
    attrs = {"dim": dim, "descending": descending, "stable": stable}
    return _named("sort", apply(_op("sort"), (input,), attrs))


@method
def topk(input: Any, k: int, dim: int = -1, largest: bool = True, sorted: bool = True) -> Any:  # noqa: A002
    """The ``k`` largest (or smallest) elements along ``dim`` and their indices, in sorted order."""
    attrs = {"k": k, "dim": dim, "largest": largest, "sorted": sorted}
    return _named("topk", apply(_op("topk"), (input,), attrs))


@method
def kthvalue(input: Any, k: int, dim: int = -1, keepdim: bool = False) -> Any:
    """The ``k``-th smallest element (1-based) along ``dim`` and its index."""
    return _named("kthvalue", apply(_op("kthvalue"), (input,), {"k": k, "dim": dim, "keepdim": keepdim}))


@method
def mode(input: Any, dim: int = -1, keepdim: bool = False) -> Any:
    """The most frequent value along ``dim`` (the smallest among ties) and the index of its last
    occurrence, as PyTorch's CPU kernel returns."""
    return _named("mode", apply(_op("mode"), (input,), {"dim": dim, "keepdim": keepdim}))


# ---- clamp and where ------------------------------------------------------------------------------


@method
def clamp(input: Any, min: Any = None, max: Any = None) -> Any:  # noqa: A002
    """Limit ``input`` to [min, max]; each bound is a number, a tensor (broadcast) or None.

    >>> import ember
    >>> ember.tensor([-1.0, 0.5, 2.0]).clamp(0, 1)
    tensor([0.0000, 0.5000, 1.0000])
    """
    return apply(_op("clamp"), (input, min, max), {})


@method
def clamp_(input: Any, min: Any = None, max: Any = None) -> Any:  # noqa: A002
    """In-place ``clamp``."""
    from ember._inplace import inplace_apply

    return inplace_apply(input, _op("clamp"), (min, max), {})


alias("clip", clamp)
alias("clip_", clamp_)


@function
def where(condition: Any, input: Any, other: Any) -> Any:
    """``input`` where ``condition`` holds, else ``other`` (either may be a number)."""
    return apply(_op("where"), (condition, input, other), {})


def _where_method(self: Any, condition: Any, other: Any) -> Any:
    """``x.where(cond, y)`` is ``ember.where(cond, x, y)``."""
    return apply(_op("where"), (condition, self, other), {})


_where_method.__name__ = "where"
# FUNCTIONS are bound to the ember namespace before METHODS, so ember.where keeps the function form
# while Tensor.where gets PyTorch's method signature.
alias("where", _where_method)

# ---- comparisons returning Python bools --------------------------------------------------------------


@method
def equal(input: Any, other: Any) -> bool:
    """True when both tensors have the same shape and the same elements."""
    if tuple(input.shape) != tuple(other.shape):
        return False
    return bool(apply(_op("all"), (apply(_op("eq"), (input, other), {}),), {}).item())


@method
def allclose(input: Any, other: Any, rtol: float = 1e-05, atol: float = 1e-08,
             equal_nan: bool = False) -> bool:
    """True when every element is close: |input - other| <= atol + rtol * |other|."""
    close = apply(_op("isclose"), (input, other), {"rtol": rtol, "atol": atol, "equal_nan": equal_nan})
    return bool(apply(_op("all"), (close,), {}).item())


# ---- division flavours and aliases --------------------------------------------------------------------


@method
def floor_divide(input: Any, other: Any) -> Any:
    """Division rounded towards minus infinity (what ``//`` does)."""
    return apply(_op("div"), (input, other), {"rounding_mode": "floor"})


@method
def true_divide(input: Any, other: Any) -> Any:
    return apply(_op("div"), (input, other), {})


for _name, _target in (("absolute", "abs"), ("multiply", "mul"), ("divide", "div"), ("negative", "neg"),
                       ("arccos", "acos"), ("arcsin", "asin"), ("arctan", "atan"), ("arctan2", "atan2"),
                       ("greater", "gt"), ("greater_equal", "ge"), ("less", "lt"), ("less_equal", "le"),
                       ("not_equal", "ne"), ("fix", "trunc")):
    if _name not in FUNCTIONS:
        alias(_name, make_function(_op(_target)))
