"""Implicit GEMM for convolutions: the GEMM template's B packing reads the im2col matrix from the image.

A 2-d convolution of one image is ``W[Co, C*kh*kw] @ cols[C*kh*kw, Ho*Wo]``. Writing ``cols`` first (9x
the image for a 3x3 kernel) and then packing it into the template's B panels moves every element of it
through memory twice and needs an im2col scratch as large (ResNet-18's stem at 224: 7.4 MB). With a
``Gemm`` whose ``b_image`` is set (``kernel.ir.Im2col``) the template instead calls ``pack_b_image``,
which writes each KC x 16 panel straight from the (zero-padded) image:

    panel[k][l] = image[koff(k) + noff(n0 + l)]
    koff(c, i, j) = c * plane + i * dh * wp + j * dw       (k = (c, i, j), walked with counters)
    noff(oh, ow)  = oh * sh * wp + ow * sw                 (n = (oh, ow), a table per packed block)
                    (+ image * image_stride when the columns span several images)

Each panel is classified once per packed block (``_panel_kinds``): 16 consecutive addresses (stride 1,
no output-row break inside) are two vector copies per k; two such runs split by one row break are four
masked loads; 16 addresses two apart (stride 2 within an output row: ResNet's stem) four vector loads
and two deinterleaving shuffles; anything else two masked 8-lane gathers through the offset table. Lanes
past the block's last column are zero, as in the template's own edge packing. Everything else (blocking,
threads, micro-kernel, epilogue) is the template's (``gemm.py``). Which convolutions take this path is
``kernel/lower_conv_batched.implicit_pays``'s measured rule.

Transposed (``Im2col.transposed``, the convolution weight gradient ``dW = dY @ cols^T``): rows ``k`` are
the positions ``(image, oh, ow)`` and columns ``n`` the taps ``(c, i, j)``, ``B[k, n] = im2col[n, k]``:
the offset table then holds the block's tap offsets, the counters step through the positions. Both
orders are the same code: two three-digit mixed-radix counters with weights, swapped by ``img_transposed``
at run time (one GEMM entry function serves both).
"""

from __future__ import annotations

import dataclasses

import llvmlite.ir as ir
from ember.compiler.codegen.llvm.irutil import ceil_div, declare, i64, imin, loop, masked_load8, new_function, splat
from ember.compiler.kernel.ir import Im2col

__all__ = ["IMAGE_ARGS", "build_pack_b_image", "image_args"]

_F32, _I32, _I64 = ir.FloatType(), ir.IntType(32), ir.IntType(64)
_V8 = ir.VectorType(_F32, 8)
_FPTR, _I32PTR = _F32.as_pointer(), _I32.as_pointer()
_V8I32, _V8I64, _V8PTRS = ir.VectorType(_I32, 8), ir.VectorType(_I64, 8), ir.VectorType(_FPTR, 8)
_FOUR = ir.Constant(_V8I64, [4] * 8)  # bytes per float
_NR = 16  # the template's panel width (gemm.NR)

# The geometry arguments the entry function of a b_image GEMM takes after the common ones: the fields of
# ir.Im2col in declaration order (``image_args`` gives the values in the same order).
IMAGE_ARGS: tuple[tuple[str, ir.Type], ...] = tuple((f"img_{f.name}", _I64) for f in dataclasses.fields(Im2col))


def image_args(geometry: Im2col) -> tuple[int, ...]:
    """The values of ``IMAGE_ARGS`` for one ``Gemm.b_image`` (the CUDA launch passes the same)."""
    return tuple(int(v) for v in dataclasses.astuple(geometry))


