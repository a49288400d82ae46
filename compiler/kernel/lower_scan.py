"""Lowering of scan groups (``cumsum``, ``cumprod``: ``lowering={"template": "scan", "combine": op}``).

Loops over every dim but the scanned one; inside, a running local is combined with each element
along the scanned dim and every output is stored at that position, so elementwise producers and
consumers fuse around the scan. When the scanned dim is not the innermost, the innermost dim is
vectorized with one running local per lane; otherwise the outermost dim runs in parallel.
"""

from __future__ import annotations

from typing import Any

from ember.compiler.kernel.builder import cast
from ember.compiler.kernel.group import FusionGroup, GroupNode
from ember.compiler.kernel.ir import Buffer, Declare, Loop, LoopKind, Reduce, Stmt, Store
from ember.compiler.kernel.values import Acc, Index, Value, flat_index
from ember.compiler.ops.registry import REGISTRY
from ember.runtime.errors import CompileError

__all__ = ["lower_scan_group"]


def _scan_step(group: FusionGroup, gi: int, ev: Any, op: str, acc: str, idx: Index) -> list[Stmt]:
    """At one position along the scan: fold the element into the running local, store every output."""
    from ember.compiler.kernel.lower import _index_in, sanitize

    node = group.nodes[gi]
    t = group.type_of(node.output)
    shape = tuple(t.shape)

    def on_scan(n: GroupNode) -> Value:
        raise CompileError(f"fusion group {group.name!r}: only one scan per group")

    for nd in group.nodes[:gi]:
        ev.node(nd)
    out: list[Stmt] = [Reduce(acc, op, cast(ev.values[node.inputs[0]].at(idx), t.dtype))]
    ev.values[node.output] = Acc(shape, t.dtype, acc)
    for nd in group.nodes[gi + 1:]:
        ev.node(nd, on_scan)
    for o in group.outputs:
        value = ev.values[o].at(_index_in(tuple(group.type_of(o).shape), shape, idx))
        out.append(Store(sanitize(o), flat_index(idx, shape), cast(value, group.type_of(o).dtype)))
    return out


def lower_scan_group(group: FusionGroup, gi: int, ev: Any, names: Any) -> tuple[list[Stmt], list[Buffer]]:
    """Statements of a scan group's kernel (no scratch buffers)."""
    from ember.compiler.kernel.lower import (
        PARALLEL_MIN_ELEMENTS,
        _nest,
        _vectorize_innermost,
        reduce_identity,
        sanitize,
    )

    node = group.nodes[gi]
    combine = REGISTRY[node.op].lowering.get("combine")
    op = combine if combine in ("add", "mul", "max", "min") else None
    if op is None:
        raise CompileError(f"op '{node.op}' has no kernel for the LLVM back end: unknown scan combine")
    shape = tuple(group.type_of(node.output).shape)
    dim = node.attrs["dim"] if shape else 0
    for o in group.outputs:
        if group.type_of(o).numel != group.type_of(node.output).numel:
            raise CompileError(f"fusion group {group.name!r}: output {o!r} is not shaped like the scan")
    t = group.type_of(node.output)
    acc = sanitize(node.output) + "_run"
    kept = tuple(n for d, n in enumerate(shape) if d != dim)
    size = shape[dim] if shape else 1

    def merge(k: Index, i: Any) -> Index:
        it = iter(k)
        return tuple(i if d == dim else next(it) for d in range(len(shape)))

    def body(kept_idx: Index) -> list[Stmt]:
        stmts: list[Stmt] = [Declare(acc, t.dtype, reduce_identity(op, t.dtype))]

        def along(i_idx: Index) -> list[Stmt]:
            return _scan_step(group, gi, ev, op, acc, merge(kept_idx, i_idx[0]) if shape else ())

        return [*stmts, *_nest((size,), names, along, "s")]

    loops = _nest(kept, names, body)
    if not loops or not kept:
        return loops, []
    if dim != len(shape) - 1 and shape[-1] >= 8:
        return _vectorize_innermost(loops, t.numel), []
    work = t.numel
    return [Loop(s.var, s.extent, s.body, LoopKind.PARALLEL)
            if isinstance(s, Loop) and work >= PARALLEL_MIN_ELEMENTS and s.extent >= 2 else s
            for s in loops], []
