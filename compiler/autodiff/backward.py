"""Forward graph -> (forward graph that also returns saved values, backward graph).

``differentiate(graph, wrt)`` runs the ops' gradient rules (the ones eager autograd runs) over the forward
nodes in reverse order, emitting IR nodes through ``GraphEmitter``. The result is first a *joint* list of
backward nodes that read forward values directly; ``partition`` then decides, per forward value the
backward nodes read, whether to save it (an extra forward output) or to recompute it inside the backward
graph (``recompute.py`` holds the cost rule), and rewires the backward nodes onto backward-graph inputs.

Calling convention of the result (``AutodiffResult``):

* forward graph: the original inputs; outputs ``(original output tree, tuple of saved values)``.
* backward graph: user inputs only, in this order: the forward graph inputs it reads (parameters and
  user inputs are alive anyway, so reading them costs no memory), then the saved values, then one gradient
  per differentiable forward output. Outputs: a tuple with one gradient per ``wrt`` value; a ``wrt`` value
  no gradient reaches gets a zero tensor, so the output list is fixed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ember.compiler.autodiff.emit import GraphEmitter
from ember.compiler.autodiff.recompute import RecomputeRule, default_rule
from ember.compiler.ir.graph import Graph, GraphBuilder, Node, Value
from ember.compiler.ops.registry import TensorType
from ember.runtime.errors import AutogradError


@dataclass
class AutodiffResult:
    """The two graphs and how the runtime connects them."""

    forward: Graph
    backward: Graph
    wrt: list[Value]                  # forward inputs whose gradients the backward graph returns, in order
    grad_outputs: list[int]           # flat leaf positions of the original output tree that take a grad
    reads_inputs: list[int]           # indices into forward.inputs the backward graph reads, in order
    saved: list[Value]                # forward values saved as extra outputs, in order
    recomputed: list[Node]            # forward nodes copied into the backward graph

    @property
    def num_saved(self) -> int:
        return len(self.saved)


def _is_float(v: Any) -> bool:
    return isinstance(v, Value) and v.type.dtype.is_floating_point


def _requires_grad(graph: Graph, wrt: list[Value]) -> set[int]:
    """ids of values that depend on a ``wrt`` value through differentiable ops."""
    live = {id(v) for v in wrt}
    for node in graph.nodes:
        if node.op.differentiable and any(id(x) in live for x in node.value_inputs):
            live.update(id(o) for o in node.outputs if _is_float(o))
    return live


def _accumulate(b: GraphEmitter, grads: dict[int, Any], v: Value, g: Any) -> None:
    if g is None:
        return
    if tuple(g.shape) != tuple(v.shape):
        raise AutogradError(f"autodiff: gradient of shape {list(g.shape)} for a value of shape "
                            f"{list(v.shape)} ({v!r})")
    if g.dtype is not v.dtype:
        g = b.cast(g, dtype=v.dtype)
    prev = grads.get(id(v))
    grads[id(v)] = g if prev is None else b.add(prev, g)


def _rule_args(node: Node) -> tuple[Any, list[Any]]:
    """What eager autograd's tape would hold for this node: the output(s) when the rule reads them, and
    per input the value (if read), its TensorType (if not) or the Python scalar."""
    op = node.op
    out: Any = None
    if op.saves_out:
        out = node.outputs[0] if op.num_outputs == 1 else tuple(node.outputs)
    ins = []
    for i, x in enumerate(node.inputs):
        if isinstance(x, Value) and not op.saved_input(i):
            ins.append(TensorType(x.type.shape, x.type.dtype))
        else:
            ins.append(x)
    return out, ins


def propagate(b: GraphEmitter, nodes: list[Node], grads: dict[int, Any], live: set[int]) -> None:
    """Run the ops' vjp rules over ``nodes`` in reverse, from the seeded ``grads`` (value id -> gradient),
    accumulating into the inputs that are in ``live`` (those that lead to a value wanting a gradient)."""
    for node in reversed(nodes):
        if not node.op.differentiable:
            continue
        outs = [grads.get(id(o)) for o in node.outputs]
        if all(g is None for g in outs):
            continue
        b.scope, b.loc = node.scope, node.loc
        out, ins = _rule_args(node)
        g = outs[0] if node.op.num_outputs == 1 else tuple(outs)
        results = node.op.vjp(b, g, out, *ins, **node.attrs)
        for x, gx in zip(node.inputs, results):
            if isinstance(x, Value) and id(x) in live:
                _accumulate(b, grads, x, gx)
    b.scope, b.loc = "", None


def joint_backward(graph: Graph, wrt: list[Value], grad_leaves: int | None = None
                   ) -> tuple[GraphEmitter, dict[int, Value], list[Value], list[Any]]:
    """Backward nodes reading forward values directly. Returns the emitter holding them, the gradient
    input value per differentiable output position, and the gradient of each ``wrt`` value (or None).
    Only the first ``grad_leaves`` output leaves take a gradient (all when None): the rest are side
    outputs such as running-statistic updates."""
    b = GraphEmitter(f"{graph.name}_backward")
    live = _requires_grad(graph, wrt)
    grads: dict[int, Any] = {}
    grad_inputs: dict[int, Value] = {}
    for pos, v in enumerate(graph.flat_outputs[:grad_leaves]):
        if _is_float(v) and id(v) in live:
            gv = Value(v.type, "input", f"grad_out{pos}")
            grad_inputs[pos] = gv
            _accumulate(b, grads, v, gv)
    propagate(b, graph.nodes, grads, live)
    return b, grad_inputs, wrt, [grads.get(id(v)) for v in wrt]


def differentiate(graph: Graph, wrt: list[Value], rule: RecomputeRule | None = None,
                  grad_leaves: int | None = None) -> AutodiffResult:
    """Split ``graph`` into a forward graph that saves what the backward needs and a backward graph that
    returns the gradients of ``wrt`` (graph inputs). ``grad_leaves``: see ``joint_backward``."""
    for v in wrt:
        if v not in graph.inputs:
            raise AutogradError(f"autodiff: {v!r} is not an input of graph @{graph.name}")
    b, grad_inputs, _, wrt_grads = joint_backward(graph, wrt, grad_leaves)
    return partition(graph, b, grad_inputs, wrt, wrt_grads, rule or default_rule)


def partition(graph: Graph, b: GraphEmitter, grad_inputs: dict[int, Value], wrt: list[Value],
              wrt_grads: list[Any], rule: RecomputeRule) -> AutodiffResult:
    """Decide saved vs recomputed forward values and build the two graphs."""
    own = {id(o) for n in b.nodes for o in n.outputs} | {id(g) for g in grad_inputs.values()}
    producer = {id(o): n for n in graph.nodes for o in n.outputs}
    input_pos = {id(v): i for i, v in enumerate(graph.inputs)}
    const_ids = {id(c) for c in graph.constants}
    recomputed: list[Node] = []
    saved: list[Value] = []
    reads: list[int] = []
    consts: list[Value] = []
    seen: set[int] = set(own)

    def need(v: Value) -> None:
        if id(v) in seen:
            return
        seen.add(id(v))
        if id(v) in input_pos:
            reads.append(input_pos[id(v)])
        elif id(v) in const_ids:
            consts.append(v)
        else:
            node = producer[id(v)]
            if rule(node, v):
                for x in node.value_inputs:
                    need(x)
                seen.update(id(o) for o in node.outputs)
                recomputed.append(node)
            else:
                saved.append(v)

    for node in b.nodes:
        for x in node.value_inputs:
            need(x)
    for g in wrt_grads:
        if isinstance(g, Value):
            need(g)
    order = {id(n): i for i, n in enumerate(graph.nodes)}
    recomputed.sort(key=lambda n: order[id(n)])
    reads.sort()
    forward = _forward_graph(graph, saved)
    backward = _backward_graph(graph, b, reads, saved, consts, recomputed, grad_inputs, wrt, wrt_grads)
    return AutodiffResult(forward, backward, list(wrt), sorted(grad_inputs), reads, saved, recomputed)


def _forward_graph(graph: Graph, saved: list[Value]) -> Graph:
    fb = GraphBuilder.like(graph)
    for n in graph.nodes:
        fb.append(n)
    return fb.finish((graph.outputs, tuple(saved)))


def _backward_graph(graph: Graph, b: GraphEmitter, reads: list[int], saved: list[Value], consts: list[Value],
                    recomputed: list[Node], grad_inputs: dict[int, Value], wrt: list[Value],
                    wrt_grads: list[Any]) -> Graph:
    """Backward-graph inputs replace the forward values they stand for; nodes reading them are rebuilt
    (IR nodes are immutable), the others are shared."""
    bb = GraphBuilder(b.graph.name)
    subst: dict[int, Value] = {}
    for i in reads:
        v = graph.inputs[i]
        subst[id(v)] = bb.add_input(f"in_{v.name}", v.type)
    for k, v in enumerate(saved):
        subst[id(v)] = bb.add_input(f"saved{k}", v.type)
    for pos in sorted(grad_inputs):
        gv = grad_inputs[pos]
        subst[id(gv)] = bb.add_input(gv.name, gv.type)
    for c in consts:
        subst[id(c)] = bb.add_constant(c.name, c.type, graph.constant_data.get(c.name))
    for node in [*recomputed, *b.nodes]:
        _copy_node(bb, node, subst)
    outs = []
    for v, g in zip(wrt, wrt_grads):
        if g is None:
            outs.append(_zeros(bb, v.type))
        else:
            outs.append(subst.get(id(g), g))
    from ember.compiler.passes.dce import eliminate_dead_code

    return eliminate_dead_code(bb.finish(tuple(outs)))[0]


def _copy_node(bb: GraphBuilder, node: Node, subst: dict[int, Value]) -> None:
    if not any(isinstance(x, Value) and id(x) in subst for x in node.inputs):
        bb.append(node)
        return
    ins = tuple(subst.get(id(x), x) if isinstance(x, Value) else x for x in node.inputs)
    new = bb.add_node(node.op, ins, node.attrs, tuple(o.type for o in node.outputs), node.scope, node.loc)
    for old, fresh in zip(node.outputs, new.outputs):
        subst[id(old)] = fresh


def _zeros(bb: GraphBuilder, t: TensorType) -> Value:
    """A zero gradient for an input no gradient reaches (the backward graph's outputs are fixed)."""
    e = GraphEmitter()
    e.graph = bb
    return e.full(shape=t.shape, value=0.0, dtype=t.dtype)