def build_pack_b_image(module: ir.Module, name: str, ctx_type: ir.Type, ctx_get: object) -> ir.Function:
    """``pack_b_image(kc, nc, k0, n0, ctx, dst, tab)``: rows ``k0 .. k0+kc`` and columns ``n0 .. n0+nc``
    of the image's im2col matrix (the image is the context's ``B``, its geometry the ``img_*`` fields)
    -> ``ceil(nc/16)`` panels of ``[kc][16]`` at ``dst``. ``tab`` holds at least ``nc + 16`` int32s of
    scratch for the column offsets."""
    fn, b = new_function(module, name, ir.VoidType(), [
        ("kc", _I64), ("nc", _I64), ("k0", _I64), ("n0", _I64), ("ctx", ctx_type), ("dst", _FPTR),
        ("tab", _I32PTR)])
    kc, nc, k0, n0, ctx, dst, tab = fn.args
    get = ctx_get  # (builder, ctx, field) -> value
    image = get(b, ctx, "B")  # type: ignore[operator]
    plane, wp, kh, kw, dh, dw, wout, sh, sw, positions, image_stride, transposed = (
        get(b, ctx, n) for n, _ in IMAGE_ARGS)  # type: ignore[operator]
    # Both index spaces are three mixed-radix counters with a weight each: taps (c, i, j) over (., kh, kw)
    # weighted (plane, dh*wp, dw); positions (image, oh, ow) over (., hout, wout) weighted (image_stride,
    # sh*wp, sw). Forward: rows k are taps, columns n positions; transposed: the other way round.
    per_image = b.select(b.icmp_signed(">", positions, i64(0)), positions, i64(1 << 62))
    tap = ((kh, kw), (plane, b.mul(dh, wp), dw))
    pos = ((b.sdiv(per_image, wout), wout), (image_stride, b.mul(sh, wp), sw))
    flip = b.icmp_signed("!=", transposed, i64(0))
    (r1, r2), rw = [tuple(b.select(flip, p_, t_) for p_, t_ in zip(pp, tt)) for pp, tt in zip(pos, tap)]
    (c1, c2), cw = [tuple(b.select(flip, t_, p_) for p_, t_ in zip(pp, tt)) for pp, tt in zip(pos, tap)]

    def split(x: ir.Value, mid: ir.Value, low: ir.Value) -> tuple[ir.Value, ir.Value, ir.Value]:
        inner = b.mul(mid, low)
        rest = b.srem(x, inner)
        return b.sdiv(x, inner), b.sdiv(rest, low), b.srem(rest, low)

    def weigh(parts: tuple[ir.Value, ...], weights: tuple[ir.Value, ...]) -> ir.Value:
        hi, mid, lo = (b.mul(x, w) for x, w in zip(parts, weights))
        return b.add(b.add(hi, mid), lo)

    def advance(slots: list[ir.Value], parts: tuple[ir.Value, ...], step: ir.Value, mid_n: ir.Value,
                lo_n: ir.Value) -> None:
        """Counters ``parts`` (hi, mid, lo) moved on by ``step`` (which never crosses a wrap of ``lo``)."""
        hi, mid, lo = parts
        lo1 = b.add(lo, step)
        wrap_lo = b.icmp_signed("==", lo1, lo_n)
        mid1 = b.select(wrap_lo, b.add(mid, i64(1)), mid)
        wrap_mid = b.icmp_signed("==", mid1, mid_n)
        b.store(b.select(wrap_lo, i64(0), lo1), slots[2])
        b.store(b.select(wrap_mid, i64(0), mid1), slots[1])
        b.store(b.select(wrap_mid, b.add(hi, i64(1)), hi), slots[0])

    # the column offsets: counters of column n0 by division once, then stepped (no division per column:
    # a table built by divisions cost about as much as packing LeNet's small GEMMs)
    cols = [b.alloca(_I64, name=n) for n in ("col_hi", "col_mid", "col_lo")]
    for slot, value in zip(cols, split(n0, c1, c2)):
        b.store(value, slot)
    with loop(b, 0, nc, name="noff") as j:
        parts = tuple(b.load(s_) for s_ in cols)
        b.store(b.trunc(weigh(parts, cw), _I32), b.gep(tab, [j], inbounds=True))
        advance(cols, parts, i64(1), c1, c2)
    kinds = b.gep(tab, [b.add(nc, i64(_NR))], inbounds=True)
    panels = ceil_div(b, nc, _NR)
    _panel_kinds(b, tab, kinds, panels, nc)
    # the row counters of row k0, then stepped along with k (no division per row)
    counters = [b.alloca(_I64, name=n) for n in ("hi", "mid", "lo")]
    for slot, value in zip(counters, split(k0, r1, r2)):
        b.store(value, slot)
    # Transposed, stride 1: 8 rows whose positions are consecutive in one output row are 8 consecutive
    # addresses per tap: full panels then take 16 vector loads and two 8x8 transposes per 8 rows.
    runs = b.and_(flip, b.icmp_signed("==", sw, i64(1)))
    kslot = b.alloca(_I64, name="k")
    b.store(i64(0), kslot)
    head, body, done = (b.append_basic_block(f"pbk.{n}") for n in ("head", "body", "done"))
    b.branch(head)
    b.position_at_end(head)
    k = b.load(kslot)
    b.cbranch(b.icmp_signed("<", k, kc), body, done)
    b.position_at_end(body)
    c, i, jj = (b.load(s_) for s_ in counters)
    koff = weigh((c, i, jj), rw)
    src = b.gep(image, [koff], inbounds=True)
    eight = b.and_(runs, b.and_(b.icmp_signed("<=", b.add(jj, i64(8)), r2),
                                b.icmp_signed("<=", b.add(k, i64(8)), kc)))
    with b.if_else(eight) as (block, single):
        with block:
            _rows8(b, tab, panels, nc, kc, k, src, dst)
        with single:
            _row(b, tab, kinds, panels, nc, kc, k, src, dst)
    step = b.select(eight, i64(8), i64(1))
    b.store(b.add(k, step), kslot)
    advance(counters, (c, i, jj), step, r1, r2)  # to row k + step (8 only within one run of the last)
    b.branch(head)
    b.position_at_end(done)
    b.ret_void()
    return fn


