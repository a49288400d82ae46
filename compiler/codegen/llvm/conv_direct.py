"""Direct convolution: an implicit-GEMM ``Gemm`` run with output channels in the vector lanes.

The GEMM template (``gemm.py`` + ``gemm_image.py``) computes a convolution ``C[Co, P] = W[Co, K] @
im2col(image)[K, P]`` with positions in the lanes: it packs 16-position panels of the im2col matrix out
of the image on every call (8-20% of a convolution's time at 224x224), and a 16-wide tile of a small
plane (4x4, 2x2) is mostly padding. This module computes the same product the other way round, the
way hand-written direct convolutions do::

    acc[r][l] += image[base(n0 + r) + koff(k)] * Wp[k][l]       r < 8, 7 or 4 positions, l < 16 channels

* ``Wp`` is one 16-channel block of the weights transposed to ``[K][16]`` (channels past ``M`` zero),
  packed per block just before use (the template's own transposed-B panel packing), so it stays in
  L1/L2 while every position tile of the thread reads it. The weights are packed once per call either
  way; nothing of the image is.
* The image is read in place through broadcast loads: row ``r`` of the tile has its own base pointer
  (any position, so tiles run across output-row and image breaks), and ``koff`` is a per-thread table of
  the taps' offsets, ``c * plane + i * dh * wp + j * dw``. Each call picks the tile height of
  ``TILE_HEIGHTS`` that computes the fewest padding rows (``_tile_rows``: 7 for a 7x7 plane).
* The accumulator tile (one ``<16 x float>`` register per position: AVX-512 only, see
  ``direct_available``) is transposed in registers to 16 channel rows of up to 8 positions, which are
  contiguous in ``C``, and the fused epilogue (``gemm_epilogue.py``) is applied on the way out; a tile
  short of 8 positions uses masked loads and stores.

The entry function has the b_image GEMM's signature (``gemm.py``'s module docstring plus
``IMAGE_ARGS``), so ``kernels.py`` calls either the same way. Threads split the channel blocks first
(each packs only its own), positions when there are fewer blocks than threads.
"""

from __future__ import annotations

import llvmlite.ir as ir
from ember.compiler.codegen.llvm import gemm as G
from ember.compiler.codegen.llvm.gemm_epilogue import Epilogue, apply_epilogue, fma
from ember.compiler.codegen.llvm.irutil import (
    ceil_div,
    declare,
    i64,
    imin,
    lanes_below8,
    loop,
    masked_store8,
    new_function,
    splat,
)
from ember.runtime.errors import CompileError

__all__ = ["CHANNELS", "DIRECT_CONV", "ROWS", "TILE_HEIGHTS", "direct_available", "direct_pays", "emit_direct_conv"]

DIRECT_CONV = True  # False: every implicit-GEMM Gemm takes the packed template (gemm.py)
ROWS = 8       # output positions per register tile at most (one broadcast each per k)
# The tile heights a call chooses from (``_tile_rows``): 8, and 7 and 4 for planes that 8 divides badly
# (ResNet's 7x7 stage: 49 positions; 2x2 planes: 4). Each has at least 4 accumulators, the FMA latency.
TILE_HEIGHTS = (8, 7, 4)
CHANNELS = G.NR  # output channels per register tile (16: one <16 x float> accumulator per position)

_F32, _I32, _I64 = ir.FloatType(), ir.IntType(32), ir.IntType(64)
_V8, _V16 = ir.VectorType(_F32, 8), ir.VectorType(_F32, CHANNELS)
_FPTR, _I32PTR = _F32.as_pointer(), _I32.as_pointer()


def direct_available() -> bool:
    """Whether this host runs implicit-GEMM convolutions here: the 16-lane tile needs AVX-512 (with
    8-lane registers its 8 accumulators alone would take all 16)."""
    from ember.compiler.codegen.llvm.jit import host_vector_lanes

    return DIRECT_CONV and host_vector_lanes() == CHANNELS


def direct_pays(transposed: bool) -> bool:
    """Whether an implicit-GEMM ``Gemm`` runs here rather than in the packed template: every one on an
    AVX-512 host except the weight-gradient form (``transposed``: taps, not channels, are its rows)."""
    return not transposed and direct_available()


