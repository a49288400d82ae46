"""The numerics bisector: which generated kernel computes the wrong numbers, and which pass formed it.

``ember.compile(model, check="bisect")`` and ``ember inspect --bisect`` use it. A wrong result at the end
of a model says little: the error may come from any of dozens of kernels and grows as it flows on. The
bisector checks every kernel on its own:

1. The graph's inputs, parameters and constants seed an environment of float64 reference values.
2. Kernels are visited in call order. Each one is compiled alone (its fusion group as a one-kernel
   program) and run on its inputs from the environment, cast to the dtypes the kernel takes. The same
   nodes run through the ops' reference implementations in float64 on exactly those (cast) inputs.
3. The kernel's outputs are compared with the float64 results; the environment then takes the float64
   results, never the kernel's, so one bad kernel does not make every later kernel look bad.

The first kernel whose error exceeds the tolerance is named, with the pass that formed it: the fusion
pass and the fusion decisions that built its group, or the compile driver's split of a group lowering
rejected, or the copy added for an output. ``error`` is the largest ``|got - ref| / (atol + rtol |ref|)``
over the kernel's outputs (at most 1 passes); integer and boolean outputs must match exactly.

>>> # report = bisect(compiled.compiled_for(x).result, [x.numpy()]); print(report)
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ember.compiler.ir.graph import Graph
from ember.compiler.kernel.group import FusionGroup
from ember.compiler.kernel.lower import sanitize
from ember.runtime.errors import ArgumentError, CompileError

__all__ = ["BisectReport", "IsolatedKernel", "KernelCheck", "bisect", "formed_by", "isolate_kernels",
           "kernel_groups"]

RTOL = 1e-4
ATOL = 1e-5
_LOW_PRECISION_TOL = 1e-2   # float16 / bfloat16 outputs: the float32 tolerances cannot hold


@dataclass
class IsolatedKernel:
    """One kernel compiled as its own program, the inputs it gets and the float64 results it must match."""

    index: int
    name: str
    group: FusionGroup
    runner: Any                       # CpuExecutable over the group's inputs -> its outputs
    inputs: list[np.ndarray]          # in group.inputs order, in the kernel's dtypes
    reference: dict[str, np.ndarray]  # output name -> float64 (or exact integer) result

    def run(self) -> tuple[np.ndarray, ...]:
        return self.runner(*self.inputs)


@dataclass
class KernelCheck:
    """The comparison of one kernel with the float64 interpreter."""

    index: int
    name: str
    formed_by: str
    error: float          # normalized: <= 1 passes
    max_abs: float        # largest absolute difference over the outputs
    worst_output: str
    ops: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.error <= 1.0)


@dataclass
class BisectReport:
    """Every kernel's check, in call order, and the first that failed."""

    checks: list[KernelCheck]
    rtol: float
    atol: float

    @property
    def first_bad(self) -> KernelCheck | None:
        return next((c for c in self.checks if not c.ok), None)

    @property
    def ok(self) -> bool:
        return self.first_bad is None

    def summary(self) -> str:
        """One line: which kernel is first to exceed the tolerance, or that all passed."""
        bad = self.first_bad
        if bad is None:
            return (f"all {len(self.checks)} kernels match the float64 interpreter "
                    f"(rtol={self.rtol:g}, atol={self.atol:g})")
        return (f"kernel {bad.name} (#{bad.index}, ops {', '.join(bad.ops)}) is the first whose error "
                f"exceeds the tolerance: max |got - ref| = {bad.max_abs:.3g} on {bad.worst_output} "
                f"({bad.error:.3g}x rtol={self.rtol:g}, atol={self.atol:g}); formed by {bad.formed_by}")

    def __str__(self) -> str:
        lines = [f"{'#':>3} {'kernel':<36} {'error':>10} {'max abs':>10}  formed by"]
        for c in self.checks:
            flag = "" if c.ok else "  <-- exceeds tolerance"
            lines.append(f"{c.index:>3} {c.name:<36} {c.error:>10.3g} {c.max_abs:>10.3g}  "
                         f"{c.formed_by}{flag}")
        lines.append(self.summary())
        return "\n".join(lines)


