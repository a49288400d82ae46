"""Symbolic tensor values used while lowering a fusion group: "element at index -> expression".

A value is asked for its element at an index (a tuple of int64 expressions, one per dim) and answers
with a kernel-IR expression. Three kinds:

* ``View``: a strided window on a buffer (group inputs, and movement ops applied to them). Movement
  ops on a view give a view (new strides/offset), exactly as numpy does, so ``x.permute(1, 0)`` or
  ``x[:, 1:]`` cost nothing and keep loads affine (vectorizable).
* ``Lazy``: anything else (an elementwise result, a movement op on a computed value): a function of
  the index. A reshape of a computed value re-linearizes the index with ``//`` and ``%``.
* ``Acc``: a reduction's accumulator, valid at the current position of the reduction's outer loops.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ember.compiler.dtypes import DType, bool_, int64
from ember.compiler.kernel.builder import iadd, ifloordiv, imod, imul
from ember.compiler.kernel.ir import Const, Expr, Load, Local
from ember.runtime.errors import CompileError

Index = tuple[Expr, ...]
ZERO = Const(0, int64)

__all__ = ["Acc", "Lazy", "View", "broadcast_to", "contiguous_strides", "flat_index", "gather", "movement",
           "unflatten"]


def contiguous_strides(shape: Sequence[int]) -> tuple[int, ...]:
    out, s = [], 1
    for n in reversed(shape):
        out.append(s)
        s *= n
    return tuple(reversed(out))


def flat_index(idx: Index, shape: Sequence[int]) -> Expr:
    """Row-major flat position of ``idx`` in ``shape``."""
    total: Expr = ZERO
    for i, st in zip(idx, contiguous_strides(shape)):
        total = iadd(total, imul(i, st))
    return total


def unflatten(flat: Expr, shape: Sequence[int]) -> Index:
    """The index in ``shape`` of row-major position ``flat``."""
    out = []
    for n, st in zip(shape, contiguous_strides(shape)):
        out.append(ZERO if n == 1 else imod(ifloordiv(flat, st), n))
    return tuple(out)


class Value:
    shape: tuple[int, ...]
    dtype: DType

    def at(self, idx: Index) -> Expr:
        raise NotImplementedError


@dataclass(frozen=True)
class View(Value):
    buffer: str
    shape: tuple[int, ...]
    dtype: DType
    strides: tuple[int, ...]
    offset: int = 0

    def at(self, idx: Index) -> Expr:
        off: Expr = Const(self.offset, int64)
        for i, st, n in zip(idx, self.strides, self.shape):
            if n != 1:
                off = iadd(off, imul(i, st))
        return Load(self.buffer, off, self.dtype)


@dataclass(frozen=True)
class Lazy(Value):
    shape: tuple[int, ...]
    dtype: DType
    fn: Callable[[Index], Expr]

    def at(self, idx: Index) -> Expr:
        return self.fn(idx)


@dataclass(frozen=True)
class Acc(Value):
    shape: tuple[int, ...]
    dtype: DType
    name: str

    def at(self, idx: Index) -> Expr:
        return Local(self.name, self.dtype)


# --------------------------------------------------------------------------------------------------
# movement


def broadcast_to(v: Value, shape: tuple[int, ...]) -> Value:
    """``v`` broadcast to ``shape`` (numpy rules; the caller has checked compatibility)."""
    if v.shape == shape:
        return v
    lead = len(shape) - len(v.shape)
    if isinstance(v, View):
        strides = (0,) * lead + tuple(0 if n == 1 and m != 1 else st
                                      for n, m, st in zip(v.shape, shape[lead:], v.strides))
        return View(v.buffer, shape, v.dtype, strides, v.offset)

    def fn(idx: Index) -> Expr:
        return v.at(tuple(ZERO if n == 1 else i for n, i in zip(v.shape, idx[lead:])))

    return Lazy(shape, v.dtype, fn)


def _reshape_strides(old_shape: Sequence[int], old_strides: Sequence[int],
                     new_shape: Sequence[int]) -> tuple[int, ...] | None:
    """Strides viewing ``old`` as ``new_shape`` without a copy, or None (numpy's no-copy rule)."""
    if 0 in old_shape:
        return contiguous_strides(new_shape)
    old = [(n, st) for n, st in zip(old_shape, old_strides) if n != 1]
    new_dims = [i for i, n in enumerate(new_shape) if n != 1]
    out = [0] * len(new_shape)
    oi = ni = 0
    while oi < len(old) and ni < len(new_dims):
        group_old, prod_old = [old[oi]], old[oi][0]
        group_new, prod_new = [new_dims[ni]], new_shape[new_dims[ni]]
        oi, ni = oi + 1, ni + 1
        while prod_old != prod_new:
            if prod_old < prod_new:
                group_old.append(old[oi])
                prod_old *= old[oi][0]
                oi += 1
            else:
                group_new.append(new_dims[ni])
                prod_new *= new_shape[new_dims[ni]]
                ni += 1
        for (_, st1), (n2, st2) in zip(group_old, group_old[1:]):
            if st1 != st2 * n2:
                return None
        st = group_old[-1][1]
        for j in reversed(group_new):
            out[j] = st
            st *= new_shape[j]
    return tuple(out)


def _reshape(v: Value, shape: tuple[int, ...]) -> Value:
    if isinstance(v, View):
        strides = _reshape_strides(v.shape, v.strides, shape)
        if strides is not None:
            return View(v.buffer, shape, v.dtype, strides, v.offset)
    return Lazy(shape, v.dtype, lambda idx: v.at(unflatten(flat_index(idx, shape), v.shape)))


def _permute(v: Value, dims: tuple[int, ...]) -> Value:
    shape = tuple(v.shape[d] for d in dims)
    if isinstance(v, View):
        return View(v.buffer, shape, v.dtype, tuple(v.strides[d] for d in dims), v.offset)
    inverse = [0] * len(dims)
    for i, d in enumerate(dims):
        inverse[d] = i
    return Lazy(shape, v.dtype, lambda idx: v.at(tuple(idx[inverse[d]] for d in range(len(dims)))))


def _slice_plan(v: Value, index: tuple[tuple[Any, ...], ...]) -> list[tuple[str, Any]]:
    """Expand an index description into per-input-dim actions: ("int", i) / ("slice", (start, step))
    / ("new",), skipping nothing; ellipsis expanded. Tensor items are refused."""
    items = list(index)
    used = sum(1 for it in items if it[0] in ("int", "slice"))
    if any(it[0] == "tensor" for it in items):
        raise CompileError("cannot lower op 'getitem': advanced (tensor) indexing has no fused kernel yet")
    plan: list[tuple[str, Any]] = []
    dim = 0
    for it in items:
        kind = it[0]
        if kind == "ellipsis":
            for _ in range(len(v.shape) - used):
                plan.append(("slice", (0, 1, v.shape[dim])))
                dim += 1
        elif kind == "none":
            plan.append(("new", None))
        elif kind == "int":
            n = v.shape[dim]
            plan.append(("int", it[1] % n if n else 0))
            dim += 1
        else:
            start, stop, step = slice(*it[1:]).indices(v.shape[dim])
            plan.append(("slice", (start, step, len(range(start, stop, step)))))
            dim += 1
    while dim < len(v.shape):
        plan.append(("slice", (0, 1, v.shape[dim])))
        dim += 1
    return plan


def _getitem(v: Value, index: Any, out_shape: tuple[int, ...]) -> Value:
    plan = _slice_plan(v, index)

    def source_index(idx: Index) -> Index:
        src: list[Expr] = []
        k = 0
        for kind, arg in plan:
            if kind == "int":
                src.append(Const(arg, int64))
            elif kind == "slice":
                start, step, _ = arg
                src.append(iadd(start, imul(idx[k], step)))
                k += 1
            else:
                k += 1
        return tuple(src)

    if isinstance(v, View):
        offset, strides, d = v.offset, [], 0
        for kind, arg in plan:
            if kind == "new":
                strides.append(0)
                continue
            if kind == "int":
                offset += arg * v.strides[d]
            else:
                offset += arg[0] * v.strides[d]
                strides.append(arg[1] * v.strides[d])
            d += 1
        return View(v.buffer, out_shape, v.dtype, tuple(strides), offset)
    return Lazy(out_shape, v.dtype, lambda idx: v.at(source_index(idx)))


def _row(index_value: Expr, n: int) -> Expr:
    """An int64 row number from index data: negative values wrap (as Python), then it is clamped to
    [0, n) so a bad index never reads outside the buffer (eager mode reports it)."""
    from ember.compiler.kernel.builder import cast
    from ember.compiler.kernel.ir import Binary, Select

    i = cast(index_value, int64)
    i = Select(Binary("lt", i, ZERO, bool_), iadd(i, n), i, int64)
    return Binary("max", Binary("min", i, Const(n - 1, int64), int64), ZERO, int64)


def gather(kind: str, x: Value, index: Value, attrs: dict[str, Any], out_shape: tuple[int, ...]) -> Value:
    """Data-dependent movement: ``gather_rows`` (embedding: rows of x picked by index) and ``gather``
    (take_along_dim: along ``attrs["dim"]``)."""
    if kind == "gather_rows":
        k = len(index.shape)

        def rows(idx: Index) -> Expr:
            return x.at((_row(index.at(idx[:k]), x.shape[0]), *idx[k:]))

        return Lazy(out_shape, x.dtype, rows)
    if kind == "gather":
        dim = attrs["dim"]

        def along(idx: Index) -> Expr:
            picked = list(idx)
            picked[dim] = _row(index.at(idx), x.shape[dim])
            return x.at(tuple(picked))

        return Lazy(out_shape, x.dtype, along)
    raise CompileError(f"unknown gather lowering {kind!r}")


def movement(kind: str, v: Value, attrs: dict[str, Any], out_shape: tuple[int, ...],
             extra: Sequence[Value] = (), dtype: DType | None = None) -> Value:
    """Apply a movement op (``lowering["index"]`` kind) to a symbolic value; ``extra`` are the op's
    other tensor operands (cat's tail, getitem's index tensors), ``dtype`` its result dtype. A kind
    ``"module:function"`` names an index map in ``compiler/kernel/<module>.py`` with this signature
    (``v, extra, attrs, out_shape, dtype``), as ``lower.TEMPLATE_LOWERINGS`` does for templates."""
    from ember.compiler.kernel.lower_index import INDEX_MAPS, index_map

    if ":" in kind:
        import importlib

        module, fn = kind.split(":")
        lowering = getattr(importlib.import_module(f"ember.compiler.kernel.{module}"), fn)
        return lowering(v, list(extra), attrs, out_shape, dtype or v.dtype)
    if kind in INDEX_MAPS or (kind == "getitem" and extra):
        return index_map(kind, v, list(extra), attrs, out_shape, dtype or v.dtype)
    if kind == "reshape":
        return _reshape(v, out_shape)
    if kind == "broadcast":
        return broadcast_to(v, out_shape)
    if kind == "permute":
        return _permute(v, tuple(attrs["dims"]))
    if kind == "getitem":
        return _getitem(v, attrs["index"], out_shape)
    raise CompileError(f"unknown movement lowering {kind!r}")
