"""Lowering of the order-based index ops: ``argsort`` (the "sort" template), ``median_index``
("select_k") and ``mode_index`` ("mode"), by counting.

Each element's rank along the dim is the number of elements that come before it in the stable order
(smaller, or equal and earlier; NaN counts as the largest value, as PyTorch). That is O(n^2) per row,
but it needs no scratch memory and no data-dependent control flow, its inner count is a vectorizable
reduction along a contiguous row, and rows are independent (the outermost loop runs in parallel), which
suits the short rows (class scores, top-k over a feature dim) these ops see inside models:

* ``argsort``: out[rank(i)] = i (ranks are distinct, so the stores never collide);
* ``median_index``: the i whose ascending rank is (n - 1) // 2, or the first NaN when the row holds one;
* ``mode_index``: the value with the largest count (the smallest among equally frequent ones), at its
  last occurrence.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ember.compiler.dtypes import BOOL, FLOATING, bool_, int64
from ember.compiler.kernel.builder import cast
from ember.compiler.kernel.group import FusionGroup
from ember.compiler.kernel.ir import (
    Assign,
    Binary,
    Buffer,
    Const,
    Declare,
    Expr,
    Local,
    Loop,
    LoopKind,
    Reduce,
    Select,
    Stmt,
    Store,
    Unary,
)
from ember.compiler.kernel.values import Index, Value, flat_index
from ember.runtime.errors import CompileError

__all__ = ["lower_mode_group", "lower_select_k_group", "lower_sort_group"]


def _b(op: str, a: Expr, b: Expr) -> Expr:
    return Binary(op, a, b, bool_)


class _Order:
    """Comparisons of the stable order over one dtype: NaN is the largest value and equals NaN."""

    def __init__(self, dtype: Any) -> None:
        self.is_float = dtype.category == FLOATING

    def _nan(self, a: Expr) -> Expr:
        return Unary("isnan", a, bool_)

    def less(self, a: Expr, b: Expr) -> Expr:
        if not self.is_float:
            return _b("lt", a, b)
        return _b("or", _b("lt", a, b), _b("and", self._nan(b), Unary("not", self._nan(a), bool_)))

    def tie(self, a: Expr, b: Expr) -> Expr:
        if not self.is_float:
            return _b("eq", a, b)
        return _b("or", _b("eq", a, b), _b("and", self._nan(a), self._nan(b)))


def _row_value(x: Value) -> Callable[[Index], Expr]:
    """Element reader; bool rows compare as integers."""
    if x.dtype.category == BOOL:
        return lambda idx: cast(x.at(idx), int64)
    return x.at


def _count(names: Any, n: int, acc: str, pred: Callable[[Expr], Expr], innermost: bool) -> list[Stmt]:
    """Declare ``acc`` and count the positions j in [0, n) where ``pred(j)`` holds."""
    from ember.compiler.kernel.lower import _nest, schedule

    one, zero = Const(1, int64), Const(0, int64)
    loop = _nest((n,), names, lambda j: [Reduce(acc, "add", Select(pred(j[0]), one, zero, int64))], "r")
    return [Declare(acc, int64, zero), *schedule(loop, 0, vectorize_reductions=innermost)]


def _prepare(group: FusionGroup, gi: int, ev: Any) -> tuple[Any, Value, int]:
    node = group.nodes[gi]
    if len(group.nodes) != gi + 1 or node.output not in group.outputs:
        raise CompileError(f"cannot lower op '{node.op}': its result must be the group's output")
    for nd_ in group.nodes[:gi]:
        ev.node(nd_)
    x = ev.operand(node.inputs[0])
    if not isinstance(x, Value) or not x.shape:
        raise CompileError(f"cannot lower op '{node.op}': expected a tensor of at least one dim")
    return node, x, node.attrs["dim"]


def _at_dim(idx: Index, dim: int, i: Expr) -> Index:
    return tuple(i if d == dim else e for d, e in enumerate(idx))


def _parallel(loops: list[Stmt], work: int) -> list[Stmt]:
    from ember.compiler.kernel.lower import PARALLEL_MIN_ELEMENTS

    return [Loop(s.var, s.extent, s.body, LoopKind.PARALLEL)
            if isinstance(s, Loop) and work >= PARALLEL_MIN_ELEMENTS and s.extent >= 2 else s for s in loops]


def lower_sort_group(group: FusionGroup, gi: int, ev: Any, names: Any) -> tuple[list[Stmt], list[Buffer]]:
    """``argsort``: every element stores its own position at its rank."""
    from ember.compiler.kernel.lower import _nest, sanitize

    node, x, dim = _prepare(group, gi, ev)
    shape, n = tuple(x.shape), x.shape[dim]
    order, read = _Order(x.dtype), _row_value(x)
    descending = node.attrs["descending"]
    out = sanitize(node.output)

    def body(idx: Index) -> list[Stmt]:
        i, xi = idx[dim], read(idx)
        acc = f"{out}_rank"

        def before(j: Expr) -> Expr:
            xj = read(_at_dim(idx, dim, j))
            first = order.less(xi, xj) if descending else order.less(xj, xi)
            return _b("or", first, _b("and", order.tie(xj, xi), _b("lt", j, i)))

        rank = Local(acc, int64)
        return [*_count(names, n, acc, before, dim == len(shape) - 1),
                Store(out, flat_index(_at_dim(idx, dim, rank), shape), cast(i, int64))]

    total = 1
    for s in shape:
        total *= s
    return _parallel(_nest(shape, names, body), total * n), []


def _per_row(group: FusionGroup, gi: int, x: Value, dim: int, names: Any,
             row: Callable[[Index, Callable[[Index], Expr], str], tuple[list[Stmt], Expr]]) -> list[Stmt]:
    """Loops over the kept positions (the dim at 0); ``row`` gives the statements and the result."""
    from ember.compiler.kernel.lower import _nest, sanitize

    node = group.nodes[gi]
    out = sanitize(node.output)
    out_shape = tuple(group.type_of(node.output).shape)

    def body(idx: Index) -> list[Stmt]:
        stmts, result = row(idx, _row_value(x), out)
        return [*stmts, Store(out, flat_index(idx, out_shape), result)]

    n = x.shape[dim]
    total = 1
    for s in x.shape:
        total *= s
    return _parallel(_nest(out_shape, names, body), total * n)


def lower_select_k_group(group: FusionGroup, gi: int, ev: Any, names: Any) -> tuple[list[Stmt], list[Buffer]]:
    """``median_index``: the lower median's position, or the row's first NaN."""
    from ember.compiler.kernel.lower import _nest

    _, x, dim = _prepare(group, gi, ev)
    n = x.shape[dim]
    order = _Order(x.dtype)

    def row(idx: Index, read: Callable[[Index], Expr], out: str) -> tuple[list[Stmt], Expr]:
        res, nan = f"{out}_med", f"{out}_nan"

        def each(i_: Index) -> list[Stmt]:
            i = i_[0]
            xi = read(_at_dim(idx, dim, i))

            def before(j: Expr) -> Expr:
                xj = read(_at_dim(idx, dim, j))
                return _b("or", order.less(xj, xi), _b("and", order.tie(xj, xi), _b("lt", j, i)))

            stmts = _count(names, n, f"{out}_rank", before, dim == len(x.shape) - 1)
            rank = Local(f"{out}_rank", int64)
            stmts.append(Assign(res, Select(_b("eq", rank, Const((n - 1) // 2, int64)), i, Local(res, int64),
                                            int64)))
            if order.is_float:
                fresh = _b("and", Unary("isnan", xi, bool_), _b("lt", Local(nan, int64), Const(0, int64)))
                stmts.append(Assign(nan, Select(fresh, i, Local(nan, int64), int64)))
            return stmts

        stmts: list[Stmt] = [Declare(res, int64, Const(0, int64)), Declare(nan, int64, Const(-1, int64))]
        stmts += _nest((n,), names, each, "s")
        found = _b("ge", Local(nan, int64), Const(0, int64))
        return stmts, Select(found, Local(nan, int64), Local(res, int64), int64)

    return _per_row(group, gi, x, dim, names, row), []


def lower_mode_group(group: FusionGroup, gi: int, ev: Any, names: Any) -> tuple[list[Stmt], list[Buffer]]:
    """``mode_index``: the most frequent value (smallest on a tie of counts), at its last occurrence."""
    from ember.compiler.kernel.lower import _nest

    _, x, dim = _prepare(group, gi, ev)
    n = x.shape[dim]
    order = _Order(x.dtype)
    vt = int64 if x.dtype.category == BOOL else x.dtype

    def row(idx: Index, read: Callable[[Index], Expr], out: str) -> tuple[list[Stmt], Expr]:
        best_c, best_v, best_i, cnt = f"{out}_bc", f"{out}_bv", f"{out}_bi", f"{out}_cnt"

        def each(i_: Index) -> list[Stmt]:
            i = i_[0]
            xi = read(_at_dim(idx, dim, i))
            stmts = _count(names, n, cnt, lambda j: order.tie(read(_at_dim(idx, dim, j)), xi),
                           dim == len(x.shape) - 1)
            c, bc, bv = Local(cnt, int64), Local(best_c, int64), Local(best_v, vt)
            not_larger = _b("or", order.less(xi, bv), order.tie(xi, bv))
            better = _b("or", _b("gt", c, bc), _b("and", _b("eq", c, bc), not_larger))
            return [*stmts, Assign(best_i, Select(better, i, Local(best_i, int64), int64)),
                    Assign(best_v, Select(better, xi, bv, vt)), Assign(best_c, Select(better, c, bc, int64))]

        stmts: list[Stmt] = [Declare(best_c, int64, Const(0, int64)), Declare(best_i, int64, Const(0, int64)),
                             Declare(best_v, vt, read(_at_dim(idx, dim, Const(0, int64))))]
        return [*stmts, *_nest((n,), names, each, "s")], Local(best_i, int64)

    return _per_row(group, gi, x, dim, names, row), []
