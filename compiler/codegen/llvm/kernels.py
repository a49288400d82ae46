"""Kernel IR -> LLVM IR: one internal function per kernel.

Generated function (C view)::

    int32_t ember.k.<kernel>(T0 *buf0, T1 *buf1, ..., int32_t num_threads);  /* 0, or 1: GEMM failed */

How the loop kinds are generated:

* ``VECTORIZED``: the body runs 8 lanes at a time (``<8 x T>`` values). The remainder is one masked
  vector step (masked loads and stores; a gather re-reads the last real lane), or a scalar loop when the
  body reduces across lanes into an outer local. A load whose offset moves by 1 per iteration becomes a
  vector load, one that does not move a scalar load (broadcast on use), one that moves by 2-4 a wide
  masked load and a deinterleaving shuffle (pooling windows, strided rows), anything else a gather of 8
  scalar loads. A ``Reduce`` into a local keeps a
  vector of partial results that is folded into the local after the loop (a tree of shuffles).
* ``PARALLEL`` (outermost loops): the body is outlined into ``<kernel>.par<n>(void *ctx)``, the
  kernel's buffer pointers go into a stack struct, and ``GOMP_parallel`` runs the outlined function
  on ``num_threads`` libgomp threads, each taking a contiguous chunk of iterations. With one thread
  the outlined function is called directly (it then sees one thread and runs every iteration).
* Everything else runs as a plain loop; LLVM's O3 pipeline unrolls and may vectorize it further.

Every float operation carries the ``contract`` flag, so multiply-adds become FMAs.
"""

from __future__ import annotations

from typing import Any

import llvmlite.ir as ir
from ember.compiler.codegen.llvm import exprs as X
from ember.compiler.codegen.llvm.irutil import I8, I32, I64, declare, i64, imin, loop, splat, type_suffix
from ember.compiler.dtypes import DType, bool_
from ember.compiler.kernel.ir import (
    COMPARE_OPS,
    Alloc,
    Assign,
    Barrier,
    Binary,
    Cast,
    Const,
    Declare,
    Expr,
    Gemm,
    Kernel,
    Load,
    Local,
    Loop,
    LoopKind,
    Reduce,
    Select,
    Stmt,
    Store,
    Unary,
    Var,
    linear_coeff,
)
from ember.runtime.errors import CompileError

__all__ = ["KernelCodegen", "WIDTH", "emit_kernel"]

WIDTH = 8  # lanes of a vectorized loop: 8 x float32 fills an AVX2 register
MAX_DEINTERLEAVE = 4  # strided vector loads up to this stride are one wide load and a shuffle
_I8PTR = I8.as_pointer()


def _has_local(e: Expr) -> bool:
    """Whether ``e`` reads a local. Visits each shared subexpression once: expressions are DAGs (a
    Philox round reads each product twice), whose unfolded trees can be far larger than the DAG."""
    stack, seen = [e], set()
    while stack:
        x = stack.pop()
        if id(x) in seen:
            continue
        seen.add(id(x))
        if isinstance(x, Local):
            return True
        if isinstance(x, (Unary, Cast)):
            stack.append(x.x)
        elif isinstance(x, Binary):
            stack += (x.a, x.b)
        elif isinstance(x, Select):
            stack += (x.cond, x.a, x.b)
        elif isinstance(x, Load):
            stack.append(x.index)
    return False


