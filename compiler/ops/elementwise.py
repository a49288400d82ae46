"""Elementwise and broadcasting ops: arithmetic, math functions, predicates, logic, where, cast.

Lowering: ``lowering["scalar"]`` is a function ``(e, *operands, **attrs) -> expr`` over the kernel-IR
expression builder ``e``; the LLVM and CUDA back ends share it. Operands arrive already converted to the
op's computation dtype (the promoted input dtype; float32 for integer inputs of ops that compute in
floating point). The vocabulary used here:

* arithmetic: ``add sub mul div neg``, ``div(a, b, rounding_mode)``, ``fmod remainder pow max min``
* math (C library names): ``abs exp expm1 log log1p log2 sqrt rsqrt sin cos tan asin acos atan atan2
  sinh cosh tanh sigmoid floor ceil trunc round(x, decimals) sign``
* logic and predicates: ``cmp(name, a, b)`` with name in eq/ne/gt/ge/lt/le, ``and_ or_ xor not_``
  (logical on bools, bitwise on integers), ``isnan isinf``, ``select(c, a, b)``, ``cast(x, dtype)``
* constants shaped like an operand: ``zero(x)``, ``one(x)``; ``const(value, dtype)``.

References run under ``np.errstate(all="ignore")``: 1/0 is inf and log(-1) is nan, as in PyTorch, and
numpy's warnings (errors under pytest) are not part of ember's behaviour.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from ember.compiler.dtypes import BOOL, FLOATING, INTEGRAL, DType, bool_
from ember.compiler.ops.registry import BOOL as BOOL_ATTR
from ember.compiler.ops.registry import (
    DTYPE,
    FLOAT,
    INT,
    SCALAR,
    Pattern,
    TensorType,
    define_composite,
    define_op,
    one_of,
    optional,
)
from ember.compiler.ops.rules import (
    broadcast_shapes,
    compare,
    elementwise,
    is_tensor,
    require_float,
    shape_of,
)
from ember.runtime.errors import ArgumentError, DTypeError

E = Pattern.ELEMWISE
B = Pattern.BROADCAST


def quiet(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run a reference with numpy's floating-point warnings off (IEEE results are the semantics)."""

    def run(xp: Any, *args: Any, **attrs: Any) -> Any:
        with np.errstate(all="ignore"):
            return fn(xp, *args, **attrs)

    run.__name__ = getattr(fn, "__name__", "reference")
    run.__module__ = __name__
    return run


def _np_fn(name: str, warns: bool = True) -> Callable[..., Any]:
    """The numpy function ``name`` as a reference; ``warns=False`` for functions that never raise
    floating-point warnings (comparisons, logic, abs, floor, ...), which skips the ~5 us of errstate."""

    def ref(xp: Any, *arrays: Any) -> Any:
        return getattr(xp, name)(*_torch_scalars(arrays))

    ref.__module__ = __name__
    return quiet(ref) if warns else ref


def _as_float(v: Any) -> Any:
    """Integer and bool arrays enter floating-point ufuncs as float32, as in PyTorch (numpy would pick
    float16 for bool/int8/uint8 and float64 for int64)."""
    dt = getattr(v, "dtype", None)
    return v.astype(np.float32) if dt is not None and dt.kind in "biu" else v


def _torch_scalars(args: tuple[Any, ...]) -> tuple[Any, ...]:
    """Python ints meeting integer arrays wrap around like PyTorch's (uint8 - 2), where numpy would
    refuse an out-of-range Python int; so they enter as int64 and the dispatcher casts the result back.
    Bool arrays in floating-point ufuncs would compute in float16 in numpy: they enter as float32."""
    if not any(type(a) is int for a in args) and not any(getattr(a, "dtype", None) == np.bool_ for a in args):
        return args
    if any(getattr(a, "dtype", np.dtype(np.int8)).kind == "f" or type(a) is float for a in args):
        return tuple(a.astype(np.float32) if getattr(a, "dtype", None) == np.bool_ else a for a in args)
    return tuple(np.int64(a) if type(a) is int else a for a in args)


def _zeros_like(b: Any, g: Any, x: Any) -> Any:
    """The gradient of a piecewise-constant op (floor, sign, ...): zeros, as in PyTorch."""
    return b.full(shape=tuple(x.shape), value=0.0, dtype=g.dtype)


