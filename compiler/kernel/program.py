"""A program: the kernels of one graph, the order they run in, and where each buffer lives.

Every buffer a kernel touches is bound to a ``Slot``: a graph input, a graph output, a parameter
(weights and other constants, passed by the runtime), or a byte offset into the one arena that holds
every intermediate. The code generator turns a program into one native entry function that calls the
kernels in order, so running a model is one native call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ember.compiler.kernel.group import FusionGroup
from ember.compiler.kernel.ir import Buffer, Kernel
from ember.compiler.kernel.lower import buffer_for, lower_group, sanitize
from ember.compiler.ops.registry import TensorType
from ember.runtime.errors import CompileError

__all__ = ["ARENA_ALIGN", "Call", "Program", "Slot", "build_program"]

ARENA_ALIGN = 64  # bytes: a cache line, and enough for any vector load


@dataclass(frozen=True)
class Slot:
    """Where a buffer lives: ``kind`` is input/output/param (``index`` into that list) or arena
    (``index`` is a byte offset)."""

    kind: str
    index: int

    def __str__(self) -> str:
        return f"arena+{self.index}" if self.kind == "arena" else f"{self.kind}[{self.index}]"


@dataclass(frozen=True)
class Call:
    kernel: str
    args: tuple[Slot, ...]


@dataclass
class Program:
    name: str
    kernels: list[Kernel]
    calls: list[Call]
    inputs: list[Buffer]
    outputs: list[Buffer]
    params: list[Buffer]
    arena_bytes: int
    memory_plan: dict[str, tuple[int, int]] = field(default_factory=dict)  # value -> (offset, nbytes)
    memory: Any = None  # the MemoryPlan (compiler/passes/memory_plan.py): lifetimes, naive sum, bound

    def __str__(self) -> str:
        lines = [f"program {self.name}: arena {self.arena_bytes} bytes"]
        for c in self.calls:
            lines.append(f"  call {c.kernel}({', '.join(map(str, c.args))})")
        lines += [str(k) for k in self.kernels]
        return "\n".join(lines)


def build_program(name: str, groups: list[FusionGroup], inputs: list[str], outputs: list[str],
                  params: list[str] | None = None) -> Program:
    """Lower every group and bind each buffer to a slot (intermediates get arena offsets from
    ``plan_memory``, which reuses memory across lifetimes and in place).

    ``inputs``/``outputs``/``params`` name graph values; their types come from the groups.
    """
    params = list(params or [])
    types: dict[str, TensorType] = {}
    for g in groups:
        types.update(g.types)
    slots: dict[str, Slot] = {}
    for kind, names in (("input", inputs), ("param", params), ("output", outputs)):
        for i, v in enumerate(names):
            if v not in types:
                raise CompileError(f"program {name!r}: {kind} {v!r} is not used by any fusion group")
            slots.setdefault(v, Slot(kind, i))
    from ember.compiler.passes.memory_plan import Access, inplace_candidates, plan_memory

    kernels, pending, accesses = [], [], []
    sizes: dict[str, int] = {}
    used: set[str] = set()
    for g in groups:
        kname = sanitize(g.name)
        while kname in used:
            kname += "_"
        used.add(kname)
        lowered = lower_group(g, kname)
        kernels.append(lowered.kernel)
        by_buffer = {sanitize(v): v for v in [*g.inputs, *g.outputs]}
        args: list[Slot | str] = []
        for p in lowered.kernel.params:
            v = by_buffer.get(p.name)
            if v is not None and v in slots:
                args.append(slots[v])
                continue
            key = v if v is not None else f"{kname}.{p.name}"  # else: scratch space of this kernel
            sizes[key] = types[v].numel * types[v].dtype.itemsize if v is not None else p.nbytes
            args.append(key)
        arena_values = {a for a in args if isinstance(a, str)}
        accesses.append(Access(tuple(v for v in g.inputs if v in arena_values),
                               tuple(v for v in g.outputs if v in arena_values),
                               tuple(a for a in arena_values if a not in g.inputs and a not in g.outputs),
                               inplace_candidates(g, arena_values)))
        pending.append((kname, args))
    memory = plan_memory(accesses, sizes)
    calls = [Call(kname, tuple(a if isinstance(a, Slot) else Slot("arena", memory.offsets[a]) for a in args))
             for kname, args in pending]
    return Program(name, kernels, calls,
                   [buffer_for(v, types[v]) for v in inputs], [buffer_for(v, types[v]) for v in outputs],
                   [buffer_for(v, types[v]) for v in params], memory.arena_bytes, memory.as_dict(), memory)
