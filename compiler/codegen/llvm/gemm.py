"""A generated, BLAS-free fp32 GEMM for the host CPU (AVX2 + FMA, or AVX-512), with fused epilogues.

``emit_gemm`` writes into an llvmlite module one function computing ``C = epilogue(A @ B)`` for row-major
fp32 operands. It follows the BLIS design because that is what reaches the FMA peak on this machine
without assembly: an MR x 16 register tile (``register_tile``: with 8-lane AVX2 vectors 6 rows of two
``<8 x float>`` accumulators, with 16-lane AVX-512 vectors 8 rows of one ``<16 x float>``; per k step one
broadcast of A per row, the row's B vectors and an ``llvm.fma`` per accumulator), operands packed into
MR-row / NR-column panels so the kernel streams contiguous memory, and cache blocking (KC x NR panels of
B stay in L1, an MC x KC block of A in L2, a KC x NC block of B in L3). The epilogue (scales, biases,
residual, activation; ``gemm_epilogue.py``) is applied to each output tile while it is still in
registers, after the last K block, so conv/linear + BN + bias + ReLU (+ residual) costs one pass over C.

Generated function (C view; ``name`` is chosen by the caller)::

    int32_t name(int64_t M, int64_t N, int64_t K,
                 const float *A, int64_t lda,          /* A[M,K], row stride lda               */
                 const float *B, int64_t ldb,          /* B[K,N]; or B[N,K] if trans_b          */
                 float *C, int64_t ldc,                /* C[M,N], overwritten                   */
                 const float *col_scale,               /* [N], if epilogue.col_scale            */
                 const float *col_bias,                /* [N], if epilogue.col_bias             */
                 const float *row_scale,               /* [M], if epilogue.row_scale            */
                 const float *row_bias,                /* [M], if epilogue.row_bias             */
                 const float *R, int64_t ldr,          /* residual R[M,N], if epilogue.residual */
                 int32_t num_threads);                 /* <= 1: no fork                         */

It returns 0 on success and 1 when a packing buffer could not be allocated. Pointers the epilogue does
not use may be NULL. C must not overlap A, B or R (C holds partial sums between K blocks). The epilogue
computes ``act((acc * col_scale[n] * row_scale[m]) + col_bias[n] + row_bias[m] + R[m, n])``.

Packing buffers are allocated by each thread with ``aligned_alloc`` (sized for that thread's share of
the problem, at most about (MC + NC) * KC floats) and freed before returning, so the function needs no
workspace argument and is reentrant. Parallelism: the M x N output is cut into a ``tm x tn`` grid of
thread rectangles (``tm * tn = threads``, chosen at run time to balance work and redundant packing);
each thread runs the serial blocked algorithm on its rectangle, so no barriers are needed. Threads are
libgomp's (``GOMP_parallel``); problems under ``GemmConfig.serial_work`` multiply-adds run serially.
"""

from __future__ import annotations

import ctypes
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import llvmlite.ir as ir
import numpy as np
from ember.compiler.codegen.llvm.gemm_epilogue import ACTIVATIONS, Epilogue
from ember.compiler.codegen.llvm.gemm_epilogue import apply_epilogue as _apply_epilogue
from ember.compiler.codegen.llvm.gemm_epilogue import fma as _fma
from ember.compiler.codegen.llvm.gemm_image import IMAGE_ARGS, build_pack_b_image
from ember.compiler.codegen.llvm.irutil import ceil_div as _ceil_div
from ember.compiler.codegen.llvm.irutil import declare as _declare
from ember.compiler.codegen.llvm.irutil import fop as _fop
from ember.compiler.codegen.llvm.irutil import i64 as _i64
from ember.compiler.codegen.llvm.irutil import imax as _imax
from ember.compiler.codegen.llvm.irutil import imin as _imin
from ember.compiler.codegen.llvm.irutil import loop as _loop
from ember.compiler.codegen.llvm.irutil import masked_load8
from ember.compiler.codegen.llvm.irutil import new_function as _new_function
from ember.compiler.codegen.llvm.irutil import splat as _splat
from ember.runtime.errors import ArgumentError, CompileError, ShapeError

__all__ = ["ACTIVATIONS", "NR", "Epilogue", "GemmConfig", "emit_gemm", "gemm_callable",
           "gemm_ctypes_argtypes", "register_tile"]

NR = 16  # columns of the register tile (two 8-lane or one 16-lane vector)
TILE_ROWS = {8: 6, 16: 8}  # rows of the register tile by vector lanes (see register_tile)
_MC_UNIT = math.lcm(*TILE_ROWS.values())  # GemmConfig.mc is a multiple of every tile height

_F32, _I1, _I8, _I32, _I64 = ir.FloatType(), ir.IntType(1), ir.IntType(8), ir.IntType(32), ir.IntType(64)
_V8 = ir.VectorType(_F32, 8)
_FPTR, _I8PTR = _F32.as_pointer(), _I8.as_pointer()
_FAST = ("contract",)  # lets mul+add fuse into FMA without changing other IEEE semantics