def _pack_block(b: ir.IRBuilder, a: ir.Value, lda: ir.Value, M: ir.Value, K: ir.Value, row0: ir.Value,
                dst: ir.Value) -> None:
    """``dst[k][l] = A[row0 + l, k]`` for l < 16 (0 for rows past M): the packed template's panel
    packing for a transposed B (its rows are contiguous in k, as the weights' are here)."""
    src = G._at(b, a, b.mul(row0, lda))
    count = b.sub(M, row0)
    with b.if_else(b.icmp_signed(">=", count, i64(CHANNELS)), likely=True) as (full, edge):
        with full:
            G._pack_bt_full(b, K, src, lda, dst)
        with edge:
            G._pack_scalar_edge(b, K, count, CHANNELS, src, 1, lda, dst)


def _fill_tap_offsets(b: ir.IRBuilder, ctx: ir.Value, K: ir.Value, tab: ir.Value) -> None:
    """``tab[k] = c * plane + i * dh * wp + j * dw`` for ``k = (c, i, j)`` (int32), by nested loops with
    running offsets: divisions per entry cost as much as the 8x16 tile's K loop at 4x4 planes."""
    get = lambda f: G._ctx_get(b, ctx, f"img_{f}")  # noqa: E731
    kh, kw = get("kh"), get("kw")
    channels = b.sdiv(K, b.mul(kh, kw))
    row_step = b.mul(get("dh"), get("wp"))
    with loop(b, 0, channels, name="tc") as c:
        first = b.mul(b.mul(c, kh), kw)
        with loop(b, 0, kh, name="ti") as i:
            at = b.add(first, b.mul(i, kw))
            base = b.add(b.mul(c, get("plane")), b.mul(i, row_step))
            with loop(b, 0, kw, name="tj") as j:
                b.store(b.trunc(b.add(base, b.mul(j, get("dw"))), _I32), G._at(b, tab, b.add(at, j)))


def _fill_position_offsets(b: ir.IRBuilder, ctx: ir.Value, n0: ir.Value, n1: ir.Value, pos: ir.Value) -> None:
    """``pos[n - n0]`` = where column ``n`` of the im2col matrix starts in the image, ``oh * sh * wp + ow *
    sw`` (plus ``image * image_stride`` when the columns span several images, ``Im2col.positions``), for
    ``n0 <= n < n1 + ROWS``; columns from ``n1`` on repeat the last one (the spare rows of a short last
    tile). Counters step through (image, oh, ow); only ``n0`` is divided out."""
    get = lambda f: G._ctx_get(b, ctx, f"img_{f}")  # noqa: E731
    per_image, wout = get("positions"), get("wout")
    span = b.select(b.icmp_signed(">", per_image, i64(0)), per_image, i64(1 << 62))
    row_step, col_step, image_step = b.mul(get("sh"), get("wp")), get("sw"), get("image_stride")
    counters = {name: b.alloca(_I64, name=name) for name in ("image", "at", "oh", "ow")}
    start = b.srem(n0, span)
    for name, value in (("image", b.sdiv(n0, span)), ("at", start), ("oh", b.sdiv(start, wout)),
                        ("ow", b.srem(start, wout))):
        b.store(value, counters[name])
    with loop(b, n0, n1, name="po") as n:
        image, at, oh, ow = (b.load(counters[k]) for k in ("image", "at", "oh", "ow"))
        off = b.add(b.mul(image, image_step), b.add(b.mul(oh, row_step), b.mul(ow, col_step)))
        b.store(b.trunc(off, _I32), G._at(b, pos, b.sub(n, n0)))
        ow = b.add(ow, i64(1))
        wrap = b.icmp_signed("==", ow, wout)
        oh, ow = b.select(wrap, b.add(oh, i64(1)), oh), b.select(wrap, i64(0), ow)
        at = b.add(at, i64(1))
        next_image = b.icmp_signed("==", at, span)
        for name, value in (("image", b.select(next_image, b.add(image, i64(1)), image)),
                            ("at", b.select(next_image, i64(0), at)),
                            ("oh", b.select(next_image, i64(0), oh)), ("ow", b.select(next_image, i64(0), ow))):
            b.store(value, counters[name])
    last = b.load(G._at(b, pos, b.sub(b.sub(n1, n0), i64(1))))
    with loop(b, n1, b.add(n1, i64(ROWS)), name="pr") as n:
        b.store(last, G._at(b, pos, b.sub(n, n0)))


