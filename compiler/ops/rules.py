"""Type-rule building blocks shared by the op families: broadcasting, dim normalization, promotion."""

from __future__ import annotations

from typing import Any

from ember.compiler import dtypes as _dtypes
from ember.compiler.dtypes import BOOL, FLOATING, DType, bool_, result_type
from ember.compiler.ops.registry import TensorType
from ember.runtime.errors import DimError, DTypeError, ShapeError


def shape_of(x: Any) -> tuple[int, ...]:
    s = getattr(x, "shape", None)
    return () if s is None else tuple(s)


def is_tensor(x: Any) -> bool:
    return hasattr(x, "shape") and hasattr(x, "dtype")


def broadcast_shapes(op: str, *shapes: tuple[int, ...]) -> tuple[int, ...]:
    """NumPy/PyTorch broadcasting, with an error that names the op and both shapes."""
    if not shapes:
        return ()
    first = shapes[0]
    if all(s == first for s in shapes):
        return first
    ndim = max(len(s) for s in shapes)
    out = []
    for i in range(ndim):
        size = 1
        for s in shapes:
            j = i - (ndim - len(s))
            if j < 0:
                continue
            d = s[j]
            if d != 1:
                if size != 1 and size != d:
                    shown = " and ".join(str(list(s)) for s in shapes)
                    raise ShapeError(
                        f"{op}: shapes {shown} cannot be broadcast: dimension {i} is {size} in one operand"
                        f" and {d} in another (sizes must match or be 1)"
                    )
                size = d
        out.append(size)
    return tuple(out)


def norm_dim(op: str, dim: int, ndim: int) -> int:
    """A dim in [-ndim, ndim) as a non-negative index; a 0-d tensor accepts dims -1 and 0."""
    n = max(ndim, 1)
    if not -n <= dim < n:
        raise DimError(
            f"{op}: Dimension out of range (expected to be in range of [{-n}, {n - 1}], but got {dim})"
        )
    return dim % n


def norm_dims(op: str, dims: tuple[int, ...] | None, ndim: int) -> tuple[int, ...]:
    """Normalize a dim list; None means every dim. Repeated dims are an error."""
    if dims is None:
        return tuple(range(ndim))
    out = tuple(norm_dim(op, d, ndim) for d in dims)
    if len(set(out)) != len(out):
        raise DimError(f"{op}: dim {list(dims)} appears multiple times in the list of dims")
    return tuple(sorted(out)) if ndim else ()


def float_result(dtype: DType) -> DType:
    """Ops like exp or division compute in floating point: integers and bools go to the default float
    dtype (read at call time: ``ember.set_default_dtype`` changes it)."""
    return dtype if dtype.category == FLOATING else _dtypes.DEFAULT_FLOAT


def elementwise(op: str, *inputs: Any, to_float: bool = False, out_dtype: DType | None = None) -> TensorType:
    shape = broadcast_shapes(op, *[shape_of(x) for x in inputs if is_tensor(x)])
    dt = result_type(*inputs)
    if to_float:
        dt = float_result(dt)
    return TensorType(shape, out_dtype or dt)


def require_float(op: str, *inputs: Any) -> None:
    for x in inputs:
        if is_tensor(x) and x.dtype.category != FLOATING:
            raise DTypeError(f"{op}: expected a floating-point tensor, got {x.dtype} (convert with .float())")


def reject_bool(op: str, *inputs: Any) -> None:
    for x in inputs:
        if is_tensor(x) and x.dtype.category == BOOL:
            raise DTypeError(f"{op}: not supported for bool tensors (convert with .int() or .float())")


def compare(op: str, a: Any, b: Any) -> TensorType:
    return TensorType(broadcast_shapes(op, shape_of(a), shape_of(b)), bool_)


def reduced_shape(shape: tuple[int, ...], dims: tuple[int, ...], keepdim: bool) -> tuple[int, ...]:
    if keepdim:
        return tuple(1 if i in dims else s for i, s in enumerate(shape))
    return tuple(s for i, s in enumerate(shape) if i not in dims)


def same_as_input(x: Any, **_: Any) -> TensorType:
    return TensorType(shape_of(x), x.dtype)
