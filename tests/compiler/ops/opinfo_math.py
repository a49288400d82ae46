"""OpInfo-style sample table for the math op families (elementwise, reduce, sorting) and the runners the
test files share: forward vs torch, gradient vs torch, gradient vs float64 finite differences, second
order. A registry op from these modules without a sample fails ``test_every_op_has_samples``.

A ``Case`` calls ``ember.<api>`` and ``torch.<api>`` with the same arguments (numpy arrays become
tensors; Python scalars pass through; string ``dtype`` arguments become each library's dtype), unless
``call`` gives one lambda used for both (written against the module it receives).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import ember
import numpy as np
import torch
from ember.compiler.ops import REGISTRY
from ember.testing import assert_close, gradcheck, gradgradcheck

MODULES = ("elementwise", "reduce", "sorting")
_RNG = np.random.default_rng(1234)

# ops only reachable through another op; the covering op's cases exercise them (gradients included)
COVERED_BY = {"take_along_dim_backward": "take_along_dim", "median_index": "median", "mode_index": "mode"}


@dataclass
class Case:
    op: str  # the registry op this case covers
    args: tuple[Any, ...]  # numpy arrays (tensors) or Python scalars
    kwargs: dict[str, Any] = field(default_factory=dict)
    api: str | None = None  # ember.<api> / torch.<api>; default: op
    call: Callable[..., Any] | None = None  # call(lib, *tensors, **kwargs), same code for both libs
    grad: bool = True  # check gradients (when a float input exists)
    fd: bool = True  # also vs finite differences (False at kinks, e.g. x == min)
    torch_grad: bool = True  # torch has this derivative (not for remainder(Scalar, Tensor))
    gradgrad: bool = False  # check second order too
    rtol: float | None = None
    atol: float | None = None

    def __str__(self) -> str:
        def show(a: Any) -> str:
            return f"{a.dtype.name}{list(a.shape)}" if isinstance(a, np.ndarray) else repr(a)

        kw = ",".join(f"{k}={v}" for k, v in self.kwargs.items())
        return f"{self.op}({','.join(map(show, self.args))}{',' if kw else ''}{kw})"


# ---- input makers --------------------------------------------------------------------------------


def f(*shape: int, lo: float = -2.0, hi: float = 2.0, dtype: str = "float32") -> np.ndarray:
    return _RNG.uniform(lo, hi, size=shape).astype(dtype)


def d(*shape: int, lo: float = -2.0, hi: float = 2.0) -> np.ndarray:
    return f(*shape, lo=lo, hi=hi, dtype="float64")


def i(*shape: int, lo: int = -5, hi: int = 6) -> np.ndarray:
    return _RNG.integers(lo, hi, size=shape).astype(np.int64)


def bl(*shape: int) -> np.ndarray:
    return _RNG.integers(0, 2, size=shape).astype(bool)


def distinct(*shape: int, dtype: str = "float32") -> np.ndarray:
    """Values without ties, so index results are unambiguous."""
    n = int(np.prod(shape)) if shape else 1
    return (_RNG.permutation(n).astype(dtype) * 0.5 - n / 4).reshape(shape)


SPECIAL = np.array([0.0, math.nan, math.inf, -math.inf, 1.5, -2.0], dtype=np.float32)

# ---- the table ------------------------------------------------------------------------------------

CASES: list[Case] = []


def add(*cases: Case) -> None:
    CASES.extend(cases)


def unary(
    op: str,
    lo: float = -2.0,
    hi: float = 2.0,
    ints: bool = True,
    bools: bool = False,
    smooth: bool = False,
    **kw: Any,
) -> None:
    add(
        Case(op, (f(3, 4, lo=lo, hi=hi),), gradgrad=smooth, **kw),
        Case(op, (d(2, 3, lo=lo, hi=hi),), gradgrad=smooth, **kw),
        Case(op, (f(lo=lo, hi=hi),), **kw),
        Case(op, (f(0, 3, lo=lo, hi=hi),), **kw),
    )
    if ints:
        add(Case(op, (i(5, lo=max(int(math.ceil(lo)), -5), hi=min(int(hi), 5) + 1),), **kw))
    if bools:
        add(Case(op, (bl(4),), **kw))


for _op in ("exp", "sin", "cos", "atan", "sinh", "cosh", "tanh", "sigmoid", "expm1"):
    unary(_op, smooth=True)
for _op in ("log", "log2", "sqrt", "rsqrt"):
    unary(_op, lo=0.3, hi=3.0, smooth=True)
unary("log1p", lo=-0.5, hi=2.0, smooth=True)
unary("reciprocal", lo=0.4, hi=2.0, smooth=True)
unary("tan", lo=-1.2, hi=1.2, smooth=True)
unary("asin", lo=-0.9, hi=0.9, smooth=True)
unary("acos", lo=-0.9, hi=0.9, smooth=True)
for _op in ("exp", "sqrt", "sin", "sigmoid", "tanh", "log"):
    add(Case(_op, (bl(4),)))  # bool inputs compute in float32
for _op in ("neg", "abs", "floor", "ceil", "trunc", "sign", "relu"):
    unary(_op, smooth=_op in ("neg", "abs"))
unary("round", lo=-20, hi=20)
add(
    Case("round", (f(3, 4, lo=-20, hi=20),), {"decimals": 1}),
    Case("round", (np.array([0.5, 1.5, 2.5, -0.5]),), fd=False),  # half to even; steps sit exactly there
    Case("sign", (bl(4),)),
    Case("clone", (f(3, 4),)),
    Case("clone", (bl(3),)),
    Case("clone", (f(),)),
    Case("frac", (f(3, 4, lo=-4, hi=4),)),
    Case("frac", (d(5, lo=-4, hi=4),)),
    Case("frac", (f(),)),
)

# casts
add(
    Case("cast", (f(3, 4),), call=lambda lib, x: x.to(lib.float64)),
    Case("cast", (d(2, 2),), call=lambda lib, x: x.to(lib.float32), fd=False),  # float32 output: too coarse
    Case("cast", (f(3, 4, lo=-9, hi=9),), call=lambda lib, x: x.to(lib.int64)),
    Case("cast", (i(4),), call=lambda lib, x: x.to(lib.float32)),
    Case("cast", (i(4),), call=lambda lib, x: x.to(lib.bool)),
)


def binary(
    op: str,
    lo: float = -2.0,
    hi: float = 2.0,
    ylo: float | None = None,
    yhi: float | None = None,
    ints: bool = True,
    int_lo: int = -5,
    scalar: Any = 1.5,
    smooth: bool = False,
    reverse: Callable[..., Any] | None = None,
    **kw: Any,
) -> None:
    """Shapes that broadcast, 0-d, empty, float64, ints, int/float promotion and Python scalars."""
    ylo = lo if ylo is None else ylo
    yhi = hi if yhi is None else yhi
    add(
        Case(op, (f(3, 4, lo=lo, hi=hi), f(4, lo=ylo, hi=yhi)), gradgrad=smooth, **kw),
        Case(op, (d(2, 1, 3, lo=lo, hi=hi), d(4, 1, lo=ylo, hi=yhi)), gradgrad=smooth, **kw),
        Case(op, (f(lo=lo, hi=hi), f(3, lo=ylo, hi=yhi)), **kw),
        Case(op, (f(0, 3, lo=lo, hi=hi), f(3, lo=ylo, hi=yhi)), **kw),
        Case(op, (f(3, lo=lo, hi=hi), f(lo=ylo, hi=yhi)), **kw),
    )
    if scalar is not None:  # torch.maximum and torch.atan2 take tensors only
        add(Case(op, (f(2, 3, lo=lo, hi=hi), scalar), **kw), Case(op, (f(3, lo=lo, hi=hi), 2), **kw))
    if ints:
        add(
            Case(op, (i(3, 4, lo=int_lo), i(4, lo=max(int_lo, math.ceil(ylo)), hi=int(yhi) + 4)), **kw),
            Case(op, (i(3, lo=int_lo), f(3, lo=ylo, hi=yhi)), **kw),
        )
    if ints and scalar is not None:
        add(Case(op, (i(3, lo=int_lo), scalar), **kw))
    if reverse is not None:  # Python scalar on the left, through the operator
        # torch has no derivative for remainder(Scalar, Tensor); ember's is checked by finite differences
        add(Case(op, (scalar, f(2, 3, lo=ylo, hi=yhi)), call=reverse, torch_grad=op != "remainder", **kw))


binary("add", reverse=lambda lib, a, b: a + b, smooth=True)
binary("sub", reverse=lambda lib, a, b: a - b, smooth=True)
binary("mul", reverse=lambda lib, a, b: a * b, smooth=True)
binary("div", ylo=0.5, yhi=2.0, reverse=lambda lib, a, b: a / b, smooth=True)
binary("atan2", scalar=None, smooth=True)
binary("maximum", scalar=None)
binary("minimum", scalar=None)
binary(
    "pow",
    lo=0.5,
    hi=2.0,
    ylo=-1.5,
    yhi=2.0,
    int_lo=0,
    scalar=2.0,
    reverse=lambda lib, a, b: a**b,
    smooth=True,
)
binary("fmod", ylo=0.6, yhi=1.9, scalar=0.7, int_lo=-9)
binary("remainder", ylo=0.6, yhi=1.9, scalar=0.7, int_lo=-9, reverse=lambda lib, a, b: a % b)
for _mode in ("trunc", "floor"):
    add(
        Case("div", (f(3, 4, lo=-5, hi=5), f(4, lo=0.5, hi=2)), {"rounding_mode": _mode}),
        Case("div", (i(3, 4, lo=-9, hi=9), i(4, lo=1, hi=4)), {"rounding_mode": _mode}),
        Case("div", (i(6, lo=-9, hi=9), -3), {"rounding_mode": _mode}),
        Case("div", (f(5, lo=-5, hi=5), 0.75), {"rounding_mode": _mode}),
    )
add(
    Case("div", (f(4, lo=-5, hi=5), f(4, lo=-2, hi=2)), call=lambda lib, a, b: a // b, grad=False),
    Case("div", (i(2, 3), i(2, 3, lo=1, hi=5)), grad=False),  # int true division -> float32
    Case("div", (np.array([1.0, -1.0, 0.0], np.float32), np.zeros(3, np.float32)), grad=False),  # inf, nan
    Case("pow", (i(4, lo=-3, hi=4), 3)),
    Case("pow", (f(4, lo=-2, hi=2), 2)),
    Case("pow", (f(4), 0)),
    Case("pow", (np.array([0.0, 0.0, 2.0]), np.array([2.0, 1.0, 1.5]))),  # 0 ** y gradients
    Case("pow", (np.array([0.0, 1.0]), np.array([0.0, 0.0])), fd=False),  # 0 ** 0: not differentiable in y
    Case("pow", (2.0, d(3)), api="pow"),
    Case("maximum", (np.array([1.0, 2.0, 3.0]), np.array([1.0, 0.0, 5.0]))),  # a tie splits the gradient
    Case("minimum", (np.array([1.0, 2.0, 3.0]), np.array([1.0, 0.0, 5.0]))),
    Case("maximum", (bl(4), bl(4))),
    Case("add", (bl(3), bl(3))),
    Case("mul", (bl(3), bl(3))),
    Case("add", (np.array([1, 2], np.int32), 2.5)),
    Case("mul", (np.array([1, 2], np.int32), np.array(3))),
    Case("add", (f(3), np.array(2.0))),
    Case("add", (np.array(2, np.int64), f(3))),
)

# comparisons, predicates, logic
for _op in ("eq", "ne", "gt", "ge", "lt", "le"):
    _x = i(3, 4, lo=-2, hi=3)
    add(
        Case(_op, (_x, i(4, lo=-2, hi=3))),
        Case(_op, (f(3, 4), 0.5)),
        Case(_op, (i(3), 1.0)),
        Case(_op, (_x.astype(np.float32), _x[1].astype(np.float64))),
        Case(_op, (f(), f(0, 2))),
        Case(_op, (SPECIAL, SPECIAL[::-1].copy())),
        Case(_op, (bl(4), bl(4))),
    )
for _op in ("isnan", "isinf", "isfinite"):
    add(Case(_op, (SPECIAL,)), Case(_op, (i(3),)), Case(_op, (f(),)), Case(_op, (d(0, 2),)))
for _op in ("logical_and", "logical_or", "logical_xor"):
    add(
        Case(_op, (bl(3, 4), bl(4))),
        Case(_op, (i(3, lo=-1, hi=2), f(3))),
        Case(_op, (SPECIAL, i(6, lo=0, hi=2))),
    )
add(
    Case("logical_not", (bl(3, 4),)),
    Case("logical_not", (i(4, lo=-1, hi=2),)),
    Case("logical_not", (SPECIAL,)),
    Case("logical_not", (f(),)),
)
for _op in ("bitwise_and", "bitwise_or", "bitwise_xor"):
    add(
        Case(_op, (bl(3, 4), bl(4))),
        Case(_op, (i(3, 4, lo=0, hi=16), i(4, lo=0, hi=16))),
        Case(_op, (i(3), 6)),
        Case(_op, (i(3, lo=0, hi=9).astype(np.int32), i(3, lo=0, hi=9))),
    )
add(
    Case("bitwise_not", (bl(4),)),
    Case("bitwise_not", (i(2, 3),)),
    Case("bitwise_and", (bl(3), bl(3)), call=lambda lib, a, b: a & b),
    Case("bitwise_or", (i(3), i(3)), call=lambda lib, a, b: a | b),
    Case("bitwise_xor", (bl(3), bl(3)), call=lambda lib, a, b: a ^ b),
    Case("bitwise_not", (bl(3),), call=lambda lib, a: ~a),
)

# selection and composites
_c = bl(3, 4)
add(
    Case("where", (_c, f(3, 4), f(4))),
    Case("where", (bl(4), d(2, 1), d(4))),
    Case("where", (_c, f(3, 4), 0.0)),
    Case("where", (bl(3), 1.5, f(3))),
    Case("where", (bl(3), i(3), f(3))),
    Case("where", (bl(), f(), f())),
    Case("where", (_c, f(3, 4), f(4)), call=lambda lib, c, x, y: x.where(c, y)),
    Case("clamp", (f(3, 4), -0.5, 0.5)),
    Case("clamp", (d(3, 4),), {"min": -0.3}),
    Case("clamp", (d(3, 4),), {"max": 0.3}),
    Case("clamp", (d(3, 4), d(4, lo=-1, hi=0), d(3, 1, lo=0, hi=1))),
    Case("clamp", (i(5), 0.5, 2.5)),
    Case("clamp", (i(5), -1, 2)),
    Case("clamp", (f(4), 1.0, -1.0)),
    Case("clamp", (SPECIAL, -1.0, 1.0), grad=False),
    Case("clamp", (f(3),), {"min": -0.5}, api="clip"),
    Case("clamp", (np.array([-1.0, 0.0, 0.5, 1.0, 2.0]), 0.0, 1.0), fd=False),  # the bounds pass gradient
    Case("addcmul", (f(3, 4), f(4), f(3, 1))),
    Case("addcmul", (d(3), d(3), d(3)), {"value": 0.5}, gradgrad=True),
    Case("addcdiv", (f(3, 4), f(4), f(3, 1, lo=0.5, hi=2))),
    Case("addcdiv", (d(3), d(3), d(3, lo=0.5, hi=2)), {"value": -2}, gradgrad=True),
    Case("lerp", (f(3, 4), f(4), 0.3)),
    Case("lerp", (d(3, 4), d(4), d(3, 1)), gradgrad=True),
    Case("lerp", (f(), f(), 0.7)),
    Case(
        "isclose",
        (
            np.array([1.0, 1.0, math.nan, math.inf, 1.0]),
            np.array([1.0 + 1e-9, 1.1, math.nan, math.inf, -math.inf]),
        ),
    ),
    Case("isclose", (np.array([1.0, math.nan]), np.array([1.0, math.nan])), {"equal_nan": True}),
    Case("isclose", (f(3, 4), f(3, 4)), {"rtol": 0.5, "atol": 0.1}),
    Case("isclose", (i(4), i(4))),
)

# ---- reductions -----------------------------------------------------------------------------------

for _op in ("sum", "mean", "prod"):
    add(
        Case(_op, (f(3, 4),)),
        Case(_op, (d(2, 3, 4),), {"dim": 1}),
        Case(_op, (d(2, 3, 4),), {"dim": (0, -1) if _op != "prod" else -1}),  # torch.prod takes one dim
        Case(_op, (f(2, 3),), {"dim": -1, "keepdim": True}),
        Case(_op, (f(),)),
        Case(_op, (f(),), {"dim": 0}),
        Case(_op, (f(0, 3),)),
        Case(_op, (f(0, 3),), {"dim": 0}),
        Case(_op, (f(0, 3),), {"dim": 1}),
        Case(_op, (d(2, 3),), {"dim": 1}, gradgrad=True),
        Case(_op, (i(3, 4),), {"dtype": "float64"}),
    )
    if _op != "mean":
        add(
            Case(_op, (i(3, 4, lo=-3, hi=4),), {"dim": 0}),
            Case(_op, (bl(3, 4),)),
            Case(_op, (np.array([1, 2], np.int32),)),
        )
add(
    Case("prod", (np.array([[2.0, 0.0, 3.0], [0.0, 0.0, 1.5], [1.0, 2.0, -1.0]]),), {"dim": 1}),
    Case("prod", (np.array([2.0, 0.0, 3.0]),)),
)
for _op in ("amax", "amin"):
    add(
        Case(_op, (f(3, 4),)),
        Case(_op, (d(2, 3, 4),), {"dim": (0, 2)}),
        Case(_op, (f(3, 4),), {"dim": -1}),
        Case(_op, (f(3, 4),), {"dim": 0, "keepdim": True}),
        Case(_op, (f(),)),
        Case(_op, (i(3, 4),), {"dim": 1}),
        # ties share the gradient evenly (vs torch); central differences see 1/2 per element, not 1/3
        Case(_op, (np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]]),), {"dim": 1}, fd=False),
        Case(_op, (f(0, 3),), {"dim": 1}),
        Case(_op, (SPECIAL,), grad=False),
    )
for _op in ("argmax", "argmin"):
    add(
        Case(_op, (distinct(3, 4),)),
        Case(_op, (distinct(3, 4),), {"dim": 1}),
        Case(_op, (distinct(3, 4),), {"dim": -2, "keepdim": True}),
        Case(_op, (f(),)),
        Case(_op, (i(2, 5),), {"dim": 1}),
        Case(_op, (np.array([1.0, 3.0, 3.0, 0.0, 0.0]),)),
        Case(_op, (distinct(2, 3),), {"keepdim": True}),
    )
for _op in ("all", "any"):
    add(
        Case(_op, (bl(3, 4),)),
        Case(_op, (bl(3, 4),), {"dim": 1}),
        Case(_op, (i(3, 4, lo=0, hi=3),), {"dim": 0}),
        Case(_op, (f(3, 4),), {"dim": -1, "keepdim": True}),
        Case(_op, (bl(0, 3),)),
        Case(_op, (bl(0, 3),), {"dim": 0}),
        Case(_op, (np.array([0, 1, 2], np.uint8),)),
        Case(_op, (bl(),)),
    )
for _op in ("var", "std"):
    add(
        Case(_op, (f(3, 4),)),
        Case(_op, (d(3, 4),), {"dim": 1}, gradgrad=True),
        Case(_op, (d(2, 3, 4),), {"dim": (0, 2), "keepdim": True}),
        Case(_op, (f(3, 4),), {"unbiased": False}),
        Case(_op, (d(3, 4),), {"dim": 0, "correction": 0}),
        Case(_op, (d(5, 4),), {"dim": 0, "correction": 2}),
        Case(_op, (f(2, 5),), call=lambda lib, x, _o=_op: getattr(x, _o)(1, True, True)),
    )
for _p in ("fro", 1, 2, 3, 0.5, math.inf, -math.inf, 0):
    add(
        Case("norm", (d(3, 4, lo=0.2, hi=2) * np.sign(d(3, 4)),), {"p": _p}, grad=_p != 0),
        Case("norm", (f(3, 4),), {"p": _p, "dim": 1}, grad=_p != 0),
        Case("norm", (d(2, 3),), {"p": _p, "dim": 0, "keepdim": True}, grad=_p != 0),
    )
add(
    Case("norm", (f(),)),
    Case("norm", (d(3, 4),), {"dim": (0, 1)}, gradgrad=True),
    Case("norm", (np.array([[0.0, 0.0], [3.0, -4.0]]),), {"dim": 1}, fd=False),  # zero rows: gradient 0
    Case("norm", (np.array([[0.0, 0.0], [3.0, -4.0]]),), {"p": 3, "dim": 1}, fd=False),
    Case("dist", (f(3, 4), f(4))),
    Case("dist", (d(3), d(3)), {"p": 1}),
    Case("dist", (d(2, 3), d(3)), {"p": math.inf}),
    Case("logsumexp", (f(3, 4),), {"dim": 1}),
    Case("logsumexp", (d(2, 3, 4),), {"dim": (0, 2), "keepdim": True}),
    Case("logsumexp", (d(3, 4),), {"dim": 0}, gradgrad=True),
    Case("logsumexp", (i(3, 4),), {"dim": 1}),
    Case("logsumexp", (np.array([[-math.inf, -math.inf], [1.0, -math.inf]]),), {"dim": 1}, grad=False),
    Case("logsumexp", (f(3, 4) * 50,), {"dim": 1}),
    Case("logsumexp", (f(),), {"dim": 0}),
)
for _op, _api in (("max_dim", "max"), ("min_dim", "min")):
    add(
        Case(_op, (distinct(3, 4),), {"dim": 1}, api=_api),
        Case(_op, (distinct(3, 4),), {"dim": 0, "keepdim": True}, api=_api),
        Case(_op, (distinct(2, 3, 4, dtype="float64"),), {"dim": -1}, api=_api),
        Case(_op, (f(),), {"dim": 0}, api=_api),
        Case(_op, (i(3, 4),), {"dim": 1}, api=_api, grad=False),
        Case(_op, (distinct(3, 4),), call=lambda lib, x, _a=_api: getattr(x, _a)(1)),
    )
add(
    Case("amax", (distinct(3, 4),), api="max"),
    Case("amin", (f(3, 4),), call=lambda lib, x: x.min()),
    Case("maximum", (f(3, 4), f(4)), api="max"),
    Case("minimum", (f(3, 4), f(4)), api="min"),
)

# ---- sorting and scans ----------------------------------------------------------------------------

add(
    Case("argsort", (distinct(3, 4),)),
    Case("argsort", (distinct(3, 4),), {"dim": 0, "descending": True}),
    Case("argsort", (i(3, 6, lo=0, hi=3),), {"dim": 1, "stable": True}),
    Case("argsort", (i(3, 6, lo=0, hi=3),), {"dim": 1, "stable": True, "descending": True}),
    Case("argsort", (f(),)),
    Case("argsort", (f(0, 3),), {"dim": 0}),
)
add(
    Case("sort", (distinct(3, 4),)),
    Case("sort", (distinct(3, 4, dtype="float64"),), {"dim": 0, "descending": True}),
    Case("sort", (i(3, 6, lo=0, hi=3),), {"stable": True}),
    Case("sort", (i(2, 6, lo=0, hi=3),), {"stable": True, "descending": True}),
    Case("sort", (np.array([3.0, math.nan, 1.0, -math.inf, 2.0], np.float32),), grad=False),
    Case(
        "sort",
        (np.array([3.0, math.nan, 1.0, -math.inf, 2.0], np.float32),),
        {"descending": True},
        grad=False,
    ),
    Case("sort", (f(),)),
    Case("sort", (f(0, 3),), {"dim": 0}),
    Case("sort", (bl(6),), {"stable": True}),
)
add(
    Case("topk", (distinct(3, 5),), {"k": 2}),
    Case("topk", (distinct(4, 3, dtype="float64"),), {"k": 3, "dim": 0}),
    Case("topk", (distinct(3, 5),), {"k": 2, "largest": False}),
    Case("topk", (distinct(5),), {"k": 0}),
    Case("topk", (f(),), {"k": 1}),
    Case("topk", (distinct(3, 5),), call=lambda lib, x: x.topk(3, 1, False)),
)
add(
    Case("kthvalue", (distinct(3, 5),), {"k": 2}),
    Case("kthvalue", (distinct(4, 3, dtype="float64"),), {"k": 4, "dim": 0}),
    Case("kthvalue", (distinct(3, 5),), {"k": 1, "dim": -1, "keepdim": True}),
    Case("kthvalue", (f(),), {"k": 1}),
)
add(
    Case("median", (distinct(3, 5),)),
    Case("median", (distinct(4, 2),)),
    Case("median", (distinct(3, 5),), {"dim": 1}),
    Case("median", (distinct(4, 3, dtype="float64"),), {"dim": 0, "keepdim": True}),
    Case("median", (i(7),)),
    Case("median", (np.array([[1.0, math.nan, 3.0], [4.0, 2.0, 0.0]], np.float32),), {"dim": 1}, grad=False),
    Case("median", (f(),)),
    Case("median", (f(),), {"dim": 0}),
)
add(
    Case("mode", (np.array([[1, 2, 2, 3, 3, 1, 5], [4, 4, 0, 0, 9, 9, 9]]),)),
    # a mode is a tie by nature: finite differences split it, the gradient goes to one occurrence
    Case("mode", (np.array([[3.0, 1.0, 3.0], [2.0, 2.0, 7.0]]),), {"dim": 1, "keepdim": True}, fd=False),
    Case("mode", (np.array([[1.0, 2.0], [1.0, 3.0], [5.0, 3.0]], np.float32),), {"dim": 0}, fd=False),
    Case("mode", (f(),)),
)
for _op in ("cumsum", "cumprod"):
    add(
        Case(_op, (f(3, 4),), {"dim": 1}),
        Case(_op, (d(2, 3, 4, lo=0.5, hi=1.5),), {"dim": 0}, gradgrad=True),
        Case(_op, (f(3, 4, lo=0.5, hi=1.5),), {"dim": -1}),
        Case(_op, (i(3, 4, lo=-2, hi=3),), {"dim": 0}),
        Case(_op, (bl(5),), {"dim": 0}),
        Case(_op, (f(),), {"dim": 0}),
        Case(_op, (f(0, 3),), {"dim": 1}),
        Case(_op, (i(4),), {"dim": 0, "dtype": "float64"}),
        Case(_op, (np.array([1, 2], np.int32),), {"dim": 0}),
    )
_idx = np.argsort(_RNG.uniform(size=(3, 4)), axis=1)
add(
    Case("take_along_dim", (f(3, 4), _idx), {"dim": 1}),
    Case("take_along_dim", (d(3, 4), np.array([[0, 0, 3], [1, 1, 1], [2, 0, 2]])), {"dim": 1}, gradgrad=True),
    Case("take_along_dim", (d(3, 4), np.array([[2, 0, 1, 1]])), {"dim": 0}),
)


# ---- float16: forward only, at its own tolerance ----------------------------------------------------

_h = f(3, 4, lo=0.2, hi=2.0).astype(np.float16)
for _op, _args, _kw in (
    ("exp", (_h,), {}),
    ("sqrt", (_h,), {}),
    ("tanh", (_h,), {}),
    ("add", (_h, _h[0]), {}),
    ("mul", (_h, 2.5), {}),
    ("div", (_h, _h), {}),
    ("maximum", (_h, _h[::-1].copy()), {}),
    ("sum", (_h,), {"dim": 1}),
    ("amax", (_h,), {"dim": 0}),
    ("sort", (_h,), {"stable": True}),
    ("cumsum", (_h,), {"dim": 1}),
    ("where", (bl(3, 4), _h, 0.0), {}),
    ("lt", (_h, 1.0), {}),
    ("clamp", (_h, 0.5, 1.5), {}),
    ("mean", (_h,), {}),
):
    add(Case(_op, _args, _kw, grad=False))
add(Case("add", (_h, f(4)), grad=False), Case("cast", (_h,), call=lambda lib, x: x.float(), grad=False))


# ---- runners --------------------------------------------------------------------------------------


def module_of(op: Any) -> str:
    fn = op.decompose if op.composite else op.reference
    return getattr(fn, "__module__", "").rsplit(".", 1)[-1]


def ops_of(module: str) -> list[str]:
    return sorted(op.name for op in REGISTRY if module_of(op) == module)


def uncovered_ops(module: str, cases: list[Case], grad_cases: list[Case], covered_by: dict[str, str],
                  needs_grad: Callable[[Any, str], bool]) -> list[str]:
    """Ops of ``module`` without forward samples, or without gradient samples when ``needs_grad(op,
    sampled_name)`` says they need them: every test module asserts this list is empty, so a new op
    cannot be forgotten."""
    covered = {c.op for c in cases}
    with_grad = {c.op for c in grad_cases}
    problems = []
    for name in ops_of(module):
        target = covered_by.get(name, name)
        if target not in covered:
            problems.append(f"op {name!r} has no samples in opinfo_math.py")
        elif needs_grad(REGISTRY[name], target) and target not in with_grad:
            problems.append(f"op {name!r} is differentiable but no sample checks its gradient")
    return problems


def cases_of(module: str) -> list[Case]:
    names = set(ops_of(module))
    return [c for c in CASES if c.op in names]


def _convert(lib: Any, value: Any, requires_grad: bool, float64: bool) -> Any:
    if not isinstance(value, np.ndarray):
        return value
    arr = value.astype(np.float64) if float64 and value.dtype.kind == "f" else value.copy()
    t = lib.tensor(arr) if arr.ndim else lib.tensor(arr.item(), dtype=getattr(lib, arr.dtype.name))
    if arr.dtype.name != str(t.dtype).rsplit(".", 1)[-1]:
        t = t.to(getattr(lib, arr.dtype.name))
    if requires_grad and arr.dtype.kind == "f":
        t.requires_grad_(True)
    return t


def _kwargs(lib: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    return {k: getattr(lib, v) if k == "dtype" else v for k, v in kwargs.items()}


def run(
    case: Case, lib: Any, requires_grad: bool = False, float64: bool = False
) -> tuple[list[Any], list[Any]]:
    """(inputs, outputs as a list) of the case run in ``lib`` (ember or torch)."""
    args = [_convert(lib, a, requires_grad, float64) for a in case.args]
    if case.call is not None:
        out = case.call(lib, *args, **_kwargs(lib, case.kwargs))
    else:
        out = getattr(lib, case.api or case.op)(*args, **_kwargs(lib, case.kwargs))
    outs = list(out) if isinstance(out, (tuple, list)) else [out]
    return args, outs


_TOL = {"float16": (1e-2, 1e-3), "float32": (2e-5, 2e-6), "float64": (1e-9, 1e-12)}


def _tolerance(case: Case, *dtype_names: str) -> tuple[float | None, float | None]:
    """The case's own tolerance, else that of the least precise float dtype involved."""
    if case.rtol is not None:
        return case.rtol, case.atol
    for name in _TOL:
        if name in dtype_names:
            return _TOL[name]
    return None, None


