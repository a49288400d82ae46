"""Lowering of ``region_max_pool`` (adaptive and fractional max pooling; the "pool" template).

The op carries explicit (start, end) windows per output position and dim. Adaptive pooling's windows
follow ``start = floor(i * n / m)``, ``end = ceil((i + 1) * n / m)``, which the kernel computes with
integer arithmetic; any other window list (fractional pooling) becomes a chain of selects on the
output position. Per output element the loop runs over the largest window's taps, repeating the
window's last element past its end (as the reference does), so there is no bounds test. The maximum
starts at the window's first element and is replaced only by a strictly larger value or by the first
NaN, so the index is the first maximum with NaN counting as the maximum (PyTorch's rule). Values and
flat input-plane indices are stored when they are group outputs; elementwise nodes after the pool run
over the values in the same kernel.
"""

from __future__ import annotations

from typing import Any

from ember.compiler.dtypes import bool_, int64
from ember.compiler.kernel.builder import iadd, ifloordiv, imul
from ember.compiler.kernel.group import FusionGroup
from ember.compiler.kernel.ir import (
    Assign,
    Binary,
    Buffer,
    Const,
    Declare,
    Expr,
    Local,
    Select,
    Stmt,
    Store,
    Unary,
)
from ember.compiler.kernel.values import Index, Value, flat_index
from ember.runtime.errors import CompileError

__all__ = ["lower_region_pool_group", "window_bounds"]

Windows = tuple[tuple[int, int], ...]


def _table(i: Expr, values: list[int]) -> Expr:
    """values[i] for an output position i, as a chain of selects (the values are compile-time)."""
    out: Expr = Const(values[-1], int64)
    for k in range(len(values) - 2, -1, -1):
        if values[k] != values[k + 1]:
            out = Select(Binary("le", i, Const(k, int64), bool_), Const(values[k], int64), out, int64)
    return out


def window_bounds(i: Expr, windows: Windows, n: int) -> tuple[Expr, Expr]:
    """(start, end) of output position ``i``'s window along a dim of size ``n``."""
    m = len(windows)
    if all(w == (k * n // m, -(-(k + 1) * n // m)) for k, w in enumerate(windows)):
        return ifloordiv(imul(i, n), m), ifloordiv(iadd(imul(i, n), n + m - 1), m)
    return _table(i, [a for a, _ in windows]), _table(i, [e for _, e in windows])


def _window_max(x: Value, regions: tuple[Windows, ...], idx: Index, acc: str, arg: str,
                names: Any) -> list[Stmt]:
    """Declare the running max and its flat index at the window's first element, then the tap loops."""
    from ember.compiler.kernel.lower import _nest

    nd = len(regions)
    lead, pos = idx[:-nd], idx[-nd:]
    spatial = tuple(x.shape[-nd:])
    bounds = [window_bounds(p, w, n) for p, w, n in zip(pos, regions, spatial)]
    kmax = tuple(max(e - a for a, e in w) for w in regions)

    def element(where: list[Expr]) -> tuple[Expr, Expr]:
        return x.at((*lead, *where)), flat_index(tuple(where), spatial)

    first_v, first_i = element([a for a, _ in bounds])

    def tap(t: Index) -> list[Stmt]:
        where = [Binary("min", iadd(a, ti), iadd(e, -1), int64) for (a, e), ti in zip(bounds, t)]
        v, plane = element(where)
        cur = Local(acc, x.dtype)
        cur_ok = Unary("not", Unary("isnan", cur, bool_), bool_)
        nan_first = Binary("and", Unary("isnan", v, bool_), cur_ok, bool_)
        better = Binary("or", Binary("gt", v, cur, bool_), nan_first, bool_)
        return [Assign(arg, Select(better, plane, Local(arg, int64), int64)),
                Assign(acc, Select(better, v, cur, x.dtype))]

    return [Declare(acc, x.dtype, first_v), Declare(arg, int64, first_i), *_nest(kmax, names, tap, "k")]


def lower_region_pool_group(group: FusionGroup, gi: int, ev: Any,
                            names: Any) -> tuple[list[Stmt], list[Buffer]]:
    """Statements and scratch buffers of a ``region_max_pool`` group (see the module docstring)."""
    from ember.compiler.kernel.lower import (
        PARALLEL_MIN_ELEMENTS,
        _nest,
        _vectorize_innermost,
        sanitize,
        schedule,
    )
    from ember.compiler.kernel.lower_gemm import lower_rest, result_buffer

    node = group.nodes[gi]
    values, indices = node.outputs
    if group.users(indices):
        raise CompileError("op 'region_max_pool': its indices can only be a group output (no fused consumer)")
    for nd_ in group.nodes[:gi]:
        ev.node(nd_)
    x = ev.operand(node.inputs[0])
    if not isinstance(x, Value) or x.dtype.name not in ("float16", "float32", "float64"):
        raise CompileError("cannot lower op 'region_max_pool': expected a float tensor input")
    scratch: list[Buffer] = []
    out_shape = tuple(group.type_of(values).shape)
    c_name = result_buffer(group, values, scratch)
    acc, arg = sanitize(values) + "_acc", sanitize(indices) + "_arg"
    want_arg = indices in group.outputs

    def body(idx: Index) -> list[Stmt]:
        stmts = _window_max(x, node.attrs["regions"], idx, acc, arg, names)
        stmts.append(Store(c_name, flat_index(idx, out_shape), Local(acc, x.dtype)))
        if want_arg:
            stmts.append(Store(sanitize(indices), flat_index(idx, out_shape), Local(arg, int64)))
        return stmts

    n = 1
    for s in out_shape:
        n *= s
    loops = _nest(out_shape, names, body)
    if loops and out_shape and out_shape[-1] >= 8:
        loops = _vectorize_innermost(loops, n)
    elif loops and n >= PARALLEL_MIN_ELEMENTS:
        loops = schedule(loops, n, vectorize_reductions=False)
    return loops + lower_rest(group, ev, names, values, c_name, gi + 1, (indices,)), scratch