def _type_name(dt: DType) -> str:
    return {"float32": "Float", "float64": "Double", "float16": "Half", "int64": "Long", "int32": "Int",
            "int16": "Short", "int8": "Char", "uint8": "Byte", "bool": "Bool"}[dt.name]


# ---- type rules ---------------------------------------------------------------------------------


def _binary_infer(name: str, to_float: bool = False) -> Callable[..., TensorType]:
    def infer(a: Any, b: Any) -> TensorType:
        return elementwise(name, a, b, to_float=to_float)

    return infer


def _unary_float(name: str) -> Callable[..., TensorType]:
    def infer(x: Any) -> TensorType:
        return elementwise(name, x, to_float=True)

    return infer


def _unary_same(name: str, allow_bool: bool = False, allow_int: bool = True) -> Callable[..., TensorType]:
    def infer(x: Any, **_: Any) -> TensorType:
        cat = x.dtype.category
        if (cat == BOOL and not allow_bool) or (cat == INTEGRAL and not allow_int):
            raise DTypeError(f"{name}: \"{name}_cpu\" not implemented for '{_type_name(x.dtype)}'")
        return TensorType(shape_of(x), x.dtype)

    return infer


def _neg_infer(x: Any) -> TensorType:
    if x.dtype.category == BOOL:
        raise DTypeError(
            "neg: Negation, the `-` operator, on a bool tensor is not supported. If you are trying to invert"
            " a mask, use the `~` or `logical_not()` operator instead."
        )
    return TensorType(shape_of(x), x.dtype)


# ---- arithmetic ---------------------------------------------------------------------------------


def _grad_to(b: Any, g: Any, like: Any) -> Any:
    """A broadcast gradient, reduced and cast back to an operand (None for Python scalars)."""
    if not is_tensor(like):
        return None
    return b.sum_to(b.cast_like(g, like), like)


add = define_op(
    "add", pattern=B, inputs=("input", "other"), infer=_binary_infer("add"),
    reference=_np_fn("add"),
    vjp=lambda b, g, out, x, y: [_grad_to(b, g, x), _grad_to(b, g, y)],
    saves=(), lowering={"scalar": lambda e, a, b: e.add(a, b)}, inplace=True,
)


def _sub(b: Any, x: Any, y: Any) -> Any:
    """x - y is x + (-y): one primitive fewer for passes and kernels to know."""
    bools = [v for v in (x, y) if (is_tensor(v) and v.dtype is bool_) or isinstance(v, bool)]
    if len(bools) == 2:
        raise DTypeError(
            "sub: Subtraction, the `-` operator, with two bool tensors is not supported. Use the `^` or"
            " `logical_xor()` operator instead."
        )
    if bools:
        raise DTypeError(
            "sub: Subtraction, the `-` operator, with a bool tensor is not supported. If you are trying to"
            " invert a mask, use the `~` or `logical_not()` operator instead."
        )
    if is_tensor(x) and is_tensor(y):
        broadcast_shapes("sub", shape_of(x), shape_of(y))  # so a mismatch names sub, not add
    if not is_tensor(y):
        return b.add(x, -y)
    if not is_tensor(x):
        return b.add(b.neg(y), x)
    return b.add(x, b.neg(y))


sub = define_composite("sub", inputs=("input", "other"), decompose=_sub, inplace=True)

mul = define_op(
    "mul", pattern=B, inputs=("input", "other"), infer=_binary_infer("mul"),
    reference=_np_fn("multiply"),
    vjp=lambda b, g, out, x, y: [_grad_to(b, b.mul(g, y), x) if is_tensor(x) else None,
                                 _grad_to(b, b.mul(g, x), y) if is_tensor(y) else None],
    saves=(0, 1), lowering={"scalar": lambda e, a, b: e.mul(a, b)}, inplace=True,
)


def _div_infer(a: Any, b: Any, rounding_mode: str | None) -> TensorType:
    return elementwise("div", a, b, to_float=rounding_mode is None)


def _kind(v: Any) -> str:
    """The dtype kind of an array on any device, or of a Python scalar (no host copy of device arrays)."""
    dt = getattr(v, "dtype", None)
    return dt.kind if dt is not None else np.asarray(v).dtype.kind


def _check_int_divisor(op: str, b: Any) -> None:
    """Integer division by zero is an error in PyTorch (numpy would warn and return 0)."""
    if _kind(b) in "iub" and not bool((b != 0).all() if hasattr(b, "all") else b):
        raise ArgumentError(f"{op}: ZeroDivisionError (integer division by zero)")


