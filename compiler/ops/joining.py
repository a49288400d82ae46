"""Joining and gathering ops: cat (the one joining primitive), stack, gather, scatter, index_select,
masked_fill.

``cat`` must be a primitive: its gradient splits the incoming gradient back into the pieces, and a back
end has to see it whole to write each input into its slot of the output. ``stack`` is ``cat`` of
unsqueezed inputs. ``gather``/``scatter`` are primitives with their own kernels (an index map and a
scatter template); ``index_select`` and ``masked_fill`` compose ``getitem`` and ``where``.
"""

from __future__ import annotations

from typing import Any

from ember.compiler.dtypes import INTEGRAL, bool_, result_type
from ember.compiler.ops.registry import INT, Pattern, TensorType, define_composite, define_op
from ember.compiler.ops.rules import broadcast_shapes, is_tensor, norm_dim, shape_of
from ember.runtime.errors import ArgumentError, DimError, DTypeError, ShapeError

# ---- cat ------------------------------------------------------------------------------------------


def _is_legacy_empty(x: Any) -> bool:
    """PyTorch skips 1-d empty tensors in cat whatever the other shapes are (legacy behaviour)."""
    return shape_of(x) == (0,)


def _cat_normalize(attrs: dict[str, Any], *tensors: Any) -> dict[str, Any]:
    if not tensors:
        raise ArgumentError("torch.cat(): expected a non-empty list of Tensors")
    for i, t in enumerate(tensors):
        if not is_tensor(t):
            raise ArgumentError(
                f"cat(): expected a sequence of Tensors, got {type(t).__name__} at position {i}"
            )
        if not shape_of(t):
            raise ShapeError(f"zero-dimensional tensor (at position {i}) cannot be concatenated")
    ref = next((t for t in tensors if not _is_legacy_empty(t)), tensors[0])
    attrs["dim"] = norm_dim("cat", attrs["dim"], len(shape_of(ref)))
    return attrs


def _cat_infer(*tensors: Any, dim: int) -> TensorType:
    kept = [(i, shape_of(t)) for i, t in enumerate(tensors) if not _is_legacy_empty(t)]
    dtype = result_type(*tensors)
    if not kept:
        return TensorType((0,), dtype)
    first = kept[0][1]
    total = 0
    for i, s in kept:
        if len(s) != len(first):
            raise ShapeError(
                f"torch.cat(): Tensors must have same number of dimensions: got {len(first)} and {len(s)}"
            )
        for d, (a, c) in enumerate(zip(first, s)):
            if d != dim and a != c:
                raise ShapeError(
                    f"Sizes of tensors must match except in dimension {dim}. Expected size {a} but"
                    f" got size {c} for tensor number {i} in the list."
                )
        total += s[dim]
    return TensorType(first[:dim] + (total,) + first[dim + 1 :], dtype)


def _cat_ref(xp: Any, *arrays: Any, dim: int) -> Any:
    kept = [a for a in arrays if a.shape != (0,)] or list(arrays[:1])
    dtype = xp.result_type(*kept) if len(kept) > 1 else kept[0].dtype
    return xp.concatenate([a.astype(dtype, copy=False) for a in kept], axis=dim)


def _cat_vjp(b: Any, g: Any, out: Any, *tensors: Any, dim: int) -> list[Any]:
    grads: list[Any] = []
    start = 0
    nd = len(g.shape)
    for t in tensors:
        if _is_legacy_empty(t) and nd != 1:
            grads.append(None)
            continue
        n = t.shape[dim]
        index = tuple(
            ("slice", start, start + n, None) if i == dim else ("slice", None, None, None) for i in range(nd)
        )
        grads.append(b.cast_like(b.getitem(g, index=index), t))
        start += n
    return grads


cat = define_op(
    "cat",
    pattern=Pattern.INJECTIVE,
    inputs=("*tensors",),
    attrs={"dim": (INT, 0)},
    normalize=_cat_normalize,
    infer=_cat_infer,
    reference=_cat_ref,
    vjp=_cat_vjp,
    saves=(),
    method=False,
    lowering={"index": "concat"},
)


def _stack(b: Any, *tensors: Any, dim: int) -> Any:
    if not tensors:
        raise ArgumentError("stack expects a non-empty TensorList")
    first = tuple(tensors[0].shape)
    for i, t in enumerate(tensors[1:], 1):
        if tuple(t.shape) != first:
            raise ShapeError(
                f"stack expects each tensor to be equal size, but got {list(first)} at entry 0 and"
                f" {list(t.shape)} at entry {i}"
            )
    d = norm_dim("stack", dim, len(first) + 1)
    return b.cat(*(b.unsqueeze(t, dim=d) for t in tensors), dim=d)


