"""Batched and position-major convolution GEMMs, for small output planes.

The per-image schedule of ``lower_conv.py`` runs ``W_g[Cog, K] @ cols[K, P]`` once per image. When the
output plane ``P`` is small (the 8x8 .. 1x1 stages of a ResNet on 32x32 inputs) each of those GEMMs
has few columns, so most of each 16-column register tile is wasted, and the template repacks the whole
weight matrix and forks threads for a sliver of work, once per image. ``choose_schedule`` picks:

* batched: ``chunk`` images share one im2col matrix and one GEMM::

      C[Co, N*P] (columns n*P + p) = W_g[Cog, K] @ cols[K, chunk*P]      for each chunk and group

  with the weights packed once per chunk. ``C`` is channel-major (CNHW), so the GEMM's rows are still
  output channels: a per-channel bias / batch-norm scale stays the fused ``row_bias`` / ``row_scale``
  (and the activation too when nothing else follows). The chunk is sized so a GEMM has about
  ``TARGET_COLUMNS`` columns, which bounds the im2col scratch to ``K * TARGET_COLUMNS`` floats.
* positions (batch x plane <= ``POSITION_ROWS``): ``C[N*P, Co] = colsT[N*P, K] @ W_g^T``, the weights
  being the template's transposed B, which its small-M path reads without packing (at batch 1 the late
  ResNet stages are a few positions against megabytes of weights); per-channel vectors are columns.

Either way one loop nest then writes the NCHW output from ``C`` (a permuted view), computing the rest
of the group on the way: a residual add and its relu cost no extra pass there.
"""

from __future__ import annotations

from typing import Any

from ember.compiler.kernel.builder import iadd, imul
from ember.compiler.kernel.conv_padding import zero_border
from ember.compiler.kernel.group import FusionGroup
from ember.compiler.kernel.ir import Buffer, Const, Expr, Gemm, Im2col, Loop, Stmt, Store
from ember.compiler.kernel.lower_gemm import match_epilogue
from ember.compiler.kernel.values import ZERO, Index, View, contiguous_strides, flat_index

__all__ = ["BATCH_MAX_POSITIONS", "IMPLICIT_GEMM", "IMPLICIT_MAX_SCRATCH", "IMPLICIT_MIN_DEPTH", "IMPLICIT_MIN_ROWS",
           "IMPLICIT_MIN_WIDTH", "IMPLICIT_STRIDED", "POSITION_ROWS", "TARGET_COLUMNS", "choose_schedule",
           "images_per_gemm", "implicit_pays", "lower_batched_conv"]

# Output planes up to this many positions are batched: below one register tile's width (16 columns) a
# per-image GEMM wastes most of each tile, and the weights' repacking is paid per image. At 8x8 (64) the
# per-image GEMMs were faster than batching plus the extra NCHW write (CPU time, 1 thread:
# [32,64,8,8] 2.39 vs 2.87 ms; [32,128,4,4] 2.93 vs 2.65 ms; see docs/architecture.md).
BATCH_MAX_POSITIONS = 32
# GEMM columns per chunk: enough that packing the weights (Cog x K) is a small share of a chunk's
# work, few enough that the im2col scratch (K x columns) stays in L3 for the K of a ResNet stage.
TARGET_COLUMNS = 1024
# 2-d convolutions may hand the GEMM template the (padded) images, whose B packing then reads the
# im2col matrix's panels from them (``ir.Im2col``, ``codegen/llvm/gemm_image.py``) instead of an im2col
# matrix written first (per image, or side by side in the batched schedule). ``implicit_pays`` decides
# per shape. The packer copies a panel of 16 output positions with two vector loads when they lie in one
# output row, with four masked loads when they span one row break, and with gathers otherwise (several
# breaks, stride 2), which lose to the im2col loop nest's unit-stride copies; and with few output
# channels packing is most of the work either way. Measured in one process, alternating, 2 threads
# (im2col time / implicit time): 3x3 on 64x56x56 1.12, 128x28x28 1.00, 256x14x14 1.02, ResNet-18 32x32
# at batch 32 on 8x8 planes 1.02; LeNet-5's convolutions (6 and 16 channels) 0.85-0.86, 4x4 planes
# batched 0.91, stride 2 (gathers) 0.90-0.94.
IMPLICIT_GEMM = True           # False: never (im2col loop nests and plain GEMMs)
IMPLICIT_MIN_WIDTH = 8         # output rows at least this wide (at most one row break per panel) ...
IMPLICIT_MIN_DEPTH = 64        # ... a GEMM depth (Cg * kh * kw) at least this large ...
IMPLICIT_MIN_ROWS = 32         # ... and at least this many output channels per group
IMPLICIT_STRIDED = False       # strided rows too (every panel gathered)
# An im2col matrix of at least this many floats is not written whatever the shape: it would dominate
# the arena (ResNet-18's 7x7 stride-2 stem at 224: 1.8M floats, 7.4 MB, half of the arena), and the
# gathered packing costs that one convolution about 6%.
IMPLICIT_MAX_SCRATCH = 1 << 20


