"""Shared by the pass tests: golden-file comparison, interpreter equivalence on random inputs, and the
independent overlap checker for memory plans (written apart from the planner, so it cannot share a bug)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from ember.compiler.ir import interpret, print_graph
from ember.compiler.ir.graph import Graph, flatten_tree

GOLDEN = Path(__file__).parent / "golden"


def check_golden(name: str, graph: Graph) -> None:
    """``graph`` prints as golden/<name>.ir; ``EMBER_ACCEPT=1`` rewrites the file."""
    text = print_graph(graph)
    path = GOLDEN / f"{name}.ir"
    if os.environ.get("EMBER_ACCEPT") == "1":
        path.write_text(text)
    assert path.exists(), f"no golden file {path}; run with EMBER_ACCEPT=1 to create it"
    assert text == path.read_text(), f"IR after {name} changed; if intended, rerun with EMBER_ACCEPT=1"


def random_data(graph: Graph, seed: int = 0) -> tuple[list[np.ndarray], dict[str, np.ndarray]]:
    """Random inputs for the graph's user inputs and for parameters/buffers the graph has no data for.
    Variances (names with 'var') are kept positive."""
    rng = np.random.default_rng(seed)
    inputs, params = [], {}
    for v in graph.inputs:
        dt = v.dtype.np
        if dt.kind == "f":
            arr = rng.standard_normal(v.shape).astype(dt)
            if "var" in v.name:
                arr = np.abs(arr) + 0.5
        elif dt.kind == "b":
            arr = rng.random(v.shape) < 0.5
        else:
            arr = rng.integers(-5, 6, v.shape).astype(dt)
        if v.kind == "input":
            inputs.append(arr)
        elif v.name not in graph.bindings:
            params[v.name] = arr
    return inputs, params


def assert_equivalent(before: Graph, after: Graph, seed: int = 0, rtol: float = 1e-5,
                      atol: float = 1e-6) -> None:
    """Both graphs give the same results on the same random data (parameters looked up by name)."""
    inputs, params = random_data(before, seed)
    want = flatten_tree(interpret(before, inputs, params))
    got = flatten_tree(interpret(after, inputs, {k: v for k, v in params.items()
                                                 if any(i.name == k for i in after.inputs)}))
    assert len(want) == len(got)
    for w, g in zip(want, got):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=rtol, atol=atol)


def check_no_overlap(offsets: dict[str, int], sizes: dict[str, int], lifetimes: dict[str, tuple[int, int]],
                     inplace: list[tuple[str, str]] = ()) -> int:
    """Every two buffers whose lifetimes (first, last call) intersect occupy disjoint bytes, except an
    in-place pair (output, input) that meets only at the call where the input dies and the output is
    born. Returns the number of pairs checked."""
    shared = {frozenset(p) for p in inplace}
    names = sorted(lifetimes)
    checked = 0
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            (s1, e1), (s2, e2) = lifetimes[a], lifetimes[b]
            if s1 > e2 or s2 > e1:
                continue
            checked += 1
            disjoint = offsets[a] + sizes[a] <= offsets[b] or offsets[b] + sizes[b] <= offsets[a]
            if disjoint:
                continue
            touching = (e1 == s2 or e2 == s1) and frozenset((a, b)) in shared
            assert touching, (f"buffers {a} [{offsets[a]}, +{sizes[a]}) live {lifetimes[a]} and {b} "
                              f"[{offsets[b]}, +{sizes[b]}) live {lifetimes[b]} overlap")
    return checked


def program_lifetimes(program: Any, groups: list[Any]) -> dict[str, tuple[int, int]]:
    """Lifetimes recomputed from the fusion groups in call order (not from the planner): every arena
    value from the first to the last group that reads or writes it; a kernel's scratch buffer
    (``<kernel>.<param>``) lives during its own call."""
    spans: dict[str, tuple[int, int]] = {}
    for k, g in enumerate(groups):
        for v in [*g.inputs, *g.outputs]:
            if v in program.memory_plan:
                s, _ = spans.get(v, (k, k))
                spans[v] = (s, k)
    kernels = [c.kernel for c in program.calls]
    for name in program.memory_plan:
        if name not in spans:
            k = kernels.index(name.split(".")[0])
            spans[name] = (k, k)
    return spans
