"""``plan_memory``: offsets of every intermediate buffer in one arena, reusing memory across lifetimes.

Input: for each kernel call, in the final kernel order, the arena buffers it reads, writes and uses as
scratch. A buffer's lifetime is the closed interval of call indices from its first to its last access;
two buffers may share bytes only when their lifetimes are disjoint.

In-place reuse: a purely elementwise kernel (every op a ``scalar`` lowering) writes element ``i`` of its
output from element ``i`` of each same-typed input, so when such an input dies at that call its buffer
becomes the output's buffer (the two merge into one buffer over the union of their lifetimes).

Offsets come from several heuristics, and the smallest arena wins (XLA keeps the best of several heap
simulators for the same reason: none wins everywhere):

* ``greedy_by_size``: largest buffer first, each at the lowest offset that does not collide with an
  already placed buffer whose lifetime overlaps (TFLite's "greedy by size");
* ``greedy_by_start``: buffers in order of first use (a linear scan), same first-fit placement;
* ``best_fit_by_size``: largest first, into the smallest gap that fits (less fragmentation at the end).

The report gives the arena size, the naive sum (every buffer its own memory, as before this pass) and
the lower bound: the largest total of bytes live at one call, which no placement can beat.

Example (three 1 KiB buffers; ``a`` dies where ``c`` is born, ``b`` lives throughout)::

    call 0: writes a        a: [0, 1]
    call 1: reads a, b      b: [0, 2]
    call 2: writes c        c: [2, 3]
    call 3: reads c

    naive 3072 bytes, lower bound 2048, arena 2048: c reuses a's offset.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ember.runtime.errors import InternalError

if TYPE_CHECKING:
    from ember.compiler.kernel.group import FusionGroup

__all__ = ["Access", "Lifetime", "MemoryPlan", "ALGORITHMS", "compute_lifetimes", "lower_bound",
           "plan_memory", "inplace_candidates"]

ALIGN = 64


@dataclass(frozen=True)
class Access:
    """The arena buffers one kernel call touches (names), and whether it may write ``inplace`` pairs
    (output, input): the output may take the input's memory if the input dies at this call."""

    reads: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()
    scratch: tuple[str, ...] = ()
    inplace: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Lifetime:
    """A buffer's size in bytes and the first and last call (inclusive) that use it."""

    name: str
    nbytes: int
    start: int
    end: int

    def overlaps(self, other: Lifetime) -> bool:
        return self.start <= other.end and other.start <= self.end


@dataclass
class MemoryPlan:
    """Offsets of every buffer, the arena size, and the figures to judge it by."""

    offsets: dict[str, int]
    sizes: dict[str, int]                # exact bytes; placement rounds each up to ALIGN
    arena_bytes: int
    naive_bytes: int
    lower_bound: int
    algorithm: str
    candidates: dict[str, int] = field(default_factory=dict)   # algorithm -> arena bytes
    inplace: list[tuple[str, str]] = field(default_factory=list)  # (output, input) sharing memory
    lifetimes: dict[str, Lifetime] = field(default_factory=dict)  # per value, before merging

    def as_dict(self) -> dict[str, tuple[int, int]]:
        """name -> (offset, nbytes), the form ``Program.memory_plan`` keeps."""
        return {n: (self.offsets[n], self.sizes[n]) for n in self.offsets}

    def summary(self) -> str:
        tried = ", ".join(f"{k}={v}" for k, v in sorted(self.candidates.items()))
        return (f"arena {self.arena_bytes} B ({self.algorithm}), naive {self.naive_bytes} B, "
                f"lower bound {self.lower_bound} B, {len(self.inplace)} in place; tried {tried}")


