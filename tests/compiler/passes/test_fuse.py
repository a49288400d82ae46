"""The fusion pass: groups by lowering kind, epilogues on GEMM/conv, recorded refusals, legality."""

from __future__ import annotations

import ember
import ember.nn as nn
import numpy as np
from ember.compiler.passes.fuse import fuse, unfused


def _groups(model, *inputs):
    g = ember.trace(model.eval(), *inputs)
    return fuse(g), g


def test_mlp_fuses_linear_bias_relu_into_one_gemm_group() -> None:
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    plan, graph = _groups(model, ember.randn(5, 16))
    ops = [[n.op for n in g.nodes] for g in plan.groups]
    assert ops == [["permute", "matmul", "add", "relu"], ["permute", "matmul", "add"]]
    assert plan.kernel_count < len(unfused(graph).groups)


def test_conv_relu_residual_add_is_one_group() -> None:
    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(4, 4, 3, padding=1)

        def forward(self, x):
            return (self.conv(x).relu() + x).relu()

    plan, _ = _groups(Block(), ember.randn(1, 4, 8, 8))
    assert [[n.op for n in g.nodes] for g in plan.groups] == [["conv", "reshape", "add", "relu", "add", "relu"]]


def test_refusal_is_recorded_when_conv_output_has_two_users() -> None:
    class TwoUsers(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(2, 2, 1)

        def forward(self, x):
            y = self.conv(x)
            return y.relu() + y.sigmoid()

    plan, _ = _groups(TwoUsers(), ember.randn(1, 2, 4, 4))
    assert any("not fused into conv:" in r and "output has 2 users" in r for r in plan.refusals), plan.refusals


def test_softmax_chain_is_one_reduction_group() -> None:
    fn = lambda x: (x * 2.0).softmax(dim=1) + 1.0  # noqa: E731
    plan = fuse(ember.trace(fn, ember.randn(4, 8)))
    assert len(plan.groups) == 1
    assert [n.op for n in plan.groups[0].nodes] == ["mul", "softmax", "add"]


def test_groups_are_in_dependency_order_and_cover_every_node() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(4 * 3 * 3, 5))
    plan, graph = _groups(model, ember.randn(2, 3, 8, 8))
    produced: set[str] = {v.name for v in graph.inputs}
    covered = 0
    for g in plan.groups:
        assert all(x in produced for x in g.inputs), g.name
        produced.update(o for n in g.nodes for o in n.outputs)
        covered += len(g.nodes)
    assert covered == len(graph.nodes)
    assert np.isfinite(len(plan.groups))
