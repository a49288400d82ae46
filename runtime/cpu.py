"""The CPU back end: runs an ``Executable``'s native entry function through one ctypes call.

Arguments are checked (count, shape, dtype), made C-contiguous, and passed as arrays of pointers;
outputs are fresh arrays on every call so results never alias each other. The arena is allocated
once per ``CpuExecutable`` (64-byte aligned) and reused; a lock serializes calls on one instance
because they share that arena.

The Python around the native call is the whole cost of a small model's call, so the hot path avoids
what is slow in numpy: ``a.ctypes.data`` (several microseconds: it builds a helper object) is asked
only for an input array not seen in the previous call, and small outputs are written into buffers
owned by the instance (addresses fixed at construction) and copied out, which is cheaper than
allocating an array and asking for its address.
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
_STAGED_BYTES = 1 << 14  # outputs up to this size go through a fixed staging buffer and a copy


def _aligned_bytes(nbytes: int) -> np.ndarray:
    raw = np.zeros(nbytes + _ALIGN, dtype=np.uint8)
    start = (-raw.ctypes.data) % _ALIGN
    return raw[start:start + nbytes]


def _address(a: np.ndarray) -> int:
    """The data address of a C-contiguous array; ctypes' ``from_buffer`` is ~4x cheaper than
    ``a.ctypes.data`` but needs a writable, non-empty buffer."""
    try:
        return ctypes.addressof(ctypes.c_char.from_buffer(a))
    except (TypeError, ValueError, BufferError):
        return a.ctypes.data


def _staging(shape: tuple[int, ...], dtype: np.dtype) -> tuple[np.ndarray, int] | None:
    """A staging buffer and its address for a small non-empty output, or None (allocated per call)."""
    nbytes = dtype.itemsize * int(np.prod(shape, dtype=np.int64))
    if not 0 < nbytes <= _STAGED_BYTES:
        return None
    buf = np.empty(shape, dtype)
    return buf, buf.ctypes.data


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
        self._in_sig = [(tuple(sp.shape), np.dtype(sp.dtype)) for sp in exe.inputs]
        self._out_sig = [(tuple(sp.shape), np.dtype(sp.dtype)) for sp in exe.outputs]
        self._held: list[Any] = [None] * len(exe.inputs)
        # staging buffers of the small outputs (None: allocated per call); see the module docstring
        self._staged = [_staging(shape, dtype) for shape, dtype in self._out_sig]
        self._num_inputs = len(exe.inputs)
        self._all_staged = all(st is not None for st in self._staged)
        self._staged_arrays = [st[0] for st in self._staged] if self._all_staged else []
        self._out_dirty = True

    def __call__(self, *inputs: Any, out: list[np.ndarray] | None = None) -> tuple[np.ndarray, ...]:
        return self.run(inputs, out)

    def run(self, inputs: Any, out: list[np.ndarray] | None = None) -> tuple[np.ndarray, ...]:
        """``self(*inputs)`` with the inputs as one sequence (no argument repacking on the hot path)."""
        exe = self.exe
        if len(inputs) != self._num_inputs:
            raise ArgumentError(f"{exe.name}: expected {len(exe.inputs)} inputs "
                                f"({', '.join(s.name for s in exe.inputs)}), got {len(inputs)}")
        if out is not None:
            outs = [_check(s, o, "output", exe.name) for s, o in zip(exe.outputs, out)]
            out_addrs = [_address(o) for o in outs]
        elif self._all_staged:
            outs, out_addrs = self._staged_arrays, None
        else:
            outs = [np.empty(shape, dtype) if st is None else st[0]
                    for st, (shape, dtype) in zip(self._staged, self._out_sig)]
            out_addrs = [_address(o) if st is None else st[1] for st, o in zip(self._staged, outs)]
        threads = _threads()
        in_sig, held, in_ptrs = self._in_sig, self._held, self._in_ptrs
        with self._lock:
            for i, x in enumerate(inputs):
                shape, dtype = in_sig[i]
                if not (type(x) is np.ndarray and x.dtype == dtype and x.shape == shape and x.flags.c_contiguous):
                    x = _check(exe.inputs[i], x, "input", exe.name)
                if held[i] is not x:  # holding the last array keeps its address valid
                    in_ptrs[i] = _address(x)
                    held[i] = x
            if out_addrs is not None:
                for i, addr in enumerate(out_addrs):
                    self._out_ptrs[i] = addr
            elif self._out_dirty:  # the staging addresses, set once (an out= call may have replaced them)
                for i, st in enumerate(self._staged):
                    self._out_ptrs[i] = st[1]
            self._out_dirty = out_addrs is not None
            status = self._fn(*self._addresses, threads)
            if out is None:
                outs = [o.copy() if st is not None else o for st, o in zip(self._staged, outs)]
        if status:
            raise MemoryError(f"{exe.name}: a kernel could not allocate its working memory")
        return tuple(outs)