@quiet
def _div_ref(xp: Any, a: Any, b: Any, rounding_mode: str | None) -> Any:
    a, b = _torch_scalars((a, b))
    if rounding_mode is None:
        if all(getattr(v, "dtype", np.dtype(np.int8)).kind != "f" for v in (a, b)):
            a, b = _as_float(a), _as_float(b)
        return xp.true_divide(a, b)
    ints = all(_kind(v) in "iub" for v in (a, b))
    if ints:
        _check_int_divisor("div", b)
        q = xp.floor_divide(a, b)
        if rounding_mode == "trunc":  # floor and trunc differ where the exact quotient is negative
            q = q + ((xp.remainder(a, b) != 0) & ((a < 0) ^ (b < 0)))
        return q
    q = xp.true_divide(a, b)
    return xp.trunc(q) if rounding_mode == "trunc" else xp.floor(q)


def _div_vjp(b: Any, g: Any, out: Any, x: Any, y: Any, rounding_mode: str | None) -> list[Any]:
    if rounding_mode is not None:  # piecewise constant: PyTorch's gradient is zero
        return [_zeros_like(b, g, v) if is_tensor(v) else None for v in (x, y)]
    gx = _grad_to(b, b.div(g, y), x)
    gy = _grad_to(b, b.neg(b.div(b.mul(g, out), y)), y) if is_tensor(y) else None
    return [gx, gy]


div = define_op(
    "div", pattern=B, inputs=("input", "other"),
    attrs={"rounding_mode": (optional(one_of("trunc", "floor")), None)},
    infer=_div_infer, reference=_div_ref, vjp=_div_vjp,
    lowering={"scalar": lambda e, a, b, rounding_mode: e.div(a, b, rounding_mode)}, inplace=True,
)

neg = define_op(
    "neg", pattern=E, infer=_neg_infer, reference=_np_fn("negative", warns=False),
    vjp=lambda b, g, out, x: [b.neg(g)], saves=(), lowering={"scalar": lambda e, x: e.neg(x)},
    inplace=True,
)


@quiet
def _pow_ref(xp: Any, a: Any, b: Any) -> Any:
    ints = all(_kind(v) in "iub" for v in (a, b))
    if ints and bool(xp.any(xp.asarray(b) < 0)):
        raise ArgumentError("pow: Integers to negative integer powers are not allowed.")
    return xp.power(a, b)


def _pow_vjp(b: Any, g: Any, out: Any, x: Any, y: Any) -> list[Any]:
    gx = gy = None
    if is_tensor(x):
        if is_tensor(y):
            gx = b.where(b.eq(y, 0), 0.0, b.mul(b.mul(g, y), b.pow(x, b.sub(y, 1))))
        else:
            gx = _zeros_like(b, g, x) if y == 0 else b.mul(b.mul(g, y), b.pow(x, y - 1))
        gx = _grad_to(b, gx, x)
    if is_tensor(y):
        if is_tensor(x):
            at_zero = b.logical_and(b.eq(x, 0), b.ge(y, 0))  # 0 ** y: PyTorch's gradient is 0 there
            gy = b.where(at_zero, 0.0, b.mul(b.mul(g, out), b.log(x)))
        else:
            log_x = math.log(x) if x > 0 else (0.0 if x == 0 else math.nan)
            gy = b.mul(b.mul(g, out), log_x)
        gy = _grad_to(b, gy, y)
    return [gx, gy]


pow_ = define_op(
    "pow", pattern=B, inputs=("input", "exponent"), infer=_binary_infer("pow"), reference=_pow_ref,
    vjp=_pow_vjp, lowering={"scalar": lambda e, a, b: e.pow(a, b)}, inplace=True,
)


def _atan2_vjp(b: Any, g: Any, out: Any, y: Any, x: Any) -> list[Any]:
    r2 = b.add(b.mul(x, x), b.mul(y, y))
    return [_grad_to(b, b.div(b.mul(g, x), r2), y), _grad_to(b, b.neg(b.div(b.mul(g, y), r2)), x)]


atan2 = define_op(
    "atan2", pattern=B, inputs=("input", "other"), infer=_binary_infer("atan2", to_float=True),
    reference=quiet(lambda xp, a, b: xp.arctan2(*[_as_float(v) for v in (a, b)])),
    vjp=_atan2_vjp,
    lowering={"scalar": lambda e, a, b: e.atan2(a, b)}, inplace=True,
)


