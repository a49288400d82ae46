"""Kernel-IR expressions -> CUDA C expressions (one string per expression, fully parenthesized).

Types: bool is C++ ``bool`` (one byte in memory, as numpy's), integers map to the fixed-width C types,
float64 to ``double``. float16 lives in memory as ``unsigned short`` bits (``ember_half``) and is computed
in float, rounded to half after every operation as the LLVM back end and PyTorch do; the conversions are
one PTX instruction each (``cvt``), so the generated source needs no CUDA header and NVRTC compiles it
with no include path (``EMBER_HOST_EMULATION`` swaps them for host code in the tests' CPU
emulator). Loop variables and every index are ``long long`` (int64): a flat offset into a
large activation does not fit in 32 bits.

Semantics follow ``codegen/llvm/exprs.py``: max/min propagate NaN, integer division by zero divides by 1
(eager mode raised first), floor division and modulo round toward -inf, float ``remainder`` takes the
divisor's sign, float -> bool is ``x != 0``, and signed 8/16/32-bit add/sub/mul wrap (computed
unsigned, since signed overflow is undefined in C++).
"""

from __future__ import annotations

import math
import re

from ember.compiler.dtypes import BOOL, FLOATING, DType
from ember.compiler.kernel.ir import (
    COMPARE_OPS,
    Binary,
    Cast,
    Const,
    Expr,
    Load,
    Local,
    Select,
    Unary,
    Var,
)
from ember.runtime.errors import CompileError

__all__ = ["C_TYPES", "PRELUDE", "ExprEmitter", "c_const", "mem_type", "reg_type"]

C_TYPES = {"bool": "bool", "uint8": "unsigned char", "int8": "signed char", "int16": "short", "int32": "int",
           "int64": "long long", "float16": "float", "float32": "float", "float64": "double"}
_MEM = {**C_TYPES, "float16": "ember_half"}
_UNSIGNED = {"int8": "unsigned char", "int16": "unsigned short", "int32": "unsigned int"}

# Helpers every generated translation unit starts with (no #include: NVRTC needs no headers for them).
PRELUDE = r"""typedef unsigned short ember_half;
#ifdef EMBER_HOST_EMULATION
__device__ __forceinline__ float ember_h2f(ember_half h) { return ember_emu_h2f(h); }
__device__ __forceinline__ ember_half ember_f2h(float f) { return ember_emu_f2h(f); }
#else
__device__ __forceinline__ float ember_h2f(ember_half h) {
  float f; asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h)); return f; }
__device__ __forceinline__ ember_half ember_f2h(float f) {
  ember_half h; asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f)); return h; }
#endif
__device__ __forceinline__ float ember_rh(float f) { return ember_h2f(ember_f2h(f)); }
template <typename T> __device__ __forceinline__ T ember_fmax(T a, T b) { return a != a ? a : (a > b ? a : b); }
template <typename T> __device__ __forceinline__ T ember_fmin(T a, T b) { return a != a ? a : (a < b ? a : b); }
template <typename T> __device__ __forceinline__ T ember_imax(T a, T b) { return a > b ? a : b; }
template <typename T> __device__ __forceinline__ T ember_imin(T a, T b) { return a < b ? a : b; }
__device__ __forceinline__ long long ember_mul64(long long a, long long b) {
  return (long long)((unsigned long long)a * (unsigned long long)b); }  // signed overflow is UB in C
template <typename T> __device__ __forceinline__ T ember_nz(T d) { return d == T(0) ? T(1) : d; }
template <typename T> __device__ __forceinline__ T ember_ifloordiv(T a, T b) {
  b = ember_nz(b); T q = a / b, r = a % b; return (r != 0 && ((r < 0) != (b < 0))) ? q - 1 : q; }
template <typename T> __device__ __forceinline__ T ember_imod(T a, T b) {
  b = ember_nz(b); T r = a % b; return (r != 0 && ((r < 0) != (b < 0))) ? r + b : r; }
__device__ __forceinline__ float ember_fremf(float a, float b) {
  float r = fmodf(a, b); return (r != 0.0f && ((r < 0.0f) != (b < 0.0f))) ? r + b : r; }
__device__ __forceinline__ double ember_frem(double a, double b) {
  double r = fmod(a, b); return (r != 0.0 && ((r < 0.0) != (b < 0.0))) ? r + b : r; }
template <typename T> __device__ __forceinline__ T ember_ipow(T b, T e) {
  if (e < 0) return b == T(1) ? T(1) : (b == T(-1) ? ((e & 1) ? T(-1) : T(1)) : T(0));
  unsigned long long r = 1, x = (unsigned long long)(long long)b;
  for (; e; e >>= 1, x *= x) if (e & 1) r *= x;
  return (T)r; }
template <typename T> __device__ __forceinline__ T ember_fsign(T x) {
  return x > T(0) ? T(1) : (x < T(0) ? T(-1) : x); }
"""


