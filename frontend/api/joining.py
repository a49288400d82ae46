"""Joining and gathering adapters: PyTorch puts ``dim`` before the index tensor
(``gather(input, dim, index)``), while registry ops take tensors first; ``scatter`` takes ``src=`` or
``value=``; ``concat``/``concatenate`` are aliases of ``cat``."""

from __future__ import annotations

import warnings
from typing import Any

from ember.api import alias, function, method
from ember.compiler.ops import REGISTRY
from ember.dispatch import apply
from ember.runtime.errors import ArgumentError

_op = REGISTRY.__getitem__


@function
def cat(tensors: Any, dim: int = 0, *, axis: int | None = None) -> Any:
    """Join tensors along an existing dim; dtypes promote as in PyTorch.

    >>> import ember
    >>> ember.cat([ember.zeros(1, 2), ember.ones(2, 2)]).shape
    ember.Size([3, 2])
    """
    return apply(_op("cat"), tuple(tensors), {"dim": dim if axis is None else axis})


alias("concat", cat, as_method=False)
alias("concatenate", cat, as_method=False)


@function
def stack(tensors: Any, dim: int = 0) -> Any:
    """Join equal-shaped tensors along a new dim."""
    return apply(_op("stack"), tuple(tensors), {"dim": dim})


@function
def hstack(tensors: Any) -> Any:
    tensors = tuple(tensors)
    return cat(tensors, 0 if tensors and tensors[0].ndim == 1 else 1)


@function
def vstack(tensors: Any) -> Any:
    return cat([t if t.ndim >= 2 else t.reshape(1, -1) for t in tensors], 0)


@method
def gather(input: Any, dim: int, index: Any, *, sparse_grad: bool = False) -> Any:
    """``out[i][j] = input[index[i][j]][j]`` for dim=0."""
    return apply(_op("gather"), (input, index), {"dim": dim})


@method
def index_select(input: Any, dim: int, index: Any) -> Any:
    return apply(_op("index_select"), (input, index), {"dim": dim})


def _scatter_src(src: Any, value: Any) -> Any:
    if (src is None) == (value is None):
        raise TypeError("scatter() expects exactly one of src= or value=")
    return src if src is not None else value


_SCATTER_REDUCE = {"add": "sum", "multiply": "prod"}


def _scatter_args(input: Any, dim: int, index: Any, src: Any, value: Any, reduce: Any) -> tuple[Any, ...]:
    """(op, inputs, attrs) of ``scatter``; with ``reduce='add'|'multiply'`` the scatter_reduce op."""
    src = _scatter_src(src, value)
    if reduce is None:
        return _op("scatter"), (input, index, src), {"dim": dim}
    if reduce not in _SCATTER_REDUCE:
        raise ArgumentError(f"reduce argument must be either add or multiply., got {reduce!r}")
    if hasattr(src, "shape"):
        warnings.warn(
            "The reduce argument of torch.scatter with Tensor src is deprecated and will be removed in a"
            " future PyTorch release. Use torch.scatter_reduce instead for more reduction options.",
            UserWarning, stacklevel=3,
        )
    else:
        src = apply(_op("full"), (), {"shape": tuple(index.shape), "value": src, "dtype": input.dtype})
    attrs = {"dim": dim, "reduce": _SCATTER_REDUCE[reduce], "include_self": True}
    return _op("scatter_reduce"), (input, index, src), attrs


@method
def scatter(
    input: Any, dim: int, index: Any, src: Any = None, *, value: Any = None, reduce: Any = None
) -> Any:
    """A copy of ``input`` with ``out[index[i][j]][j] = src[i][j]`` (dim=0); ``src`` may be a number.
    ``reduce='add'``/``'multiply'`` combine with the existing value instead (scatter_reduce's sum/prod)."""
    op, inputs, attrs = _scatter_args(input, dim, index, src, value, reduce)
    return apply(op, inputs, attrs)


@method
def scatter_add(input: Any, dim: int, index: Any, src: Any) -> Any:
    return apply(_op("scatter_add"), (input, index, src), {"dim": dim})


@method
def scatter_reduce(input: Any, dim: int, index: Any, src: Any, reduce: str, *, include_self: bool = True) -> Any:
    """Reduce ``src`` into a copy of ``input`` at ``index`` along ``dim``: reduce is one of "sum", "prod",
    "mean", "amax", "amin"; ``include_self=False`` leaves the input's own values out where index points.

    >>> import ember
    >>> ember.tensor([1., 2.]).scatter_reduce(0, ember.tensor([0, 0]), ember.tensor([5., 3.]), "amax")
    tensor([5., 2.])
    """
    attrs = {"dim": dim, "reduce": reduce, "include_self": include_self}
    return apply(_op("scatter_reduce"), (input, index, src), attrs)


def scatter_(
    self: Any, dim: int, index: Any, src: Any = None, *, value: Any = None, reduce: Any = None
) -> Any:
    from ember._inplace import inplace_apply

    op, inputs, attrs = _scatter_args(self, dim, index, src, value, reduce)
    return inplace_apply(self, op, inputs[1:], attrs)


def scatter_reduce_(self: Any, dim: int, index: Any, src: Any, reduce: str, *, include_self: bool = True) -> Any:
    from ember._inplace import inplace_apply

    attrs = {"dim": dim, "reduce": reduce, "include_self": include_self}
    return inplace_apply(self, _op("scatter_reduce"), (index, src), attrs)


def scatter_add_(self: Any, dim: int, index: Any, src: Any) -> Any:
    from ember._inplace import inplace_apply

    return inplace_apply(self, _op("scatter_add"), (index, src), {"dim": dim})


def index_fill(input: Any, dim: int, index: Any, value: Any) -> Any:
    """Fill the slices ``index`` along ``dim`` with ``value``: a masked_fill with a mask built by scatter."""
    from ember.creation import zeros

    size = input.shape[dim] if input.ndim else 1
    hit = scatter(zeros(size, dtype="bool"), 0, index.reshape(-1), True)
    shape = [1] * input.ndim
    if input.ndim:
        shape[dim] = size
    return apply(_op("masked_fill"), (input, hit.reshape(shape), value), {})


@method
def masked_select(input: Any, mask: Any) -> Any:
    """The elements of ``input`` where ``mask`` is true, as a 1-d tensor (both broadcast first)."""
    from ember.compiler.ops.rules import broadcast_shapes

    shape = broadcast_shapes("masked_select", tuple(input.shape), tuple(mask.shape))
    if tuple(input.shape) != shape:
        input = input.expand(*shape)
    if tuple(mask.shape) != shape:
        mask = mask.expand(*shape)
    return input[mask]


alias("scatter_", scatter_)
alias("scatter_add_", scatter_add_)
alias("scatter_reduce_", scatter_reduce_)
alias("index_fill", index_fill)