def _modulo(name: str, np_name: str, rounding: str) -> Any:
    @quiet
    def ref(xp: Any, a: Any, b: Any) -> Any:
        if all(_kind(v) in "iub" for v in (a, b)):
            _check_int_divisor(name, b)
        return getattr(xp, np_name)(a, b)

    def vjp(b: Any, g: Any, out: Any, x: Any, y: Any) -> list[Any]:
        gy = None
        if is_tensor(y):  # d/dy (x - q*y) with q = round(x / y) held constant
            gy = _grad_to(b, b.neg(b.mul(g, b.div(x, y, rounding_mode=rounding))), y)
        return [_grad_to(b, g, x), gy]

    def infer(a: Any, b: Any) -> TensorType:
        out = elementwise(name, a, b)
        if out.dtype is bool_:
            raise DTypeError(f"{name}: \"{name}_cpu\" not implemented for 'Bool'")
        return out

    return define_op(
        name, pattern=B, inputs=("input", "other"), infer=infer, reference=ref, vjp=vjp,
        lowering={"scalar": lambda e, a, b: getattr(e, name)(a, b)}, inplace=True,
    )


fmod = _modulo("fmod", "fmod", "trunc")
remainder = _modulo("remainder", "remainder", "floor")


def _extremum(name: str, np_name: str, winner: str) -> Any:
    def vjp(b: Any, g: Any, out: Any, x: Any, y: Any) -> list[Any]:
        # ties split the gradient evenly, as PyTorch does
        half = b.mul(g, 0.5)
        gx = b.where(getattr(b, winner)(x, y), g, b.where(b.eq(x, y), half, 0.0))
        gy = b.where(getattr(b, winner)(y, x), g, b.where(b.eq(x, y), half, 0.0))
        return [_grad_to(b, gx, x), _grad_to(b, gy, y)]

    return define_op(
        name, pattern=B, inputs=("input", "other"), infer=_binary_infer(name),
        reference=_np_fn(np_name, warns=False),
        vjp=vjp, lowering={"scalar": lambda e, a, b: getattr(e, name[:3])(a, b)},
    )


maximum = _extremum("maximum", "maximum", "gt")
minimum = _extremum("minimum", "minimum", "lt")

# ---- unary math ---------------------------------------------------------------------------------

# name -> (numpy function, vjp written with the builder, what the vjp reads, lowering)
_UNARY_FLOAT: dict[str, tuple[str, Callable[..., Any], tuple[Any, ...], Callable[..., Any]]] = {
    "exp": ("exp", lambda b, g, out, x: [b.mul(g, out)], ("out",), lambda e, x: e.exp(x)),
    "expm1": ("expm1", lambda b, g, out, x: [b.mul(g, b.add(out, 1.0))], ("out",), lambda e, x: e.expm1(x)),
    "log": ("log", lambda b, g, out, x: [b.div(g, x)], (0,), lambda e, x: e.log(x)),
    "log1p": ("log1p", lambda b, g, out, x: [b.div(g, b.add(x, 1.0))], (0,), lambda e, x: e.log1p(x)),
    "log2": ("log2", lambda b, g, out, x: [b.div(g, b.mul(x, math.log(2.0)))], (0,), lambda e, x: e.log2(x)),
    "sqrt": ("sqrt", lambda b, g, out, x: [b.div(g, b.mul(out, 2.0))], ("out",), lambda e, x: e.sqrt(x)),
    "rsqrt": (None, lambda b, g, out, x: [b.mul(b.mul(g, -0.5), b.mul(out, b.mul(out, out)))], ("out",),
              lambda e, x: e.rsqrt(x)),
    "reciprocal": ("reciprocal", lambda b, g, out, x: [b.neg(b.mul(g, b.mul(out, out)))], ("out",),
                   lambda e, x: e.div(e.one(x), x)),
    "sin": ("sin", lambda b, g, out, x: [b.mul(g, b.cos(x))], (0,), lambda e, x: e.sin(x)),
    "cos": ("cos", lambda b, g, out, x: [b.neg(b.mul(g, b.sin(x)))], (0,), lambda e, x: e.cos(x)),
    "tan": ("tan", lambda b, g, out, x: [b.mul(g, b.add(b.mul(out, out), 1.0))], ("out",),
            lambda e, x: e.tan(x)),
    "asin": ("arcsin", lambda b, g, out, x: [b.mul(g, b.rsqrt(b.sub(1.0, b.mul(x, x))))], (0,),
             lambda e, x: e.asin(x)),
    "acos": ("arccos", lambda b, g, out, x: [b.neg(b.mul(g, b.rsqrt(b.sub(1.0, b.mul(x, x)))))], (0,),
             lambda e, x: e.acos(x)),
    "atan": ("arctan", lambda b, g, out, x: [b.div(g, b.add(b.mul(x, x), 1.0))], (0,),
             lambda e, x: e.atan(x)),
    "sinh": ("sinh", lambda b, g, out, x: [b.mul(g, b.cosh(x))], (0,), lambda e, x: e.sinh(x)),
    "cosh": ("cosh", lambda b, g, out, x: [b.mul(g, b.sinh(x))], (0,), lambda e, x: e.cosh(x)),
    "tanh": ("tanh", lambda b, g, out, x: [b.mul(g, b.sub(1.0, b.mul(out, out)))], ("out",),
             lambda e, x: e.tanh(x)),
}