def check_forward(case: Case) -> None:
    ins, outs = run(case, ember)
    before = [a.numpy().copy() if isinstance(a, ember.Tensor) else a for a in ins]
    _, expected = run(case, torch)
    assert len(outs) == len(expected), f"{case}: {len(outs)} outputs, torch gives {len(expected)}"
    for k, (o, e) in enumerate(zip(outs, expected)):
        if not isinstance(e, torch.Tensor):
            assert o == e, f"{case}: output {k}: {o} vs torch {e}"
            continue
        rtol, atol = _tolerance(case, str(e.dtype).replace("torch.", ""))
        assert_close(o, e, rtol, atol, msg=f"{case} output {k}")
    for a, b in zip(ins, before):  # out-of-place ops leave their inputs alone
        if isinstance(a, ember.Tensor):
            np.testing.assert_array_equal(a.numpy(), b)


def has_grad(case: Case) -> bool:
    if not case.grad or not any(
        isinstance(a, np.ndarray) and a.dtype.kind == "f" and a.size for a in case.args
    ):
        return False
    _, outs = run(case, torch)
    return any(isinstance(o, torch.Tensor) and o.dtype.is_floating_point for o in outs)


def _weights(outs: list[Any]) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [rng.uniform(0.5, 1.5, size=tuple(o.shape)) for o in outs]


