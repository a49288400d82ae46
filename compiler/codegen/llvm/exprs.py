"""Kernel-IR scalar operations -> LLVM instructions, on scalars or vectors alike.

Each function takes LLVM values that are all scalars or all vectors of one width and returns the same
shape. Register types: bool is ``i1`` (``i8`` in memory), float16 is computed in ``float`` and rounded
to half after every operation (so results match PyTorch, which computes half ops in float and rounds
each result), other dtypes map one to one.
"""

from __future__ import annotations

from collections.abc import Callable

import llvmlite.ir as ir
from ember.compiler.codegen.llvm import irmath
from ember.compiler.codegen.llvm.irutil import I1, declare, fop, intrinsic, splat_const
from ember.compiler.dtypes import BOOL, FLOATING, DType
from ember.runtime.errors import CompileError

__all__ = ["binary", "cast", "compare", "const", "mem_type", "reg_type", "round_half", "select", "unary"]

_HALF, _F32, _F64 = ir.HalfType(), ir.FloatType(), ir.DoubleType()
_REG = {"bool": I1, "uint8": ir.IntType(8), "int8": ir.IntType(8), "int16": ir.IntType(16),
        "int32": ir.IntType(32), "int64": ir.IntType(64), "float16": _F32, "float32": _F32,
        "float64": _F64}
_MEM = {**_REG, "bool": ir.IntType(8), "float16": _HALF}


def reg_type(dt: DType) -> ir.Type:
    return _REG[dt.name]


def mem_type(dt: DType) -> ir.Type:
    return _MEM[dt.name]


def _like(ty: ir.Type, like: ir.Value) -> ir.Type:
    """``ty`` as a vector when ``like`` is one."""
    return ir.VectorType(ty, like.type.count) if isinstance(like.type, ir.VectorType) else ty


def _is_float(dt: DType) -> bool:
    return dt.category == FLOATING


def const(value: object, dt: DType) -> ir.Constant:
    if dt.category == BOOL:
        return ir.Constant(I1, int(bool(value)))
    if _is_float(dt):
        return ir.Constant(reg_type(dt), float(value))  # type: ignore[arg-type]
    return ir.Constant(reg_type(dt), int(value))  # type: ignore[call-overload]


def round_half(b: ir.IRBuilder, x: ir.Value, dt: DType) -> ir.Value:
    """Round a float-register value of dtype float16 to half precision (identity otherwise)."""
    if dt.name != "float16":
        return x
    return b.fpext(b.fptrunc(x, _like(_HALF, x)), x.type)


# ---- unary ------------------------------------------------------------------------------------

_LIBM_F32 = {"tan": "tanf", "asin": "asinf", "acos": "acosf", "atan": "atanf", "sinh": "sinhf",
             "cosh": "coshf", "asinh": "asinhf", "acosh": "acoshf", "atanh": "atanhf", "erf": "erff",
             "expm1": "expm1f", "log1p": "log1pf", "tanh": "tanhf"}
_INTRINSIC = {"sqrt": "llvm.sqrt", "abs": "llvm.fabs", "floor": "llvm.floor", "ceil": "llvm.ceil",
              "round": "llvm.roundeven", "trunc": "llvm.trunc", "sin": "llvm.sin", "cos": "llvm.cos",
              "exp2": "llvm.exp2", "log2": "llvm.log2", "log10": "llvm.log10", "exp": "llvm.exp",
              "log": "llvm.log"}
_INLINE_F32: dict[str, Callable[[ir.IRBuilder, ir.Value], ir.Value]] = {
    "exp": irmath.exp_f32, "log": irmath.log_f32, "tanh": irmath.tanh_f32, "sigmoid": irmath.sigmoid_f32,
}


def _map_lanes(b: ir.IRBuilder, x: ir.Value, fn: Callable[[ir.Value], ir.Value]) -> ir.Value:
    """Apply a scalar function to every lane of a vector (a libm call per lane)."""
    if not isinstance(x.type, ir.VectorType):
        return fn(x)
    out = ir.Constant(x.type, ir.Undefined)
    for lane in range(x.type.count):
        out = b.insert_element(out, fn(b.extract_element(x, ir.IntType(32)(lane))), ir.IntType(32)(lane))
    return out


def _libm(b: ir.IRBuilder, name: str, x: ir.Value) -> ir.Value:
    scalar = x.type.element if isinstance(x.type, ir.VectorType) else x.type
    fname = name if scalar == _F32 else name[:-1]  # tanhf -> tanh for double
    fn = declare(b.module, fname, scalar, [scalar])
    return _map_lanes(b, x, lambda v: b.call(fn, [v]))


