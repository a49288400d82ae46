"""Lowering of convolution groups: N-d ``conv`` as im2col + GEMM with the template's fused epilogue.

For each image ``n`` and group ``g`` the kernel computes

    out[n, g*Cog:(g+1)*Cog, P] = W_g[Cog, Cg*k] @ cols[Cg*k, P]

with ``P`` the output positions and ``cols`` the im2col matrix of the image's channels of group ``g``,
built by a loop nest into a scratch buffer (padding reads 0 through a bounds test on a clamped index,
so nothing outside the input is touched). A 1x1 convolution with stride 1 and no padding needs no
``cols``: the image itself is the [Cg, P] right operand. The output is NC* contiguous, so the GEMM's
rows are output channels: a per-channel bias (shape [Co, 1, ...]) is the epilogue's ``row_bias``, a
folded batch norm's per-channel scale its ``row_scale``, an [N, Co, *out] tensor its ``residual``, then
relu/sigmoid/tanh. Kernel taps that read only padding at every output position (a 3x3 kernel with
padding 1 on a 1x1 plane: all but the centre) are cut first (``cut_dead_taps``), shrinking ``K`` and
the padding, except in the positions schedule. Depthwise convolutions take a direct loop instead
(``lower_depthwise.py``), and small output planes the batched or positions schedule of
``lower_conv_batched.py`` (``choose_schedule``).
"""

from __future__ import annotations

from typing import Any

from ember.compiler.dtypes import bool_
from ember.compiler.kernel.builder import iadd, imul
from ember.compiler.kernel.conv_padding import zero_border
from ember.compiler.kernel.group import FusionGroup
from ember.compiler.kernel.ir import Binary, Buffer, Const, Expr, Gemm, Im2col, Loop, LoopKind, Select, Stmt, Store
from ember.compiler.kernel.lower_conv_batched import choose_schedule, implicit_pays, lower_batched_conv
from ember.compiler.kernel.lower_depthwise import is_depthwise, lower_depthwise_group
from ember.compiler.kernel.lower_gemm import lower_rest, match_epilogue, materialize, result_buffer
from ember.compiler.kernel.values import ZERO, Index, Value, View, contiguous_strides, flat_index
from ember.compiler.ops.conv import cut_dead_taps
from ember.runtime.errors import CompileError

__all__ = ["image_slots", "lower_conv_group"]


def bounded(at: Expr, size: int) -> tuple[Expr, Expr]:
    """``(clamped, inside)`` for a window coordinate: the coordinate clamped into ``[0, size)`` (safe
    to load) and whether it was inside (padding otherwise)."""
    inside = Binary("and", Binary("ge", at, ZERO, bool_), Binary("lt", at, Const(size, ZERO.dtype), bool_),
                    bool_)
    clamped = Binary("max", Binary("min", at, Const(size - 1, ZERO.dtype), ZERO.dtype), ZERO, ZERO.dtype)
    return clamped, inside


def read_padded(x: Any, lead: tuple[Expr, ...], coords: tuple[Expr, ...], pad: tuple[int, ...],
                spatial: tuple[int, ...]) -> Expr:
    """``x[*lead, *coords]`` where the spatial ``coords`` (already shifted by the low padding) are inside
    the input, 0 where one falls in the padding; dims with no padding take no test. Loads use clamped
    coordinates (``bounded``), so nothing outside ``x`` is read."""
    where = list(lead)
    valid: Expr | None = None
    for i, at in enumerate(coords):
        if pad[2 * i] or pad[2 * i + 1]:
            at, ok = bounded(at, spatial[i])
            valid = ok if valid is None else Binary("and", valid, ok, bool_)
        where.append(at)
    value = x.at(tuple(where))
    return value if valid is None else Select(valid, value, Const(0.0, x.dtype), x.dtype)


