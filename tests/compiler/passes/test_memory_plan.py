"""plan_memory: lifetimes, the lower bound, in-place reuse, the heuristics, and the arena a compiled
program really uses (results equal to eager; offsets checked by the independent checker)."""

from __future__ import annotations

import ember
import numpy as np
import pytest
from ember.compiler.passes.memory_plan import ALGORITHMS, Access, compute_lifetimes, lower_bound, plan_memory
from passes_testing import check_no_overlap, program_lifetimes

KB = 1024


def _spans(plan):
    return {n: (lt.start, lt.end) for n, lt in plan.lifetimes.items()}


def test_docstring_example_reuses_a_dead_buffer() -> None:
    acc = [Access(writes=("a", "b")), Access(reads=("a", "b")), Access(reads=("b",), writes=("c",)),
           Access(reads=("c",))]
    sizes = {"a": KB, "b": KB, "c": KB}
    plan = plan_memory(acc, sizes)
    assert _spans(plan) == {"a": (0, 1), "b": (0, 2), "c": (2, 3)}
    assert plan.naive_bytes == 3 * KB and plan.lower_bound == 2 * KB and plan.arena_bytes == 2 * KB
    assert plan.offsets["c"] == plan.offsets["a"]
    check_no_overlap(plan.offsets, plan.sizes, _spans(plan), plan.inplace)


def test_inplace_reuse_for_an_elementwise_consumer() -> None:
    acc = [Access(writes=("x",)), Access(reads=("x",), writes=("y",), inplace=(("y", "x"),)),
           Access(reads=("y",), writes=("z",), inplace=(("z", "y"),)), Access(reads=("z",))]
    plan = plan_memory(acc, {"x": 4 * KB, "y": 4 * KB, "z": 4 * KB})
    assert plan.inplace == [("y", "x"), ("z", "y")]
    assert plan.arena_bytes == 4 * KB and plan.offsets["x"] == plan.offsets["y"] == plan.offsets["z"]
    assert plan.lower_bound == 4 * KB  # the merged buffer: x, y and z are one allocation over [0, 3]
    check_no_overlap(plan.offsets, plan.sizes, _spans(plan), plan.inplace)
    without = plan_memory(acc, {"x": 4 * KB, "y": 4 * KB, "z": 4 * KB}, inplace=False)
    assert without.inplace == [] and without.arena_bytes == 8 * KB


def test_inplace_refused_when_the_input_lives_on_or_sizes_differ() -> None:
    acc = [Access(writes=("x",)), Access(reads=("x",), writes=("y",), inplace=(("y", "x"),)),
           Access(reads=("x", "y"))]
    assert plan_memory(acc, {"x": KB, "y": KB}).inplace == []  # x is read after y is written
    acc2 = [Access(writes=("x",)), Access(reads=("x",), writes=("y",), inplace=(("y", "x"),)),
            Access(reads=("y",))]
    assert plan_memory(acc2, {"x": KB, "y": 2 * KB}).inplace == []


def test_sizes_are_aligned_and_scratch_lives_one_call() -> None:
    acc = [Access(writes=("a",), scratch=("k0.cols",)), Access(reads=("a",), scratch=("k1.cols",))]
    lts = compute_lifetimes(acc, {"a": 10, "k0.cols": 100, "k1.cols": 100})
    assert {n: (lt.nbytes, lt.start, lt.end) for n, lt in lts.items()} == {
        "a": (64, 0, 1), "k0.cols": (128, 0, 0), "k1.cols": (128, 1, 1)}
    assert lower_bound(list(lts.values())) == 64 + 128
    plan = plan_memory(acc, {"a": 10, "k0.cols": 100, "k1.cols": 100})
    assert plan.arena_bytes == 192 and plan.sizes["a"] == 10  # exact size kept for the report
    assert plan.offsets["k0.cols"] == plan.offsets["k1.cols"]


@pytest.mark.parametrize("seed", range(20))
def test_every_heuristic_is_valid_and_the_smallest_is_kept(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_calls, names = 30, [f"v{i}" for i in range(25)]
    sizes = {n: int(rng.integers(1, 64)) * 64 for n in names}
    acc = [Access() for _ in range(n_calls)]
    for n in names:
        s = int(rng.integers(0, n_calls))
        e = int(rng.integers(s, min(n_calls, s + 8)))
        acc[s] = Access(acc[s].reads, acc[s].writes + (n,))
        acc[e] = Access(acc[e].reads + (n,), acc[e].writes)
    plan = plan_memory(acc, sizes)
    spans = _spans(plan)
    for name, algo in ALGORITHMS.items():
        offs = algo(list(plan.lifetimes.values()))
        check_no_overlap(offs, sizes, spans)
        size = max(offs[n] + sizes[n] for n in names)
        assert plan.candidates[name] == size
    assert plan.arena_bytes == min(plan.candidates.values())
    assert plan.lower_bound <= plan.arena_bytes <= plan.naive_bytes
    check_no_overlap(plan.offsets, plan.sizes, spans, plan.inplace)


def test_program_arena_reuses_memory_without_overlap() -> None:
    from ember.compiler.kernel.program import build_program
    from ember.compiler.passes import optimize
    from ember.compiler.passes.fuse import fuse

    nn = ember.nn
    ember.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 32),
                          nn.Sigmoid(), nn.Linear(32, 10))  # three intermediates: the third reuses the first
    model.eval()
    graph, _ = optimize(ember.trace(model, ember.randn(16, 32)))
    plan = fuse(graph)
    params = [v.name for v in graph.inputs if v.kind != "input"]
    program = build_program("mlp", plan.groups, ["input"], [plan.names[id(graph.output_values()[0])]], params)
    memory = program.memory
    assert len(program.memory_plan) == 3 and program.arena_bytes == 2 * 16 * 32 * 4
    assert memory.naive_bytes == 3 * 16 * 32 * 4 and memory.lower_bound == program.arena_bytes
    sizes = {n: -(-nb // 64) * 64 for n, (_, nb) in program.memory_plan.items()}
    offsets = {n: off for n, (off, _) in program.memory_plan.items()}
    assert check_no_overlap(offsets, sizes, program_lifetimes(program, plan.groups), memory.inplace) == 2


def test_elementwise_kernel_runs_in_place_and_matches_torch() -> None:
    import torch

    F = ember.nn.functional
    fn = lambda x: F.max_pool2d(F.max_pool2d(x, 2).exp() * 0.5 + 1.0, 2)  # noqa: E731
    x = ember.randn(2, 3, 8, 8)
    compiled = ember.compile(fn)
    got = compiled(x).numpy()
    entry = compiled.compiled_for(x)
    exe = entry.result.executable
    kinds = [g.name for g in entry.result.plan.groups]
    assert len(kinds) == 3  # pool, the elementwise chain, pool
    (t_out, t_in), = [p for p in _inplace_pairs(exe)]
    assert exe.memory_plan[t_out][0] == exe.memory_plan[t_in][0]
    xt = torch.from_numpy(x.numpy())
    want = torch.nn.functional.max_pool2d(torch.nn.functional.max_pool2d(xt, 2).exp() * 0.5 + 1.0, 2)
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-5, atol=1e-6)


def _inplace_pairs(exe) -> list[tuple[str, str]]:
    """Pairs of arena values at one offset whose sizes match (what in-place reuse produces here)."""
    by_offset: dict[int, list[str]] = {}
    for name, (off, _) in exe.memory_plan.items():
        by_offset.setdefault(off, []).append(name)
    return [(b, a) for names in by_offset.values() if len(names) == 2 for a, b in [sorted(names)]]
