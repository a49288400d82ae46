"""Tensor creation: tensor, from_numpy, zeros/ones/full/empty/eye, arange/linspace/logspace, random draws
and the ``*_like`` variants. Created tensors are constants to the tracer."""

from __future__ import annotations

import builtins
from typing import Any

import numpy as np
from ember import random as _random
from ember.compiler import dtypes as _dt
from ember.compiler.dtypes import DType
from ember.device import CPU, as_device
from ember.runtime.errors import ArgumentError, DTypeError


def _sizes(size: tuple[Any, ...]) -> tuple[int, ...]:
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = tuple(size[0])
    out = tuple(int(s) for s in size)
    if any(s < 0 for s in out):
        raise ArgumentError(f"Trying to create tensor with negative dimension: {list(out)}")
    return out


def _finish(arr: np.ndarray, dtype: DType, device: Any, requires_grad: bool) -> Any:
    from ember.tensor import Tensor

    t = Tensor._make(arr, dtype, CPU)
    dev = as_device(device)
    if dev.type != "cpu":
        t = t.to(dev)
    if requires_grad:
        t.requires_grad_(True)
    return t


def _infer_dtype(data: Any) -> DType:
    """PyTorch's dtype for nested Python data: bool, int64, or the default float dtype."""
    if isinstance(data, np.ndarray):
        return _dt.from_numpy(data.dtype)
    if isinstance(data, np.generic):
        return _dt.from_numpy(data.dtype)
    kinds = set()

    def walk(x: Any) -> None:
        from ember.tensor import Tensor

        if isinstance(x, Tensor):
            kinds.add(x.dtype)
        elif isinstance(x, (list, tuple)):
            for y in x:
                walk(y)
        elif isinstance(x, (bool, np.bool_)):
            kinds.add(_dt.bool_)
        elif isinstance(x, (int, np.integer)):
            kinds.add(_dt.int64)
        elif isinstance(x, (float, np.floating)):
            kinds.add(_dt.DEFAULT_FLOAT)
        else:
            raise TypeError(f"Could not infer dtype of {type(x).__name__}")

    walk(data)
    if not kinds:
        return _dt.DEFAULT_FLOAT
    out = None
    for k in kinds:
        out = k if out is None else _dt.promote(out, k)
    return out  # type: ignore[return-value]


def _to_numpy_data(data: Any) -> Any:
    from ember.tensor import Tensor

    if isinstance(data, Tensor):
        return data._host()
    if isinstance(data, (list, tuple)):
        return [_to_numpy_data(x) for x in data]
    return data


def tensor(
    data: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False, pin_memory: bool = False
) -> Any:
    """A new tensor holding a copy of ``data`` (nested lists, numbers, numpy arrays or tensors).

    >>> import ember
    >>> ember.tensor([[1., 2.]], requires_grad=True)
    tensor([[1., 2.]], requires_grad=True)
    """
    dt = _dt.as_dtype(dtype) if dtype is not None else _infer_dtype(data)
    try:
        arr = np.array(_to_numpy_data(data), dtype=dt.np)
    except ValueError as e:
        raise ArgumentError(f"tensor(): could not build a tensor from the data: {e}") from None
    return _finish(arr, dt, device, requires_grad)


def as_tensor(data: Any, dtype: Any = None, device: Any = None) -> Any:
    from ember.tensor import Tensor

    if isinstance(data, Tensor):
        return data.to(device=device, dtype=dtype) if (dtype or device) else data
    if isinstance(data, np.ndarray) and dtype is None and device is None:
        return from_numpy(data)
    return tensor(data, dtype=dtype, device=device)


def from_numpy(arr: np.ndarray) -> Any:
    """A tensor sharing memory with ``arr``: writes through either are seen by both."""
    from ember.tensor import Tensor

    if not isinstance(arr, np.ndarray):
        raise TypeError(f"expected np.ndarray (got {type(arr).__name__})")
    return Tensor._make(arr, _dt.from_numpy(arr.dtype), CPU)


def _dtype_or_default(dtype: Any) -> DType:
    return _dt.as_dtype(dtype) if dtype is not None else _dt.DEFAULT_FLOAT


def _filled(size: tuple[Any, ...], value: Any, dtype: Any, device: Any, requires_grad: bool) -> Any:
    if not size:  # zeros(()) is a 0-d tensor, zeros() is a mistake, as in PyTorch
        raise TypeError("missing required argument 'size' (pass () for a 0-d tensor)")
    dt = _dtype_or_default(dtype)
    return _finish(np.full(_sizes(size), value, dtype=dt.np), dt, device, requires_grad)