@dataclass(frozen=True)
class GemmConfig:
    """Cache-blocking parameters (in elements) and the serial cut-off.

    Defaults suit Zen 3 and Zen 4 (32 KiB L1d, 512 KiB-1 MiB L2): a KC x 16 B panel (24 KiB) stays in
    L1, an MC x KC block of A (180 KiB) in L2 (other KC, MC and NC measured within 2% on Zen 4).
    ``serial_work`` is the M*N*K below which forking threads costs more than it saves: 256 Ki, about
    2.5 us of one core. Idle libgomp threads spin for a while (``runtime/settings.prepare_thread_pool``),
    so inside a model call a fork finds them awake; when they slept, waking them cost tens of us and the
    cut-off was 1 Mi. Lowering it to 256 Ki (with ``gemv.PARALLEL_WORK``) made ResNet-18 on 32x32 at
    batch 1 1.24x and the MLP at batch 1 1.42x faster, others even; 128 Ki made LeNet-5 at batch 1 1.2x
    slower (its second convolution, 240 Ki, then forks).
    ``dot_max_m``: with a transposed B (a Linear weight) and at most this many rows, packing B costs more
    than the packed kernel saves (B is used by few rows), so ``gemv.py``'s unpacked path runs instead.
    ``lanes``: the micro-kernel's vector width (8 or 16 floats; 0: the host's, ``register_tile``).
    ``mc`` must be a multiple of 24, so that both tile heights divide it.
    """

    mc: int = 120
    kc: int = 384
    nc: int = 4096
    serial_work: int = 1 << 18
    dot_max_m: int = 64  # trans_b with M up to this runs gemv.py's unpacked dot path (0: never)
    lanes: int = 0

    def __post_init__(self) -> None:
        if self.mc <= 0 or self.mc % _MC_UNIT or self.nc <= 0 or self.nc % NR or self.kc <= 0:
            raise ArgumentError(
                f"GemmConfig(mc={self.mc}, kc={self.kc}, nc={self.nc}): mc must be a positive multiple of "
                f"{_MC_UNIT} (every register tile height divides it), nc of {NR}, kc positive"
            )
        if self.lanes not in (0, *TILE_ROWS):
            raise ArgumentError(f"GemmConfig(lanes={self.lanes}): choose 8 (AVX2), 16 (AVX-512) or 0 (the host's)")


@dataclass(frozen=True)
class Tile:
    """The register tile: ``mr`` rows of ``NR`` columns held in ``NR // lanes`` vectors per row."""

    mr: int
    lanes: int

    @property
    def vec(self) -> ir.VectorType:
        return ir.VectorType(_F32, self.lanes)

    @property
    def per_row(self) -> int:
        return NR // self.lanes


def register_tile(lanes: int = 0) -> Tile:
    """The register tile for ``lanes``-wide vectors (0: the host's widest, ``jit.host_vector_lanes``)."""
    if not lanes:
        from ember.compiler.codegen.llvm.jit import host_vector_lanes

        lanes = host_vector_lanes()
    return Tile(TILE_ROWS[lanes], lanes)


# ---------------------------------------------------------------------------------------------------
# Small IR-building helpers (shared ones live in irutil)


def _at(b: ir.IRBuilder, ptr: ir.Value, *offsets: ir.Value | int) -> ir.Value:
    """``ptr + sum(offsets)`` (element-wise pointer arithmetic)."""
    for off in offsets:
        ptr = b.gep(ptr, [_i64(off) if isinstance(off, int) else off], inbounds=True)
    return ptr


def _vload(b: ir.IRBuilder, fptr: ir.Value, align: int = 4, ty: ir.VectorType = _V8) -> ir.Value:
    return b.load(b.bitcast(fptr, ty.as_pointer()), align=align)


def _vstore(b: ir.IRBuilder, value: ir.Value, fptr: ir.Value, align: int = 4) -> None:
    b.store(value, b.bitcast(fptr, value.type.as_pointer()), align=align)


# ---------------------------------------------------------------------------------------------------
# The context struct: every argument of the entry function, handed to the libgomp-outlined worker.

_ENTRY_ARGS: tuple[tuple[str, ir.Type], ...] = (
    ("M", _I64), ("N", _I64), ("K", _I64), ("A", _FPTR), ("lda", _I64), ("B", _FPTR), ("ldb", _I64),
    ("C", _FPTR), ("ldc", _I64), ("col_scale", _FPTR), ("col_bias", _FPTR), ("row_scale", _FPTR),
    ("row_bias", _FPTR), ("R", _FPTR), ("ldr", _I64), ("num_threads", _I32),
)
# next: gemv.py's shared tile counter; img_*: the geometry of an implicit-GEMM B (gemm_image.py)
_CTX_FIELDS = (*_ENTRY_ARGS, *IMAGE_ARGS, ("status", _I32), ("next", _I64))
_CTX_INDEX = {name: i for i, (name, _) in enumerate(_CTX_FIELDS)}
_CTX_TYPE = ir.LiteralStructType([t for _, t in _CTX_FIELDS])
_CTX_PTR = _CTX_TYPE.as_pointer()


def _ctx_ptr(b: ir.IRBuilder, ctx: ir.Value, name: str) -> ir.Value:
    return b.gep(ctx, [_I32(0), _I32(_CTX_INDEX[name])], inbounds=True)


def _ctx_get(b: ir.IRBuilder, ctx: ir.Value, name: str) -> ir.Value:
    return b.load(_ctx_ptr(b, ctx, name), name=name)


# ---------------------------------------------------------------------------------------------------
# Packing


def _transpose8(b: ir.IRBuilder, rows: list[ir.Value]) -> list[ir.Value]:
    """Transpose an 8x8 block given as 8 row vectors (the unpack / shuffle / permute2f128 sequence)."""

    def shuf(x: ir.Value, y: ir.Value, mask: list[int]) -> ir.Value:
        return b.shuffle_vector(x, y, ir.Constant(ir.VectorType(_I32, 8), mask))

    lo, hi = [0, 8, 1, 9, 4, 12, 5, 13], [2, 10, 3, 11, 6, 14, 7, 15]
    t = []
    for i in range(0, 8, 2):
        t += [shuf(rows[i], rows[i + 1], lo), shuf(rows[i], rows[i + 1], hi)]
    even, odd = [0, 1, 8, 9, 4, 5, 12, 13], [2, 3, 10, 11, 6, 7, 14, 15]
    u = []
    for base in (0, 4):
        for j in (0, 1):
            u += [shuf(t[base + j], t[base + j + 2], even), shuf(t[base + j], t[base + j + 2], odd)]
    low128, high128 = [0, 1, 2, 3, 8, 9, 10, 11], [4, 5, 6, 7, 12, 13, 14, 15]
    return [shuf(u[i], u[i + 4], half) for half in (low128, high128) for i in range(4)]


