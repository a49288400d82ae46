"""Small llvmlite IR-building helpers shared by the GEMM template and the kernel-IR code generator."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import llvmlite.ir as ir

__all__ = ["F32", "I1", "I8", "I32", "I64", "FAST", "ceil_div", "declare", "fop", "i64", "imax", "imin",
           "intrinsic", "lanes_below8", "loop", "masked_load8", "masked_store8", "new_function", "splat", "splat_const",
           "type_suffix"]

F32, I1, I8, I32, I64 = ir.FloatType(), ir.IntType(1), ir.IntType(8), ir.IntType(32), ir.IntType(64)
FAST = ("contract",)  # lets mul+add fuse into FMA without changing other IEEE semantics


def i64(v: int) -> ir.Constant:
    return ir.Constant(I64, v)


def splat_const(ty: ir.Type, value: float | int) -> ir.Constant:
    """A constant of scalar or vector type ``ty`` with every lane equal to ``value``."""
    if isinstance(ty, ir.VectorType):
        return ir.Constant(ty, [value] * ty.count)
    return ir.Constant(ty, value)


def splat(b: ir.IRBuilder, scalar: ir.Value, ty: ir.Type) -> ir.Value:
    """Broadcast a scalar to vector type ``ty`` (a no-op for scalar ``ty``)."""
    if not isinstance(ty, ir.VectorType):
        return scalar
    undef = ir.Constant(ty, ir.Undefined)
    one = b.insert_element(undef, scalar, I32(0))
    return b.shuffle_vector(one, undef, ir.Constant(ir.VectorType(I32, ty.count), [0] * ty.count))


def fop(b: ir.IRBuilder, op: str, x: ir.Value, y: ir.Value) -> ir.Value:
    """fadd/fsub/fmul/fdiv carrying the ``contract`` fast-math flag."""
    inst = getattr(b, op)(x, y)
    inst.flags.extend(FAST)
    return inst


def type_suffix(ty: ir.Type) -> str:
    """The overload suffix of an intrinsic for ``ty``: ``f32``, ``f64``, ``v8f32``, ``i64``..."""
    if isinstance(ty, ir.VectorType):
        return f"v{ty.count}{type_suffix(ty.element)}"
    if isinstance(ty, ir.FloatType):
        return "f32"
    if isinstance(ty, ir.DoubleType):
        return "f64"
    if isinstance(ty, ir.HalfType):
        return "f16"
    if isinstance(ty, ir.IntType):
        return f"i{ty.width}"
    raise TypeError(f"no intrinsic suffix for {ty}")


def declare(module: ir.Module, name: str, ret: ir.Type, args: list[ir.Type]) -> ir.Function:
    """The function ``name`` of ``module``, declared on first use."""
    fn = module.globals.get(name)
    if fn is None:
        fn = ir.Function(module, ir.FunctionType(ret, args), name)
    return fn


def masked_load8(b: ir.IRBuilder, ptr: ir.Value, mask: ir.Value, passthru: ir.Value | None = None) -> ir.Value:
    """Lanes of the float ``ptr[0:8]`` where ``mask`` (<8 x i1>) is set, ``passthru``'s (default zero)
    elsewhere; masked-off lanes are never read, so the vector may straddle the end of a buffer."""
    v8 = ir.VectorType(F32, 8)
    fn = declare(b.module, "llvm.masked.load.v8f32.p0", v8, [v8.as_pointer(), I32, ir.VectorType(I1, 8), v8])
    rest = ir.Constant(v8, [0.0] * 8) if passthru is None else passthru
    return b.call(fn, [b.bitcast(ptr, v8.as_pointer()), I32(4), mask, rest])


def masked_store8(b: ir.IRBuilder, value: ir.Value, ptr: ir.Value, mask: ir.Value) -> None:
    """Store the lanes of the float vector ``value`` (<8 x float>) where ``mask`` is set to ``ptr[0:8]``;
    masked-off lanes are never written."""
    v8 = ir.VectorType(F32, 8)
    mask_ty = ir.VectorType(I1, 8)
    fn = declare(b.module, "llvm.masked.store.v8f32.p0", ir.VoidType(), [v8, v8.as_pointer(), I32, mask_ty])
    b.call(fn, [value, b.bitcast(ptr, v8.as_pointer()), I32(4), mask])


def lanes_below8(b: ir.IRBuilder, count: ir.Value) -> ir.Value:
    """The <8 x i1> mask of lanes ``l < count`` (``count`` an i64; 8 or more sets every lane)."""
    ty = ir.VectorType(I64, 8)
    return b.icmp_signed("<", ir.Constant(ty, list(range(8))), splat(b, count, ty))


def intrinsic(b: ir.IRBuilder, name: str, ty: ir.Type, args: list[ir.Value], nargs_ty: int = 1) -> ir.Value:
    """Call an overloaded intrinsic such as ``llvm.fma`` on scalar or vector ``ty``."""
    return b.call(declare(b.module, f"{name}.{type_suffix(ty)}", ty, [ty] * nargs_ty), args)


def imin(b: ir.IRBuilder, x: ir.Value, y: ir.Value) -> ir.Value:
    return b.select(b.icmp_signed("<", x, y), x, y)


def imax(b: ir.IRBuilder, x: ir.Value, y: ir.Value) -> ir.Value:
    return b.select(b.icmp_signed(">", x, y), x, y)


def ceil_div(b: ir.IRBuilder, x: ir.Value, d: ir.Value | int) -> ir.Value:
    d = i64(d) if isinstance(d, int) else d
    return b.sdiv(b.add(x, b.sub(d, i64(1))), d)


@contextmanager
def loop(b: ir.IRBuilder, start: ir.Value | int, stop: ir.Value | int, step: ir.Value | int = 1,
         name: str = "i") -> Iterator[ir.Value]:
    """``for (iv = start; iv < stop; iv += step)`` over i64; the body is emitted inside the ``with``."""
    start = i64(start) if isinstance(start, int) else start
    stop = i64(stop) if isinstance(stop, int) else stop
    step = i64(step) if isinstance(step, int) else step
    pre = b.block
    header = b.append_basic_block(f"{name}.head")
    body = b.append_basic_block(f"{name}.body")
    done = b.append_basic_block(f"{name}.done")
    b.branch(header)
    b.position_at_end(header)
    iv = b.phi(I64, name)
    iv.add_incoming(start, pre)
    b.cbranch(b.icmp_signed("<", iv, stop), body, done)
    b.position_at_end(body)
    yield iv
    iv.add_incoming(b.add(iv, step), b.block)
    b.branch(header)
    b.position_at_end(done)


def new_function(module: ir.Module, name: str, ret: ir.Type, args: list[tuple[str, ir.Type]],
                 internal: bool = True) -> tuple[ir.Function, ir.IRBuilder]:
    """A function with named arguments, ``nounwind``, positioned at its entry block."""
    fn = ir.Function(module, ir.FunctionType(ret, [t for _, t in args]), name)
    for arg, (arg_name, _) in zip(fn.args, args):
        arg.name = arg_name
    if internal:
        fn.linkage = "internal"
    fn.attributes.add("nounwind")
    return fn, ir.IRBuilder(fn.append_basic_block("entry"))