def reg_type(dt: DType) -> str:
    """C type of a value of ``dt`` in registers."""
    return C_TYPES[dt.name]


def mem_type(dt: DType) -> str:
    """C type of an element of ``dt`` in memory."""
    return _MEM[dt.name]


def _is_float(dt: DType) -> bool:
    return dt.category == FLOATING


def _float_literal(value: float, dt: DType) -> str:
    single = dt.name != "float64"
    if math.isnan(value):
        return "__int_as_float(0x7fc00000)" if single else "__longlong_as_double(0x7ff8000000000000LL)"
    if math.isinf(value):
        inf = "__int_as_float(0x7f800000)" if single else "__longlong_as_double(0x7ff0000000000000LL)"
        return inf if value > 0 else f"(-{inf})"
    text = repr(float(value))
    if "e" not in text and "." not in text:
        text += ".0"
    return f"{text}f" if single else text


def c_const(value: object, dt: DType) -> str:
    """A C literal of ``value`` as dtype ``dt`` (NaN and infinities through bit patterns: NVRTC has no
    math.h macros without headers)."""
    if dt.category == BOOL:
        return "true" if value else "false"
    if _is_float(dt):
        return _float_literal(float(value), dt)  # type: ignore[arg-type]
    v = int(value)  # type: ignore[call-overload]
    if dt.name == "int64":
        return "(-9223372036854775807LL - 1)" if v == -(1 << 63) else f"{v}LL"
    if dt.name == "int32" and v == -(1 << 31):
        return "(-2147483647 - 1)"
    return f"(({C_TYPES[dt.name]}){v})"


_FLOAT_FN = {"exp": "exp", "exp2": "exp2", "expm1": "expm1", "log": "log", "log2": "log2", "log10": "log10",
             "log1p": "log1p", "tanh": "tanh", "sqrt": "sqrt", "rsqrt": "rsqrt", "abs": "fabs", "floor": "floor",
             "ceil": "ceil", "round": "rint", "trunc": "trunc", "sin": "sin", "cos": "cos", "tan": "tan",
             "asin": "asin", "acos": "acos", "atan": "atan", "sinh": "sinh", "cosh": "cosh", "asinh": "asinh",
             "acosh": "acosh", "atanh": "atanh", "erf": "erf"}


def _float_unary(op: str, x: str, dt: DType) -> str:
    f = "f" if dt.name != "float64" else ""
    one = "1.0f" if f else "1.0"
    if op in _FLOAT_FN:
        return f"{_FLOAT_FN[op]}{f}({x})"
    if op == "neg":
        return f"(-{x})"
    if op == "sigmoid":
        return f"({one} / ({one} + exp{f}(-{x})))"
    if op == "reciprocal":
        return f"({one} / {x})"
    if op == "sign":
        return f"ember_fsign({x})"
    raise CompileError(f"no CUDA code generator for float function {op!r}")