def _pack_scalar_edge(b: ir.IRBuilder, kc: ir.Value, count: ir.Value, width: int, src: ir.Value,
                      k_stride: ir.Value | int, lane_stride: ir.Value | int, dst: ir.Value) -> None:
    """Pack a panel with fewer than ``width`` valid lanes: ``dst[k*width + l] = src[k*ks + l*ls]``, zero
    for lanes ``l >= count``. The lane index is clamped before loading so nothing is read out of bounds."""
    k_stride = _i64(k_stride) if isinstance(k_stride, int) else k_stride
    lane_stride = _i64(lane_stride) if isinstance(lane_stride, int) else lane_stride
    last = b.sub(count, _i64(1))
    lane_offsets = []
    for lane in range(width):
        clamped = _imin(b, _i64(lane), last)
        lane_offsets.append((b.icmp_signed("<", _i64(lane), count), b.mul(clamped, lane_stride)))
    zero = ir.Constant(_F32, 0.0)
    with _loop(b, 0, kc, name="pk") as k:
        row = _at(b, src, b.mul(k, k_stride))
        out = _at(b, dst, b.mul(k, _i64(width)))
        for lane, (valid, off) in enumerate(lane_offsets):
            b.store(b.select(valid, b.load(_at(b, row, off)), zero), _at(b, out, lane))


def _build_pack_a(module: ir.Module, name: str, MR: int) -> ir.Function:
    """``pack_a(kc, mc, a, lda, dst)``: A[mc, kc] (row stride lda) -> ceil(mc/MR) panels of [kc][MR].

    Full panels move 8 k-columns at a time: MR (6 or 8) row loads, an 8x8 register transpose, and eight
    8-wide stores of MR useful lanes each (with 6 rows the two spare lanes are overwritten by the next
    store, so the buffer carries 16 floats of slack at its end).
    """
    fn, b = _new_function(module, name, ir.VoidType(),
                          [("kc", _I64), ("mc", _I64), ("a", _FPTR), ("lda", _I64), ("dst", _FPTR)])
    kc, mc, a, lda, dst = fn.args
    zero8 = ir.Constant(_V8, [0.0] * 8)
    with _loop(b, 0, _ceil_div(b, mc, MR), name="pa") as p:
        r0 = b.mul(p, _i64(MR))
        mr = _imin(b, _i64(MR), b.sub(mc, r0))
        src = _at(b, a, b.mul(r0, lda))
        d = _at(b, dst, b.mul(p, b.mul(kc, _i64(MR))))
        with b.if_else(b.icmp_signed("==", mr, _i64(MR))) as (full, edge):
            with full:
                kv = b.and_(kc, _i64(-8))
                with _loop(b, 0, kv, 8, name="pa8") as k0:
                    rows = [_vload(b, _at(b, src, b.mul(_i64(r), lda), k0)) for r in range(MR)]
                    cols = _transpose8(b, rows + [zero8] * (8 - MR))
                    for k in range(8):
                        _vstore(b, cols[k], _at(b, d, b.mul(b.add(k0, _i64(k)), _i64(MR))))
                with _loop(b, kv, kc, name="pa1") as k:
                    for r in range(MR):
                        v = b.load(_at(b, src, b.mul(_i64(r), lda), k))
                        b.store(v, _at(b, d, b.mul(k, _i64(MR)), r))
            with edge:
                _pack_scalar_edge(b, kc, mr, MR, src, 1, lda, d)
    b.ret_void()
    return fn


def _build_pack_b(module: ir.Module, name: str, trans_b: bool) -> ir.Function:
    """``pack_b(kc, nc, b, ldb, dst)``: a KC x NC block of B -> ceil(nc/16) panels of [kc][16].

    ``b`` points at element (k=0, n=0) of the block. Untransposed B rows are contiguous in n, so a
    panel row is two vector copies. Transposed B (``[N, K]``, a Linear weight) is contiguous in k: 16
    row loads per 8 k-steps and two 8x8 register transposes.
    """
    fn, b = _new_function(module, name, ir.VoidType(),
                          [("kc", _I64), ("nc", _I64), ("b", _FPTR), ("ldb", _I64), ("dst", _FPTR)])
    kc, nc, bsrc, ldb, dst = fn.args
    with _loop(b, 0, _ceil_div(b, nc, NR), name="pb") as p:
        c0 = b.mul(p, _i64(NR))
        nr = _imin(b, _i64(NR), b.sub(nc, c0))
        src = _at(b, bsrc, b.mul(c0, ldb) if trans_b else c0)
        d = _at(b, dst, b.mul(p, b.mul(kc, _i64(NR))))
        with b.if_else(b.icmp_signed("==", nr, _i64(NR))) as (full, edge):
            with full:
                if trans_b:
                    _pack_bt_full(b, kc, src, ldb, d)
                else:
                    with _loop(b, 0, kc, name="pbk") as k:
                        row = _at(b, src, b.mul(k, ldb))
                        out = _at(b, d, b.mul(k, _i64(NR)))
                        _vstore(b, _vload(b, row), out, align=32)
                        _vstore(b, _vload(b, _at(b, row, 8)), _at(b, out, 8), align=32)
            with edge:
                if trans_b:
                    _pack_scalar_edge(b, kc, nr, NR, src, 1, ldb, d)
                else:
                    _pack_scalar_edge(b, kc, nr, NR, src, ldb, 1, d)
    b.ret_void()
    return fn


def _pack_bt_full(b: ir.IRBuilder, kc: ir.Value, src: ir.Value, ldb: ir.Value, d: ir.Value) -> None:
    kv = b.and_(kc, _i64(-8))
    with _loop(b, 0, kv, 8, name="pbt8") as k0:
        rows = [_vload(b, _at(b, src, b.mul(_i64(c), ldb), k0)) for c in range(NR)]
        low, high = _transpose8(b, rows[:8]), _transpose8(b, rows[8:])
        for k in range(8):
            out = _at(b, d, b.mul(b.add(k0, _i64(k)), _i64(NR)))
            _vstore(b, low[k], out, align=32)
            _vstore(b, high[k], _at(b, out, 8), align=32)
    with _loop(b, kv, kc, name="pbt1") as k:
        out = _at(b, d, b.mul(k, _i64(NR)))
        for c in range(NR):
            b.store(b.load(_at(b, src, b.mul(_i64(c), ldb), k)), _at(b, out, c))