def _aligned(n: int) -> int:
    return -(-max(n, 1) // ALIGN) * ALIGN


def compute_lifetimes(accesses: Sequence[Access], sizes: dict[str, int]) -> dict[str, Lifetime]:
    """Lifetime of every buffer named in ``accesses`` (sizes aligned to ``ALIGN``)."""
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    for k, acc in enumerate(accesses):
        for name in (*acc.writes, *acc.reads, *acc.scratch):
            first.setdefault(name, k)
            last[name] = k
    missing = [n for n in first if n not in sizes]
    if missing:
        raise InternalError(f"plan_memory: no size for buffers {missing}")
    return {n: Lifetime(n, _aligned(sizes[n]), first[n], last[n]) for n in first}


def lower_bound(lifetimes: Sequence[Lifetime]) -> int:
    """The largest total of bytes live at any one call."""
    if not lifetimes:
        return 0
    horizon = max(lt.end for lt in lifetimes) + 2
    delta = [0] * horizon
    for lt in lifetimes:
        delta[lt.start] += lt.nbytes
        delta[lt.end + 1] -= lt.nbytes
    best = live = 0
    for d in delta:
        live += d
        best = max(best, live)
    return best


# ---- in-place merging ---------------------------------------------------------------------------


def _merge_inplace(accesses: Sequence[Access], lifetimes: dict[str, Lifetime]
                   ) -> tuple[dict[str, Lifetime], dict[str, str], list[tuple[str, str]]]:
    """Merge (output, input) pairs whose input dies at the writing call into one buffer. Returns the
    merged buffers, value -> buffer name, and the pairs taken."""
    owner = {n: n for n in lifetimes}
    merged = dict(lifetimes)
    taken: list[tuple[str, str]] = []
    claimed: set[str] = set()
    for k, acc in enumerate(accesses):
        for out, src in acc.inplace:
            if out not in lifetimes or src not in lifetimes or src in claimed or owner[out] != out:
                continue  # (an output already merged with another dying input keeps that buffer)
            buf = owner[src]
            same_size = merged[buf].nbytes == lifetimes[out].nbytes
            # the input dies here, the output is born here, and nothing else holds the buffer later
            if not (same_size and lifetimes[src].end == k == lifetimes[out].start == merged[buf].end):
                continue
            claimed.add(src)
            owner[out] = buf
            old = merged.pop(out)
            merged[buf] = Lifetime(buf, merged[buf].nbytes, merged[buf].start, old.end)
            taken.append((out, src))
    return merged, owner, taken


# ---- placement heuristics ---------------------------------------------------------------------------


def _first_fit(busy: list[tuple[int, int]], size: int) -> int:
    offset = 0
    for lo, hi in sorted(busy):
        if offset + size <= lo:
            return offset
        offset = max(offset, hi)
    return offset


def _best_fit(busy: list[tuple[int, int]], size: int) -> int:
    best, best_gap, offset = None, None, 0
    for lo, hi in sorted(busy):
        gap = lo - offset
        if gap >= size and (best_gap is None or gap < best_gap):
            best, best_gap = offset, gap
        offset = max(offset, hi)
    return best if best is not None else offset


def _place(order: list[Lifetime], fit: Callable[[list[tuple[int, int]], int], int]) -> dict[str, int]:
    placed: list[tuple[Lifetime, int]] = []
    offsets: dict[str, int] = {}
    for lt in order:
        busy = [(off, off + other.nbytes) for other, off in placed if other.overlaps(lt)]
        off = fit(busy, lt.nbytes)
        offsets[lt.name] = off
        placed.append((lt, off))
    return offsets


def greedy_by_size(buffers: list[Lifetime]) -> dict[str, int]:
    return _place(sorted(buffers, key=lambda b: (-b.nbytes, b.start, b.name)), _first_fit)


def greedy_by_start(buffers: list[Lifetime]) -> dict[str, int]:
    return _place(sorted(buffers, key=lambda b: (b.start, -b.nbytes, b.name)), _first_fit)


def best_fit_by_size(buffers: list[Lifetime]) -> dict[str, int]:
    return _place(sorted(buffers, key=lambda b: (-b.nbytes, -(b.end - b.start), b.name)), _best_fit)


ALGORITHMS: dict[str, Callable[[list[Lifetime]], dict[str, int]]] = {
    "greedy_by_size": greedy_by_size,
    "greedy_by_start": greedy_by_start,
    "best_fit_by_size": best_fit_by_size,
}


def plan_memory(accesses: Sequence[Access], sizes: dict[str, int], inplace: bool = True) -> MemoryPlan:
    """Plan the arena for ``accesses`` (one per kernel call, in order); see the module docstring."""
    lifetimes = compute_lifetimes(accesses, sizes)
    if inplace:
        buffers, owner, taken = _merge_inplace(accesses, lifetimes)
    else:
        buffers, owner, taken = dict(lifetimes), {n: n for n in lifetimes}, []
    bufs = list(buffers.values())
    candidates: dict[str, int] = {}
    best_name, best_offsets, best_size = "", {}, -1
    for name, algo in ALGORITHMS.items():
        offs = algo(bufs)
        size = max((offs[b.name] + b.nbytes for b in bufs), default=0)
        candidates[name] = size
        if best_size < 0 or size < best_size:
            best_name, best_offsets, best_size = name, offs, size
    offsets = {v: best_offsets[owner[v]] for v in lifetimes}
    return MemoryPlan(offsets, {v: sizes[v] for v in lifetimes}, max(best_size, 0),
                      sum(lt.nbytes for lt in lifetimes.values()), lower_bound(bufs), best_name,
                      candidates, taken, lifetimes)


def inplace_candidates(group: FusionGroup, arena: set[str]) -> tuple[tuple[str, str], ...]:
    """(output, input) pairs of a fusion group that may share memory: the group is purely elementwise
    (every op lowers to a scalar expression, so element ``i`` of the output reads only element ``i`` of
    each input of the same type), it has one output, and the input lives in the arena."""
    from ember.compiler.ops.registry import REGISTRY

    nodes, outputs = group.nodes, group.outputs
    if len(outputs) != 1 or outputs[0] not in arena:
        return ()
    if not all("scalar" in REGISTRY[n.op].lowering for n in nodes):
        return ()
    out_type = group.type_of(outputs[0])
    return tuple((outputs[0], x) for x in group.inputs if x in arena and group.type_of(x) == out_type)
