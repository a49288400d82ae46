"""Lowering of ``max_unpool`` (the "scatter" template): max pooling's gradient.

``out[plane p, indices[p, j]] (+)= x[p, j]`` over the flat last ``nd`` dims. The output is zeroed first
(a parallel, vectorized loop), then every input element is added (``accumulate``) or written into its
plane position. Planes are disjoint, so the outermost plane loop runs in parallel; within a plane the
loop is serial on purpose, since overlapping pooling windows send several elements to the same position
and two vector lanes adding into one element would lose an update. Elementwise nodes after the scatter run
over its result in the same kernel.
"""

from __future__ import annotations

from typing import Any

from ember.compiler.dtypes import int64
from ember.compiler.kernel.builder import iadd, imul
from ember.compiler.kernel.group import FusionGroup
from ember.compiler.kernel.ir import Binary, Buffer, Const, Load, Loop, LoopKind, Stmt, Store
from ember.compiler.kernel.lower_gemm import lower_rest, result_buffer
from ember.compiler.kernel.values import Index, Value, flat_index
from ember.runtime.errors import CompileError

__all__ = ["lower_scatter_group"]


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def lower_scatter_group(group: FusionGroup, gi: int, ev: Any, names: Any) -> tuple[list[Stmt], list[Buffer]]:
    """Statements and scratch buffers of a ``max_unpool`` group's kernel (see the module docstring)."""
    from ember.compiler.kernel.lower import PARALLEL_MIN_ELEMENTS, _nest, schedule

    node = group.nodes[gi]
    if node.op != "max_unpool":
        raise CompileError(f"op '{node.op}' has no kernel for the LLVM back end (scatter template)")
    for nd_ in group.nodes[:gi]:
        ev.node(nd_)
    x, ind = (ev.operand(v) for v in node.inputs)
    if not isinstance(x, Value) or not isinstance(ind, Value) or x.dtype.name not in ("float32", "float64"):
        raise CompileError("cannot lower op 'max_unpool': expected a float tensor and int64 indices")
    scratch: list[Buffer] = []
    out_shape = tuple(group.type_of(node.output).shape)
    nd = len(node.attrs["output_size"])
    plane = _numel(out_shape[-nd:])
    lead = tuple(x.shape[:-nd])
    c_name = result_buffer(group, node.output, scratch)
    zero = Const(0.0, x.dtype)

    def clear(idx: Index) -> list[Stmt]:
        return [Store(c_name, flat_index(idx, out_shape), zero)]

    def scatter(idx: Index) -> list[Stmt]:
        base = imul(flat_index(idx[:-nd], lead), plane) if lead else Const(0, int64)
        target = iadd(base, ind.at(idx))
        value = x.at(idx)
        if node.attrs["accumulate"]:
            value = Binary("add", Load(c_name, target, x.dtype), value, x.dtype)
        return [Store(c_name, target, value)]

    stmts = schedule(_nest(out_shape, names, clear, "z"), _numel(out_shape))
    body = _nest(tuple(x.shape), names, scatter, "s")
    work = _numel(tuple(x.shape))
    if lead and lead[0] > 1 and work >= PARALLEL_MIN_ELEMENTS and body and isinstance(body[0], Loop):
        first = body[0]
        body = [Loop(first.var, first.extent, first.body, LoopKind.PARALLEL)]
    stmts += body
    stmts += lower_rest(group, ev, names, node.output, c_name, gi + 1)
    return stmts, scratch
