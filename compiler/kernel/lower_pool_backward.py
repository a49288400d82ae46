"""Lowering of ``avg_pool_backward`` (the "pool_backward" template): average pooling's gradient.

Written as a gather, so every input-gradient element is computed by one iteration and the loops run in
parallel without atomics: ``dx[..., pos] = sum over taps t of g[..., o] / divisor(o)`` where, per dim,
``o = (pos + pad - t) / stride`` when that division is exact and ``0 <= o < out`` (the output windows
that cover ``pos``). The divisor is the forward's (``lower_pool._divisor``), so ``count_include_pad``,
``ceil_mode`` windows and ``divisor_override`` mean the same in both directions. Elementwise nodes after
it run over the result in the same kernel.
"""

from __future__ import annotations

from typing import Any

from ember.compiler.dtypes import bool_, int64
from ember.compiler.kernel.builder import iadd
from ember.compiler.kernel.group import FusionGroup
from ember.compiler.kernel.ir import Binary, Buffer, Const, Declare, Expr, Local, Reduce, Select, Stmt, Store
from ember.compiler.kernel.lower_gemm import lower_rest, result_buffer
from ember.compiler.kernel.lower_pool import _divisor
from ember.compiler.kernel.values import ZERO, Index, Value, flat_index
from ember.runtime.errors import CompileError

__all__ = ["lower_pool_backward_group"]


def _i(v: int) -> Const:
    return Const(v, int64)


def _and(a: Expr | None, b: Expr) -> Expr:
    return b if a is None else Binary("and", a, b, bool_)


def lower_pool_backward_group(group: FusionGroup, gi: int, ev: Any,
                              names: Any) -> tuple[list[Stmt], list[Buffer]]:
    """Statements and scratch buffers of an ``avg_pool_backward`` group (see the module docstring)."""
    from ember.compiler.kernel.lower import _nest, sanitize, schedule

    node = group.nodes[gi]
    if node.op != "avg_pool_backward":
        raise CompileError(f"op '{node.op}' has no kernel for the LLVM back end (pool_backward template)")
    for nd_ in group.nodes[:gi]:
        ev.node(nd_)
    g = ev.operand(node.inputs[0])
    if not isinstance(g, Value) or g.dtype.name not in ("float32", "float64"):
        raise CompileError("cannot lower op 'avg_pool_backward': expected a float gradient")
    attrs = node.attrs
    nd = len(attrs["kernel_size"])
    out_shape = tuple(group.type_of(node.output).shape)
    spatial, gout = tuple(attrs["input_size"]), tuple(g.shape[-nd:])
    scratch: list[Buffer] = []
    c_name = result_buffer(group, node.output, scratch)
    acc = sanitize(node.output) + "_acc"

    def body(idx: Index) -> list[Stmt]:
        lead, pos = idx[:-nd], idx[-nd:]

        def tap(t: Index) -> list[Stmt]:
            valid: Expr | None = None
            where: list[Expr] = []
            for i in range(nd):
                at = Binary("sub", iadd(pos[i], attrs["padding"][i]), t[i], int64)
                q = Binary("max", at, ZERO, int64)
                s = attrs["stride"][i]
                o = Binary("floordiv", q, _i(s), int64) if s > 1 else q
                valid = _and(valid, Binary("ge", at, ZERO, bool_))
                if s > 1:
                    valid = _and(valid, Binary("eq", Binary("mod", q, _i(s), int64), ZERO, bool_))
                valid = _and(valid, Binary("lt", o, _i(gout[i]), bool_))
                where.append(Binary("min", o, _i(gout[i] - 1), int64))
            div = _divisor(tuple(where), attrs, spatial, g.dtype)
            share = Binary("div", g.at((*lead, *where)), div, g.dtype)
            assert valid is not None
            return [Reduce(acc, "add", Select(valid, share, Const(0.0, g.dtype), g.dtype))]

        return [Declare(acc, g.dtype, Const(0.0, g.dtype)),
                *_nest(tuple(attrs["kernel_size"]), names, tap, "k"),
                Store(c_name, flat_index(idx, out_shape), Local(acc, g.dtype))]

    n = 1
    for s_ in out_shape:
        n *= s_
    stmts = schedule(_nest(out_shape, names, body, "i"), n, vectorize_reductions=False)
    stmts += lower_rest(group, ev, names, node.output, c_name, gi + 1)
    return stmts, scratch