def _tile_loop(b: ir.IRBuilder, K: ir.Value, wp: ir.Value, tab: ir.Value, bases: list[ir.Value]) -> list[ir.Value]:
    """``acc[r] = sum_k image[bases[r] + tab[k]] * wp[k][0:16]`` for the tile's rows."""
    pre = b.block
    head, body, done = (b.append_basic_block(f"dk.{s}") for s in ("head", "body", "done"))
    b.branch(head)
    b.position_at_end(head)
    k = b.phi(_I64, "k")
    k.add_incoming(i64(0), pre)
    zero = ir.Constant(_V16, [0.0] * CHANNELS)
    accs = []
    for r in range(len(bases)):
        phi = b.phi(_V16, f"acc{r}")
        phi.add_incoming(zero, pre)
        accs.append(phi)
    b.cbranch(b.icmp_signed("<", k, K), body, done)
    b.position_at_end(body)
    off = b.sext(b.load(G._at(b, tab, k)), _I64)
    w = G._vload(b, G._at(b, wp, b.mul(k, i64(CHANNELS))), 64, _V16)
    for r, base in enumerate(bases):
        x = splat(b, b.load(G._at(b, base, off)), _V16)
        accs[r].add_incoming(fma(b, x, w, accs[r]), b.block)
    k.add_incoming(b.add(k, i64(1)), b.block)
    b.branch(head)
    b.position_at_end(done)
    return accs


def _store_tile(b: ir.IRBuilder, epi: Epilogue, ctx: ir.Value, accs: list[ir.Value], M: ir.Value,
                row0: ir.Value, col: ir.Value, valid: ir.Value) -> None:
    """Transpose the positions x 16-channel tile (up to 8 positions) to channel rows and store
    ``C[row0 + l, col:col+valid]`` through the epilogue (rows past M skipped; fewer than 8 valid
    positions: masked loads and stores)."""
    C, ldc = G._ctx_get(b, ctx, "C"), G._ctx_get(b, ctx, "ldc")
    halves = [ir.Constant(ir.VectorType(_I32, 8), list(range(h, h + 8))) for h in (0, 8)]
    zero = ir.Constant(_V8, [0.0] * 8)
    rows = []
    for h in halves:
        part = [b.shuffle_vector(acc, acc, h) for acc in accs]
        rows += G._transpose8(b, part + [zero] * (8 - len(part)))
    full = b.icmp_signed("==", valid, i64(8))
    mask = lanes_below8(b, valid)
    for lane, v in enumerate(rows):
        row = b.add(row0, i64(lane))
        with b.if_then(b.icmp_signed("<", row, M)):
            out = G._at(b, C, b.add(b.mul(row, ldc), col))
            with b.if_else(full, likely=True) as (whole, part):
                with whole:
                    if not epi.is_identity:
                        v = apply_epilogue(b, epi, v, G._epi_operands(b, epi, ctx, row, col, _V8))
                    G._vstore(b, v, out)
                with part:
                    x = rows[lane]
                    if not epi.is_identity:
                        x = apply_epilogue(b, epi, x, G._epi_operands(b, epi, ctx, row, col, _V8, mask))
                    masked_store8(b, x, out, mask)


def _tile_rows(b: ir.IRBuilder, count: ir.Value) -> ir.Value:
    """The tile height (one of ``TILE_HEIGHTS``) computing the fewest padding rows over ``count``
    positions, the tallest among equals."""
    best, best_cost = i64(TILE_HEIGHTS[0]), b.mul(ceil_div(b, count, TILE_HEIGHTS[0]), i64(TILE_HEIGHTS[0]))
    for rows in TILE_HEIGHTS[1:]:
        cost = b.mul(ceil_div(b, count, rows), i64(rows))
        better = b.icmp_signed("<", cost, best_cost)
        best, best_cost = b.select(better, i64(rows), best), b.select(better, cost, best_cost)
    return best


def _build_rect(module: ir.Module, name: str, epi: Epilogue) -> ir.Function:
    """``rect(ctx, b0, b1, n0, n1, wp, tab, pos)``: channel blocks ``b0 .. b1`` x positions ``n0 .. n1``
    (``tab``: K int32s of scratch, ``pos``: ``n1 - n0 + ROWS``), in tiles of the height ``_tile_rows``
    picks for ``n1 - n0`` (49 positions: 7 tiles of 7, not 7 of 8)."""
    fn, b = new_function(module, name, ir.VoidType(), [
        ("ctx", G._CTX_PTR), ("b0", _I64), ("b1", _I64), ("n0", _I64), ("n1", _I64), ("wp", _FPTR),
        ("tab", _I32PTR), ("pos", _I32PTR)])
    ctx, b0, b1, n0, n1, wp, tab, pos = fn.args
    wp.add_attribute("noalias")
    M, K = G._ctx_get(b, ctx, "M"), G._ctx_get(b, ctx, "K")
    A, lda, B = G._ctx_get(b, ctx, "A"), G._ctx_get(b, ctx, "lda"), G._ctx_get(b, ctx, "B")
    _fill_position_offsets(b, ctx, n0, n1, pos)  # first: its counters are entry-block allocas
    _fill_tap_offsets(b, ctx, K, tab)
    height = _tile_rows(b, b.sub(n1, n0))
    with loop(b, b0, b1, name="cb") as cb:
        row0 = b.mul(cb, i64(CHANNELS))
        _pack_block(b, A, lda, M, K, row0, wp)
        for rows in TILE_HEIGHTS:
            with b.if_then(b.icmp_signed("==", height, i64(rows))):
                with loop(b, n0, n1, rows, name=f"pt{rows}") as n:
                    first = G._at(b, pos, b.sub(n, n0))
                    bases = [G._at(b, B, b.sext(b.load(G._at(b, first, r)), _I64)) for r in range(rows)]
                    accs = _tile_loop(b, K, wp, tab, bases)
                    _store_tile(b, epi, ctx, accs, M, row0, n, imin(b, i64(rows), b.sub(n1, n)))
    b.ret_void()
    return fn


