"""``canonicalize``: algebraic identities and movement chains, so later passes see one spelling.

Rules (a pattern table keyed by op name: identities are specific to their op):

* ``mul(x, 1)``, ``mul(1, x)``, ``div(x, 1)``, ``pow(x, 1)``, ``add(x, -0.0)``, ``sub``-style
  ``add(x, 0)`` for integer/bool ``x`` -> ``x``, only when the result type equals ``x``'s (no promotion,
  no broadcast). ``add(x, 0.0)`` on floats is kept: it turns ``-0.0`` into ``+0.0``.
* ``neg(neg(x))`` -> ``x``; ``cast(x)`` to ``x``'s own dtype -> ``x``.
* ``reshape(reshape(x))`` -> one ``reshape``; a reshape to the same shape -> ``x``.
* ``permute(permute(x))`` -> one permute with the composed order; the identity permute -> ``x``.

Before::

    %0 = mul(%x, 1) : float32[2,3]
    %1 = reshape(%0) {shape=(3, 2)} : float32[3,2]
    %2 = reshape(%1) {shape=(6,)} : float32[6]
    return %2

After::

    %0 = reshape(%x) {shape=(6,)} : float32[6]
    return %0
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ember.compiler.ir.graph import Graph, Node, Value
from ember.compiler.passes._rewrite import Rewriter
from ember.compiler.passes.dce import eliminate_dead_code


def _is_scalar(x: Any, value: float) -> bool:
    return not isinstance(x, (Value, bool)) and isinstance(x, (int, float)) and x == value


def _same_type(v: Any, node: Node) -> bool:
    return isinstance(v, Value) and v.type == node.outputs[0].type


def _neutral(position: int, value: float) -> Callable[[Rewriter, Node, tuple[Any, ...]], Any]:
    """``op(x, value)`` (or ``op(value, x)`` for position 0) is ``x``."""

    def rule(rw: Rewriter, node: Node, ins: tuple[Any, ...]) -> Any:
        for i in ((0, 1) if position == 0 else (0,)):
            x, k = ins[i], ins[1 - i]
            if _is_scalar(k, value) and _same_type(x, node):
                return x
        return None

    return rule


def _add(rw: Rewriter, node: Node, ins: tuple[Any, ...]) -> Any:
    for i in (0, 1):
        x, k = ins[i], ins[1 - i]
        if not _same_type(x, node) or not _is_scalar(k, 0):
            continue
        if x.dtype.np.kind in "fc":
            if isinstance(k, float) and str(k) == "-0.0":
                return x
            continue
        return x
    return None


def _neg(rw: Rewriter, node: Node, ins: tuple[Any, ...]) -> Any:
    x = ins[0]
    if isinstance(x, Value) and x.producer is not None and x.producer.op is node.op:
        return rw.sub(x.producer.inputs[0])
    return None


def _cast(rw: Rewriter, node: Node, ins: tuple[Any, ...]) -> Any:
    return ins[0] if _same_type(ins[0], node) else None


def _reshape(rw: Rewriter, node: Node, ins: tuple[Any, ...]) -> Any:
    x = ins[0]
    if _same_type(x, node):
        return x
    p = x.producer if isinstance(x, Value) else None
    if p is not None and p.op is node.op:
        src = p.inputs[0]
        return src if _same_type(src, node) else rw.b.reshape(src, shape=tuple(node.outputs[0].shape))
    return None


def _permute(rw: Rewriter, node: Node, ins: tuple[Any, ...]) -> Any:
    x, dims = ins[0], tuple(node.attrs["dims"])
    if dims == tuple(range(len(dims))):
        return x
    p = x.producer if isinstance(x, Value) else None
    if p is not None and p.op is node.op:
        inner = tuple(p.attrs["dims"])
        composed = tuple(inner[d] for d in dims)
        src = p.inputs[0]
        return src if composed == tuple(range(len(composed))) else rw.b.permute(src, dims=composed)
    return None


_RULES: dict[str, Callable[[Rewriter, Node, tuple[Any, ...]], Any]] = {
    "mul": _neutral(0, 1),
    "div": _neutral(1, 1),
    "pow": _neutral(1, 1),
    "add": _add,
    "neg": _neg,
    "cast": _cast,
    "reshape": _reshape,
    "permute": _permute,
}


def canonicalize(graph: Graph) -> tuple[Graph, bool, dict[str, Any]]:
    rw = Rewriter(graph)
    counts: dict[str, int] = {}
    for node in graph.nodes:
        rule = _RULES.get(node.op.name)
        if rule is not None and node.op.num_outputs == 1 and not _has_rounding(node):
            rw.label(node)
            ins = tuple(rw.sub(x) for x in node.inputs)
            new = rule(rw, node, ins)
            if new is not None:
                rw.replace(node.outputs[0], new)
                counts[node.op.name] = counts.get(node.op.name, 0) + 1
                continue
        rw.copy(node)
    if not counts:
        return graph, False, {"rewritten": 0}
    out, _, _ = eliminate_dead_code(rw.finish())
    return out, True, {"rewritten": sum(counts.values()), **{f"{k}": v for k, v in sorted(counts.items())}}


def _has_rounding(node: Node) -> bool:
    """``div(x, 1, rounding_mode="floor")`` rounds: it is not the identity on floats."""
    return node.attrs.get("rounding_mode") is not None


__all__ = ["canonicalize"]
