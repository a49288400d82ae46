"""``choose_layout``: pick the data layout of each convolution for the target, and insert conversions.

Decision as built, for the ``llvm`` (CPU) target: activations stay NCHW (NC* for 1d/3d) and no
conversion is inserted. This is a measured decision, recorded per convolution in the pass statistics
together with the GEMM schedule the convolution will get (``compiler/kernel/lower_conv_batched.py:
choose_schedule``):

* ``per_image`` (planes over 32 positions): one GEMM per image whose rows are the output channels, so
  its fused epilogue writes NCHW directly; nothing for another layout to save.
* ``batched`` (small planes, several images): one GEMM over a chunk of images, channel-major, then one
  copy to NCHW that also adds the residual and applies the activation.
* ``positions`` (batch x plane <= 8): the NHWC-form GEMM (positions as rows, weights read unpacked),
  then the same copy to NCHW.

An NHWC or blocked NCHWc layout would remove only those copies (the GEMMs are the same products with
operands swapped, and the positions schedule already is the NHWC-form one where that form is faster),
while it would add conversions at the region edges and need NHWC pooling kernels.
``benchmarks/conv_layout.py`` times the copies as kernels of their own: 1.2% of ResNet-18 3x32x32 at
batch 32, 1.6% at batch 1, 0.1% of VGG-11-BN at batch 8, none for LeNet-5 at 64 (CPU time, 2 threads,
loaded machine). The ceiling of the gain is below the cost of even one conversion per region, so
NCHW wins on this target. The CUDA target lowers convolutions from the same NCHW graph.

Before and after are the same graph::

    %0 = conv(%x, %w) {...} : float32[1,8,32,32]
    %1 = relu(%0) : float32[1,8,32,32]

with ``layout_decisions`` giving ``["conv float32[1, 8, 32, 32]: NCHW, per_image schedule"]`` and the
statistics ``layout="NCHW"``, ``schedules={"per_image": 1}``, ``conversions_inserted=0`` and the
reason above as ``decision``.
"""

from __future__ import annotations

from typing import Any

from ember.compiler.ir.graph import Graph
from ember.compiler.ops.registry import Pattern

__all__ = ["TARGET_LAYOUTS", "choose_layout", "layout_decisions"]

TARGET_LAYOUTS: dict[str, tuple[str, str]] = {
    "llvm": ("NCHW", "NCHW kept for llvm: an NHWC/NCHWc layout would only remove the NCHW write of batched "
                     "and positions convs, measured at <= 1.6% of model time (benchmarks/conv_layout.py), "
                     "less than the conversions it needs"),
    "cuda": ("NCHW", "NCHW kept for cuda: its conv kernels are lowered from the NCHW graph"),
}


def _schedule(template: str, shape: tuple[int, ...]) -> str:
    from ember.compiler.kernel.lower_conv_batched import choose_schedule

    if template != "conv":
        return f"{template} template"
    positions = 1
    for s in shape[2:]:
        positions *= s
    how, chunk = choose_schedule(shape[0], positions)
    return f"{how} schedule" + (f" ({chunk} images per GEMM)" if how == "batched" else "")


def _convolutions(graph: Graph) -> list[Any]:
    return [n for n in graph.nodes if n.op.pattern == Pattern.OUT_FUSABLE
            and n.op.lowering.get("template", "").startswith("conv")]


def layout_decisions(graph: Graph, target: str = "llvm") -> list[str]:
    """One line per convolution: the layout chosen for it on ``target`` and the GEMM schedule."""
    layout = TARGET_LAYOUTS[target][0]
    out = []
    for node in _convolutions(graph):
        v = node.outputs[0]
        schedule = _schedule(node.op.lowering["template"], tuple(v.shape))
        out.append(f"{node.op.name} {v.dtype.name}{list(v.shape)}: {layout}, {schedule}")
    return out


def choose_layout(graph: Graph, target: str = "llvm") -> tuple[Graph, bool, dict[str, Any]]:
    """The layout pass: records the decision (see the module docstring); the graph is unchanged."""
    layout, why = TARGET_LAYOUTS[target]
    schedules: dict[str, int] = {}
    for node in _convolutions(graph):
        key = _schedule(node.op.lowering["template"], tuple(node.outputs[0].shape)).split(" ")[0]
        schedules[key] = schedules.get(key, 0) + 1
    stats: dict[str, Any] = {"convolutions": sum(schedules.values()), "conversions_inserted": 0}
    if schedules:
        stats.update(layout=layout, schedules=dict(sorted(schedules.items())), decision=why)
    return graph, False, stats
