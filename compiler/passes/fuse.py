"""``fuse``: partition a graph's nodes into fusion groups, each of which becomes one kernel.

TVM-style, by each op's lowering kind (read from its definition, never from its name):

* elementwise, broadcast and injective ops (``scalar`` / ``index`` lowerings) chain into one loop nest;
* a reduction joins the elementwise producers of its input (when they run over the reduced domain),
  other reductions over the same domain and dims, and elementwise consumers of its results (softmax,
  log_softmax and layer norm each become one group);
* a GEMM or convolution (``template`` gemm/conv) absorbs its elementwise epilogue: bias, batch-norm
  affine, activation, residual add;
* every other template (pooling, scans, sorting, ...) is a group of its own.

A node joins the group of one of its producers only if that keeps the group DAG acyclic (checked with
networkx) and the group's shape rules hold; every refusal is recorded with its reason, e.g.
``relu not fused into conv: conv output has 2 users``.

Before (one node a kernel)::

    %0 = conv(%x, %w, %b) ...
    %1 = relu(%0)
    %2 = add(%1, %y)

After: one group ``fused_0 = [conv, relu, add]`` with inputs ``x, w, b, y`` and output ``%2``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import networkx as nx
from ember.compiler.ir.graph import Graph, Node, Value
from ember.compiler.kernel.group import FusionGroup, GroupNode
from ember.compiler.ops.registry import OpDef, TensorType

# Templates that lowering expands into primitives (compiler/kernel/templates.py), with the kind of
# group they behave as; epilogue-taking templates; everything else stands alone.
_EXPANDED = {"softmax": "reduce", "log_softmax": "reduce", "batch_norm": "elementwise"}
_EPILOGUE_TEMPLATES = ("gemm", "conv")
_INDEX_TEMPLATES = ("gather",)


def node_kind(op: OpDef) -> str:
    """"elementwise", "reduce", "epilogue" (gemm/conv), "template" (alone) or "none" (no lowering)."""
    template = op.lowering.get("template")
    if template in _EXPANDED:
        return _EXPANDED[template]
    if template in _INDEX_TEMPLATES or "scalar" in op.lowering or "index" in op.lowering:
        return "elementwise"
    if "reduce" in op.lowering:
        return "reduce"
    if template in _EPILOGUE_TEMPLATES:
        return "epilogue"
    return "template" if template else "none"


def _reduce_domain(node: Node) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(input shape, reduced dims) of a reduction or softmax-like node."""
    shape = tuple(node.value_inputs[0].shape)
    dims = node.attrs.get("dim")
    if dims is None:
        dims = tuple(range(len(shape)))
    elif isinstance(dims, int):
        dims = (dims % max(len(shape), 1),)
    return shape, tuple(sorted(d % max(len(shape), 1) for d in dims))


@dataclass
class _Group:
    index: int
    kind: str                       # elementwise | reduce | epilogue | template
    nodes: list[Node] = field(default_factory=list)
    domain: Any = None              # reduce: (shape, dims); elementwise: output numel
    head: Node | None = None        # the node that started the group (the GEMM/conv of an epilogue group)

    @property
    def anchor(self) -> Node:
        return self.head if self.head is not None else self.nodes[0]


@dataclass
class FusionPlan:
    """The groups in execution order, the name of every value, and the recorded decisions."""

    groups: list[FusionGroup]
    names: dict[int, str]            # id(Value) -> name used in the groups
    refusals: list[str]
    fused: list[str]

    @property
    def kernel_count(self) -> int:
        return len(self.groups)


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


