"""The expression builder ``e`` that ops' ``lowering["scalar"]`` functions are written against.

``lowering={"scalar": lambda e, a, b: e.add(a, b)}`` receives kernel-IR expressions for its operands
(already indexed: the lowering decides *where* an element comes from, the op only *what* is computed)
and returns an expression. The builder applies PyTorch's promotion between operands, so an op's
lowering never casts by hand: ``e.add(int_tensor_elem, 2.5)`` computes in float32, ``e.exp(int)``
in float32. A method name the builder does not know raises ``CompileError`` naming the op being
lowered, so a new op with an unsupported function fails at compile time, loudly.

Index helpers (``iadd``, ``imul``, ...) build int64 index arithmetic with constant folding, so
printed kernels read ``x[i0*8 + i1]`` rather than ``x[((i0 * 8) + (i1 * 1)) + 0]``.
"""

from __future__ import annotations

from typing import Any

from ember.compiler.dtypes import (
    BOOL,
    DEFAULT_FLOAT,
    FLOATING,
    INTEGRAL,
    DType,
    bool_,
    float32,
    int64,
    scalar_dtype,
)
from ember.compiler.dtypes import promote as promote_dtypes
from ember.compiler.kernel.ir import (
    BINARY_OPS,
    COMPARE_OPS,
    UNARY_OPS,
    Binary,
    Cast,
    Const,
    Expr,
    Select,
    Unary,
)
from ember.runtime.errors import CompileError

__all__ = ["ExprBuilder", "as_expr", "const", "iadd", "imul", "ifloordiv", "imod"]

# functions defined only on floating point: integer operands are computed in the default float dtype
_FLOAT_ONLY = frozenset(UNARY_OPS - {"neg", "abs", "sign", "not", "floor", "ceil", "round", "trunc",
                                     "isnan", "isinf", "isfinite"})
_PREDICATES = frozenset({"isnan", "isinf", "isfinite"})


def _py_value(value: Any, dtype: DType) -> Any:
    if dtype is bool_:
        return bool(value)
    if dtype.category == INTEGRAL:
        return int(value)
    return float(value)


def const(value: Any, dtype: DType | None = None, weak: bool = False) -> Const:
    """A constant; without ``dtype`` a Python scalar gets its PyTorch dtype and is weak."""
    if dtype is None:
        return Const(_py_value(value, scalar_dtype(value)), scalar_dtype(value), True)
    return Const(_py_value(value, dtype), dtype, weak)


def as_expr(x: Any) -> Expr:
    return x if isinstance(x, Expr) else const(x)


def cast(x: Expr, dtype: DType) -> Expr:
    """Convert ``x`` to ``dtype`` (folded for constants, a no-op when already of that dtype)."""
    if x.dtype is dtype:
        return x
    if isinstance(x, Const):
        return Const(_py_value(x.value, dtype), dtype)
    return Cast(x, dtype)


def _common_dtype(a: Expr, b: Expr) -> DType:
    wa = isinstance(a, Const) and a.weak
    wb = isinstance(b, Const) and b.weak
    if wa != wb:
        strong, weak = (b, a) if wa else (a, b)
        if weak.dtype.category <= strong.dtype.category:
            return strong.dtype
        return {BOOL: bool_, INTEGRAL: int64, FLOATING: DEFAULT_FLOAT}[weak.dtype.category]
    return promote_dtypes(a.dtype, b.dtype)


def promote(a: Any, b: Any) -> tuple[Expr, Expr]:
    """Both operands converted to their PyTorch result type."""
    a, b = as_expr(a), as_expr(b)
    t = _common_dtype(a, b)
    return cast(a, t), cast(b, t)


# --------------------------------------------------------------------------------------------------
# index arithmetic with folding


def _ival(x: Expr | int) -> Expr:
    return Const(int(x), int64) if isinstance(x, int) else x


def iadd(a: Expr | int, b: Expr | int) -> Expr:
    a, b = _ival(a), _ival(b)
    if isinstance(a, Const) and isinstance(b, Const):
        return Const(a.value + b.value, int64)
    if isinstance(a, Const) and a.value == 0:
        return b
    if isinstance(b, Const) and b.value == 0:
        return a
    return Binary("add", a, b, int64)


def imul(a: Expr | int, b: Expr | int) -> Expr:
    a, b = _ival(a), _ival(b)
    if isinstance(a, Const) and isinstance(b, Const):
        return Const(a.value * b.value, int64)
    if isinstance(a, Const):
        a, b = b, a
    if isinstance(b, Const):
        if b.value == 0:
            return Const(0, int64)
        if b.value == 1:
            return a
    return Binary("mul", a, b, int64)


