"""``verify(graph)``: the one checker every pass runs under ``EMBER_CHECKS=1``.

It checks what a pass can break: SSA (each value defined once), use before definition, values from
another graph, attribute schemas (``op.check_attrs`` must accept the attributes and add nothing), and
types (each node's output types must be what the op's type rule infers from its input types).
"""

from __future__ import annotations

from typing import Any

from ember.compiler.ir.graph import INPUT_KINDS, Graph, Node, Value, attr_key, flatten_tree
from ember.compiler.ir.printer import format_type
from ember.runtime.errors import EmberError, InternalError


class VerificationError(InternalError):
    """A graph breaks an IR invariant; the message names the node and what is wrong."""


def _where(node: Node, k: int) -> str:
    loc = f" ({node.loc[0]}:{node.loc[1]})" if node.loc else ""
    scope = f" in {node.scope}" if node.scope else ""
    return f"node {k} ({node.op.name}){scope}{loc}"


def _check_header(graph: Graph, defined: set[int]) -> None:
    names: set[str] = set()
    for v in graph.inputs + graph.constants:
        expected = INPUT_KINDS if v in graph.inputs else ("constant",)
        if v.kind not in expected:
            raise VerificationError(f"{v.name!r} has kind {v.kind!r}; expected one of {expected}")
        if v.name in names:
            raise VerificationError(f"two graph inputs or constants are named {v.name!r}")
        if id(v) in defined:
            raise VerificationError(f"value {v.name!r} is listed twice")
        names.add(v.name)
        defined.add(id(v))


def _check_types(node: Node, where: str) -> None:
    args = tuple(x.type if isinstance(x, Value) else x for x in node.inputs)
    try:
        inferred = node.op.infer(*args, **node.attrs)
    except EmberError as e:
        raise VerificationError(f"{where}: its type rule rejects the inputs: {e}") from None
    types = inferred if isinstance(inferred, tuple) and not hasattr(inferred, "dtype") else (inferred,)
    got = tuple(v.type for v in node.outputs)
    want = tuple((tuple(t.shape), t.dtype) for t in types)
    if tuple((tuple(t.shape), t.dtype) for t in got) != want:
        shown = ", ".join(format_type(t) for t in types)
        raise VerificationError(
            f"{where}: results typed {', '.join(format_type(t) for t in got)} but the type rule gives {shown}"
        )


def _check_node(node: Node, k: int, defined: set[int]) -> None:
    where = _where(node, k)
    op = node.op
    if op.composite:
        raise VerificationError(f"{where}: composite op in a graph; the tracer decomposes composites")
    if not op.variadic and len(node.inputs) != len(op.inputs):
        raise VerificationError(f"{where}: takes {len(op.inputs)} operands, got {len(node.inputs)}")
    if len(node.outputs) != op.num_outputs:
        raise VerificationError(f"{where}: has {op.num_outputs} results, got {len(node.outputs)}")
    for i, x in enumerate(node.inputs):
        if isinstance(x, Value):
            if id(x) not in defined:
                raise VerificationError(f"{where}: operand {i} is used before it is defined (or belongs to"
                                        " another graph)")
        elif not isinstance(x, (bool, int, float)):
            raise VerificationError(f"{where}: operand {i} is {x!r}, neither a value nor a number")
    try:
        checked = op.check_attrs(dict(node.attrs))
    except EmberError as e:
        raise VerificationError(f"{where}: {e}") from None
    if attr_key(dict(sorted(checked.items()))) != attr_key(dict(sorted(node.attrs.items()))):
        raise VerificationError(f"{where}: attributes {node.attrs} are not in canonical form {checked}")
    _check_types(node, where)
    for v in node.outputs:
        if id(v) in defined:
            raise VerificationError(f"{where}: a result is defined twice")
        if v.producer is not node:
            raise VerificationError(f"{where}: a result does not point back to its node")
        defined.add(id(v))


def verify(graph: Graph) -> Graph:
    """Raise ``VerificationError`` at the first broken invariant; return the graph when it is valid."""
    defined: set[int] = set()
    _check_header(graph, defined)
    for k, node in enumerate(graph.nodes):
        _check_node(node, k, defined)
    for leaf in flatten_tree(graph.outputs):
        if isinstance(leaf, Value) and id(leaf) not in defined:
            raise VerificationError(f"graph output {leaf!r} is not defined in the graph")
        if not isinstance(leaf, Value) and not _is_literal(leaf):
            raise VerificationError(f"graph output {leaf!r} is neither a value nor a literal")
    return graph


def _is_literal(x: Any) -> bool:
    return x is None or isinstance(x, (bool, int, float, str))
