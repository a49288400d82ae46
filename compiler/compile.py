"""From a graph to an executable: the inference pipeline, fusion, lowering and code generation.

``compile_graph(graph, target)`` is the compiler's one entry point; the frontend's ``ember.compile`` and
the AOT exporter call it. It imports nothing from the frontend, so a graph built by any means (traced,
parsed, imported) compiles the same way.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ember.compiler.ir.graph import Graph, Value
from ember.compiler.kernel.group import FusionGroup, GroupNode
from ember.compiler.kernel.lower import lower_group, sanitize
from ember.compiler.passes.fuse import FusionPlan, fuse
from ember.compiler.passes.manager import PassManager, PassReport
from ember.runtime import settings
from ember.runtime.errors import CompileError

log = logging.getLogger("ember.compile")

TARGETS = ("llvm", "interpret")


def default_pipeline(freeze: bool = False) -> list[Any]:
    """The graph-to-graph passes run before fusion, in order (see compiler/passes/pipeline.py)."""
    from ember.compiler.passes.pipeline import FROZEN_PIPELINE, INFERENCE_PIPELINE

    return list(FROZEN_PIPELINE if freeze else INFERENCE_PIPELINE)


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

    @property
    def kernel_count(self) -> int:
        return self.plan.kernel_count if self.plan is not None else 0


def _identity_group(name: str, value: Value, out_name: str) -> FusionGroup:
    return FusionGroup(f"copy_{sanitize(out_name)}", [GroupNode("clone", (name,), (out_name,))],
                       {name: value.type, out_name: value.type}, [name], [out_name])


def _checked_groups(plan: FusionPlan, notes: list[str]) -> list[FusionGroup]:
    """Lower each group once to validate it. A fused group that lowering rejects is split into single
    nodes (recorded); a single node that cannot be lowered is a CompileError naming its op."""
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
                  freeze: bool = False) -> CompileResult:
    """Optimize ``graph`` and build an executable for ``target`` ("llvm" or "interpret").

    ``freeze=True`` bakes the current parameter values in as constants (and folds batch norms into
    the weights); ``ember.compile`` and export keep the default, which reads the weights at run time.
    """
    if target not in TARGETS:
        raise CompileError(f"unknown target {target!r}; expected one of {', '.join(TARGETS)}"
                           + (" (the CUDA back end is not available yet)" if target == "cuda" else ""))
    start = time.perf_counter()
    graph, report = PassManager(default_pipeline(freeze)).run(graph)
    params = [v for v in graph.inputs if v.kind in ("parameter", "buffer")] + list(graph.constants)
    users = [v for v in graph.inputs if v.kind == "input"]
    if target == "interpret":
        return CompileResult(graph, None, report, None, [v.name for v in users], [], [v.name for v in params],
                             time.perf_counter() - start)
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
    from ember.compiler.codegen.llvm.program import compile_program
    from ember.compiler.kernel.program import build_program

    prog_name = sanitize(name or graph.name or "graph")
    _keep_unused_inputs(groups, users)
    program = build_program(prog_name, groups, in_names, out_names, param_names)
    constants = {sanitize(k): _param_data(graph, k) for k in param_names}
    exe = compile_program(program, constants, {sanitize(v): v for v in [*in_names, *out_names]})
    seconds = time.perf_counter() - start
    debug = settings.get("DEBUG")
    if debug >= 1:
        print(f"ember.compile: {graph.name}: {len(groups)} kernels from {len(graph.nodes)} nodes in "
              f"{seconds:.2f} s")
    if debug >= 4:
        for kernel_name, source in exe.sources.items():
            print(f"---- {kernel_name} ----\n{source}")
    return CompileResult(graph, plan, report, exe, in_names, out_names, param_names, seconds, notes, groups,
                         program.memory)


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