class _Fuser:
    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.users = graph.users()
        self.outputs = {id(v) for v in graph.output_values()}
        self.groups: list[_Group] = []
        self.group_of: dict[int, _Group] = {}   # id(node) -> group
        self.dag = nx.DiGraph()
        self.refusals: list[str] = []
        self.fused: list[str] = []
        self.inline: dict[int, Node] = {}        # movement ops on graph inputs, inlined into consumers

    # ---- legality -------------------------------------------------------------------------------

    def _producer_groups(self, node: Node) -> list[_Group]:
        out: list[_Group] = []
        for v in node.value_inputs:
            if v.producer is not None and id(v.producer) not in self.inline:
                g = self.group_of[id(v.producer)]
                if g not in out:
                    out.append(g)
        return out

    def _creates_cycle(self, node: Node, target: _Group) -> bool:
        """Would putting ``node`` into ``target`` make target depend on itself through another group?"""
        for other in self._producer_groups(node):
            if other is not target and nx.has_path(self.dag, target.index, other.index):
                return True
        return False

    def _shape_rule(self, node: Node, kind: str, g: _Group) -> str | None:
        """None when ``node`` may join ``g`` by shape; else the reason it may not."""
        out_shape = tuple(node.outputs[0].shape)
        if g.kind == "elementwise":
            if kind == "elementwise":
                return None if _numel(out_shape) == g.domain else "the loop sizes differ"
            if kind == "reduce":
                domain = _reduce_domain(node)[0]
                if all(tuple(v.shape) == domain for n in g.nodes for v in n.outputs):
                    return None
                return "the producers do not run over the reduced domain"
        if g.kind == "reduce":
            shape, dims = g.domain
            if kind == "reduce":
                return None if _reduce_domain(node) == (shape, dims) else "it reduces another domain"
            if kind == "elementwise":
                reduced = {tuple(v.shape) for n in g.nodes for v in n.outputs if tuple(v.shape) != shape}
                if out_shape == shape or out_shape in reduced:
                    return None
                return "its shape is neither the reduced domain nor a reduced result"
        if g.kind == "epilogue" and kind == "elementwise":
            anchor_shape = tuple(g.anchor.outputs[0].shape)
            return None if out_shape == anchor_shape else "an epilogue must keep the output shape"
        return f"a {kind} op cannot join a {g.kind} group"

    def _escapes(self, g: _Group, node: Node) -> str | None:
        """Epilogue groups write one result: an intermediate read outside the group blocks fusion."""
        if g.kind != "epilogue":
            return None
        for member in g.nodes:
            for v in member.outputs:
                n_users = len(self.users.get(v, []))
                if n_users > 1 or id(v) in self.outputs:
                    what = "is a graph output" if id(v) in self.outputs else f"has {n_users} users"
                    return f"{member.op.name} output {what}"
        return None

    # ---- the walk -------------------------------------------------------------------------------

    def _try_join(self, node: Node, kind: str) -> _Group | None:
        candidates = self._producer_groups(node)
        # prefer an epilogue group (conv/matmul takes the residual add), then the latest group
        candidates.sort(key=lambda g: (g.kind != "epilogue", -g.index))
        for g in candidates:
            reason = self._shape_rule(node, kind, g) or self._escapes(g, node)
            if reason is None and self._creates_cycle(node, g):
                reason = "fusing would create a cycle between groups"
            if reason is None:
                return g
            self.refusals.append(f"{node.op.name} not fused into {g.anchor.op.name}: {reason}")
        return None

    def _add(self, node: Node, g: _Group) -> None:
        g.nodes.append(node)
        self.group_of[id(node)] = g
        for other in self._producer_groups(node):
            if other is not g:
                self.dag.add_edge(other.index, g.index)

    def run(self) -> list[_Group]:
        for node in self.graph.nodes:
            kind = node_kind(node.op)
            if self._inlinable(node):
                self.inline[id(node)] = node
                continue
            target = None
            if kind in ("elementwise", "reduce"):
                target = self._try_join(node, kind)
            if target is not None:
                self.fused.append(f"{node.op.name} fused into {target.anchor.op.name} (group {target.index})")
                if target.kind == "elementwise" and kind == "reduce":
                    target.kind, target.domain = "reduce", _reduce_domain(node)
                self._add(node, target)
                continue
            g = _Group(len(self.groups), kind if kind != "none" else "template", head=node)
            if g.kind == "elementwise":
                g.domain = _numel(tuple(node.outputs[0].shape))
            elif g.kind == "reduce":
                g.domain = _reduce_domain(node)
            self.groups.append(g)
            self.dag.add_node(g.index)
            self._add(node, g)
        return self._ordered()

    def _inlinable(self, node: Node) -> bool:
        """A movement op on graph inputs only (a bias reshaped to [1,C,1,1], a weight transposed) costs
        nothing inside the kernel that reads it, so it is inlined into each consumer, not a kernel."""
        return ("index" in node.op.lowering and node.op.num_outputs == 1
                and all(v.producer is None for v in node.value_inputs)
                and id(node.outputs[0]) not in self.outputs)

    def _ordered(self) -> list[_Group]:
        order = list(nx.lexicographical_topological_sort(self.dag))
        return [self.groups[i] for i in order if self.groups[i].nodes]


