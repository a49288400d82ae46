"""Graphviz views of a graph: ``to_networkx`` (for graph algorithms), ``to_dot`` (text) and ``to_svg``
(through the ``dot`` program, when Graphviz is installed)."""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

from ember.compiler.ir.graph import Graph, Value
from ember.compiler.ir.printer import format_literal, format_type
from ember.runtime.errors import CompileError

_FILL = {"input": "#d8e8ff", "parameter": "#fff2cc", "buffer": "#f4e1ff", "constant": "#eeeeee"}


def _q(s: str) -> str:
    return json.dumps(s)


def to_networkx(graph: Graph) -> Any:
    """A networkx DiGraph: one vertex per graph input, constant and node (keys "in:i", "const:i", "n:i"),
    one edge per use, labelled with the operand position."""
    import networkx as nx

    g = nx.DiGraph()
    where: dict[int, str] = {}
    for i, v in enumerate(graph.inputs):
        where[id(v)] = f"in:{i}"
        g.add_node(f"in:{i}", value=v, kind=v.kind)
    for i, v in enumerate(graph.constants):
        where[id(v)] = f"const:{i}"
        g.add_node(f"const:{i}", value=v, kind="constant")
    for i, node in enumerate(graph.nodes):
        key = f"n:{i}"
        g.add_node(key, node=node, kind="node")
        for pos, x in enumerate(node.inputs):
            if isinstance(x, Value) and id(x) in where:
                g.add_edge(where[id(x)], key, operand=pos)
        for v in node.outputs:
            where[id(v)] = key
    return g


def to_dot(graph: Graph) -> str:
    """Graphviz DOT text: inputs and constants as boxes, nodes as ellipses labelled with op, scope and
    result types; scalar operands appear in the node label."""
    lines = [f"digraph {_q(graph.name)} {{", "  rankdir=TB;", '  node [fontname="Helvetica", fontsize=10];']
    where: dict[int, str] = {}
    for i, v in enumerate(graph.inputs + graph.constants):
        key = f"v{i}"
        where[id(v)] = key
        label = f"{v.name}\n{format_type(v.type)}\n({v.kind})"
        lines.append(f'  {key} [shape=box, style=filled, fillcolor="{_FILL[v.kind]}", label={_q(label)}];')
    for i, node in enumerate(graph.nodes):
        key = f"n{i}"
        scalars = [format_literal(x) for x in node.inputs if not isinstance(x, Value)]
        label = node.op.name + (f"({', '.join(scalars)})" if scalars else "")
        if node.scope:
            label += f"\n[{node.scope}]"
        label += "\n" + ", ".join(format_type(v.type) for v in node.outputs)
        lines.append(f"  {key} [label={_q(label)}];")
        for x in node.inputs:
            if isinstance(x, Value) and id(x) in where:
                lines.append(f"  {where[id(x)]} -> {key};")
        for v in node.outputs:
            where[id(v)] = key
    for j, leaf in enumerate(graph.flat_outputs):
        if isinstance(leaf, Value) and id(leaf) in where:
            label = _q(f"output {j}")
            lines.append(f'  out{j} [shape=box, style=filled, fillcolor="#d9f2d9", label={label}];')
            lines.append(f"  {where[id(leaf)]} -> out{j};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_svg(graph: Graph) -> str:
    """SVG text rendered by Graphviz's ``dot``; a clear error with the install hint when it is missing."""
    exe = shutil.which("dot")
    if exe is None:
        raise CompileError("SVG output needs Graphviz's `dot` program, which is not installed or not on PATH;"
                           " install it (Debian/Ubuntu: `apt-get install graphviz`, macOS: `brew install"
                           " graphviz`) or use to_dot() and render the text elsewhere")
    proc = subprocess.run([exe, "-Tsvg"], input=to_dot(graph), capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise CompileError(f"`dot -Tsvg` failed with exit code {proc.returncode}: {proc.stderr.strip()}")
    return proc.stdout
