"""The text form of a graph: stable, MLIR-like, and parsed back by ``parser.parse``.

    graph @f(
        %x: float32[2,3] input,
        %fc.weight: float32[4,3] parameter
    ) {
      %c0 = constant dense<[1.0, 2.0, 3.0]> : float32[3]
      %0 = add(%x, %c0) : float32[2,3] loc(scope="", file="model.py", line=7)
      %1 = sum(%0) {dim=(1,), dtype=none, keepdim=false} : float32[2]
      return %1
    }

Values are numbered in definition order, one op per line, types inline, attributes sorted, floats printed
so they parse back to the same bits (``repr``; ``inf``, ``-inf``, ``nan``). Constants larger than
``INLINE_LIMIT`` elements are held by name (``%w = constant : float32[64,64]``); their data stays in the
graph's constant table.
"""

from __future__ import annotations

import json
import math
import os
import re
from typing import Any

import numpy as np
from ember.compiler.dtypes import DType
from ember.compiler.ir.graph import Graph, Node, Value
from ember.compiler.ops.registry import TensorType
from ember.runtime.errors import InternalError

INLINE_LIMIT = 16
_BARE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*\Z")


def format_type(t: TensorType) -> str:
    return f"{t.dtype.name}[{','.join(str(s) for s in t.shape)}]"


def format_float(v: float) -> str:
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return repr(float(v))


def format_literal(v: Any) -> str:
    """Attribute values and scalar operands: ints, floats, bools, strings, None, dtypes, tuples, lists."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return format_float(v)
    if v is None:
        return "none"
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, DType):
        return v.name
    if isinstance(v, tuple):
        if len(v) == 1:
            return f"({format_literal(v[0])},)"
        return "(" + ", ".join(format_literal(x) for x in v) + ")"
    if isinstance(v, list):
        return "[" + ", ".join(format_literal(x) for x in v) + "]"
    raise InternalError(f"attribute value {v!r} of type {type(v).__name__} has no IR text form")


def format_name(name: str) -> str:
    return "%" + (name if _BARE_NAME.match(name) else json.dumps(name))


class _Namer:
    def __init__(self, graph: Graph) -> None:
        self.names: dict[int, str] = {}
        for v in graph.inputs + graph.constants:
            self.names[id(v)] = format_name(v.name)
        self.counter = 0

    def define(self, v: Value) -> str:
        name = f"%{self.counter}"
        self.counter += 1
        self.names[id(v)] = name
        return name

    def ref(self, v: Any) -> str:
        if not isinstance(v, Value):
            return format_literal(v)
        try:
            return self.names[id(v)]
        except KeyError:
            raise InternalError(f"printing a graph that uses {v!r} before defining it; run verify()")\
                from None


def _format_loc(node: Node, locations: str) -> str:
    if locations == "none" or (not node.scope and node.loc is None):
        return ""
    parts = [f"scope={json.dumps(node.scope)}"]
    if node.loc is not None:
        file, line = node.loc
        shown = os.path.basename(file) if locations == "basename" else file
        parts += [f"file={json.dumps(shown)}", f"line={line}"]
    return " loc(" + ", ".join(parts) + ")"


def format_node(node: Node, namer: _Namer, locations: str = "full") -> str:
    outs = ", ".join(namer.define(v) for v in node.outputs)
    args = ", ".join(namer.ref(x) for x in node.inputs)
    attrs = ""
    if node.attrs:
        attrs = " {" + ", ".join(f"{k}={format_literal(v)}" for k, v in sorted(node.attrs.items())) + "}"
    types = [format_type(v.type) for v in node.outputs]
    ty = types[0] if len(types) == 1 else "(" + ", ".join(types) + ")"
    return f"{outs} = {node.op.name}({args}){attrs} : {ty}{_format_loc(node, locations)}"


def _format_constant(v: Value, data: Any) -> str:
    ty = format_type(v.type)
    if data is None or v.type.numel > INLINE_LIMIT:
        return f"{format_name(v.name)} = constant : {ty}"
    flat = np.asarray(data).reshape(-1).tolist()
    return f"{format_name(v.name)} = constant dense<[{', '.join(format_literal(x) for x in flat)}]> : {ty}"


def _format_tree(tree: Any, namer: _Namer) -> str:
    if isinstance(tree, tuple):
        inner = ", ".join(_format_tree(x, namer) for x in tree)
        return f"({inner},)" if len(tree) == 1 else f"({inner})"
    if isinstance(tree, list):
        return "[" + ", ".join(_format_tree(x, namer) for x in tree) + "]"
    if isinstance(tree, dict):
        return "{" + ", ".join(f"{json.dumps(k)}: {_format_tree(x, namer)}" for k, x in tree.items()) + "}"
    return namer.ref(tree)


def print_graph(graph: Graph, locations: str = "full") -> str:
    """The text IR. ``locations``: "full" paths, "basename" (stable across machines, for golden files) or
    "none"."""
    if locations not in ("full", "basename", "none"):
        raise InternalError(f"locations must be 'full', 'basename' or 'none', got {locations!r}")
    namer = _Namer(graph)
    params = ",\n".join(f"    {format_name(v.name)}: {format_type(v.type)} {v.kind}" for v in graph.inputs)
    head = f"graph @{format_name(graph.name)[1:]}("
    lines = [head + ("\n" + params + "\n" if params else "") + ") {"]
    for v in graph.constants:
        lines.append("  " + _format_constant(v, graph.constant_data.get(v.name)))
    for node in graph.nodes:
        lines.append("  " + format_node(node, namer, locations))
    lines.append("  return " + _format_tree(graph.outputs, namer))
    lines.append("}")
    return "\n".join(lines) + "\n"
