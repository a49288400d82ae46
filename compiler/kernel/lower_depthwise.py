"""Depthwise convolutions (every group one input channel) as a direct loop nest.

A GEMM per channel (M = channel multiplier, K = taps) is all packing overhead, so these run directly:
for each output element a local accumulates ``w[co, 0, t] * x[n, co // m, o*s + t*d]`` over the taps,
the innermost output dim vectorized (one accumulator per lane), reading a zero-bordered copy of each
image when the convolution pads (no bounds tests in the loop). Elementwise nodes after the
convolution (bias, batch-norm affine, activation) are computed from the accumulator and stored in
the same loop when they are all elementwise over the output's elements; otherwise they run after it.
"""

from __future__ import annotations

from typing import Any

from ember.compiler.kernel.builder import cast, iadd, ifloordiv, imul
from ember.compiler.kernel.group import FusionGroup
from ember.compiler.kernel.ir import Binary, Buffer, Const, Declare, Local, Loop, Reduce, Stmt, Store
from ember.compiler.kernel.lower_gemm import lower_rest, result_buffer
from ember.compiler.kernel.values import ZERO, Acc, Index, View, flat_index

__all__ = ["is_depthwise", "lower_depthwise_group"]


def is_depthwise(x: View, w: View, groups: int) -> bool:
    return groups > 1 and groups == x.shape[1] and w.shape[1] == 1


def _tail_fuses(group: FusionGroup, gi: int) -> bool:
    from ember.compiler.kernel.lower import op_lowering_kind

    numel = group.type_of(group.nodes[gi].output).numel
    return all(op_lowering_kind(n.op) == "scalar" for n in group.nodes[gi + 1:]) \
        and all(group.type_of(o).numel == numel for o in group.outputs)


def _stores(group: FusionGroup, gi: int, ev: Any, acc: str, full: Index, c_name: str | None) -> list[Stmt]:
    """The output stores at one output position: the accumulator itself, or the fused tail."""
    from ember.compiler.kernel.lower import _index_in, sanitize

    node = group.nodes[gi]
    t = group.type_of(node.output)
    shape = tuple(t.shape)
    if c_name is not None:
        return [Store(c_name, flat_index(full, shape), Local(acc, t.dtype))]
    ev.values[node.output] = Acc(shape, t.dtype, acc)
    for nd in group.nodes[gi + 1:]:
        ev.node(nd)
    return [Store(sanitize(o), flat_index(full, shape),
                  cast(ev.values[o].at(_index_in(tuple(group.type_of(o).shape), shape, full)),
                       group.type_of(o).dtype)) for o in group.outputs]


def lower_depthwise_group(group: FusionGroup, gi: int, ev: Any, names: Any, x: View, w: View,
                          stmts: list[Stmt], scratch: list[Buffer]) -> tuple[list[Stmt], list[Buffer]]:
    """Finish a depthwise conv group (``x``/``w`` evaluated; ``stmts``/``scratch`` so far)."""
    from ember.compiler.kernel.lower import _nest, _vectorize_innermost, sanitize
    from ember.compiler.kernel.lower_conv import _pad_image

    node = group.nodes[gi]
    attrs, out_shape = node.attrs, tuple(group.type_of(node.output).shape)
    nd, mult, ksize = len(out_shape) - 2, out_shape[1] // x.shape[1], tuple(w.shape[2:])
    c_name = None if _tail_fuses(group, gi) else result_buffer(group, node.output, scratch)
    acc = sanitize(node.output) + "_acc"
    n = names.var("n")
    src, pad, per_image = x, attrs["padding"], []
    if any(pad):
        src, zero, per_image = _pad_image(x, n, pad, f"{sanitize(node.output)}_pad", names, scratch)
        stmts += zero
    shift = [0 if src is not x else -pad[2 * i] for i in range(nd)]  # the padded copy is pre-shifted

    def body(idx: Index) -> list[Stmt]:
        co, pos = idx[0], idx[1:]

        def tap(t: Index) -> list[Stmt]:
            where = [iadd(iadd(imul(pos[i], attrs["stride"][i]), imul(t[i], attrs["dilation"][i])), shift[i])
                     for i in range(nd)]
            prod = Binary("mul", w.at((co, ZERO, *t)), src.at((n, ifloordiv(co, mult), *where)), x.dtype)
            return [Reduce(acc, "add", prod)]

        return [Declare(acc, x.dtype, Const(0.0, x.dtype)), *_nest(ksize, names, tap, "k"),
                *_stores(group, gi, ev, acc, (n, *idx), c_name)]

    inner = _nest(out_shape[1:], names, body)
    if out_shape[-1] >= 8 and inner:
        inner = _vectorize_innermost(inner, 0)
    stmts.append(Loop(n.name, out_shape[0], (*per_image, *inner)))
    if c_name is not None:
        stmts += lower_rest(group, ev, names, node.output, c_name, gi + 1)
    return stmts, scratch