def _loss(lib: Any, outs: list[Any], weights: list[np.ndarray]) -> Any:
    total = None
    for o, w in zip(outs, weights):
        if not o.dtype.is_floating_point or not o.requires_grad:
            continue
        term = (o * lib.tensor(w, dtype=o.dtype)).sum()
        total = term if total is None else total + term
    return total


def check_grad_vs_torch(case: Case) -> None:
    ins, outs = run(case, ember, requires_grad=True)
    t_ins, t_outs = run(case, torch, requires_grad=True)
    weights = _weights(t_outs)
    loss, t_loss = _loss(ember, outs, weights), _loss(torch, t_outs, weights)
    assert (loss is None) == (t_loss is None), f"{case}: differentiability differs from torch"
    if loss is None:
        return
    loss.backward()
    t_loss.backward()
    for k, (a, ta) in enumerate(zip(ins, t_ins)):
        if isinstance(ta, torch.Tensor) and ta.requires_grad:
            expected = ta.grad if ta.grad is not None else torch.zeros_like(ta)
            got = a.grad if a.grad is not None else ember.zeros_like(a)
            names = [str(v.dtype).replace("torch.", "") for v in (ta, *t_outs) if isinstance(v, torch.Tensor)]
            rtol, atol = _tolerance(case, *names)
            assert_close(
                got, expected, rtol and rtol * 10, atol and atol * 10, msg=f"{case} grad of input {k}"
            )