stack = define_composite(
    "stack", decompose=_stack, inputs=("*tensors",), attrs={"dim": (INT, 0)}, method=False
)

# ---- gather / scatter -------------------------------------------------------------------------------


def _check_index_tensor(op: str, index: Any) -> None:
    if index.dtype.category != INTEGRAL:
        raise DTypeError(f"{op}(): Expected dtype int64 for index, got {index.dtype}")


def _gather_infer(x: Any, index: Any, dim: int) -> TensorType:
    _check_index_tensor("gather", index)
    xs, js = shape_of(x), shape_of(index)
    if len(js) != len(xs) and not (len(js) <= 1 and len(xs) <= 1):
        raise ShapeError("Index tensor must have the same number of dimensions as input tensor")
    for d, (a, c) in enumerate(zip(xs, js)):
        if d != dim and c > a:
            raise ShapeError(
                f"Size does not match at dimension {d} expected index {list(js)} to be no larger"
                f" than self {list(xs)} apart from dimension {dim}"
            )
    return TensorType(js, x.dtype)


def _grid(xp: Any, index: Any, dim: int) -> tuple[Any, ...]:
    """Full advanced-index tuple addressing ``out[i][j][index[i][j]]`` (for dim=2) for every index cell."""
    grids = list(xp.indices(index.shape, sparse=True))
    grids[dim] = index
    return tuple(grids)


def _check_bounds(xp: Any, index: Any, size: int, dim: int) -> None:
    if index.size and (int(index.min()) < -size or int(index.max()) >= size):
        bad = int(index.max()) if int(index.max()) >= size else int(index.min())
        raise DimError(f"index {bad} is out of bounds for dimension {dim} with size {size}")


def _gather_ref(xp: Any, x: Any, index: Any, dim: int) -> Any:
    if x.ndim == 0 or index.ndim == 0:  # 0-d and 1-d operands mix freely, as in PyTorch
        flat = x.reshape(-1)
        _check_bounds(xp, index, flat.shape[0], dim)
        return flat[index.reshape(-1)].reshape(index.shape)
    _check_bounds(xp, index, x.shape[dim], dim)
    return x[_grid(xp, index, dim)]


gather = define_op(
    "gather",
    pattern=Pattern.INJECTIVE,
    inputs=("input", "index"),
    attrs={"dim": INT},
    normalize=lambda attrs, x, index: {"dim": norm_dim("gather", attrs["dim"], len(shape_of(x)))},
    infer=_gather_infer,
    reference=_gather_ref,
    vjp=lambda b, g, out, x, index, dim: [
        b.scatter_add(b.full(shape=tuple(x.shape), value=0, dtype=g.dtype), index, g, dim=dim),
        None,
    ],
    saves=(1,),
    lowering={"index": "gather"},
)


def _scatter_infer(x: Any, index: Any, src: Any, dim: int) -> TensorType:
    _check_index_tensor("scatter", index)
    xs, js = shape_of(x), shape_of(index)
    if len(js) != len(xs) and not (len(js) <= 1 and len(xs) <= 1):
        raise ShapeError("Index tensor must have the same number of dimensions as self tensor")
    if is_tensor(src):
        ss = shape_of(src)
        if len(ss) != len(js) and not (len(js) <= 1 and len(ss) <= 1):
            raise ShapeError("Index tensor must have the same number of dimensions as src tensor")
        if any(c > s for c, s in zip(js, ss)):
            raise ShapeError(
                f"Expected index {list(js)} to be no larger than src {list(ss)} in every dimension"
            )
    for d, (a, c) in enumerate(zip(xs, js)):
        if d != dim and c > a:
            raise ShapeError(
                f"Expected index {list(js)} to be no larger than self {list(xs)} apart from dimension {dim}"
            )
    return TensorType(xs, x.dtype)


def _scatter_ref(accumulate: bool):
    def ref(xp: Any, x: Any, index: Any, src: Any, dim: int) -> Any:
        out = x.copy()
        flat = out.reshape(1) if out.ndim == 0 else out
        idx = index.reshape(-1) if index.ndim == 0 else index
        _check_bounds(xp, idx, flat.shape[dim], dim)
        where = _grid(xp, idx, dim)
        if hasattr(src, "shape") and src.ndim:
            vals = src[tuple(slice(0, n) for n in idx.shape)]
        else:
            vals = xp.asarray(src).reshape(-1)[0] if hasattr(src, "shape") else src
        vals = xp.broadcast_to(xp.asarray(vals, dtype=out.dtype), idx.shape)
        if accumulate:
            xp.add.at(flat, where, vals)
        else:
            flat[where] = vals
        return out

    return ref


