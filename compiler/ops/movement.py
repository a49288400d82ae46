"""Movement ops: reshape, expand, permute and indexing. In eager mode they return views that share
memory with their input, as PyTorch's do; in the graph they are injective and fuse into consumers."""

from __future__ import annotations

from typing import Any

from ember.compiler.ops.registry import ANY, BOOL, INTS, AttrKind, Pattern, TensorType, define_composite, define_op
from ember.compiler.ops.rules import norm_dim, shape_of
from ember.runtime.errors import ArgumentError, ShapeError

I = Pattern.INJECTIVE


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


# ---- reshape ------------------------------------------------------------------------------------


def _reshape_normalize(attrs: dict[str, Any], x: Any) -> dict[str, Any]:
    shape = attrs["shape"]
    n = _numel(shape_of(x))
    if shape.count(-1) > 1:
        raise ShapeError("reshape: only one dimension can be inferred (-1)")
    if any(s < -1 for s in shape):
        raise ShapeError(f"reshape: invalid shape dimension in {list(shape)}")
    if -1 in shape:
        known = _numel(tuple(s for s in shape if s != -1))
        if known == 0 or n % known:
            raise ShapeError(f"shape '{list(shape)}' is invalid for input of size {n}")
        shape = tuple(n // known if s == -1 else s for s in shape)
    if _numel(shape) != n:
        raise ShapeError(f"shape '{list(shape)}' is invalid for input of size {n}")
    attrs["shape"] = shape
    return attrs


reshape = define_op(
    "reshape", pattern=I, attrs={"shape": INTS}, normalize=_reshape_normalize,
    infer=lambda x, shape: TensorType(shape, x.dtype),
    reference=lambda xp, x, shape: xp.reshape(x, shape),
    vjp=lambda b, g, out, x, shape: [b.reshape(g, shape=tuple(x.shape))],
    saves=(), view=True, method=False, lowering={"index": "reshape"},
)

# ---- expand -------------------------------------------------------------------------------------


def _expand_normalize(attrs: dict[str, Any], x: Any) -> dict[str, Any]:
    shape, xs = attrs["shape"], shape_of(x)
    if len(shape) < len(xs):
        raise ShapeError(
            f"expand: the number of sizes provided ({len(shape)}) must be greater or equal to the number"
            f" of dimensions in the tensor ({len(xs)})"
        )
    lead = len(shape) - len(xs)
    out = []
    for i, s in enumerate(shape):
        if i < lead:
            if s < 0:
                raise ShapeError(f"expand: -1 is not allowed in a leading, non-existing dimension ({list(shape)})")
            out.append(s)
            continue
        have = xs[i - lead]
        if s == -1:
            s = have
        if have != s and have != 1:
            raise ShapeError(
                f"The expanded size of the tensor ({s}) must match the existing size ({have}) at non-singleton"
                f" dimension {i}.  Target sizes: {list(shape)}.  Tensor sizes: {list(xs)}"
            )
        out.append(s)
    attrs["shape"] = tuple(out)
    return attrs


expand = define_op(
    "expand", pattern=Pattern.BROADCAST, attrs={"shape": INTS}, normalize=_expand_normalize,
    infer=lambda x, shape: TensorType(shape, x.dtype),
    reference=lambda xp, x, shape: xp.broadcast_to(x, shape),
    vjp=lambda b, g, out, x, shape: [b.sum_to(g, x)],
    saves=(), view=True, method=False, lowering={"index": "broadcast"},
)

# ---- permute ------------------------------------------------------------------------------------


def _permute_normalize(attrs: dict[str, Any], x: Any) -> dict[str, Any]:
    nd = len(shape_of(x))
    dims = tuple(norm_dim("permute", d, nd) for d in attrs["dims"])
    if sorted(dims) != list(range(nd)):
        raise ShapeError(
            f"permute(sparse_coo): number of dimensions in the tensor input does not match the length of the"
            f" desired ordering of dimensions i.e. input.dim() = {nd} is not equal to len(dims) = {len(dims)}"
            if len(dims) != nd else f"permute: repeated dim in {list(attrs['dims'])}"
        )
    attrs["dims"] = dims
    return attrs


def _inverse_perm(dims: tuple[int, ...]) -> tuple[int, ...]:
    inv = [0] * len(dims)
    for i, d in enumerate(dims):
        inv[d] = i
    return tuple(inv)


permute = define_op(
    "permute", pattern=I, attrs={"dims": INTS}, normalize=_permute_normalize,
    infer=lambda x, dims: TensorType(tuple(shape_of(x)[d] for d in dims), x.dtype),
    reference=lambda xp, x, dims: xp.transpose(x, dims),
    vjp=lambda b, g, out, x, dims: [b.permute(g, dims=_inverse_perm(dims))],
    saves=(), view=True, method=False, lowering={"index": "permute"},
)

# ---- indexing -----------------------------------------------------------------------------------
# An index is a tuple of items: ("int", i) | ("slice", start, stop, step) | ("none",) | ("ellipsis",)
# | ("tensor",). Tensor items take the op's extra inputs in order (advanced indexing).


def _check_index(v: Any) -> tuple[tuple[Any, ...], ...]:
    items = tuple(tuple(item) for item in v)
    for item in items:
        if not item or item[0] not in ("int", "slice", "none", "ellipsis", "tensor"):
            raise ValueError(f"bad index item {item!r}")
    return items


INDEX = AttrKind("an index description", _check_index)


def to_numpy_index(index: tuple[tuple[Any, ...], ...], arrays: tuple[Any, ...]) -> tuple[Any, ...]:
    out: list[Any] = []
    tensors = iter(arrays)
    for item in index:
        kind = item[0]
        if kind == "int":
            out.append(item[1])
        elif kind == "slice":
            out.append(slice(*item[1:]))
        elif kind == "none":
            out.append(None)
        elif kind == "ellipsis":
            out.append(Ellipsis)
        else:
            out.append(next(tensors))
    return tuple(out)


def _index_shape(x: Any, index: Any, idx_inputs: tuple[Any, ...]) -> tuple[int, ...]:
    """Result shape of indexing, computed on a zero-strided stand-in so no data is touched."""
    import numpy as np

    shape = shape_of(x)
    probe = np.lib.stride_tricks.as_strided(np.zeros(1, np.int8), shape=shape, strides=(0,) * len(shape))
    stand_ins = tuple(
        np.zeros(shape_of(t), dtype=np.bool_ if t.dtype.name == "bool" else np.int64) for t in idx_inputs
    )
    try:
        return probe[to_numpy_index(index, stand_ins)].shape
    except IndexError as e:
        from ember.runtime.errors import DimError

        raise DimError(f"index {_describe(index)} is out of range for a tensor of shape {list(shape)}: {e}") from None


def _describe(index: Any) -> str:
    parts = []
    for item in index:
        if item[0] == "int":
            parts.append(str(item[1]))
        elif item[0] == "slice":
            a, b, c = item[1:]
            parts.append(f"{'' if a is None else a}:{'' if b is None else b}" + ("" if c in (None, 1) else f":{c}"))
        else:
            parts.append({"none": "None", "ellipsis": "...", "tensor": "<tensor>"}[item[0]])
    return "[" + ", ".join(parts) + "]"


def _getitem_infer(x: Any, *idx: Any, index: Any) -> TensorType:
    return TensorType(_index_shape(x, index, idx), x.dtype)


def _getitem_ref(xp: Any, x: Any, *idx: Any, index: Any) -> Any:
    return x[to_numpy_index(index, idx)]


def _getitem_vjp(b: Any, g: Any, out: Any, x: Any, *idx: Any, index: Any) -> list[Any]:
    zeros = b.full(shape=tuple(x.shape), value=0.0, dtype=g.dtype)
    return [b.index_put(zeros, g, *idx, index=index, accumulate=True)] + [None] * len(idx)


getitem = define_op(
    "getitem", pattern=I, inputs=("input", "*indices"), attrs={"index": INDEX},
    infer=_getitem_infer, reference=_getitem_ref, vjp=_getitem_vjp, saves=("*",),
    view=True, method=False, function=False, lowering={"index": "getitem"},
)


def _index_put_infer(x: Any, values: Any, *idx: Any, index: Any, accumulate: bool) -> TensorType:
    target = _index_shape(x, index, idx)
    from ember.compiler.ops.rules import broadcast_shapes

    vs = shape_of(values)
    if broadcast_shapes("index_put", target, vs) != target:
        raise ShapeError(f"shape mismatch: value tensor of shape {list(vs)} cannot be broadcast to indexing"
                         f" result of shape {list(target)}")
    return TensorType(shape_of(x), x.dtype)


def _index_put_ref(xp: Any, x: Any, values: Any, *idx: Any, index: Any, accumulate: bool) -> Any:
    out = x.copy()
    where = to_numpy_index(index, idx)
    if accumulate:
        xp.add.at(out, where, values)
    else:
        out[where] = values
    return out


def _index_put_vjp(b: Any, g: Any, out: Any, x: Any, values: Any, *idx: Any, index: Any,
                   accumulate: bool) -> list[Any]:
    gx = g if accumulate else b.index_put(g, 0.0, *idx, index=index, accumulate=False)
    gv = b.sum_to(b.getitem(g, *idx, index=index), values) if hasattr(values, "shape") else None
    return [gx, gv] + [None] * len(idx)


index_put = define_op(
    "index_put", pattern=Pattern.OPAQUE, inputs=("input", "values", "*indices"),
    attrs={"index": INDEX, "accumulate": (BOOL, False)},
    infer=_index_put_infer, reference=_index_put_ref, vjp=_index_put_vjp, saves=("*",),
    method=False, function=False, lowering={"template": "scatter"},
)

# ---- composites ---------------------------------------------------------------------------------


def _transpose(b: Any, x: Any, dim0: int, dim1: int) -> Any:
    nd = len(x.shape)
    if nd == 0:
        return x
    d0, d1 = norm_dim("transpose", dim0, nd), norm_dim("transpose", dim1, nd)
    dims = list(range(nd))
    dims[d0], dims[d1] = dims[d1], dims[d0]
    return b.permute(x, dims=tuple(dims))


transpose = define_composite("transpose", decompose=_transpose, attrs={"dim0": ANY, "dim1": ANY})

__all__ = ["reshape", "expand", "permute", "getitem", "index_put", "transpose", "to_numpy_index"]
