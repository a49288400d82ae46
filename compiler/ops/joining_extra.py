"""``scatter_reduce`` (sum, prod, mean, amax, amin; with or without the input's own values), composed
from primitives so that it gets gradients, tracing and kernels from them.

* sum / mean: ``scatter_add`` of the values (and of ones, for the count), O(index) work. Integer means
  round toward minus infinity, as PyTorch's do.
* prod / amax / amin: each target slot ``k`` along ``dim`` reduces the candidates ``src[j]`` with
  ``index[j] == k`` (a ``one_hot`` mask over the dim's ``N`` slots, so the work is index.numel() * N),
  plus, with ``include_self``, the input's own value as one more candidate. Reducing all candidates in
  one ``amax``/``prod`` makes the gradient PyTorch's: ties share it evenly, a single zero factor gets
  the product of the others.
Slots no index points at keep the input's value. ``src`` may be larger than ``index`` (only its leading
block is read), and ``input`` larger than ``index`` apart from ``dim`` (the rest is untouched).
"""

from __future__ import annotations

from typing import Any

from ember.compiler.dtypes import FLOATING, INTEGRAL
from ember.compiler.ops.joining import _check_index_tensor
from ember.compiler.ops.registry import BOOL, INT, define_composite, one_of
from ember.compiler.ops.rules import norm_dim
from ember.runtime.errors import DTypeError, ShapeError

REDUCTIONS = ("sum", "prod", "mean", "amax", "amin")


def _slices(shape: tuple[int, ...]) -> tuple[tuple[Any, ...], ...]:
    return tuple(("slice", 0, n, None) for n in shape)


def _identity(reduce: str, dtype: Any) -> Any:
    """The value that does not change the reduction (used for empty candidate slots)."""
    import numpy as np

    if reduce == "prod":
        return 1
    if dtype.category == FLOATING:
        return -np.inf if reduce == "amax" else np.inf
    info = np.iinfo(dtype.np) if dtype.category == INTEGRAL else None
    if info is None:
        return reduce == "amin"  # bool: max starts from False, min from True
    return int(info.min) if reduce == "amax" else int(info.max)


def _check(x: Any, index: Any, src: Any, dim: int) -> None:
    _check_index_tensor("scatter_reduce", index)
    xs, js, ss = tuple(x.shape), tuple(index.shape), tuple(src.shape)
    if not (len(xs) == len(js) == len(ss)):
        raise ShapeError("scatter_reduce(): Index tensor must have the same number of dimensions as self"
                         f" tensor ({list(js)} vs {list(xs)}) and src tensor ({list(ss)})")
    if any(c > s for c, s in zip(js, ss)) or any(c > a for d, (a, c) in enumerate(zip(xs, js)) if d != dim):
        raise ShapeError(f"scatter_reduce(): Expected index {list(js)} to be no larger than self {list(xs)}"
                         f" apart from dimension {dim} and to be no larger than src {list(ss)}")
    if src.dtype is not x.dtype:
        raise DTypeError(f"scatter_reduce(): Expected self.dtype to be equal to src.dtype, got {x.dtype}"
                         f" and {src.dtype}")


def _sum_like(b: Any, x: Any, index: Any, src: Any, dim: int, reduce: str, include_self: bool) -> Any:
    base = x if include_self else b.scatter(x, index, 0, dim=dim)
    total = b.scatter_add(base, index, src, dim=dim)
    if reduce == "sum":
        return total
    ones = b.full(shape=tuple(index.shape), value=1, dtype=x.dtype)
    start = b.full(shape=tuple(x.shape), value=1 if include_self else 0, dtype=x.dtype)
    count = b.scatter_add(start, index, ones, dim=dim)
    count = b.where(b.eq(count, 0), b.full(shape=(), value=1, dtype=x.dtype), count)
    return b.div(total, count, rounding_mode=None if x.dtype.category == FLOATING else "floor")


def _dense(b: Any, x: Any, index: Any, src: Any, dim: int, reduce: str, include_self: bool) -> Any:
    js, nd, n = tuple(index.shape), len(index.shape), x.shape[dim]
    region = js[:dim] + (n,) + js[dim + 1:]                   # the part of x the index can reach
    if tuple(src.shape) != js:
        src = b.getitem(src, index=_slices(js))
    mask = b.ne(b.one_hot(index, num_classes=n), 0)          # J + [N]: candidate j goes to slot k
    fill = b.full(shape=(), value=_identity(reduce, x.dtype), dtype=x.dtype)
    cand = b.where(mask, b.unsqueeze(src, dim=nd), fill)
    hit = b.any(mask, dim=(dim,), keepdim=True)
    x_region = x if region == tuple(x.shape) else b.getitem(x, index=_slices(region))
    if include_self:                                          # x's own value: one more candidate
        cand = b.cat(cand, b.unsqueeze(b.movedim(x_region, source=(dim,), destination=(nd - 1,)), dim=dim),
                     dim=dim)
    red = getattr(b, reduce)(cand, dim=(dim,), keepdim=True)  # J with dim -> 1, + [N]
    red, hit = (b.squeeze(b.movedim(t, source=(nd,), destination=(dim,)), dim=(dim + 1,)) for t in (red, hit))
    new = b.where(hit, red, x_region)
    if region == tuple(x.shape):
        return new
    return b.index_put(x, new, index=_slices(region), accumulate=False)


def _scatter_reduce(b: Any, x: Any, index: Any, src: Any, dim: int, reduce: str, include_self: bool) -> Any:
    d = norm_dim("scatter_reduce", dim, len(x.shape))
    _check(x, index, src, d)
    if reduce in ("sum", "mean"):
        return _sum_like(b, x, index, src, d, reduce, include_self)
    return _dense(b, x, index, src, d, reduce, include_self)


scatter_reduce = define_composite(
    "scatter_reduce",
    inputs=("input", "index", "src"),
    attrs={"dim": INT, "reduce": one_of(*REDUCTIONS), "include_self": (BOOL, True)},
    decompose=_scatter_reduce,
    method=False,
    function=False,
    doc="Reduce ``src`` into a copy of ``input`` at ``index`` along ``dim`` (see the module docstring).",
)
