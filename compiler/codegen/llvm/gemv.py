"""The small-M path of the generated GEMM: matrix-vector style code for ``C = epilogue(A @ B^T)``.

Why a second algorithm: the BLIS loop nest in ``gemm.py`` packs a KC x NC block of B on every call and
computes 6-row tiles. With M = 1 (a Linear layer at batch 1) B is used once per element, so packing
doubles the memory traffic and five of the six tile rows are wasted: 3-6x slower than a dot-product
loop. Here nothing is packed. When B is transposed (``[N, K]``, a Linear weight: the case that matters)
each output is a dot product of two contiguous rows, so the code vectorizes along K: a tile of 8 output
columns keeps 8 independent ``<8 x float>`` accumulators (enough in flight to cover the FMA latency),
reduces them with a shuffle tree into one vector of 8 sums, applies the same fused epilogue as the GEMM
and stores 8 results at once. The tile's 8 rows of B (8*K floats) stay in L1 while the M rows of A run
over them, so B is read from memory once for all rows. When the problem is large enough to repay the
fork, libgomp threads claim pieces of the column tiles from an atomic counter in the call's context.

The multi-row path (``SMALL_M < M <= GemmConfig.dot_max_m``, trans_b, A small enough for L2) extends
the same idea to a Linear at batch 2-64: packing a [N, K] weight is a strided 16-row transpose that
cost about as much as the product itself at M = 8 and 0-19% at M = 64 (break-even near M = 96 or
M * K = 64 Ki floats, when A no longer sits comfortably in L2). Each register tile is DOT_ROWS rows
of A x DOT_COLS rows of B (12 ``<8 x float>`` accumulators, 8 loads per 12 FMAs); the tile's rows of
B stay in L1 while every row pair of A streams from L2, so B is read from memory once; a K tail is
one masked step; each row's 6 sums are reduced with the same shuffle tree into one vector that goes
through the vector epilogue with masked loads and stores. Threads claim column tiles, so they share
A and each reads its own part of B.

The paths are selected inside the GEMM entry function (``emit_small_m_dispatch``) from M, K and
``trans_b``; at a compiled kernel's call site M is a constant, and every user of the template (matmul,
the Linear layers, ``gemm_callable``) gets them with no other change.
"""

from __future__ import annotations

from collections.abc import Callable

import llvmlite.ir as ir
from ember.compiler.codegen.llvm import gemm as G
from ember.compiler.codegen.llvm.irutil import (
    ceil_div,
    declare,
    fop,
    i64,
    imax,
    imin,
    lanes_below8,
    loop,
    masked_load8,
    masked_store8,
    new_function,
    splat,
)

__all__ = ["DOT_COLS", "DOT_MAX_A", "DOT_ROWS", "PARALLEL_WORK", "SMALL_M", "emit_small_m_dispatch"]

SMALL_M = 1  # rows of A up to which the one-row tiles run (from M = 2 the 2x6 tiles were 1.2-1.4x faster)
PARALLEL_WORK = 1 << 18  # M*N*K from which splitting the columns repays the fork (GemmConfig.serial_work)
CLAIMS_PER_THREAD = 4  # a thread's share of the column tiles is claimed in about this many pieces
TILE = 8  # output columns per tile: one accumulator each, and one 8-lane vector of results
DOT_ROWS, DOT_COLS = 2, 6  # the multi-row path's register tile: 12 accumulators, 8 loads per 12 FMAs
DOT_MAX_A = 1 << 16  # floats of A (M * K, 256 KiB: half of L2) up to which the dot path won; 1.5x that lost 20%

_F32, _I32, _I64 = ir.FloatType(), ir.IntType(32), ir.IntType(64)
_V8 = ir.VectorType(_F32, 8)
_I8PTR = ir.IntType(8).as_pointer()


def _mask(*lanes: int) -> ir.Constant:
    return ir.Constant(ir.VectorType(_I32, 8), list(lanes))


def _pair_sum(b: ir.IRBuilder, x: ir.Value, y: ir.Value, lo: ir.Constant, hi: ir.Constant) -> ir.Value:
    return fop(b, "fadd", b.shuffle_vector(x, y, lo), b.shuffle_vector(x, y, hi))


