"""hoist_parameter_work: the per-call graph and the prep graph (golden text), equivalence with the
original on random data, what stays per call, and ember.compile following weights that change."""

# ruff: noqa: E501  (golden IR text: one node per line, as the printer writes it)

from __future__ import annotations

import ember
import numpy as np
import torch
from ember import nn
from ember.compiler.ir import interpret, parse, print_graph, verify
from ember.compiler.ir.graph import flatten_tree
from ember.compiler.passes.hoist_parameters import hoist_parameter_work
from passes_testing import random_data

BEFORE = """graph @f(
    %x: float32[2,8,1,1] input,
    %w: float32[6,8,3,3] parameter,
    %b: float32[6] parameter
) {
  %0 = getitem(%w) {index=(("slice", none, none, none), ("slice", none, none, none), ("slice", 1, 2, none), ("slice", 1, 2, none))} : float32[6,8,1,1]
  %1 = clone(%0) : float32[6,8,1,1]
  %2 = conv(%x, %1) {dilation=(1, 1), groups=1, padding=(0, 0, 0, 0), stride=(1, 1)} : float32[2,6,1,1]
  %3 = reshape(%b) {shape=(6, 1, 1)} : float32[6,1,1]
  %4 = add(%2, %3) : float32[2,6,1,1]
  return %4
}
"""

MAIN = """graph @f(
    %x: float32[2,8,1,1] input,
    %w: float32[6,8,3,3] parameter,
    %b: float32[6] parameter,
    %prep0.w: float32[6,8,1,1] parameter
) {
  %0 = conv(%x, %prep0.w) {dilation=(1, 1), groups=1, padding=(0, 0, 0, 0), stride=(1, 1)} : float32[2,6,1,1]
  %1 = reshape(%b) {shape=(6, 1, 1)} : float32[6,1,1]
  %2 = add(%0, %1) : float32[2,6,1,1]
  return %2
}
"""

PREP = """graph @f.prep(
    %w: float32[6,8,3,3] parameter
) {
  %0 = getitem(%w) {index=(("slice", none, none, none), ("slice", none, none, none), ("slice", 1, 2, none), ("slice", 1, 2, none))} : float32[6,8,1,1]
  %1 = clone(%0) : float32[6,8,1,1]
  return (%1,)
}
"""


def test_hoist_golden_and_equivalence() -> None:
    g = verify(parse(BEFORE))
    main, prep = hoist_parameter_work(g)
    assert prep is not None
    verify(main)
    verify(prep.graph)
    # the bias reshape is a view the kernel reads for free: it stays per call
    assert print_graph(main, locations="none") == MAIN
    assert print_graph(prep.graph, locations="none") == PREP
    assert prep.sources == ["w"] and prep.names == ["prep0.w"]
    inputs, params = random_data(g, seed=3)
    want = interpret(g, inputs, params)
    prepared = prep.run(params)
    assert prepared["prep0.w"].flags.c_contiguous
    got = interpret(main, inputs, {**params, **prepared})
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_nothing_to_hoist() -> None:
    g = verify(parse("""graph @f(%x: float32[4,3] input, %w: float32[5,3] parameter, %b: float32[5] parameter) {
  %0 = permute(%w) {dims=(1, 0)} : float32[3,5]
  %1 = matmul(%x, %0) : float32[4,5]
  %2 = add(%1, %b) : float32[4,5]
  return %2
}
"""))
    main, prep = hoist_parameter_work(g)
    assert prep is None and main is g


