"""Compile LLVM IR to host machine code: JIT (MCJIT) for in-process calls, object files for AOT linking.

Why it looks the way it does:

* LLVM is initialized lazily (first use of this module's functions), never when ``ember`` is imported,
  so ``import ember`` stays fast and a deployed runtime never needs llvmlite.
* One host ``TargetMachine`` (the CPU name and feature string llvmlite detects, ``opt=3``) is built with
  ``reloc="pic"`` so the very same code generator can emit objects that link into a shared library
  (``ember.export``); the JIT uses a twin machine with the JIT code model.
* Optimization runs the *new* pass manager's O3 pipeline (LLVM 22 has no legacy one).
* libgomp is loaded once, ``RTLD_GLOBAL``, and kept referenced for the life of the process: generated
  parallel loops call ``GOMP_parallel``, and unloading libgomp at exit while its threads idle can crash.
* Before machine code is finalized every external function the module declares must resolve in the
  process; otherwise MCJIT would fail late with an obscure message (or jump to address 0), so we raise a
  ``CompileError`` listing the unresolved names instead.
* The machine code MCJIT generates is captured (its object-cache hook hands over the ELF object it is
  about to load), so the compile cache (``compiler/cache.py``) can store it without a second code
  generation, and ``load_object`` can later put the same bytes into a fresh engine of another process:
  no LLVM IR is parsed, optimized or compiled then.
"""

from __future__ import annotations

import ctypes
import functools
import os
import threading
from typing import Any

import llvmlite.binding as llvm
import llvmlite.ir as ir
from ember.runtime import settings
from ember.runtime.errors import CompileError

__all__ = [
    "JitModule",
    "compile_ir",
    "host_vector_lanes",
    "LoadedObject",
    "host_target_machine",
    "load_object",
    "optimize_module",
    "parse_ir",
    "unresolved_externals",
]

_lock = threading.RLock()
_initialized = False
_gomp: ctypes.CDLL | None = None  # kept referenced forever on purpose (see module docstring)
_target_machines: dict[bool, llvm.TargetMachine] = {}  # only the shared object-file machine


_GOMP_SYMBOLS = ("GOMP_parallel", "omp_get_num_threads", "omp_get_thread_num")


def _gomp_path() -> str:
    """The system libgomp by full path. Opened by its soname, dlopen returns any copy already loaded
    under that name: PyTorch bundles one, initialized (busy-wait policy) when torch was imported, and
    kernels forking on it ran 12x slower (MLP @64 on 2 threads: 16 ms instead of 1.3 ms)."""
    import sysconfig

    arch = sysconfig.get_config_var("MULTIARCH") or ""
    for folder in (f"/usr/lib/{arch}", f"/lib/{arch}", "/usr/lib64", "/lib64", "/usr/lib", "/lib"):
        candidate = os.path.join(folder, "libgomp.so.1")
        if os.path.isfile(candidate):
            return candidate
    import ctypes.util

    return ctypes.util.find_library("gomp") or "libgomp.so.1"


def _ensure_initialized() -> None:
    """Initialize the native target, its asm printer/parser and libgomp, once per process."""
    global _initialized, _gomp
    if _initialized:
        return
    with _lock:
        if _initialized:
            return
        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        llvm.initialize_native_asmparser()
        settings.prepare_thread_pool()  # how idle libgomp workers wait (read once, at load)
        path = _gomp_path()
        try:
            _gomp = ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
        except OSError:
            _gomp = None  # serial code still works; parallel kernels fail the symbol check clearly
        else:
            if not llvm.address_of_symbol("GOMP_parallel"):
                llvm.load_library_permanently(path)
            for name in _GOMP_SYMBOLS:  # bind generated code to this copy, not another one loaded earlier
                llvm.add_symbol(name, ctypes.cast(getattr(_gomp, name), ctypes.c_void_p).value)
        _initialized = True


def _create_target_machine(jit: bool) -> llvm.TargetMachine:
    target = llvm.Target.from_default_triple()
    return target.create_target_machine(
        cpu=llvm.get_host_cpu_name(),
        features=llvm.get_host_cpu_features().flatten(),
        opt=3,
        reloc="pic",
        codemodel="jitdefault" if jit else "default",
        jit=jit,
    )


