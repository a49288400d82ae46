"""Order statistics and scans: argsort (the one sorting primitive), sort, topk, kthvalue, median, mode,
cumsum, cumprod.

Design: every value-selecting op is an index computation (argsort, median_index, mode_index: not
differentiable) followed by ``take_along_dim``, which is differentiable. So sort/topk/kthvalue/median/
mode/max(dim) share one gradient rule, the scatter ``take_along_dim_backward``, whose own gradient is
``take_along_dim`` again: higher orders come for free.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from ember.compiler.dtypes import BOOL, FLOATING, INTEGRAL, int64
from ember.compiler.ops.registry import BOOL as BOOL_ATTR
from ember.compiler.ops.registry import (
    DTYPE,
    INT,
    INTS,
    Pattern,
    TensorType,
    define_composite,
    define_op,
    optional,
)
from ember.compiler.ops.rules import norm_dim, reduced_shape, shape_of
from ember.runtime.errors import ArgumentError, DTypeError, ShapeError

O = Pattern.OPAQUE


def _dim_normalizer(op: str) -> Any:
    def normalize(attrs: dict[str, Any], x: Any, *_: Any) -> dict[str, Any]:
        attrs["dim"] = norm_dim(op, attrs["dim"], len(shape_of(x)))
        return attrs

    return normalize


# ---- gather along a dim and its scatter ------------------------------------------------------------


def _take_infer(x: Any, idx: Any, dim: int) -> TensorType:
    sx, si = shape_of(x), shape_of(idx)
    if idx.dtype is not int64:
        raise DTypeError(f"take_along_dim: Expected dtype int64 for index, got {idx.dtype}")
    if len(sx) != len(si) or any(a != c for d, (a, c) in enumerate(zip(sx, si)) if d != dim):
        raise ShapeError(f"take_along_dim: index shape {list(si)} must match input shape {list(sx)} in every"
                         f" dim except dim {dim}")
    return TensorType(si, x.dtype)


def _take_ref(xp: Any, x: Any, idx: Any, dim: int) -> Any:
    if x.ndim == 0:
        return x.copy()
    return xp.take_along_axis(x, idx, axis=dim)


take_along_dim = define_op(
    "take_along_dim", pattern=O, inputs=("input", "indices"), attrs={"dim": INT},
    normalize=_dim_normalizer("take_along_dim"), infer=_take_infer, reference=_take_ref,
    vjp=lambda b, g, out, x, idx, dim: [b.take_along_dim_backward(g, idx, dim=dim, shape=tuple(x.shape)),
                                        None],
    saves=(1,), lowering={"template": "gather"},
)


def _scatter_ref(xp: Any, g: Any, idx: Any, dim: int, shape: tuple[int, ...]) -> Any:
    out = xp.zeros(shape, dtype=g.dtype)
    if not shape:
        return out + g
    where = list(xp.indices(idx.shape, sparse=True))
    where[dim] = idx
    xp.add.at(out, tuple(where), g)  # repeated indices accumulate
    return out


take_along_dim_backward = define_op(
    "take_along_dim_backward", pattern=O, inputs=("grad", "indices"), attrs={"dim": INT, "shape": INTS},
    infer=lambda g, idx, dim, shape: TensorType(tuple(shape), g.dtype), reference=_scatter_ref,
    vjp=lambda b, g, out, grad, idx, dim, shape: [b.take_along_dim(g, idx, dim=dim), None],
    saves=(1,), method=False, function=False, lowering={"template": "scatter_add"},
)

# ---- index computations -----------------------------------------------------------------------------


def _argsort_infer(x: Any, dim: int, descending: bool, stable: bool) -> TensorType:
    return TensorType(shape_of(x), int64)


def argsort_array(xp: Any, x: Any, dim: int, descending: bool) -> Any:
    """Stable argsort; NaN counts as the largest value (first when descending), as in PyTorch."""
    if x.ndim == 0:
        return xp.zeros((), dtype=np.int64)
    if x.dtype == np.bool_:
        x = x.astype(np.int8)
    if not descending:
        return xp.argsort(x, axis=dim, kind="stable")
    # stable descending: sort the reversed array ascending, then reverse back (ties keep their order)
    rev = xp.flip(x, axis=dim)
    order = xp.flip(xp.argsort(rev, axis=dim, kind="stable"), axis=dim)
    return x.shape[dim] - 1 - order


argsort = define_op(
    "argsort", pattern=O,
    attrs={"dim": (INT, -1), "descending": (BOOL_ATTR, False), "stable": (BOOL_ATTR, False)},
    normalize=_dim_normalizer("argsort"), infer=_argsort_infer,
    reference=lambda xp, x, dim, descending, stable: argsort_array(xp, x, dim, descending),
    vjp=None, differentiable=False, lowering={"template": "sort"},
)


def _index_infer(x: Any, dim: int) -> TensorType:
    shape = shape_of(x)
    if shape and shape[dim] == 0:
        raise ArgumentError(f"Expected reduction dim {dim} to have non-zero size (input shape {list(shape)})")
    return TensorType(reduced_shape(shape, (dim,) if shape else (), True), int64)


def _median_index_ref(xp: Any, x: Any, dim: int) -> Any:
    """Index of the lower median; a slice holding NaN gives the index of its first NaN."""
    if x.ndim == 0:
        return xp.zeros((), dtype=np.int64)
    order = xp.argsort(x, axis=dim, kind="stable")
    k = (x.shape[dim] - 1) // 2
    idx = xp.take(order, [k], axis=dim)
    if x.dtype.kind == "f":
        nan = xp.isnan(x)
        has_nan = xp.any(nan, axis=dim, keepdims=True)
        idx = xp.where(has_nan, xp.argmax(nan, axis=dim, keepdims=True), idx)
    return idx


median_index = define_op(
    "median_index", pattern=O, attrs={"dim": INT}, normalize=_dim_normalizer("median"), infer=_index_infer,
    reference=_median_index_ref, vjp=None, differentiable=False, method=False, function=False,
    lowering={"template": "select_k"},
)


def _mode_row(row: np.ndarray) -> int:
    """The most frequent value (the smallest among equally frequent ones); its last occurrence."""
    values, counts = np.unique(row, return_counts=True)
    best = values[np.argmax(counts)]
    return int(np.flatnonzero(row == best)[-1])


def _mode_index_ref(xp: Any, x: Any, dim: int) -> Any:
    if x.ndim == 0:
        return xp.zeros((), dtype=np.int64)
    host = np.moveaxis(x.get() if hasattr(x, "get") else np.asarray(x), dim, -1)  # cupy: explicit copy
    flat = host.reshape(-1, host.shape[-1])
    idx = np.array([_mode_row(r) for r in flat], dtype=np.int64).reshape(host.shape[:-1] + (1,))
    return xp.asarray(np.moveaxis(idx, -1, dim))


mode_index = define_op(
    "mode_index", pattern=O, attrs={"dim": INT}, normalize=_dim_normalizer("mode"), infer=_index_infer,
    reference=_mode_index_ref, vjp=None, differentiable=False, method=False, function=False,
    lowering={"template": "mode"},
)

# ---- value-selecting composites ------------------------------------------------------------------


def _select(b: Any, x: Any, idx: Any, dim: int, keepdim: bool) -> tuple[Any, Any]:
    """Gather the values at ``idx`` (size 1 along dim) and drop the dim unless keepdim."""
    values = b.take_along_dim(x, idx, dim=dim)
    if not keepdim and x.shape:
        shape = reduced_shape(tuple(x.shape), (dim,), False)
        values, idx = b.reshape(values, shape=shape), b.reshape(idx, shape=shape)
    return values, idx


def _slice_dim(b: Any, t: Any, dim: int, start: int, stop: int) -> Any:
    index = (("slice", None, None, None),) * dim + (("slice", start, stop, None),)
    return b.getitem(t, index=index)


def _sort(b: Any, x: Any, dim: int, descending: bool, stable: bool) -> tuple[Any, Any]:
    idx = b.argsort(x, dim=dim, descending=descending, stable=stable)
    return b.take_along_dim(x, idx, dim=dim), idx


sort = define_composite(
    "sort", decompose=_sort, normalize=_dim_normalizer("sort"), num_outputs=2,
    attrs={"dim": (INT, -1), "descending": (BOOL_ATTR, False), "stable": (BOOL_ATTR, False)},
)


def _topk(b: Any, x: Any, k: int, dim: int, largest: bool, sorted: bool) -> tuple[Any, Any]:  # noqa: A002
    size = x.shape[dim] if x.shape else 1
    if not 0 <= k <= size:
        raise ArgumentError(f"topk: selected index k out of range (k={k}, size {size} along dim {dim})")
    idx = b.argsort(x, dim=dim, descending=largest, stable=True)
    if x.shape:
        idx = _slice_dim(b, idx, dim, 0, k)
    return b.take_along_dim(x, idx, dim=dim), idx


topk = define_composite(
    "topk", decompose=_topk, normalize=_dim_normalizer("topk"), num_outputs=2,
    attrs={"k": INT, "dim": (INT, -1), "largest": (BOOL_ATTR, True), "sorted": (BOOL_ATTR, True)},
)


def _kthvalue(b: Any, x: Any, k: int, dim: int, keepdim: bool) -> tuple[Any, Any]:
    size = x.shape[dim] if x.shape else 1
    if not 1 <= k <= size:
        raise ArgumentError(
            f"kthvalue(): selected number k out of range for dimension {dim} (k={k}, size {size})")
    idx = b.argsort(x, dim=dim, stable=True)
    if x.shape:
        idx = _slice_dim(b, idx, dim, k - 1, k)
    return _select(b, x, idx, dim, keepdim)


kthvalue = define_composite(
    "kthvalue", decompose=_kthvalue, normalize=_dim_normalizer("kthvalue"), num_outputs=2,
    attrs={"k": INT, "dim": (INT, -1), "keepdim": (BOOL_ATTR, False)},
)


def _median(b: Any, x: Any, dim: int | None, keepdim: bool) -> Any:
    """Without dim: the lower median of all elements (a tensor). With dim: (values, indices)."""
    if dim is None:
        if 0 in tuple(x.shape):
            return b.full(shape=(), value=float("nan"), dtype=x.dtype)
        flat = b.reshape(x, shape=(-1,))
        return _select(b, flat, b.median_index(flat, dim=0), 0, False)[0]
    return _select(b, x, b.median_index(x, dim=dim), dim, keepdim)


def _optional_dim(op: str) -> Any:
    def normalize(attrs: dict[str, Any], x: Any) -> dict[str, Any]:
        if attrs["dim"] is not None:
            attrs["dim"] = norm_dim(op, attrs["dim"], len(shape_of(x)))
        return attrs

    return normalize


median = define_composite("median", decompose=_median, normalize=_optional_dim("median"),
                          attrs={"dim": (optional(INT), None), "keepdim": (BOOL_ATTR, False)})

mode = define_composite(
    "mode", decompose=lambda b, x, dim, keepdim: _select(b, x, b.mode_index(x, dim=dim), dim, keepdim),
    normalize=_dim_normalizer("mode"), num_outputs=2, attrs={"dim": (INT, -1), "keepdim": (BOOL_ATTR, False)},
)

# ---- scans ----------------------------------------------------------------------------------------


def _scan_infer(x: Any, dim: int, dtype: Any) -> TensorType:
    out = dtype or (int64 if x.dtype.category in (BOOL, INTEGRAL) else x.dtype)
    return TensorType(shape_of(x), out)


def _scan_ref(np_name: str) -> Any:
    def ref(xp: Any, x: Any, dim: int, dtype: Any) -> Any:
        out_dt = dtype.np if dtype is not None else (x.dtype if x.dtype.kind == "f" else np.int64)
        if x.ndim == 0:
            return x.astype(out_dt)
        with np.errstate(all="ignore"):
            return getattr(xp, np_name)(x, axis=dim, dtype=out_dt)

    return ref


def _reverse_cumsum(b: Any, g: Any, dim: int) -> Any:
    """sum_{j >= i} g_j, as total - prefix + g (no flip op needed)."""
    if not g.shape:
        return g
    total = b.sum(g, dim=(dim,), keepdim=True)
    return b.add(b.sub(total, b.cumsum(g, dim=dim)), g)


def _cumprod_grad_dense(b: Any, g: Any, x: Any, dim: int, dtype: Any) -> Any:
    """sum_{j >= i} g_j prod_{m <= j, m != i} x_m for every i, with an (n, n) axis pair per slice: exact
    in value and in every derivative (PyTorch's O(n^2) path for higher-order gradients at zeros)."""
    nd, n = len(x.shape), x.shape[dim]
    xm = b.movedim(x, source=(dim,), destination=(nd - 1,))
    gm = b.movedim(g, source=(dim,), destination=(nd - 1,))
    ramp = b.cumsum(b.full(shape=(n,), value=1, dtype=x.dtype), dim=0)
    rows, cols = b.reshape(ramp, shape=(n, 1)), b.reshape(ramp, shape=(1, n))
    omit = b.where(b.eq(rows, cols), 1.0, b.unsqueeze(xm, dim=nd - 1))     # (..., i, m): x_m, 1 at m == i
    prods = b.cumprod(omit, dim=nd, dtype=dtype)                            # (..., i, j)
    terms = b.where(b.ge(cols, rows), b.mul(b.unsqueeze(gm, dim=nd - 1), prods), 0.0)
    return b.movedim(b.sum(terms, dim=(nd,), keepdim=False), source=(nd - 1,), destination=(dim,))


def _cumprod_vjp(b: Any, g: Any, out: Any, x: Any, dim: int, dtype: Any) -> list[Any]:
    """d/dx_i of sum_j g_j out_j, exact at zeros as PyTorch's: before the first zero of a slice it is
    sum_{j >= i} g_j out_j / x_i; at the first zero it is sum_{j >= i} g_j cumprod(x with that zero
    replaced by 1)_j (the product of every other factor); after it, every term holds that zero: 0.
    That O(n) form is exact in value only, so under create_graph the O(n^2) form is used."""
    if x.dtype.category != FLOATING:
        return [None]
    if not x.shape:
        return [b.cast_like(g, x)]
    if b.differentiates_result():
        return [b.cast_like(_cumprod_grad_dense(b, g, x, dim, dtype), x)]
    is_zero = b.eq(x, 0)
    zeros_so_far = b.cumsum(b.cast(is_zero, dtype=x.dtype), dim=dim)
    before = b.eq(zeros_so_far, 0)
    first = b.logical_and(is_zero, b.eq(zeros_so_far, 1))
    safe_x = b.where(is_zero, 1.0, x)
    plain = b.div(_reverse_cumsum(b, b.mul(g, out), dim), safe_x)
    others = b.cumprod(b.where(first, 1.0, x), dim=dim, dtype=dtype)
    at_zero = _reverse_cumsum(b, b.mul(g, b.where(before, 0.0, others)), dim)
    return [b.cast_like(b.where(before, plain, b.where(first, at_zero, 0.0)), x)]


_SCAN_ATTRS = {"dim": INT, "dtype": (optional(DTYPE), None)}

cumsum = define_op(
    "cumsum", pattern=O, attrs=dict(_SCAN_ATTRS), normalize=_dim_normalizer("cumsum"), infer=_scan_infer,
    reference=_scan_ref("cumsum"), saves=(),
    vjp=lambda b, g, out, x, dim, dtype: [b.cast_like(_reverse_cumsum(b, g, dim), x)],
    lowering={"template": "scan", "combine": "add"}, inplace=True,
)

cumprod = define_op(
    "cumprod", pattern=O, attrs=dict(_SCAN_ATTRS), normalize=_dim_normalizer("cumprod"), infer=_scan_infer,
    reference=_scan_ref("cumprod"), vjp=_cumprod_vjp, lowering={"template": "scan", "combine": "mul"},
    inplace=True,
)

__all__ = ["take_along_dim", "take_along_dim_backward", "argsort", "sort", "topk", "kthvalue", "median",
           "mode", "cumsum", "cumprod", "argsort_array"]