def direct_convolutions() -> bool:
    """Whether the CPU back end runs implicit-GEMM convolutions as direct convolutions (AVX-512 hosts,
    ``codegen/llvm/conv_direct.py``): no packing of the image, and any plane fills the register tile,
    so every 2-d convolution reads its image in place and no plane needs the positions schedule.
    (Lowering asks the back end here because the measured rules above are the packed template's.)"""
    from ember.compiler.codegen.llvm.conv_direct import direct_available

    return IMPLICIT_GEMM and direct_available()


def implicit_pays(out_width: int, stride_w: int, depth: int, rows: int = IMPLICIT_MIN_ROWS,
                  scratch: int = 0) -> bool:
    """Whether a 2-d convolution's GEMM should read the im2col matrix from the image (see above);
    ``scratch``: the floats the im2col matrix would take."""
    if not IMPLICIT_GEMM:
        return False
    if direct_convolutions():
        return True
    if scratch >= IMPLICIT_MAX_SCRATCH:
        return True
    return (stride_w == 1 or IMPLICIT_STRIDED) and out_width >= IMPLICIT_MIN_WIDTH \
        and depth >= IMPLICIT_MIN_DEPTH and rows >= IMPLICIT_MIN_ROWS


# batch * positions up to which the output positions are the GEMM's rows and the weights its transposed
# B operand, which the template reads unpacked (its dot-product path for a few rows): the late stages
# of a ResNet at batch 1, where repacking megabytes of weights for a handful of columns dominated
# ([1,512,1,1] with a 512x512x3x3 kernel: 1.90 ms per image, 0.52 ms by positions; CPU time, 1 thread).
# Up to 64 rows (the dot path's limit, GemmConfig.dot_max_m): ResNet-18's 7x7 stage at 224 (49 rows)
# was 1.20x faster this way than per image, whose 49 columns fill 4 panels of 16 (77% used); A/B in one
# process, 2 threads: ResNet-18 224 b1 1.04x, 32x32 b1 1.07x, VGG-11-BN b8 1.04x, others within 1%.
POSITION_ROWS = 64
# With direct convolutions (``direct_convolutions``) the positions schedule is kept only for planes of
# fewer positions than this (over the batch): below one 8-position register tile the direct kernel
# computes padding rows, and its per-call weight packing costs more than the dot path's unpacked reads.
DIRECT_MIN_POSITIONS = 8


def choose_schedule(batch: int, positions: int) -> tuple[str, int]:
    """``("positions", batch)``, ``("batched", images per GEMM)`` or ``("per_image", 1)``."""
    if DIRECT_MIN_POSITIONS <= batch * positions <= POSITION_ROWS and direct_convolutions():
        return ("batched", batch) if batch > 1 else ("per_image", 1)
    if batch * positions <= POSITION_ROWS:
        return "positions", batch
    chunk = images_per_gemm(batch, positions)
    return ("batched", chunk) if chunk > 1 else ("per_image", 1)


