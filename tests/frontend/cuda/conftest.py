"""A stand-in for cupy, so ember's CUDA plumbing is tested on machines without a GPU.

``FakeCupy`` behaves like cupy where eager ember relies on it, and as strictly: its arrays are a type of
their own (not numpy's) that live on one of ``n`` fake GPUs; numpy refuses to convert them implicitly
(``np.asarray(a)`` raises TypeError, as with cupy), and mixing them with numpy arrays or with arrays of
another GPU raises; ``asnumpy``/``.get()`` copy to the host and ``asarray`` under ``cuda.Device(i)`` copies
to GPU i. It also has the parts of ``cupy.cuda`` that ``ember.cuda`` uses: runtime, Device, Stream, Event,
the default memory pool and set_allocator. The memory lives in numpy arrays, so results are numpy's.

The ``fake_cuda`` fixture installs it through ``ember.device.set_cuda_array_module`` (the one place ember
looks up the CUDA array module) and removes it afterwards. Tests that need a real GPU use ``real_cuda``.
"""

from __future__ import annotations

import types
import weakref
from typing import Any

import numpy as np
import pytest


class FakeArray:
    """A device array: numpy memory ``a`` on fake GPU ``dev``."""

    __slots__ = ("a", "dev", "__weakref__")
    __array_priority__ = 100

    def __init__(self, a: np.ndarray, dev: int) -> None:
        self.a = a
        self.dev = dev

    # cupy refuses implicit conversion; explicit copies are .get() and cupy.asnumpy
    def __array__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("Implicit conversion to a NumPy array is not allowed. Please use `.get()` to construct"
                        " a NumPy array explicitly.")

    def get(self) -> np.ndarray:
        return self.a.copy()

    @property
    def device(self) -> Any:
        return _FakeDevice(self.dev)

    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        fn = getattr(ufunc, method)
        return _call(fn, inputs, kwargs)

    def __array_function__(self, func: Any, types_: Any, args: Any, kwargs: Any) -> Any:
        if func.__name__ in ("may_share_memory", "shares_memory"):  # metadata only: any current GPU
            return func(*_unwrap(tuple(args)), **kwargs)
        return _call(func, args, kwargs)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # no __array_interface__ etc.: numpy must not see the memory
            raise AttributeError(name)
        value = getattr(self.a, name)
        if callable(value):
            return lambda *args, **kwargs: _call(value, args, kwargs, self.dev)
        return _wrap(value, self.dev) if isinstance(value, np.ndarray) else value

    def __getitem__(self, index: Any) -> Any:
        return _call(self.a.__getitem__, (index,), {}, self.dev)

    def __setitem__(self, index: Any, value: Any) -> None:
        _check_same_gpu([index, value], self.dev)
        self.a[_unwrap(index)] = value.a if isinstance(value, FakeArray) else value

    def __len__(self) -> int:
        return len(self.a)

    def __iter__(self) -> Any:
        return (self[i] for i in range(len(self.a)))

    def __bool__(self) -> bool:
        return bool(self.a)

    def __float__(self) -> float:
        return float(self.a)

    def __int__(self) -> int:
        return int(self.a)

    def __index__(self) -> int:
        return self.a.__index__()

    def __repr__(self) -> str:
        return f"FakeArray(gpu={self.dev}, {self.a!r})"

    __hash__ = None  # type: ignore[assignment]


def _add_operators() -> None:
    """Arithmetic, comparison and in-place operators through numpy's, checked like every other call."""
    for name in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul", "and", "or", "xor",
                 "lshift", "rshift", "eq", "ne", "lt", "le", "gt", "ge", "neg", "pos", "abs", "invert",
                 "radd", "rsub", "rmul", "rtruediv", "rfloordiv", "rmod", "rpow", "rmatmul", "rand", "ror",
                 "rxor"):
        dunder = f"__{name}__"

        def op(self: FakeArray, *other: Any, _d: str = dunder) -> Any:
            return _call(getattr(self.a, _d), other, {}, self.dev)

        setattr(FakeArray, dunder, op)
    for name in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "and", "or", "xor"):
        dunder = f"__i{name}__"

        def iop(self: FakeArray, other: Any, _d: str = dunder) -> Any:
            _check_same_gpu([other], self.dev)
            getattr(self.a, _d)(_unwrap(other))
            return self

        setattr(FakeArray, dunder, iop)


_add_operators()


