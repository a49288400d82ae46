"""Helpers the rewriting passes share: a builder that emits nodes into a new graph (attributes checked,
normalized and types inferred as in eager mode), and value substitution while copying a graph."""

from __future__ import annotations

from typing import Any

from ember.compiler.autodiff.emit import GraphEmitter
from ember.compiler.ir.graph import Graph, GraphBuilder, Node, Value, map_tree


class Rewriter:
    """Copies ``graph`` node by node into ``self.builder``; ``emit`` (``self.b.<op>(...)``) adds new nodes,
    ``replace(old, new)`` makes later readers of ``old`` read ``new``."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.builder = GraphBuilder.like(graph)
        self.b = GraphEmitter(graph.name)
        self.b.graph = self.builder
        self.subst: dict[int, Any] = {}

    def sub(self, x: Any) -> Any:
        return self.subst.get(id(x), x) if isinstance(x, Value) else x

    def replace(self, old: Value, new: Any) -> None:
        self.subst[id(old)] = new

    def label(self, node: Node) -> None:
        """New nodes take the scope and source line of ``node`` (the one they replace)."""
        self.b.scope, self.b.loc = node.scope, node.loc

    def copy(self, node: Node) -> Node:
        """Append ``node``, rebuilt only if one of its operands was replaced."""
        inputs = tuple(self.sub(x) for x in node.inputs)
        if all(a is x for a, x in zip(inputs, node.inputs)):
            self.builder.append(node)
            return node
        new = self.builder.add_node(node.op, inputs, node.attrs, tuple(v.type for v in node.outputs),
                                    node.scope, node.loc)
        for old, v in zip(node.outputs, new.outputs):
            self.subst[id(old)] = v
        return new

    def finish(self) -> Graph:
        return self.builder.finish(map_tree(self.graph.outputs, self.sub))


def is_static(v: Any, memo: dict[int, bool] | None = None) -> bool:
    """True when ``v`` depends on parameters, buffers and constants only (never on a user input)."""
    if not isinstance(v, Value):
        return True
    memo = {} if memo is None else memo
    if id(v) not in memo:
        if v.producer is None:
            memo[id(v)] = v.kind != "input"
        else:
            memo[id(v)] = all(is_static(x, memo) for x in v.producer.value_inputs)
    return memo[id(v)]


def single_user(graph_users: dict[Value, list[Node]], outputs: set[int], v: Value) -> bool:
    """``v`` is read by exactly one node and is not a graph output."""
    return len(graph_users.get(v, [])) == 1 and id(v) not in outputs