def _model() -> nn.Module:
    # a ResNet-like tail on tiny planes: 3x3 convs on 2x2 and 1x1 planes, so weight slices are hoisted
    return nn.Sequential(nn.Conv2d(4, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
                         nn.Conv2d(16, 16, 3, padding=1), nn.Flatten(), nn.Linear(16, 3)).eval()


def _torch_twin(m: nn.Module) -> torch.nn.Module:
    t = torch.nn.Sequential(torch.nn.Conv2d(4, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
                            torch.nn.Conv2d(8, 16, 3, stride=2, padding=1), torch.nn.ReLU(),
                            torch.nn.Conv2d(16, 16, 3, padding=1), torch.nn.Flatten(),
                            torch.nn.Linear(16, 3)).eval()
    t.load_state_dict({k: torch.from_numpy(np.array(v.numpy())) for k, v in m.state_dict().items()})
    return t


def test_compiled_model_follows_changed_weights() -> None:
    ember.manual_seed(0)
    m = _model()
    x = ember.randn(2, 4, 2, 2)
    with ember.no_grad():
        cm = ember.compile(m)
        first = cm(x).numpy()
        prep = cm.compiled_for(x).result.prep
        # the batch norm's scale and shift (affine_batch_norm), the 2x2 -> 1x1 and the 1x1 conv's weights
        assert prep is not None and len(prep.names) == 4
        assert {"1.running_mean", "1.running_var", "1.weight", "1.bias"} <= set(prep.sources)
        np.testing.assert_allclose(first, _torch_twin(m)(torch.from_numpy(x.numpy())).detach().numpy(), rtol=1e-4,
                                   atol=1e-5)
        m[5].weight.mul_(-2.0)                 # in place: the version counter moves
        np.testing.assert_allclose(cm(x).numpy(), m(x).numpy(), rtol=1e-4, atol=1e-5)
        m[1].running_var.mul_(3.0)             # a buffer the batch norm's prepared scale reads
        m[1].running_mean.add_(0.5)
        np.testing.assert_allclose(cm(x).numpy(), m(x).numpy(), rtol=1e-4, atol=1e-5)
        m[3].weight.data = ember.randn(16, 8, 3, 3)  # rebound
        np.testing.assert_allclose(cm(x).numpy(), m(x).numpy(), rtol=1e-4, atol=1e-5)
        other = _model()
        m.load_state_dict(other.state_dict())
        got = cm(x).numpy()
        np.testing.assert_allclose(got, other(x).numpy(), rtol=1e-4, atol=1e-5)
        assert not np.allclose(got, first)


def test_training_step_updates_reach_the_compiled_model() -> None:
    ember.manual_seed(1)
    m = _model()
    x, target = ember.randn(2, 4, 2, 2), ember.tensor([0, 2])
    cm = ember.compile(m)
    opt = ember.optim.SGD(m.parameters(), lr=0.5)
    for _ in range(2):
        with ember.no_grad():
            np.testing.assert_allclose(cm(x).numpy(), m(x).numpy(), rtol=1e-4, atol=1e-5)
        opt.zero_grad()
        ember.nn.functional.cross_entropy(m(x), target).backward()
        opt.step()
    with ember.no_grad():
        np.testing.assert_allclose(cm(x).numpy(), m(x).numpy(), rtol=1e-4, atol=1e-5)


def test_prepared_weights_in_export(tmp_path) -> None:
    from ember.runtime import load

    ember.manual_seed(2)
    m = _model()
    x = ember.randn(2, 4, 2, 2)
    path = ember.export(m, x, str(tmp_path / "tail.so"))
    got = flatten_tree(load(path)(x.numpy()))[0]
    with ember.no_grad():
        np.testing.assert_allclose(np.asarray(got), m(x).numpy(), rtol=1e-4, atol=1e-5)


def test_report_shows_the_split() -> None:
    from ember.compiler.report import pass_diffs
    from ember.tracing import trace

    m = _model()
    diffs = dict(pass_diffs(trace(m, ember.randn(1, 4, 2, 2)), hoist=True))
    assert any(line.startswith("+  %") and "getitem" in line for line in diffs["cut_conv_taps"])
    split = diffs["hoist_parameter_work"]
    assert "prep graph (run when the weights change):" in split
    assert any("prep2.3.weight" in line and "parameter" in line for line in split)
    assert any(line.startswith("+  %") and "rsqrt" in line for line in diffs["affine_batch_norm"])
