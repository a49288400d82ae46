"""The compile report: one self-contained HTML page that shows what the compiler did to a model.

``CompiledModule.report(path, *inputs)`` and ``ember inspect --html`` write it. The page holds the graph
(SVG drawn here, fusion groups coloured, nodes linked to their module scope and source line), each
pass's effect (node counts, statistics, an IR diff), the fusion decisions with the reason for every
refusal, each kernel's kernel IR and LLVM IR, the memory plan as a picture, per-kernel timings and the
numerics check of every kernel against the float64 interpreter (``ember.compiler.bisect``).

Everything is inline (CSS, JS, SVG): the page fetches nothing, so it can be mailed or attached to an
issue. The runtime calls all kernels from one native entry function and has no per-kernel timing hook,
so kernels are timed in isolation: each compiled as its own program and run alone on the intermediate
values recorded from the reference run (the page says so).
"""

from __future__ import annotations

import difflib
import os
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ember.compiler.bisect import BisectReport, IsolatedKernel, bisect, isolate_kernels
from ember.compiler.ir.graph import Graph
from ember.runtime.errors import CompileError

__all__ = ["ReportData", "build_report", "pass_diffs", "write_report"]


@dataclass
class ReportData:
    """What the page shows, gathered before any HTML is written."""

    result: Any                                   # compiler/compile.py CompileResult
    title: str
    diffs: list[tuple[str, list[str]]] | None     # per pass: unified diff of the printed IR
    kernels: list[IsolatedKernel] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)   # kernel name -> median seconds (isolated)
    program_seconds: float | None = None          # one call of the whole compiled program (median)
    repeats: int = 0
    numerics: BisectReport | None = None


def pass_diffs(source_graph: Graph, hoist: bool = False) -> list[tuple[str, list[str]]]:
    """Run the inference pipeline pass by pass on ``source_graph`` and diff the IR around each pass.
    ``hoist``: the pipeline ``ember.compile`` runs, then the weight-preparation split (its diff shows the
    per-call graph, then the prep graph's text)."""
    from ember.compiler.compile import default_pipeline
    from ember.compiler.ir.printer import print_graph
    from ember.compiler.passes.manager import PassManager, pass_name

    graph = source_graph
    out: list[tuple[str, list[str]]] = []

    def diff(before: str, after: str) -> list[str]:
        return list(difflib.unified_diff(before.splitlines(), after.splitlines(), "before", "after",
                                         lineterm="", n=1))

    for p in default_pipeline(hoist=hoist):
        name, fn = p if isinstance(p, tuple) else (pass_name(p), p)
        before = print_graph(graph, "none")  # without locations: a diff one can read
        graph, _ = PassManager([(name, fn)]).run(graph)
        out.append((name, diff(before, print_graph(graph, "none"))))
    if hoist:
        from ember.compiler.passes.hoist_parameters import hoist_parameter_work

        main, prep = hoist_parameter_work(graph)
        lines = diff(print_graph(graph, "none"), print_graph(main, "none"))
        if prep is not None:
            lines += ["", "prep graph (run when the weights change):",
                      *print_graph(prep.graph, "none").splitlines()]
        out.append(("hoist_parameter_work", lines))
    return out


def _median_seconds(fn: Callable[[], Any], repeats: int) -> float:
    fn()  # warm: first-touch page faults and thread start-up are not the kernel's time
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def _program_inputs(result: Any, inputs: Sequence[Any]) -> list[np.ndarray]:
    specs = result.executable.inputs
    arrays = [np.asarray(getattr(x, "_data", x)) for x in inputs]
    return [np.ascontiguousarray(a.astype(s.dtype)).reshape(a.shape) for a, s in zip(arrays, specs)]


def gather(result: Any, inputs: Sequence[Any] | None = None, params: Mapping[str, Any] | None = None,
           source_graph: Graph | None = None, profile: bool = True, check: bool = True, repeats: int = 5,
           title: str | None = None, program: Callable[..., Any] | None = None) -> ReportData:
    """Collect the report's data. Without ``inputs`` there are no timings and no numerics check.

    ``program``: the runner of the whole compiled program (default: a fresh ``CpuExecutable``).
    """
    if result.executable is None:
        raise CompileError("the compile report needs native kernels; compile with target 'llvm' (this one "
                           "was compiled with target 'interpret')")
    data = ReportData(result, title or f"ember compile report: {result.graph.name}",
                      pass_diffs(source_graph, result.hoisted)
                      if source_graph is not None else None)
    if inputs is None or not (profile or check):
        return data
    data.kernels = isolate_kernels(result, inputs, params)
    if check:
        data.numerics = bisect(result, inputs, params, kernels=data.kernels)
    if profile:
        data.repeats = repeats
        for k in data.kernels:
            data.timings[k.name] = _median_seconds(k.run, repeats)
        if program is None:
            from ember.runtime.cpu import CpuExecutable

            program = CpuExecutable(result.executable)
        arrays = _program_inputs(result, inputs)
        data.program_seconds = _median_seconds(lambda: program(*arrays), repeats)
    return data


def build_report(result: Any, inputs: Sequence[Any] | None = None, params: Mapping[str, Any] | None = None,
                 source_graph: Graph | None = None, **options: Any) -> str:
    """The report page as HTML text (see ``gather`` for the arguments)."""
    from ember.compiler.report.page import render_page

    return render_page(gather(result, inputs, params, source_graph, **options))


def write_report(path: str | os.PathLike[str], result: Any, inputs: Sequence[Any] | None = None,
                 params: Mapping[str, Any] | None = None, source_graph: Graph | None = None,
                 **options: Any) -> str:
    """Write the report page to ``path`` (UTF-8) and return the path."""
    text = build_report(result, inputs, params, source_graph, **options)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return os.fspath(path)