class _FakeDevice:
    def __init__(self, id: int | None = None) -> None:  # noqa: A002  (cupy's name)
        self.id = _STATE["current"] if id is None else int(id)
        if not 0 <= self.id < _STATE["count"]:
            raise RuntimeError(f"cudaErrorInvalidDevice: invalid device ordinal {self.id}")
        self._prev: list[int] = []

    def use(self) -> None:
        _STATE["current"] = self.id

    def synchronize(self) -> None:
        _STATE["syncs"] += 1

    def __enter__(self) -> _FakeDevice:
        self._prev.append(_STATE["current"])
        _STATE["current"] = self.id
        return self

    def __exit__(self, *exc: Any) -> None:
        _STATE["current"] = self._prev.pop()


_STATE: dict[str, Any] = {"current": 0, "count": 1, "syncs": 0}


def _unwrap(x: Any) -> Any:
    if isinstance(x, FakeArray):
        return x.a
    if isinstance(x, (list, tuple)):
        return type(x)(_unwrap(y) for y in x)
    return x


def _walk(x: Any) -> Any:
    if isinstance(x, (list, tuple)):
        for y in x:
            yield from _walk(y)
    else:
        yield x


def _check_same_gpu(args: Any, dev: int | None = None) -> int:
    """cupy's rules: no numpy arrays among the operands, and every array on the current GPU."""
    found = dev
    for x in _walk(list(args)):
        if isinstance(x, np.ndarray):
            raise TypeError(f"Unsupported type {type(x)}")
        if isinstance(x, FakeArray):
            if x.dev != _STATE["current"]:
                raise ValueError(f"Array device must be same as the current device: array device = {x.dev}"
                                 f" while current = {_STATE['current']}")
            found = x.dev
    return _STATE["current"] if found is None else found


def _wrap(x: Any, dev: int) -> Any:
    if isinstance(x, np.ndarray):
        return FakeArray(x, dev)
    if isinstance(x, np.generic):  # cupy gives 0-d arrays where numpy gives scalars
        return FakeArray(np.asarray(x), dev)
    if isinstance(x, tuple):
        return tuple(_wrap(y, dev) for y in x)
    if isinstance(x, list):
        return [_wrap(y, dev) for y in x]
    return x


def _call(fn: Any, args: Any, kwargs: dict[str, Any], dev: int | None = None) -> Any:
    dev = _check_same_gpu(list(args) + list(kwargs.values()), dev)
    out = kwargs.get("out")
    result = fn(*_unwrap(tuple(args)), **{k: _unwrap(v) for k, v in kwargs.items()})
    if out is not None:
        return out
    return _new(_wrap(result, dev))


def _new(x: Any) -> Any:
    """Count a fresh allocation with the memory pool, as cupy's allocator would."""
    if isinstance(x, FakeArray) and x.a.base is None and _STATE.get("allocator") is not None:
        key = id(x.a)
        if key not in _COUNTED:  # one buffer may get several wrappers (astype(copy=False) returns it)
            mem = _STATE["allocator"](x.a.nbytes)
            _COUNTED[key] = mem
            weakref.finalize(x.a, _release, key)
    return x


_COUNTED: dict[int, Any] = {}  # id of a live numpy buffer -> its block in the fake pool


def _release(key: int) -> None:
    _COUNTED.pop(key).free()


class _Namespace:
    """A module of cupy-like functions: numpy's, with cupy's argument rules and device results."""

    def __init__(self, np_module: Any, hosts: tuple[str, ...] = ()) -> None:
        self._np = np_module
        self._hosts = hosts  # functions that take host data (asarray, array)

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._np, name)
        if isinstance(value, types.ModuleType):
            return _Namespace(value)
        if isinstance(value, type) or not callable(value):
            return value
        if isinstance(value, np.ufunc):
            return _Ufunc(value)
        return lambda *args, **kwargs: _call(value, args, kwargs)


class _Ufunc:
    def __init__(self, uf: np.ufunc) -> None:
        self._uf = uf

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return _call(self._uf, args, kwargs)

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._uf, name)
        if callable(value):
            return lambda *args, **kwargs: _call(value, args, kwargs)
        return value


