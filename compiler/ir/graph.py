"""The graph IR: SSA values with a ``TensorType``, nodes that apply a registry op, graphs that own both.

Design choices and why:

* A ``Node`` holds the ``OpDef`` object itself, never an op name, so no code dispatches on strings.
* Values carry no numbers: the printer numbers intermediate values in definition order, so a pass that
  drops or adds nodes never has to renumber anything. Graph inputs and constants are named.
* Nodes and values are not mutated after construction; passes build new graphs with ``GraphBuilder``
  (sharing unchanged nodes is safe because nothing changes them).
* Node inputs are values or Python scalars (elementwise ops take scalar operands).
* The graph's outputs are a tree (a value, or a tuple / list / dict of trees), so a model returning a
  dict traces to a graph that returns the same dict.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
from ember.compiler.dtypes import DType
from ember.compiler.ops.registry import OpDef, TensorType
from ember.runtime.errors import InternalError

INPUT_KINDS = ("input", "parameter", "buffer")


class Value:
    """An SSA value: defined once, by a graph input, a constant or one output of one node."""

    __slots__ = ("type", "kind", "name", "producer", "index")

    def __init__(self, type: TensorType, kind: str = "node", name: str = "",
                 producer: Node | None = None, index: int = 0) -> None:
        self.type = type
        self.kind = kind          # "input" | "parameter" | "buffer" | "constant" | "node"
        self.name = name          # graph inputs and constants only
        self.producer = producer  # the node defining it, for kind "node"
        self.index = index        # which output of the producer

    @property
    def shape(self) -> tuple[int, ...]:
        return self.type.shape

    @property
    def dtype(self) -> DType:
        return self.type.dtype

    def __repr__(self) -> str:
        label = self.name or (self.producer.op.name if self.producer is not None else "?")
        return f"<Value {self.kind} {label}: {self.type}>"


Operand = Any  # Value | int | float | bool


class Node:
    """One op application: ``outputs = op(inputs, **attrs)``, with the scope and source line it came from."""

    __slots__ = ("op", "inputs", "attrs", "outputs", "scope", "loc")

    def __init__(self, op: OpDef, inputs: tuple[Operand, ...], attrs: dict[str, Any],
                 out_types: tuple[TensorType, ...], scope: str = "",
                 loc: tuple[str, int] | None = None) -> None:
        self.op = op
        self.inputs = tuple(inputs)
        self.attrs = dict(sorted(attrs.items()))
        self.outputs = tuple(Value(t, "node", "", self, i) for i, t in enumerate(out_types))
        self.scope = scope
        self.loc = loc  # (file, line) of the user's code, or None

    @property
    def value_inputs(self) -> tuple[Value, ...]:
        return tuple(v for v in self.inputs if isinstance(v, Value))

    def __repr__(self) -> str:
        return f"<Node {self.op.name} -> {', '.join(str(v.type) for v in self.outputs)}>"


def flatten_tree(tree: Any) -> list[Any]:
    """Leaves of an output tree, in order (dict entries in insertion order)."""
    if isinstance(tree, (tuple, list)):
        return [leaf for item in tree for leaf in flatten_tree(item)]
    if isinstance(tree, dict):
        return [leaf for item in tree.values() for leaf in flatten_tree(item)]
    return [tree]


def map_tree(tree: Any, fn: Any) -> Any:
    """The same tree with every leaf replaced by ``fn(leaf)``."""
    if isinstance(tree, tuple):
        return tuple(map_tree(x, fn) for x in tree)
    if isinstance(tree, list):
        return [map_tree(x, fn) for x in tree]
    if isinstance(tree, dict):
        return {k: map_tree(v, fn) for k, v in tree.items()}
    return fn(tree)


class Graph:
    """A traced or parsed computation.

    ``inputs``: values tagged input / parameter / buffer, in calling order. ``constants``: values whose
    data is in ``constant_data`` under their name (None when the text elided it). ``bindings``: data of
    parameters and buffers when the graph came from a model (references, not copies). ``outputs``: a tree.
    """

    def __init__(self, name: str, inputs: list[Value], constants: list[Value], nodes: list[Node],
                 outputs: Any, constant_data: dict[str, Any] | None = None,
                 bindings: dict[str, Any] | None = None) -> None:
        self.name = name
        self.inputs = list(inputs)
        self.constants = list(constants)
        self.nodes = list(nodes)
        self.outputs = outputs
        self.constant_data: dict[str, Any] = dict(constant_data or {})
        self.bindings: dict[str, Any] = dict(bindings or {})

    # ---- views ----------------------------------------------------------------------------------

    def inputs_of_kind(self, kind: str) -> list[Value]:
        return [v for v in self.inputs if v.kind == kind]

    @property
    def user_inputs(self) -> list[Value]:
        return self.inputs_of_kind("input")

    @property
    def flat_outputs(self) -> list[Any]:
        return flatten_tree(self.outputs)

    def output_values(self) -> list[Value]:
        return [v for v in self.flat_outputs if isinstance(v, Value)]

    def users(self) -> dict[Value, list[Node]]:
        """Value -> nodes reading it (a node appears once per use)."""
        out: dict[Value, list[Node]] = {}
        for node in self.nodes:
            for v in node.value_inputs:
                out.setdefault(v, []).append(node)
        return out

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    def __len__(self) -> int:
        return len(self.nodes)

    # ---- presentation -------------------------------------------------------------------------

    def __str__(self) -> str:
        from ember.compiler.ir.printer import print_graph

        return print_graph(self)

    def __repr__(self) -> str:
        return f"<Graph @{self.name}: {len(self.inputs)} inputs, {len(self.nodes)} nodes>"

    def to_dot(self) -> str:
        from ember.compiler.ir.dot import to_dot

        return to_dot(self)

    def to_svg(self) -> str:
        from ember.compiler.ir.dot import to_svg

        return to_svg(self)

    def table(self) -> str:
        from ember.compiler.ir.table import node_table

        return node_table(self)

    def to_networkx(self) -> Any:
        from ember.compiler.ir.dot import to_networkx

        return to_networkx(self)


class GraphBuilder:
    """Builds a graph node by node; passes use it to make a new graph from an old one."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.inputs: list[Value] = []
        self.constants: list[Value] = []
        self.constant_data: dict[str, Any] = {}
        self.bindings: dict[str, Any] = {}
        self.nodes: list[Node] = []

    @classmethod
    def like(cls, graph: Graph) -> GraphBuilder:
        """Same name, inputs, constants and bindings (the same Value objects); no nodes yet."""
        b = cls(graph.name)
        b.inputs = list(graph.inputs)
        b.constants = list(graph.constants)
        b.constant_data = dict(graph.constant_data)
        b.bindings = dict(graph.bindings)
        return b

    def add_input(self, name: str, type: TensorType, kind: str = "input") -> Value:
        if kind not in INPUT_KINDS:
            raise InternalError(f"graph input kind must be one of {INPUT_KINDS}, got {kind!r}")
        v = Value(type, kind, name)
        self.inputs.append(v)
        return v

    def add_constant(self, name: str, type: TensorType, data: Any) -> Value:
        v = Value(type, "constant", name)
        self.constants.append(v)
        self.constant_data[name] = data
        return v

    def add_node(self, op: OpDef, inputs: tuple[Operand, ...], attrs: dict[str, Any],
                 out_types: tuple[TensorType, ...], scope: str = "",
                 loc: tuple[str, int] | None = None) -> Node:
        node = Node(op, inputs, attrs, out_types, scope, loc)
        self.nodes.append(node)
        return node

    def append(self, node: Node) -> None:
        """Reuse an existing (immutable) node as it is."""
        self.nodes.append(node)

    def finish(self, outputs: Any) -> Graph:
        return Graph(self.name, self.inputs, self.constants, self.nodes, outputs, self.constant_data,
                     self.bindings)


