"""A kernel-IR ``Program`` -> one LLVM module with one native entry function -> an ``Executable``.

The entry function (C view)::

    int32_t <name>_entry(void **inputs, void **outputs, void **params, void *arena, int32_t num_threads);

binds every kernel argument to its slot (an input/output/param pointer or ``arena + offset``) and
calls the kernels in program order, so one model call is one native call; kernels are internal
functions that LLVM may inline into it. The result is OR-ed kernel status (nonzero: out of memory).
"""

from __future__ import annotations

from typing import Any

import llvmlite.ir as ir
import numpy as np
from ember.compiler.codegen.llvm import exprs as X
from ember.compiler.codegen.llvm.irutil import I8, I32, i64, new_function
from ember.compiler.codegen.llvm.kernels import emit_kernel
from ember.compiler.kernel.ir import Buffer
from ember.compiler.kernel.lower import sanitize
from ember.compiler.kernel.program import Program
from ember.runtime.errors import CompileError
from ember.runtime.executable import Executable, TensorSpec

__all__ = ["compile_groups", "compile_program", "emit_object", "emit_program", "ensure_libm", "entry_symbol"]

_I8PTR = I8.as_pointer()


def entry_symbol(program: Program) -> str:
    return f"{sanitize(program.name)}_entry"


def emit_program(program: Program, module: ir.Module | None = None) -> ir.Module:
    """Emit every kernel of ``program`` and its entry function into ``module`` (a new one if None)."""
    module = module or ir.Module(name=sanitize(program.name))
    shared: dict = {}
    fns = {k.name: (emit_kernel(module, k, shared), k) for k in program.kernels}
    fn, b = new_function(module, entry_symbol(program), I32,
                         [("inputs", _I8PTR.as_pointer()), ("outputs", _I8PTR.as_pointer()),
                          ("params", _I8PTR.as_pointer()), ("arena", _I8PTR), ("num_threads", I32)],
                         internal=False)
    lists = {"input": fn.args[0], "output": fn.args[1], "param": fn.args[2]}
    arena, nthreads = fn.args[3], fn.args[4]
    status = I32(0)
    for call in program.calls:
        if call.kernel not in fns:
            raise CompileError(f"program {program.name!r} calls unknown kernel {call.kernel!r}")
        kfn, kernel = fns[call.kernel]
        args = []
        for slot, param in zip(call.args, kernel.params):
            if slot.kind == "arena":
                raw = b.gep(arena, [i64(slot.index)], inbounds=True)
            else:
                raw = b.load(b.gep(lists[slot.kind], [i64(slot.index)], inbounds=True))
            args.append(b.bitcast(raw, X.mem_type(param.dtype).as_pointer()))
        status = b.or_(status, b.call(kfn, [*args, nthreads]))
    b.ret(status)
    return module


_libm_loaded = False


def ensure_libm() -> None:
    """Make libm's symbols (sinf, expm1f, ...) resolvable by the JIT: kernels call them for the math
    functions that are not inlined, and LLVM lowers intrinsics such as ``llvm.sin`` to them too."""
    global _libm_loaded
    if not _libm_loaded:
        import ctypes.util

        import llvmlite.binding as llvm

        llvm.load_library_permanently(ctypes.util.find_library("m") or "libm.so.6")
        _libm_loaded = True


def _spec(buf: Buffer, name: str | None = None) -> TensorSpec:
    return TensorSpec(name or buf.name, tuple(buf.shape), buf.dtype.np.name)


def compile_program(program: Program, constants: dict[str, np.ndarray] | None = None,
                    names: dict[str, str] | None = None) -> Executable:
    """JIT-compile ``program`` into an ``Executable`` for the CPU back end.

    ``constants`` gives the value of each parameter (by buffer name); ``names`` optionally maps buffer
    names back to the user's value names for the signature.
    """
    from ember.compiler.codegen.llvm.jit import JitModule

    names = names or {}
    ensure_libm()
    module = emit_program(program)
    jm = JitModule(module, name=program.name, loop_unrolling=False)
    symbol = entry_symbol(program)
    sources = {k.name: str(k) for k in program.kernels}
    sources["llvm"] = jm.llvm_ir
    return Executable(
        name=program.name,
        inputs=tuple(_spec(b, names.get(b.name)) for b in program.inputs),
        outputs=tuple(_spec(b, names.get(b.name)) for b in program.outputs),
        params=tuple(_spec(b) for b in program.params),
        constants=dict(constants or {}),
        arena_bytes=program.arena_bytes,
        memory_plan=dict(program.memory_plan),
        call_order=tuple(c.kernel for c in program.calls),
        entry_symbol=symbol,
        entry_address=jm.address(symbol),
        owner=jm,
        sources=sources,
    )


def emit_object(program: Program) -> bytes:
    """``program`` (kernels and entry function) as a position-independent ELF object, for linking into
    a shared library (``cc -shared obj.o -lgomp -lm``) that the runtime loads as an AOT executable."""
    from ember.compiler.codegen.llvm.jit import JitModule

    ensure_libm()
    return JitModule(emit_program(program), name=program.name, loop_unrolling=False).emit_object()


def compile_groups(name: str, groups: list, inputs: list[str], outputs: list[str],
                   params: dict[str, np.ndarray] | None = None) -> Any:
    """Lower, generate and JIT a list of fusion groups as one program; returns a ``CpuExecutable``
    (call it with numpy arrays for ``inputs``; ``params`` are bound as constants). A convenience for
    tests, benchmarks and tools that start from fusion groups rather than a graph."""
    from ember.compiler.kernel.program import build_program
    from ember.runtime.cpu import CpuExecutable

    params = dict(params or {})
    program = build_program(name, groups, inputs, outputs, list(params))
    constants = {sanitize(k): v for k, v in params.items()}
    return CpuExecutable(compile_program(program, constants, {sanitize(v): v for v in [*inputs, *outputs]}))