def _int_unary(op: str, x: str, dt: DType) -> str:
    t = reg_type(dt)
    if op == "neg":
        return f"(({t})(-{x}))"
    if op == "abs":
        return x if not dt.is_signed or dt.category == BOOL else f"(({t})({x} < 0 ? -{x} : {x}))"
    if op in ("floor", "ceil", "round", "trunc"):
        return x
    if op == "sign":
        if dt.category == BOOL:
            return x
        return f"(({t})({x} > 0 ? 1 : ({x} < 0 ? -1 : 0)))" if dt.is_signed else f"(({t})({x} > 0 ? 1 : 0))"
    raise CompileError(f"no CUDA code generator for integer function {op!r} on {dt.name}")


def _float_binary(op: str, x: str, y: str, dt: DType) -> str:
    f = "f" if dt.name != "float64" else ""
    infix = {"add": "+", "sub": "-", "mul": "*", "div": "/"}
    if op in infix:
        return f"({x} {infix[op]} {y})"
    if op in ("max", "min"):
        return f"ember_f{op}({x}, {y})"
    if op in ("pow", "atan2", "fmod"):
        return f"{op}{f}({x}, {y})"
    if op == "remainder":
        return f"ember_frem{f}({x}, {y})"
    if op == "floordiv":
        return f"floor{f}({x} / {y})"
    if op == "truncdiv":
        return f"trunc{f}({x} / {y})"
    raise CompileError(f"no CUDA code generator for float operation {op!r}")


_LOOP_VAR = re.compile(r"v_\w+")
_LITERAL = re.compile(r"-?\d+LL")


def _small_index_product(x: str, y: str) -> bool:
    """A loop variable (below its extent, < 2^32) times a literal below 2^31 cannot overflow int64, so
    index arithmetic keeps a plain, readable ``*``; any other int64 product wraps through unsigned."""
    for var, lit in ((x, y), (y, x)):
        if _LOOP_VAR.fullmatch(var) and _LITERAL.fullmatch(lit) and abs(int(lit[:-2])) < 2**31:
            return True
    return False


def _int_binary(op: str, x: str, y: str, dt: DType) -> str:
    t = reg_type(dt)
    if dt.category == BOOL:
        ops = {"add": "||", "mul": "&&", "and": "&&", "or": "||", "xor": "!=", "max": "||", "min": "&&"}
        if op in ops:
            return f"({x} {ops[op]} {y})"
        raise CompileError(f"no CUDA code generator for bool operation {op!r}")
    if op in ("add", "sub", "mul"):
        sym = {"add": "+", "sub": "-", "mul": "*"}[op]
        if dt.name == "int64" and op == "mul" and not _small_index_product(x, y):
            return f"ember_mul64({x}, {y})"  # wraps like LLVM's mul (Philox's products pass 2^63)
        if dt.name == "int64":  # index arithmetic: long long in, long long out
            return f"({x} {sym} {y})"
        if dt.name in _UNSIGNED:  # wrap like PyTorch instead of signed-overflow undefined behaviour
            u = _UNSIGNED[dt.name]
            return f"(({t})(({u}){x} {sym} ({u}){y}))"
        return f"(({t})({x} {sym} {y}))"
    bitwise = {"and": "&", "or": "|", "xor": "^", "shl": "<<", "shr": ">>"}
    if op in bitwise:
        return f"(({t})({x} {bitwise[op]} {y}))"
    if op in ("max", "min"):
        return f"ember_i{op}<{t}>({x}, {y})"
    if op == "pow":  # square-and-multiply, wrapping like PyTorch's integer pow
        return f"ember_ipow<{t}>({x}, {y})"
    if op in ("floordiv", "mod", "remainder") and dt.is_signed:
        return f"ember_i{'floordiv' if op == 'floordiv' else 'mod'}<{t}>({x}, {y})"
    if op in ("floordiv", "truncdiv"):
        return f"(({t})({x} / ember_nz<{t}>({y})))"
    if op in ("mod", "remainder", "fmod"):
        return f"(({t})({x} % ember_nz<{t}>({y})))"
    raise CompileError(f"no CUDA code generator for integer operation {op!r} on {dt.name}")