def image_slots(batch: int) -> int:
    """Images processed side by side by the per-image schedule: one parallel loop over slots (each
    with its own padded image and im2col scratch) instead of forking inside every image's im2col and
    GEMM. A small per-image GEMM (LeNet's) runs serially, so without slots it used one thread; with
    them the batch is split between threads and each GEMM runs unforked. 1 (serial over images, the
    GEMM threaded inside) for batch 1 and odd batches, where slots would leave a thread idle."""
    if batch % 4 == 0:
        return 4
    return 2 if batch % 2 == 0 else 1


def _channel_role(v: Value, out_shape: tuple[int, ...]) -> str | None:
    """"row" for a per-output-channel vector ([Co, 1, ...] or [1, Co, 1, ...]), "full" for a
    contiguous tensor of the output's shape."""
    if not isinstance(v, View):
        return None
    co = out_shape[1]
    shape, strides = tuple(v.shape), tuple(v.strides)
    if shape == out_shape and strides == contiguous_strides(out_shape):
        return "full"
    lead = len(out_shape) - len(shape)
    if lead < 0:
        return None
    full = (1,) * lead + shape
    fstrides = (0,) * lead + strides
    if full[1] == co and all(s == 1 for i, s in enumerate(full) if i != 1) and (co == 1 or fstrides[1] == 1):
        return "row"
    return None


def _im2col(x: View, n: Expr, c0: Expr, cg: int, ksize: tuple[int, ...], out: tuple[int, ...],
            attrs: dict[str, Any], cols: str, names: Any, base: Expr = ZERO,
            threaded: bool = True) -> list[Stmt]:
    """Loops filling cols[base + (c, taps), positions] from image ``n``, channels ``c0 .. c0 + cg``
    (``threaded=False``: never a parallel loop, for a body that already runs on one thread per image)."""
    from ember.compiler.kernel.lower import _nest, schedule

    nd = len(ksize)
    spatial = tuple(x.shape[2:])
    stride, dil, pad = attrs["stride"], attrs["dilation"], attrs["padding"]
    shape = (cg, *ksize, *out)

    def body(idx: Index) -> list[Stmt]:
        c, taps, pos = idx[0], idx[1:1 + nd], idx[1 + nd:]
        coords = tuple(iadd(iadd(imul(pos[i], stride[i]), imul(taps[i], dil[i])), -pad[2 * i]) for i in range(nd))
        value = read_padded(x, (n, iadd(c0, c)), coords, pad, spatial)
        return [Store(cols, iadd(base, flat_index(idx, shape)), value)]

    n_el = 1
    for s in shape:
        n_el *= s
    return schedule(_nest(shape, names, body, "c"), n_el if threaded else 0)


def _pad_image(x: View, n: Expr, pad: tuple[int, ...], name: str, names: Any, scratch: list[Buffer],
               slots: int = 1, slot: Expr = ZERO) -> tuple[View, list[Stmt], list[Stmt]]:
    """A zero-padded copy of one image: the border is zeroed once per call (``zero_border``), the
    interior copied per image with unit-stride loads and stores, so the GEMM's im2col reads need no
    bounds tests. With ``slots`` > 1 the scratch holds one padded image per slot (threads working on
    different images), image ``n`` going to slot ``slot``; the returned view is indexed by slot, not by
    image."""
    from ember.compiler.kernel.lower import _nest, schedule

    nd = len(x.shape) - 2
    shape = (slots, x.shape[1], *(x.shape[2 + i] + pad[2 * i] + pad[2 * i + 1] for i in range(nd)))
    buf = Buffer(name, x.dtype, shape, contiguous_strides(shape))
    scratch.append(buf)
    numel = 1
    for s_ in shape:
        numel *= s_

    def copy(idx: Index) -> list[Stmt]:
        dst = (slot, idx[0], *(iadd(idx[1 + i], pad[2 * i]) for i in range(nd)))
        return [Store(name, flat_index(dst, shape), x.at((n, *idx)))]

    view = View(name, shape, x.dtype, contiguous_strides(shape))
    zero_loops = zero_border(buf, pad, names)  # the interior is the copy's
    numel //= slots
    return view, zero_loops, schedule(_nest(x.shape[1:], names, copy, "q"), numel)


