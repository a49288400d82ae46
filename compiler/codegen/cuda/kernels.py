"""A scheduled launch (``schedule.NestLaunch``) -> one ``extern "C" __global__`` function in CUDA C.

Generated function (all kernel buffers in the kernel's parameter order, then the enclosing host loops'
variables)::

    extern "C" __global__ void __launch_bounds__(256) <kernel>_p<i>(T0 *b_<buf0>, ..., long long v_<n0>);

* ``grid``: the collapsed ``GPU_THREAD`` nest is one index space walked grid-stride
  (``t = blockIdx.x * blockDim.x + threadIdx.x; t += gridDim.x * blockDim.x``); loop variables are
  recovered from ``t`` with ``/`` and ``%``; the body runs serially per index.
* ``block``: the collapsed ``GPU_BLOCK`` nest is walked grid-stride by blocks (one row per block).
  Inside, ``GPU_THREAD`` loops are walked block-stride by the block's threads; a reduction in such a
  loop accumulates a per-thread partial (starting at the op's identity) that ``ember_block_reduce``
  combines (``__shfl_down_sync`` within each warp, one shared-memory slot per warp, a broadcast through
  shared memory) and folds into the local every thread holds. Row-level statements run in every thread
  (so locals stay equal), stores among them only in thread 0, and a ``__syncthreads()`` follows every
  statement that writes memory, so the next one reads it.
* ``single``: one thread runs the statement as written.
"""

from __future__ import annotations

from ember.compiler.codegen.cuda.exprs import ExprEmitter, _cast, c_const, mem_type, reg_type
from ember.compiler.codegen.cuda.schedule import NestLaunch, walk
from ember.compiler.dtypes import DType
from ember.compiler.kernel.ir import (
    Alloc,
    Assign,
    Declare,
    Kernel,
    Loop,
    LoopKind,
    Reduce,
    Stmt,
    Store,
)
from ember.runtime.errors import CompileError

__all__ = ["BLOCK_REDUCE", "BLOCK_THREADS", "chain_of", "emit_nest"]

BLOCK_THREADS = 256  # threads per block of every generated launch (a multiple of the warp size)

BLOCK_REDUCE = r"""template <typename T, typename F>
__device__ __forceinline__ T ember_block_reduce(T v, F op, T *sh) {
  for (int o = 16; o > 0; o >>= 1) v = op(v, (T)__shfl_down_sync(0xffffffffu, v, o));
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();  /* sh may still be read by the previous reduction's broadcast */
  if (lane == 0) sh[warp] = v;
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < (int)(blockDim.x >> 5); ++w) v = op(v, sh[w]);
    sh[0] = v;
  }
  __syncthreads();
  return sh[0];
}
"""


def chain_of(loop: Loop, kind: LoopKind) -> tuple[list[Loop], tuple[Stmt, ...]]:
    """The perfect nest of loops of ``kind`` from ``loop`` and the body under it."""
    chain = [loop]
    while len(chain[-1].body) == 1 and isinstance(chain[-1].body[0], Loop) and chain[-1].body[0].kind is kind:
        chain.append(chain[-1].body[0])
    return chain, chain[-1].body


