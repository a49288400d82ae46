"""``eliminate_dead_code``: drop nodes none of whose results reach a graph output.

Every op in the IR is pure (the graph never holds mutation), so a node whose results are unused can go.
Graph inputs stay (they are the calling convention); constants nothing reads are dropped.

Before::

    %0 = mul(%x, 2) : float32[4]
    %1 = exp(%x) : float32[4]
    return %0

After::

    %0 = mul(%x, 2) : float32[4]
    return %0
"""

from __future__ import annotations

from typing import Any

from ember.compiler.ir.graph import Graph, GraphBuilder


def eliminate_dead_code(graph: Graph) -> tuple[Graph, bool, dict[str, Any]]:
    live: set[int] = {id(v) for v in graph.output_values()}
    keep = []
    for node in reversed(graph.nodes):
        if any(id(v) in live for v in node.outputs):
            keep.append(node)
            live.update(id(v) for v in node.value_inputs)
    keep.reverse()
    b = GraphBuilder.like(graph)
    b.constants = [c for c in graph.constants if id(c) in live]
    b.constant_data = {c.name: graph.constant_data.get(c.name) for c in b.constants}
    for node in keep:
        b.append(node)
    removed_nodes = len(graph.nodes) - len(keep)
    removed_constants = len(graph.constants) - len(b.constants)
    stats = {"removed_nodes": removed_nodes, "removed_constants": removed_constants}
    return b.finish(graph.outputs), bool(removed_nodes or removed_constants), stats


__all__ = ["eliminate_dead_code"]