def kernel_groups(result: Any) -> list[tuple[str, FusionGroup]]:
    """(kernel name as called, fusion group) for every kernel of a compile result, in call order."""
    groups = list(getattr(result, "groups", None) or [])
    if not groups and result.plan is not None:
        groups = list(result.plan.groups)
    exe = result.executable
    names = list(exe.call_order) if exe is not None and len(exe.call_order) == len(groups) else []
    if not names:
        used: set[str] = set()
        for g in groups:  # the same naming as build_program
            k = sanitize(g.name)
            while k in used:
                k += "_"
            used.add(k)
            names.append(k)
    return list(zip(names, groups))


def formed_by(group: FusionGroup, result: Any) -> str:
    """The pass (and its decisions) that made this group a kernel."""
    m = re.fullmatch(r"fused_(\d+)_.*", group.name)
    plan = result.plan
    if group.name.startswith("copy_"):
        return "compile_graph (a copy for an output that is an input or repeated)"
    if group.name.startswith("unused_"):
        return "compile_graph (a copy keeping an unused input in the calling convention)"
    if plan is not None and m is not None and group.name not in {g.name for g in plan.groups}:
        parent = next((g.name for g in plan.groups if group.name.startswith(g.name + "_")), "?")
        return f"compile_graph (split of fusion group {parent}, which lowering rejected)"
    if plan is None or m is None:
        return "fuse"
    decisions = [d.rsplit(" (group", 1)[0] for d in plan.fused if d.endswith(f"(group {m.group(1)})")]
    return "fuse: " + ("; ".join(decisions) if decisions else f"{group.nodes[0].op} alone")


def _seed(graph: Graph, inputs: Sequence[Any], params: Mapping[str, Any] | None) -> dict[str, np.ndarray]:
    """Graph inputs, parameters and constants by name, floating ones in float64."""
    users = graph.user_inputs
    if len(inputs) != len(users):
        raise ArgumentError(f"bisect: graph @{graph.name} takes {len(users)} inputs, got {len(inputs)}")
    env: dict[str, np.ndarray] = {}
    for v, x in zip(users, inputs):
        env[v.name] = np.asarray(getattr(x, "_data", x))
    for v in graph.inputs:
        if v.kind == "input":
            continue
        data = params.get(v.name) if params is not None else None
        if data is None:
            data = graph.bindings.get(v.name)
        if data is None:
            raise ArgumentError(f"bisect: no data for {v.kind} {v.name!r}")
        env[v.name] = np.asarray(getattr(data, "_data", data))
    for v in graph.constants:
        data = graph.constant_data.get(v.name)
        if data is None:
            raise ArgumentError(f"bisect: constant {v.name!r} has no data")
        env[v.name] = np.asarray(data)
    return {k: _widen(a) for k, a in env.items()}


def _widen(a: np.ndarray) -> np.ndarray:
    return a.astype(np.float64) if np.issubdtype(a.dtype, np.floating) else a


