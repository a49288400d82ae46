"""A kernel-IR ``Program`` -> one CUDA C translation unit, its launch table, and (through NVRTC) an
``Executable`` for the runtime's cuda back end.

``emit_cuda(program)`` schedules every kernel (``schedule.py``), emits one ``__global__`` per launch
site (``kernels.py``) plus one GEMM wrapper per variant used (``gemm.py``), and unrolls host loops into
a flat list of ``Launch`` records whose arguments are the call's slots (input/output/param/arena plus
a byte offset) and the host loops' variable values (a GEMM's: sizes, strides, operand pointers and, for an
im2col B operand, its geometry). ``compile_program`` compiles the source with NVRTC
and wraps everything as data (``runtime/cuda.py``: ``CudaImage``).
"""

from __future__ import annotations

import re
from dataclasses import astuple, dataclass
from math import prod

import numpy as np
from ember.compiler.codegen.cuda.exprs import PRELUDE
from ember.compiler.codegen.cuda.gemm import GEMM_BLOCK, GEMM_TEMPLATE, GEMM_TILE, gemm_function, gemm_wrapper
from ember.compiler.codegen.cuda.kernels import BLOCK_REDUCE, BLOCK_THREADS, chain_of, emit_nest
from ember.compiler.codegen.cuda.nvrtc import DEFAULT_ARCH, compile_cuda
from ember.compiler.codegen.cuda.schedule import GemmLaunch, HostLoop, NestLaunch, Step, schedule_kernel
from ember.compiler.kernel.ir import Binary, Cast, Const, Expr, Gemm, Kernel, Loop, LoopKind, Var
from ember.compiler.kernel.program import Program, Slot
from ember.runtime.cuda import CudaImage, Launch
from ember.runtime.errors import CompileError
from ember.runtime.executable import Executable, TensorSpec

__all__ = ["CudaSource", "MAX_GRID", "compile_program", "emit_cuda"]

MAX_GRID = 4096  # blocks of a grid-stride launch (enough to fill any current GPU several times over)


@dataclass
class CudaSource:
    source: str
    launches: list[Launch]
    functions: list[str]                 # every __global__ defined, in source order
    kernel_functions: dict[str, list[str]]  # kernel-IR kernel -> its __global__ functions


def _eval(e: Expr, env: dict[str, int], where: str) -> int:
    """An offset expression over host loop variables, evaluated for one iteration."""
    if isinstance(e, Const):
        return int(e.value)
    if isinstance(e, Var):
        return env[e.name]
    if isinstance(e, Cast):
        return _eval(e.x, env, where)
    if isinstance(e, Binary) and e.op in ("add", "sub", "mul", "floordiv", "mod"):
        a, b = _eval(e.a, env, where), _eval(e.b, env, where)
        results = {"add": a + b, "sub": a - b, "mul": a * b, "floordiv": a // b if b else a,
                   "mod": a % b if b else 0}
        return results[e.op]
    raise CompileError(f"{where}: the CUDA back end needs GEMM offsets computable on the host, got {e}")


_IDENT = re.compile(r"\b(?:[bvlpa]|sh)_\w+")


def _canonical(text: str, name: str) -> str:
    """``text`` with its function name and every generated identifier renamed by first appearance: two
    launch sites with equal canonical text are the same code (arguments are positional)."""
    text = text.replace(name + "(", "@(", 1)
    seen: dict[str, str] = {}
    return _IDENT.sub(lambda m: seen.setdefault(m.group(0), f"#{len(seen)}"), text)


def _ptr(slot: Slot, byte_offset: int) -> tuple[object, ...]:
    if slot.kind == "arena":
        return ("ptr", "arena", 0, slot.index + byte_offset)
    return ("ptr", slot.kind, slot.index, byte_offset)


