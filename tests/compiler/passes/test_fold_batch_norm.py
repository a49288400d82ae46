"""fold_batch_norm: golden text, equivalence for conv 1d/2d/3d, transposed conv (groups 1 and 2) and
linear, with and without bias, a check against torch, and the recorded refusals."""

from __future__ import annotations

import ember
import numpy as np
import pytest
import torch
from ember.compiler.ir import interpret, parse, print_graph, verify
from ember.compiler.passes import fold_batch_norm
from passes_testing import assert_equivalent, check_golden, random_data

nn = ember.nn

BEFORE = """graph @f(
    %x: float32[1,3,6,6] input,
    %w: float32[4,3,3,3] parameter,
    %mean: float32[4] buffer,
    %var: float32[4] buffer,
    %g: float32[4] parameter,
    %b: float32[4] parameter
) {
  %0 = conv(%x, %w) {dilation=(1, 1), groups=1, padding=(0, 0, 0, 0), stride=(1, 1)} : float32[1,4,4,4]
  %1 = batch_norm(%0, %mean, %var, %g, %b) {eps=1e-05} : float32[1,4,4,4]
  %2 = relu(%1) : float32[1,4,4,4]
  return %2
}
"""


def test_fold_batch_norm_golden_equivalence_and_torch() -> None:
    g = verify(parse(BEFORE))
    out, changed, stats = fold_batch_norm(g)
    verify(out)
    assert changed and stats["folded_into_conv"] == 1 and stats["refused"] == 0
    assert all(n.op.name != "batch_norm" for n in out.nodes)
    check_golden("fold_batch_norm", out)
    assert_equivalent(g, out, rtol=1e-5, atol=1e-5)
    assert print_graph(g) == BEFORE
    (x,), p = random_data(g, seed=3)
    t = {k: torch.from_numpy(v) for k, v in p.items()}
    want = torch.relu(torch.nn.functional.batch_norm(
        torch.nn.functional.conv2d(torch.from_numpy(x), t["w"]), t["mean"], t["var"], t["g"], t["b"],
        training=False, eps=1e-5))
    np.testing.assert_allclose(interpret(out, [x], p), want.numpy(), rtol=1e-5, atol=1e-5)


def _randomize_bn(model: nn.Module) -> None:
    ember.manual_seed(7)
    with ember.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)):
                c = m.running_mean.shape[0]
                m.running_mean.copy_(ember.randn(c))
                m.running_var.copy_(ember.rand(c) + 0.5)
                m.weight.copy_(ember.randn(c))
                m.bias.copy_(ember.randn(c))


CASES = {
    "conv1d": (lambda bias: nn.Sequential(nn.Conv1d(3, 5, 3, bias=bias), nn.BatchNorm1d(5)), (2, 3, 9)),
    "conv2d_groups": (lambda bias: nn.Sequential(nn.Conv2d(4, 6, 3, groups=2, bias=bias), nn.BatchNorm2d(6),
                                                 nn.ReLU()), (2, 4, 7, 7)),
    "conv3d": (lambda bias: nn.Sequential(nn.Conv3d(2, 3, 2, bias=bias), nn.BatchNorm3d(3)), (1, 2, 4, 4, 4)),
    "conv_transpose": (lambda bias: nn.Sequential(nn.ConvTranspose2d(3, 4, 3, stride=2, bias=bias),
                                                  nn.BatchNorm2d(4)), (1, 3, 5, 5)),
    "conv_transpose_groups": (lambda bias: nn.Sequential(nn.ConvTranspose2d(4, 6, 3, groups=2, bias=bias),
                                                         nn.BatchNorm2d(6)), (2, 4, 5, 5)),
    "linear": (lambda bias: nn.Sequential(nn.Linear(6, 5, bias=bias), nn.BatchNorm1d(5), nn.ReLU()), (4, 6)),
}


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("case", sorted(CASES))
def test_fold_batch_norm_layers(case: str, bias: bool) -> None:
    build, shape = CASES[case]
    model = build(bias)
    _randomize_bn(model)
    model.eval()
    x = ember.randn(*shape)
    g = ember.trace(model, x)
    out, changed, stats = fold_batch_norm(g)
    verify(out)
    layer = "matmul" if case == "linear" else ("conv_transpose" if "transpose" in case else "conv")
    assert changed and stats[f"folded_into_{layer}"] == 1
    assert all(n.op.name != "batch_norm" for n in out.nodes)
    with ember.no_grad():
        want = model(x).numpy()
    np.testing.assert_allclose(interpret(out, [x]), want, rtol=1e-4, atol=1e-5)


def test_refusals_are_recorded() -> None:
    g = verify(parse("""graph @f(
    %x: float32[1,3,6,6] input,
    %w: float32[4,3,3,3] parameter,
    %mean: float32[4] buffer,
    %var: float32[4] buffer,
    %g: float32[4] parameter,
    %b: float32[4] parameter
) {
  %0 = conv(%x, %w) {dilation=(1, 1), groups=1, padding=(0, 0, 0, 0), stride=(1, 1)} : float32[1,4,4,4]
  %1 = batch_norm(%0, %mean, %var, %g, %b) {eps=1e-05} : float32[1,4,4,4]
  %2 = batch_norm(%1, %mean, %var, %g, %b) {eps=1e-05} : float32[1,4,4,4]
  %3 = conv(%x, %w) {dilation=(1, 1), groups=1, padding=(0, 0, 0, 0), stride=(1, 1)} : float32[1,4,4,4]
  %4 = batch_norm(%3, %mean, %var, %g, %b) {eps=1e-05} : float32[1,4,4,4]
  %5 = exp(%3) : float32[1,4,4,4]
  return (%0, %2, %4, %5)
}
"""))
    out, changed, stats = fold_batch_norm(g)
    assert not changed and out is g
    assert stats["reasons"] == ["batch_norm not folded into conv: conv output is a graph output",
                                "batch_norm not folded: its input is not a conv, conv_transpose or linear",
                                "batch_norm not folded into conv: conv output has 2 users"]


def test_training_mode_statistics_are_not_folded() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, track_running_stats=False))
    model.train()
    g = ember.trace(model, ember.randn(2, 3, 6, 6))
    out, changed, stats = fold_batch_norm(g)
    assert not changed
    assert stats["reasons"] == ["batch_norm not folded: its statistics are computed (training mode)"]
