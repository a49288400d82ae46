"""Reductions: sum, mean and friends. ``dim`` is normalized to a sorted tuple of non-negative dims."""

from __future__ import annotations

from typing import Any

from ember.compiler.dtypes import BOOL, INTEGRAL, int64
from ember.compiler.ops.registry import BOOL as BOOL_ATTR
from ember.compiler.ops.registry import INTS, Pattern, TensorType, define_composite, define_op, optional
from ember.compiler.ops.registry import DTYPE
from ember.compiler.ops.rules import norm_dims, reduced_shape, shape_of

R = Pattern.REDUCTION


def normalize_dims(attrs: dict[str, Any], x: Any, *_: Any) -> dict[str, Any]:
    """Shared ``normalize`` hook: resolve negative dims and None against the input's rank."""
    attrs["dim"] = norm_dims("reduction", attrs["dim"], len(shape_of(x)))
    return attrs


def grad_of_reduction(b: Any, g: Any, x: Any, dim: tuple[int, ...], keepdim: bool) -> Any:
    """Broadcast a reduced gradient back over the reduced dims of ``x``."""
    if not keepdim:
        g = b.reshape(g, shape=reduced_shape(tuple(x.shape), dim, True))
    return b.expand(g, shape=tuple(x.shape))


def _sum_infer(x: Any, dim: tuple[int, ...], keepdim: bool, dtype: Any) -> TensorType:
    out = dtype or (int64 if x.dtype.category in (BOOL, INTEGRAL) else x.dtype)
    return TensorType(reduced_shape(shape_of(x), dim, keepdim), out)


def _sum_ref(xp: Any, x: Any, dim: tuple[int, ...], keepdim: bool, dtype: Any) -> Any:
    out_dt = dtype.np if dtype is not None else (x.dtype if x.dtype.kind == "f" else "int64")
    return xp.sum(x, axis=dim, keepdims=keepdim, dtype=out_dt)


sum_ = define_op(
    "sum", pattern=R, infer=_sum_infer, reference=_sum_ref,
    attrs={"dim": (optional(INTS), None), "keepdim": (BOOL_ATTR, False), "dtype": (optional(DTYPE), None)},
    normalize=normalize_dims,
    vjp=lambda b, g, out, x, dim, keepdim, dtype: [b.cast_like(grad_of_reduction(b, g, x, dim, keepdim), x)],
    saves=(), lowering={"reduce": "add"},
)


def _mean(b: Any, x: Any, dim: tuple[int, ...], keepdim: bool, dtype: Any) -> Any:
    if dtype is not None:
        x = b.cast(x, dtype=dtype)
    elif not x.dtype.is_floating_point:
        from ember.runtime.errors import DTypeError

        raise DTypeError(
            f"mean(): could not infer output dtype. Input dtype must be either a floating point or complex"
            f" dtype. Got: {x.dtype}"
        )
    count = 1
    for d in dim:
        count *= x.shape[d]
    return b.div(b.sum(x, dim=dim, keepdim=keepdim), float(count) if count else float("nan"))


mean = define_composite(
    "mean", decompose=_mean, normalize=normalize_dims,
    attrs={"dim": (optional(INTS), None), "keepdim": (BOOL_ATTR, False), "dtype": (optional(DTYPE), None)},
)
