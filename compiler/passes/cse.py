"""``eliminate_common_subexpressions``: nodes applying the same op, with the same attributes, to the same
operands compute the same values; keep the first, point users of the others at it.

Ops are pure, so this is safe for every op that reads its operands; an opaque op with no operands (a
possible source of randomness) is never merged, and is counted under ``skipped_sources``.

Before::

    %0 = exp(%x) : float32[4]
    %1 = exp(%x) : float32[4]
    %2 = add(%0, %1) : float32[4]
    return %2

After::

    %0 = exp(%x) : float32[4]
    %1 = add(%0, %0) : float32[4]
    return %1
"""

from __future__ import annotations

from typing import Any

from ember.compiler.ir.graph import Graph, GraphBuilder, Value, attr_key, map_tree
from ember.compiler.ops.registry import Pattern


def eliminate_common_subexpressions(graph: Graph) -> tuple[Graph, bool, dict[str, Any]]:
    replace: dict[int, Value] = {}
    seen: dict[Any, Any] = {}
    b = GraphBuilder.like(graph)
    merged = skipped = 0

    def sub(x: Any) -> Any:
        return replace.get(id(x), x) if isinstance(x, Value) else x

    for node in graph.nodes:
        inputs = tuple(sub(x) for x in node.inputs)
        if not inputs and node.op.pattern == Pattern.OPAQUE:
            skipped += 1
            b.append(node)
            continue
        key = (node.op.name, tuple(("v", id(x)) if isinstance(x, Value) else attr_key(x) for x in inputs),
               attr_key(node.attrs), tuple(v.type for v in node.outputs))
        hit = seen.get(key)
        if hit is not None:
            merged += 1
            for old, new in zip(node.outputs, hit.outputs):
                replace[id(old)] = new
            continue
        if all(a is x for a, x in zip(inputs, node.inputs)):
            new_node = node
            b.append(node)
        else:
            new_node = b.add_node(node.op, inputs, node.attrs, tuple(v.type for v in node.outputs),
                                  node.scope, node.loc)
            for old, new in zip(node.outputs, new_node.outputs):
                replace[id(old)] = new
        seen[key] = new_node
    outputs = map_tree(graph.outputs, sub)
    return b.finish(outputs), merged > 0, {"merged_nodes": merged, "skipped_sources": skipped}