def images_per_gemm(batch: int, positions: int, target: int | None = None) -> int:
    """Images per GEMM: 1 (the per-image schedule) when the plane is large enough for efficient
    per-image GEMMs or there is one image; otherwise enough images for about ``target`` columns."""
    target = TARGET_COLUMNS if target is None else target
    if batch <= 1 or positions > BATCH_MAX_POSITIONS or target <= 0:
        return 1
    return min(batch, -(-target // positions))


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def _pad_chunk(x: View, n0: Expr, count: int, pad: tuple[int, ...], buf: Buffer, names: Any) -> list[Stmt]:
    """Copy images ``n0 .. n0 + count`` into the interior of the zero-bordered scratch ``buf``."""
    from ember.compiler.kernel.lower import _nest, schedule

    nd = len(x.shape) - 2

    def copy(idx: Index) -> list[Stmt]:
        dst = (idx[0], idx[1], *(iadd(idx[2 + i], pad[2 * i]) for i in range(nd)))
        return [Store(buf.name, flat_index(dst, buf.shape), x.at((iadd(n0, idx[0]), *idx[1:])))]

    shape = (count, *x.shape[1:])
    return schedule(_nest(shape, names, copy, "q"), _numel(shape))


def _im2col_chunk(src: View, image: Any, c0: Expr, cg: int, ksize: tuple[int, ...], out: tuple[int, ...],
                  attrs: dict[str, Any], count: int, cols: str, names: Any, transposed: bool) -> list[Stmt]:
    """Loops filling ``cols[(c, taps), (b, positions)]`` (``transposed``: ``cols[(b, positions), (c,
    taps)]``) for ``count`` images (``image(b)`` is the source image index of chunk image ``b``); ``src``
    is unpadded or already zero-bordered."""
    from ember.compiler.kernel.lower import _nest, schedule

    nd = len(ksize)
    stride, dil = attrs["stride"], attrs["dilation"]
    shape = (count, *out, cg, *ksize) if transposed else (cg, *ksize, count, *out)

    def body(idx: Index) -> list[Stmt]:
        if transposed:
            b, pos, c, taps = idx[0], idx[1:1 + nd], idx[1 + nd], idx[2 + nd:]
        else:
            c, taps, b, pos = idx[0], idx[1:1 + nd], idx[1 + nd], idx[2 + nd:]
        where = [image(b), iadd(c0, c)]
        where += [iadd(imul(pos[i], stride[i]), imul(taps[i], dil[i])) for i in range(nd)]
        return [Store(cols, flat_index(idx, shape), src.at(tuple(where)))]

    return schedule(_nest(shape, names, body, "c"), _numel(shape))


def _channel_only(v: Any, out_shape: tuple[int, ...], transposed: bool) -> str | None:
    """Only per-channel vectors fuse into the GEMM (GEMM rows are channels, or columns when
    ``transposed``); a residual is added when writing NCHW, since the GEMM's C is CNHW (NHWC when
    transposed), where an NCHW residual is not a row-major matrix."""
    from ember.compiler.kernel.lower_conv import _channel_role

    if _channel_role(v, out_shape) != "row":
        return None
    return "col" if transposed else "row"


def lower_batched_conv(group: FusionGroup, gi: int, ev: Any, names: Any, x: View, w: View, chunk: int,
                       stmts: list[Stmt], scratch: list[Buffer],
                       transposed: bool = False,
                       attrs: dict[str, Any] | None = None) -> tuple[list[Stmt], list[Buffer]]:
    """Finish a conv group (``x``/``w`` evaluated views; ``stmts``/``scratch`` so far) with ``chunk``
    images per GEMM (see the module docstring); ``transposed``: positions are the GEMM's rows;
    ``attrs``: the conv's after a tap cut (``ops.conv.cut_dead_taps``), else the node's."""
    from ember.compiler.kernel.lower import sanitize

    node = group.nodes[gi]
    attrs, base = node.attrs if attrs is None else attrs, sanitize(node.output)
    out_shape = tuple(group.type_of(node.output).shape)
    batch, co, ksize, out = out_shape[0], out_shape[1], tuple(w.shape[2:]), out_shape[2:]
    groups, cg = attrs["groups"], w.shape[1]
    cog, kdim, p = co // groups, cg * _numel(ksize), _numel(out)
    epi, cur, j = match_epilogue(group, gi, ev.values, lambda v: _channel_only(v, out_shape, transposed), False)
    cshape, colshape = ((batch * p, co), (chunk * p, kdim)) if transposed else ((co, batch * p), (kdim, chunk * p))
    cbuf = Buffer(f"{base}_cnp", x.dtype, cshape, contiguous_strides(cshape))
    cols = Buffer(f"{base}_cols", x.dtype, colshape, contiguous_strides(colshape))
    src, geo, pbuf = x, attrs, None
    if any(attrs["padding"]):
        pad = attrs["padding"]
        nd = len(ksize)
        pshape = (chunk, x.shape[1], *(x.shape[2 + i] + pad[2 * i] + pad[2 * i + 1] for i in range(nd)))
        pbuf = Buffer(f"{base}_pad", x.dtype, pshape, contiguous_strides(pshape))
        scratch.append(pbuf)
        stmts += zero_border(pbuf, pad, names)  # chunks only write the interior
        src = View(pbuf.name, pshape, x.dtype, contiguous_strides(pshape))
        geo = {**attrs, "padding": (0,) * len(pad)}
    # implicit GEMM (ir.Im2col over the chunk's images side by side) unless positions are the GEMM's rows
    implicit = not transposed and len(ksize) == 2 and src.strides[-1] == 1 \
        and implicit_pays(out[1], geo["stride"][1], kdim, cog, kdim * chunk * p)
    scratch += [cbuf] if implicit else [cbuf, cols]

    def gemm(g: Expr, n0: Expr, count: int, first_image: Expr) -> Gemm:
        operands = tuple((name, buf, iadd(off, imul(g, cog))) for name, buf, off in epi.operands)
        w_off, zero = iadd(w.offset, imul(g, cog * kdim)), Const(0, ZERO.dtype)
        c_off = iadd(imul(g, cog * batch * p), imul(n0, p))
        if transposed:
            return Gemm(count * p, cog, kdim, cols.name, zero, kdim, w.buffer, w_off, kdim, cbuf.name,
                        iadd(imul(n0, p * co), imul(g, cog)), co, True, epi.build(), operands, 0)
        if implicit:
            st = src.strides
            b_off = iadd(src.offset, iadd(imul(first_image, st[0]), imul(g, cg * st[1])))
            image = Im2col(st[1], st[2], ksize[0], ksize[1], geo["dilation"][0], geo["dilation"][1], out[1],
                           geo["stride"][0], geo["stride"][1], p, st[0])
            return Gemm(cog, count * p, kdim, w.buffer, w_off, kdim, src.buffer, b_off, count * p, cbuf.name,
                        c_off, batch * p, False, epi.build(), operands, 0, image)
        return Gemm(cog, count * p, kdim, w.buffer, w_off, kdim, cols.name, zero, count * p, cbuf.name,
                    c_off, batch * p, False, epi.build(), operands, 0)

    def chunk_stmts(n0: Expr, count: int) -> list[Stmt]:
        body: list[Stmt] = []
        if pbuf is not None:
            body += _pad_chunk(x, n0, count, attrs["padding"], pbuf, names)
        image = (lambda b: b) if pbuf is not None else (lambda b: iadd(n0, b))
        g = names.var("g") if groups > 1 else Const(0, ZERO.dtype)
        inner = [] if implicit else _im2col_chunk(src, image, imul(g, cg), cg, ksize, out, geo, count, cols.name,
                                                  names, transposed)
        inner.append(gemm(g, n0, count, image(Const(0, ZERO.dtype))))
        return body + ([Loop(g.name, groups, tuple(inner))] if groups > 1 else inner)

    full, rem = divmod(batch, chunk)
    if full > 1:
        t = names.var("t")
        stmts.append(Loop(t.name, full, tuple(chunk_stmts(imul(t, chunk), chunk))))
    elif full == 1:
        stmts += chunk_stmts(Const(0, ZERO.dtype), chunk)
    if rem:
        stmts += chunk_stmts(Const(full * chunk, ZERO.dtype), rem)
    spatial = contiguous_strides(out)
    strides = (p * co, 1, *(s * co for s in spatial)) if transposed else (p, batch * p, *spatial)
    stmts += _write_nchw(group, ev, names, cur, View(cbuf.name, out_shape, x.dtype, strides), j)
    return stmts, scratch


def _write_nchw(group: FusionGroup, ev: Any, names: Any, cur: str, result: View, j: int) -> list[Stmt]:
    """The group's outputs from the GEMM's result: ``cur`` read through ``result`` (a permuted view of
    the channel- or position-major scratch), nodes ``j:`` (residual, activation, ...) computed on the
    way."""
    from ember.compiler.kernel.lower import _lower_elementwise

    ev.values[cur] = result
    defined = [*group.inputs, *(o for nd in group.nodes[:j] for o in nd.outputs)]
    rest = FusionGroup(group.name + "_nchw", group.nodes[j:], group.types, defined, list(group.outputs))
    return _lower_elementwise(rest, ev, names)
