"""From a graph to an executable: the inference pipeline, fusion, lowering and code generation.

``compile_graph(graph, target)`` is the compiler's one entry point; the frontend's ``ember.compile`` and
the AOT exporter call it. It imports nothing from the frontend, so a graph built by any means (traced,
parsed, imported) compiles the same way.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from ember.compiler import cache as disk_cache
from ember.compiler.ir.graph import Graph, Value
from ember.compiler.passes.manager import PassManager, PassReport
from ember.runtime import settings
from ember.runtime.errors import CompileError

if TYPE_CHECKING:
    from ember.compiler.kernel.group import FusionGroup
    from ember.compiler.passes.fuse import FusionPlan

log = logging.getLogger("ember.compile")

TARGETS = ("llvm", "interpret", "cuda")


def default_pipeline(freeze: bool = False, hoist: bool = False) -> list[Any]:
    """The graph-to-graph passes run before fusion, in order (see compiler/passes/pipeline.py)."""
    from ember.compiler.passes.pipeline import FROZEN_PIPELINE, INFERENCE_PIPELINE, PREPARED_PIPELINE

    if freeze:
        return list(FROZEN_PIPELINE)
    return list(PREPARED_PIPELINE if hoist else INFERENCE_PIPELINE)


@dataclass
class CompileResult:
    """Everything one compilation produced, kept for inspection and reports."""

    graph: Graph                       # after the passes
    plan: FusionPlan | None
    pass_report: PassReport | None
    executable: Any                    # runtime Executable (llvm) or None (interpret)
    input_names: list[str]
    output_names: list[str]
    param_names: list[str]             # graph inputs of kind parameter/buffer, then constants
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    groups: list[FusionGroup] = field(default_factory=list)  # the kernels, in call order (for reports)
    memory: Any = None                 # passes/memory_plan.py MemoryPlan of the arena (for reports)
    param_keys: dict[str, str] = field(default_factory=dict)  # param_names -> executable constant name
    prep: Any = None  # passes/hoist_parameters.py ParameterPrep: weight preparation run when weights change
    hoisted: bool = False  # compiled with hoist=True (PREPARED_PIPELINE, then the weight-preparation split)

    @property
    def kernel_count(self) -> int:
        return self.plan.kernel_count if self.plan is not None else 0


def sanitize(name: str) -> str:
    """``kernel.lower.sanitize``, imported on first use: a cache hit never loads the kernel lowering."""
    from ember.compiler.kernel.lower import sanitize as lowered_name

    return lowered_name(name)


def _identity_group(name: str, value: Value, out_name: str) -> FusionGroup:
    from ember.compiler.kernel.group import FusionGroup, GroupNode

    return FusionGroup(f"copy_{sanitize(out_name)}", [GroupNode("clone", (name,), (out_name,))],
                       {name: value.type, out_name: value.type}, [name], [out_name])


def _checked_groups(plan: FusionPlan, notes: list[str]) -> list[FusionGroup]:
    """Lower each group once to validate it. A fused group that lowering rejects is split into single
    nodes (recorded); a single node that cannot be lowered is a CompileError naming its op."""
    from ember.compiler.kernel.group import FusionGroup
    from ember.compiler.kernel.lower import lower_group

    out: list[FusionGroup] = []
    for g in plan.groups:
        try:
            lower_group(g)
            out.append(g)
            continue
        except CompileError as e:
            if len(g.nodes) == 1:
                raise
            notes.append(f"group {g.name} split into single kernels: {e}")
        for node in g.nodes:
            inputs = [x for x in node.inputs if isinstance(x, str)]
            sub = FusionGroup(f"{g.name}_{sanitize(node.outputs[0])}", [node],
                              {v: g.types[v] for v in [*inputs, *node.outputs]},
                              list(dict.fromkeys(inputs)), list(node.outputs))
            lower_group(sub)
            out.append(sub)
    return out


def compile_graph(graph: Graph, target: str = "llvm", name: str | None = None,
                  freeze: bool = False, cache: bool = True, hoist: bool = False) -> CompileResult:
    """Optimize ``graph`` and build an executable for ``target`` ("llvm" or "interpret").

    ``freeze=True`` bakes the current parameter values in as constants (and folds batch norms into
    the weights); ``ember.compile`` and export keep the default, which reads the weights at run time.
    ``hoist=True`` (``ember.compile``'s inference path) moves computations on weights alone out of the
    per-call code into ``result.prep`` (``passes/hoist_parameters.py``), which the caller reruns when a
    weight changes; the executable's parameters then include the prepared arrays.
    ``cache=False`` skips the on-disk cache (``compiler/cache.py``) for this compilation: neither read
    nor written. On a cache hit the passes still run (they are cheap and give the live constants) but
    fusion, lowering and LLVM do not; the result's ``plan``, ``groups`` and ``memory`` are rebuilt on
    first access (see ``CachedCompileResult``).
    """
    if target not in TARGETS:
        raise CompileError(f"unknown target {target!r}; expected one of {', '.join(TARGETS)}")
    start = time.perf_counter()
    hoist = hoist and not freeze and target != "interpret"
    key = _cache_key(graph, name, freeze, hoist) if cache and target == "llvm" else None
    graph, report = PassManager(default_pipeline(freeze, hoist)).run(graph)
    prep = None
    if hoist:
        from ember.compiler.passes.hoist_parameters import hoist_parameter_work

        graph, prep = hoist_parameter_work(graph)
    if target == "interpret":
        params = [v for v in graph.inputs if v.kind in ("parameter", "buffer")] + list(graph.constants)
        return CompileResult(graph, None, report, None, [v.name for v in graph.user_inputs], [],
                             [v.name for v in params], time.perf_counter() - start)
    if key is not None:
        hit = _from_cache(key, graph, report, start)
        if hit is not None:
            hit.prep, hit.hoisted = prep, hoist
            return hit
    front = _front_end(graph, name)
    if target == "cuda":  # CUDA C compiled by NVRTC: a cubin and a launch table for runtime/cuda.py
        from ember.compiler.codegen.cuda.program import compile_program
    else:
        from ember.compiler.codegen.llvm.program import compile_program

    program = front.program
    keys = {k: sanitize(k) for k in front.param_names}
    constants = {keys[k]: _param_data(graph, k) for k in front.param_names}
    exe = compile_program(program, constants, {sanitize(v): v for v in [*front.in_names, *front.out_names]})
    seconds = time.perf_counter() - start
    if key is not None:
        _to_cache(key, exe, front)
    debug = settings.get("DEBUG")
    if debug >= 1:
        print(f"ember.compile: {graph.name}: {len(front.groups)} kernels from {len(graph.nodes)} nodes in "
              f"{seconds:.2f} s")
    if debug >= 4:
        for kernel_name, source in exe.sources.items():
            print(f"---- {kernel_name} ----\n{source}")
    return CompileResult(graph, front.plan, report, exe, front.in_names, front.out_names, front.param_names,
                         seconds, front.notes, front.groups, program.memory, keys, prep, hoist)


def _cache_key(graph: Graph, name: str | None, freeze: bool, hoist: bool) -> str | None:
    """The disk-cache key, or None (cache off, or a graph the key cannot describe: compiled uncached)."""
    try:
        return disk_cache.graph_key(graph, "llvm", name, freeze, "hoist" if hoist else "")
    except Exception as e:  # noqa: BLE001 - the cache must never stop a compilation that would work
        log.warning("ember compile cache: cannot key graph %s (%s); compiling without the cache", graph.name, e)
        return None


@dataclass
class _FrontEnd:
    """Fusion, checked lowering and the kernel program of an optimized graph: everything but LLVM."""

    plan: FusionPlan
    groups: list[FusionGroup]
    notes: list[str]
    in_names: list[str]
    out_names: list[str]
    param_names: list[str]
    program: Any


def _front_end(graph: Graph, name: str | None) -> _FrontEnd:
    from ember.compiler.kernel.program import build_program
    from ember.compiler.passes.fuse import fuse

    params = [v for v in graph.inputs if v.kind in ("parameter", "buffer")] + list(graph.constants)
    users = [v for v in graph.inputs if v.kind == "input"]
    plan = fuse(graph)
    notes = list(plan.refusals)
    groups = _checked_groups(plan, notes)
    names = plan.names
    out_names = []
    produced = {o for g in groups for o in g.outputs}
    for i, v in enumerate(graph.output_values()):
        n = names[id(v)]
        if n not in produced or n in out_names:  # an input returned as is, or the same value twice
            alias = f"out{i}"
            groups.append(_identity_group(n, v, alias))
            n = alias
        out_names.append(n)
    used = {x for g in groups for x in g.inputs}
    in_names = [v.name for v in users]
    param_names = [v.name for v in params if v.name in used]
    prog_name = sanitize(name or graph.name or "graph")
    _keep_unused_inputs(groups, users)
    program = build_program(prog_name, groups, in_names, out_names, param_names)
    return _FrontEnd(plan, groups, notes, in_names, out_names, param_names, program)


def _spec_json(specs: Any) -> list[list[Any]]:
    return [[s.name, list(s.shape), s.dtype] for s in specs]


def _to_cache(key: str, exe: Any, front: _FrontEnd) -> None:
    """Store the object code MCJIT produced for ``exe`` and the executable's data under ``key``."""
    jm = exe.owner
    if getattr(jm, "object_code", None) is None:
        return
    meta = {"name": exe.name, "inputs": _spec_json(exe.inputs), "outputs": _spec_json(exe.outputs),
            "params": _spec_json(exe.params), "arena_bytes": exe.arena_bytes,
            "memory_plan": {k: list(v) for k, v in exe.memory_plan.items()}, "call_order": list(exe.call_order),
            "entry_symbol": exe.entry_symbol, "externals": jm.externals(), "in_names": front.in_names,
            "out_names": front.out_names, "param_names": front.param_names,
            "param_keys": [sanitize(k) for k in front.param_names]}
    path = disk_cache.store(key, meta, jm.object_code, exe.sources)
    if path is not None and settings.get("DEBUG") >= 1:
        print(f"ember.compile: cached as {path}")


def _from_cache(key: str, graph: Graph, report: PassReport | None, start: float) -> CompileResult | None:
    """The compile result rebuilt from the cache entry of ``key`` (None: no usable entry)."""
    from ember.compiler.codegen.llvm.jit import load_object
    from ember.runtime.executable import Executable, TensorSpec

    entry = disk_cache.load(key)
    if entry is None:
        return None
    m = entry.meta
    try:
        specs = {k: tuple(TensorSpec(n, tuple(shape), dt) for n, shape, dt in m[k])
                 for k in ("inputs", "outputs", "params")}
        keys = dict(zip(m["param_names"], m["param_keys"], strict=True))
        constants = {keys[k]: _param_data(graph, k) for k in m["param_names"]}
        owner = load_object(entry.object_code, m["name"], list(m["externals"]))
        exe = Executable(m["name"], specs["inputs"], specs["outputs"], specs["params"], constants,
                         int(m["arena_bytes"]), {k: (int(a), int(b)) for k, (a, b) in m["memory_plan"].items()},
                         tuple(m["call_order"]), m["entry_symbol"], owner.address(m["entry_symbol"]),
                         owner=owner, sources=entry.sources)
    except (KeyError, TypeError, ValueError, RuntimeError) as e:  # CompileError is a RuntimeError
        disk_cache.STATS["hits"] -= 1
        disk_cache.STATS["rejected"] += 1
        log.warning("ember compile cache: entry %s does not fit this graph (%s); compiling again", key, e)
        return None
    seconds = time.perf_counter() - start
    if settings.get("DEBUG") >= 1:
        print(f"ember.compile: {graph.name}: {len(exe.call_order)} kernels loaded from the cache in "
              f"{seconds:.3f} s")
    return CachedCompileResult(graph, None, report, exe, list(m["in_names"]), list(m["out_names"]),
                               list(m["param_names"]), seconds, [f"{_ORIGIN} ({key})"], param_keys=keys)


_ORIGIN = "loaded from the compile cache"


class CachedCompileResult(CompileResult):
    """A result whose machine code came from the disk cache. Fusion plan, kernel groups and memory plan
    are not stored; the first access to any of them re-runs the front end (fusion, lowering, program:
    no LLVM), which is deterministic, so they describe the loaded code exactly."""

    _front: _FrontEnd | None = None

    def _rebuilt(self) -> _FrontEnd:
        if self._front is None:
            self._front = _front_end(self.graph, self.executable.name)
        return self._front

    plan = property(lambda self: self._rebuilt().plan, lambda self, value: None)  # type: ignore[assignment]
    groups = property(lambda self: self._rebuilt().groups, lambda self, value: None)  # type: ignore[assignment]
    memory = property(lambda self: self._rebuilt().program.memory,  # type: ignore[assignment]
                      lambda self, value: None)
    # the front end's notes (refusals, splits) and then where the code came from
    notes = property(lambda self: [*self._rebuilt().notes, *self._origin],  # type: ignore[assignment]
                     lambda self, value: setattr(self, "_origin", [n for n in value if n.startswith(_ORIGIN)]))


def _keep_unused_inputs(groups: list[FusionGroup], users: list[Value]) -> None:
    """A user input no kernel reads still belongs to the calling convention: a tiny copy keeps it."""
    used = {x for g in groups for x in g.inputs}
    for v in users:
        if v.name not in used:
            groups.append(_identity_group(v.name, v, f"unused_{sanitize(v.name)}"))


def _param_data(graph: Graph, name: str) -> np.ndarray:
    data = graph.bindings.get(name)
    if data is None:
        data = graph.constant_data.get(name)
    if data is None:
        raise CompileError(f"no data for parameter or constant '{name}' of graph '{graph.name}'")
    arr = getattr(data, "_data", data)
    return np.ascontiguousarray(arr).reshape(np.shape(arr))  # (ascontiguousarray makes 0-d 1-d)
