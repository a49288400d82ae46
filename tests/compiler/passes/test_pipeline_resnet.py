"""The inference pipeline on ResNet-18 (1x3x224x224, eval mode): no batch norm is left, each
conv+bn+relu and each residual add+relu is one conv fusion group, kernel counts before and after are
printed, the arena is within 5% of the lower bound and at least 3x below the naive sum, and the optimized
graph computes what the traced one does."""

from __future__ import annotations

import ember
import numpy as np
import pytest
from ember.compiler.ir import interpret, verify
from ember.compiler.kernel.program import build_program
from ember.compiler.passes import optimize
from ember.compiler.passes.fuse import fuse, unfused
from ember.vision.models import resnet18
from passes_testing import check_no_overlap, program_lifetimes


def _model() -> ember.nn.Module:
    ember.manual_seed(0)
    model = resnet18()
    with ember.no_grad():
        for m in model.modules():  # non-trivial statistics, so a wrong fold shows in the numbers
            if isinstance(m, ember.nn.BatchNorm2d):
                c = m.running_mean.shape[0]
                m.running_mean.copy_(ember.randn(c) * 0.1)
                m.running_var.copy_(ember.rand(c) + 0.5)
                m.weight.copy_(ember.rand(c) + 0.5)
                m.bias.copy_(ember.randn(c) * 0.1)
    model.eval()
    return model


@pytest.mark.slow
@pytest.mark.parametrize("freeze", [False, True], ids=["live", "frozen"])
def test_resnet18_pipeline_fusion_and_memory(freeze: bool) -> None:
    graph = ember.trace(_model(), ember.randn(1, 3, 224, 224))
    out, report = optimize(graph, freeze=freeze)
    verify(out)
    assert sum(n.op.name == "batch_norm" for n in graph.nodes) == 20
    plan = fuse(out)
    conv_groups = [[n.op for n in g.nodes] for g in plan.groups if any(n.op == "conv" for n in g.nodes)]
    assert len(conv_groups) == 20
    # frozen: batch norms are folded into the weights (a bias add remains); live: fusion takes each
    # eval-mode batch norm into its conv's epilogue as a per-channel scale and bias
    bn = "add" if freeze else "batch_norm"
    if freeze:
        assert all(n.op.name != "batch_norm" for n in out.nodes)
    # the stem and the first conv of every block: conv + bn + relu; the second conv of every block:
    # conv + bn + residual add + relu; the three downsampling 1x1 convs: conv + bn
    assert conv_groups.count(["conv", bn, "relu"]) == 9
    assert conv_groups.count(["conv", bn, "add", "relu"]) == 8
    assert conv_groups.count(["conv", bn]) == 3
    outside = [n.op for g in plan.groups if not any(m.op == "conv" for m in g.nodes) for n in g.nodes]
    assert "relu" not in outside and "batch_norm" not in outside
    before_nodes, before_fused = unfused(graph).kernel_count, fuse(graph).kernel_count
    print(f"\nresnet18 ({'frozen' if freeze else 'live'}): {before_nodes} kernels one per node before the "
          f"pipeline ({before_fused} fused without it), {plan.kernel_count} after\n{report}")
    assert plan.kernel_count == 24
    names = [plan.names[id(v)] for v in out.output_values()]
    used = {x for g in plan.groups for x in g.inputs}
    params = [v.name for v in [*out.inputs, *out.constants] if v.kind != "input" and v.name in used]
    program = build_program("resnet18", plan.groups, ["x"], names, params)
    m = program.memory
    print(m.summary())
    assert m.arena_bytes <= 1.05 * m.lower_bound
    assert m.naive_bytes >= 3 * m.arena_bytes
    sizes = {n: -(-nb // 64) * 64 for n, (_, nb) in program.memory_plan.items()}
    offsets = {n: off for n, (off, _) in program.memory_plan.items()}
    check_no_overlap(offsets, sizes, program_lifetimes(program, plan.groups), m.inplace)


@pytest.mark.slow
def test_resnet18_optimized_graph_matches_the_traced_one() -> None:
    model = _model()
    x = ember.randn(1, 3, 64, 64)
    graph = ember.trace(model, x)
    with ember.no_grad():
        want = model(x).numpy()
    for freeze in (False, True):
        out, _ = optimize(graph, freeze=freeze)
        np.testing.assert_allclose(interpret(out, [x]), want, rtol=1e-4, atol=1e-4)