def _float64_fn(case: Case) -> tuple[Callable[..., Any], tuple[Any, ...]]:
    ins, _ = run(case, ember, requires_grad=True, float64=True)

    def fn(*xs: Any) -> Any:
        if case.call is not None:
            return case.call(ember, *xs, **_kwargs(ember, case.kwargs))
        return getattr(ember, case.api or case.op)(*xs, **_kwargs(ember, case.kwargs))

    return fn, tuple(ins)


def check_gradcheck(case: Case) -> None:
    fn, ins = _float64_fn(case)
    assert gradcheck(fn, ins, eps=1e-6, atol=1e-5, rtol=1e-3)


def check_gradgradcheck(case: Case) -> None:
    fn, ins = _float64_fn(case)
    assert gradgradcheck(fn, ins, eps=1e-6, atol=1e-5, rtol=1e-3)


def check_traced(case: Case) -> None:
    """Trace the case (tensor arguments become graph inputs, scalars constants) and run the graph with
    the interpreter: results equal eager mode, and every node's type rule agrees with its reference
    (the interpreter checks each node's shape and dtype)."""
    from ember.compiler.ir.interpreter import interpret

    ins, eager = run(case, ember)
    slots = [k for k, a in enumerate(case.args) if isinstance(a, np.ndarray)]

    def fn(*tensors: Any) -> Any:
        args = list(ins)
        for k, t in zip(slots, tensors):
            args[k] = t
        if case.call is not None:
            out = case.call(ember, *args, **_kwargs(ember, case.kwargs))
        else:
            out = getattr(ember, case.api or case.op)(*args, **_kwargs(ember, case.kwargs))
        return tuple(out) if isinstance(out, tuple) else out

    graph = ember.trace(fn, *[ins[k] for k in slots])
    got = interpret(graph, [case.args[k] for k in slots])
    got = list(got) if isinstance(got, (tuple, list)) else [got]
    assert len(got) == len(eager), f"{case}: traced graph has {len(got)} outputs, eager {len(eager)}"
    for k, (g, e) in enumerate(zip(got, eager)):
        assert_close(g, e.numpy(), 0.0, 0.0, check_dtype=False, msg=f"{case} traced output {k}")
        assert np.asarray(g).dtype == e.numpy().dtype, f"{case} traced output {k}: dtype differs"


def first_case_per_op(cases: list[Case]) -> list[Case]:
    """One case per op with tensor arguments: tracing costs ~0.2 s per call, so the traced check samples."""
    seen: dict[str, Case] = {}
    for c in cases:
        if c.op not in seen and any(isinstance(a, np.ndarray) and a.size > 1 for a in c.args):
            seen[c.op] = c
    return list(seen.values())
