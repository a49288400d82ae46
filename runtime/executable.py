"""``Executable``: a compiled graph as plain data, runnable without the compiler.

It holds what a back end needs to run the graph and nothing that needs ``ember.compiler`` or llvmlite:
the input/output/parameter signatures, the parameter values (weights and other constants), the
memory plan of the arena holding every intermediate, the kernel call order (for reports), and the
native code as either a function address (JIT: ``owner`` keeps the code alive) or a shared library
path and symbol (AOT). The entry function's C signature is fixed::

    int32_t entry(void **inputs, void **outputs, void **params, void *arena, int32_t num_threads);

It returns 0 on success, nonzero when a kernel could not allocate its working memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ember.runtime.errors import ArgumentError

__all__ = ["Executable", "TensorSpec"]


@dataclass(frozen=True)
class TensorSpec:
    """Name, shape and numpy dtype name of one input, output or parameter."""

    name: str
    shape: tuple[int, ...]
    dtype: str

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize

    def __str__(self) -> str:
        return f"{self.name}: {self.dtype}[{','.join(map(str, self.shape))}]"


@dataclass
class Executable:
    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    params: tuple[TensorSpec, ...] = ()
    constants: dict[str, np.ndarray] = field(default_factory=dict)   # parameter name -> value
    arena_bytes: int = 0
    memory_plan: dict[str, tuple[int, int]] = field(default_factory=dict)  # value -> (offset, nbytes)
    call_order: tuple[str, ...] = ()
    entry_symbol: str = "ember_entry"
    entry_address: int = 0              # JIT: address of the entry function in this process
    library_path: str | None = None     # AOT: shared library defining entry_symbol
    owner: Any = None                   # keeps JIT code alive as long as this executable
    sources: dict[str, str] = field(default_factory=dict)  # kernel IR / LLVM IR text, for reports
    backend: str = "cpu"

    def __post_init__(self) -> None:
        if self.backend == "cpu" and not self.entry_address and not self.library_path:
            raise ArgumentError(f"executable {self.name!r}: give the entry function's address (JIT) or a "
                                "shared library path (AOT)")

    def describe(self) -> str:
        """A short text summary: signature, arena size and kernel order."""
        lines = [f"executable {self.name} ({self.backend}), arena {self.arena_bytes} bytes"]
        lines += [f"  input  {s}" for s in self.inputs]
        lines += [f"  param  {s}" for s in self.params]
        lines += [f"  output {s}" for s in self.outputs]
        lines += [f"  call   {k}" for k in self.call_order]
        return "\n".join(lines)


def make_runner(exe: Executable) -> Any:
    """The runtime back end for an executable, by its ``backend`` field: ``CpuExecutable`` for "cpu",
    ``CudaExecutable`` (cupy; DeviceError without a GPU) for "cuda". Both are called with ``run(seq)``."""
    if exe.backend == "cuda":
        from ember.runtime.cuda import CudaExecutable

        return CudaExecutable(exe)
    from ember.runtime.cpu import CpuExecutable

    return CpuExecutable(exe)