# ---- structural equality -----------------------------------------------------------------------


def attr_key(v: Any) -> Any:
    """A hashable key that tells apart values Python calls equal (1, 1.0, True) and equates nan with nan;
    used for structural equality and by common-subexpression elimination."""
    if isinstance(v, bool):
        return ("b", v)
    if isinstance(v, int):
        return ("i", v)
    if isinstance(v, float):
        if math.isnan(v):
            return ("f", "nan")
        return ("f", v, math.copysign(1.0, v))
    if v is None:
        return ("none",)
    if isinstance(v, str):
        return ("s", v)
    if isinstance(v, DType):
        return ("d", v.name)
    if isinstance(v, tuple):
        return ("t",) + tuple(attr_key(x) for x in v)
    if isinstance(v, list):
        return ("l",) + tuple(attr_key(x) for x in v)
    if isinstance(v, dict):
        return ("m",) + tuple((k, attr_key(x)) for k, x in v.items())
    raise InternalError(f"attribute value {v!r} of type {type(v).__name__} has no IR form")


def _structure(graph: Graph, check_data: bool) -> tuple[Any, dict[int, Any]]:
    ref: dict[int, Any] = {}
    head = []
    for i, v in enumerate(graph.inputs):
        ref[id(v)] = ("in", i)
        head.append((v.name, v.kind, v.type))
    consts = []
    for i, v in enumerate(graph.constants):
        ref[id(v)] = ("const", i)
        consts.append((v.name, v.type))
    body = []
    for k, node in enumerate(graph.nodes):
        ins = tuple(ref.get(id(x), ("dangling", id(x))) if isinstance(x, Value) else attr_key(x)
                    for x in node.inputs)
        body.append((node.op.name, ins, attr_key(node.attrs), tuple(o.type for o in node.outputs),
                     node.scope, node.loc))
        for o in node.outputs:
            ref[id(o)] = ("node", k, o.index)
    outs = map_tree(graph.outputs, lambda x: ref.get(id(x), ("dangling",)) if isinstance(x, Value)
                    else attr_key(x))
    return (graph.name, tuple(head), tuple(consts), tuple(body), _tree_key(outs)), ref