def _float_ref(np_name: str | None) -> Callable[..., Any]:
    if np_name is None:  # rsqrt
        return quiet(lambda xp, x: 1.0 / xp.sqrt(x if x.dtype.kind == "f" else x.astype(np.float32)))
    return quiet(lambda xp, x: getattr(xp, np_name)(x if x.dtype.kind == "f" else x.astype(np.float32)))


for _name, (_np_name, _vjp, _saves, _low) in _UNARY_FLOAT.items():
    define_op(_name, pattern=E, infer=_unary_float(_name), reference=_float_ref(_np_name), vjp=_vjp,
              saves=_saves, lowering={"scalar": _low}, inplace=True)


@quiet
def _sigmoid_ref(xp: Any, x: Any) -> Any:
    # split by sign so neither branch overflows
    x = x if x.dtype.kind == "f" else x.astype("float32")
    ex = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1 / (1 + ex), ex / (1 + ex)).astype(x.dtype, copy=False)


sigmoid = define_op(
    "sigmoid", pattern=E, infer=_unary_float("sigmoid"), reference=_sigmoid_ref,
    vjp=lambda b, g, out, x: [b.mul(g, b.mul(out, b.sub(1.0, out)))], saves=("out",),
    lowering={"scalar": lambda e, x: e.sigmoid(x)}, inplace=True,
)

abs_ = define_op(
    "abs", pattern=E, infer=_unary_same("abs"), reference=_np_fn("abs", warns=False),
    vjp=lambda b, g, out, x: [b.mul(g, b.sign(x))], saves=(0,),
    lowering={"scalar": lambda e, x: e.abs(x)}, inplace=True,
)

sign = define_op(
    "sign", pattern=E, infer=_unary_same("sign", allow_bool=True),
    reference=lambda xp, x: x.copy() if x.dtype == np.bool_ else xp.sign(x),
    vjp=lambda b, g, out, x: [_zeros_like(b, g, x)], saves=(),
    lowering={"scalar": lambda e, x: e.sign(x)}, inplace=True,
)


def _rounding(name: str, np_name: str) -> Any:
    """floor, ceil, trunc: identity on integers, zero gradient on floats."""
    return define_op(
        name, pattern=E, infer=_unary_same(name), reference=_np_fn(np_name, warns=False),
        vjp=lambda b, g, out, x: [_zeros_like(b, g, x)], saves=(),
        lowering={"scalar": lambda e, x: getattr(e, name)(x)}, inplace=True,
    )


floor = _rounding("floor", "floor")
ceil = _rounding("ceil", "ceil")
trunc = _rounding("trunc", "trunc")

round_ = define_op(
    "round", pattern=E, attrs={"decimals": (INT, 0)}, infer=_unary_same("round"),
    reference=quiet(lambda xp, x, decimals: xp.round(x, decimals)),
    vjp=lambda b, g, out, x, decimals: [_zeros_like(b, g, x)], saves=(),
    lowering={"scalar": lambda e, x, decimals: e.round(x, decimals)}, inplace=True,
)

frac = define_op(
    "frac", pattern=E, infer=_unary_same("frac", allow_int=False),
    reference=quiet(lambda xp, x: x - xp.trunc(x)),
    vjp=lambda b, g, out, x: [g], saves=(),
    lowering={"scalar": lambda e, x: e.sub(x, e.trunc(x))}, inplace=True,
)

