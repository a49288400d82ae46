"""Lowering of ``conv_weight_grad`` (the "conv_weight_grad" template): a convolution's weight gradient.

One GEMM per group over the whole batch:

    dW_g[Cog, Cg*k] = dYt_g[Cog, N*P] @ cols_g[Cg*k, N*P]^T

``cols_g`` is the im2col matrix of every image's input channels of group ``g`` side by side (image ``n``
in columns ``n*P .. n*P + P``), ``dYt`` the output gradient with its channel dim moved first. Folding the
batch into the GEMM's inner dimension matters for the deep layers of a network, where ``P`` is tiny
(1 position in ResNet-18's last stage at 32x32): a GEMM per image would be a rank-``P`` update of the
whole weight gradient per image. Padding reads 0 through a bounds test on a clamped index, so nothing
outside the input is touched, as in the forward convolution's im2col.
"""

from __future__ import annotations

from typing import Any

from ember.compiler.dtypes import bool_
from ember.compiler.kernel.builder import iadd, imul
from ember.compiler.kernel.group import FusionGroup
from ember.compiler.kernel.ir import Binary, Buffer, Const, Expr, Gemm, Loop, Select, Stmt, Store
from ember.compiler.kernel.lower_conv import bounded
from ember.compiler.kernel.lower_gemm import lower_rest, result_buffer
from ember.compiler.kernel.values import ZERO, Index, Value, flat_index
from ember.runtime.errors import CompileError

__all__ = ["lower_conv_weight_grad_group"]


def _prod(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def _batched_im2col(x: Value, g: Expr, cg: int, ksize: tuple[int, ...], out: tuple[int, ...],
                    attrs: dict[str, Any], cols: str, names: Any) -> list[Stmt]:
    """cols[(c, taps), n*P + pos] = x[n, g*cg + c, pos*stride + tap*dilation - pad] (0 in the padding)."""
    from ember.compiler.kernel.lower import _nest, schedule

    nd = len(ksize)
    batch, spatial = x.shape[0], tuple(x.shape[2:])
    p = _prod(out)
    width = batch * p
    stride, dil, pad = attrs["stride"], attrs["dilation"], attrs["padding"]

    def body(idx: Index) -> list[Stmt]:
        n, c, taps, pos = idx[0], idx[1], idx[2:2 + nd], idx[2 + nd:]
        where: list[Expr] = [n, iadd(imul(g, cg), c)]
        valid: Expr | None = None
        for i in range(nd):
            at = iadd(iadd(imul(pos[i], stride[i]), imul(taps[i], dil[i])), -pad[2 * i])
            if pad[2 * i] or pad[2 * i + 1]:
                at, ok = bounded(at, spatial[i])
                valid = ok if valid is None else Binary("and", valid, ok, bool_)
            where.append(at)
        value = x.at(tuple(where))
        if valid is not None:
            value = Select(valid, value, Const(0.0, x.dtype), x.dtype)
        row = flat_index((c, *taps), (cg, *ksize))
        return [Store(cols, iadd(imul(row, width), iadd(imul(n, p), flat_index(pos, out))), value)]

    shape = (batch, cg, *ksize, *out)
    return schedule(_nest(shape, names, body, "c"), _prod(shape))


def lower_conv_weight_grad_group(group: FusionGroup, gi: int, ev: Any,
                                 names: Any) -> tuple[list[Stmt], list[Buffer]]:
    """Statements and scratch buffers of a ``conv_weight_grad`` group (see the module docstring)."""
    from ember.compiler.codegen.llvm.gemm import Epilogue
    from ember.compiler.kernel.lower import _nest, sanitize, schedule

    node = group.nodes[gi]
    for nd_ in group.nodes[:gi]:
        ev.node(nd_)
    x, y = (ev.operand(v) for v in node.inputs)
    if not isinstance(x, Value) or not isinstance(y, Value) or x.dtype.name != "float32" \
            or y.dtype.name != "float32":
        raise CompileError(f"cannot lower op '{node.op}': the convolution template supports float32 tensors")
    tag = sanitize(node.output)
    attrs = node.attrs
    w_shape = tuple(group.type_of(node.output).shape)
    groups, ksize, out = attrs["groups"], tuple(attrs["kernel_size"]), tuple(y.shape[2:])
    batch, co, cg = y.shape[0], w_shape[0], w_shape[1]
    cog, kdim, p = co // groups, cg * _prod(ksize), _prod(out)
    width = batch * p
    scratch: list[Buffer] = []
    c_name = result_buffer(group, node.output, scratch)
    cols = Buffer(f"{tag}_cols", x.dtype, (kdim, width), (width, 1))
    dyt = Buffer(f"{tag}_dyt", y.dtype, (co, width), (width, 1))
    scratch += [cols, dyt]

    def move(idx: Index) -> list[Stmt]:  # dyt[c, n*P + pos] = dy[n, c, pos]
        n, c, pos = idx[0], idx[1], idx[2:]
        return [Store(dyt.name, iadd(imul(c, width), iadd(imul(n, p), flat_index(pos, out))), y.at(idx))]

    stmts: list[Stmt] = schedule(_nest(tuple(y.shape), names, move, "m"), _prod(tuple(y.shape)))
    # no loop of extent 1 around a single group: the im2col loops inside then stay top-level loops,
    # which run in parallel (the code generator runs nested loops serially)
    g: Expr = names.var("g") if groups > 1 else ZERO
    zero = Const(0, ZERO.dtype)
    per_group = [*_batched_im2col(x, g, cg, ksize, out, attrs, cols.name, names),
                 Gemm(cog, kdim, width, dyt.name, imul(g, cog * width), width, cols.name, zero, width,
                      c_name, imul(g, cog * kdim), kdim, True, Epilogue())]
    stmts += [Loop(g.name, groups, tuple(per_group))] if groups > 1 else per_group
    stmts += lower_rest(group, ev, names, node.output, c_name, gi + 1)
    return stmts, scratch