def reduce8(b: ir.IRBuilder, vecs: list[ir.Value]) -> ir.Value:
    """Eight vectors -> one vector whose lane i is the sum of the lanes of ``vecs[i]`` (7 shuffle pairs,
    the hadd tree: adjacent lanes, then pairs of pairs, then the two 128-bit halves)."""
    even, odd = _mask(0, 8, 2, 10, 4, 12, 6, 14), _mask(1, 9, 3, 11, 5, 13, 7, 15)
    level1 = [_pair_sum(b, vecs[i], vecs[i + 1], even, odd) for i in range(0, 8, 2)]
    lo2, hi2 = _mask(0, 1, 8, 9, 4, 5, 12, 13), _mask(2, 3, 10, 11, 6, 7, 14, 15)
    level2 = [_pair_sum(b, level1[i], level1[i + 1], lo2, hi2) for i in (0, 2)]
    low, high = _mask(0, 1, 2, 3, 8, 9, 10, 11), _mask(4, 5, 6, 7, 12, 13, 14, 15)
    return _pair_sum(b, level2[0], level2[1], low, high)


def _phi_loop(b: ir.IRBuilder, start: ir.Value, stop: ir.Value, step: int, inits: list[ir.Value],
              body: Callable[[ir.Value, list[ir.Value]], list[ir.Value]], name: str) -> list[ir.Value]:
    """A counted loop carrying ``inits`` in registers (phi nodes); returns the values after the loop."""
    pre = b.block
    head, blk, done = (b.append_basic_block(f"{name}.{s}") for s in ("head", "body", "done"))
    b.branch(head)
    b.position_at_end(head)
    iv = b.phi(_I64, name)
    iv.add_incoming(start, pre)
    phis = []
    for v in inits:
        phi = b.phi(v.type)
        phi.add_incoming(v, pre)
        phis.append(phi)
    b.cbranch(b.icmp_signed("<", iv, stop), blk, done)
    b.position_at_end(blk)
    new = body(iv, phis)
    for phi, v in zip(phis, new):
        phi.add_incoming(v, b.block)
    iv.add_incoming(b.add(iv, i64(step)), b.block)
    b.branch(head)
    b.position_at_end(done)
    return phis


def _dot_tile(b: ir.IRBuilder, arow: ir.Value, brows: list[ir.Value], k: ir.Value) -> ir.Value:
    """Dot products of one row of A with 8 rows of B (row pointers ``brows``) over ``k`` elements."""
    kv = b.and_(k, i64(-8))
    zero = ir.Constant(_V8, [0.0] * 8)

    def main(kk: ir.Value, accs: list[ir.Value]) -> list[ir.Value]:
        a = G._vload(b, G._at(b, arow, kk))
        return [G._fma(b, a, G._vload(b, G._at(b, row, kk)), acc) for row, acc in zip(brows, accs)]

    accs = _phi_loop(b, i64(0), kv, 8, [zero] * TILE, main, "gk")

    def tail(kk: ir.Value, acc: list[ir.Value]) -> list[ir.Value]:
        bv = ir.Constant(_V8, ir.Undefined)
        for lane, row in enumerate(brows):
            bv = b.insert_element(bv, b.load(G._at(b, row, kk)), _I32(lane))
        return [G._fma(b, splat(b, b.load(G._at(b, arow, kk)), _V8), bv, acc[0])]

    rest = _phi_loop(b, kv, k, 1, [zero], tail, "gt")[0]
    return fop(b, "fadd", reduce8(b, accs), rest)


def _build_tile(module: ir.Module, name: str, epi: G.Epilogue) -> ir.Function:
    """``tile(ctx, col)``: C[:, col:col+8] (clipped at N). Columns past N read B's last row (in bounds)
    and are not stored, so edge tiles run the same loop as full ones."""
    fn, b = new_function(module, name, ir.VoidType(), [("ctx", G._CTX_PTR), ("col", _I64)])
    ctx, col = fn.args
    M, N, K = (G._ctx_get(b, ctx, n) for n in ("M", "N", "K"))
    A, lda = G._ctx_get(b, ctx, "A"), G._ctx_get(b, ctx, "lda")
    B, ldb = G._ctx_get(b, ctx, "B"), G._ctx_get(b, ctx, "ldb")
    C, ldc = G._ctx_get(b, ctx, "C"), G._ctx_get(b, ctx, "ldc")
    last = b.sub(N, i64(1))
    brows = [G._at(b, B, b.mul(imin(b, b.add(col, i64(c)), last), ldb)) for c in range(TILE)]
    nvalid = imin(b, i64(TILE), b.sub(N, col))
    with loop(b, 0, M, name="gm") as m:
        sums = _dot_tile(b, G._at(b, A, b.mul(m, lda)), brows, K)
        crow = G._at(b, C, b.mul(m, ldc), col)
        with b.if_else(b.icmp_signed("==", nvalid, i64(TILE)), likely=True) as (full, edge):
            with full:
                ops = G._epi_operands(b, epi, ctx, m, col, _V8)
                G._vstore(b, G._apply_epilogue(b, epi, sums, ops), crow)
            with edge:
                for lane in range(TILE):
                    with b.if_then(b.icmp_signed("<", i64(lane), nvalid)):
                        x = b.extract_element(sums, _I32(lane))
                        ops = G._epi_operands(b, epi, ctx, m, b.add(col, i64(lane)), _F32)
                        b.store(G._apply_epilogue(b, epi, x, ops), G._at(b, crow, lane))
    b.ret_void()
    return fn