# ---- activations and piecewise -------------------------------------------------------------------

relu = define_op(
    "relu", pattern=E, infer=_unary_same("relu"), reference=lambda xp, x: xp.maximum(x, 0),
    vjp=lambda b, g, out, x: [b.where(b.gt(out, 0), g, 0.0)], saves=("out",),
    lowering={"scalar": lambda e, x: e.max(x, e.zero(x))}, inplace=True,
)

# ---- comparisons, predicates and logic -----------------------------------------------------------


def _compare(name: str, fn: str) -> None:
    define_op(
        name, pattern=B, inputs=("input", "other"),
        infer=lambda a, b, _n=name: compare(_n, a, b),
        reference=_np_fn(fn, warns=False), vjp=None, differentiable=False,
        lowering={"scalar": lambda e, a, b, _n=name: e.cmp(_n, a, b)},
    )


for _name, _fn in (("eq", "equal"), ("ne", "not_equal"), ("gt", "greater"), ("ge", "greater_equal"),
                   ("lt", "less"), ("le", "less_equal")):
    _compare(_name, _fn)


def _predicate(name: str, np_name: str, lower: Callable[..., Any]) -> None:
    define_op(
        name, pattern=E, infer=lambda x: TensorType(shape_of(x), bool_),
        reference=_np_fn(np_name, warns=False),
        vjp=None, differentiable=False, lowering={"scalar": lower},
    )


_predicate("isnan", "isnan", lambda e, x: e.isnan(x))
_predicate("isinf", "isinf", lambda e, x: e.isinf(x))
_predicate("isfinite", "isfinite", lambda e, x: e.not_(e.or_(e.isnan(x), e.isinf(x))))
_predicate("logical_not", "logical_not", lambda e, x: e.not_(e.cmp("ne", x, e.zero(x))))

for _name, _low in (("logical_and", "and_"), ("logical_or", "or_"), ("logical_xor", "xor")):
    define_op(
        _name, pattern=B, inputs=("input", "other"),
        infer=lambda a, b, _n=_name: compare(_n, a, b), reference=_np_fn(_name, warns=False), vjp=None,
        differentiable=False, inplace=True,
        lowering={"scalar": lambda e, a, b, _l=_low: getattr(e, _l)(e.cmp("ne", a, e.zero(a)),
                                                                   e.cmp("ne", b, e.zero(b)))},
    )


def _bitwise_infer(name: str) -> Callable[..., TensorType]:
    def infer(*xs: Any) -> TensorType:
        for x in xs:
            dt = x.dtype if is_tensor(x) else (bool_ if isinstance(x, bool) else None)
            if (dt is not None and dt.category == FLOATING) or isinstance(x, float):
                shown = _type_name(dt) if dt is not None else "Float"
                raise DTypeError(f"{name}: \"{name}_cpu\" not implemented for '{shown}'")
        return elementwise(name, *xs)

    return infer


for _name, _np_name, _low in (("bitwise_and", "bitwise_and", "and_"), ("bitwise_or", "bitwise_or", "or_"),
                              ("bitwise_xor", "bitwise_xor", "xor")):
    define_op(
        _name, pattern=B, inputs=("input", "other"), infer=_bitwise_infer(_name),
        reference=_np_fn(_np_name, warns=False),
        vjp=None, differentiable=False, inplace=True,
        lowering={"scalar": lambda e, a, b, _l=_low: getattr(e, _l)(a, b)},
    )

bitwise_not = define_op(
    "bitwise_not", pattern=E, infer=_bitwise_infer("bitwise_not"), reference=_np_fn("invert", warns=False),
    vjp=None,
    differentiable=False, inplace=True, lowering={"scalar": lambda e, x: e.not_(x)},
)

# ---- selection and conversion -------------------------------------------------------------------


def _where_infer(cond: Any, a: Any, b: Any) -> TensorType:
    if cond.dtype is not bool_:
        raise DTypeError(f"where: expected condition to be a boolean tensor, but got a tensor with dtype"
                         f" {_type_name(cond.dtype)}")
    t = elementwise("where", a, b)
    return TensorType(broadcast_shapes("where", shape_of(cond), t.shape), t.dtype)