def _float_unary(b: ir.IRBuilder, op: str, x: ir.Value, is_f32: bool) -> ir.Value:
    ty = x.type
    c = lambda v: splat_const(ty, v)  # noqa: E731
    if is_f32 and op in _INLINE_F32:
        return _INLINE_F32[op](b, x)
    if op == "neg":
        return b.fneg(x)
    if op in _INTRINSIC:
        return intrinsic(b, _INTRINSIC[op], ty, [x])
    if op == "sigmoid":
        return fop(b, "fdiv", c(1.0), fop(b, "fadd", c(1.0), intrinsic(b, "llvm.exp", ty, [b.fneg(x)])))
    if op in _LIBM_F32:
        return _libm(b, _LIBM_F32[op], x)
    if op == "rsqrt":
        return fop(b, "fdiv", c(1.0), intrinsic(b, "llvm.sqrt", ty, [x]))
    if op == "reciprocal":
        return fop(b, "fdiv", c(1.0), x)
    if op == "sign":
        pos = b.select(b.fcmp_ordered(">", x, c(0.0)), c(1.0), x)
        return b.select(b.fcmp_ordered("<", x, c(0.0)), c(-1.0), pos)
    raise CompileError(f"no LLVM code generator for float function {op!r}")


def unary(b: ir.IRBuilder, op: str, x: ir.Value, in_dt: DType, out_dt: DType) -> ir.Value:
    """``op(x)``; ``in_dt`` is the operand's dtype, ``out_dt`` the result's (bool for predicates)."""
    if op in ("isnan", "isinf", "isfinite"):
        if not _is_float(in_dt):
            return splat_const(_like(I1, x), int(op == "isfinite"))
        if op == "isnan":
            return b.fcmp_unordered("uno", x, x)
        ax = intrinsic(b, "llvm.fabs", x.type, [x])
        inf = splat_const(x.type, float("inf"))
        return b.fcmp_ordered("==" if op == "isinf" else "<", ax, inf)
    if op == "not":
        return b.xor(x, splat_const(x.type, 1))
    if _is_float(in_dt):
        return round_half(b, _float_unary(b, op, x, in_dt.name != "float64"), out_dt)
    zero = splat_const(x.type, 0)
    if op == "neg":
        return b.sub(zero, x)
    if op == "abs":
        return x if not in_dt.is_signed else b.select(b.icmp_signed("<", x, zero), b.sub(zero, x), x)
    if op in ("floor", "ceil", "round", "trunc"):
        return x
    if op == "sign":
        one = splat_const(x.type, 1)
        if in_dt.category == BOOL:
            return x
        pos = b.select(b.icmp_signed(">", x, zero), one, zero)
        return b.select(b.icmp_signed("<", x, zero), b.sub(zero, one), pos) if in_dt.is_signed else pos
    raise CompileError(f"no LLVM code generator for integer function {op!r} on {in_dt.name}")


# ---- binary -----------------------------------------------------------------------------------


def _fmax_min(b: ir.IRBuilder, op: str, x: ir.Value, y: ir.Value) -> ir.Value:
    """torch.maximum/minimum: NaN in either operand gives NaN."""
    pick = b.select(b.fcmp_ordered(">" if op == "max" else "<", x, y), x, y)
    return b.select(b.fcmp_unordered("uno", x, x), x, pick)


def _float_binary(b: ir.IRBuilder, op: str, x: ir.Value, y: ir.Value) -> ir.Value:
    ty = x.type
    if op in ("add", "sub", "mul", "div"):
        return fop(b, {"add": "fadd", "sub": "fsub", "mul": "fmul", "div": "fdiv"}[op], x, y)
    if op in ("max", "min"):
        return _fmax_min(b, op, x, y)
    if op == "pow":
        return intrinsic(b, "llvm.pow", ty, [x, y], 2)
    if op == "fmod":
        return b.frem(x, y)
    if op == "remainder":  # sign of the divisor, as Python's % and torch.remainder
        r = b.frem(x, y)
        zero = splat_const(ty, 0.0)
        fix = b.and_(b.fcmp_ordered("!=", r, zero),
                     b.xor(b.fcmp_ordered("<", r, zero), b.fcmp_ordered("<", y, zero)))
        return b.select(fix, fop(b, "fadd", r, y), r)
    if op == "floordiv":
        return intrinsic(b, "llvm.floor", ty, [fop(b, "fdiv", x, y)])
    if op == "truncdiv":
        return intrinsic(b, "llvm.trunc", ty, [fop(b, "fdiv", x, y)])
    if op == "atan2":
        scalar = ty.element if isinstance(ty, ir.VectorType) else ty
        fn = declare(b.module, "atan2f" if scalar == _F32 else "atan2", scalar, [scalar, scalar])
        if not isinstance(ty, ir.VectorType):
            return b.call(fn, [x, y])
        out = ir.Constant(ty, ir.Undefined)
        for lane in range(ty.count):
            i = ir.IntType(32)(lane)
            out = b.insert_element(out, b.call(fn, [b.extract_element(x, i), b.extract_element(y, i)]), i)
        return out
    raise CompileError(f"no LLVM code generator for float operation {op!r}")


