"""affine_batch_norm: golden text, equivalence and a check against torch; training-mode batch norms
(statistics computed from the input) stay; in a compiled model the scale and shift become prep work."""

from __future__ import annotations

import ember
import numpy as np
import torch
from ember.compiler.ir import interpret, parse, print_graph, verify
from ember.compiler.passes.affine_batch_norm import affine_batch_norm
from passes_testing import assert_equivalent, check_golden, random_data

BEFORE = """graph @f(
    %x: float32[2,4,5,5] input,
    %mean: float32[4] buffer,
    %var: float32[4] buffer,
    %g: float32[4] parameter,
    %b: float32[4] parameter
) {
  %0 = batch_norm(%x, %mean, %var, %g, %b) {eps=1e-05} : float32[2,4,5,5]
  %1 = relu(%0) : float32[2,4,5,5]
  return %1
}
"""

COMPUTED = """graph @f(
    %x: float32[3,4] input,
    %g: float32[4] parameter,
    %b: float32[4] parameter
) {
  %0 = sum(%x) {dim=(0,), dtype=none, keepdim=false} : float32[4]
  %1 = div(%0, 3.0) {rounding_mode=none} : float32[4]
  %2 = mul(%x, %x) : float32[3,4]
  %3 = sum(%2) {dim=(0,), dtype=none, keepdim=false} : float32[4]
  %4 = batch_norm(%x, %1, %3, %g, %b) {eps=1e-05} : float32[3,4]
  return %4
}
"""


def test_affine_batch_norm_golden_equivalence_and_torch() -> None:
    g = verify(parse(BEFORE))
    out, changed, stats = affine_batch_norm(g)
    verify(out)
    assert changed and stats["batch_norms"] == 1
    assert all(n.op.name != "batch_norm" for n in out.nodes)
    check_golden("affine_batch_norm", out)
    assert_equivalent(g, out, rtol=1e-5, atol=1e-5)
    assert print_graph(g) == BEFORE
    (x,), p = random_data(g, seed=5)
    t = {k: torch.from_numpy(v) for k, v in p.items()}
    want = torch.relu(torch.nn.functional.batch_norm(torch.from_numpy(x), t["mean"], t["var"], t["g"], t["b"],
                                                     training=False, eps=1e-5))
    np.testing.assert_allclose(interpret(out, [x], p), want.numpy(), rtol=1e-5, atol=1e-5)


def test_batch_statistics_are_left_alone() -> None:
    g = verify(parse(COMPUTED))
    out, changed, _ = affine_batch_norm(g)
    assert not changed and out is g


def test_compiled_model_prepares_scale_and_shift() -> None:
    nn = ember.nn
    ember.manual_seed(2)
    m = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(),
                      nn.Linear(8 * 36, 6), nn.BatchNorm1d(6)).eval()
    with ember.no_grad():
        for bn in (m[1], m[5]):
            c = bn.running_mean.shape[0]
            bn.running_mean.copy_(ember.randn(c))
            bn.running_var.copy_(ember.rand(c) + 0.5)
            bn.weight.copy_(ember.randn(c))
        x = ember.randn(2, 3, 6, 6)
        cm = ember.compile(m)
        np.testing.assert_allclose(cm(x).numpy(), m(x).numpy(), rtol=1e-4, atol=1e-5)
        result = cm.compiled_for(x).result
        assert all(n.op.name != "batch_norm" for n in result.graph.nodes)
        assert sum(n.op.name == "rsqrt" for n in result.prep.graph.nodes) == 2
        assert not any(n.op.name == "rsqrt" for n in result.graph.nodes)
