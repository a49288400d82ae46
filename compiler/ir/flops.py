"""FLOP estimates per node, kept beside the IR rather than in the op definitions: an estimate is a report
detail, not part of an op's meaning. Keyed by the op's lowering template (GEMM- and conv-like ops), then by
its fusion pattern; a multiply-add counts as 2 FLOPs, data movement as 0. ``None`` means "no estimate"."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ember.compiler.ir.graph import Node, Value
from ember.compiler.ops.registry import Pattern


def _prod(xs: Any) -> int:
    n = 1
    for x in xs:
        n *= int(x)
    return n


def _shape(x: Any) -> tuple[int, ...]:
    return tuple(x.type.shape) if isinstance(x, Value) else ()


def _gemm(node: Node) -> int:
    a = _shape(node.inputs[0])
    k = a[-1] if a else 1
    return 2 * node.outputs[0].type.numel * k


def _conv(node: Node) -> int:
    w = _shape(node.inputs[1])  # (C_out, C_in / groups, *kernel)
    return 2 * node.outputs[0].type.numel * _prod(w[1:])


def _conv_transpose(node: Node) -> int:
    x, w = _shape(node.inputs[0]), _shape(node.inputs[1])  # w: (C_in, C_out / groups, *kernel)
    return 2 * _prod(x) * _prod(w[1:])


def _conv_weight_grad(node: Node) -> int:
    w = node.outputs[0].type.shape  # the weight's shape: (C_out, C_in / groups, *kernel)
    g = _shape(node.inputs[1])      # grad_output: (N, C_out, *spatial)
    return 2 * _prod(g) * _prod(w[1:])


def _pool(node: Node) -> int:
    k = node.attrs.get("kernel_size")
    per = _prod(k) if isinstance(k, tuple) else 1
    return node.outputs[0].type.numel * per


def _per_input_element(factor: int) -> Callable[[Node], int]:
    return lambda node: factor * _prod(_shape(node.inputs[0]))


_BY_TEMPLATE: dict[str, Callable[[Node], int]] = {
    "gemm": _gemm,
    "conv": _conv,
    "conv_transpose": _conv_transpose,
    "conv_weight_grad": _conv_weight_grad,
    "pool": _pool,
    "pool_backward": _per_input_element(1),
    "softmax": _per_input_element(5),       # max, subtract, exp, sum, divide
    "log_softmax": _per_input_element(5),
    "batch_norm": _per_input_element(4),    # subtract, scale, multiply, add
}


def estimate_flops(node: Node) -> int | None:
    """Floating-point operations of one node, or None when there is no formula for it."""
    template = node.op.lowering.get("template")
    if template in _BY_TEMPLATE:
        return _BY_TEMPLATE[template](node)
    if template is not None:
        return None
    pattern = node.op.pattern
    if pattern in (Pattern.ELEMWISE, Pattern.BROADCAST):
        return sum(v.type.numel for v in node.outputs)
    if pattern == Pattern.REDUCTION:
        return _prod(_shape(node.inputs[0])) if node.inputs else 0
    if pattern == Pattern.INJECTIVE:
        return 0
    return None
