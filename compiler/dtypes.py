"""Element types and PyTorch's type-promotion rules.

A ``DType`` is a small immutable object (``ember.float32``); the numpy dtype it maps to is its storage.
Promotion follows PyTorch, not numpy: categories bool < integer < floating; within the highest category
present, tensors with dimensions outrank zero-dim tensors, which outrank Python scalars; a Python float
meeting integer tensors gives the default float dtype (float32), not float64.
"""

from __future__ import annotations

from typing import Any

import numpy as np

BOOL, INTEGRAL, FLOATING = 0, 1, 2


class DType:
    __slots__ = ("name", "np", "itemsize", "category", "rank", "_is_dtype")

    def __init__(self, name: str, np_dtype: Any, category: int, rank: int) -> None:
        self.name = name
        self.np = np.dtype(np_dtype)
        self.itemsize = self.np.itemsize
        self.category = category
        self.rank = rank  # order within the category, for promotion

    @property
    def is_floating_point(self) -> bool:
        return self.category == FLOATING

    @property
    def is_signed(self) -> bool:
        return self.category != BOOL and self.name != "uint8"

    def __repr__(self) -> str:
        return f"ember.{self.name}"

    def __reduce__(self) -> tuple[Any, ...]:
        return (from_name, (self.name,))


bool_ = DType("bool", np.bool_, BOOL, 0)
uint8 = DType("uint8", np.uint8, INTEGRAL, 0)
int8 = DType("int8", np.int8, INTEGRAL, 1)
int16 = DType("int16", np.int16, INTEGRAL, 2)
int32 = DType("int32", np.int32, INTEGRAL, 3)
int64 = DType("int64", np.int64, INTEGRAL, 4)
float16 = DType("float16", np.float16, FLOATING, 0)
float32 = DType("float32", np.float32, FLOATING, 1)
float64 = DType("float64", np.float64, FLOATING, 2)

ALL: tuple[DType, ...] = (bool_, uint8, int8, int16, int32, int64, float16, float32, float64)
_BY_NAME = {d.name: d for d in ALL}
_BY_NP = {d.np: d for d in ALL}
# PyTorch's aliases
ALIASES = {"half": float16, "float": float32, "double": float64, "int": int32, "long": int64,
           "short": int16, "bool": bool_}

DEFAULT_FLOAT = float32


def from_name(name: str) -> DType:
    try:
        return _BY_NAME[name] if name in _BY_NAME else ALIASES[name]
    except KeyError:
        raise TypeError(f"unknown dtype name {name!r}; known: {', '.join(_BY_NAME)}") from None


def from_numpy(np_dtype: Any) -> DType:
    """The DType stored as ``np_dtype``; raises TypeError for types ember has no DType for."""
    try:
        return _BY_NP[np_dtype]
    except KeyError:
        pass
    try:
        return _BY_NP[np.dtype(np_dtype)]
    except (KeyError, TypeError):
        raise TypeError(
            f"numpy dtype {np_dtype} has no ember equivalent; supported: {', '.join(_BY_NAME)}"
        ) from None


def as_dtype(value: Any) -> DType:
    """Accept an ember DType, a torch-style name, a numpy dtype or a Python type."""
    if isinstance(value, DType):
        return value
    if value is float:
        return float64
    if value is int:
        return int64
    if value is bool:
        return bool_
    if isinstance(value, str):
        return from_name(value.replace("ember.", "").replace("torch.", ""))
    torch_name = getattr(value, "__module__", None) == "torch" and str(value)
    if torch_name:
        return from_name(torch_name.replace("torch.", ""))
    return from_numpy(value)


_PROMOTE_CACHE: dict[tuple[DType, DType], DType] = {}


def promote(a: DType, b: DType) -> DType:
    """The smallest dtype both ``a`` and ``b`` convert to (torch.promote_types)."""
    key = (a, b)
    hit = _PROMOTE_CACHE.get(key)
    if hit is not None:
        return hit
    if a is b:
        out = a
    elif a.category != b.category:
        out = a if a.category > b.category else b
    elif a is uint8 or b is uint8:
        other = b if a is uint8 else a
        out = int16 if other is int8 else other  # uint8 with int8 widens, as in PyTorch
    else:
        out = a if a.rank >= b.rank else b
    _PROMOTE_CACHE[key] = out
    return out


def scalar_dtype(value: Any) -> DType:
    """The dtype a Python scalar would have as a tensor."""
    if isinstance(value, (bool, np.bool_)):
        return bool_
    if isinstance(value, (int, np.integer)):
        return int64
    if isinstance(value, (float, np.floating)):
        return DEFAULT_FLOAT
    raise TypeError(f"expected a number, got {type(value).__name__}")


def result_type(*operands: Any) -> DType:
    """torch.result_type over tensors (anything with .dtype and .shape) and Python scalars."""
    best_cat = -1
    dims: DType | None = None    # promoted dtype of tensors with dimensions
    zero: DType | None = None    # of zero-dim tensors
    scal: DType | None = None    # of Python scalars
    dims_cat = zero_cat = scal_cat = -1
    for x in operands:
        dt = getattr(x, "dtype", None)
        if isinstance(dt, DType):
            if len(x.shape):
                dims = dt if dims is None else promote(dims, dt)
                dims_cat = max(dims_cat, dt.category)
            else:
                zero = dt if zero is None else promote(zero, dt)
                zero_cat = max(zero_cat, dt.category)
            best_cat = max(best_cat, dt.category)
        else:
            sd = scalar_dtype(x)
            scal = sd if scal is None else promote(scal, sd)
            scal_cat = max(scal_cat, sd.category)
            best_cat = max(best_cat, sd.category)
    if dims is not None and dims_cat == best_cat:
        return dims
    if zero is not None and zero_cat == best_cat:
        return zero
    assert scal is not None
    # a scalar of a higher category than every tensor: the category's default dtype
    if dims is None and zero is None:
        return scal
    return {BOOL: bool_, INTEGRAL: int64, FLOATING: DEFAULT_FLOAT}[scal_cat]
