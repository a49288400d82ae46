"""The CUDA schedule: which loops of a lowered kernel run across GPU threads, and how a kernel is cut
into launches.

A kernel-IR kernel is a sequence of top-level statements that depend on each other through memory (a
convolution zeroes a padded copy, fills it, runs the GEMM reading it as im2col, then its epilogue). A GPU orders
such phases cheaply only between launches on one stream, so each top-level statement becomes its own
launch (its own ``__global__``); a loop around a ``Gemm`` (per image, per group) becomes a *host loop*
that repeats its inner launches with the loop variable passed as an argument.

Inside one launch the schedule rewrites loop kinds, which the emitter then honours:

* The leading perfect nest of loops that are **parallel-safe** (iterations touch disjoint memory, see
  ``parallel_safe``) is marked ``GPU_THREAD``: collapsed into one index space that the whole grid
  walks with a grid-stride loop (any grid size is correct; the launch caps it).
* When the body under that nest reduces over at least ``BLOCK_REDUCE_MIN`` elements, the nest is
  marked ``GPU_BLOCK`` instead (one row per block, grid-stride over rows) and the reduction loops in
  its body ``GPU_THREAD``: the block's threads split the reduction and combine their partial results
  with warp shuffles and shared memory. Parallel-safe store loops in that body (softmax's last pass)
  are split across the block's threads too.
* Nothing parallel-safe: the statement runs on one thread (serial col2im, scatter-add, scans along a
  whole tensor), which is always correct.

The CPU schedule's ``parallel``/``vectorized`` marks are ignored: the GPU needs its own proof that
iterations are independent, since it runs all of them at once, not contiguous chunks.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

from ember.compiler.kernel.ir import (
    Alloc,
    Assign,
    Barrier,
    Binary,
    Cast,
    Const,
    Declare,
    Expr,
    Gemm,
    Kernel,
    Load,
    Local,
    Loop,
    LoopKind,
    Reduce,
    Select,
    Stmt,
    Store,
    Unary,
    Var,
    free_vars,
)
from ember.runtime.errors import CompileError

__all__ = ["BLOCK_REDUCE_MIN", "GemmLaunch", "HostLoop", "NestLaunch", "Step", "parallel_safe",
           "schedule_kernel"]

BLOCK_REDUCE_MIN = 64  # reduction elements per output from which a block (not a thread) reduces


@dataclass(frozen=True)
class NestLaunch:
    """One ``__global__``: ``mode`` is "grid" (collapsed GPU_THREAD nest), "block" (GPU_BLOCK rows, maybe
    none: then one block) or "single" (one thread). ``body`` holds the scheduled statements."""

    name: str
    mode: str
    body: tuple[Stmt, ...]
    host_vars: tuple[str, ...]


@dataclass(frozen=True)
class GemmLaunch:
    gemm: Gemm
    host_vars: tuple[str, ...]


@dataclass(frozen=True)
class HostLoop:
    var: str
    extent: int
    body: tuple[Step, ...]


Step = NestLaunch | GemmLaunch | HostLoop


# --------------------------------------------------------------------------------------------------
# traversal helpers


def walk(body: tuple[Stmt, ...]) -> Iterator[Stmt]:
    """Every statement of ``body``, nested ones included (pre-order)."""
    for s in body:
        yield s
        if isinstance(s, Loop):
            yield from walk(s.body)


def _stmt_exprs(s: Stmt) -> tuple[Expr, ...]:
    if isinstance(s, Store):
        return (s.index, s.value)
    if isinstance(s, Declare):
        return (s.init,)
    if isinstance(s, (Reduce, Assign)):
        return (s.value,)
    if isinstance(s, Gemm):
        return (s.a_off, s.b_off, s.c_off, *(off for _, _, off in s.operands))
    return ()


def _sub_exprs(e: Expr) -> Iterator[Expr]:
    yield e
    if isinstance(e, (Unary, Cast)):
        yield from _sub_exprs(e.x)
    elif isinstance(e, Binary):
        yield from _sub_exprs(e.a)
        yield from _sub_exprs(e.b)
    elif isinstance(e, Select):
        yield from _sub_exprs(e.cond)
        yield from _sub_exprs(e.a)
        yield from _sub_exprs(e.b)
    elif isinstance(e, Load):
        yield from _sub_exprs(e.index)


def _loads(body: tuple[Stmt, ...]) -> Iterator[Load]:
    for s in walk(body):
        for e in _stmt_exprs(s):
            for sub in _sub_exprs(e):
                if isinstance(sub, Load):
                    yield sub


def _reads_local(body: tuple[Stmt, ...], name: str) -> bool:
    return any(isinstance(sub, Local) and sub.name == name
               for s in walk(body) for e in _stmt_exprs(s) for sub in _sub_exprs(e))


def has_gemm(s: Stmt) -> bool:
    return isinstance(s, Gemm) or (isinstance(s, Loop) and any(isinstance(t, Gemm) for t in walk(s.body)))


# --------------------------------------------------------------------------------------------------
# dependence analysis


_CONST = "#"  # key of the literal constant term in ``_linear``'s result


def _linear(e: Expr, interest: frozenset[str], var: str | None = None,
            bounded: dict[str, Expr] | None = None) -> dict[str, int] | None:
    """``e`` as ``{term: coefficient}``: loop variables in ``interest`` by name, the literal constant under
    ``_CONST``, anything else free of them (outer loop variables, loads of them) under its text, so
    two accesses can be compared. With ``bounded``, a non-affine term of inner variables only (not
    ``var``: a clamped tap position) goes under ``"~" + text`` and into ``bounded``, to be bounded by
    interval arithmetic. None when ``e`` is not affine in ``interest`` otherwise or reads locals."""
    if isinstance(e, Var):
        return {e.name if e.name in interest else "@" + e.name: 1}
    if isinstance(e, Const):
        return {_CONST: int(e.value)}
    if isinstance(e, Binary) and e.op in ("add", "sub"):
        a, b = _linear(e.a, interest, var, bounded), _linear(e.b, interest, var, bounded)
        if a is None or b is None:
            return None
        sign = 1 if e.op == "add" else -1
        out = dict(a)
        for name, c in b.items():
            out[name] = out.get(name, 0) + sign * c
        return out
    if isinstance(e, Binary) and e.op == "mul":
        for x, y in ((e.a, e.b), (e.b, e.a)):
            if isinstance(y, Const):
                inner = _linear(x, interest, var, bounded)
                return None if inner is None else {name: c * int(y.value) for name, c in inner.items()}
    if isinstance(e, Cast):
        return _linear(e.x, interest, var, bounded)
    if any(isinstance(sub, (Local, Load)) for sub in _sub_exprs(e)) and free_vars(e) & interest:
        return None
    if any(isinstance(sub, Local) for sub in _sub_exprs(e)):
        return None
    if free_vars(e) & interest:
        if bounded is None or var is None or var in free_vars(e):
            return None
        bounded["~" + repr(e)] = e
        return {"~" + repr(e): 1}
    return {"@" + repr(e): 1}


def _bounds(e: Expr, extents: dict[str, int]) -> tuple[int, int] | None:
    """Smallest and largest value of an integer expression over the loop ranges in ``extents`` (interval
    arithmetic: add, sub, mul by a constant, max, min, select), or None."""
    if isinstance(e, Const):
        return int(e.value), int(e.value)
    if isinstance(e, Var):
        return (0, extents[e.name] - 1) if e.name in extents else None
    if isinstance(e, Cast):
        return _bounds(e.x, extents)
    if isinstance(e, Select):
        a, b = _bounds(e.a, extents), _bounds(e.b, extents)
        return None if a is None or b is None else (min(a[0], b[0]), max(a[1], b[1]))
    if not isinstance(e, Binary):
        return None
    a, b = _bounds(e.a, extents), _bounds(e.b, extents)
    if a is None or b is None:
        return None
    if e.op == "add":
        return a[0] + b[0], a[1] + b[1]
    if e.op == "sub":
        return a[0] - b[1], a[1] - b[0]
    if e.op == "mul":
        corners = [x * y for x in a for y in b]
        return min(corners), max(corners)
    if e.op in ("max", "min"):
        pick = max if e.op == "max" else min
        return pick(a[0], b[0]), pick(a[1], b[1])
    return None


def parallel_safe(loop: Loop) -> bool:
    """True when the iterations of ``loop`` may run concurrently: every buffer the body writes is
    addressed (written and read) as ``c * var + rest`` with one stride ``c > 0``, the same terms in
    enclosing loops' variables, and ``rest`` (inner loops and constants) spanning less than ``c``, so
    iteration ``var`` owns a slice nobody else touches; and the body updates no local declared outside
    it and holds no GEMM or barrier."""
    body = loop.body
    declared = {s.name for s in walk(body) if isinstance(s, Declare)}
    private = {s.buffer.name for s in walk(body) if isinstance(s, Alloc)}
    extents = {s.var: s.extent for s in walk(body) if isinstance(s, Loop)}
    for s in walk(body):
        if isinstance(s, (Reduce, Assign)) and s.name not in declared:
            return False
        if isinstance(s, (Gemm, Barrier)):
            return False
    writes: dict[str, list[Expr]] = {}
    for s in walk(body):
        if isinstance(s, Store) and s.buffer not in private:
            writes.setdefault(s.buffer, []).append(s.index)
    for ld in _loads(body):
        if ld.buffer in writes:
            writes[ld.buffer].append(ld.index)
    interest = frozenset(extents) | {loop.var}
    own = {**extents, loop.var: loop.extent}
    return all(_owns_slices(indices, loop.var, interest, extents) or _one_injective_map(indices, loop.var, own)
               for indices in writes.values())


def _one_injective_map(indices: list[Expr], var: str, extents: dict[str, int]) -> bool:
    """Every access of one buffer uses the same affine index, and that index is injective over ``var``
    and the inner loops, whose extents ``extents`` holds (sorted by stride, each stride exceeds the
    reach of all smaller ones, as in a mixed-radix number): then different iterations never touch the
    same element, even interleaved (a transposing copy, a reduction's full-shape output written along an
    outer dim)."""
    forms = [_linear(idx, frozenset(extents)) for idx in indices]
    first = forms[0]
    if first is None or any(f != first for f in forms) or first.get(var, 0) == 0:
        return False
    terms = sorted((abs(c), extents[k]) for k, c in first.items() if k in extents and c)
    reach = 0
    for stride, extent in terms:
        if stride <= reach:
            return False
        reach += stride * (extent - 1)
    return True


def _owns_slices(indices: list[Expr], var: str, interest: frozenset[str], extents: dict[str, int]) -> bool:
    """The accesses ``indices`` of one buffer stay in disjoint per-iteration slices of ``var``."""
    stride, outer, lo, hi = None, None, None, None
    for idx in indices:
        bounded: dict[str, Expr] = {}
        lin = _linear(idx, interest, var, bounded)
        if lin is None:
            return False
        c = lin.get(var, 0)
        terms = {k: n for k, n in lin.items() if k.startswith("@") and n}
        if c <= 0 or (stride is not None and c != stride) or (outer is not None and terms != outer):
            return False
        stride, outer = c, terms
        span_lo = span_hi = lin.get(_CONST, 0)
        for k, n in lin.items():
            if k in extents and k != var:
                box: tuple[int, int] | None = (0, extents[k] - 1)
            elif k in bounded:
                box = _bounds(bounded[k], extents)
            else:
                continue
            if box is None:
                return False
            span_lo += min(n * box[0], n * box[1])
            span_hi += max(n * box[0], n * box[1])
        lo = span_lo if lo is None else min(lo, span_lo)
        hi = span_hi if hi is None else max(hi, span_hi)
    return stride is not None and hi - lo < stride


# --------------------------------------------------------------------------------------------------
# marking


def _safe_chain(loop: Loop) -> list[Loop]:
    """The leading perfect nest of parallel-safe loops starting at ``loop`` (maybe empty)."""
    chain: list[Loop] = []
    cur: Stmt = loop
    while isinstance(cur, Loop) and parallel_safe(cur):
        chain.append(cur)
        if len(cur.body) != 1:
            break
        cur = cur.body[0]
    return chain


def _remark(loop: Loop, depth: int, kind: LoopKind, body: tuple[Stmt, ...]) -> Loop:
    """``loop`` with its first ``depth`` perfectly nested loops marked ``kind`` and the innermost of them
    given ``body``."""
    if depth == 1:
        return replace(loop, kind=kind, body=body)
    return replace(loop, kind=kind, body=(_remark(loop.body[0], depth - 1, kind, body),))  # type: ignore[arg-type]


def _reduce_chain(loop: Loop, block_locals: set[str]) -> list[Loop] | None:
    """The perfect nest of ``loop`` when it is a pure reduction into block-level locals (no stores, no
    other updates, the locals not read inside), else None."""
    body = loop.body
    reduced = {s.name for s in walk(body) if isinstance(s, Reduce)}
    if not reduced or not reduced <= block_locals:
        return None
    for s in walk(body):
        if isinstance(s, (Store, Gemm, Barrier, Alloc)):
            return None
        if isinstance(s, Assign) and s.name in block_locals:
            return None
    if any(_reads_local(body, r) for r in reduced):
        return None
    ops: dict[str, str] = {}
    for s in walk(body):
        if isinstance(s, Reduce) and ops.setdefault(s.name, s.op) != s.op:
            return None
    chain = [loop]
    while len(chain[-1].body) == 1 and isinstance(chain[-1].body[0], Loop):
        chain.append(chain[-1].body[0])  # type: ignore[arg-type]
    return chain


def _size(chain: list[Loop]) -> int:
    n = 1
    for lp in chain:
        n *= lp.extent
    return n


def block_body(body: tuple[Stmt, ...]) -> tuple[tuple[Stmt, ...], int] | None:
    """``body`` (run once per row by a whole block) with its reduction loops and parallel-safe store
    loops marked ``GPU_THREAD``, and the largest reduction size; None when it has nothing to split or
    holds what a block cannot share (a local array, a GEMM)."""
    block_locals = {s.name for s in body if isinstance(s, Declare)}
    out: list[Stmt] = []
    largest = 0
    for s in body:
        if isinstance(s, (Alloc, Gemm, Barrier)):
            return None
        if isinstance(s, Loop):
            chain = _reduce_chain(s, block_locals)
            if chain is not None:
                largest = max(largest, _size(chain))
                out.append(_remark(s, len(chain), LoopKind.GPU_THREAD, chain[-1].body))
                continue
            safe = _safe_chain(s)
            if safe and not any(isinstance(t, (Reduce, Assign)) and t.name in block_locals for t in walk(s.body)):
                out.append(_remark(s, len(safe), LoopKind.GPU_THREAD, safe[-1].body))
                continue
        out.append(_serial(s))
    return (tuple(out), largest) if largest else None


def _serial(s: Stmt) -> Stmt:
    """``s`` with every loop kind reset to serial (the CPU's marks mean nothing on the GPU)."""
    if isinstance(s, Loop):
        return replace(s, kind=LoopKind.SERIAL, body=tuple(_serial(t) for t in s.body))
    return s


def _nest_launch(name: str, s: Stmt, host_vars: tuple[str, ...]) -> NestLaunch:
    if not isinstance(s, Loop):
        return NestLaunch(name, "single", (_serial(s),), host_vars)
    chain = _safe_chain(s)
    if not chain:
        return NestLaunch(name, "single", (_serial(s),), host_vars)
    inner = tuple(_serial(t) for t in chain[-1].body)
    blocked = block_body(chain[-1].body)
    if blocked is not None and blocked[1] >= BLOCK_REDUCE_MIN:
        return NestLaunch(name, "block", (_remark(s, len(chain), LoopKind.GPU_BLOCK, blocked[0]),), host_vars)
    return NestLaunch(name, "grid", (_remark(s, len(chain), LoopKind.GPU_THREAD, inner),), host_vars)


def _level(kernel: Kernel, body: tuple[Stmt, ...], host_vars: tuple[str, ...], counter: list[int]) -> list[Step]:
    """Cut one statement list (the kernel body or a host loop's body) into launches."""
    def fresh() -> str:
        counter[0] += 1
        return f"{kernel.name}_p{counter[0] - 1}"

    if any(isinstance(s, (Declare, Reduce, Assign, Alloc)) for s in body):
        # locals (or a local array) live across these statements: one launch must run them all
        if any(has_gemm(s) for s in body):
            raise CompileError(f"kernel {kernel.name}: a local scalar or array lives across a Gemm statement; "
                               "the CUDA back end cannot split it into launches")
        blocked = block_body(body)
        if blocked is not None:
            return [NestLaunch(fresh(), "block", blocked[0], host_vars)]
        return [NestLaunch(fresh(), "single", tuple(_serial(s) for s in body), host_vars)]
    steps: list[Step] = []
    for s in body:
        if isinstance(s, Gemm):
            steps.append(GemmLaunch(s, host_vars))
        elif isinstance(s, Loop) and has_gemm(s):
            steps.append(HostLoop(s.var, s.extent, tuple(_level(kernel, s.body, (*host_vars, s.var), counter))))
        elif isinstance(s, Barrier):
            continue  # launches on one stream are already ordered
        elif isinstance(s, (Loop, Store)):
            steps.append(_nest_launch(fresh(), s, host_vars))
        else:
            raise CompileError(f"kernel {kernel.name}: no CUDA code generator for {type(s).__name__} at the top level")
    return steps


def schedule_kernel(kernel: Kernel) -> list[Step]:
    """The launches (and host loops) that run ``kernel`` on a GPU, in order."""
    return _level(kernel, kernel.body, (), [0])
