"""Lowering of ``conv_weight_grad`` (the "conv_weight_grad" template): a convolution's weight gradient.

One GEMM per group over the whole batch:

    dW_g[Cog, Cg*k] = dYt_g[Cog, N*P] @ cols_g[Cg*k, N*P]^T

``cols_g`` is the im2col matrix of every image's input channels of group ``g`` side by side (image ``n``
in columns ``n*P .. n*P + P``), ``dYt`` the output gradient with its channel dim moved first. Folding the
batch into the GEMM's inner dimension matters for the deep layers of a network, where ``P`` is tiny
(1 position in ResNet-18's last stage at 32x32): a GEMM per image would be a rank-``P`` update of the
whole weight gradient per image. Padding reads 0 through a bounds test on a clamped index, so nothing
outside the input is touched, as in the forward convolution's im2col.

Implicit GEMM (2-d, ``IMPLICIT_GEMM``): no ``cols`` is written. The GEMM's B is ``cols_g^T`` read in place
from the input (``ir.Im2col`` with ``transposed``: GEMM rows are the positions ``(image, oh, ow)`` over
the whole batch, columns the taps ``(c, i, j)`` of group ``g``), and the template packs its panels
straight from it (``codegen/llvm/gemm_image.py``; the CUDA B loader computes the same address). A padded
convolution first copies the batch into a zero-bordered scratch (one pass, storing 0 in the border), as
does an input that is not a view with unit-stride rows; otherwise the input itself is read.
"""

from __future__ import annotations

from typing import Any

from ember.compiler.kernel.builder import iadd, imul
from ember.compiler.kernel.group import FusionGroup
from ember.compiler.kernel.ir import Buffer, Const, Expr, Gemm, Im2col, Loop, Stmt, Store
from ember.compiler.kernel.lower_conv import read_padded
from ember.compiler.kernel.lower_gemm import lower_rest, result_buffer
from ember.compiler.kernel.values import ZERO, Index, Value, View, contiguous_strides, flat_index
from ember.runtime.errors import CompileError

__all__ = ["IMPLICIT_GEMM", "IMPLICIT_STRIDED", "lower_conv_weight_grad_group"]

# 2-d weight gradients read the (padded) input in place as the GEMM's transposed im2col B operand (see
# the module docstring); False: the im2col matrix ``cols`` is written first (kept to measure one
# against the other).
IMPLICIT_GEMM = True
# Strided ones too (False: they keep ``cols``). The packer's fast path (8 positions x 16 taps by vector
# loads and 8x8 transposes) needs stride 1; strided rows are gathered, which measured slower than
# writing ``cols`` (ResNet-18 CIFAR b32, interleaved, ms implicit/cols: 3x3 s2 64->128 10.9/10.0,
# 1x1 s2 64->128 3.0/1.4; stride 1 64x32x32 16.9/20.3, 128x16x16 15.5/18.2).
IMPLICIT_STRIDED = False


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
        coords = tuple(iadd(iadd(imul(pos[i], stride[i]), imul(taps[i], dil[i])), -pad[2 * i]) for i in range(nd))
        value = read_padded(x, (n, iadd(imul(g, cg), c)), coords, pad, spatial)
        row = flat_index((c, *taps), (cg, *ksize))
        return [Store(cols, iadd(imul(row, width), iadd(imul(n, p), flat_index(pos, out))), value)]

    shape = (batch, cg, *ksize, *out)
    return schedule(_nest(shape, names, body, "c"), _prod(shape))


def _padded_input(x: Value, pad: tuple[int, ...], buf: Buffer, names: Any) -> list[Stmt]:
    """One pass over the zero-bordered scratch ``buf`` ([N, C, *padded]): the input inside, 0 in the
    border (the bounds test on a clamped index of ``bounded``; nothing outside the input is read)."""
    from ember.compiler.kernel.lower import _nest, schedule

    nd = len(buf.shape) - 2
    spatial = tuple(x.shape[2:])

    def body(idx: Index) -> list[Stmt]:
        coords = tuple(iadd(idx[2 + i], -pad[2 * i]) for i in range(nd))
        return [Store(buf.name, flat_index(idx, buf.shape), read_padded(x, idx[:2], coords, pad, spatial))]

    return schedule(_nest(tuple(buf.shape), names, body, "q"), _prod(tuple(buf.shape)))