# ---------------------------------------------------------------------------------------------------
# The 6x16 micro-kernel and its store/epilogue phase


def _kernel_loop(b: ir.IRBuilder, kc: ir.Value, ap: ir.Value, bp: ir.Value, tile: Tile) -> list[ir.Value]:
    """Accumulate ``Ap[kc][MR] x Bp[kc][16]`` into ``MR * per_row`` vector registers, row-major."""
    pre = b.block
    head = b.append_basic_block("k.head")
    body = b.append_basic_block("k.body")
    done = b.append_basic_block("k.done")
    b.branch(head)
    b.position_at_end(head)
    k = b.phi(_I64, "k")
    k.add_incoming(_i64(0), pre)
    MR, vec, per_row = tile.mr, tile.vec, tile.per_row
    zero = ir.Constant(vec, [0.0] * tile.lanes)
    accs = []
    for i in range(MR * per_row):
        phi = b.phi(vec, f"acc{i}")
        phi.add_incoming(zero, pre)
        accs.append(phi)
    b.cbranch(b.icmp_signed("<", k, kc), body, done)
    b.position_at_end(body)
    brow = _at(b, bp, b.mul(k, _i64(NR)))
    bvec = [_vload(b, _at(b, brow, tile.lanes * h), 32, vec) for h in range(per_row)]
    arow = _at(b, ap, b.mul(k, _i64(MR)))
    new = []
    for i in range(MR):
        a = _splat(b, b.load(_at(b, arow, i)), vec)
        new += [_fma(b, a, bv, accs[per_row * i + h]) for h, bv in enumerate(bvec)]
    for phi, value in zip(accs, new):
        phi.add_incoming(value, b.block)
    k.add_incoming(b.add(k, _i64(1)), b.block)
    b.branch(head)
    b.position_at_end(done)
    return accs


def _epi_operands(b: ir.IRBuilder, epi: Epilogue, ctx: ir.Value, row: ir.Value, col: ir.Value,
                  ty: ir.Type, mask: ir.Value | None = None) -> dict[str, ir.Value]:
    """Load the epilogue operands for element (row, col) [scalar ``ty``] or (row, col..col+lanes-1)
    [vector ``ty``]; ``mask`` (<8 x i1>, with an 8-lane ``ty``): only those lanes exist, the column
    operands are read with masked loads (a short tile may end at the end of a buffer)."""

    def load(name: str, index: ir.Value) -> ir.Value:
        ptr = _at(b, _ctx_get(b, ctx, name), index)
        if mask is not None:
            return masked_load8(b, ptr, mask)
        return _vload(b, ptr, ty=ty) if isinstance(ty, ir.VectorType) else b.load(ptr)

    def row_value(name: str) -> ir.Value:
        return _splat(b, b.load(_at(b, _ctx_get(b, ctx, name), row)), ty)

    ops = {name: load(name, col) for name in ("col_scale", "col_bias") if getattr(epi, name)}
    ops.update({name: row_value(name) for name in ("row_scale", "row_bias") if getattr(epi, name)})
    if epi.residual:
        ops["residual"] = load("R", b.add(b.mul(row, _ctx_get(b, ctx, "ldr")), col))
    return ops


def _store_full_tile(b: ir.IRBuilder, epi: Epilogue, ctx: ir.Value, accs: list[ir.Value], c: ir.Value,
                     ldc: ir.Value, accumulate: ir.Value, last: ir.Value, row: ir.Value,
                     col: ir.Value, tile: Tile) -> None:
    """A complete MR x 16 tile: add the old C when accumulating over K blocks, epilogue in registers."""
    MR, vec, per_row = tile.mr, tile.vec, tile.per_row
    ptrs = [_at(b, c, b.mul(_i64(i), ldc), tile.lanes * h) for i in range(MR) for h in range(per_row)]
    with b.if_else(accumulate) as (then, otherwise):
        with then:
            summed = [_fop(b, "fadd", acc, _vload(b, ptr, ty=vec)) for acc, ptr in zip(accs, ptrs)]
            summed_block = b.block
        with otherwise:
            fresh_block = b.block
    vals = []
    for acc, total in zip(accs, summed):
        phi = b.phi(vec)
        phi.add_incoming(total, summed_block)
        phi.add_incoming(acc, fresh_block)
        vals.append(phi)
    if epi.is_identity:
        for ptr, v in zip(ptrs, vals):
            _vstore(b, v, ptr)
        return
    with b.if_else(last) as (then, otherwise):
        with then:
            for i in range(MR):
                r = b.add(row, _i64(i))
                for h in range(per_row):
                    ops = _epi_operands(b, epi, ctx, r, b.add(col, _i64(tile.lanes * h)), vec)
                    k = per_row * i + h
                    _vstore(b, _apply_epilogue(b, epi, vals[k], ops), ptrs[k])
        with otherwise:
            for ptr, v in zip(ptrs, vals):
                _vstore(b, v, ptr)


def _store_short_tile(b: ir.IRBuilder, epi: Epilogue, ctx: ir.Value, accs: list[ir.Value], c: ir.Value,
                      ldc: ir.Value, mr: ir.Value, accumulate: ir.Value, last: ir.Value, row: ir.Value,
                      col: ir.Value, tile: Tile) -> None:
    """A full-width tile with only ``mr < MR`` rows (the last tile of an M that MR does not divide, e.g.
    LeNet-5's 6 output channels under the 8-row AVX-512 tile): each valid row as in a full tile, with
    vector loads and stores, instead of the element-wise edge path."""
    vec, per_row = tile.vec, tile.per_row
    for i in range(tile.mr):
        with b.if_then(b.icmp_signed("<", _i64(i), mr)):
            r = b.add(row, _i64(i))
            for h in range(per_row):
                ptr = _at(b, c, b.mul(_i64(i), ldc), tile.lanes * h)
                v = accs[per_row * i + h]
                v = b.select(accumulate, _fop(b, "fadd", v, _vload(b, ptr, ty=vec)), v)
                if not epi.is_identity:
                    ops = _epi_operands(b, epi, ctx, r, b.add(col, _i64(tile.lanes * h)), vec)
                    v = b.select(last, _apply_epilogue(b, epi, v, ops), v)
                _vstore(b, v, ptr)