def _int_floordiv(b: ir.IRBuilder, x: ir.Value, y: ir.Value, signed: bool, mod: bool) -> ir.Value:
    """Python's floor division / modulo (rounding toward -inf; the remainder has the divisor's sign)."""
    if not signed:
        return b.urem(x, y) if mod else b.udiv(x, y)
    q, r = b.sdiv(x, y), b.srem(x, y)
    zero = splat_const(x.type, 0)
    sign_differs = b.xor(b.icmp_signed("<", r, zero), b.icmp_signed("<", y, zero))
    fix = b.and_(b.icmp_signed("!=", r, zero), sign_differs)
    if mod:
        return b.select(fix, b.add(r, y), r)
    return b.select(fix, b.sub(q, splat_const(x.type, 1)), q)


def binary(b: ir.IRBuilder, op: str, x: ir.Value, y: ir.Value, dt: DType) -> ir.Value:
    """Arithmetic ``op`` on two values of dtype ``dt``."""
    if _is_float(dt):
        return round_half(b, _float_binary(b, op, x, y), dt)
    signed = dt.is_signed
    simple = {"add": b.add, "sub": b.sub, "mul": b.mul, "and": b.and_, "or": b.or_, "xor": b.xor,
              "shl": b.shl}
    if op in simple:
        if dt.category == BOOL and op in ("add", "mul"):
            return b.or_(x, y) if op == "add" else b.and_(x, y)
        return simple[op](x, y)
    if op == "shr":
        return b.ashr(x, y) if signed else b.lshr(x, y)
    if op in ("max", "min"):
        cmp = (b.icmp_signed if signed else b.icmp_unsigned)(">" if op == "max" else "<", x, y)
        return b.select(cmp, x, y)
    if op in ("floordiv", "mod", "remainder", "truncdiv", "fmod"):
        # a zero divisor would trap (SIGFPE) and kill the process: divide by 1 instead (the eager
        # reference raises for integer division by zero before anything is compiled)
        y = b.select(b.icmp_unsigned("==", y, splat_const(y.type, 0)), splat_const(y.type, 1), y)
    if op in ("floordiv", "mod", "remainder"):
        return _int_floordiv(b, x, y, signed, op != "floordiv")
    if op in ("fmod", "truncdiv"):
        if op == "truncdiv":
            return b.sdiv(x, y) if signed else b.udiv(x, y)
        return b.srem(x, y) if signed else b.urem(x, y)
    raise CompileError(f"no LLVM code generator for integer operation {op!r} on {dt.name}")


_CMP = {"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}


def compare(b: ir.IRBuilder, op: str, x: ir.Value, y: ir.Value, dt: DType) -> ir.Value:
    """Comparison of two values of dtype ``dt`` (NaN compares unequal to everything)."""
    if _is_float(dt):
        if op == "ne":
            return b.fcmp_unordered("!=", x, y)
        return b.fcmp_ordered(_CMP[op], x, y)
    if dt.is_signed and dt.category != BOOL:
        return b.icmp_signed(_CMP[op], x, y)
    return b.icmp_unsigned(_CMP[op], x, y)


def select(b: ir.IRBuilder, c: ir.Value, x: ir.Value, y: ir.Value) -> ir.Value:
    return b.select(c, x, y)


def cast(b: ir.IRBuilder, x: ir.Value, src: DType, dst: DType) -> ir.Value:
    """Convert between dtypes with PyTorch's semantics (float -> int truncates; x -> bool is x != 0)."""
    if src is dst:
        return x
    to = _like(reg_type(dst), x)
    if dst.category == BOOL:
        if _is_float(src):
            return b.fcmp_unordered("!=", x, splat_const(x.type, 0.0))
        return b.icmp_unsigned("!=", x, splat_const(x.type, 0))
    if _is_float(dst):
        if _is_float(src):
            if x.type == to:
                return round_half(b, x, dst)
            widen = reg_type(src) == _F32 and reg_type(dst) == _F64
            out = b.fpext(x, to) if widen else b.fptrunc(x, to)
            return round_half(b, out, dst)
        out = b.sitofp(x, to) if src.is_signed and src.category != BOOL else b.uitofp(x, to)
        return round_half(b, out, dst)
    if _is_float(src):
        return b.fptosi(x, to) if dst.is_signed else b.fptoui(x, to)
    sw, dw = x.type.element.width if isinstance(x.type, ir.VectorType) else x.type.width, \
        to.element.width if isinstance(to, ir.VectorType) else to.width
    if sw == dw:
        return x
    if sw > dw:
        return b.trunc(x, to)
    return b.sext(x, to) if src.is_signed and src.category != BOOL else b.zext(x, to)
