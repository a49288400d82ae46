"""Joining and gathering adapters: PyTorch puts ``dim`` before the index tensor
(``gather(input, dim, index)``), while registry ops take tensors first; ``scatter`` takes ``src=`` or
``value=``; ``concat``/``concatenate`` are aliases of ``cat``."""

from __future__ import annotations

from typing import Any

from ember.api import alias, function, method
from ember.compiler.ops import REGISTRY
from ember.dispatch import apply

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


def _scatter_src(src: Any, value: Any, reduce: Any) -> Any:
    if reduce is not None:
        raise NotImplementedError("scatter(reduce=...) is not supported; use scatter_add for sums")
    if (src is None) == (value is None):
        raise TypeError("scatter() expects exactly one of src= or value=")
    return src if src is not None else value


@method
def scatter(
    input: Any, dim: int, index: Any, src: Any = None, *, value: Any = None, reduce: Any = None
) -> Any:
    """A copy of ``input`` with ``out[index[i][j]][j] = src[i][j]`` (dim=0); ``src`` may be a number."""
    return apply(_op("scatter"), (input, index, _scatter_src(src, value, reduce)), {"dim": dim})


@method
def scatter_add(input: Any, dim: int, index: Any, src: Any) -> Any:
    return apply(_op("scatter_add"), (input, index, src), {"dim": dim})


def scatter_(
    self: Any, dim: int, index: Any, src: Any = None, *, value: Any = None, reduce: Any = None
) -> Any:
    from ember._inplace import inplace_apply

    return inplace_apply(self, _op("scatter"), (index, _scatter_src(src, value, reduce)), {"dim": dim})


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
alias("index_fill", index_fill)
