"""``affine_batch_norm``: an eval-mode batch norm becomes a per-channel scale and shift of its input.

With ``s = gamma * rsqrt(var + eps)`` and ``t = beta - mean * s`` per channel, ``bn(x) = x * s + t``.
``s`` and ``t`` are ordinary nodes on the parameters and buffers, so in ``ember.compile``'s prepared
pipeline ``hoist_parameter_work`` moves them into the prep graph: they are computed when the weights
change, and a call does one multiply and one add per element. Left as a batch norm, the kernel evaluated
``(x - mean) * (rsqrt(var + eps) * gamma) + beta`` with an ``rsqrt`` per element wherever the product
could not take the normalization into its GEMM epilogue (the positions schedule's transposed result).

Unlike ``fold_batch_norm`` (the frozen pipeline), the convolution's weight is left alone: folding
``W * s`` into a live model would keep a second, prepared copy of every weight (45 MB for ResNet-18).
Only eval-mode batch norms change (statistics, gamma and beta static: parameters, buffers, constants);
channels are dim 1, as for every batch norm. Before::

    %0 = batch_norm(%x, %mean, %var, %g, %b) {eps=1e-05} : float32[1,4,6,6]

After::

    %0 = add(%var, 1e-05) ; %1 = rsqrt(%0) ; %2 = mul(%g, %1)       # s
    %3 = mul(%mean, %2) ; %4 = sub(%b, %3)                          # t
    %5 = reshape(%2) {shape=(4, 1, 1)} ; %6 = mul(%x, %5)
    %7 = reshape(%4) {shape=(4, 1, 1)} ; %8 = add(%6, %7)
"""

from __future__ import annotations

from typing import Any

from ember.compiler.ir.graph import Graph
from ember.compiler.passes._rewrite import Rewriter, is_static
from ember.compiler.passes.dce import eliminate_dead_code

__all__ = ["affine_batch_norm"]


def affine_batch_norm(graph: Graph) -> tuple[Graph, bool, dict[str, Any]]:
    rw = Rewriter(graph)
    b = rw.b
    memo: dict[int, bool] = {}
    done = 0
    for node in graph.nodes:
        if node.op.name != "batch_norm" or not all(is_static(v, memo) for v in node.inputs[1:]):
            rw.copy(node)
            continue
        rw.label(node)
        x, mean, var, gamma, beta = (rw.sub(v) for v in node.inputs)
        s = b.mul(gamma, b.rsqrt(b.add(var, node.attrs["eps"])))
        t = b.sub(beta, b.mul(mean, s))
        out = node.outputs[0]  # batch_norm's inference checks it is [N, C, ...]
        channels = (out.shape[1],) + (1,) * (len(out.shape) - 2)
        rw.replace(out, b.add(b.mul(x, b.reshape(s, shape=channels)), b.reshape(t, shape=channels)))
        done += 1
    if not done:
        return graph, False, {}
    out_graph, _, _ = eliminate_dead_code(rw.finish())
    return out_graph, True, {"batch_norms": done}