def _build_worker(module: ir.Module, name: str, tile: ir.Function, width: int) -> ir.Function:
    """``worker(void *ctx)``: runs ``width``-column tiles (on libgomp's threads or the caller's) until
    none is left, claiming CLAIMS_PER_THREAD-th shares of a thread's part from a shared atomic counter.

    Claimed rather than split in fixed halves because the machine is shared: a thread that loses its
    core for a while leaves its tiles to the others instead of making every thread wait at the join.
    """
    fn, b = new_function(module, name, ir.VoidType(), [("data", _I8PTR)])
    ctx = b.bitcast(fn.args[0], G._CTX_PTR)
    nt = b.sext(b.call(declare(module, "omp_get_num_threads", _I32, []), []), _I64)
    N = G._ctx_get(b, ctx, "N")
    tiles = ceil_div(b, N, width)
    chunk = imax(b, b.sdiv(tiles, b.mul(nt, i64(CLAIMS_PER_THREAD))), i64(1))
    counter = G._ctx_ptr(b, ctx, "next")
    head, body, done = (b.append_basic_block(f"claim.{s}") for s in ("head", "body", "done"))
    b.branch(head)
    b.position_at_end(head)
    start = b.atomic_rmw("add", counter, chunk, "monotonic")
    b.cbranch(b.icmp_signed("<", start, tiles), body, done)
    b.position_at_end(body)
    with loop(b, start, imin(b, b.add(start, chunk), tiles), name="gj") as t:
        b.call(tile, [ctx, b.mul(t, i64(width))])
    b.branch(head)
    b.position_at_end(done)
    b.ret_void()
    return fn


# ---------------------------------------------------------------------------------------------------
# The multi-row dot path: DOT_ROWS rows of A x DOT_COLS rows of B per register tile, nothing packed


def _dot_block(b: ir.IRBuilder, arows: list[ir.Value], brows: list[ir.Value], k: ir.Value) -> list[ir.Value]:
    """Dot products of every row in ``arows`` with every row in ``brows`` over ``k`` elements: one vector
    per row of A whose first ``len(brows)`` lanes hold its sums. One accumulator vector per pair; a K
    tail is one masked step."""
    kv = b.and_(k, i64(-8))
    zero = ir.Constant(_V8, [0.0] * 8)

    def step(load: Callable[[ir.Value], ir.Value], accs: list[ir.Value]) -> list[ir.Value]:
        avecs = [load(row) for row in arows]
        out = list(accs)
        for j, row in enumerate(brows):
            w = load(row)
            for i, a in enumerate(avecs):
                out[i * len(brows) + j] = G._fma(b, a, w, out[i * len(brows) + j])
        return out

    def main(kk: ir.Value, accs: list[ir.Value]) -> list[ir.Value]:
        return step(lambda row: G._vload(b, G._at(b, row, kk)), accs)

    accs = _phi_loop(b, i64(0), kv, 8, [zero] * (len(arows) * len(brows)), main, "dk")
    rem = b.sub(k, kv)
    pre = b.block
    with b.if_then(b.icmp_signed(">", rem, i64(0))):
        mask = lanes_below8(b, rem)
        tail = step(lambda row: masked_load8(b, G._at(b, row, kv), mask), accs)
        tail_block = b.block
    merged = []
    for before, after in zip(accs, tail):
        phi = b.phi(_V8)
        phi.add_incoming(before, pre)
        phi.add_incoming(after, tail_block)
        merged.append(phi)
    c = len(brows)
    return [reduce8(b, merged[i * c:(i + 1) * c] + [zero] * (TILE - c)) for i in range(len(arows))]