class _Pool:
    """cupy's default memory pool: bytes in use per GPU, blocks rounded up to 512 bytes."""

    def __init__(self) -> None:
        self.used: dict[int, int] = {}
        self.cached: dict[int, int] = {}

    def malloc(self, size: int) -> Any:
        dev = _STATE["current"]
        size = -(-max(size, 1) // 512) * 512
        self.used[dev] = self.used.get(dev, 0) + size
        pool = self

        class _Mem:
            def free(self) -> None:
                pool.used[dev] -= size
                pool.cached[dev] = pool.cached.get(dev, 0) + size

        return _Mem()

    def used_bytes(self) -> int:
        return self.used.get(_STATE["current"], 0)

    def total_bytes(self) -> int:
        dev = _STATE["current"]
        return self.used.get(dev, 0) + self.cached.get(dev, 0)

    def free_all_blocks(self) -> None:
        self.cached.clear()


class _Stream:
    null: Any = None

    def __init__(self, non_blocking: bool = False) -> None:
        self.ptr = id(self)
        self.done = True
        self.waited: list[Any] = []

    def synchronize(self) -> None:
        _STATE["syncs"] += 1

    def wait_event(self, event: Any) -> None:
        self.waited.append(event)

    def __enter__(self) -> _Stream:
        _STATE["streams"].append(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        _STATE["streams"].pop()


class _Event:
    def __init__(self, block: bool = False, disable_timing: bool = False, interprocess: bool = False) -> None:
        self.timing = not disable_timing
        self.recorded_on: Any = None
        self.done = True
        self.time = 0.0

    def record(self, stream: Any = None) -> None:
        self.recorded_on = stream or _STATE["streams"][-1]
        _STATE["clock"] += 1.5
        self.time = _STATE["clock"]

    def synchronize(self) -> None:
        _STATE["syncs"] += 1


def _elapsed(start: _Event, end: _Event) -> float:
    if not (start.timing and end.timing):
        raise RuntimeError("cudaErrorInvalidResourceHandle: events were created without timing")
    return end.time - start.time


class FakeCupy(_Namespace):
    """The module object: ``fake.asarray``, ``fake.ndarray``, ``fake.cuda.Device`` ..."""

    ndarray = FakeArray

    def __init__(self, gpus: int = 1) -> None:
        super().__init__(np)
        _STATE.update(current=0, count=gpus, syncs=0, allocator=None, clock=0.0)
        _Stream.null = _Stream()
        _STATE["streams"] = [_Stream.null]
        self._pool = _Pool()
        runtime = types.SimpleNamespace(getDeviceCount=lambda: _STATE["count"],
                                        getDeviceProperties=lambda i: {"name": f"Fake GPU {i}".encode()})
        self.cuda = types.SimpleNamespace(
            runtime=runtime, Device=_FakeDevice, Stream=_Stream, Event=_Event, get_elapsed_time=_elapsed,
            get_current_stream=lambda: _STATE["streams"][-1],
            set_allocator=lambda fn: _STATE.update(allocator=fn),
        )
        self.__name__ = "cupy"

    @property
    def state(self) -> dict[str, Any]:
        return _STATE

    def get_default_memory_pool(self) -> _Pool:
        return self._pool

    def asarray(self, a: Any, dtype: Any = None, order: Any = None) -> FakeArray:
        dev = _STATE["current"]
        if isinstance(a, FakeArray):
            if a.dev == dev:
                return a if dtype is None or a.a.dtype == dtype else _new(FakeArray(a.a.astype(dtype), dev))
            return _new(FakeArray(np.array(a.a, dtype=dtype, order=order or "K"), dev))  # GPU -> GPU copy
        _check_host(a)
        return _new(FakeArray(np.array(a, dtype=dtype, order=order or "K"), dev))

    def array(self, a: Any, dtype: Any = None, copy: bool = True, order: Any = "K") -> FakeArray:
        if isinstance(a, FakeArray):
            _check_same_gpu([a])
            return _new(FakeArray(np.array(a.a, dtype=dtype, copy=copy, order=order), a.dev))
        return self.asarray(a, dtype=dtype)

    def asnumpy(self, a: Any) -> np.ndarray:
        return a.get() if isinstance(a, FakeArray) else np.asarray(a)


def _check_host(a: Any) -> None:
    for x in _walk([a]):
        if isinstance(x, FakeArray):
            raise TypeError("a list holding device arrays cannot be copied to a device (cupy.asarray)")


@pytest.fixture
def fake_cuda() -> Any:
    """One fake GPU, installed as ember's CUDA array module for the test."""
    yield from _install(1)


@pytest.fixture
def fake_cuda2() -> Any:
    """Two fake GPUs."""
    yield from _install(2)


def _install(gpus: int) -> Any:
    from ember.device import set_cuda_array_module

    fake = FakeCupy(gpus)
    previous = set_cuda_array_module(fake)
    try:
        yield fake
    finally:
        set_cuda_array_module(previous)


@pytest.fixture
def real_cuda() -> Any:
    """The real cupy on a real GPU; the test is skipped where there is none."""
    import ember

    if not ember.cuda.is_available():
        pytest.skip("needs a CUDA GPU and cupy (pip install \"ember[cuda]\")")
    import cupy

    return cupy
