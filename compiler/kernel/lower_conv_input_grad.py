"""``conv_transpose`` lowered as a forward convolution, so it gets the forward conv's GEMM schedules.

A transposed convolution (the input gradient of ``conv``) adds ``y[i] * w[t]`` into output position
``o = i*s - lo + t*d``. Spreading ``y`` onto a grid with ``s - 1`` zeros between neighbours (``yd[i*s] =
y[i]``, extent ``J = (I-1)*s + 1``) makes that ``o = j - lo + t*d``, which with the flipped tap ``t' = k-1-t``
is a stride-1 convolution reading ``yd[o + t'*d - ((k-1)*d - lo)]``::

    conv_transpose(y, w) = conv(yd, wf, stride 1, dilation d, padding ((k-1)*d - lo, (k-1)*d - hi + op))
    wf[g*Cog + co, ci, t'] = w[g*Cig + ci, co, k-1-t']

That hands the work to ``lower_conv.py``'s per-shape schedules (per-image slots, batched images per
GEMM for small planes, positions-major for tiny ones, depthwise loops), with their fused epilogues,
instead of one GEMM per image with a serial col2im scatter: on ResNet-18's 1x1 planes the old path
repacked a 9 MB weight matrix once per image.

Taps that never reach the (padded) input are cut from the kernel first (``_used_taps``): a 3x3 kernel
on a 1x1 plane with padding 1 keeps only its centre tap, a pointwise convolution with 1/9 the work.
Stride 1 passes ``y`` as is (the forward conv pads it); a larger stride spreads ``y`` into a zeroed,
already padded scratch (``s**d`` times ``y``'s size, not an im2col matrix). Geometries whose padding
exceeds ``(k-1)*d`` (negative equivalent padding), and those where a cost estimate favours GEMM + col2im
(few output channels, a large kernel on a small plane: ``_forward_pays``), return ``None`` and keep
that lowering.
"""

from __future__ import annotations

from typing import Any

from ember.compiler.kernel.builder import iadd, imul
from ember.compiler.kernel.group import FusionGroup, GroupNode
from ember.compiler.kernel.ir import Buffer, Const, Stmt, Store
from ember.compiler.kernel.values import Index, View, contiguous_strides, flat_index

__all__ = ["as_forward_conv", "forward_geometry"]


def _used_taps(size_in: int, size_out: int, k: int, d: int, lo: int, hi: int) -> tuple[int, int, int, int]:
    """``(first tap, taps, lo, hi)`` of one dim after cutting the taps that only ever read padding
    (kept as is when cutting would make a padding negative)."""
    first = next((t for t in range(k) if t * d - lo + size_out - 1 >= 0), 0)
    last = max((t for t in range(k) if t * d - lo < size_in), default=k - 1)
    if last < first:
        return 0, k, lo, hi
    new_lo = lo - first * d
    new_hi = size_out - size_in - new_lo + (last - first) * d
    if new_lo < 0 or new_hi < 0:
        return 0, k, lo, hi
    return first, last - first + 1, new_lo, new_hi


def forward_geometry(in_sp: tuple[int, ...], out_sp: tuple[int, ...], ksize: tuple[int, ...],
                     attrs: dict[str, Any]) -> list[tuple[int, int, int, int]] | None:
    """Per spatial dim ``(first tap, taps, lo, hi)`` of the equivalent stride-1 convolution over the
    spread input (see the module docstring), or ``None`` when a padding would be negative."""
    geo = []
    for i, k in enumerate(ksize):
        s, d = attrs["stride"][i], attrs["dilation"][i]
        lo = attrs["padding"][2 * i]
        spread = (in_sp[i] - 1) * s + 1
        flo = (k - 1) * d - lo
        fhi = out_sp[i] - spread + lo
        if flo < 0 or fhi < 0:
            return None
        geo.append(_used_taps(spread, out_sp[i], k, d, flo, fhi))
    return geo