def _store_edge_tile(b: ir.IRBuilder, epi: Epilogue, ctx: ir.Value, accs: list[ir.Value], buf: ir.Value,
                     c: ir.Value, ldc: ir.Value, mr: ir.Value, nr: ir.Value, accumulate: ir.Value,
                     last: ir.Value, row: ir.Value, col: ir.Value) -> None:
    """A clipped tile (mr < MR or nr < 16): spill to a stack tile, then copy the valid part element-wise."""
    for i, acc in enumerate(accs):
        _vstore(b, acc, _at(b, buf, acc.type.count * i), align=32)
    zero = ir.Constant(_F32, 0.0)
    with _loop(b, 0, mr, name="ei") as i:
        crow = _at(b, c, b.mul(i, ldc))
        brow = _at(b, buf, b.mul(i, _i64(NR)))
        with _loop(b, 0, nr, name="ej") as j:
            ptr = _at(b, crow, j)
            v = _fop(b, "fadd", b.load(_at(b, brow, j)), b.select(accumulate, b.load(ptr), zero))
            b.store(v, ptr)
    if epi.is_identity:
        return
    with b.if_then(last):
        with _loop(b, 0, mr, name="eei") as i:
            crow = _at(b, c, b.mul(i, ldc))
            with _loop(b, 0, nr, name="eej") as j:
                ptr = _at(b, crow, j)
                ops = _epi_operands(b, epi, ctx, b.add(row, i), b.add(col, j), _F32)
                b.store(_apply_epilogue(b, epi, b.load(ptr), ops), ptr)


def _build_microkernel(module: ir.Module, name: str, epi: Epilogue, tile: Tile) -> ir.Function:
    """``ukernel(kc, ap, bp, c, ldc, mr, nr, accumulate, last, row, col, ctx)``: one C tile.

    Always computes a full MR x 16 product (packing zero-pads the panels); ``mr``/``nr`` clip the store
    (fewer rows: vector stores row by row; fewer columns: the element-wise edge path).
    ``accumulate`` adds the tile to C (K blocks after the first); ``last`` applies the epilogue.
    """
    fn, b = _new_function(module, name, ir.VoidType(), [
        ("kc", _I64), ("ap", _FPTR), ("bp", _FPTR), ("c", _FPTR), ("ldc", _I64), ("mr", _I64), ("nr", _I64),
        ("accumulate", _I1), ("last", _I1), ("row", _I64), ("col", _I64), ("ctx", _CTX_PTR)])
    kc, ap, bp, c, ldc, mr, nr, accumulate, last, row, col, ctx = fn.args
    for arg in (ap, bp):
        arg.add_attribute("noalias")
    MR = tile.mr
    buf = b.bitcast(b.alloca(ir.ArrayType(_F32, MR * NR), name="edge"), _FPTR)
    buf.operands[0].align = 32
    prefetch = _declare(module, "llvm.prefetch.p0", ir.VoidType(), [_I8PTR, _I32, _I32, _I32])
    for i in range(MR):  # the tile's C lines are needed at the end: start fetching them now
        row_ptr = _at(b, c, b.mul(_i64(i), ldc))
        for off in (0, NR - 1):
            b.call(prefetch, [b.bitcast(_at(b, row_ptr, off), _I8PTR), _I32(1), _I32(3), _I32(1)])
    accs = _kernel_loop(b, kc, ap, bp, tile)
    wide = b.icmp_signed("==", nr, _i64(NR))
    with b.if_else(b.and_(b.icmp_signed("==", mr, _i64(MR)), wide), likely=True) as (then, otherwise):
        with then:
            _store_full_tile(b, epi, ctx, accs, c, ldc, accumulate, last, row, col, tile)
        with otherwise:
            with b.if_else(wide) as (short, edge):
                with short:
                    _store_short_tile(b, epi, ctx, accs, c, ldc, mr, accumulate, last, row, col, tile)
                with edge:
                    _store_edge_tile(b, epi, ctx, accs, buf, c, ldc, mr, nr, accumulate, last, row, col)
    b.ret_void()
    return fn


# ---------------------------------------------------------------------------------------------------
# Blocking loops, thread partition and the entry point


def _build_rect(module: ir.Module, name: str, cfg: GemmConfig, trans_b: bool, pack_a: ir.Function,
                pack_b: ir.Function, ukernel: ir.Function, MR: int, image: bool = False) -> ir.Function:
    """``rect(ctx, m0, m1, n0, n1, ap, bp, tp)``: C[m0:m1, n0:n1] by the serial BLIS loop nest
    (jc over NC, pc over K blocks of at most KC (``_balanced_kc``) with B packed, ic over MC with A
    packed, then jr/ir over the tiles). ``image``: B is packed from an image (``gemm_image.py``; ``tp``
    its column-offset scratch).

    K = 0 still runs one (empty) K block so the epilogue is applied to a zero product.
    """
    fn, b = _new_function(module, name, ir.VoidType(), [
        ("ctx", _CTX_PTR), ("m0", _I64), ("m1", _I64), ("n0", _I64), ("n1", _I64),
        ("ap", _FPTR), ("bp", _FPTR), ("tp", _I32.as_pointer())])
    ctx, m0, m1, n0, n1, ap, bp, tp = fn.args
    for arg in (ap, bp):
        arg.add_attribute("noalias")
    K = _ctx_get(b, ctx, "K")
    A, lda = _ctx_get(b, ctx, "A"), _ctx_get(b, ctx, "lda")
    B, ldb = _ctx_get(b, ctx, "B"), _ctx_get(b, ctx, "ldb")
    C, ldc = _ctx_get(b, ctx, "C"), _ctx_get(b, ctx, "ldc")
    kstep = _balanced_kc(b, K, cfg.kc)
    with _loop(b, n0, n1, cfg.nc, name="jc") as jc:
        nc = _imin(b, _i64(cfg.nc), b.sub(n1, jc))
        with _loop(b, 0, _imax(b, K, _i64(1)), kstep, name="pc") as pc:
            kc = _imin(b, kstep, b.sub(K, pc))
            accumulate = b.icmp_signed(">", pc, _i64(0))
            last = b.icmp_signed(">=", b.add(pc, kstep), K)
            if image:
                b.call(pack_b, [kc, nc, pc, jc, ctx, bp, tp])
            else:
                bsrc = b.add(b.mul(jc, ldb), pc) if trans_b else b.add(b.mul(pc, ldb), jc)
                b.call(pack_b, [kc, nc, _at(b, B, bsrc), ldb, bp])
            with _loop(b, m0, m1, cfg.mc, name="ic") as ic:
                mc = _imin(b, _i64(cfg.mc), b.sub(m1, ic))
                b.call(pack_a, [kc, mc, _at(b, A, b.add(b.mul(ic, lda), pc)), lda, ap])
                with _loop(b, 0, nc, NR, name="jr") as jr:
                    nr = _imin(b, _i64(NR), b.sub(nc, jr))
                    col = b.add(jc, jr)
                    bpanel = _at(b, bp, b.mul(jr, kc))
                    with _loop(b, 0, mc, MR, name="ir") as ir_:
                        row = b.add(ic, ir_)
                        ctile = _at(b, C, b.add(b.mul(row, ldc), col))
                        mr = _imin(b, _i64(MR), b.sub(mc, ir_))
                        b.call(ukernel, [kc, _at(b, ap, b.mul(ir_, kc)), bpanel, ctile, ldc, mr, nr,
                                               accumulate, last, row, col, ctx])
    b.ret_void()
    return fn