def zeros(
    *size: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False, out: Any = None
) -> Any:
    return _filled(size, 0, dtype, device, requires_grad)


def ones(*size: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Any:
    return _filled(size, 1, dtype, device, requires_grad)


def empty(*size: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Any:
    return _filled(size, 0, dtype, device, requires_grad)


def full(
    size: Any, fill_value: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False
) -> Any:
    if dtype is None:
        dtype = _infer_dtype(fill_value)
    return _filled((size,), fill_value, dtype, device, requires_grad)


def eye(
    n: int, m: int | None = None, dtype: Any = None, device: Any = None, requires_grad: bool = False
) -> Any:
    dt = _dtype_or_default(dtype)
    return _finish(np.eye(n, n if m is None else m, dtype=dt.np), dt, device, requires_grad)


def arange(
    start: Any,
    end: Any = None,
    step: Any = 1,
    dtype: Any = None,
    device: Any = None,
    requires_grad: bool = False,
) -> Any:
    if end is None:
        start, end = 0, start
    if step == 0:
        raise ArgumentError("arange: step must be nonzero")
    if dtype is None:
        dtype = _infer_dtype([start, end, step])
    dt = _dt.as_dtype(dtype)
    return _finish(np.arange(start, end, step).astype(dt.np), dt, device, requires_grad)


def range(
    start: Any,
    end: Any = None,
    step: Any = 1,
    dtype: Any = None,
    device: Any = None,  # noqa: A001
    requires_grad: bool = False,
) -> Any:
    """Deprecated in PyTorch (use arange): like arange but includes ``end``, default float dtype."""
    if end is None:
        start, end = 0, start
    if step == 0:
        raise ArgumentError("range: step must be nonzero")
    n = int(np.floor((end - start) / step)) + 1
    if n < 0:
        raise ArgumentError(
            f"upper bound and larger bound inconsistent with step sign (start={start},"
            f" end={end}, step={step})"
        )
    dt = _dtype_or_default(dtype)
    return _finish((start + np.arange(n) * step).astype(dt.np), dt, device, requires_grad)


def linspace(
    start: float, end: float, steps: int, dtype: Any = None, device: Any = None, requires_grad: bool = False
) -> Any:
    dt = _dtype_or_default(dtype)
    return _finish(np.linspace(start, end, steps).astype(dt.np), dt, device, requires_grad)


def logspace(
    start: float,
    end: float,
    steps: int,
    base: float = 10.0,
    dtype: Any = None,
    device: Any = None,
    requires_grad: bool = False,
) -> Any:
    dt = _dtype_or_default(dtype)
    return _finish(np.logspace(start, end, steps, base=base).astype(dt.np), dt, device, requires_grad)


_TORCH_NAMES = {
    "int64": "Long",
    "int32": "Int",
    "int16": "Short",
    "int8": "Char",
    "uint8": "Byte",
    "bool": "Bool",
}


def _float_dtype(op: str, dtype: Any) -> DType:
    dt = _dtype_or_default(dtype)
    if not dt.is_floating_point:
        raise DTypeError(f"\"{op}\" not implemented for '{_TORCH_NAMES.get(dt.name, dt.name)}'")
    return dt


def rand(
    *size: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False, generator: Any = None
) -> Any:
    dt = _float_dtype("check_uniform_bounds", dtype)
    arr = _random.generator().random(_sizes(size)).astype(dt.np)
    return _finish(arr, dt, device, requires_grad)


def randn(
    *size: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False, generator: Any = None
) -> Any:
    dt = _float_dtype("normal_kernel_cpu", dtype)
    arr = _random.generator().standard_normal(_sizes(size)).astype(dt.np)
    return _finish(arr, dt, device, requires_grad)


def randint(
    low: int,
    high: int | None = None,
    size: Any = None,
    dtype: Any = None,
    device: Any = None,
    requires_grad: bool = False,
    generator: Any = None,
) -> Any:
    if size is None and isinstance(high, (tuple, list)):  # randint(high, size)
        low, high, size = 0, low, high
    if high is None:
        low, high = 0, low
    if size is None:
        raise ArgumentError("randint() missing required argument 'size'")
    if high <= low:
        raise ArgumentError(f"random_ expects 'from' to be less than 'to', but got from={low} >= to={high}")
    dt = _dt.as_dtype(dtype) if dtype is not None else _dt.int64
    arr = _random.generator().integers(low, high, _sizes((size,))).astype(dt.np)
    return _finish(arr, dt, device, requires_grad)


def randperm(
    n: int, dtype: Any = None, device: Any = None, requires_grad: bool = False, generator: Any = None
) -> Any:
    dt = _dt.as_dtype(dtype) if dtype is not None else _dt.int64
    return _finish(_random.generator().permutation(n).astype(dt.np), dt, device, requires_grad)


def normal(
    mean: Any = 0.0,
    std: Any = 1.0,
    size: Any = None,
    dtype: Any = None,
    device: Any = None,
    requires_grad: bool = False,
    generator: Any = None,
) -> Any:
    from ember.tensor import Tensor

    if isinstance(mean, Tensor) or isinstance(std, Tensor):
        m = mean._host() if isinstance(mean, Tensor) else mean
        s = std._host() if isinstance(std, Tensor) else std
        shape = np.broadcast_shapes(np.shape(m), np.shape(s))
        ref = mean if isinstance(mean, Tensor) else std
        arr = (_random.generator().standard_normal(shape) * s + m).astype(ref.dtype.np)
        return _finish(arr, ref.dtype, ref.device, requires_grad)
    dt = _dtype_or_default(dtype)
    arr = (_random.generator().standard_normal(_sizes((size,))) * std + mean).astype(dt.np)
    return _finish(arr, dt, device, requires_grad)


def _like(fn: Any) -> Any:
    def like(input: Any, *, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Any:
        return fn(
            tuple(input.shape),
            dtype=dtype or input.dtype,
            device=device or input.device,
            requires_grad=requires_grad,
        )

    like.__name__ = fn.__name__ + "_like"
    like.__doc__ = f"Like ``{fn.__name__}`` with the shape, dtype and device of ``input``."
    return like


zeros_like = _like(zeros)
ones_like = _like(ones)
empty_like = _like(empty)
rand_like = _like(rand)
randn_like = _like(randn)


def full_like(
    input: Any, fill_value: Any, *, dtype: Any = None, device: Any = None, requires_grad: bool = False
) -> Any:
    return full(
        tuple(input.shape),
        fill_value,
        dtype=dtype or input.dtype,
        device=device or input.device,
        requires_grad=requires_grad,
    )


def randint_like(input: Any, low: int, high: int | None = None, *, dtype: Any = None) -> Any:
    return randint(low, high, tuple(input.shape), dtype=dtype or input.dtype, device=input.device)


def _legacy_tensor(*args: Any, **kwargs: Any) -> Any:
    """``ember.Tensor(2, 3)`` (float32 of that size) or ``ember.Tensor([1, 2])`` (float32 data)."""
    if args and builtins.all(isinstance(a, int) for a in args):
        return zeros(*args)
    if len(args) == 1:
        return tensor(args[0], dtype=_dt.float32)
    if not args:
        return zeros(0)
    raise TypeError(f"Tensor(): unsupported arguments {args!r}")


def _rebuild(arr: np.ndarray, dtype_name: str, requires_grad: bool) -> Any:
    t = from_numpy(np.array(arr, dtype=_dt.from_name(dtype_name).np))
    if requires_grad:
        t.requires_grad_(True)
    return t


# ---- Tensor.new_*: creation with the dtype and device of an existing tensor ------------------------------


def _new(fn: Any, name: str) -> Any:
    def new(self: Any, *size: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Any:
        return fn(*size, dtype=dtype or self.dtype, device=device or self.device, requires_grad=requires_grad)

    new.__name__ = name
    new.__doc__ = f"``{fn.__name__}`` with this tensor's dtype and device unless given."
    return new


new_zeros = _new(zeros, "new_zeros")
new_ones = _new(ones, "new_ones")
new_empty = _new(empty, "new_empty")


def new_full(
    self: Any,
    size: Any,
    fill_value: Any,
    *,
    dtype: Any = None,
    device: Any = None,
    requires_grad: bool = False,
) -> Any:
    return full(
        size, fill_value, dtype=dtype or self.dtype, device=device or self.device, requires_grad=requires_grad
    )


def new_tensor(
    self: Any, data: Any, *, dtype: Any = None, device: Any = None, requires_grad: bool = False
) -> Any:
    return tensor(data, dtype=dtype or self.dtype, device=device or self.device, requires_grad=requires_grad)
