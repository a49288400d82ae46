"""The CPU back end: runs an ``Executable``'s native entry function through one ctypes call.

Arguments are checked (count, shape, dtype), made C-contiguous, and passed as arrays of pointers;
outputs are allocated fresh for every call so results never alias each other. The arena is allocated
once per ``CpuExecutable`` (64-byte aligned) and reused; a lock serializes calls on one instance
because they share that arena.
"""

from __future__ import annotations

import ctypes
import functools
import os
import threading
from typing import Any

import numpy as np
from ember.runtime import settings
from ember.runtime.errors import ArgumentError, DTypeError, ShapeError
from ember.runtime.executable import Executable, TensorSpec

__all__ = ["CpuExecutable", "ENTRY_SIGNATURE"]

ENTRY_SIGNATURE = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                                   ctypes.c_void_p, ctypes.c_int32)
_ALIGN = 64


def _aligned_bytes(nbytes: int) -> np.ndarray:
    raw = np.zeros(nbytes + _ALIGN, dtype=np.uint8)
    start = (-raw.ctypes.data) % _ALIGN
    return raw[start:start + nbytes]


def _pointer_array(arrays: list[np.ndarray]) -> Any:
    return (ctypes.c_void_p * max(len(arrays), 1))(*[a.ctypes.data for a in arrays])


def _check(spec: TensorSpec, value: Any, what: str, name: str) -> np.ndarray:
    if not isinstance(value, np.ndarray):
        value = np.asarray(value)
    if value.dtype != np.dtype(spec.dtype):
        raise DTypeError(f"{name}: {what} '{spec.name}' must have dtype {spec.dtype}, got {value.dtype}")
    if tuple(value.shape) != tuple(spec.shape):
        raise ShapeError(f"{name}: {what} '{spec.name}' must have shape {list(spec.shape)}, "
                         f"got {list(value.shape)}")
    return np.ascontiguousarray(value)


@functools.lru_cache(maxsize=1)
def _cpu_count() -> int:
    return os.cpu_count() or 1  # slow to ask (tens of microseconds), and it does not change


def _threads() -> int:
    """``settings.num_threads()`` without asking the OS for the core count on every call."""
    n = settings.get("NUM_THREADS")
    return n if n > 0 else _cpu_count()


class CpuExecutable:
    """A callable over numpy arrays: ``outputs = exe(*inputs)`` (a tuple, one array per output).

    The pointer arrays the entry function reads are allocated once and refilled under the lock, so a
    call costs a few microseconds of Python around the one native call.
    """

    def __init__(self, exe: Executable) -> None:
        self.exe = exe
        if exe.entry_address:
            self._fn = ENTRY_SIGNATURE(exe.entry_address)
            self._lib = None
        else:
            self._lib = ctypes.CDLL(exe.library_path)
            self._fn = ENTRY_SIGNATURE((exe.entry_symbol, self._lib))
        self._arena = _aligned_bytes(exe.arena_bytes)
        params = []
        for spec in exe.params:
            if spec.name not in exe.constants:
                raise ArgumentError(f"{exe.name}: no value for parameter '{spec.name}'")
            params.append(_check(spec, exe.constants[spec.name], "parameter", exe.name))
        self._params = params  # kept referenced: the native code reads them at every call
        self._param_ptrs = _pointer_array(params)
        self._in_ptrs = (ctypes.c_void_p * max(len(exe.inputs), 1))()
        self._out_ptrs = (ctypes.c_void_p * max(len(exe.outputs), 1))()
        self._addresses = (ctypes.addressof(self._in_ptrs), ctypes.addressof(self._out_ptrs),
                           ctypes.addressof(self._param_ptrs), self._arena.ctypes.data)
        self._lock = threading.Lock()

    def __call__(self, *inputs: Any, out: list[np.ndarray] | None = None) -> tuple[np.ndarray, ...]:
        exe = self.exe
        if len(inputs) != len(exe.inputs):
            raise ArgumentError(f"{exe.name}: expected {len(exe.inputs)} inputs "
                                f"({', '.join(s.name for s in exe.inputs)}), got {len(inputs)}")
        args = [_check(spec, x, "input", exe.name) for spec, x in zip(exe.inputs, inputs)]
        if out is None:
            outs = [np.empty(s.shape, dtype=s.dtype) for s in exe.outputs]
        else:
            outs = [_check(s, o, "output", exe.name) for s, o in zip(exe.outputs, out)]
        threads = _threads()
        with self._lock:
            for i, a in enumerate(args):
                self._in_ptrs[i] = a.ctypes.data
            for i, o in enumerate(outs):
                self._out_ptrs[i] = o.ctypes.data
            status = self._fn(*self._addresses, threads)
        if status:
            raise MemoryError(f"{exe.name}: a kernel could not allocate its working memory")
        return tuple(outs)
