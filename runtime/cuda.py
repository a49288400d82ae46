"""The CUDA back end: runs an ``Executable`` whose code is a cubin and a launch table, through cupy.

What the compiler hands over (``CudaImage``, kept in ``Executable.owner`` with ``backend="cuda"``) is
data: the cubin (SASS for one architecture) and PTX when available, the CUDA C source, and the ordered
``Launch`` list. A launch names a ``__global__`` function, its grid, block and dynamic shared bytes, and
its arguments: a pointer into an input, output, parameter or the arena plus a byte offset, a 64-bit
integer, or NULL. Host loops of the program are already unrolled into launches.

``CudaExecutable(exe)`` loads the module (``cupy.cuda.Module.load``), uploads the parameters once, makes
one device allocation for the arena and fixed device buffers for inputs and outputs (so every launch's
arguments are fixed at construction), and on each call copies the inputs in, launches everything in
order on one stream, and copies the outputs out. With ``graph=True`` the launches are captured once as
a CUDA graph and replayed, which removes the per-launch CPU cost. Device arrays (cupy) given as inputs
are copied device-to-device; ``device_outputs=True`` returns cupy arrays.

Without cupy or a GPU, constructing one raises ``DeviceError`` with the install hint. Like the CPU
back end this module imports nothing from ``ember.compiler``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ember.runtime.errors import ArgumentError, DeviceError, DTypeError, ShapeError
from ember.runtime.executable import Executable, TensorSpec

__all__ = ["CudaExecutable", "CudaImage", "INSTALL_HINT", "Launch", "require_gpu"]

INSTALL_HINT = 'install the CUDA extra with: pip install "ember[cuda]" (needs an NVIDIA GPU and driver)'


@dataclass(frozen=True)
class Launch:
    """One kernel launch. ``args`` items: ``("ptr", kind, index, byte_offset)`` with kind
    input/output/param (index into that list) or arena (index 0); ``("i64", value)``; ``("null",)``."""

    function: str
    grid: tuple[int, int, int]
    block: tuple[int, int, int]
    shared_bytes: int
    args: tuple[tuple[Any, ...], ...]
    kernel: str = ""                       # the kernel-IR kernel this launch belongs to (reports)


@dataclass
class CudaImage:
    """The device code of one compiled program."""

    cubin: bytes
    arch: str
    launches: tuple[Launch, ...]
    functions: tuple[str, ...]
    source: str = ""
    ptx: str | None = None
    resources: dict[str, dict[str, int]] = field(default_factory=dict)  # function -> registers, shared


def require_gpu() -> Any:
    """cupy, when it is installed and sees a GPU; otherwise ``DeviceError`` with the install hint."""
    try:
        import cupy
    except ImportError:
        raise DeviceError(f"compiled CUDA code needs cupy, which is not installed; {INSTALL_HINT}") from None
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # cupy raises its own error types when there is no driver
        raise DeviceError(f"CUDA is not usable here ({e}); {INSTALL_HINT}") from None
    if count < 1:
        raise DeviceError(f"no CUDA GPU is present; {INSTALL_HINT}")
    return cupy


def _check(spec: TensorSpec, value: Any, what: str, name: str) -> Any:
    if tuple(value.shape) != tuple(spec.shape):
        raise ShapeError(f"{name}: {what} '{spec.name}' must have shape {list(spec.shape)}, got {list(value.shape)}")
    if np.dtype(value.dtype) != np.dtype(spec.dtype):
        raise DTypeError(f"{name}: {what} '{spec.name}' must have dtype {spec.dtype}, got {value.dtype}")
    return value


class CudaExecutable:
    """A callable over numpy (or cupy) arrays: ``outputs = exe(*inputs)``, one array per output."""

    def __init__(self, exe: Executable, graph: bool = False, device_outputs: bool = False) -> None:
        cp = require_gpu()
        image = exe.owner
        if exe.backend != "cuda" or not isinstance(image, CudaImage):
            raise ArgumentError(f"{exe.name}: not a CUDA executable (backend {exe.backend!r})")
        self.exe, self.image, self.cp = exe, image, cp
        self.module = cp.cuda.Module()
        self.module.load(image.cubin)
        self.functions = {f: self.module.get_function(f) for f in image.functions}
        self.params = []
        for spec in exe.params:
            if spec.name not in exe.constants:
                raise ArgumentError(f"{exe.name}: no value for parameter '{spec.name}'")
            host = np.ascontiguousarray(_check(spec, exe.constants[spec.name], "parameter", exe.name))
            self.params.append(cp.asarray(host))
        self.arena = cp.empty(max(exe.arena_bytes, 1), dtype=cp.uint8)
        self.inputs = [cp.empty(s.shape, dtype=s.dtype) for s in exe.inputs]
        self.outputs = [cp.empty(s.shape, dtype=s.dtype) for s in exe.outputs]
        self.stream = cp.cuda.Stream(non_blocking=True)
        self.calls = [(self.functions[ln.function], ln.grid, ln.block, ln.shared_bytes, self._bind(ln.args))
                      for ln in image.launches]
        self.device_outputs = device_outputs
        self._graph = None
        self._use_graph = graph
        self._lock = threading.Lock()

    def _bind(self, args: tuple[tuple[Any, ...], ...]) -> tuple[Any, ...]:
        """Kernel arguments as fixed numpy scalars (pointers passed by value as 64-bit integers)."""
        lists = {"input": self.inputs, "output": self.outputs, "param": self.params}
        out = []
        for a in args:
            if a[0] == "ptr":
                base = self.arena if a[1] == "arena" else lists[a[1]][a[2]]
                out.append(np.uint64(base.data.ptr + a[3]))
            elif a[0] == "i64":
                out.append(np.int64(a[1]))
            elif a[0] == "null":
                out.append(np.uint64(0))
            else:
                raise ArgumentError(f"{self.exe.name}: unknown launch argument {a!r}")
        return tuple(out)

    def _launch_all(self) -> None:
        for fn, grid, block, shared, args in self.calls:
            fn(grid, block, args, shared_mem=shared, stream=self.stream)

    def _run(self) -> None:
        if not self._use_graph:
            self._launch_all()
            return
        if self._graph is None:
            self.stream.begin_capture()
            self._launch_all()
            self._graph = self.stream.end_capture()
        self._graph.launch(stream=self.stream)

    def run(self, inputs: Any) -> tuple[Any, ...]:
        """``self(*inputs)`` with the inputs as one sequence (the CPU back end's calling convention)."""
        return self(*inputs)

    def __call__(self, *inputs: Any) -> tuple[Any, ...]:
        exe, cp = self.exe, self.cp
        if len(inputs) != len(exe.inputs):
            raise ArgumentError(f"{exe.name}: expected {len(exe.inputs)} inputs "
                                f"({', '.join(s.name for s in exe.inputs)}), got {len(inputs)}")
        with self._lock, self.stream:
            for spec, dst, x in zip(exe.inputs, self.inputs, inputs):
                _check(spec, x, "input", exe.name)
                if isinstance(x, cp.ndarray):
                    dst[...] = x
                else:
                    dst.set(np.ascontiguousarray(x), stream=self.stream)
            self._run()
            if self.device_outputs:
                outs = tuple(o.copy() for o in self.outputs)
            else:
                outs = tuple(o.get(stream=self.stream) for o in self.outputs)
            self.stream.synchronize()
        return outs