def ifloordiv(a: Expr | int, d: int) -> Expr:
    a = _ival(a)
    if d == 1:
        return a
    if isinstance(a, Const):
        return Const(a.value // d, int64)
    return Binary("floordiv", a, Const(d, int64), int64)


def imod(a: Expr | int, d: int) -> Expr:
    a = _ival(a)
    if d == 1:
        return Const(0, int64)
    if isinstance(a, Const):
        return Const(a.value % d, int64)
    return Binary("mod", a, Const(d, int64), int64)


# --------------------------------------------------------------------------------------------------
# the builder


class ExprBuilder:
    """The ``e`` of ``lowering["scalar"]``. ``op`` names the op being lowered, for error messages."""

    def __init__(self, op: str = "?") -> None:
        self.op = op

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        raise CompileError(
            f"cannot lower op '{self.op}': its scalar lowering calls e.{name}(), which the kernel-IR "
            f"expression builder does not provide"
        )

    # ---- constants ----
    def const(self, value: Any, dtype: DType | None = None) -> Expr:
        return const(value, dtype)

    def zero(self, like: Expr) -> Expr:
        return const(0, as_expr(like).dtype)

    def one(self, like: Expr) -> Expr:
        return const(1, as_expr(like).dtype)

    def cast(self, x: Any, dtype: DType) -> Expr:
        return cast(as_expr(x), dtype)

    # ---- arithmetic ----
    def _binary(self, op: str, a: Any, b: Any) -> Expr:
        a, b = promote(a, b)
        if op not in BINARY_OPS:
            raise CompileError(f"cannot lower op '{self.op}': unknown binary function {op!r}")
        return Binary(op, a, b, a.dtype)

    def add(self, a: Any, b: Any) -> Expr:
        return self._binary("add", a, b)

    def sub(self, a: Any, b: Any) -> Expr:
        return self._binary("sub", a, b)

    def mul(self, a: Any, b: Any) -> Expr:
        return self._binary("mul", a, b)

    def div(self, a: Any, b: Any, rounding_mode: str | None = None) -> Expr:
        """True division (integer operands divide in the default float dtype), or with
        ``rounding_mode`` "trunc"/"floor" the rounded quotient in the operands' dtype (torch.div)."""
        a, b = promote(a, b)
        if rounding_mode is None:
            if a.dtype.category != FLOATING:
                a, b = cast(a, float32), cast(b, float32)
            return Binary("div", a, b, a.dtype)
        if rounding_mode not in ("trunc", "floor"):
            raise CompileError(f"cannot lower op '{self.op}': unknown rounding_mode {rounding_mode!r}")
        if a.dtype.category == FLOATING:
            return Unary(rounding_mode, Binary("div", a, b, a.dtype), a.dtype)
        return Binary("truncdiv" if rounding_mode == "trunc" else "floordiv", a, b, a.dtype)

    def floordiv(self, a: Any, b: Any) -> Expr:
        return self._binary("floordiv", a, b)

    def remainder(self, a: Any, b: Any) -> Expr:
        """Python-style remainder (sign of the divisor), as torch.remainder."""
        return self._binary("remainder", a, b)

    def fmod(self, a: Any, b: Any) -> Expr:
        return self._binary("fmod", a, b)

    def pow(self, a: Any, b: Any) -> Expr:
        a, b = promote(a, b)
        return Binary("pow", a, b, a.dtype)

    def atan2(self, a: Any, b: Any) -> Expr:
        a, b = promote(a, b)
        if a.dtype.category != FLOATING:
            a, b = cast(a, float32), cast(b, float32)
        return Binary("atan2", a, b, a.dtype)

    def max(self, a: Any, b: Any) -> Expr:
        """Elementwise maximum; NaN in either operand gives NaN (torch.maximum)."""
        return self._binary("max", a, b)

    def min(self, a: Any, b: Any) -> Expr:
        return self._binary("min", a, b)

    def logical_and(self, a: Any, b: Any) -> Expr:
        return Binary("and", self.cast(a, bool_), self.cast(b, bool_), bool_)

    def logical_or(self, a: Any, b: Any) -> Expr:
        return Binary("or", self.cast(a, bool_), self.cast(b, bool_), bool_)

    def logical_xor(self, a: Any, b: Any) -> Expr:
        return Binary("xor", self.cast(a, bool_), self.cast(b, bool_), bool_)

    def logical_not(self, a: Any) -> Expr:
        return Unary("not", self.cast(a, bool_), bool_)

    def and_(self, a: Any, b: Any) -> Expr:
        """Bitwise and (logical for bool)."""
        return self._binary("and", a, b)

    def or_(self, a: Any, b: Any) -> Expr:
        return self._binary("or", a, b)

    def xor(self, a: Any, b: Any) -> Expr:
        return self._binary("xor", a, b)

    def not_(self, x: Any) -> Expr:
        """Logical not for bool, bitwise not (``~x``) for integers."""
        x = as_expr(x)
        if x.dtype is bool_:
            return Unary("not", x, bool_)
        if x.dtype.category != INTEGRAL:
            raise CompileError(f"cannot lower op '{self.op}': bitwise not of {x.dtype.name}")
        return Binary("xor", x, Const(-1, x.dtype), x.dtype)

    def bitwise_and(self, a: Any, b: Any) -> Expr:
        return self._binary("and", a, b)

    def bitwise_or(self, a: Any, b: Any) -> Expr:
        return self._binary("or", a, b)

    def bitwise_xor(self, a: Any, b: Any) -> Expr:
        return self._binary("xor", a, b)

    # ---- comparisons and selection ----
    def cmp(self, name: str, a: Any, b: Any) -> Expr:
        if name not in COMPARE_OPS:
            raise CompileError(f"cannot lower op '{self.op}': unknown comparison {name!r}")
        a, b = promote(a, b)
        return Binary(name, a, b, bool_)

    def select(self, cond: Any, a: Any, b: Any) -> Expr:
        a, b = promote(a, b)
        return Select(self.cast(cond, bool_), a, b, a.dtype)

    where = select

    def clamp(self, x: Any, lo: Any = None, hi: Any = None) -> Expr:
        x = as_expr(x)
        if lo is not None:
            x = self.max(x, lo)
        if hi is not None:
            x = self.min(x, hi)
        return x

    # ---- compositions used by activation and loss ops ----
    def round(self, x: Any, decimals: int = 0) -> Expr:
        """Round half to even; with ``decimals`` as torch: round(x * 10^d) / 10^d."""
        x = as_expr(x)
        if decimals == 0 or x.dtype.category != FLOATING:
            return self.unary("round", x)
        scale = const(10.0 ** decimals, x.dtype)
        return self.div(self.unary("round", self.mul(x, scale)), scale)

    def normal_cdf(self, x: Any) -> Expr:
        """Phi(x) = (1 + erf(x / sqrt 2)) / 2."""
        x = as_expr(x)
        return self.mul(0.5, self.add(1.0, self.erf(self.mul(x, 0.7071067811865476))))

    def gelu(self, x: Any, approximate: str = "none") -> Expr:
        x = as_expr(x)
        if approximate == "tanh":
            inner = self.mul(0.7978845608028654, self.add(x, self.mul(0.044715, self.mul(x, self.mul(x, x)))))
            return self.mul(self.mul(0.5, x), self.add(1.0, self.tanh(inner)))
        return self.mul(x, self.normal_cdf(x))

    def elu(self, x: Any, alpha: float = 1.0, scale: float = 1.0, input_scale: float = 1.0) -> Expr:
        x = as_expr(x)
        neg = self.mul(alpha, self.expm1(self.mul(self.min(x, 0.0), input_scale)))
        return self.mul(scale, self.select(self.cmp("gt", x, 0.0), x, neg))

    def softplus(self, x: Any, beta: float = 1.0, threshold: float = 20.0) -> Expr:
        """log(1 + exp(beta x)) / beta, computed as max(bx, 0) + log1p(exp(-|bx|)) so it never overflows;
        x itself above the threshold."""
        x = as_expr(x)
        bx = self.mul(x, beta)
        soft = self.add(self.max(bx, 0.0), self.log1p(self.exp(self.neg(self.abs(bx)))))
        return self.select(self.cmp("gt", bx, threshold), x, self.div(soft, beta))

    def log_sigmoid(self, x: Any) -> Expr:
        x = as_expr(x)
        return self.sub(self.min(x, 0.0), self.log1p(self.exp(self.neg(self.abs(x)))))

    def binary_cross_entropy(self, x: Any, t: Any) -> Expr:
        """-(t log x + (1 - t) log(1 - x)) with each log clamped below at -100, as PyTorch."""
        x, t = promote(x, t)
        lx = self.max(self.log(x), -100.0)
        l1x = self.max(self.log(self.sub(1.0, x)), -100.0)
        return self.neg(self.add(self.mul(t, lx), self.mul(self.sub(1.0, t), l1x)))

    # ---- unary functions ----
    def unary(self, name: str, x: Any) -> Expr:
        """Any function of ``UNARY_OPS`` by name (the named methods below call this)."""
        if name not in UNARY_OPS:
            raise CompileError(f"cannot lower op '{self.op}': unknown function e.{name}()")
        x = as_expr(x)
        if name in _FLOAT_ONLY and x.dtype.category != FLOATING:
            x = cast(x, float32)
        if name in _PREDICATES:
            return Unary(name, x, bool_)
        if name == "not":
            return Unary(name, cast(x, bool_), bool_)
        return Unary(name, x, x.dtype)


def _unary_method(name: str) -> Any:
    def method(self: ExprBuilder, x: Any) -> Expr:
        return self.unary(name, x)

    method.__name__ = name
    method.__doc__ = f"``{name}(x)`` elementwise."
    return method


for _name in sorted(UNARY_OPS):
    if not hasattr(ExprBuilder, _name):
        setattr(ExprBuilder, _name, _unary_method(_name))
