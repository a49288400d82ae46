"""Elementwise and broadcasting ops: arithmetic, math functions, comparisons, where, cast.

Lowering: ``lowering["scalar"]`` is a function ``(e, *operands, **attrs) -> expr`` over the kernel-IR
expression builder ``e``; the LLVM and CUDA back ends share it.
"""

from __future__ import annotations

from typing import Any

from ember.compiler.dtypes import DType, bool_
from ember.compiler.ops.registry import DTYPE, Pattern, TensorType, define_op
from ember.compiler.ops.rules import compare, elementwise, reject_bool, require_float, shape_of

E = Pattern.ELEMWISE
B = Pattern.BROADCAST


def _binary_infer(name: str, to_float: bool = False):
    def infer(a: Any, b: Any) -> TensorType:
        return elementwise(name, a, b, to_float=to_float)

    return infer


def _unary_float(name: str):
    def infer(x: Any) -> TensorType:
        return elementwise(name, x, to_float=True)

    return infer


def _unary_same(name: str, allow_bool: bool = False):
    def infer(x: Any) -> TensorType:
        if not allow_bool:
            reject_bool(name, x)
        return TensorType(shape_of(x), x.dtype)

    return infer


# ---- arithmetic ---------------------------------------------------------------------------------

add = define_op(
    "add", pattern=B, inputs=("input", "other"), infer=_binary_infer("add"),
    reference=lambda xp, a, b: xp.add(a, b),
    vjp=lambda b, g, out, x, y: [b.sum_to(b.cast_like(g, x), x), b.sum_to(b.cast_like(g, y), y)],
    saves=(), lowering={"scalar": lambda e, a, b: e.add(a, b)}, inplace=True,
)

sub = define_op(
    "sub", pattern=B, inputs=("input", "other"), infer=_binary_infer("sub"),
    reference=lambda xp, a, b: xp.subtract(a, b),
    vjp=lambda b, g, out, x, y: [b.sum_to(b.cast_like(g, x), x), b.sum_to(b.cast_like(b.neg(g), y), y)],
    saves=(), lowering={"scalar": lambda e, a, b: e.sub(a, b)}, inplace=True,
)

mul = define_op(
    "mul", pattern=B, inputs=("input", "other"), infer=_binary_infer("mul"),
    reference=lambda xp, a, b: xp.multiply(a, b),
    vjp=lambda b, g, out, x, y: [b.sum_to(b.cast_like(b.mul(g, y), x), x),
                                 b.sum_to(b.cast_like(b.mul(g, x), y), y)],
    lowering={"scalar": lambda e, a, b: e.mul(a, b)}, inplace=True,
)

div = define_op(
    "div", pattern=B, inputs=("input", "other"), infer=_binary_infer("div", to_float=True),
    reference=lambda xp, a, b: xp.true_divide(a, b),
    vjp=lambda b, g, out, x, y: [b.sum_to(b.cast_like(b.div(g, y), x), x),
                                 b.sum_to(b.cast_like(b.neg(b.div(b.mul(g, out), y)), y), y)],
    lowering={"scalar": lambda e, a, b: e.div(a, b)}, inplace=True,
)

neg = define_op(
    "neg", pattern=E, infer=_unary_same("neg"), reference=lambda xp, x: xp.negative(x),
    vjp=lambda b, g, out, x: [b.neg(g)], saves=(), lowering={"scalar": lambda e, x: e.neg(x)},
    inplace=True,
)

# ---- transcendental ------------------------------------------------------------------------------

exp = define_op(
    "exp", pattern=E, infer=_unary_float("exp"), reference=lambda xp, x: xp.exp(x),
    vjp=lambda b, g, out, x: [b.mul(g, out)], saves=("out",),
    lowering={"scalar": lambda e, x: e.exp(x)}, inplace=True,
)

log = define_op(
    "log", pattern=E, infer=_unary_float("log"), reference=lambda xp, x: xp.log(x),
    vjp=lambda b, g, out, x: [b.div(g, x)], saves=(0,),
    lowering={"scalar": lambda e, x: e.log(x)}, inplace=True,
)

tanh = define_op(
    "tanh", pattern=E, infer=_unary_float("tanh"), reference=lambda xp, x: xp.tanh(x),
    vjp=lambda b, g, out, x: [b.mul(g, b.sub(1.0, b.mul(out, out)))], saves=("out",),
    lowering={"scalar": lambda e, x: e.tanh(x)}, inplace=True,
)


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

# ---- activations and piecewise -------------------------------------------------------------------

relu = define_op(
    "relu", pattern=E, infer=_unary_same("relu"), reference=lambda xp, x: xp.maximum(x, 0),
    vjp=lambda b, g, out, x: [b.where(b.gt(out, 0), g, 0.0)], saves=("out",),
    lowering={"scalar": lambda e, x: e.max(x, e.zero(x))}, inplace=True,
)

# ---- comparisons and selection ------------------------------------------------------------------


def _compare(name: str, fn: str) -> None:
    define_op(
        name, pattern=B, inputs=("input", "other"),
        infer=lambda a, b, _n=name: compare(_n, a, b),
        reference=lambda xp, a, b, _f=fn: getattr(xp, _f)(a, b),
        vjp=None, differentiable=False,
        lowering={"scalar": lambda e, a, b, _n=name: e.cmp(_n, a, b)},
    )


for _name, _fn in (("eq", "equal"), ("ne", "not_equal"), ("gt", "greater"), ("ge", "greater_equal"),
                   ("lt", "less"), ("le", "less_equal")):
    _compare(_name, _fn)


def _where_infer(cond: Any, a: Any, b: Any) -> TensorType:
    if cond.dtype is not bool_:
        from ember.runtime.errors import DTypeError

        raise DTypeError(f"where: condition must be a bool tensor, got {cond.dtype}")
    t = elementwise("where", a, b)
    from ember.compiler.ops.rules import broadcast_shapes

    return TensorType(broadcast_shapes("where", shape_of(cond), t.shape), t.dtype)


where = define_op(
    "where", pattern=B, inputs=("condition", "input", "other"), infer=_where_infer,
    reference=lambda xp, c, a, b: xp.where(c, a, b),
    vjp=lambda b, g, out, c, x, y: [None, b.sum_to(b.where(c, g, 0.0), x), b.sum_to(b.where(c, 0.0, g), y)],
    saves=(0,), lowering={"scalar": lambda e, c, a, b: e.select(c, a, b)}, method=False,
)


def _cast_infer(x: Any, dtype: DType) -> TensorType:
    return TensorType(shape_of(x), dtype)


cast = define_op(
    "cast", pattern=E, attrs={"dtype": DTYPE}, infer=_cast_infer,
    reference=lambda xp, x, dtype: x.astype(dtype.np),
    vjp=lambda b, g, out, x, dtype: [b.cast(g, dtype=x.dtype) if x.dtype.is_floating_point else None],
    saves=(), lowering={"scalar": lambda e, x, dtype: e.cast(x, dtype)}, method=False, function=False,
)

__all__ = ["add", "sub", "mul", "div", "neg", "exp", "log", "tanh", "sigmoid", "relu", "where", "cast",
           "require_float"]

clone = define_op(
    "clone", pattern=E, infer=_unary_same("clone", allow_bool=True), reference=lambda xp, x: xp.array(x, copy=True),
    vjp=lambda b, g, out, x: [g], saves=(), lowering={"scalar": lambda e, x: x},
)