def _forward_pays(y: View, w: View, groups: int, out_shape: tuple[int, ...],
                  geo: list[tuple[int, int, int, int]]) -> bool:
    """Whether the forward convolution is estimated cheaper than GEMM + col2im (multiply-adds and
    element copies per image). The forward form computes every output position over every used tap
    (a 5x5 kernel onto an 8x8 plane: 144 positions x 25 taps against 64 x 25 products), in GEMMs with
    only ``Cog`` rows, padded to whole register tiles (``MR``); GEMM + col2im repacks ``Cog*k x Cig``
    weights per chunk of images and scatters serially. LeNet's input gradients (6 and 1 output
    channels) stay with col2im (0.7 vs 1.8 ms at batch 64), as do strided ones, whose spread input is
    3/4 zeros at stride 2; ResNet's stride-1 ones (64..512 channels) take the forward form."""
    from ember.compiler.codegen.llvm.gemm import register_tile
    from ember.compiler.kernel.lower_conv_transpose import col2im_chunk

    cog, cig = w.shape[1], w.shape[0] // groups
    k_used, k_full, p_out, p_in = 1, 1, 1, 1
    for _, taps, _, _ in geo:
        k_used *= taps
    for s_ in w.shape[2:]:
        k_full *= s_
    for s_ in out_shape[2:]:
        p_out *= s_
    for s_ in y.shape[2:]:
        p_in *= s_
    batch, rows, MR = y.shape[0], cog * k_full, register_tile().mr
    forward = batch * (-(-cog // MR) * MR * p_out * cig * k_used + 2 * cig * k_used * p_out)
    chunks = -(-batch // col2im_chunk(batch, p_in))
    col2im = batch * (rows * p_in * cig + 8 * rows * p_in) + chunks * 2 * rows * cig
    return forward <= col2im


def _flipped_weight(w: View, groups: int, geo: list[tuple[int, int, int, int]], name: str, names: Any,
                    scratch: list[Buffer]) -> tuple[View, list[Stmt]]:
    """``wf[g*Cog + co, ci, t'] = w[g*Cig + ci, co, k-1-(first + t')]``: the forward conv's weight."""
    from ember.compiler.kernel.lower import _nest, schedule

    cog, ksize = w.shape[1], tuple(w.shape[2:])
    cig = w.shape[0] // groups
    shape = (groups * cog, cig, *(taps for _, taps, _, _ in geo))
    buf = Buffer(name, w.dtype, shape, contiguous_strides(shape))
    scratch.append(buf)

    block = next(b for b in (16, 8, 4, 2, 1) if cog % b == 0)
    # a transpose of [Cig, Cog] planes: looping over blocks of ``block`` output channels keeps both the
    # rows read (``block * k`` contiguous floats per input channel) and the rows written in the cache
    # and TLB; a plain loop over either layout missed a page per element on 512x512x3x3 (9 MB) weights
    loop_shape = (groups, cog // block, cig, block, *shape[2:])
    dst_shape = (groups, cog, *shape[1:])  # the same flat layout as ``shape``

    def body(idx: Index) -> list[Stmt]:
        g, co, ci, taps = idx[0], iadd(imul(idx[1], block), idx[3]), idx[2], idx[4:]
        src = (iadd(imul(g, cig), ci), co,
               *(iadd(imul(t, -1), k - 1 - first) for t, k, (first, _, _, _) in zip(taps, ksize, geo)))
        return [Store(name, flat_index((g, co, ci, *taps), dst_shape), w.at(src))]

    numel = 1
    for s_ in shape:
        numel *= s_
    return View(name, shape, w.dtype, contiguous_strides(shape)), schedule(_nest(loop_shape, names, body, "w"),
                                                                           numel)


def _spread_input(y: View, stride: tuple[int, ...], geo: list[tuple[int, int, int, int]], name: str,
                  names: Any, scratch: list[Buffer]) -> tuple[View, list[Stmt]]:
    """``y`` spread ``stride`` apart into a zeroed scratch that already holds the padding."""
    from ember.compiler.kernel.lower import _nest, schedule

    nd = len(stride)
    sp = tuple((y.shape[2 + i] - 1) * stride[i] + 1 + geo[i][2] + geo[i][3] for i in range(nd))
    shape = (y.shape[0], y.shape[1], *sp)
    buf = Buffer(name, y.dtype, shape, contiguous_strides(shape))
    scratch.append(buf)
    numel = 1
    for s_ in shape:
        numel *= s_

    def zero(idx: Index) -> list[Stmt]:
        return [Store(name, flat_index(idx, shape), Const(0.0, y.dtype))]

    def copy(idx: Index) -> list[Stmt]:
        dst = (idx[0], idx[1], *(iadd(imul(idx[2 + i], stride[i]), geo[i][2]) for i in range(nd)))
        return [Store(name, flat_index(dst, shape), y.at(idx))]

    stmts = schedule(_nest(shape, names, zero, "z"), numel)
    stmts += schedule(_nest(tuple(y.shape), names, copy, "q"), numel)
    return View(name, shape, y.dtype, contiguous_strides(shape)), stmts


def as_forward_conv(group: FusionGroup, gi: int, ev: Any, names: Any, y: View, w: View, stmts: list[Stmt],
                    scratch: list[Buffer]) -> tuple[list[Stmt], list[Buffer]] | None:
    """Finish a ``conv_transpose`` group (``y`` contiguous, ``w`` evaluated) through the forward conv's
    lowering, or ``None`` when the geometry has no stride-1 equivalent (module docstring)."""
    from ember.compiler.kernel.lower import sanitize
    from ember.compiler.kernel.lower_conv import _lower_per_image
    from ember.compiler.kernel.lower_conv_batched import choose_schedule, lower_batched_conv
    from ember.compiler.kernel.lower_depthwise import is_depthwise, lower_depthwise_group

    node = group.nodes[gi]
    attrs, base = node.attrs, sanitize(node.output)
    out_shape = tuple(group.type_of(node.output).shape)
    groups, ksize = attrs["groups"], tuple(w.shape[2:])
    geo = forward_geometry(tuple(y.shape[2:]), out_shape[2:], ksize, attrs)
    if geo is None:
        return None
    if not _forward_pays(y, w, groups, out_shape, geo):
        return None
    wf, copy = _flipped_weight(w, groups, geo, f"{base}_wf", names, scratch)
    stmts += copy
    padding: tuple[int, ...] = tuple(p for _, _, lo, hi in geo for p in (lo, hi))
    x = y
    if any(s > 1 for s in attrs["stride"]):
        x, spread = _spread_input(y, tuple(attrs["stride"]), geo, f"{base}_spread", names, scratch)
        stmts += spread
        padding = (0,) * len(padding)
    nd = len(ksize)
    conv_attrs = {"stride": (1,) * nd, "padding": padding, "dilation": tuple(attrs["dilation"]),
                  "groups": groups}
    nodes = list(group.nodes)
    nodes[gi] = GroupNode("conv", node.inputs, node.outputs, conv_attrs)
    fwd = FusionGroup(group.name, nodes, group.types, list(group.inputs), list(group.outputs))
    if is_depthwise(x, wf, groups):
        return lower_depthwise_group(fwd, gi, ev, names, x, wf, stmts, scratch)
    p = 1
    for s_ in out_shape[2:]:
        p *= s_
    how, chunk = choose_schedule(out_shape[0], p)
    if how != "per_image":
        return lower_batched_conv(fwd, gi, ev, names, x, wf, chunk, stmts, scratch, how == "positions")
    return _lower_per_image(fwd, gi, ev, names, x, wf, stmts, scratch)
