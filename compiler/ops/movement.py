"""Movement ops: reshape, expand, permute and indexing. In eager mode they return views that share
memory with their input, as PyTorch's do; in the graph they are injective and fuse into consumers."""

from __future__ import annotations

from typing import Any

from ember.compiler.ops.registry import (
    ANY,
    BOOL,
    INT,
    INTS,
    AttrKind,
    Pattern,
    TensorType,
    define_composite,
    define_op,
    optional,
)
from ember.compiler.ops.rules import norm_dim, norm_dims, shape_of
from ember.runtime.errors import ArgumentError, DimError, ShapeError

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
        if known == 0:
            raise ShapeError(
                f"cannot reshape tensor of {n} elements into shape {list(shape)} because the"
                " unspecified dimension size -1 can be any value and is ambiguous"
            )
        if n % known:
            raise ShapeError(f"shape '{list(shape)}' is invalid for input of size {n}")
        shape = tuple(n // known if s == -1 else s for s in shape)
    if _numel(shape) != n:
        raise ShapeError(f"shape '{list(shape)}' is invalid for input of size {n}")
    attrs["shape"] = shape
    return attrs


reshape = define_op(
    "reshape",
    pattern=I,
    attrs={"shape": INTS},
    normalize=_reshape_normalize,
    infer=lambda x, shape: TensorType(shape, x.dtype),
    reference=lambda xp, x, shape: xp.reshape(x, shape),
    vjp=lambda b, g, out, x, shape: [b.reshape(g, shape=tuple(x.shape))],
    saves=(),
    view=True,
    method=False,
    lowering={"index": "reshape"},
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
                raise ShapeError(
                    f"expand: -1 is not allowed in a leading, non-existing dimension ({list(shape)})"
                )
            out.append(s)
            continue
        have = xs[i - lead]
        if s == -1:
            s = have
        if have != s and have != 1:
            raise ShapeError(
                f"The expanded size of the tensor ({s}) must match the existing size ({have}) at"
                f" non-singleton dimension {i}.  Target sizes: {list(shape)}.  Tensor sizes: {list(xs)}"
            )
        out.append(s)
    attrs["shape"] = tuple(out)
    return attrs


expand = define_op(
    "expand",
    pattern=Pattern.BROADCAST,
    attrs={"shape": INTS},
    normalize=_expand_normalize,
    infer=lambda x, shape: TensorType(shape, x.dtype),
    reference=lambda xp, x, shape: xp.broadcast_to(x, shape),
    vjp=lambda b, g, out, x, shape: [b.sum_to(g, x)],
    saves=(),
    view=True,
    method=False,
    lowering={"index": "broadcast"},
)

# ---- permute ------------------------------------------------------------------------------------


def _permute_normalize(attrs: dict[str, Any], x: Any) -> dict[str, Any]:
    nd = len(shape_of(x))
    dims = tuple(norm_dim("permute", d, nd) for d in attrs["dims"])
    if sorted(dims) != list(range(nd)):
        raise ShapeError(
            f"permute(sparse_coo): number of dimensions in the tensor input does not match the length of the"
            f" desired ordering of dimensions i.e. input.dim() = {nd} is not equal to len(dims) = {len(dims)}"
            if len(dims) != nd
            else f"permute: repeated dim in {list(attrs['dims'])}"
        )
    attrs["dims"] = dims
    return attrs


def _inverse_perm(dims: tuple[int, ...]) -> tuple[int, ...]:
    inv = [0] * len(dims)
    for i, d in enumerate(dims):
        inv[d] = i
    return tuple(inv)


permute = define_op(
    "permute",
    pattern=I,
    attrs={"dims": INTS},
    normalize=_permute_normalize,
    infer=lambda x, dims: TensorType(tuple(shape_of(x)[d] for d in dims), x.dtype),
    reference=lambda xp, x, dims: xp.transpose(x, dims),
    vjp=lambda b, g, out, x, dims: [b.permute(g, dims=_inverse_perm(dims))],
    saves=(),
    view=True,
    method=False,
    lowering={"index": "permute"},
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
    stand_ins = tuple(_stand_in(t) for t in idx_inputs)
    try:
        return probe[to_numpy_index(index, stand_ins)].shape
    except IndexError as e:
        from ember.runtime.errors import DimError

        raise DimError(
            f"index {_describe(index)} is out of range for a tensor of shape {list(shape)}: {e}"
        ) from None


def _stand_in(t: Any) -> Any:
    """Integer indices only matter by shape; a bool mask's shape depends on its values (eager only)."""
    import numpy as np

    if t.dtype.name != "bool":
        return np.zeros(shape_of(t), dtype=np.int64)
    data = getattr(t, "_data", None)
    if data is None:
        raise ShapeError("indexing with a bool mask has a data-dependent shape: it needs concrete values")
    return data if isinstance(data, np.ndarray) else data.get()


def _describe(index: Any) -> str:
    parts = []
    for item in index:
        if item[0] == "int":
            parts.append(str(item[1]))
        elif item[0] == "slice":
            a, b, c = item[1:]
            parts.append(
                f"{'' if a is None else a}:{'' if b is None else b}" + ("" if c in (None, 1) else f":{c}")
            )
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
    "getitem",
    pattern=I,
    inputs=("input", "*indices"),
    attrs={"index": INDEX},
    infer=_getitem_infer,
    reference=_getitem_ref,
    vjp=_getitem_vjp,
    saves=("*",),
    view=True,
    method=False,
    function=False,
    lowering={"index": "getitem"},
)


def _index_put_infer(x: Any, values: Any, *idx: Any, index: Any, accumulate: bool) -> TensorType:
    target = _index_shape(x, index, idx)
    from ember.compiler.ops.rules import broadcast_shapes

    vs = shape_of(values)
    try:
        fits = broadcast_shapes("index_put", target, vs) == target
    except ShapeError:
        fits = False
    if not fits:
        raise ShapeError(
            f"shape mismatch: value tensor of shape {list(vs)} cannot be broadcast to indexing"
            f" result of shape {list(target)}"
        )
    return TensorType(shape_of(x), x.dtype)


def _index_put_ref(xp: Any, x: Any, values: Any, *idx: Any, index: Any, accumulate: bool) -> Any:
    out = x.copy()
    where = to_numpy_index(index, idx)
    if accumulate and not idx:  # basic indexing never repeats a position: a plain += is exact and fast
        out[where] += values
    elif accumulate:
        xp.add.at(out, where, values)
    else:
        out[where] = values
    return out


def _index_put_vjp(
    b: Any, g: Any, out: Any, x: Any, values: Any, *idx: Any, index: Any, accumulate: bool
) -> list[Any]:
    gx = g if accumulate else b.index_put(g, 0.0, *idx, index=index, accumulate=False)
    gv = b.sum_to(b.getitem(g, *idx, index=index), values) if hasattr(values, "shape") else None
    return [gx, gv] + [None] * len(idx)


index_put = define_op(
    "index_put",
    pattern=Pattern.OPAQUE,
    inputs=("input", "values", "*indices"),
    attrs={"index": INDEX, "accumulate": (BOOL, False)},
    infer=_index_put_infer,
    reference=_index_put_ref,
    vjp=_index_put_vjp,
    saves=("*",),
    method=False,
    function=False,
    lowering={"template": "scatter"},
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


transpose = define_composite("transpose", decompose=_transpose, attrs={"dim0": INT, "dim1": INT})


def _squeeze(b: Any, x: Any, dim: tuple[int, ...] | None) -> Any:
    shape = tuple(x.shape)
    dims = norm_dims("squeeze", dim, len(shape))
    return b.reshape(x, shape=tuple(s for i, s in enumerate(shape) if not (i in dims and s == 1)))


squeeze = define_composite("squeeze", decompose=_squeeze, attrs={"dim": (optional(INTS), None)})


def _unsqueeze(b: Any, x: Any, dim: int) -> Any:
    shape = tuple(x.shape)
    d = norm_dim("unsqueeze", dim, len(shape) + 1)
    return b.reshape(x, shape=shape[:d] + (1,) + shape[d:])


unsqueeze = define_composite("unsqueeze", decompose=_unsqueeze, attrs={"dim": INT})


def _slice_index(nd: int, dim: int, item: tuple[Any, ...]) -> tuple[tuple[Any, ...], ...]:
    """An index description that applies ``item`` at ``dim`` and keeps every other dim whole."""
    return tuple(item if i == dim else ("slice", None, None, None) for i in range(nd))


def _narrow(b: Any, x: Any, dim: int, start: int, length: int) -> Any:
    shape = tuple(x.shape)
    if not shape:
        raise ShapeError("narrow() cannot be applied to a 0-dim tensor.")
    d = norm_dim("narrow", dim, len(shape))
    size = shape[d]
    if not -size <= start <= size:
        raise DimError(f"start out of range (expected to be in range of [{-size}, {size}], but got {start})")
    start = start % size if start < 0 else start
    if length < 0 or start + length > size:
        raise ShapeError(f"start ({start}) + length ({length}) exceeds dimension size ({size}).")
    return b.getitem(x, index=_slice_index(len(shape), d, ("slice", start, start + length, None)))


narrow = define_composite("narrow", decompose=_narrow, attrs={"dim": INT, "start": INT, "length": INT})


def _select(b: Any, x: Any, dim: int, index: int) -> Any:
    shape = tuple(x.shape)
    if not shape:
        raise DimError("select() cannot be applied to a 0-dim tensor.")
    d = norm_dim("select", dim, len(shape))
    if not -shape[d] <= index < shape[d]:
        raise DimError(
            f"select(): index {index} out of range for tensor of size {list(shape)} at dimension {d}"
        )
    return b.getitem(x, index=_slice_index(len(shape), d, ("int", index)))


select = define_composite("select", decompose=_select, attrs={"dim": INT, "index": INT})


def _split_sizes(op: str, size: int, split_size: Any, dim: int) -> list[int]:
    """Section lengths of ``split``: an int is a chunk length (the last may be shorter), a list is exact."""
    if isinstance(split_size, (list, tuple)):
        sizes = [int(s) for s in split_size]
        if any(s < 0 for s in sizes) or sum(sizes) != size:
            raise ShapeError(
                f"split_with_sizes expects split_sizes to sum exactly to {size} (input tensor's"
                f" size at dimension {dim}), but got split_sizes={sizes}"
            )
        return sizes
    step = int(split_size)
    if step < 0:
        raise ArgumentError(f"{op} expects split_size be non-negative, but got split_size={step}")
    if step == 0 and size != 0:
        raise ArgumentError(
            f"split_size can only be 0 if dimension size is 0, but got dimension size of {size}"
        )
    if size == 0:
        return [0]
    return [min(step, size - i) for i in range(0, size, step)]


def _sections(b: Any, x: Any, d: int, sizes: list[int]) -> tuple[Any, ...]:
    out, start = [], 0
    for n in sizes:
        out.append(b.getitem(x, index=_slice_index(len(x.shape), d, ("slice", start, start + n, None))))
        start += n
    return tuple(out)


def _split(b: Any, x: Any, split_size_or_sections: Any, dim: int) -> tuple[Any, ...]:
    shape = tuple(x.shape)
    if not shape:
        raise ShapeError("split expects at least a 1-dimensional tensor")
    d = norm_dim("split", dim, len(shape))
    return _sections(b, x, d, _split_sizes("split", shape[d], split_size_or_sections, d))


split = define_composite("split", decompose=_split, attrs={"split_size_or_sections": ANY, "dim": (INT, 0)})


def _chunk(b: Any, x: Any, chunks: int, dim: int) -> tuple[Any, ...]:
    shape = tuple(x.shape)
    if not shape:
        raise ShapeError("chunk expects at least a 1-dimensional tensor")
    if chunks <= 0:
        raise ArgumentError(f"chunk expects `chunks` to be greater than 0, got: {chunks}")
    d = norm_dim("chunk", dim, len(shape))
    if shape[d] == 0:
        return _sections(b, x, d, [0] * chunks)
    step = -(-shape[d] // chunks)  # ceil: PyTorch may return fewer than `chunks` pieces
    return _sections(b, x, d, _split_sizes("chunk", shape[d], step, d))


chunk = define_composite("chunk", decompose=_chunk, attrs={"chunks": INT, "dim": (INT, 0)})


def _unbind(b: Any, x: Any, dim: int) -> tuple[Any, ...]:
    shape = tuple(x.shape)
    if not shape:
        raise DimError("unbind: Dimension specified as 0 but tensor has no dimensions")
    d = norm_dim("unbind", dim, len(shape))
    return tuple(b.getitem(x, index=_slice_index(len(shape), d, ("int", i))) for i in range(shape[d]))


unbind = define_composite("unbind", decompose=_unbind, attrs={"dim": (INT, 0)})


def _movedim(b: Any, x: Any, source: tuple[int, ...], destination: tuple[int, ...]) -> Any:
    nd = len(x.shape)
    if len(source) != len(destination):
        raise ArgumentError(
            f"movedim: Invalid source or destination dims: source ({list(source)} dims) should"
            f" contain the same number of dims as destination ({list(destination)} dims)"
        )
    norm_dims("movedim", source, nd)  # raises on repeated dims
    norm_dims("movedim", destination, nd)
    src = tuple(norm_dim("movedim", s, nd) for s in source)
    dst = tuple(norm_dim("movedim", s, nd) for s in destination)
    rest = iter(i for i in range(nd) if i not in src)
    placed = dict(zip(dst, src))
    return b.permute(x, dims=tuple(placed[i] if i in placed else next(rest) for i in range(nd)))


movedim = define_composite("movedim", decompose=_movedim, attrs={"source": INTS, "destination": INTS})


def _repeat(b: Any, x: Any, repeats: tuple[int, ...]) -> Any:
    shape = tuple(x.shape)
    if len(repeats) < len(shape):
        raise ShapeError(
            "Number of dimensions of repeat dims can not be smaller than number of dimensions of tensor"
        )
    if any(r < 0 for r in repeats):
        raise ArgumentError(f"Trying to create tensor with negative dimension: {list(repeats)}")
    shape = (1,) * (len(repeats) - len(shape)) + shape
    # (s0, s1) -> (1, s0, 1, s1) -> expand (r0, s0, r1, s1) -> (r0*s0, r1*s1): a copy, never a view
    paired = tuple(v for s in shape for v in (1, s))
    wide = tuple(v for r, s in zip(repeats, shape) for v in (r, s))
    y = b.expand(b.reshape(x, shape=paired), shape=wide)
    return b.reshape(b.clone(y), shape=tuple(r * s for r, s in zip(repeats, shape)))


repeat = define_composite("repeat", decompose=_repeat, attrs={"repeats": INTS}, function=False)

# ---- flip and roll: copies in PyTorch ----------------------------------


def _dims_normalize(op: str):
    def normalize(attrs: dict[str, Any], x: Any) -> dict[str, Any]:
        attrs["dims"] = norm_dims(op, attrs["dims"], len(shape_of(x)))
        return attrs

    return normalize


def _flip(b: Any, x: Any, dims: tuple[int, ...]) -> Any:
    # a negative-step slice is a view; PyTorch's flip is a copy, hence the clone
    index = tuple(
        ("slice", None, None, -1) if i in dims else ("slice", None, None, None) for i in range(len(x.shape))
    )
    return b.clone(b.getitem(x, index=index))


flip = define_composite("flip", decompose=_flip, attrs={"dims": INTS}, normalize=_dims_normalize("flip"))


def _roll_normalize(attrs: dict[str, Any], x: Any) -> dict[str, Any]:
    shifts, dims = attrs["shifts"], attrs["dims"]
    nd = len(shape_of(x))
    if dims is None:
        if len(shifts) != 1:
            raise ArgumentError(f"roll: shifts {list(shifts)} need dims of the same length")
        attrs["dims"] = None
        return attrs
    if len(shifts) != len(dims):
        raise ArgumentError(f"shifts and dimensions must align. shifts: {len(shifts)}, dims:{len(dims)}")
    attrs["dims"] = tuple(norm_dim("roll", d, nd) for d in dims)
    return attrs


def _roll_ref(xp: Any, x: Any, shifts: tuple[int, ...], dims: tuple[int, ...] | None) -> Any:
    if dims is None:
        return xp.roll(x.reshape(-1), shifts[0]).reshape(x.shape)
    return xp.roll(x, shifts, dims)


roll = define_op(
    "roll",
    pattern=I,
    attrs={"shifts": INTS, "dims": (optional(INTS), None)},
    normalize=_roll_normalize,
    infer=lambda x, shifts, dims: TensorType(shape_of(x), x.dtype),
    reference=_roll_ref,
    vjp=lambda b, g, out, x, shifts, dims: [b.roll(g, shifts=tuple(-s for s in shifts), dims=dims)],
    saves=(),
    lowering={"index": "roll"},
)

__all__ = [
    "reshape",
    "expand",
    "permute",
    "getitem",
    "index_put",
    "transpose",
    "to_numpy_index",
    "squeeze",
    "unsqueeze",
    "narrow",
    "select",
    "split",
    "chunk",
    "unbind",
    "movedim",
    "repeat",
    "flip",
    "roll",
]
