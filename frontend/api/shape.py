"""Shape adapters (view, reshape, permute, expand, flatten, ...) and arithmetic with PyTorch's extra
arguments (``alpha=``)."""

from __future__ import annotations

from typing import Any

import numpy as np
from ember import _indexing, _inplace, _printing
from ember import creation as _creation
from ember.api import alias, function, method
from ember.compiler.ops import REGISTRY
from ember.dispatch import apply
from ember.runtime.errors import ShapeError

_op = REGISTRY.__getitem__


def _size_args(args: tuple[Any, ...]) -> tuple[int, ...]:
    if len(args) == 1 and isinstance(args[0], (tuple, list)):
        return tuple(int(a) for a in args[0])
    if len(args) == 1 and hasattr(args[0], "__len__") and not hasattr(args[0], "__index__"):
        return tuple(int(a) for a in args[0])
    return tuple(int(a) for a in args)


# ---- shape ----------------------------------------------------------------------------------------


@method
def reshape(input: Any, *shape: Any) -> Any:
    return apply(_op("reshape"), (input,), {"shape": _size_args(shape)})


@method
def view(input: Any, *shape: Any) -> Any:
    """Like reshape, but never copies: strides that would need a copy are an error, as in PyTorch."""
    from ember.compiler.dtypes import DType, as_dtype

    if len(shape) == 1 and isinstance(shape[0], (DType, str)):
        raise TypeError(f"view(dtype) reinterpretation is not supported; use .to({as_dtype(shape[0])})")
    op = _op("reshape")
    attrs = op.normalize(op.check_attrs({"shape": _size_args(shape)}), input)  # resolves -1, checks sizes
    data = getattr(input, "_data", None)
    if isinstance(data, np.ndarray) and not data.flags.c_contiguous:
        try:
            np.reshape(data, attrs["shape"], copy=False)
        except ValueError:
            raise ShapeError(
                "view size is not compatible with input tensor's size and stride (at least one dimension"
                " spans across two contiguous subspaces). Use .reshape(...) instead."
            ) from None
    return apply(op, (input,), attrs)


@method
def view_as(input: Any, other: Any) -> Any:
    return view(input, tuple(other.shape))


@method
def reshape_as(input: Any, other: Any) -> Any:
    return reshape(input, tuple(other.shape))


@method
def permute(input: Any, *dims: Any) -> Any:
    return apply(_op("permute"), (input,), {"dims": _size_args(dims)})


@method
def expand(input: Any, *sizes: Any) -> Any:
    return apply(_op("expand"), (input,), {"shape": _size_args(sizes)})


@method
def expand_as(input: Any, other: Any) -> Any:
    return expand(input, tuple(other.shape))


@method
def t(input: Any) -> Any:
    if input.ndim > 2:
        raise ShapeError(f"t() expects a tensor with <= 2 dimensions, but self is {input.ndim}D")
    return input if input.ndim < 2 else permute(input, 1, 0)


@method
def contiguous(input: Any, memory_format: Any = None) -> Any:
    """``input`` itself when already row-major, else a row-major copy (clone keeps strides, as in torch)."""
    data = getattr(input, "_data", None)
    if data is None or data.flags.c_contiguous:
        return input
    out = apply(_op("clone"), (input,), {})
    if isinstance(out._data, np.ndarray) and not out._data.flags.c_contiguous:
        out._data = np.ascontiguousarray(out._data)  # layout only: the clone is fresh, nothing aliases it
    return out


@method
def flatten(input: Any, start_dim: int = 0, end_dim: int = -1) -> Any:
    from ember.compiler.ops.rules import norm_dim

    shape = tuple(input.shape)
    if not shape:
        return reshape(input, 1)
    s = norm_dim("flatten", start_dim, len(shape))
    e = norm_dim("flatten", end_dim, len(shape))
    if s > e:
        raise ShapeError("flatten() has invalid args: start_dim cannot come after end_dim")
    n = 1
    for d in shape[s : e + 1]:
        n *= d
    return reshape(input, shape[:s] + (n,) + shape[e + 1 :])


@method
def squeeze(input: Any, dim: Any = None) -> Any:
    """``squeeze()`` drops every size-1 dim; ``squeeze(d)`` / ``squeeze((d0, d1))`` only those (if size 1)."""
    return apply(_op("squeeze"), (input,), {"dim": dim})


@method
def repeat(input: Any, *repeats: Any) -> Any:
    return apply(_op("repeat"), (input,), {"repeats": _size_args(repeats)})


@method
def flip(input: Any, *dims: Any) -> Any:
    return apply(_op("flip"), (input,), {"dims": _size_args(dims)})


@method
def split(input: Any, split_size_or_sections: Any = None, dim: int = 0, *, split_size: Any = None) -> Any:
    """``split(2)`` gives pieces of length 2 (the last may be shorter); ``split([1, 3])`` exact lengths."""
    size = split_size if split_size_or_sections is None else split_size_or_sections
    if size is None:
        raise TypeError("split() missing required argument 'split_size_or_sections'")
    if isinstance(size, (list, tuple)):
        size = tuple(int(v) for v in size)
    return apply(_op("split"), (input,), {"split_size_or_sections": size, "dim": dim})


@method
def swapaxes(input: Any, axis0: int, axis1: int) -> Any:
    return apply(_op("transpose"), (input,), {"dim0": axis0, "dim1": axis1})


@method
def swapdims(input: Any, dim0: int, dim1: int) -> Any:
    return apply(_op("transpose"), (input,), {"dim0": dim0, "dim1": dim1})


# ---- arithmetic with PyTorch's extra arguments -------------------------------------------------------


@method
def add(input: Any, other: Any, *, alpha: Any = 1) -> Any:
    if alpha != 1:
        other = other * alpha if not hasattr(other, "shape") else apply(_op("mul"), (other, alpha), {})
    return apply(_op("add"), (input, other), {})


@method
def sub(input: Any, other: Any, *, alpha: Any = 1) -> Any:
    if alpha != 1:
        other = other * alpha if not hasattr(other, "shape") else apply(_op("mul"), (other, alpha), {})
    return apply(_op("sub"), (input, other), {})


alias("subtract", sub)

# module-level functions whose code lives in ember.creation / ember._printing (ember/__init__ lists the rest)
function(_creation.range)
function(_printing.set_printoptions)
for _name in ("new_zeros", "new_ones", "new_empty", "new_full", "new_tensor"):
    alias(_name, getattr(_creation, _name))


@function
def is_storage(obj: Any) -> bool:
    """Always False: ember tensors own their arrays directly; there are no separate storage objects."""
    return False


@function
def numel(input: Any) -> int:
    """Number of elements of ``input``."""
    return input.numel()


# index_put with PyTorch's (indices, values, accumulate) signature
alias("index_put_", _indexing.index_put_)
alias("index_put", _indexing.index_put)

# in-place fills and copies (defined with the other in-place machinery in ember._inplace)
alias("fill_", _inplace.fill_)
alias("zero_", _inplace.zero_)
alias("copy_", _inplace.copy_)