def _balanced_kc(b: ir.IRBuilder, K: ir.Value, kc: int) -> ir.Value:
    """The K block length: K split into ceil(K / kc) equal blocks (rounded up to 8, at most ``kc``), so
    K = 784 runs as 392 + 392 rather than 384 + 384 + 16 (a last sliver block reloads and stores every
    C tile and repacks for almost no work)."""
    k1 = _imax(b, K, _i64(1))
    step = _ceil_div(b, k1, _ceil_div(b, k1, kc))
    return _imin(b, b.and_(b.add(step, _i64(7)), _i64(-8)), _i64(kc))


def _emit_partition(b: ir.IRBuilder, nt: ir.Value, tiles_m: ir.Value, tiles_n: ir.Value, MR: int) -> ir.Value:
    """Choose ``tm`` (threads along M; ``tn = nt / tm`` along N) minimizing the largest rectangle's
    work plus its packing: ``h*w + 8*(h + w)`` with h, w the rectangle's padded height and width."""
    best_tm = b.alloca(_I64, name="best_tm")
    best_cost = b.alloca(_I64, name="best_cost")
    b.store(_i64(1), best_tm)
    b.store(_i64(2**62), best_cost)
    with _loop(b, 1, b.add(nt, _i64(1)), name="tm") as tm:
        with b.if_then(b.icmp_signed("==", b.srem(nt, tm), _i64(0))):
            h = b.mul(_ceil_div(b, tiles_m, tm), _i64(MR))
            w = b.mul(_ceil_div(b, tiles_n, b.sdiv(nt, tm)), _i64(NR))
            cost = b.add(b.mul(h, w), b.mul(_i64(8), b.add(h, w)))
            with b.if_then(b.icmp_signed("<", cost, b.load(best_cost))):
                b.store(cost, best_cost)
                b.store(tm, best_tm)
    return b.load(best_tm)


def _split(b: ir.IRBuilder, part: ir.Value, parts: ir.Value, tiles: ir.Value, tile: int,
           extent: ir.Value) -> tuple[ir.Value, ir.Value]:
    """Bounds of share ``part`` of ``parts`` when ``tiles`` tiles of ``tile`` elements are split evenly."""
    lo = b.mul(b.sdiv(b.mul(part, tiles), parts), _i64(tile))
    hi = b.mul(b.sdiv(b.mul(b.add(part, _i64(1)), tiles), parts), _i64(tile))
    return _imin(b, lo, extent), _imin(b, hi, extent)


def _alloc_floats(b: ir.IRBuilder, count: ir.Value) -> ir.Value:
    """64-byte aligned malloc of ``count`` floats plus 16 floats of slack (pack_a's overlapping stores)."""
    aligned_alloc = _declare(b.module, "aligned_alloc", _I8PTR, [_I64, _I64])
    nbytes = b.mul(b.add(count, _i64(16)), _i64(4))
    nbytes = b.and_(b.add(nbytes, _i64(63)), _i64(-64))
    return b.call(aligned_alloc, [_i64(64), nbytes])


