"""``fold_batch_norm``: an eval-mode batch norm after a convolution or a linear layer becomes part of its
weight and bias.

With ``s = gamma / sqrt(var + eps)`` per output channel, ``bn(conv(x, W) + b) = conv(x, W * s) +
(b - mean) * s + beta``. Covered: ``conv`` (1d/2d/3d, any groups), ``conv_transpose`` (the output channel
is weight dim 1, per group), ``matmul`` with a 2-d ``[N, K] @ [K, C]`` (a linear layer's ``x @ W.T``),
each with or without a bias ``add``. The batch-norm statistics, gamma and beta and the layer's weight
must depend on parameters, buffers and constants only (eval mode), and every intermediate must have the
batch norm as its only reader. This is one of the few passes that names ops: the pattern table
``_WEIGHT_SCALERS`` below.

The new weight and bias are computed by ordinary nodes on the parameters, so a model whose weights change
after compilation still computes the right thing; ``fold_constants(freeze=True)`` (the frozen pipeline)
turns them into constants when the weights are bound. Before::

    %0 = conv(%x, %w) {...} : float32[1,4,6,6]
    %1 = batch_norm(%0, %mean, %var, %g, %b) {eps=1e-05} : float32[1,4,6,6]

After::

    %0 = add(%var, 1e-05) : float32[4]
    %1 = rsqrt(%0) : float32[4]
    %2 = mul(%g, %1) : float32[4]              # s
    %3 = reshape(%2) {shape=(4, 1, 1, 1)} : float32[4,1,1,1]
    %4 = mul(%w, %3) : float32[4,3,3,3]        # W * s
    %5 = conv(%x, %4) {...} : float32[1,4,6,6]
    %6 = mul(%mean, %2) ; %7 = neg(%6) ; %8 = add(%b, %7)   # beta - mean * s
    %9 = reshape(%8) {shape=(4, 1, 1)} ; %10 = add(%5, %9)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ember.compiler.ir.graph import Graph, Node, Value
from ember.compiler.passes._rewrite import Rewriter, is_static, single_user
from ember.compiler.passes.dce import eliminate_dead_code


def _scale_conv(b: Any, w: Value, s: Any, node: Node) -> Any:
    """Conv weight [Co, Ci/g, *k]: output channel is dim 0."""
    return b.mul(w, b.reshape(s, shape=(w.shape[0],) + (1,) * (len(w.shape) - 1)))


def _scale_conv_transpose(b: Any, w: Value, s: Any, node: Node) -> Any:
    """Transposed-conv weight [Ci, Co/g, *k]: output channel ``g * Co/g + j`` is (group g, dim 1 = j)."""
    groups = node.attrs.get("groups", 1)
    ci, cog, k = w.shape[0], w.shape[1], tuple(w.shape[2:])
    if groups == 1:
        return b.mul(w, b.reshape(s, shape=(1, cog) + (1,) * len(k)))
    wg = b.reshape(w, shape=(groups, ci // groups, cog) + k)
    sg = b.reshape(s, shape=(groups, 1, cog) + (1,) * len(k))
    return b.reshape(b.mul(wg, sg), shape=tuple(w.shape))


def _scale_matmul(b: Any, w: Value, s: Any, node: Node) -> Any:
    """Linear weight as the right operand [K, C]: output channel is the column."""
    return b.mul(w, s)


# op name -> how to scale its weight (input 1) per output channel
_WEIGHT_SCALERS: dict[str, Callable[[Any, Value, Any, Node], Any]] = {
    "conv": _scale_conv,
    "conv_transpose": _scale_conv_transpose,
    "matmul": _scale_matmul,
}


def _channel_vector(b: Any, r: Any, out: Value) -> Any:
    """``r`` as a [C] vector when it is a per-channel bias of ``out`` (channel dim 1), else None."""
    if not isinstance(r, Value):
        return None
    nd, c = len(out.shape), out.shape[1]
    shape = (1,) * (nd - len(r.shape)) + tuple(r.shape)
    if len(shape) != nd or shape[1] != c or any(s != 1 for i, s in enumerate(shape) if i != 1):
        return None
    return r if tuple(r.shape) == (c,) else b.reshape(r, shape=(c,))


class _Folder:
    def __init__(self, graph: Graph) -> None:
        self.rw = Rewriter(graph)
        self.users = graph.users()
        self.outputs = {id(v) for v in graph.output_values()}
        self.memo: dict[int, bool] = {}
        self.refusals: list[str] = []

    def _single(self, v: Value) -> bool:
        return single_user(self.users, self.outputs, v)

    def match(self, bn: Node) -> tuple[Node, Any] | None:
        """(the conv/matmul node, its bias value or None) feeding ``bn``, or None (reason recorded)."""
        x = bn.inputs[0]
        if not all(is_static(v, self.memo) for v in bn.inputs[1:]):
            self.refusals.append("batch_norm not folded: its statistics are computed (training mode)")
            return None
        bias = None
        p = x.producer
        if p is not None and p.op.name == "add" and self._single(x):
            for i in (0, 1):
                y, r = p.inputs[i], p.inputs[1 - i]
                if isinstance(y, Value) and y.producer is not None and y.producer.op.name in _WEIGHT_SCALERS \
                        and self._single(y) and is_static(r, self.memo):
                    p, bias = y.producer, r
                    break
        if p is None or p.op.name not in _WEIGHT_SCALERS:
            self.refusals.append("batch_norm not folded: its input is not a conv, conv_transpose or linear")
            return None
        if bias is None and not self._single(x):
            what = ("is a graph output" if id(x) in self.outputs
                    else f"has {len(self.users.get(x, []))} users")
            self.refusals.append(f"batch_norm not folded into {p.op.name}: {p.op.name} output {what}")
            return None
        w = p.inputs[1]
        if not is_static(w, self.memo):
            self.refusals.append(f"batch_norm not folded into {p.op.name}: its weight depends on inputs")
            return None
        if p.op.name == "matmul" and (len(p.inputs[0].shape) != 2 or len(w.shape) != 2):
            self.refusals.append("batch_norm not folded into matmul: only [N, K] @ [K, C] is a linear layer")
            return None
        return p, bias

    def fold(self, bn: Node, layer: Node, bias: Any) -> None:
        rw, b = self.rw, self.rw.b
        rw.label(bn)
        x, mean, var, gamma, beta = (rw.sub(v) for v in bn.inputs)
        out = bn.outputs[0]
        s = b.mul(gamma, b.rsqrt(b.add(var, bn.attrs["eps"])))
        w = _WEIGHT_SCALERS[layer.op.name](b, rw.sub(layer.inputs[1]), s, layer)
        y = b.emit(layer.op, (rw.sub(layer.inputs[0]), w), dict(layer.attrs))
        if bias is None:
            new_bias = b.sub(beta, b.mul(mean, s))
        else:
            new_bias = b.add(b.mul(b.sub(_channel_vector(b, rw.sub(bias), out), mean), s), beta)
        if len(out.shape) > 2:
            new_bias = b.reshape(new_bias, shape=(out.shape[1],) + (1,) * (len(out.shape) - 2))
        rw.replace(out, b.add(y, new_bias))

    def bias_ok(self, layer: Node, bias: Any, out: Value) -> bool:
        return bias is None or _channel_vector(_ShapeOnly(), bias, out) is not None


class _ShapeOnly:
    """Stands in for the builder when only the shape test of ``_channel_vector`` is wanted."""

    def reshape(self, r: Any, shape: tuple[int, ...]) -> Any:
        return r


def fold_batch_norm(graph: Graph) -> tuple[Graph, bool, dict[str, Any]]:
    folder = _Folder(graph)
    folded: dict[str, int] = {}
    for node in graph.nodes:
        matched = folder.match(node) if node.op.name == "batch_norm" else None
        if matched is not None and folder.bias_ok(matched[0], matched[1], node.outputs[0]):
            folder.fold(node, *matched)
            key = f"folded_into_{matched[0].op.name}"
            folded[key] = folded.get(key, 0) + 1
            continue
        if matched is not None:
            folder.refusals.append("batch_norm not folded: the add before it is not a per-channel bias")
        folder.rw.copy(node)
    if not folded:
        return graph, False, {"refused": len(folder.refusals), "reasons": folder.refusals}
    out, _, _ = eliminate_dead_code(folder.rw.finish())
    return out, True, {**folded, "refused": len(folder.refusals), "reasons": folder.refusals}


__all__ = ["fold_batch_norm"]
