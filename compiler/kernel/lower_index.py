"""Index-map lowerings of movement ops beyond views: ``cat``, ``roll``, ``one_hot`` and ``getitem`` with
tensor (advanced) indices.

Each is a pure index map (output element -> which operand element, or a comparison for one_hot), so
it stays a symbolic ``Lazy`` value that fuses with its producers and consumers like any movement op,
instead of a template with its own loop nest:

* ``cat``: out[.., i, ..] is input k at i - offset_k, chosen with a chain of selects on i. Every
  operand's index is clamped into its own range, because a select evaluates both sides and the loads
  of the operands not chosen must stay inside their buffers.
* ``roll``: (i - shift) mod n along each rolled dim (or over the flat index when dims is None).
* ``one_hot``: out[.., c] = (index[..] == c) as int64.
* advanced ``getitem``: numpy's rules (the reference is numpy indexing): integer index tensors are
  broadcast together; their dims replace the indexed dims in place when the advanced items (tensors,
  and ints next to them) are adjacent, else they come first. Index values wrap when negative and are
  clamped, as embedding's, so a bad index never reads outside the buffer (eager mode reports it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ember.compiler.dtypes import BOOL, bool_, int64
from ember.compiler.kernel.builder import cast, iadd, imod, imul
from ember.compiler.kernel.ir import Binary, Const, Expr, Select
from ember.compiler.kernel.values import ZERO, Index, Lazy, Value, _row, flat_index, unflatten
from ember.runtime.errors import CompileError

__all__ = ["INDEX_MAPS", "getitem_source", "index_map"]


def _clamp(i: Expr, n: int) -> Expr:
    return Binary("max", Binary("min", i, Const(n - 1, int64), int64), ZERO, int64)


def concat(parts: list[Value], attrs: dict[str, Any], out_shape: tuple[int, ...], dtype: Any) -> Value:
    """``cat`` along ``attrs["dim"]``; legacy empty (0,) operands and empty slices contribute nothing."""
    dim = attrs["dim"]
    kept = [p for p in parts if p.shape != (0,) and p.shape[dim] != 0] if out_shape else parts
    if not kept:
        raise CompileError(f"cannot lower op 'cat': every operand is empty (result {list(out_shape)})")
    offsets, total = [], 0
    for p in kept:
        offsets.append(total)
        total += p.shape[dim]

    def at(idx: Index) -> Expr:
        i = idx[dim]
        value: Expr | None = None
        for p, off in reversed(list(zip(kept, offsets))):
            local = list(idx)
            local[dim] = _clamp(iadd(i, -off), p.shape[dim]) if len(kept) > 1 else iadd(i, -off)
            elem = cast(p.at(tuple(local)), dtype)
            inside = Binary("lt", i, Const(off + p.shape[dim], int64), bool_)
            value = elem if value is None else Select(inside, elem, value, dtype)
        assert value is not None
        return value

    return Lazy(out_shape, dtype, at)


def roll(v: Value, attrs: dict[str, Any], out_shape: tuple[int, ...]) -> Value:
    """``roll``: every rolled dim reads (i - shift) mod n; with dims None the flat index is rolled."""
    shifts, dims = attrs["shifts"], attrs["dims"]
    if dims is None:
        n = 1
        for s in v.shape:
            n *= s
        back = (-shifts[0]) % n if n else 0

        def flat_roll(idx: Index) -> Expr:
            return v.at(unflatten(imod(iadd(flat_index(idx, v.shape), back), n), v.shape))

        return Lazy(out_shape, v.dtype, flat_roll)
    back_by_dim: dict[int, int] = {}
    for s, d in zip(shifts, dims):
        back_by_dim[d] = (back_by_dim.get(d, 0) - s) % max(v.shape[d], 1)

    def rolled(idx: Index) -> Expr:
        return v.at(tuple(imod(iadd(i, back_by_dim[d]), v.shape[d]) if back_by_dim.get(d) else i
                          for d, i in enumerate(idx)))

    return Lazy(out_shape, v.dtype, rolled)


def one_hot(v: Value, attrs: dict[str, Any], out_shape: tuple[int, ...]) -> Value:
    """``one_hot``: the last output dim is the class; the element is 1 where the index equals it."""
    if v.dtype.category == BOOL:
        raise CompileError("cannot lower op 'one_hot': expected an integer index tensor")

    def at(idx: Index) -> Expr:
        return cast(Binary("eq", cast(v.at(idx[:-1]), int64), idx[-1], bool_), int64)

    return Lazy(out_shape, int64, at)


# ---- advanced getitem --------------------------------------------------------------------------------


def _expand(index: tuple[tuple[Any, ...], ...], ndim: int) -> list[tuple[Any, ...]]:
    """The index items with the ellipsis expanded and trailing full slices added."""
    used = sum(1 for it in index if it[0] in ("int", "slice", "tensor"))
    items: list[tuple[Any, ...]] = []
    for it in index:
        if it[0] == "ellipsis":
            items += [("slice", None, None, None)] * (ndim - used)
        else:
            items.append(it)
    consumed = sum(1 for it in items if it[0] != "none")
    return items + [("slice", None, None, None)] * (ndim - consumed)


def _broadcast(shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
    nd = max(len(s) for s in shapes)
    out = []
    for d in range(nd):
        sizes = {s[d - nd + len(s)] for s in shapes if d - nd + len(s) >= 0} - {1}
        out.append(sizes.pop() if sizes else 1)
    return tuple(out)


def getitem_source(shape: tuple[int, ...], tensors: list[Value], index: tuple[tuple[Any, ...], ...],
                   out_shape: tuple[int, ...]) -> Callable[[Index], Index]:
    """For ``x[index]`` with ``x`` of ``shape``: result position -> position in ``x`` (numpy's rules,
    see the module docstring; ints count as advanced items only when there are index tensors)."""
    if any(t.dtype.category == BOOL for t in tensors):
        raise CompileError("cannot lower op 'getitem': a bool mask index has a data-dependent shape")
    items = _expand(index, len(shape))
    adv = [k for k, it in enumerate(items) if it[0] == "tensor" or (tensors and it[0] == "int")]
    bshape = _broadcast([t.shape for t in tensors]) if tensors else ()
    first = adv[0] if adv and adv == list(range(adv[0], adv[-1] + 1)) else None  # adjacent: in place
    # the output dims: ("adv", -1) for the broadcast block, ("basic", item position) for the others
    layout: list[tuple[str, int]] = [] if first is not None or not adv else [("adv", -1)]
    for k, it in enumerate(items):
        if k == first:
            layout.append(("adv", -1))
        if it[0] in ("slice", "none"):
            layout.append(("basic", k))
    got = sum(len(bshape) if kind == "adv" else 1 for kind, _ in layout)
    if got != len(out_shape):
        raise CompileError(f"cannot lower op 'getitem': index layout of {got} dims does not match the result "
                           f"shape {list(out_shape)}")

    def source(idx: Index) -> Index:
        pos: dict[int, Expr] = {}
        block: Index = ()
        d = 0
        for kind, k in layout:
            if kind == "adv":
                block, d = idx[d:d + len(bshape)], d + len(bshape)
            else:
                pos[k], d = idx[d], d + 1
        src: list[Expr] = []
        tens = iter(tensors)
        for k, it in enumerate(items):
            if it[0] == "none":
                continue
            n = shape[len(src)]
            if it[0] == "int":
                src.append(Const(it[1] % n if n else 0, int64))
            elif it[0] == "tensor":
                t = next(tens)
                lead = len(bshape) - len(t.shape)
                src.append(_row(t.at(tuple(ZERO if m == 1 else i for m, i in zip(t.shape, block[lead:]))), n))
            else:
                start, _, step = slice(*it[1:]).indices(n)
                src.append(iadd(start, imul(pos[k], step)))
        return tuple(src)

    return source


INDEX_MAPS = ("concat", "roll", "one_hot")


def index_map(kind: str, v: Value, extra: list[Value], attrs: dict[str, Any], out_shape: tuple[int, ...],
              dtype: Any) -> Value:
    """Dispatch of the index maps above (called from ``values.movement``)."""
    if kind == "concat":
        return concat([v, *extra], attrs, out_shape, dtype)
    if kind == "roll":
        return roll(v, attrs, out_shape)
    if kind == "one_hot":
        return one_hot(v, attrs, out_shape)
    if kind == "getitem":
        source = getitem_source(tuple(v.shape), extra, attrs["index"], out_shape)
        return Lazy(out_shape, v.dtype, lambda idx: v.at(source(idx)))
    raise CompileError(f"unknown movement lowering {kind!r}")