def _tree_key(tree: Any) -> Any:
    if isinstance(tree, tuple) and tree and isinstance(tree[0], str):
        return tree  # already a leaf key
    if isinstance(tree, tuple):
        return ("T",) + tuple(_tree_key(x) for x in tree)
    if isinstance(tree, list):
        return ("L",) + tuple(_tree_key(x) for x in tree)
    if isinstance(tree, dict):
        return ("D",) + tuple((k, _tree_key(x)) for k, x in tree.items())
    return tree


def _same_data(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return True  # a printed graph holds large constants by name only
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.dtype.kind != "f":
        return bool(np.array_equal(a, b))
    return bool(np.array_equal(a, b, equal_nan=True) and np.array_equal(np.signbit(a), np.signbit(b)))


def structurally_equal(a: Graph, b: Graph, check_data: bool = True) -> bool:
    """Same inputs, constants, nodes (op, operands by position, attributes, types, scope, location) and
    outputs. Constant data is compared where both graphs hold it."""
    if _structure(a, check_data)[0] != _structure(b, check_data)[0]:
        return False
    if check_data:
        for va, vb in zip(a.constants, b.constants):
            if not _same_data(a.constant_data.get(va.name), b.constant_data.get(vb.name)):
                return False
    return True


def topologically_sorted(graph: Graph) -> Graph:
    """The same graph with nodes in a definition-before-use order; among nodes that are ready, the one
    listed first goes first (networkx's lexicographic topological sort keyed by position), so a valid order
    is kept as it is. For graphs assembled out of order; a cycle is an InternalError."""
    import networkx as nx

    producer = {id(v): i for i, node in enumerate(graph.nodes) for v in node.outputs}
    deps = nx.DiGraph()
    deps.add_nodes_from(range(len(graph.nodes)))
    for i, node in enumerate(graph.nodes):
        for v in node.value_inputs:
            j = producer.get(id(v))
            if j is not None:
                deps.add_edge(j, i)
    try:
        order = list(nx.lexicographical_topological_sort(deps))
    except nx.NetworkXUnfeasible:
        cycle = nx.find_cycle(deps)
        ops = " -> ".join(graph.nodes[a].op.name for a, _ in cycle)
        raise InternalError(f"graph @{graph.name} has a cycle through nodes {ops}") from None
    b = GraphBuilder.like(graph)
    for i in order:
        b.append(graph.nodes[i])
    return b.finish(graph.outputs)