def _build_worker(module: ir.Module, name: str, cfg: GemmConfig, rect: ir.Function, MR: int,
                  image: bool = False) -> ir.Function:
    """``worker(void *ctx)``: the function libgomp runs on every thread (also called directly when serial).

    Each thread finds its rectangle of C, allocates packing buffers sized for it, and runs ``rect``.
    """
    fn, b = _new_function(module, name, ir.VoidType(), [("data", _I8PTR)])
    ctx = b.bitcast(fn.args[0], _CTX_PTR)
    nt = b.sext(b.call(_declare(module, "omp_get_num_threads", _I32, []), []), _I64)
    tid = b.sext(b.call(_declare(module, "omp_get_thread_num", _I32, []), []), _I64)
    # called directly (serial): the whole of C, even inside another parallel region (a conv kernel's
    # loop over images), where libgomp's team size and thread number are the outer team's
    serial = b.icmp_signed("<=", _ctx_get(b, ctx, "num_threads"), _I32(1))
    nt, tid = b.select(serial, _i64(1), nt), b.select(serial, _i64(0), tid)
    M, N, K = (_ctx_get(b, ctx, n) for n in ("M", "N", "K"))
    tiles_m, tiles_n = _ceil_div(b, M, MR), _ceil_div(b, N, NR)
    tm = _emit_partition(b, nt, tiles_m, tiles_n, MR)
    tn = b.sdiv(nt, tm)
    m0, m1 = _split(b, b.sdiv(tid, tn), tm, tiles_m, MR, M)
    n0, n1 = _split(b, b.srem(tid, tn), tn, tiles_n, NR, N)
    empty = b.or_(b.icmp_signed(">=", m0, m1), b.icmp_signed(">=", n0, n1))
    with b.if_then(empty):
        b.ret_void()
    kmax = _imin(b, _i64(cfg.kc), _imax(b, K, _i64(1)))
    a_rows = _imin(b, _i64(cfg.mc), b.mul(_ceil_div(b, b.sub(m1, m0), MR), _i64(MR)))
    b_cols = _imin(b, _i64(cfg.nc), b.mul(_ceil_div(b, b.sub(n1, n0), NR), _i64(NR)))
    ap = _alloc_floats(b, b.mul(a_rows, kmax))
    bp = _alloc_floats(b, b.mul(b_cols, kmax))
    free = _declare(module, "free", ir.VoidType(), [_I8PTR])
    null = ir.Constant(_I8PTR, None)
    # int32 column offsets (+16 of slack), then one int32 per panel (gemm_image.py's panel kinds)
    tp = _alloc_floats(b, b.add(b_cols, b_cols)) if image else null
    failed = b.or_(b.icmp_unsigned("==", ap, null), b.icmp_unsigned("==", bp, null))
    if image:
        failed = b.or_(failed, b.icmp_unsigned("==", tp, null))
    with b.if_else(failed, likely=False) as (then, otherwise):
        with then:
            b.store_atomic(_I32(1), _ctx_ptr(b, ctx, "status"), "monotonic", 4)
        with otherwise:
            b.call(rect, [ctx, m0, m1, n0, n1, b.bitcast(ap, _FPTR), b.bitcast(bp, _FPTR),
                          b.bitcast(tp, _I32.as_pointer())])
    b.call(free, [ap])
    b.call(free, [bp])
    if image:
        b.call(free, [tp])
    b.ret_void()
    return fn


def gemm_ctypes_argtypes() -> list[Any]:
    """The ctypes argument types of a generated GEMM entry function (its return type is ``c_int32``)."""
    conv = {"i64": ctypes.c_int64, "i32": ctypes.c_int32, "float*": ctypes.c_void_p}
    return [conv[str(t)] for _, t in _ENTRY_ARGS]


def _build_entry(module: ir.Module, name: str, cfg: GemmConfig, worker: ir.Function, MR: int,
                 small_m: Epilogue | None = None, image: bool = False) -> ir.Function:
    """The exported function; with ``small_m`` (trans_b variants) small M runs ``gemv.py``'s path;
    ``image``: B is an image, its geometry the extra ``IMAGE_ARGS`` after the common arguments."""
    params = [*_ENTRY_ARGS, *(IMAGE_ARGS if image else ())]
    fn, b = _new_function(module, name, _I32, params, internal=False)
    args = dict(zip((n for n, _ in params), fn.args))
    ctx = b.alloca(_CTX_TYPE, name="ctx")
    for field, ty in _CTX_FIELDS:
        b.store(args[field] if field in args else ir.Constant(ty, 0), _ctx_ptr(b, ctx, field))
    M, N, K = args["M"], args["N"], args["K"]
    with b.if_then(b.or_(b.icmp_signed("<=", M, _i64(0)), b.icmp_signed("<=", N, _i64(0)))):
        b.ret(_I32(0))
    if small_m is not None:
        from ember.compiler.codegen.llvm.gemv import emit_small_m_dispatch

        emit_small_m_dispatch(b, name, small_m, ctx, args["num_threads"], cfg.dot_max_m)
    tiles = b.mul(_ceil_div(b, M, MR), _ceil_div(b, N, NR))
    work = b.mul(b.mul(M, N), _imax(b, K, _i64(1)))
    nt = _imin(b, _imax(b, b.sext(args["num_threads"], _I64), _i64(1)), tiles)
    nt = b.select(b.icmp_signed("<", work, _i64(cfg.serial_work)), _i64(1), nt)
    data = b.bitcast(ctx, _I8PTR)
    with b.if_else(b.icmp_signed(">", nt, _i64(1))) as (parallel, serial):
        with parallel:
            gomp = _declare(module, "GOMP_parallel", ir.VoidType(),
                            [worker.type, _I8PTR, _I32, _I32])
            b.call(gomp, [worker, data, b.trunc(nt, _I32), _I32(0)])
        with serial:
            b.store(_I32(1), _ctx_ptr(b, ctx, "num_threads"))  # the worker then takes all of C
            b.call(worker, [data])
    b.ret(b.load(_ctx_ptr(b, ctx, "status")))
    return fn


def emit_gemm(module: ir.Module, name: str, epilogue: Epilogue | None = None, trans_b: bool = False,
              config: GemmConfig | None = None, b_image: bool = False) -> ir.Function:
    """Emit the GEMM entry function ``name`` (and its internal helpers ``name.*``) into ``module``.

    The signature is documented in this module's docstring and is the same for every epilogue and
    ``trans_b``; the epilogue and layout only change what the code reads. ``b_image``: ``B`` points at an
    image whose im2col matrix is the operand (``gemm_image.py``), and the geometry (``IMAGE_ARGS``)
    follows ``num_threads``. Returns the entry function.
    """
    if b_image and trans_b:
        raise CompileError("an implicit-GEMM B (b_image) cannot be transposed")
    epi = epilogue or Epilogue()
    cfg = config or GemmConfig()
    if name in module.globals:
        raise CompileError(f"cannot emit GEMM {name!r}: the module already defines that name")
    pack_b = build_pack_b_image(module, f"{name}.pack_b_image", _CTX_PTR, _ctx_get) if b_image \
        else _build_pack_b(module, f"{name}.pack_b", trans_b)
    tile = register_tile(cfg.lanes)
    rect = _build_rect(module, f"{name}.rect", cfg, trans_b, _build_pack_a(module, f"{name}.pack_a", tile.mr),
                       pack_b, _build_microkernel(module, f"{name}.ukernel", epi, tile), tile.mr, b_image)
    worker = _build_worker(module, f"{name}.worker", cfg, rect, tile.mr, b_image)
    return _build_entry(module, name, cfg, worker, tile.mr, epi if trans_b else None, b_image)