where = define_op(
    "where", pattern=B, inputs=("condition", "input", "other"), infer=_where_infer,
    reference=lambda xp, c, a, b: xp.where(c, a, b),
    vjp=lambda b, g, out, c, x, y: [None, _grad_to(b, b.where(c, g, 0.0), x),
                                    _grad_to(b, b.where(c, 0.0, g), y)],
    saves=(0,), lowering={"scalar": lambda e, c, a, b: e.select(c, a, b)}, method=False,
)


def _cast_infer(x: Any, dtype: DType) -> TensorType:
    return TensorType(shape_of(x), dtype)


cast = define_op(
    "cast", pattern=E, attrs={"dtype": DTYPE}, infer=_cast_infer,
    reference=quiet(lambda xp, x, dtype: x.astype(dtype.np)),
    vjp=lambda b, g, out, x, dtype: [b.cast(g, dtype=x.dtype) if x.dtype.is_floating_point else None],
    saves=(), lowering={"scalar": lambda e, x, dtype: e.cast(x, dtype)}, method=False, function=False,
)

clone = define_op(
    "clone", pattern=E, infer=_unary_same("clone", allow_bool=True),
    reference=lambda xp, x: xp.array(x, copy=True),
    vjp=lambda b, g, out, x: [g], saves=(), lowering={"scalar": lambda e, x: x},
)

# ---- composites ---------------------------------------------------------------------------------


def _clamp(b: Any, x: Any, min: Any = None, max: Any = None) -> Any:  # noqa: A002  (PyTorch's names)
    """where-based, so the gradient passes at the bounds themselves (x == min), as in PyTorch."""
    if min is None and max is None:
        raise ArgumentError("clamp: At least one of 'min' or 'max' must not be None")
    out = x
    if min is not None:
        out = b.where(b.lt(out, min), min, out)
    if max is not None:
        out = b.where(b.gt(out, max), max, out)
    if out is x:
        out = b.clone(x)
    return out


clamp = define_composite("clamp", inputs=("input", "min", "max"), decompose=_clamp, inplace=True)


def _addcmul(b: Any, x: Any, t1: Any, t2: Any, value: Any) -> Any:
    prod = b.mul(t1, t2)
    return b.add(x, prod if value == 1 else b.mul(prod, value))


def _addcdiv(b: Any, x: Any, t1: Any, t2: Any, value: Any) -> Any:
    if all(is_tensor(t) and t.dtype.category != FLOATING for t in (t1, t2)):
        raise DTypeError("addcdiv: Integer division with addcdiv is no longer supported, and in a future"
                         " release addcdiv will perform a true division of tensor1 and tensor2.")
    quot = b.div(t1, t2)
    return b.add(x, quot if value == 1 else b.mul(quot, value))


addcmul = define_composite("addcmul", inputs=("input", "tensor1", "tensor2"), attrs={"value": (SCALAR, 1)},
                           decompose=_addcmul, inplace=True)
addcdiv = define_composite("addcdiv", inputs=("input", "tensor1", "tensor2"), attrs={"value": (SCALAR, 1)},
                           decompose=_addcdiv, inplace=True)


def _lerp(b: Any, x: Any, end: Any, weight: Any) -> Any:
    require_float("lerp", x, end)
    return b.add(x, b.mul(weight, b.sub(end, x)))


lerp = define_composite("lerp", inputs=("input", "end", "weight"), decompose=_lerp, inplace=True)


def _isclose(b: Any, a: Any, other: Any, rtol: float, atol: float, equal_nan: bool) -> Any:
    if is_tensor(a) and is_tensor(other) and a.dtype is not other.dtype:
        raise DTypeError(f"isclose: {a.dtype} did not match {other.dtype}")
    if not (a.dtype.is_floating_point):
        return b.eq(a, other)
    # infinities are close only to themselves (the eq below); |inf - x| <= inf must not count
    within = b.le(b.abs(b.sub(a, other)), b.add(b.mul(b.abs(other), rtol), atol))
    near = b.logical_and(within, b.isfinite(other))
    close = b.logical_or(b.eq(a, other), near)
    if equal_nan:
        close = b.logical_or(close, b.logical_and(b.isnan(a), b.isnan(other)))
    return close


isclose = define_composite(
    "isclose", inputs=("input", "other"), decompose=_isclose,
    attrs={"rtol": (FLOAT, 1e-05), "atol": (FLOAT, 1e-08), "equal_nan": (BOOL_ATTR, False)},
)

__all__ = ["add", "sub", "mul", "div", "neg", "pow_", "where", "cast", "clone", "clamp", "quiet",
           "require_float"]
