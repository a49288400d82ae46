"""Ops with no tensor inputs: constants the graph can build (full, arange)."""

from __future__ import annotations

from typing import Any

from ember.compiler.ops.registry import DTYPE, INTS, SCALAR, Pattern, TensorType, define_op


def _full_ref(xp: Any, shape: tuple[int, ...], value: Any, dtype: Any) -> Any:
    return xp.full(shape, value, dtype=dtype.np)


full = define_op(
    "full", pattern=Pattern.ELEMWISE, inputs=(), attrs={"shape": INTS, "value": SCALAR, "dtype": DTYPE},
    infer=lambda shape, value, dtype: TensorType(shape, dtype), reference=_full_ref,
    vjp=None, differentiable=False, method=False, function=False,
    lowering={"scalar": lambda e, shape, value, dtype: e.const(value, dtype)},
)
