"""``interpret(graph, inputs, params)``: runs a graph node by node with the ops' reference implementations.

It is the oracle every pass and back end is checked against, so it does nothing clever: numpy arrays,
one ``op.reference`` call per node, results cast to the dtype the node's type promises (as eager mode
does), and errors that name the node and the user's line it came from.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from ember.compiler.ir.graph import Graph, Node, Value, map_tree
from ember.runtime.errors import ArgumentError, EmberError, ShapeError


def _as_array(x: Any) -> np.ndarray:
    if hasattr(x, "_host"):  # an ember Tensor; the compiler never imports the frontend
        return x._host()
    return np.asarray(x)


def _bind_inputs(graph: Graph, inputs: Sequence[Any], params: Mapping[str, Any] | None) -> dict[int, Any]:
    env: dict[int, Any] = {}
    users = graph.user_inputs
    if len(inputs) != len(users):
        names = ", ".join(v.name for v in users)
        raise ArgumentError(f"graph @{graph.name} takes {len(users)} inputs ({names}), got {len(inputs)}")
    for v, x in zip(users, inputs):
        env[id(v)] = _checked(v, _as_array(x))
    for v in graph.inputs:
        if v.kind == "input":
            continue
        source = params if params is not None and v.name in params else graph.bindings
        if v.name not in source:
            raise ArgumentError(f"graph @{graph.name}: no data for {v.kind} {v.name!r}; pass params=")
        env[id(v)] = _checked(v, _as_array(source[v.name]))
    for v in graph.constants:
        data = graph.constant_data.get(v.name)
        if data is None:
            raise ArgumentError(f"graph @{graph.name}: constant {v.name!r} has no data"
                                " (parse with constants=)")
        env[id(v)] = _checked(v, np.asarray(data))
    return env


def _checked(v: Value, arr: np.ndarray) -> np.ndarray:
    if tuple(arr.shape) != tuple(v.type.shape):
        raise ShapeError(f"{v.kind} {v.name!r}: expected shape {list(v.type.shape)}, got {list(arr.shape)}")
    if arr.dtype != v.type.dtype.np:
        arr = arr.astype(v.type.dtype.np)
    return arr


def run_node(node: Node, args: list[Any]) -> tuple[np.ndarray, ...]:
    """One node's reference implementation; results cast to the node's result dtypes."""
    result = node.op.reference(np, *args, **node.attrs)
    results = (result,) if len(node.outputs) == 1 else tuple(result)
    return tuple(np.asarray(r, dtype=v.type.dtype.np) for r, v in zip(results, node.outputs))


def interpret(graph: Graph, inputs: Sequence[Any], params: Mapping[str, Any] | None = None) -> Any:
    """Run ``graph`` on ``inputs`` (arrays or tensors, for the inputs tagged "input", in order).

    Parameters and buffers come from ``params`` (by name), else from the graph's own bindings. Returns
    numpy arrays arranged like the graph's outputs (one array, or a tuple / list / dict of them).
    """
    env = _bind_inputs(graph, list(inputs), params)
    for node in graph.nodes:
        args = [env[id(x)] if isinstance(x, Value) else x for x in node.inputs]
        try:
            outs = run_node(node, args)
        except EmberError as e:
            raise type(e)(f"{e}\n  while interpreting {_describe(node)}") from None
        for v, arr in zip(node.outputs, outs):
            env[id(v)] = arr
    return map_tree(graph.outputs, lambda leaf: env[id(leaf)] if isinstance(leaf, Value) else leaf)


def _describe(node: Node) -> str:
    where = f" at {node.loc[0]}:{node.loc[1]}" if node.loc else ""
    scope = f" in {node.scope}" if node.scope else ""
    return f"{node.op.name}{scope}{where}"