@functools.cache
def host_vector_lanes() -> int:
    """float32 lanes of the host's widest vector registers: 16 where AVX-512F is present, else 8.

    The GEMM template sizes its register tile by this (``gemm.register_tile``): on Zen 4 a 8x16 tile of
    16-lane accumulators measured 109-115 GFLOP/s per core in the inner loop against 90 for the 6x16
    tile of 8-lane ones (its FMA peak is about 115), because each FMA instruction does twice the work
    for the same loads and loop overhead."""
    _ensure_initialized()
    return 16 if llvm.get_host_cpu_features().get("avx512f", False) else 8


def host_target_machine(jit: bool = False) -> llvm.TargetMachine:
    """The host target machine: host CPU and features, opt level 3, position-independent code.

    ``jit=False`` gives the shared, cached machine for optimization and object files (default code
    model, linkable into a ``.so``). ``jit=True`` gives a *new* machine with the JIT code model on every
    call, because an MCJIT execution engine takes ownership of its machine and destroys it with itself.
    """
    _ensure_initialized()
    if jit:
        return _create_target_machine(jit=True)
    with _lock:
        tm = _target_machines.get(False)
        if tm is None:
            tm = _target_machines[False] = _create_target_machine(jit=False)
        return tm


def parse_ir(module: ir.Module | str, name: str = "ember") -> llvm.ModuleRef:
    """Parse an llvmlite module (or LLVM IR text) for the host and verify it.

    The triple and data layout are set to the host's so the optimizer knows type sizes and vector
    widths. Invalid IR raises ``CompileError`` with LLVM's message.
    """
    _ensure_initialized()
    text = str(module)
    try:
        ref = llvm.parse_assembly(text)
        ref.verify()
    except RuntimeError as exc:
        raise CompileError(f"LLVM rejected the generated IR of module {name!r}: {exc}") from exc
    tm = host_target_machine(jit=False)
    ref.triple = tm.triple
    ref.data_layout = str(tm.target_data)
    ref.name = name
    return ref


def optimize_module(ref: llvm.ModuleRef, speed_level: int = 3, loop_unrolling: bool | None = None) -> None:
    """Run the new pass manager's default ``O<speed_level>`` pipeline (vectorizers on) over ``ref``.

    ``loop_unrolling=False`` skips LLVM's loop unroller: code that is already vectorized and unrolled
    by its generator gains little from it, and fully unrolling small constant-trip loops dominates
    compile time."""
    tm = host_target_machine(jit=False)
    pto = llvm.create_pipeline_tuning_options(speed_level=speed_level)
    pto.loop_vectorization = speed_level >= 2
    pto.slp_vectorization = speed_level >= 2
    pto.loop_unrolling = speed_level >= 2 if loop_unrolling is None else loop_unrolling
    pb = llvm.create_pass_builder(tm, pto)
    pm = pb.getModulePassManager()
    pm.run(ref, pb)


def unresolved_externals(ref: llvm.ModuleRef) -> list[str]:
    """Names of functions ``ref`` declares but does not define that the process cannot resolve.

    LLVM intrinsics (``llvm.*``) are lowered by the code generator and are never looked up.
    """
    _ensure_initialized()
    missing = []
    for fn in ref.functions:
        if fn.is_declaration and not fn.name.startswith("llvm.") and not llvm.address_of_symbol(fn.name):
            missing.append(fn.name)
    return sorted(missing)