_CMP = {"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}


def _cast(x: str, src: DType, dst: DType) -> str:
    if src is dst or reg_type(src) == reg_type(dst) and dst.name != "float16":
        return x
    if dst.category == BOOL:
        return f"({x} != 0)"
    out = f"(({reg_type(dst)})({x}))"
    return f"ember_rh({out})" if dst.name == "float16" else out


class ExprEmitter:
    """Turns expressions into C text. ``names`` maps buffers, locals and loop variables to C identifiers
    (prefixed by the caller, so a buffer named ``exp`` cannot shadow the math function)."""

    def __init__(self, buffers: dict[str, tuple[str, DType]], kernel: str) -> None:
        self.buffers = buffers      # IR buffer name -> (C identifier, dtype)
        self.kernel = kernel

    @staticmethod
    def var(name: str) -> str:
        return f"v_{name}"

    @staticmethod
    def local(name: str) -> str:
        return f"l_{name}"

    def buffer(self, name: str) -> str:
        if name not in self.buffers:
            raise CompileError(f"kernel {self.kernel}: unknown buffer {name!r}")
        return self.buffers[name][0]

    def load(self, buffer: str, index: str, dt: DType) -> str:
        ref = f"{self.buffer(buffer)}[{index}]"
        return f"ember_h2f({ref})" if dt.name == "float16" else ref

    def store_value(self, value: str, dt: DType) -> str:
        return f"ember_f2h({value})" if dt.name == "float16" else value

    def emit(self, e: Expr) -> str:
        """C text of ``e`` (a value of ``reg_type(e.dtype)``)."""
        if isinstance(e, Const):
            return c_const(e.value, e.dtype)
        if isinstance(e, Var):
            return self.var(e.name)
        if isinstance(e, Local):
            return self.local(e.name)
        if isinstance(e, Load):
            return self.load(e.buffer, self.emit(e.index), e.dtype)
        if isinstance(e, Unary):
            return self._unary(e)
        if isinstance(e, Binary):
            return self._binary(e)
        if isinstance(e, Select):
            return f"({self.emit(e.cond)} ? {self.emit(e.a)} : {self.emit(e.b)})"
        if isinstance(e, Cast):
            return _cast(self.emit(e.x), e.x.dtype, e.dtype)
        raise CompileError(f"kernel {self.kernel}: no CUDA code generator for {type(e).__name__}")

    def _unary(self, e: Unary) -> str:
        x, dt = self.emit(e.x), e.x.dtype
        if e.op in ("isnan", "isinf", "isfinite"):
            if not _is_float(dt):
                return "true" if e.op == "isfinite" else "false"
            if e.op == "isnan":
                return f"({x} != {x})"
            inf = c_const(float("inf"), dt)
            absx = _float_unary("abs", x, dt)
            return f"({absx} == {inf})" if e.op == "isinf" else f"({absx} < {inf})"
        if e.op == "not":
            return f"(!{x})"
        if _is_float(dt):
            out = _float_unary(e.op, x, dt)
            return f"ember_rh({out})" if e.dtype.name == "float16" else out
        return _int_unary(e.op, x, dt)

    def _binary(self, e: Binary) -> str:
        x, y = self.emit(e.a), self.emit(e.b)
        if e.op in COMPARE_OPS:
            return f"({x} {_CMP[e.op]} {y})"
        if _is_float(e.dtype):
            out = _float_binary(e.op, x, y, e.dtype)
            return f"ember_rh({out})" if e.dtype.name == "float16" else out
        return _int_binary(e.op, x, y, e.dtype)

    def combine(self, op: str, acc: str, value: str, dt: DType) -> str:
        """``op(acc, value)`` for a reduction's combining op."""
        if _is_float(dt):
            out = _float_binary(op, acc, value, dt)
            return f"ember_rh({out})" if dt.name == "float16" else out
        return _int_binary(op, acc, value, dt)
