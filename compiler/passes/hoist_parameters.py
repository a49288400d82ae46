"""``hoist_parameter_work``: weight preparation leaves the per-call graph and runs when weights change.

``ember.compile`` reads live weights, so a computation on parameters alone (the live taps of a conv
weight cut by ``cut_conv_taps``, a folded batch norm's ``W * s``) would otherwise run on every call. This
split moves each such computation into a separate *prep* graph: every node whose inputs are all
parameters, buffers or constants (transitively) and whose result a per-call node reads becomes prep
work, and the per-call graph reads its result as a new parameter input. Pure movement chains (a bias
reshaped to [1, C, 1, 1], a weight transposed) stay: the kernels read them as views for free.

The runtime computes the prep graph's outputs once when it binds the weights and again whenever a
parameter it reads changes (``_Compiled`` in ``frontend/compile_api.py`` watches their version
counters), with the reference implementations: it is a handful of small copies, not worth kernels.
This is not a ``PassManager`` pass (it returns two graphs); ``compile_graph(..., hoist=True)`` calls it
after the pipeline. Before::

    graph @m(%x: float32[1,8,1,1] input, %w: float32[8,8,3,3] parameter) {
      %0 = getitem(%w) {...} : float32[8,8,1,1]
      %1 = clone(%0) : float32[8,8,1,1]
      %2 = conv(%x, %1) {...} : float32[1,8,1,1]
      return %2
    }

After, the per-call graph and the prep graph::

    graph @m(%x: float32[1,8,1,1] input, %w: float32[8,8,3,3] parameter,
             %prep0.w: float32[8,8,1,1] parameter) {
      %0 = conv(%x, %prep0.w) {...} : float32[1,8,1,1]
      return %0
    }
    graph @m.prep(%w: float32[8,8,3,3] parameter) {
      %0 = getitem(%w) {...} ; %1 = clone(%0)
      return (%1)
    }
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from ember.compiler.ir.graph import Graph, GraphBuilder, Node, Value
from ember.compiler.passes._rewrite import Rewriter, is_static
from ember.compiler.passes.dce import eliminate_dead_code

__all__ = ["ParameterPrep", "hoist_parameter_work"]


@dataclass
class ParameterPrep:
    """The weight preparation split off a graph: run it on the parameters to get the new inputs."""

    graph: Graph          # inputs: the parameters and buffers it reads; outputs: a tuple, one per name
    sources: list[str]    # names of those parameters and buffers
    names: list[str]      # the per-call graph's parameter inputs its outputs feed, in output order

    def run(self, params: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The prepared arrays (contiguous, by name) from the parameters' current values."""
        from ember.compiler.ir.interpreter import interpret

        out = interpret(self.graph, [], {n: params[n] for n in self.sources})
        return {n: np.ascontiguousarray(a) for n, a in zip(self.names, out, strict=True)}


def _is_movement(node: Node) -> bool:
    return "index" in node.op.lowering


def _needs_work(v: Value, memo: dict[int, bool]) -> bool:
    """Whether computing ``v`` (a parameter-only value) takes more than views of graph inputs."""
    if v.producer is None:
        return False
    if id(v) not in memo:
        node = v.producer
        memo[id(v)] = not _is_movement(node) or any(_needs_work(x, memo) for x in node.value_inputs)
    return memo[id(v)]


def hoist_parameter_work(graph: Graph) -> tuple[Graph, ParameterPrep | None]:
    """``(per-call graph, prep)``; ``prep`` is None (and the graph unchanged) when there is nothing to
    hoist. The per-call graph's bindings hold the prepared arrays of the graph's current weights."""
    static: dict[int, bool] = {}
    work: dict[int, bool] = {}
    outputs = {id(v) for v in graph.output_values()}
    frontier: list[Value] = []
    seen: set[int] = set()
    for node in graph.nodes:
        if node.value_inputs and all(is_static(v, static) for v in node.value_inputs):
            continue  # a parameter-only node: its readers decide
        for v in node.value_inputs:
            if (v.producer is not None and id(v) not in seen and id(v) not in outputs and is_static(v, static)
                    and v.producer.value_inputs and _needs_work(v, work)):
                seen.add(id(v))
                frontier.append(v)
    if not frontier:
        return graph, None
    taken = {v.name for v in [*graph.inputs, *graph.constants]}
    names = []
    for k, v in enumerate(frontier):
        roots = [x.name for x in _roots(v) if x.kind in ("parameter", "buffer")]
        name = f"prep{k}.{roots[0] if roots else 'const'}"
        while name in taken:
            name += "_"
        taken.add(name)
        names.append(name)
    prep = _prep_graph(graph, frontier)
    sources = [v.name for v in prep.inputs]
    params = {n: graph.bindings[n] for n in sources if n in graph.bindings}
    prepared = ParameterPrep(prep, sources, names)
    arrays = prepared.run({n: np.asarray(getattr(a, "_data", a)) for n, a in params.items()}) \
        if len(params) == len(sources) else {}
    rw = Rewriter(graph)
    for v, name in zip(frontier, names):
        rw.replace(v, rw.builder.add_input(name, v.type, "parameter"))
        if name in arrays:
            rw.builder.bindings[name] = arrays[name]
    for node in graph.nodes:
        rw.copy(node)
    main, _, _ = eliminate_dead_code(rw.finish())
    return main, prepared


def _roots(v: Value) -> list[Value]:
    """The graph inputs and constants ``v`` is computed from, first reached first."""
    out: list[Value] = []
    stack, seen = [v], set()
    while stack:
        x = stack.pop()
        if id(x) in seen:
            continue
        seen.add(id(x))
        if x.producer is None:
            out.append(x)
        else:
            stack.extend(reversed(x.producer.value_inputs))
    return out


def _prep_graph(graph: Graph, frontier: list[Value]) -> Graph:
    """The nodes computing ``frontier`` from parameters, buffers and constants, as a graph of its own."""
    need: set[int] = set()
    stack = list(frontier)
    while stack:
        v = stack.pop()
        if v.producer is not None and id(v.producer) not in need:
            need.add(id(v.producer))
            stack.extend(v.producer.value_inputs)
    nodes = [n for n in graph.nodes if id(n) in need]
    read = {id(x) for n in nodes for x in n.value_inputs}
    b = GraphBuilder(f"{graph.name}.prep")
    b.inputs = [v for v in graph.inputs if id(v) in read]
    b.constants = [c for c in graph.constants if id(c) in read]
    b.constant_data = {c.name: graph.constant_data.get(c.name) for c in b.constants}
    b.bindings = {v.name: graph.bindings[v.name] for v in b.inputs if v.name in graph.bindings}
    for n in nodes:
        b.append(n)
    return b.finish(tuple(frontier))
