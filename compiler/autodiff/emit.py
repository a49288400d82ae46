"""The graph side of the gradient-rule builder: each op call a rule makes becomes an IR node.

Eager autograd runs the same rules through ``ember.autograd.builder.EagerBuilder``; this builder runs them
on ``Value`` objects, so one rule serves both (docs/architecture.md, "Ops: one definition each"). Attribute
checking and normalization happen here exactly as in ``ember.dispatch.apply``, and composites decompose
through this builder, so the emitted graph holds primitives only.
"""

from __future__ import annotations

from typing import Any

from ember.compiler.ir.graph import GraphBuilder, Node, Value
from ember.compiler.ops.builder import Builder
from ember.compiler.ops.registry import OpDef


class GraphEmitter(Builder):
    """Appends a node per op call to ``nodes``; ``scope``/``loc`` label them (the forward node they
    differentiate), so a backward kernel can be traced back to the layer it belongs to."""

    def __init__(self, name: str = "backward") -> None:
        self.graph = GraphBuilder(name)
        self.scope = ""
        self.loc: tuple[str, int] | None = None

    @property
    def nodes(self) -> list[Node]:
        return self.graph.nodes

    def emit(self, op: OpDef, inputs: tuple[Any, ...], attrs: dict[str, Any]) -> Any:
        if attrs or op.attrs:
            attrs = op.check_attrs(attrs)
            if op.normalize is not None:
                attrs = op.normalize(attrs, *inputs)
        if op.reference is None:
            return op.decompose(self, *inputs, **attrs)
        types = tuple(x.type if isinstance(x, Value) else x for x in inputs)
        inferred = op.infer(*types, **attrs)
        out_types = (inferred,) if op.num_outputs == 1 else tuple(inferred)
        node = self.graph.add_node(op, inputs, attrs, out_types, self.scope, self.loc)
        return node.outputs[0] if op.num_outputs == 1 else node.outputs
