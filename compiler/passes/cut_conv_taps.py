"""``cut_conv_taps``: a convolution whose outer kernel taps read only padding gets a smaller kernel.

A 3x3 kernel with padding 1 on a 1x1 plane (the last stage of a ResNet on 32x32 images) reads the
input with its centre tap only: the other eight multiply zeros, yet cost eight ninths of the GEMM depth
and of the weight bytes. ``ops.conv.cut_dead_taps`` finds the live taps of each spatial dim; the conv
then reads a slice of its weight with the padding shrunk to match (the output is the same). The slice
is copied contiguous (``clone``), so the GEMM reads the live taps' rows with unit stride. Only a conv
whose weight depends on parameters, buffers and constants alone is rewritten: that slice is weight
preparation, which ``hoist_parameter_work`` moves out of the per-call code.

Before::

    %0 = conv(%x, %w) {stride=(1, 1), padding=(1, 1, 1, 1), dilation=(1, 1), groups=1} : float32[1,8,1,1]

After::

    %0 = getitem(%w) {index=(slice, slice, (1, 2), (1, 2))} : float32[8,8,1,1]
    %1 = clone(%0) : float32[8,8,1,1]
    %2 = conv(%x, %1) {stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1), groups=1} : float32[1,8,1,1]
"""

from __future__ import annotations

from typing import Any

from ember.compiler.ir.graph import Graph
from ember.compiler.ops.conv import cut_dead_taps
from ember.compiler.passes._rewrite import Rewriter, is_static
from ember.runtime.errors import InternalError

__all__ = ["cut_conv_taps"]

_ALL = ("slice", None, None, None)


def cut_conv_taps(graph: Graph) -> tuple[Graph, bool, dict[str, Any]]:
    rw = Rewriter(graph)
    memo: dict[int, bool] = {}
    cut = []
    for node in graph.nodes:
        if node.op.name != "conv" or not is_static(node.inputs[1], memo):
            rw.copy(node)
            continue
        x, w = (rw.sub(v) for v in node.inputs)
        out = node.outputs[0]
        found = cut_dead_taps(tuple(x.shape[2:]), tuple(out.shape[2:]), tuple(w.shape[2:]), node.attrs)
        if found is None:
            rw.copy(node)
            continue
        first, taps, attrs = found
        rw.label(node)
        index = (_ALL, _ALL, *(("slice", f, f + t, None) for f, t in zip(first, taps)))
        live = rw.b.clone(rw.b.getitem(w, index=index))
        new = rw.b.conv(x, live, **attrs)
        if tuple(new.shape) != tuple(out.shape):  # the cut must not move the output's edge
            raise InternalError(f"cut_conv_taps changed a conv's output shape {out.shape} to {new.shape}")
        rw.replace(out, new)
        cut.append(f"{'x'.join(map(str, w.shape[2:]))} -> {'x'.join(map(str, taps))}")
    return rw.finish(), bool(cut), {"cut": len(cut), "kernels": cut}