class NestEmitter:
    """Emits the C body of one launch; ``lines`` collects the text."""

    def __init__(self, kernel: Kernel, launch: NestLaunch) -> None:
        self.kernel = kernel
        self.launch = launch
        buffers = {p.name: (f"b_{p.name}", p.dtype) for p in kernel.params}
        self.x = ExprEmitter(buffers, kernel.name)
        self.lines: list[str] = []
        self.dtypes = {p.name: p.dtype for p in kernel.params}
        self.local_types: dict[str, DType] = {}
        self.partials: dict[str, str] = {}    # local -> per-thread partial name (inside a GPU_THREAD loop)
        self.guard_stores = False             # row-level code of a block launch: thread 0 stores
        self.shared: list[str] = []

    # ---------------------------------------------------------------- entry
    def function(self) -> str:
        k, launch = self.kernel, self.launch
        params = [f"{mem_type(p.dtype)} *b_{p.name}" for p in k.params]
        params += [f"long long {self.x.var(v)}" for v in launch.host_vars]
        body_lines = self.lines
        if launch.mode == "grid":
            self._grid(launch.body[0])  # type: ignore[arg-type]
        elif launch.mode == "block":
            self._block(launch.body)
        elif launch.mode == "single":
            self.lines.append("  if (blockIdx.x != 0 || threadIdx.x != 0) return;")
            self.stmts(launch.body, 1)
        else:
            raise CompileError(f"kernel {k.name}: unknown launch mode {launch.mode!r}")
        head = [f'extern "C" __global__ void __launch_bounds__({BLOCK_THREADS}) {launch.name}(',
                "    " + ",\n    ".join(params) + ") {"]
        return "\n".join(head + self.shared + body_lines + ["}"])

    def _decompose(self, chain: list[Loop], index: str, depth: int) -> None:
        """Bind each loop variable of ``chain`` from the flat ``index`` (row-major)."""
        pad = "  " * depth
        inner = 1
        for lp in reversed(chain):
            div = f"{index} / {inner}LL" if inner > 1 else index
            self.lines.append(f"{pad}const long long {self.x.var(lp.var)} = ({div}) % {lp.extent}LL;")
            inner *= lp.extent

    def _grid(self, loop: Loop) -> None:
        chain, body = chain_of(loop, LoopKind.GPU_THREAD)
        total = 1
        for lp in chain:
            total *= lp.extent
        self.lines += [
            f"  for (long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x; t < {total}LL;",
            "       t += (long long)gridDim.x * blockDim.x) {"]
        self._decompose(chain, "t", 2)
        self.stmts(body, 2)
        self.lines.append("  }")

    def _block(self, body: tuple[Stmt, ...]) -> None:
        first = body[0] if len(body) == 1 else None
        if isinstance(first, Loop) and first.kind is LoopKind.GPU_BLOCK:
            chain, inner = chain_of(first, LoopKind.GPU_BLOCK)
            rows = 1
            for lp in chain:
                rows *= lp.extent
            self.lines.append(f"  for (long long row = blockIdx.x; row < {rows}LL; row += gridDim.x) {{")
            self._decompose(chain, "row", 2)
            self.row_level(inner, 2)
            self.lines.append("  }")
        else:
            self.lines.append("  if (blockIdx.x != 0) return;")
            self.row_level(body, 1)

    # ---------------------------------------------------------------- block launches
    def row_level(self, body: tuple[Stmt, ...], depth: int) -> None:
        pad = "  " * depth
        for s in body:
            if isinstance(s, Loop) and s.kind is LoopKind.GPU_THREAD:
                self._thread_loop(s, depth)
            else:
                self.guard_stores = True
                self.stmt(s, depth)
                self.guard_stores = False
            if any(isinstance(t, Store) for t in walk((s,))):
                self.lines.append(f"{pad}__syncthreads();")

    def _thread_loop(self, loop: Loop, depth: int) -> None:
        pad = "  " * depth
        chain, body = chain_of(loop, LoopKind.GPU_THREAD)
        reduced = {s.name: s.op for s in walk(body) if isinstance(s, Reduce)}
        self.lines.append(f"{pad}{{")
        for name in reduced:
            dt = self.local_types[name]
            part = f"p_{name}"
            self.partials[name] = part
            ident = _identity(reduced[name], dt)
            self.lines.append(f"{pad}  {reg_type(dt)} {part} = {ident};")
        total = 1
        for lp in chain:
            total *= lp.extent
        self.lines.append(f"{pad}  for (long long u = threadIdx.x; u < {total}LL; u += blockDim.x) {{")
        self._decompose(chain, "u", depth + 2)
        self.stmts(body, depth + 2)
        self.lines.append(f"{pad}  }}")
        for name, op in reduced.items():
            dt, part = self.local_types[name], self.partials.pop(name)
            t = reg_type(dt)
            sh = f"sh_{name}"
            self.shared.append(f"  __shared__ {t} {sh}[32];")
            fn = f"[]({t} a, {t} b) {{ return {self.x.combine(op, 'a', 'b', dt)}; }}"
            self.lines.append(f"{pad}  {part} = ember_block_reduce<{t}>({part}, {fn}, {sh});")
            local = self.x.local(name)
            self.lines.append(f"{pad}  {local} = {self.x.combine(op, local, part, dt)};")
        self.lines.append(f"{pad}}}")

    # ---------------------------------------------------------------- serial statements
    def stmts(self, body: tuple[Stmt, ...], depth: int) -> None:
        for s in body:
            self.stmt(s, depth)

    def stmt(self, s: Stmt, depth: int) -> None:
        pad = "  " * depth
        x = self.x
        if isinstance(s, Loop):
            if s.kind in (LoopKind.GPU_BLOCK, LoopKind.GPU_THREAD):
                raise CompileError(f"kernel {self.kernel.name}: a {s.kind.value} loop ({s.var}) nested where "
                                   "the CUDA emitter runs code serially")
            v = x.var(s.var)
            self.lines.append(f"{pad}for (long long {v} = 0; {v} < {s.extent}LL; ++{v}) {{")
            self.stmts(s.body, depth + 1)
            self.lines.append(f"{pad}}}")
        elif isinstance(s, Store):
            dt = self.dtypes[s.buffer]
            value = x.store_value(_cast(x.emit(s.value), s.value.dtype, dt), dt)
            line = f"{x.buffer(s.buffer)}[{x.emit(s.index)}] = {value};"
            self.lines.append(f"{pad}if (threadIdx.x == 0) {line}" if self.guard_stores else pad + line)
        elif isinstance(s, Declare):
            self.local_types[s.name] = s.dtype
            init = _cast(x.emit(s.init), s.init.dtype, s.dtype)
            self.lines.append(f"{pad}{reg_type(s.dtype)} {x.local(s.name)} = {init};")
        elif isinstance(s, Reduce):
            dt = self.local_types[s.name]
            target = self.partials.get(s.name, x.local(s.name))
            value = _cast(x.emit(s.value), s.value.dtype, dt)
            self.lines.append(f"{pad}{target} = {x.combine(s.op, target, value, dt)};")
        elif isinstance(s, Assign):
            dt = self.local_types[s.name]
            self.lines.append(f"{pad}{x.local(s.name)} = {_cast(x.emit(s.value), s.value.dtype, dt)};")
        elif isinstance(s, Alloc):
            b = s.buffer
            self.dtypes[b.name] = b.dtype
            x.buffers[b.name] = (f"a_{b.name}", b.dtype)
            self.lines.append(f"{pad}{mem_type(b.dtype)} a_{b.name}[{max(b.numel, 1)}];")
        else:
            raise CompileError(f"kernel {self.kernel.name}: no CUDA code generator for {type(s).__name__} "
                               "inside a launch")


def _identity(op: str, dt: DType) -> str:
    from ember.compiler.kernel.lower import reduce_identity

    return c_const(reduce_identity(op, dt).value, dt)


def emit_nest(kernel: Kernel, launch: NestLaunch) -> str:
    """The CUDA C text of one scheduled launch of ``kernel``."""
    return NestEmitter(kernel, launch).function()