class KernelCodegen:
    """Emits one kernel. ``shared`` is per LLVM module (GEMM variants emitted once per module)."""

    def __init__(self, module: ir.Module, kernel: Kernel, shared: dict[str, Any] | None = None) -> None:
        self.module = module
        self.kernel = kernel
        self.shared = shared if shared is not None else {}
        self.dtypes = {p.name: p.dtype for p in kernel.params}
        self.ptrs: dict[str, ir.Value] = {}
        self.locals: dict[str, tuple[ir.Value, DType]] = {}
        self.vec_accs: dict[str, ir.Value] = {}   # local -> vector alloca, inside a vectorized loop
        self.vlocals: dict[str, tuple[ir.Value, DType]] = {}  # locals declared inside a vectorized loop
        self.env: dict[str, ir.Value] = {}
        self.vec: tuple[str, ir.Value] | None = None  # (loop var, i64 base of the 8 lanes)
        self.tail: int | None = None  # inside a masked tail iteration: how many lanes are real
        self.cache: dict[Expr, tuple[ir.Value, bool]] = {}
        self.nthreads: ir.Value | None = None
        self.status: ir.Value | None = None
        self.n_outlined = 0

    # ------------------------------------------------------------------ function
    def emit_function(self) -> ir.Function:
        k = self.kernel
        args = [X.mem_type(p.dtype).as_pointer() for p in k.params] + [I32]
        # prefixed: a kernel named like a libm function ("log", "tanhf") must not shadow it
        fn = ir.Function(self.module, ir.FunctionType(I32, args), f"ember.k.{k.name}")
        fn.linkage = "internal"
        fn.attributes.add("nounwind")
        for arg, p in zip(fn.args, k.params):
            arg.name = p.name
        fn.args[-1].name = "num_threads"
        self.fn = fn
        self.b = ir.IRBuilder(fn.append_basic_block("entry"))
        self.entry_block = fn.entry_basic_block
        self.ptrs = {p.name: a for p, a in zip(k.params, fn.args)}
        self.nthreads = fn.args[-1]
        self.status = self.b.alloca(I32, name="status")
        self.b.store(I32(0), self.status)
        self.stmts(k.body)
        self.b.ret(self.b.load(self.status))
        return fn

    def _alloca(self, ty: ir.Type, name: str) -> ir.Value:
        """An alloca in the function's entry block (so mem2reg turns it into registers)."""
        saved = self.b.block
        self.b.position_at_start(self.fn.entry_basic_block)
        slot = self.b.alloca(ty, name=name)
        self.b.position_at_end(saved)
        return slot

    # ------------------------------------------------------------------ statements
    def stmts(self, body: tuple[Stmt, ...]) -> None:
        for s in body:
            self.stmt(s)

    def stmt(self, s: Stmt) -> None:
        if isinstance(s, Loop):
            self.loop(s)
        elif isinstance(s, Store):
            self.store(s)
        elif isinstance(s, Declare):
            if self.vec is not None:  # one accumulator per lane
                slot = self._alloca(ir.VectorType(X.reg_type(s.dtype), WIDTH), s.name + ".lanes")
                self.b.store(self.vector(s.init, s.dtype), slot)
                self.vlocals[s.name] = (slot, s.dtype)
            else:
                slot = self._alloca(X.reg_type(s.dtype), s.name)
                self.b.store(self.scalar(s.init, s.dtype), slot)
                self.locals[s.name] = (slot, s.dtype)
        elif isinstance(s, Reduce):
            self.reduce(s)
        elif isinstance(s, Assign):
            if self.vec is not None and s.name in self.vlocals:
                slot, dt = self.vlocals[s.name]
                self.b.store(self.vector(s.value, dt), slot)
            elif self.vec is not None:
                raise CompileError(f"kernel {self.kernel.name}: assignment to {s.name} in a vectorized loop")
            else:
                slot, dt = self.locals[s.name]
                self.b.store(self.scalar(s.value, dt), slot)
        elif isinstance(s, Gemm):
            self.gemm(s)
        elif isinstance(s, Barrier):
            pass
        elif isinstance(s, Alloc):
            buf = s.buffer
            slot = self._alloca(ir.ArrayType(X.mem_type(buf.dtype), max(buf.numel, 1)), buf.name)
            self.ptrs[buf.name] = self.b.bitcast(slot, X.mem_type(buf.dtype).as_pointer())
            self.dtypes[buf.name] = buf.dtype
        else:
            raise CompileError(f"kernel {self.kernel.name}: no LLVM code generator for {type(s).__name__}")

    def loop(self, s: Loop) -> None:
        if s.kind is LoopKind.PARALLEL and self.vec is None and not self.env:
            self.parallel(s)
        elif s.kind is LoopKind.VECTORIZED and self.vec is None and (
                s.extent >= WIDTH or s.extent >= MIN_MASKED and _maskable(s)):
            self.vectorized(s)
        else:
            self.serial(s, 0, s.extent)

    def serial(self, s: Loop, start: Any, stop: Any) -> None:
        outer = self.cache
        with loop(self.b, start, stop, name=s.var) as iv:
            self.cache = dict(outer)
            self.env[s.var] = iv
            self.stmts(s.body)
        del self.env[s.var]
        self.cache = outer

    def vectorized(self, s: Loop) -> None:
        main = s.extent - s.extent % WIDTH
        reduces = _carried_reduces(s)
        for r in reduces:
            slot, dt = self.locals[r.name]
            vty = ir.VectorType(X.reg_type(dt), WIDTH)
            acc = self._alloca(vty, r.name + ".vec")
            self.b.store(splat(self.b, self._identity(r.op, dt), vty), acc)
            self.vec_accs[r.name] = acc
        outer = self.cache
        with loop(self.b, 0, main, WIDTH, name=s.var + ".v") as base:
            self.cache = dict(outer)
            self.vec = (s.var, base)
            self.stmts(s.body)
            self.vec = None
            self.vlocals = {}
        self.cache = outer
        for r in reduces:
            slot, dt = self.locals[r.name]
            total = self._horizontal(r.op, self.b.load(self.vec_accs.pop(r.name)), dt)
            self.b.store(self._combine(r.op, self.b.load(slot), total, dt), slot)
        if main < s.extent and _maskable(s):
            self.masked_tail(s, main)
        elif main < s.extent:
            self.serial(s, main, s.extent)

    def masked_tail(self, s: Loop, start: int) -> None:
        """The last ``extent % 8`` iterations as one vector step whose lanes past the end are masked: loads
        read only real lanes (masked loads, or lane ``rem - 1`` again for a gather) and stores write only
        real lanes, so nothing outside the loop's range is touched. A row of 14 then costs two vector
        steps instead of one and six scalar ones."""
        outer = self.cache
        self.cache = dict(outer)
        self.vec, self.tail = (s.var, i64(start)), s.extent - start
        try:
            self.stmts(s.body)
        finally:
            self.vec, self.tail, self.vlocals, self.cache = None, None, {}, outer

    def _identity(self, op: str, dt: DType) -> ir.Value:
        from ember.compiler.kernel.lower import reduce_identity

        return X.const(reduce_identity(op, dt).value, dt)

    def _combine(self, op: str, a: ir.Value, b: ir.Value, dt: DType) -> ir.Value:
        return X.binary(self.b, op, a, b, dt)

    def _horizontal(self, op: str, v: ir.Value, dt: DType) -> ir.Value:
        """Fold the lanes of ``v`` with ``op`` by halving shuffles."""
        n = v.type.count
        while n > 1:
            h = n // 2
            undef = ir.Constant(v.type, ir.Undefined)
            lo = self.b.shuffle_vector(v, undef, ir.Constant(ir.VectorType(I32, h), list(range(h))))
            hi = self.b.shuffle_vector(v, undef, ir.Constant(ir.VectorType(I32, h), list(range(h, n))))
            v = self._combine(op, lo, hi, dt)
            n = h
        return self.b.extract_element(v, I32(0))

    def reduce(self, s: Reduce) -> None:
        if self.vec is not None and s.name in self.vlocals:
            slot, dt = self.vlocals[s.name]
            self.b.store(self._combine(s.op, self.b.load(slot), self.vector(s.value, dt), dt), slot)
            return
        slot, dt = self.locals[s.name]
        if self.vec is not None and s.name in self.vec_accs:
            acc = self.vec_accs[s.name]
            value = self.vector(s.value, dt)
            self.b.store(self._combine(s.op, self.b.load(acc), value, dt), acc)
            return
        if self.vec is not None:
            raise CompileError(f"kernel {self.kernel.name}: reduction into {s.name} inside a vectorized "
                               "loop it is not declared for")
        self.b.store(self._combine(s.op, self.b.load(slot), self.scalar(s.value, dt), dt), slot)

    def store(self, s: Store) -> None:
        dt = self.dtypes[s.buffer]
        base = self.ptrs[s.buffer]
        mty = X.mem_type(dt)
        if self.vec is None:
            value = self._to_mem(self.scalar(s.value, dt), dt)
            self.b.store(value, self.b.gep(base, [self.scalar(s.index, None)], inbounds=True))
            return
        var, vbase = self.vec
        if linear_coeff(s.index, var) == 1:
            value = self._to_mem(self.vector(s.value, dt), dt)
            ptr = self.b.gep(base, [self._lane_scalar(s.index, var, vbase)], inbounds=True)
            vptr = self.b.bitcast(ptr, ir.VectorType(mty, WIDTH).as_pointer())
            if self.tail is None:
                self.b.store(value, vptr, align=1)
                return
            mask_ty = ir.VectorType(ir.IntType(1), WIDTH)
            fn = declare(self.b.module, f"llvm.masked.store.v{WIDTH}{type_suffix(mty)}.p0", ir.VoidType(),
                         [value.type, vptr.type, I32, mask_ty])
            self.b.call(fn, [value, vptr, I32(1), ir.Constant(mask_ty, [i < self.tail for i in range(WIDTH)])])
            return
        value, is_vec = self.emit(s.value)
        value = X.cast(self.b, value, s.value.dtype, dt)
        for lane in range(WIDTH if self.tail is None else self.tail):
            iv = self.b.add(vbase, i64(lane))
            scalar = self._to_mem(self.b.extract_element(value, I32(lane)) if is_vec else value, dt)
            self.b.store(scalar, self.b.gep(base, [self._lane_scalar(s.index, var, iv)], inbounds=True))

    def _to_mem(self, v: ir.Value, dt: DType) -> ir.Value:
        """Register value -> memory representation (bool as i8, float16 as half)."""
        if dt is bool_:
            ty = ir.VectorType(I8, v.type.count) if isinstance(v.type, ir.VectorType) else I8
            return self.b.zext(v, ty)
        if dt.name == "float16":
            ty = ir.VectorType(ir.HalfType(), v.type.count) if isinstance(v.type, ir.VectorType) \
                else ir.HalfType()
            return self.b.fptrunc(v, ty)
        return v

    def _from_mem(self, v: ir.Value, dt: DType) -> ir.Value:
        if dt is bool_:
            return self.b.icmp_unsigned("!=", v, X.splat_const(v.type, 0))
        if dt.name == "float16":
            ty = ir.VectorType(ir.FloatType(), v.type.count) if isinstance(v.type, ir.VectorType) \
                else ir.FloatType()
            return self.b.fpext(v, ty)
        return v

    # ------------------------------------------------------------------ parallel loops
    def parallel(self, s: Loop) -> None:
        """Outline the loop body; run it on libgomp threads (see the module docstring)."""
        self.n_outlined += 1
        params = list(self.ptrs.items())
        ctx_ty = ir.LiteralStructType([p.type for _, p in params])
        ctx = self._alloca(ctx_ty, "ctx")
        for i, (_, p) in enumerate(params):
            self.b.store(p, self.b.gep(ctx, [I32(0), I32(i)], inbounds=True))
        worker = ir.Function(self.module, ir.FunctionType(ir.VoidType(), [_I8PTR]),
                             f"ember.k.{self.kernel.name}.par{self.n_outlined}")
        worker.linkage = "internal"
        worker.attributes.add("nounwind")
        saved = (self.fn, self.b, self.ptrs, self.cache, self.status, self.nthreads)
        self.nthreads = I32(1)  # inside a worker: a nested parallel loop or GEMM runs on this thread
        self.fn = worker
        self.b = ir.IRBuilder(worker.append_basic_block("entry"))
        wctx = self.b.bitcast(worker.args[0], ctx_ty.as_pointer())
        self.ptrs = {name: self.b.load(self.b.gep(wctx, [I32(0), I32(i)], inbounds=True), name=name)
                     for i, (name, _) in enumerate(params)}
        self.cache = {}
        self.status = self.b.alloca(I32, name="status")
        nt = self.b.sext(self.b.call(declare(self.module, "omp_get_num_threads", I32, []), []), I64)
        tid = self.b.sext(self.b.call(declare(self.module, "omp_get_thread_num", I32, []), []), I64)
        chunk = self.b.sdiv(self.b.add(i64(s.extent), self.b.sub(nt, i64(1))), nt)
        lo = imin(self.b, self.b.mul(tid, chunk), i64(s.extent))
        hi = imin(self.b, self.b.add(lo, chunk), i64(s.extent))
        inner = Loop(s.var, s.extent, s.body, LoopKind.SERIAL)
        self.serial(inner, lo, hi)
        self.b.ret_void()
        self.fn, self.b, self.ptrs, self.cache, self.status, self.nthreads = saved
        nthreads = self.b.select(self.b.icmp_signed(">", self.nthreads, I32(s.extent)), I32(s.extent),
                                 self.nthreads)
        data = self.b.bitcast(ctx, _I8PTR)
        with self.b.if_else(self.b.icmp_signed(">", nthreads, I32(1))) as (par, ser):
            with par:
                gomp = declare(self.module, "GOMP_parallel", ir.VoidType(), [worker.type, _I8PTR, I32, I32])
                self.b.call(gomp, [worker, data, nthreads, I32(0)])
            with ser:
                self.b.call(worker, [data])

    # ------------------------------------------------------------------ GEMM template calls
    def gemm(self, s: Gemm) -> None:
        from ember.compiler.codegen.llvm.conv_direct import direct_pays, emit_direct_conv
        from ember.compiler.codegen.llvm.gemm import emit_gemm

        image = s.b_image is not None
        direct = image and direct_pays(s.b_image.transposed)
        key = ("gemm", s.epilogue, s.trans_b, image, direct)
        fn = self.shared.get(key)
        if fn is None:
            if direct:
                fn = emit_direct_conv(self.module, f"ember_conv_direct_{s.epilogue.tag}", s.epilogue)
            else:
                form = "im" if image else "bt" if s.trans_b else "bn"
                fn = emit_gemm(self.module, f"ember_gemm_{form}_{s.epilogue.tag}", s.epilogue, s.trans_b,
                               b_image=image)
            fn.linkage = "internal"
            self.shared[key] = fn
        fptr = ir.FloatType().as_pointer()
        null = ir.Constant(fptr, None)

        def at(buf: str, off: Expr) -> ir.Value:
            if self.dtypes[buf].name != "float32":
                raise CompileError(f"kernel {self.kernel.name}: the GEMM template needs float32, "
                                   f"{buf} is {self.dtypes[buf].name}")
            return self.b.gep(self.ptrs[buf], [self.scalar(off, None)], inbounds=True)

        ops = {name: at(buf, off) for name, buf, off in s.operands}
        args = [i64(s.m), i64(s.n), i64(s.k), at(s.a, s.a_off), i64(s.lda), at(s.b, s.b_off), i64(s.ldb),
                at(s.c, s.c_off), i64(s.ldc)]
        args += [ops.get(n, null) for n in ("col_scale", "col_bias", "row_scale", "row_bias", "residual")]
        args += [i64(s.ldr), self.nthreads]
        if image:
            from ember.compiler.codegen.llvm.gemm_image import image_args

            args += [i64(v) for v in image_args(s.b_image)]
        status = self.b.call(fn, args)
        self.b.store(self.b.or_(self.b.load(self.status), status), self.status)

    # ------------------------------------------------------------------ expressions
    def scalar(self, e: Expr, dt: DType | None) -> ir.Value:
        """``e`` as a scalar (outside vector mode), converted to ``dt`` when given."""
        v, is_vec = self.emit(e)
        if is_vec:
            raise CompileError(f"kernel {self.kernel.name}: vector value where a scalar is needed")
        return v if dt is None else X.cast(self.b, v, e.dtype, dt)

    def vector(self, e: Expr, dt: DType) -> ir.Value:
        """``e`` as a vector of WIDTH lanes of ``dt`` (uniform values are broadcast)."""
        v, is_vec = self.emit(e)
        v = X.cast(self.b, v, e.dtype, dt)
        return v if is_vec else splat(self.b, v, ir.VectorType(v.type, WIDTH))

    def _lane_scalar(self, e: Expr, var: str, iv: ir.Value) -> ir.Value:
        """``e`` evaluated as a scalar with loop variable ``var`` bound to ``iv`` (one lane)."""
        saved_vec, saved_cache, saved_env = self.vec, self.cache, self.env.get(var)
        self.vec, self.cache = None, {}
        self.env[var] = iv
        try:
            return self.scalar(e, None)
        finally:
            self.vec, self.cache = saved_vec, saved_cache
            if saved_env is None:
                del self.env[var]
            else:
                self.env[var] = saved_env

    def emit(self, e: Expr) -> tuple[ir.Value, bool]:
        """``(value, is_vector)``; memoized on the expression while it stays valid."""
        hit = self.cache.get(e)
        if hit is not None:
            return hit
        out = self._emit(e)
        if not _has_local(e):
            self.cache[e] = out
        return out

    def _unify(self, *vals: tuple[ir.Value, bool]) -> tuple[list[ir.Value], bool]:
        if not any(v for _, v in vals):
            return [x for x, _ in vals], False
        return [x if v else splat(self.b, x, ir.VectorType(x.type, WIDTH)) for x, v in vals], True

    def _emit(self, e: Expr) -> tuple[ir.Value, bool]:
        b = self.b
        if isinstance(e, Const):
            return X.const(e.value, e.dtype), False
        if isinstance(e, Var):
            if self.vec is not None and e.name == self.vec[0]:
                lanes = ir.Constant(ir.VectorType(I64, WIDTH), list(range(WIDTH)))
                return b.add(splat(b, self.vec[1], lanes.type), lanes), True
            if e.name not in self.env:
                raise CompileError(f"kernel {self.kernel.name}: loop variable {e.name} used outside its loop")
            return self.env[e.name], False
        if isinstance(e, Local):
            if self.vec is not None and e.name in self.vlocals:
                return b.load(self.vlocals[e.name][0]), True
            return b.load(self.locals[e.name][0]), False
        if isinstance(e, Load):
            return self._load(e)
        if isinstance(e, Unary):
            x, is_vec = self.emit(e.x)
            return X.unary(b, e.op, x, e.x.dtype, e.dtype), is_vec
        if isinstance(e, Binary):
            (x, y), is_vec = self._unify(self.emit(e.a), self.emit(e.b))
            if e.op in COMPARE_OPS:
                return X.compare(b, e.op, x, y, e.a.dtype), is_vec
            return X.binary(b, e.op, x, y, e.dtype), is_vec
        if isinstance(e, Select):
            (c, x, y), is_vec = self._unify(self.emit(e.cond), self.emit(e.a), self.emit(e.b))
            return X.select(b, c, x, y), is_vec
        if isinstance(e, Cast):
            x, is_vec = self.emit(e.x)
            return X.cast(b, x, e.x.dtype, e.dtype), is_vec
        raise CompileError(f"kernel {self.kernel.name}: no LLVM code generator for {type(e).__name__}")

    def _strided_load(self, base: ir.Value, mty: ir.Type, index: Expr, var: str, vbase: ir.Value,
                      stride: int) -> ir.Value:
        """Lanes ``index(vbase + j)`` for j < 8 when they lie ``stride`` elements apart: one wide load of
        the ``8 * stride`` elements from lane 0's, then a shuffle keeping every ``stride``-th (a pooling
        window or a strided convolution's input row). The load is masked past lane 7's element, so it
        reads nothing a gather of the eight lanes would not (no read past the buffer's end)."""
        n = WIDTH * stride
        vty = ir.VectorType(mty, n)
        mask_ty = ir.VectorType(ir.IntType(1), n)
        fn = declare(self.b.module, f"llvm.masked.load.v{n}{type_suffix(mty)}.p0", vty,
                     [vty.as_pointer(), I32, mask_ty, vty])
        ptr = self.b.gep(base, [self._lane_scalar(index, var, vbase)], inbounds=True)
        last = (WIDTH if self.tail is None else self.tail) - 1  # the last real lane
        mask = ir.Constant(mask_ty, [i <= last * stride for i in range(n)])
        align = max(1, (mty.width if isinstance(mty, ir.IntType) else {"f16": 16, "f32": 32, "f64": 64}[
            type_suffix(mty)]) // 8)
        # masked-off lanes take lane 0's value (always real), so no lane computes on made-up data that
        # could trap (an integer division by a zero that is not there)
        fill = splat(self.b, self.b.load(ptr), vty)
        wide = self.b.call(fn, [self.b.bitcast(ptr, vty.as_pointer()), I32(align), mask, fill])
        if stride == 1:
            return wide
        pick = ir.Constant(ir.VectorType(I32, WIDTH), [j * stride for j in range(WIDTH)])
        return self.b.shuffle_vector(wide, ir.Constant(vty, ir.Undefined), pick)

    def _load(self, e: Load) -> tuple[ir.Value, bool]:
        base, mty = self.ptrs[e.buffer], X.mem_type(e.dtype)
        if self.vec is None:
            ptr = self.b.gep(base, [self.scalar(e.index, None)], inbounds=True)
            return self._from_mem(self.b.load(ptr), e.dtype), False
        var, vbase = self.vec
        coeff = linear_coeff(e.index, var)
        if coeff == 0:
            ptr = self.b.gep(base, [self._lane_scalar(e.index, var, vbase)], inbounds=True)
            return self._from_mem(self.b.load(ptr), e.dtype), False
        if coeff == 1 and self.tail is None:
            ptr = self.b.gep(base, [self._lane_scalar(e.index, var, vbase)], inbounds=True)
            vptr = self.b.bitcast(ptr, ir.VectorType(mty, WIDTH).as_pointer())
            return self._from_mem(self.b.load(vptr, align=1), e.dtype), True
        if coeff is not None and 1 <= coeff <= MAX_DEINTERLEAVE:
            return self._from_mem(self._strided_load(base, mty, e.index, var, vbase, coeff), e.dtype), True
        out = ir.Constant(ir.VectorType(mty, WIDTH), ir.Undefined)
        real = WIDTH if self.tail is None else self.tail
        for lane in range(WIDTH):
            at = self.b.add(vbase, i64(min(lane, real - 1)))  # a masked tail re-reads its last real lane
            ptr = self.b.gep(base, [self._lane_scalar(e.index, var, at)], inbounds=True)
            out = self.b.insert_element(out, self.b.load(ptr), I32(lane))
        return self._from_mem(out, e.dtype), True


MIN_MASKED = 4  # a vectorized loop this short still runs as one masked vector step


def _carried_reduces(s: Loop) -> list[Reduce]:
    """The reductions of a loop body into locals declared outside it: those accumulate across the loop's
    iterations (lanes, when vectorized). A local declared in the body itself is per-iteration (a
    reduction over a size-1 dimension lowers to Declare + Reduce + Store with no loop of its own)."""
    declared = {d.name for d in s.body if isinstance(d, Declare)}
    return [r for r in s.body if isinstance(r, Reduce) and r.name not in declared]


def _maskable(s: Loop) -> bool:
    """Whether a vectorized loop's remainder may run as a masked vector step: not when the body reduces
    across the loop's lanes into an outer local (the masked lanes would join the sum)."""
    return not _carried_reduces(s)


def emit_kernel(module: ir.Module, kernel: Kernel, shared: dict[str, Any] | None = None) -> ir.Function:
    """Emit ``kernel`` into ``module``; returns its (internal) LLVM function."""
    return KernelCodegen(module, kernel, shared).emit_function()