def _reference(group: FusionGroup, args: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The group's nodes through the ops' reference implementations, floating values in float64."""
    from ember.compiler.ops.registry import REGISTRY

    env = dict(args)
    with np.errstate(all="ignore"):  # the kernel meets the same overflow; the comparison judges it
        for node in group.nodes:
            operands = [env[x] if isinstance(x, str) else x for x in node.inputs]
            result = REGISTRY[node.op].reference(np, *operands, **node.attrs)
            results = (result,) if len(node.outputs) == 1 else tuple(result)
            for name, r in zip(node.outputs, results):
                dtype = group.type_of(name).dtype
                env[name] = (np.asarray(r, dtype=np.float64) if dtype.is_floating_point
                             else np.asarray(r, dtype=dtype.np))
    return {name: env[name] for name in group.outputs}


def isolate_kernels(result: Any, inputs: Sequence[Any], params: Mapping[str, Any] | None = None
                    ) -> list[IsolatedKernel]:
    """Every kernel of ``result`` compiled alone, with its inputs and its float64 reference outputs.

    ``inputs``: arrays (or tensors) for the graph's user inputs, in order; ``params``: parameter data by
    name (default: the graph's bindings). Compiling each kernel alone costs about one more compilation.
    """
    from ember.compiler.codegen.llvm.program import compile_groups

    if result.executable is None:
        raise CompileError("bisect: this compilation made no kernels (target 'interpret'); compile with "
                           "target 'llvm'")
    env = _seed(result.graph, inputs, params)
    out: list[IsolatedKernel] = []
    for index, (name, group) in enumerate(kernel_groups(result)):
        kernel_in = [np.ascontiguousarray(env[x].astype(group.type_of(x).dtype.np)).reshape(env[x].shape)
                     for x in group.inputs]
        reference = _reference(group, {x: _widen(a) for x, a in zip(group.inputs, kernel_in)})
        runner = compile_groups(f"isolated_{name}", [group], list(group.inputs), list(group.outputs))
        out.append(IsolatedKernel(index, name, group, runner, kernel_in, reference))
        env.update(reference)
    return out


def _compare(got: np.ndarray, ref: np.ndarray, rtol: float, atol: float) -> tuple[float, float]:
    """(normalized error, max absolute difference) of one output."""
    if got.size == 0:
        return 0.0, 0.0
    if not np.issubdtype(ref.dtype, np.floating):
        wrong = int(np.count_nonzero(got != ref))
        return (float("inf") if wrong else 0.0), float(wrong)
    g = got.astype(np.float64)
    both_nan = np.isnan(g) & np.isnan(ref)
    same_inf = np.isinf(ref) & (g == ref)
    with np.errstate(all="ignore"):
        diff = np.where(both_nan | same_inf, 0.0, np.abs(g - ref))
        diff = np.where(np.isnan(diff), np.inf, diff)
        scaled = diff / (atol + rtol * np.where(np.isfinite(ref), np.abs(ref), 0.0))
    return float(scaled.max()), float(diff.max())


def check_kernel(kernel: IsolatedKernel, result: Any, rtol: float = RTOL, atol: float = ATOL) -> KernelCheck:
    """Run one isolated kernel and compare each output with its float64 reference."""
    got = kernel.run()
    error, max_abs, worst = 0.0, 0.0, kernel.group.outputs[0] if kernel.group.outputs else ""
    for name, arr in zip(kernel.group.outputs, got):
        dtype = kernel.group.type_of(name).dtype
        low = dtype.is_floating_point and dtype.itemsize < 4
        r, a = (max(rtol, _LOW_PRECISION_TOL), max(atol, _LOW_PRECISION_TOL)) if low else (rtol, atol)
        e, m = _compare(np.asarray(arr), kernel.reference[name], r, a)
        if e > error or (e == error and m > max_abs):
            error, max_abs, worst = e, m, name
    return KernelCheck(kernel.index, kernel.name, formed_by(kernel.group, result), error, max_abs, worst,
                       [n.op for n in kernel.group.nodes])


def bisect(result: Any, inputs: Sequence[Any], params: Mapping[str, Any] | None = None, rtol: float = RTOL,
           atol: float = ATOL, kernels: list[IsolatedKernel] | None = None) -> BisectReport:
    """Check every kernel of ``result`` against the float64 interpreter (see the module docstring).

    ``kernels``: already isolated kernels (``isolate_kernels``) to reuse, e.g. from a report.
    """
    kernels = kernels if kernels is not None else isolate_kernels(result, inputs, params)
    return BisectReport([check_kernel(k, result, rtol, atol) for k in kernels], rtol, atol)