def _build_dot_tile(module: ir.Module, name: str, epi: G.Epilogue) -> ir.Function:
    """``tile(ctx, col)``: C[:, col:col+DOT_COLS] (clipped at N), DOT_ROWS rows of A at a time.

    Row and column pointers past M or N are clamped to the last row (in bounds; their results are not
    stored), so edge tiles run the same loop; the epilogue runs on each row's vector of sums with masked
    loads and stores. The tile's rows of B stay in L1 while A streams from L2."""
    fn, b = new_function(module, name, ir.VoidType(), [("ctx", G._CTX_PTR), ("col", _I64)])
    ctx, col = fn.args
    M, N, K = (G._ctx_get(b, ctx, n) for n in ("M", "N", "K"))
    A, lda = G._ctx_get(b, ctx, "A"), G._ctx_get(b, ctx, "lda")
    B, ldb = G._ctx_get(b, ctx, "B"), G._ctx_get(b, ctx, "ldb")
    C, ldc = G._ctx_get(b, ctx, "C"), G._ctx_get(b, ctx, "ldc")
    brows = [G._at(b, B, b.mul(imin(b, b.add(col, i64(c)), b.sub(N, i64(1))), ldb)) for c in range(DOT_COLS)]
    mask = lanes_below8(b, imin(b, b.sub(N, col), i64(DOT_COLS)))
    with loop(b, 0, M, DOT_ROWS, name="dm") as m0:
        rows = [imin(b, b.add(m0, i64(r)), b.sub(M, i64(1))) for r in range(DOT_ROWS)]
        sums = _dot_block(b, [G._at(b, A, b.mul(r, lda)) for r in rows], brows, K)
        for r in range(DOT_ROWS):
            with b.if_then(b.icmp_signed("<", b.add(m0, i64(r)), M), likely=True):
                ops = G._epi_operands(b, epi, ctx, rows[r], col, _V8, mask)
                value = G._apply_epilogue(b, epi, sums[r], ops)
                masked_store8(b, value, G._at(b, C, b.mul(rows[r], ldc), col), mask)
    b.ret_void()
    return fn


def _fork(b: ir.IRBuilder, worker: ir.Function, ctx: ir.Value, num_threads: ir.Value, tiles: ir.Value,
          work: ir.Value) -> None:
    """Run ``worker`` on min(num_threads, tiles) threads, or serially below PARALLEL_WORK multiply-adds."""
    nt = imin(b, b.sext(num_threads, _I64), tiles)
    nt = b.select(b.icmp_signed("<", work, i64(PARALLEL_WORK)), i64(1), nt)
    data = b.bitcast(ctx, _I8PTR)
    with b.if_else(b.icmp_signed(">", nt, i64(1))) as (parallel, serial):
        with parallel:
            gomp = declare(b.module, "GOMP_parallel", ir.VoidType(), [worker.type, _I8PTR, _I32, _I32])
            b.call(gomp, [worker, data, b.trunc(nt, _I32), _I32(0)])
        with serial:
            b.call(worker, [data])


def emit_small_m_dispatch(b: ir.IRBuilder, name: str, epi: G.Epilogue, ctx: ir.Value,
                          num_threads: ir.Value, dot_max_m: int = 0) -> None:
    """In the GEMM entry (``b`` positioned after the context is filled and M, N > 0 is known): when
    ``M <= SMALL_M``, run the one-row dot-product path and return 0; when ``M <= dot_max_m`` and A is
    small enough to stay in L2 (``M * K <= DOT_MAX_A``), the multi-row one; otherwise fall through."""
    module = b.module
    M, N, K = (G._ctx_get(b, ctx, n) for n in ("M", "N", "K"))
    work = b.mul(b.mul(M, N), K)
    worker = _build_worker(module, f"{name}.gemv_worker", _build_tile(module, f"{name}.gemv_tile", epi), TILE)
    with b.if_then(b.icmp_signed("<=", M, i64(SMALL_M))):
        _fork(b, worker, ctx, num_threads, ceil_div(b, N, TILE), work)
        b.ret(_I32(0))
    if dot_max_m <= SMALL_M:
        return
    dot = _build_worker(module, f"{name}.dot_worker", _build_dot_tile(module, f"{name}.dot_tile", epi),
                        DOT_COLS)
    fits = b.icmp_signed("<=", b.mul(M, K), i64(DOT_MAX_A))
    with b.if_then(b.and_(b.icmp_signed("<=", M, i64(dot_max_m)), fits)):
        _fork(b, dot, ctx, num_threads, ceil_div(b, N, DOT_COLS), work)
        b.ret(_I32(0))
