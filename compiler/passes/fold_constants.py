"""``fold_constants``: a node whose operands are all constants is computed now, through the op's reference
implementation (the interpreter's ``run_node``, so the result is exactly what the graph would compute),
and becomes a constant.

Size limit: a folded result larger than ``FOLD_LIMIT_BYTES`` is only made when it is no larger than the
constants it reads (``w * s`` replaces ``w``; an ``expand`` of a scalar to a huge tensor stays a node), so
folding never multiplies the memory a graph holds. Ops with no operands and an opaque pattern (possible
sources of randomness) are never evaluated.

``freeze_parameters`` turns parameters and buffers whose data the graph holds (``graph.bindings``) into
constants of the same name: the frozen inference pipeline runs it first, so weight preparation (e.g. the
folded batch norm's ``W * s``) is done once, at compile time.

Before::

    %c = constant dense<[1.0, 4.0]> : float32[2]
    %0 = sqrt(%c) : float32[2]
    %1 = mul(%x, %0) : float32[2]

After::

    %c = constant dense<[1.0, 2.0]> : float32[2]   (named fold0)
    %0 = mul(%x, %fold0) : float32[2]
"""

from __future__ import annotations

from typing import Any

import numpy as np
from ember.compiler.ir.graph import Graph, GraphBuilder, Value
from ember.compiler.ir.interpreter import run_node
from ember.compiler.ops.registry import Pattern
from ember.compiler.passes._rewrite import Rewriter
from ember.compiler.passes.dce import eliminate_dead_code

FOLD_LIMIT_BYTES = 1 << 20


def _host(data: Any) -> np.ndarray:
    if hasattr(data, "_host"):
        return data._host()
    return np.asarray(getattr(data, "_data", data))


def _fresh(taken: set[str], stem: str) -> str:
    k = 0
    while f"{stem}{k}" in taken:
        k += 1
    taken.add(f"{stem}{k}")
    return f"{stem}{k}"


def fold_constants(graph: Graph) -> tuple[Graph, bool, dict[str, Any]]:
    rw = Rewriter(graph)
    data: dict[int, Any] = {id(c): graph.constant_data.get(c.name) for c in graph.constants}
    taken = {v.name for v in [*graph.inputs, *graph.constants]}
    folded = too_large = 0
    for node in graph.nodes:
        ins = tuple(rw.sub(x) for x in node.inputs)
        values = [x for x in ins if isinstance(x, Value)]
        foldable = (node.op.reference is not None and all(data.get(id(v)) is not None for v in values)
                    and (values or node.op.pattern != Pattern.OPAQUE))
        if not foldable:
            rw.copy(node)
            continue
        out_bytes = sum(v.type.numel * v.dtype.itemsize for v in node.outputs)
        in_bytes = sum(v.type.numel * v.dtype.itemsize for v in values)
        if out_bytes > FOLD_LIMIT_BYTES and out_bytes > in_bytes:
            too_large += 1
            rw.copy(node)
            continue
        results = run_node(node, [np.asarray(data[id(x)]) if isinstance(x, Value) else x for x in ins])
        for v, arr in zip(node.outputs, results):
            c = rw.builder.add_constant(_fresh(taken, "fold"), v.type, arr)
            data[id(c)] = arr
            rw.replace(v, c)
        folded += 1
    stats = {"folded_nodes": folded, "kept_too_large": too_large}
    if not folded:
        return graph, False, stats
    out, _, dce = eliminate_dead_code(rw.finish())
    return out, True, {**stats, "dropped_constants": dce["removed_constants"]}


def freeze_parameters(graph: Graph) -> tuple[Graph, bool, dict[str, Any]]:
    """Parameters and buffers with data in ``graph.bindings`` become constants of the same name."""
    b = GraphBuilder.like(graph)
    b.inputs = []
    subst: dict[int, Value] = {}
    for v in graph.inputs:
        if v.kind in ("parameter", "buffer") and graph.bindings.get(v.name) is not None:
            subst[id(v)] = b.add_constant(v.name, v.type, _host(graph.bindings[v.name]))
            b.bindings.pop(v.name, None)
        else:
            b.inputs.append(v)
    if not subst:
        return graph, False, {"frozen": 0}
    rw = Rewriter(graph)
    rw.builder = b
    rw.b.graph = b
    rw.subst = dict(subst)
    for node in graph.nodes:
        rw.copy(node)
    return rw.finish(), True, {"frozen": len(subst)}


__all__ = ["FOLD_LIMIT_BYTES", "fold_constants", "freeze_parameters"]