def _operand_offsets(epi: Any, g: Expr, n: Expr, cog: int, out_shape: tuple[int, ...]) -> None:
    """Move the epilogue operands to image ``n``, group ``g`` (row vectors by channel, the residual by
    image and channel block)."""
    p = 1
    for s in out_shape[2:]:
        p *= s
    moved = []
    for name, buf, off in epi.operands:
        if name.startswith("row_"):
            off = iadd(off, imul(g, cog))
        elif name == "residual":
            off = iadd(off, iadd(imul(n, out_shape[1] * p), imul(g, cog * p)))
            epi.ldr = p
        moved.append((name, buf, off))
    epi.operands = moved


def lower_conv_group(group: FusionGroup, gi: int, ev: Any, names: Any) -> tuple[list[Stmt], list[Buffer]]:
    """Statements and scratch buffers of a conv group's kernel (see the module docstring)."""
    from ember.compiler.kernel.lower import sanitize

    node = group.nodes[gi]
    for nd in group.nodes[:gi]:
        ev.node(nd)
    x, w = (ev.operand(v) for v in node.inputs)
    if not isinstance(x, Value) or not isinstance(w, Value) or x.dtype.name != "float32" \
            or w.dtype.name != "float32":
        raise CompileError(f"cannot lower op '{node.op}': the convolution template supports float32 tensors")
    scratch: list[Buffer] = []
    stmts: list[Stmt] = []
    if not isinstance(x, View):
        x, copy = materialize(x, f"{sanitize(node.output)}_x", names, scratch)
        stmts += copy
    if not isinstance(w, View) or w.strides != contiguous_strides(w.shape):
        w, copy = materialize(w, f"{sanitize(node.output)}_w", names, scratch)
        stmts += copy
    out_shape = tuple(group.type_of(node.output).shape)
    if is_depthwise(x, w, node.attrs["groups"]):
        return lower_depthwise_group(group, gi, ev, names, x, w, stmts, scratch)
    p = 1
    for s in out_shape[2:]:
        p *= s
    attrs = node.attrs
    how, chunk = choose_schedule(out_shape[0], p)
    # The positions schedule (a few GEMM rows) reads the whole weight once, unpacked: copying its live
    # taps out first touches about as many cache lines and measured slower ([1,512,1,1] x 512x512x3x3:
    # 0.258 vs 0.221 ms; [1,256,2,2] stride 2: 0.36 vs 0.16 ms; 2 threads, interleaved).
    cut = cut_dead_taps(tuple(x.shape[2:]), out_shape[2:], tuple(w.shape[2:]), attrs) \
        if how != "positions" else None
    if cut is not None:  # the live taps' weights, packed contiguous (the GEMM reads unit-stride rows)
        first, taps, attrs = cut
        w, copy = materialize(_tap_view(w, first, taps), f"{sanitize(node.output)}_wcut", names,
                              scratch)
        stmts += copy
    if how != "per_image":
        return lower_batched_conv(group, gi, ev, names, x, w, chunk, stmts, scratch, how == "positions", attrs)
    return _lower_per_image(group, gi, ev, names, x, w, stmts, scratch, attrs)


def _tap_view(w: View, first: tuple[int, ...], taps: tuple[int, ...]) -> View:
    """The weight's live taps as an offset view of ``w`` (no copy)."""
    off = w.offset + sum(f * w.strides[2 + i] for i, f in enumerate(first))
    return View(w.buffer, (*w.shape[:2], *taps), w.dtype, tuple(w.strides), off)