def value_names(graph: Graph) -> dict[int, str]:
    """Stable names: graph inputs and constants keep theirs, node results are t0, t1, ..."""
    names: dict[int, str] = {}
    for v in [*graph.inputs, *graph.constants]:
        names[id(v)] = v.name
    k = 0
    for node in graph.nodes:
        for v in node.outputs:
            names[id(v)] = f"t{k}"
            k += 1
    return names


def _with_inlined(nodes: list[Node], inline: dict[int, Node]) -> list[Node]:
    """``nodes`` with the inlined movement ops they read placed before their first reader."""
    out: list[Node] = []
    seen: set[int] = set()
    for n in nodes:
        for v in n.value_inputs:
            p = v.producer
            if p is not None and id(p) in inline and id(p) not in seen:
                seen.add(id(p))
                out.append(p)
        out.append(n)
    return out


def _to_group(g: _Group, graph: Graph, names: dict[int, str], users: dict[Value, list[Node]],
              outputs: set[int], inline: dict[int, Node]) -> FusionGroup:
    g_nodes = _with_inlined(g.nodes, inline)
    members = {id(n) for n in g_nodes}
    types: dict[str, TensorType] = {}
    inputs: list[str] = []
    nodes: list[GroupNode] = []
    outs: list[str] = []
    for n in g_nodes:
        operands = []
        for x in n.inputs:
            if isinstance(x, Value):
                name = names[id(x)]
                types[name] = x.type
                if (x.producer is None or id(x.producer) not in members) and name not in inputs:
                    inputs.append(name)
                operands.append(name)
            else:
                operands.append(x)
        out_names = tuple(names[id(v)] for v in n.outputs)
        for v, name in zip(n.outputs, out_names):
            types[name] = v.type
            escapes = id(n) not in inline and (
                id(v) in outputs or any(id(u) not in members for u in users.get(v, [])))
            if escapes:
                outs.append(name)
        nodes.append(GroupNode(n.op.name, tuple(operands), out_names, dict(n.attrs)))
    return FusionGroup(f"fused_{g.index}_{g.anchor.op.name}", nodes, types, inputs, outs)


def fuse(graph: Graph) -> FusionPlan:
    """Partition ``graph`` into fusion groups (see the module docstring)."""
    fuser = _Fuser(graph)
    ordered = fuser.run()
    names = value_names(graph)
    groups = [_to_group(g, graph, names, fuser.users, fuser.outputs, fuser.inline) for g in ordered]
    return FusionPlan(groups, names, fuser.refusals, fuser.fused)


def unfused(graph: Graph) -> FusionPlan:
    """One group per node: the baseline fusion is measured against, and a fallback for debugging."""
    names = value_names(graph)
    users = graph.users()
    outputs = {id(v) for v in graph.output_values()}
    groups = []
    for i, node in enumerate(graph.nodes):
        g = _Group(i, node_kind(node.op), [node])
        groups.append(_to_group(g, graph, names, users, outputs, {}))
    return FusionPlan(groups, names, [], [])