class JitModule:
    """One compiled LLVM module: JIT-compiled machine code plus the means to emit it as an object file.

    The module is parsed, verified and optimized at construction. Machine code is produced lazily on the
    first ``address``/``cfunc`` call. Function pointers stay valid as long as this object is alive:
    keep a reference wherever a pointer is kept.
    """

    def __init__(self, module: ir.Module | str, name: str = "ember", optimize: bool = True,
                 loop_unrolling: bool | None = None) -> None:
        self.name = name
        self._ref = parse_ir(module, name)
        if optimize:
            optimize_module(self._ref, loop_unrolling=loop_unrolling)
        self._engine: llvm.ExecutionEngine | None = None
        self._cfuncs: dict[str, Any] = {}
        self.object_code: bytes | None = None  # the JIT's ELF object, once finalized (for the cache)

    @property
    def llvm_ir(self) -> str:
        """The (optimized) LLVM IR text, for inspection and reports."""
        return str(self._ref)

    def assembly(self) -> str:
        """Host assembly of the module, for inspection (what the object file will contain)."""
        return host_target_machine(jit=False).emit_assembly(self._ref)

    def emit_object(self) -> bytes:
        """The module as a position-independent ELF object, ready to link into a shared library."""
        self._check_externals()
        return host_target_machine(jit=False).emit_object(self._ref)

    def externals(self) -> list[str]:
        """Functions the module calls but does not define (``llvm.*`` intrinsics excluded), sorted."""
        return sorted(f.name for f in self._ref.functions if f.is_declaration and not f.name.startswith("llvm."))

    def _check_externals(self) -> None:
        missing = unresolved_externals(self._ref)
        if missing:
            raise CompileError(
                f"module {self.name!r} calls external functions the process cannot resolve: "
                f"{', '.join(missing)}; load the library that defines them (RTLD_GLOBAL) or define them "
                "in the module"
            )

    def _finalized_engine(self) -> llvm.ExecutionEngine:
        with _lock:
            if self._engine is None:
                self._check_externals()
                # MCJIT takes ownership of its module, so JIT a clone and keep ours for emit_object.
                clone = self._ref.clone()
                engine = llvm.create_mcjit_compiler(clone, host_target_machine(jit=True))
                engine.set_object_cache(self._keep_object, lambda _module: None)
                engine.finalize_object()
                engine.run_static_constructors()
                self._engine = engine
            return self._engine

    def _keep_object(self, _module: Any, data: bytes) -> None:
        self.object_code = bytes(data)

    def address(self, name: str) -> int:
        """The native address of the defined function ``name`` (compiles the module on first use)."""
        engine = self._finalized_engine()
        addr = engine.get_function_address(name)
        if not addr:
            defined = sorted(f.name for f in self._ref.functions if not f.is_declaration)
            raise CompileError(
                f"module {self.name!r} has no function {name!r}; it defines: {', '.join(defined)}"
            )
        return addr

    def cfunc(self, name: str, restype: Any, *argtypes: Any) -> Any:
        """A ctypes function for ``name`` with the given C signature (cached per name)."""
        key = name
        fn = self._cfuncs.get(key)
        if fn is None or fn.restype is not restype or tuple(fn.argtypes) != argtypes:
            fn = ctypes.CFUNCTYPE(restype, *argtypes)(self.address(name))
            fn._ember_owner = self  # the pointer must not outlive the engine that owns its code
            self._cfuncs[key] = fn
        return fn


class LoadedObject:
    """Machine code loaded from an ELF object that ``JitModule`` produced earlier (maybe in another
    process): the owner of its memory, so keep it referenced as long as an address from it is used."""

    def __init__(self, engine: llvm.ExecutionEngine, name: str) -> None:
        self._engine = engine
        self.name = name

    def address(self, symbol: str) -> int:
        addr = self._engine.get_function_address(symbol)
        if not addr:
            raise CompileError(f"object code {self.name!r} defines no function {symbol!r}")
        return addr


def load_object(data: bytes, name: str, externals: list[str]) -> LoadedObject:
    """Link ``data`` (an object ``JitModule.object_code`` captured) into this process with MCJIT.

    ``externals`` are the functions it calls outside itself; each must resolve here first, for the same
    reason as in ``JitModule`` (an unresolved one would only fail when called)."""
    _ensure_initialized()
    missing = [n for n in externals if not llvm.address_of_symbol(n)]
    if missing:  # libm's functions, unless something loaded libm for LLVM already
        from ember.compiler.codegen.llvm.program import ensure_libm

        ensure_libm()
        missing = [n for n in missing if not llvm.address_of_symbol(n)]
    if missing:
        raise CompileError(f"object code {name!r} calls external functions the process cannot resolve: "
                           f"{', '.join(missing)}")
    with _lock:
        engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), host_target_machine(jit=True))
        engine.add_object_file(llvm.ObjectFileRef.from_data(data))
        engine.finalize_object()
    return LoadedObject(engine, name)


def compile_ir(module: ir.Module | str, name: str = "ember") -> JitModule:
    """Parse, verify, optimize at O3 and wrap ``module`` (convenience for ``JitModule(module, name)``)."""
    return JitModule(module, name)