_DENSE, _GATHER, _STRIDE2 = 0, -1, -2  # panel kinds; 1 .. 15: two runs, the second starting at that lane


def _panel_kinds(b: ir.IRBuilder, tab: ir.Value, kinds: ir.Value, panels: ir.Value, nc: ir.Value) -> None:
    """Classify each panel once per packed block by its column offsets: ``_DENSE`` (16 consecutive
    addresses), ``r`` in 1..15 (two runs of consecutive addresses split at lane ``r``: an output-row break
    at stride 1), ``_STRIDE2`` (16 addresses two apart), else ``_GATHER`` (more breaks, other strides, or
    a partial last panel)."""
    with loop(b, 0, panels, name="pkind") as p:
        first = b.mul(p, i64(_NR))
        lanes = imin(b, i64(_NR), b.sub(nc, first))
        prev = b.load(b.gep(tab, [first], inbounds=True))
        breaks, at, not_two = i64(0), i64(0), i64(0)
        for lane in range(1, _NR):
            cur = b.load(b.gep(tab, [b.add(first, i64(lane))], inbounds=True))
            step = b.sub(cur, prev)
            broken = b.icmp_signed("!=", step, ir.Constant(_I32, 1))
            breaks = b.add(breaks, b.zext(broken, _I64))
            not_two = b.add(not_two, b.zext(b.icmp_signed("!=", step, ir.Constant(_I32, 2)), _I64))
            at = b.select(b.and_(broken, b.icmp_signed("==", at, i64(0))), i64(lane), at)
            prev = cur
        kind = b.select(b.icmp_signed("==", breaks, i64(0)), i64(_DENSE),
                        b.select(b.icmp_signed("==", breaks, i64(1)), at,
                                 b.select(b.icmp_signed("==", not_two, i64(0)), i64(_STRIDE2), i64(_GATHER))))
        kind = b.select(b.icmp_signed("==", lanes, i64(_NR)), kind, i64(_GATHER))
        b.store(b.trunc(kind, _I32), b.gep(kinds, [p], inbounds=True))


def _row(b: ir.IRBuilder, tab: ir.Value, kinds: ir.Value, panels: ir.Value, nc: ir.Value, kc: ir.Value,
         k: ir.Value, src: ir.Value, dst: ir.Value) -> None:
    """Row ``k`` of every panel (``src``: the row's image address; column ``l`` at ``src[tab[l]]``):
    dense panels by two vector loads, two-run panels by four masked loads (lanes before the break from
    the first run, the rest from the second), others by gathers."""
    row = b.gep(dst, [b.mul(k, i64(_NR))], inbounds=True)
    lane_ids = [ir.Constant(_V8I64, list(range(h, h + 8))) for h in (0, 8)]
    with loop(b, 0, panels, name="pbp") as p:
        first = b.mul(p, i64(_NR))
        out = b.gep(row, [b.mul(p, b.mul(kc, i64(_NR)))], inbounds=True)
        lanes = imin(b, i64(_NR), b.sub(nc, first))
        o0 = b.sext(b.load(b.gep(tab, [first], inbounds=True)), _I64)
        kind = b.sext(b.load(b.gep(kinds, [p], inbounds=True)), _I64)
        with b.if_else(b.icmp_signed("==", kind, i64(_DENSE))) as (vector, other):
            with vector:
                at = b.gep(src, [o0], inbounds=True)
                for half in (0, 8):
                    v = b.load(b.bitcast(b.gep(at, [i64(half)], inbounds=True), _V8.as_pointer()), align=4)
                    b.store(v, b.bitcast(b.gep(out, [i64(half)], inbounds=True), _V8.as_pointer()), align=32)
            with other:
                with b.if_else(b.icmp_signed(">", kind, i64(0))) as (two_runs, scattered):
                    with two_runs:
                        r = kind
                        o_r = b.sext(b.load(b.gep(tab, [b.add(first, r)], inbounds=True)), _I64)
                        # lane l of the second run is at src[o_r + l - r]; not inbounds: its base may
                        # point before the image (lanes below r are masked off and never read)
                        second = b.gep(src, [b.sub(o_r, r)])
                        split = splat(b, r, _V8I64)
                        for half, ids in zip((0, 8), lane_ids):
                            before = b.icmp_signed("<", ids, split)
                            v = masked_load8(b, b.gep(src, [b.add(o0, i64(half))]), before)
                            v = masked_load8(b, b.gep(second, [i64(half)]), b.not_(before), v)
                            b.store(v, b.bitcast(b.gep(out, [i64(half)], inbounds=True), _V8.as_pointer()),
                                    align=32)
                    with scattered:  # lanes past the block are 0
                        with b.if_else(b.icmp_signed("==", kind, i64(_STRIDE2))) as (strided, gather):
                            with strided:
                                _every_other(b, b.gep(src, [o0], inbounds=True), out)
                            with gather:
                                _gathered(b, tab, first, lanes, src, out)