def _src_grad(b: Any, g: Any, index: Any, src: Any, dim: int) -> Any:
    if not is_tensor(src):
        return None
    gs = b.gather(g, index, dim=dim)
    if tuple(gs.shape) != tuple(src.shape):  # src may be larger than index: the rest got no gradient
        pad = b.full(shape=tuple(src.shape), value=0, dtype=gs.dtype)
        slots = tuple(("slice", 0, n, None) for n in gs.shape)
        gs = b.index_put(pad, gs, index=slots, accumulate=False)
    return b.cast_like(gs, src)


scatter = define_op(
    "scatter",
    pattern=Pattern.OPAQUE,
    inputs=("input", "index", "src"),
    attrs={"dim": INT},
    normalize=lambda attrs, x, *_: {"dim": norm_dim("scatter", attrs["dim"], len(shape_of(x)))},
    infer=_scatter_infer,
    reference=_scatter_ref(False),
    vjp=lambda b, g, out, x, index, src, dim: [
        b.scatter(g, index, 0.0, dim=dim),
        None,
        _src_grad(b, g, index, src, dim),
    ],
    saves=(1,),
    method=False,
    inplace=False,
    lowering={"template": "scatter"},
)

scatter_add = define_op(
    "scatter_add",
    pattern=Pattern.OPAQUE,
    inputs=("input", "index", "src"),
    attrs={"dim": INT},
    normalize=lambda attrs, x, *_: {"dim": norm_dim("scatter_add", attrs["dim"], len(shape_of(x)))},
    infer=_scatter_infer,
    reference=_scatter_ref(True),
    vjp=lambda b, g, out, x, index, src, dim: [g, None, _src_grad(b, g, index, src, dim)],
    saves=(1,),
    method=False,
    inplace=False,
    lowering={"template": "scatter"},
)

# ---- composites over getitem and where -----------------------------------------------------------------


def _index_select(b: Any, x: Any, index: Any, dim: int) -> Any:
    if index.dtype.category != INTEGRAL:
        raise DTypeError(f"index_select(): Expected dtype int32/int64 for index, got {index.dtype}")
    if len(index.shape) > 1:
        raise ShapeError("index_select(): Index is supposed to be a vector")
    nd = len(x.shape)
    d = norm_dim("index_select", dim, nd)
    if nd == 0:
        return b.reshape(
            b.getitem(b.reshape(x, shape=(1,)), b.reshape(index, shape=(-1,)), index=(("tensor",),)), shape=()
        )
    spec = tuple(("tensor",) if i == d else ("slice", None, None, None) for i in range(nd))
    return b.getitem(x, b.reshape(index, shape=(-1,)), index=spec)


index_select = define_composite(
    "index_select", decompose=_index_select, inputs=("input", "index"), attrs={"dim": INT}
)


def _masked_fill(b: Any, x: Any, mask: Any, value: Any) -> Any:
    if mask.dtype is not bool_:
        raise DTypeError(f"masked_fill_ only supports boolean masks, but got mask with dtype {mask.dtype}")
    if is_tensor(value) and len(value.shape) != 0:
        raise ShapeError(
            "masked_fill_ only supports a 0-dimensional value tensor, but got tensor with"
            f" {len(value.shape)} dimension(s)."
        )
    shape = tuple(x.shape)
    if broadcast_shapes("masked_fill", shape, tuple(mask.shape)) != shape:
        raise ShapeError(
            f"masked_fill: mask of shape {list(mask.shape)} cannot be broadcast to the input's"
            f" shape {list(shape)}"
        )
    if is_tensor(value) and value.dtype is not x.dtype:
        value = b.cast(value, dtype=x.dtype)
    out = b.where(mask, value, x)
    return b.cast(out, dtype=x.dtype) if out.dtype is not x.dtype else out


masked_fill = define_composite(
    "masked_fill", decompose=_masked_fill, inputs=("input", "mask", "value"), inplace=True
)


def _overwrite(b: Any, x: Any, src: Any) -> Any:
    """``src`` broadcast to ``x``'s shape and cast to its dtype: what ``copy_``/``fill_`` write into ``x``."""
    if is_tensor(src) and src.dtype is not x.dtype:
        src = b.cast(src, dtype=x.dtype)
    out = b.where(b.full(shape=(), value=True, dtype=bool_), src, x)
    return b.cast(out, dtype=x.dtype) if out.dtype is not x.dtype else out


overwrite = define_composite(
    "overwrite", decompose=_overwrite, inputs=("input", "src"), method=False, function=False
)

__all__ = ["overwrite", "cat", "stack", "gather", "scatter", "scatter_add", "index_select", "masked_fill"]
