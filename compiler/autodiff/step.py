"""The pieces of a whole training step as graph nodes: a backward pass emitted into the graph being
traced, and the optimizer updates (SGD, Adam, AdamW) written with the same builder.

``ember.compile(step_fn)`` (frontend/compile_step.py) traces ``forward -> loss -> loss.backward() ->
opt.step()`` into ONE graph. At ``loss.backward()`` the tracer calls ``emit_backward``, which runs the
ops' own gradient rules (the ones eager autograd and ``differentiate`` run) over the nodes recorded so
far and appends the gradient nodes to the same graph; at ``opt.step()`` it calls ``sgd_update`` /
``adam_update``, which append the update arithmetic. Nothing is split into two graphs, so the one memory
plan of the compiled step covers forward and backward: saved activations are just arena buffers that
live from their forward producer to their last backward reader.

The update rules repeat eager ember's operation order exactly (``frontend/optim/sgd.py``, ``adam.py``):
the same ops on the same operands, with hyper-parameters that can change between calls (the learning
rate, and what Adam derives from it and from the step count) as 0-d runtime inputs holding the very
Python scalar eager mode multiplies by, so compiled and eager parameters agree to float rounding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ember.compiler.autodiff.backward import _accumulate, propagate
from ember.compiler.autodiff.emit import GraphEmitter
from ember.compiler.ir.graph import Node, Value


def _live_set(nodes: list[Node], wrt: list[Value], stop: set[int]) -> set[int]:
    """ids of values that depend on a ``wrt`` value through differentiable ops (not through ``stop``)."""
    live = {id(v) for v in wrt}
    for node in nodes:
        if node.op.differentiable and any(id(x) in live for x in node.value_inputs):
            live.update(id(o) for o in node.outputs if o.type.dtype.is_floating_point and id(o) not in stop)
    return live


def emit_backward(b: GraphEmitter, nodes: list[Node], roots: list[tuple[Value, Any]],
                  wrt: list[Value], stop: set[int] | None = None) -> list[Any]:
    """Gradients of ``roots`` (value, seed gradient) with respect to ``wrt`` (any values of the graph,
    usually parameters), emitted through ``b``. ``nodes``: the graph's nodes so far, in order; ``stop``:
    ids of values no gradient flows through (results of ``.detach()``). Returns one gradient value per
    ``wrt`` value, or None where no gradient reaches it."""
    nodes = list(nodes)  # the emitter appends to the same builder while the rules run
    live = _live_set(nodes, wrt, stop or set())
    grads: dict[int, Any] = {}
    for v, seed in roots:
        if id(v) in live:
            _accumulate(b, grads, v, seed)
    propagate(b, nodes, grads, live)
    return [grads.get(id(v)) for v in wrt]


# ---- optimizer updates ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SGDConfig:
    """The SGD hyper-parameters baked into a compiled step (the learning rate is a runtime input)."""

    momentum: float = 0.0
    dampening: float = 0.0
    weight_decay: float = 0.0
    nesterov: bool = False
    maximize: bool = False


def sgd_update(b: Any, p: Value, g: Value, buf: Value | None, neg_lr: Value, c: SGDConfig
               ) -> tuple[Value, Value | None]:
    """New ``(param, momentum buffer)``. ``buf`` None with momentum on is PyTorch's first step (the buffer
    starts as the gradient); a zero buffer gives the same result when dampening is 0, which is how the
    compiled step avoids a second graph for the first call. ``neg_lr``: the 0-d input ``-lr``."""
    if c.maximize:
        g = b.neg(g)
    if c.weight_decay != 0:
        g = b.add(g, b.mul(p, c.weight_decay))
    new_buf = None
    if c.momentum != 0:
        if buf is None:
            new_buf = b.clone(g)
        else:
            new_buf = b.add(b.mul(buf, c.momentum), b.mul(g, 1 - c.dampening))
        g = b.add(g, b.mul(new_buf, c.momentum)) if c.nesterov else new_buf
    return b.add(p, b.mul(g, neg_lr)), new_buf


@dataclass(frozen=True)
class AdamConfig:
    """Adam/AdamW hyper-parameters baked into a compiled step."""

    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0
    amsgrad: bool = False
    maximize: bool = False
    decoupled: bool = False


@dataclass(frozen=True)
class AdamScalars:
    """The 0-d runtime inputs of one Adam update: ``1 - lr * wd`` (AdamW), ``sqrt(1 - b2^t)`` and
    ``-lr / (1 - b1^t)``, computed on the host in double precision exactly as eager Adam does."""

    decay: Value | None
    bias2_sqrt: Value
    neg_step: Value


def adam_update(b: Any, p: Value, g: Value, m: Value, v: Value, vmax: Value | None, s: AdamScalars,
                c: AdamConfig) -> tuple[Value, Value, Value, Value | None]:
    """New ``(param, exp_avg, exp_avg_sq, max_exp_avg_sq)``, in eager Adam's operation order."""
    if c.decoupled and c.weight_decay != 0:
        p = b.mul(p, s.decay)
    if c.maximize:
        g = b.neg(g)
    if not c.decoupled and c.weight_decay != 0:
        g = b.add(g, b.mul(p, c.weight_decay))
    m = b.add(b.mul(m, c.beta1), b.mul(g, 1 - c.beta1))
    v = b.add(b.mul(v, c.beta2), b.mul(b.mul(g, g), 1 - c.beta2))
    vv = v
    if c.amsgrad:
        vmax = b.maximum(vmax, v)
        vv = vmax
    denom = b.add(b.div(b.sqrt(vv), s.bias2_sqrt), c.eps)
    p = b.add(p, b.mul(b.div(m, denom), s.neg_step))
    return p, m, v, vmax