def _implicit_gemm(x: Value, g: Expr, cg: int, cog: int, ksize: tuple[int, ...], out: tuple[int, ...],
                   attrs: dict[str, Any], dyt: str, c_name: str, tag: str, names: Any,
                   scratch: list[Buffer]) -> tuple[list[Stmt], Gemm]:
    """The statements before the group loop (the padded copy, if any) and group ``g``'s GEMM, which
    reads ``cols_g^T`` from the input in place (``Im2col(transposed=True)``)."""
    from ember.compiler.codegen.llvm.gemm import Epilogue

    pad = tuple(attrs["padding"])
    batch, channels = x.shape[0], x.shape[1]
    pre: list[Stmt] = []
    if any(pad) or not isinstance(x, View) or x.strides[-1] != 1:
        pshape = (batch, channels, *(x.shape[2 + i] + pad[2 * i] + pad[2 * i + 1] for i in range(2)))
        pbuf = Buffer(f"{tag}_pad", x.dtype, pshape, contiguous_strides(pshape))
        scratch.append(pbuf)
        pre += _padded_input(x, pad, pbuf, names)
        src = View(pbuf.name, pshape, x.dtype, contiguous_strides(pshape))
    else:
        src = x
    st = src.strides
    p, kdim = _prod(out), cg * _prod(ksize)
    stride, dil = attrs["stride"], attrs["dilation"]
    image = Im2col(st[1], st[2], ksize[0], ksize[1], dil[0], dil[1], out[1], stride[0], stride[1], p, st[0],
                   transposed=True)
    width, b_off = batch * p, iadd(src.offset, imul(g, cg * st[1]))
    gemm = Gemm(cog, kdim, width, dyt, imul(g, cog * width), width, src.buffer, b_off, kdim, c_name,
                imul(g, cog * kdim), kdim, False, Epilogue(), (), 0, image)
    return pre, gemm


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
    implicit = IMPLICIT_GEMM and len(ksize) == 2 and (IMPLICIT_STRIDED or all(v == 1 for v in attrs["stride"]))
    cols = Buffer(f"{tag}_cols", x.dtype, (kdim, width), (width, 1))
    dyt = Buffer(f"{tag}_dyt", y.dtype, (co, width), (width, 1))
    scratch += [dyt] if implicit else [cols, dyt]

    def move(idx: Index) -> list[Stmt]:  # dyt[c, n*P + pos] = dy[n, c, pos]
        n, c, pos = idx[0], idx[1], idx[2:]
        return [Store(dyt.name, iadd(imul(c, width), iadd(imul(n, p), flat_index(pos, out))), y.at(idx))]

    stmts: list[Stmt] = schedule(_nest(tuple(y.shape), names, move, "m"), _prod(tuple(y.shape)))
    # no loop of extent 1 around a single group: the im2col loops inside then stay top-level loops,
    # which run in parallel (the code generator runs nested loops serially)
    g: Expr = names.var("g") if groups > 1 else ZERO
    zero = Const(0, ZERO.dtype)
    per_group: list[Stmt]
    if implicit:
        pre, gemm = _implicit_gemm(x, g, cg, cog, ksize, out, attrs, dyt.name, c_name, tag, names, scratch)
        stmts += pre
        per_group = [gemm]
    else:
        per_group = [*_batched_im2col(x, g, cg, ksize, out, attrs, cols.name, names),
                     Gemm(cog, kdim, width, dyt.name, imul(g, cog * width), width, cols.name, zero, width,
                          c_name, imul(g, cog * kdim), kdim, True, Epilogue())]
    stmts += [Loop(g.name, groups, tuple(per_group))] if groups > 1 else per_group
    stmts += lower_rest(group, ev, names, node.output, c_name, gi + 1)
    return stmts, scratch