def _lower_per_image(group: FusionGroup, gi: int, ev: Any, names: Any, x: View, w: View, stmts: list[Stmt],
                     scratch: list[Buffer], attrs: dict[str, Any] | None = None
                     ) -> tuple[list[Stmt], list[Buffer]]:
    """The per-image schedule: im2col and one GEMM per image and group (see the module docstring);
    ``attrs`` the conv's after any tap cut (default: the node's own)."""
    from ember.compiler.kernel.lower import sanitize

    node = group.nodes[gi]
    attrs = node.attrs if attrs is None else attrs
    out_shape = tuple(group.type_of(node.output).shape)
    batch, co, ksize, out = out_shape[0], out_shape[1], tuple(w.shape[2:]), out_shape[2:]
    groups, cg = attrs["groups"], w.shape[1]
    cog, kdim, p = co // groups, cg, 1
    for s in ksize:
        kdim *= s
    for s in out:
        p *= s
    epi, cur, j = match_epilogue(group, gi, ev.values, lambda v: _channel_role(v, out_shape), False)
    c_name = result_buffer(group, cur, scratch)
    pointwise = all(s == 1 for s in ksize) and all(s == 1 for s in attrs["stride"]) \
        and not any(attrs["padding"]) and x.strides == contiguous_strides(x.shape)
    slots = image_slots(batch)
    # no loop of extent 1 around one image or one group: the im2col and copy loops inside then stay
    # top-level loops, which may run in parallel (the code generator runs nested loops serially)
    g: Expr = names.var("g") if groups > 1 else ZERO
    per_image: list[Stmt] = []
    inner: list[Stmt] = []
    if slots > 1:  # a parallel loop over slots, each running its images one after another
        slot, i = names.var("s"), names.var("n") if batch > slots else ZERO
        n: Expr = iadd(imul(slot, batch // slots), i)
    else:
        slot, i = ZERO, names.var("n") if batch > 1 else ZERO
        n = i
    b_image = None
    if pointwise:
        b_buf, b_off, ldb = x.buffer, iadd(x.offset, iadd(imul(n, x.strides[0]), imul(g, cg * p))), p
    else:
        src, geo, image = x, attrs, n
        if any(attrs["padding"]):
            pad_name = f"{sanitize(node.output)}_pad"
            src, zero, copy = _pad_image(x, n, attrs["padding"], pad_name, names, scratch, slots, slot)
            stmts += zero
            per_image += copy
            geo, image = {**attrs, "padding": (0,) * len(attrs["padding"])}, slot
        if len(ksize) == 2 and src.strides[3] == 1 \
                and implicit_pays(out[1], geo["stride"][1], kdim, cog, slots * kdim * p):
            # implicit GEMM: the template packs B's panels from the (padded) image itself
            b_buf, ldb = src.buffer, p
            b_off = iadd(src.offset, iadd(imul(image, src.strides[0]), imul(g, cg * src.strides[1])))
            b_image = Im2col(src.strides[1], src.strides[2], ksize[0], ksize[1], geo["dilation"][0],
                             geo["dilation"][1], out[1], geo["stride"][0], geo["stride"][1])
        else:
            cols = Buffer(f"{sanitize(node.output)}_cols", x.dtype, (slots * kdim, p), (p, 1))
            scratch.append(cols)
            b_buf, b_off, ldb = cols.name, imul(slot, kdim * p), p
            inner += _im2col(src, image, imul(g, cg), cg, ksize, out, geo, cols.name, names, b_off, slots == 1)
    _operand_offsets(epi, g, n, cog, out_shape)
    inner.append(Gemm(cog, p, kdim, w.buffer, iadd(w.offset, imul(g, cog * kdim)), kdim, b_buf, b_off, ldb,
                      c_name, iadd(imul(n, co * p), imul(g, cog * p)), p, False, epi.build(),
                      tuple(epi.operands), epi.ldr, b_image))
    body = [*per_image, *([Loop(g.name, groups, tuple(inner))] if groups > 1 else inner)]
    if batch // slots > 1:
        body = [Loop(i.name, batch // slots, tuple(body))]
    stmts += [Loop(slot.name, slots, tuple(body), LoopKind.PARALLEL)] if slots > 1 else body
    stmts += lower_rest(group, ev, names, cur, c_name, j)
    return stmts, scratch