def _every_other(b: ir.IRBuilder, at: ir.Value, out: ir.Value) -> None:
    """One panel row from ``at[0], at[2], .., at[30]``: four 8-lane loads (the last masked to its first
    seven lanes, so nothing past ``at[30]`` is read) and a shuffle keeping the even lanes of each pair."""
    evens = ir.Constant(_V8I32, list(range(0, 16, 2)))
    loads = [b.load(b.bitcast(b.gep(at, [i64(8 * q)], inbounds=True), _V8.as_pointer()), align=4)
             for q in range(3)]
    seven = ir.Constant(ir.VectorType(ir.IntType(1), 8), [1] * 7 + [0])
    loads.append(masked_load8(b, b.gep(at, [i64(24)], inbounds=True), seven))
    for half, (lo, hi) in zip((0, 8), (loads[:2], loads[2:])):
        b.store(b.shuffle_vector(lo, hi, evens), b.bitcast(b.gep(out, [i64(half)], inbounds=True),
                                                              _V8.as_pointer()), align=32)


def _rows8(b: ir.IRBuilder, tab: ir.Value, panels: ir.Value, nc: ir.Value, kc: ir.Value, k: ir.Value,
           src: ir.Value, dst: ir.Value) -> None:
    """Rows ``k .. k+8`` of every panel when row ``k + r`` reads ``src[r + tab[l]]`` (transposed, stride 1):
    a full panel is 16 vector loads (8 rows of one tap each) and two 8x8 transposes; a partial one (the
    block's last) takes ``_row``'s path row by row."""
    from ember.compiler.codegen.llvm.gemm import _transpose8

    row = b.gep(dst, [b.mul(k, i64(_NR))], inbounds=True)
    with loop(b, 0, panels, name="pb8") as p:
        first = b.mul(p, i64(_NR))
        out = b.gep(row, [b.mul(p, b.mul(kc, i64(_NR)))], inbounds=True)
        lanes = imin(b, i64(_NR), b.sub(nc, first))
        with b.if_else(b.icmp_signed("==", lanes, i64(_NR))) as (full, part):
            with full:
                for half in (0, 8):
                    taps = []
                    for lane in range(half, half + 8):
                        off = b.sext(b.load(b.gep(tab, [b.add(first, i64(lane))], inbounds=True)), _I64)
                        at = b.bitcast(b.gep(src, [off], inbounds=True), _V8.as_pointer())
                        taps.append(b.load(at, align=4))
                    for r, v in enumerate(_transpose8(b, taps)):
                        at = b.gep(out, [i64(r * _NR + half)], inbounds=True)
                        b.store(v, b.bitcast(at, _V8.as_pointer()), align=32)
            with part:
                for r in range(8):
                    _gathered(b, tab, first, lanes, b.gep(src, [i64(r)], inbounds=True),
                              b.gep(out, [i64(r * _NR)], inbounds=True))


def _gathered(b: ir.IRBuilder, tab: ir.Value, first: ir.Value, lanes: ir.Value, src: ir.Value,
              out: ir.Value) -> None:
    """One panel row as two masked 8-lane gathers through the offset table (lanes from ``lanes`` on: 0).
    Measured against 16 scalar loads: ResNet-18 at 224 1.08x, a 7x7 stride-2 stem 1.23x."""
    gather = declare(b.module, "llvm.masked.gather.v8f32.v8p0", _V8,
                     [_V8PTRS, _I32, ir.VectorType(ir.IntType(1), 8), _V8])
    base = splat(b, b.ptrtoint(src, _I64), _V8I64)
    for half in (0, 8):
        offs = b.load(b.bitcast(b.gep(tab, [b.add(first, i64(half))], inbounds=True), _V8I32.as_pointer()),
                      align=4)
        ptrs = b.inttoptr(b.add(base, b.mul(b.sext(offs, _V8I64), _FOUR)), _V8PTRS)
        mask = b.icmp_signed("<", ir.Constant(_V8I64, list(range(half, half + 8))), splat(b, lanes, _V8I64))
        value = b.call(gather, [ptrs, _I32(4), mask, ir.Constant(_V8, [0.0] * 8)])
        b.store(value, b.bitcast(b.gep(out, [i64(half)], inbounds=True), _V8.as_pointer()), align=32)