def _build_worker(module: ir.Module, name: str, rect: ir.Function) -> ir.Function:
    """``worker(void *ctx)``: this thread's channel blocks and positions, its scratch, ``rect``."""
    fn, b = new_function(module, name, ir.VoidType(), [("data", G._I8PTR)])
    ctx = b.bitcast(fn.args[0], G._CTX_PTR)
    nt = b.sext(b.call(declare(module, "omp_get_num_threads", _I32, []), []), _I64)
    tid = b.sext(b.call(declare(module, "omp_get_thread_num", _I32, []), []), _I64)
    serial = b.icmp_signed("<=", G._ctx_get(b, ctx, "num_threads"), _I32(1))
    nt, tid = b.select(serial, i64(1), nt), b.select(serial, i64(0), tid)
    M, N, K = (G._ctx_get(b, ctx, f) for f in ("M", "N", "K"))
    blocks, tiles = ceil_div(b, M, CHANNELS), ceil_div(b, N, ROWS)
    # threads along the channel blocks: as many as there are blocks (each packs only its own weights)
    tm = imin(b, nt, blocks)
    tm = b.select(b.icmp_signed("==", b.srem(nt, tm), i64(0)), tm, i64(1))
    tn = b.sdiv(nt, tm)
    part_m, part_n = b.sdiv(tid, tn), b.srem(tid, tn)
    blk0 = b.sdiv(b.mul(part_m, blocks), tm)
    blk1 = b.sdiv(b.mul(b.add(part_m, i64(1)), blocks), tm)
    n0, n1 = G._split(b, part_n, tn, tiles, ROWS, N)
    with b.if_then(b.or_(b.icmp_signed(">=", blk0, blk1), b.icmp_signed(">=", n0, n1))):
        b.ret_void()
    wp = G._alloc_floats(b, b.mul(K, i64(CHANNELS)))
    tab = G._alloc_floats(b, K)
    pos = G._alloc_floats(b, b.add(b.sub(n1, n0), i64(ROWS)))
    null = ir.Constant(G._I8PTR, None)
    failed = b.or_(b.icmp_unsigned("==", wp, null), b.icmp_unsigned("==", tab, null))
    with b.if_else(b.or_(failed, b.icmp_unsigned("==", pos, null)), likely=False) as (then, otherwise):
        with then:
            b.store_atomic(_I32(1), G._ctx_ptr(b, ctx, "status"), "monotonic", 4)
        with otherwise:
            b.call(rect, [ctx, blk0, blk1, n0, n1, b.bitcast(wp, _FPTR), b.bitcast(tab, _I32PTR),
                          b.bitcast(pos, _I32PTR)])
    free = declare(module, "free", ir.VoidType(), [G._I8PTR])
    for scratch in (wp, tab, pos):
        b.call(free, [scratch])
    b.ret_void()
    return fn


def emit_direct_conv(module: ir.Module, name: str, epilogue: Epilogue | None = None,
                     config: G.GemmConfig | None = None) -> ir.Function:
    """Emit the entry function ``name`` (helpers ``name.*``): the b_image GEMM's signature and result,
    computed as described in the module docstring. K must be below 2**31 / plane (int32 tap offsets)."""
    epi = epilogue or Epilogue()
    cfg = config or G.GemmConfig()
    if name in module.globals:
        raise CompileError(f"cannot emit convolution {name!r}: the module already defines that name")
    worker = _build_worker(module, f"{name}.worker", _build_rect(module, f"{name}.rect", epi))
    return G._build_entry(module, name, cfg, worker, CHANNELS, None, image=True)