def _grid(launch: NestLaunch) -> tuple[int, int, int]:
    """Blocks of a launch: grid-stride loops are correct for any count, so it is capped."""
    first = launch.body[0]
    if launch.mode == "single" or not isinstance(first, Loop):
        return (1, 1, 1)
    if launch.mode == "block":
        if len(launch.body) != 1 or first.kind is not LoopKind.GPU_BLOCK:
            return (1, 1, 1)
        rows = prod(lp.extent for lp in chain_of(first, LoopKind.GPU_BLOCK)[0])
        return (max(1, min(rows, MAX_GRID)), 1, 1)
    total = prod(lp.extent for lp in chain_of(first, LoopKind.GPU_THREAD)[0])
    return (max(1, min(-(-total // BLOCK_THREADS), MAX_GRID)), 1, 1)


class _Emitter:
    def __init__(self, program: Program) -> None:
        self.program = program
        self.kernels = {k.name: k for k in program.kernels}
        self.bodies: list[str] = []
        self.functions: list[str] = []
        self.gemm_variants: dict[str, str] = {}
        self.launches: list[Launch] = []
        self.kernel_functions: dict[str, list[str]] = {}
        self.by_text: dict[str, str] = {}      # canonical text -> the function emitted for it
        self.alias: dict[str, str] = {}        # launch site -> function it runs

    def run(self) -> CudaSource:
        schedules: dict[str, list[Step]] = {}
        for k in self.program.kernels:
            schedules[k.name] = schedule_kernel(k)
            self.kernel_functions[k.name] = []
            self._emit_steps(k, schedules[k.name])
        for call in self.program.calls:
            if call.kernel not in self.kernels:
                raise CompileError(f"program {self.program.name!r} calls unknown kernel {call.kernel!r}")
            self._expand(self.kernels[call.kernel], schedules[call.kernel], call.args, {})
        parts = [PRELUDE, BLOCK_REDUCE]
        if self.gemm_variants:
            parts.append(GEMM_TEMPLATE)
            parts += list(self.gemm_variants.values())
        parts += self.bodies
        return CudaSource("\n".join(parts) + "\n", self.launches, self.functions, self.kernel_functions)

    def _emit_steps(self, k: Kernel, steps: list[Step]) -> None:
        for st in steps:
            if isinstance(st, NestLaunch):
                text = emit_nest(k, st)
                key = _canonical(text, st.name)
                if key not in self.by_text:  # else: reuse an equal function (same code up to names)
                    self.by_text[key] = st.name
                    self.bodies.append(text)
                    self.functions.append(st.name)
                self.alias[st.name] = self.by_text[key]
                self.kernel_functions[k.name].append(self.by_text[key])
            elif isinstance(st, GemmLaunch):
                image = st.gemm.b_image is not None
                name = gemm_function(st.gemm.trans_b, st.gemm.epilogue, image)
                if name not in self.gemm_variants:
                    self.gemm_variants[name] = gemm_wrapper(st.gemm.trans_b, st.gemm.epilogue, image)
                    self.functions.insert(len(self.gemm_variants) - 1, name)
                if name not in self.kernel_functions[k.name]:
                    self.kernel_functions[k.name].append(name)
            else:
                self._emit_steps(k, list(st.body))

    def _expand(self, k: Kernel, steps: list[Step], slots: tuple[Slot, ...], env: dict[str, int]) -> None:
        by_name = dict(zip((p.name for p in k.params), slots))
        for st in steps:
            if isinstance(st, HostLoop):
                for i in range(st.extent):
                    self._expand(k, list(st.body), slots, {**env, st.var: i})
            elif isinstance(st, NestLaunch):
                args = [_ptr(s, 0) for s in slots] + [("i64", env[v]) for v in st.host_vars]
                self.launches.append(Launch(self.alias[st.name], _grid(st), (BLOCK_THREADS, 1, 1), 0,
                                            tuple(args), k.name))
            else:
                self.launches.append(self._gemm_launch(k, st.gemm, by_name, env))

    def _gemm_launch(self, k: Kernel, g: Gemm, slots: dict[str, Slot], env: dict[str, int]) -> Launch:
        where = f"kernel {k.name}: Gemm statement"
        for buf in (g.a, g.b, g.c, *(b for _, b, _ in g.operands)):
            if k.param(buf).dtype.name != "float32":
                raise CompileError(f"{where}: the GEMM template needs float32, {buf} is {k.param(buf).dtype.name}")

        def at(buf: str, off: Expr) -> tuple[object, ...]:
            return _ptr(slots[buf], 4 * _eval(off, env, where))

        ops = {name: at(buf, off) for name, buf, off in g.operands}
        args = [("i64", g.m), ("i64", g.n), ("i64", g.k), at(g.a, g.a_off), ("i64", g.lda), at(g.b, g.b_off),
                ("i64", g.ldb), at(g.c, g.c_off), ("i64", g.ldc)]
        args += [ops.get(n, ("null",)) for n in ("col_scale", "col_bias", "row_scale", "row_bias", "residual")]
        args.append(("i64", g.ldr))
        im = g.b_image
        if im is not None:  # implicit GEMM: B is the im2col matrix of the image at b[b_off]
            if max(g.n, g.k) >= 2**31:
                raise CompileError(f"{where}: an im2col B operand needs N and K below 2^31, got N={g.n} K={g.k}")
            args += [("i64", int(v)) for v in astuple(im)]  # Im2col's fields, in order
        grid = (max(1, -(-g.n // GEMM_TILE)), max(1, -(-g.m // GEMM_TILE)), 1)
        return Launch(gemm_function(g.trans_b, g.epilogue, im is not None), grid, (GEMM_BLOCK, 1, 1), 0,
                      tuple(args), k.name)


def emit_cuda(program: Program) -> CudaSource:
    """The CUDA C source and launch table of ``program`` (no compilation)."""
    return _Emitter(program).run()


def _spec(buf: object, name: str | None = None) -> TensorSpec:
    return TensorSpec(name or buf.name, tuple(buf.shape), buf.dtype.np.name)  # type: ignore[attr-defined]


def compile_program(program: Program, constants: dict[str, np.ndarray] | None = None,
                    names: dict[str, str] | None = None, arch: str = DEFAULT_ARCH) -> Executable:
    """Generate CUDA C for ``program``, compile it with NVRTC for ``arch`` and return an ``Executable``
    with ``backend="cuda"`` whose ``owner`` is the ``CudaImage`` (run it with ``runtime.cuda``)."""
    names = names or {}
    src = emit_cuda(program)
    binary = compile_cuda(src.source, f"{program.name}.cu", arch)
    image = CudaImage(binary.cubin, arch, tuple(src.launches), tuple(src.functions), src.source, binary.ptx,
                      binary.resources)
    sources = {k.name: str(k) for k in program.kernels}
    sources["cuda"] = src.source
    sources["cuda.resources"] = "\n".join(f"{fn}: {r['registers']} registers, {r['shared_bytes']} shared bytes"
                                          for fn, r in sorted(binary.resources.items()))
    return Executable(
        name=program.name,
        inputs=tuple(_spec(b, names.get(b.name)) for b in program.inputs),
        outputs=tuple(_spec(b, names.get(b.name)) for b in program.outputs),
        params=tuple(_spec(b) for b in program.params),
        constants=dict(constants or {}),
        arena_bytes=program.arena_bytes,
        memory_plan=dict(program.memory_plan),
        call_order=tuple(c.kernel for c in program.calls),
        entry_symbol=f"{program.name}.cubin",
        owner=image,
        sources=sources,
        backend="cuda",
    )
