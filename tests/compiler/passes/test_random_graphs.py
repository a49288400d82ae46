"""Hypothesis-generated graphs (elementwise, broadcast, reductions, conv + eval batch norm, matmul,
reshapes and permutes, residual adds, pooling) through the whole pipeline: the optimized graph interprets
to the same numbers, the compiled program (fusion, planned arena with in-place reuse) computes them too,
and the independent checker finds no two simultaneously live buffers overlapping."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from ember.compiler.autodiff.emit import GraphEmitter
from ember.compiler.compile import compile_graph
from ember.compiler.dtypes import float32
from ember.compiler.ir import interpret, verify
from ember.compiler.ir.graph import Graph, flatten_tree
from ember.compiler.kernel.program import build_program
from ember.compiler.ops.registry import TensorType
from ember.compiler.passes import optimize
from ember.runtime.cpu import CpuExecutable
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from passes_testing import check_no_overlap, program_lifetimes

STEPS = ("unary", "scalar", "bias", "residual", "conv", "conv_bn", "softmax", "sum_scale", "flatten",
         "matmul", "transpose2", "reshape2", "layer_norm", "pool")
UNARY = ("relu", "tanh", "sigmoid", "neg", "abs")


class _Maker:
    """Builds a graph step by step from drawn choices; parameters get random data in ``bindings``."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.b = GraphEmitter("random")
        self.g = self.b.graph
        self.x = self.g.add_input("x", TensorType((2, 3, 5, 5), float32))
        self.cur: Any = self.x
        self.seen: list[Any] = [self.x]

    def param(self, shape: tuple[int, ...], kind: str = "parameter", positive: bool = False) -> Any:
        name = f"p{len(self.g.inputs)}"
        data = self.rng.standard_normal(shape).astype(np.float32) * 0.5
        self.g.bindings[name] = np.abs(data) + 0.5 if positive else data
        return self.g.add_input(name, TensorType(shape, float32), kind)

    def step(self, kind: str, k: int) -> None:
        b, cur = self.b, self.cur
        shape, nd = tuple(cur.shape), len(cur.shape)
        if kind == "unary":
            cur = getattr(b, UNARY[k % len(UNARY)])(cur)
        elif kind == "scalar":
            cur = b.add(b.mul(cur, 0.5 + k % 3), -0.25)
        elif kind == "bias":
            cur = b.add(cur, self.param((shape[1],) + (1,) * (nd - 2) if nd > 2 else (shape[-1],)))
        elif kind == "residual":
            same = [v for v in self.seen if tuple(v.shape) == shape and v is not cur]
            if same:
                cur = b.add(cur, same[k % len(same)])
        elif kind in ("conv", "conv_bn") and nd == 4:
            co = 2 + k % 3
            cur = b.conv(cur, self.param((co, shape[1], 3, 3)), padding=(1, 1))
            if kind == "conv_bn":
                mean, var = self.param((co,), "buffer"), self.param((co,), "buffer", positive=True)
                cur = b.batch_norm(cur, mean, var, self.param((co,)), self.param((co,)), eps=1e-5)
        elif kind == "softmax":
            cur = (b.softmax if k % 2 else b.log_softmax)(cur, dim=k % nd)
        elif kind == "sum_scale":
            cur = b.mul(cur, b.tanh(b.sum(cur, dim=(k % nd,), keepdim=True)))
        elif kind == "pool" and nd == 4:  # a kernel of its own: the elementwise ops after it may run in place
            cur = b.tanh(b.avg_pool(cur, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1)))
        elif kind == "flatten" and nd == 4:
            cur = b.reshape(cur, shape=(shape[0], int(np.prod(shape[1:]))))
        elif kind == "matmul" and nd == 2:
            cur = b.matmul(cur, b.permute(self.param((2 + k % 5, shape[1])), dims=(1, 0)))
        elif kind == "transpose2":
            dims = tuple(reversed(range(nd)))
            cur = b.permute(b.permute(cur, dims=dims), dims=dims)
        elif kind == "reshape2":
            cur = b.reshape(b.reshape(cur, shape=(int(np.prod(shape)),)), shape=shape)
        elif kind == "layer_norm":
            w, bias = self.param(shape[-1:]), self.param(shape[-1:])
            cur = b.layer_norm(cur, w, bias, normalized_shape=shape[-1:])
        if cur is not self.cur:
            self.cur = cur
            self.seen.append(cur)

    def graph(self, extra: int) -> Graph:
        outs = (self.cur, self.seen[extra % len(self.seen)]) if len(self.seen) > 2 else self.cur
        return verify(self.g.finish(outs))


programs = st.lists(st.tuples(st.sampled_from(STEPS), st.integers(0, 9)), min_size=2, max_size=9)


def _check_program_memory(graph: Graph) -> None:
    from ember.compiler.passes.fuse import fuse

    plan = fuse(graph)
    names = [plan.names[id(v)] for v in graph.output_values()]
    produced = {o for g in plan.groups for o in g.outputs}
    if len(set(names)) != len(names) or not set(names) <= produced:
        return  # an output that is an input, or returned twice: compile_graph adds copies for those
    used = {x for g in plan.groups for x in g.inputs}
    params = [v.name for v in [*graph.inputs, *graph.constants] if v.kind != "input" and v.name in used]
    program = build_program("random", plan.groups, ["x"] if "x" in used else [], names, params)
    sizes = {n: -(-nb // 64) * 64 for n, (_, nb) in program.memory_plan.items()}
    offsets = {n: off for n, (off, _) in program.memory_plan.items()}
    check_no_overlap(offsets, sizes, program_lifetimes(program, plan.groups), program.memory.inplace)
    assert program.memory.lower_bound <= program.arena_bytes <= program.memory.naive_bytes


@pytest.mark.slow
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=programs, seed=st.integers(0, 2**16), extra=st.integers(0, 5), freeze=st.booleans())
def test_random_graphs_through_the_pipeline(steps: list[tuple[str, int]], seed: int, extra: int,
                                            freeze: bool) -> None:
    m = _Maker(seed)
    for kind, k in steps:
        m.step(kind, k)
    graph = m.graph(extra)
    x = np.random.default_rng(seed + 1).standard_normal((2, 3, 5, 5)).astype(np.float32)
    want = [np.asarray(a) for a in flatten_tree(interpret(graph, [x]))]
    optimized, _ = optimize(graph, freeze=freeze)
    verify(optimized)
    if freeze:  # the live pipeline leaves batch norms to fusion (a conv epilogue)
        assert all(n.op.name != "batch_norm" for n in optimized.nodes)
    got = [np.asarray(a) for a in flatten_tree(interpret(optimized, [x]))]
    for w, g in zip(want, got):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)
    _check_program_memory(optimized)
    result = compile_graph(graph)
    exe = CpuExecutable(result.executable)
    outs = exe(x) if result.input_names else exe()
    for w, g in zip(want, outs):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4)