# ---------------------------------------------------------------------------------------------------
# A numpy-facing convenience (tests, benchmarks, eager fallbacks)

_cache: dict[tuple[Epilogue, bool, GemmConfig], tuple[Any, Any]] = {}
_cache_lock = threading.Lock()


def _compiled(epi: Epilogue, trans_b: bool, cfg: GemmConfig) -> Any:
    """The ctypes entry point for one variant, compiled once per process."""
    key = (epi, trans_b, cfg)
    with _cache_lock:
        hit = _cache.get(key)
        if hit is None:
            from ember.compiler.codegen.llvm.jit import JitModule

            module = ir.Module(name="ember_gemm")
            emit_gemm(module, "ember_gemm", epi, trans_b, cfg)
            jm = JitModule(module, name=f"gemm_{'bt' if trans_b else 'bn'}_{epi.tag}")
            hit = (jm, jm.cfunc("ember_gemm", ctypes.c_int32, *gemm_ctypes_argtypes()))
            _cache[key] = hit
        return hit[1]


def _check_matrix(x: np.ndarray, what: str, shape: tuple[int, int] | None = None) -> int:
    """Validate a row-major fp32 matrix operand; returns its leading dimension in elements."""
    if not isinstance(x, np.ndarray) or x.dtype != np.float32 or x.ndim != 2:
        desc = f"{type(x).__name__} {getattr(x, 'dtype', '')} with {getattr(x, 'ndim', '?')} dims"
        raise ArgumentError(f"gemm: {what} must be a 2-D float32 numpy array, got {desc}")
    if shape is not None and x.shape != shape:
        raise ShapeError(f"gemm: {what} has shape {x.shape}, expected {shape}")
    rows, cols = x.shape
    if x.size == 0:
        return max(cols, 1)
    if (cols > 1 and x.strides[1] != 4) or x.strides[0] % 4 or (rows > 1 and x.strides[0] < 4 * cols):
        raise ArgumentError(f"gemm: {what} must be row-major with unit column stride (strides {x.strides})")
    return max(x.strides[0] // 4, cols, 1) if rows > 1 else max(cols, 1)


def _epilogue_operand(x: np.ndarray | None, what: str, needed: bool) -> bool:
    """Refuse an operand the variant does not use, or a missing one it needs; True when it is used."""
    if needed and x is None:
        raise ArgumentError(f"gemm: this variant's epilogue needs {what}")
    if not needed and x is not None:
        raise ArgumentError(f"gemm: {what} was given but this variant's epilogue does not use it")
    return needed


def _check_vector(x: np.ndarray | None, what: str, length: int, needed: bool) -> int | None:
    if not _epilogue_operand(x, what, needed):
        return None
    if not isinstance(x, np.ndarray) or x.dtype != np.float32 or x.shape != (length,) \
            or not x.flags.c_contiguous:
        raise ShapeError(f"gemm: {what} must be a contiguous float32 vector of length {length}, "
                         f"got {getattr(x, 'dtype', type(x).__name__)} {getattr(x, 'shape', '')}")
    return x.ctypes.data


def gemm_callable(epilogue: Epilogue | None = None, trans_b: bool = False, config: GemmConfig | None = None,
                  threads: int | None = None) -> Callable[..., np.ndarray]:
    """A Python function over numpy arrays running the generated GEMM variant (compiled once, cached).

    The result is ``f(a, b, *, col_scale=None, col_bias=None, row_scale=None, row_bias=None,
    residual=None, out=None) -> out`` with ``a`` of shape [M, K], ``b`` [K, N] (or [N, K] when
    ``trans_b``), all float32 and row-major (row strides may exceed the width). Operands the epilogue
    uses are required, others refused, so a mismatch between variant and call is caught early.
    ``threads=None`` uses ``ember.runtime.settings.num_threads()`` at each call.
    """
    epi = epilogue or Epilogue()
    cfg = config or GemmConfig()
    cfunc = _compiled(epi, trans_b, cfg)

    def run(a: np.ndarray, b: np.ndarray, *, col_scale: np.ndarray | None = None,
            col_bias: np.ndarray | None = None, row_scale: np.ndarray | None = None,
            row_bias: np.ndarray | None = None, residual: np.ndarray | None = None,
            out: np.ndarray | None = None) -> np.ndarray:
        lda = _check_matrix(a, "a")
        ldb = _check_matrix(b, "b")
        M, K = a.shape
        N, Kb = b.shape if trans_b else b.shape[::-1]
        if Kb != K:
            raise ShapeError(f"gemm: a is {a.shape} but b is {b.shape}{' (transposed)' if trans_b else ''}; "
                             f"inner dimensions {K} and {Kb} differ")
        if out is None:
            out = np.empty((M, N), dtype=np.float32)
        ldc = _check_matrix(out, "out", (M, N))
        vectors = [
            _check_vector(col_scale, "col_scale", N, epi.col_scale),
            _check_vector(col_bias, "col_bias", N, epi.col_bias),
            _check_vector(row_scale, "row_scale", M, epi.row_scale),
            _check_vector(row_bias, "row_bias", M, epi.row_bias),
        ]
        r_ptr, ldr = None, 0
        if _epilogue_operand(residual, "residual", epi.residual):
            ldr, r_ptr = _check_matrix(residual, "residual", (M, N)), residual.ctypes.data
        inputs = [x for x in (a, b, residual) if x is not None]
        if not out.flags.writeable or any(np.may_share_memory(out, x) for x in inputs):
            raise ArgumentError("gemm: out must be writable and must not overlap a, b or residual")
        if threads is None:
            from ember.runtime import settings

            nthreads = settings.num_threads()
        else:
            nthreads = threads
        status = cfunc(M, N, K, a.ctypes.data, lda, b.ctypes.data, ldb, out.ctypes.data, ldc, *vectors,
                       r_ptr, ldr, nthreads)
        if status:
            raise MemoryError(f"gemm {M}x{N}x{K}: could not allocate packing buffers")
        return out

    return run
