"""Train-mode dropout inside compiled graphs: the tracer turns each dropout into the counter-based mask op
with a seed graph input, the runtime feeds fresh seeds from ember's generator per call, so compiled
outputs, gradients and loss curves equal eager ember's under the same ``manual_seed``, and the compiled
backward recomputes masks from the seeds."""

from __future__ import annotations

import copy
from typing import Any

import ember
import numpy as np
import pytest
from ember import nn
from ember.nn import functional as F


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(12, 48), nn.ReLU(), nn.Dropout(0.5), nn.Linear(48, 24),
                         nn.Dropout(0.2, inplace=True), nn.Tanh(), nn.Linear(24, 5))


def _conv_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Dropout2d(0.3), nn.Flatten(),
                         nn.Linear(8 * 6 * 6, 4), nn.Dropout(0.4))


def _grads(model: nn.Module) -> dict[str, np.ndarray]:
    return {n: p.grad.numpy().copy() for n, p in model.named_parameters()}


@pytest.mark.parametrize("target", ["llvm", "interpret"])
def test_train_mode_forward_equals_eager_under_the_same_seed(target: str) -> None:
    ember.manual_seed(0)
    model, x = _conv_net(), ember.randn(2, 3, 6, 6)
    cm = ember.compile(model, target=target)
    with ember.no_grad():
        ember.manual_seed(5)
        want = [model(x).numpy() for _ in range(2)]
        ember.manual_seed(5)
        got = [cm(x).numpy() for _ in range(2)]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
        assert np.array_equal(g == 0, w == 0)  # the same elements dropped
    assert not np.array_equal(got[0] == 0, got[1] == 0)  # each call draws fresh seeds


def test_functional_dropout_in_a_compiled_function_matches_eager_bit_for_bit() -> None:
    def f(x):
        return F.dropout(x, 0.3), F.dropout(x * 2, 0.6)

    x = ember.randn(64, 33)
    cm = ember.compile(f)
    with ember.no_grad():
        ember.manual_seed(17)
        want = f(x)
        ember.manual_seed(17)
        got = cm(x)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g.numpy(), w.numpy())
    graph = ember.trace(f, x)
    assert [v.name for v in graph.user_inputs] == ["x", "rng_seed", "rng_seed_1"]


def test_mlp_compiled_gradients_equal_eager_and_the_backward_recomputes_masks() -> None:
    ember.manual_seed(1)
    model = _mlp()
    eager = copy.deepcopy(model)
    x, y = ember.randn(16, 12), ember.randint(0, 5, (16,))
    cm = ember.compile(model)
    ember.manual_seed(42)
    loss = F.cross_entropy(cm(x), y)
    loss.backward()
    ember.manual_seed(42)
    e_loss = F.cross_entropy(eager(x), y)
    e_loss.backward()
    np.testing.assert_allclose(loss.item(), e_loss.item(), rtol=1e-5)
    want = _grads(eager)
    for n, g in _grads(model).items():
        np.testing.assert_allclose(g, want[n], rtol=1e-4, atol=1e-6, err_msg=n)
    entry = cm.training_for(x)
    assert entry.num_seeds == 2
    assert [n.op.name for n in entry.ad.recomputed].count("philox_bits") == 2  # from the seeds, not saved
    assert all(v.dtype.is_floating_point for v in entry.ad.saved)  # no mask among the saved values


def _curves(model: nn.Module, x: ember.Tensor, y: ember.Tensor, steps: int = 20) -> tuple[list[float], ...]:
    eager = copy.deepcopy(model)
    cm = ember.compile(model)
    curves = []
    for net, runner in ((model, cm), (eager, eager)):
        opt = ember.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
        ember.manual_seed(123)
        curve = []
        for _ in range(steps):
            opt.zero_grad()
            loss = F.cross_entropy(runner(x), y)
            loss.backward()
            opt.step()
            curve.append(loss.item())
        curves.append(curve)
    return tuple(curves)


def test_twenty_sgd_steps_with_dropout_follow_the_eager_loss_curve() -> None:
    ember.manual_seed(2)
    model = _mlp()
    curve, e_curve = _curves(model, ember.randn(32, 12), ember.randint(0, 5, (32,)))
    np.testing.assert_allclose(curve, e_curve, rtol=1e-4)
    assert len(set(np.round(curve, 6))) == 20 and curve[-1] < curve[0]


def test_conv_net_with_feature_dropout_compiled_gradients_equal_eager() -> None:
    ember.manual_seed(3)
    model = _conv_net()
    eager = copy.deepcopy(model)
    x, y = ember.randn(4, 3, 6, 6), ember.randint(0, 4, (4,))
    ember.manual_seed(9)
    F.cross_entropy(ember.compile(model)(x), y).backward()
    ember.manual_seed(9)
    F.cross_entropy(eager(x), y).backward()
    want = _grads(eager)
    for n, g in _grads(model).items():
        np.testing.assert_allclose(g, want[n], rtol=1e-4, atol=1e-6, err_msg=n)


def _close_to_scale(got: np.ndarray, want: np.ndarray, name: str) -> None:
    """rtol 1e-4 with an absolute floor of 1e-4 of the largest gradient: float32 sums in a different
    order leave near-zero entries without meaningful relative precision."""
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * float(np.abs(want).max()), err_msg=name)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["alexnet", "vgg11_bn"])
def test_dropout_zoo_models_in_train_mode_compiled_gradients_equal_eager(name: str) -> None:
    from ember.vision import models

    # seed 9 left a pre-ReLU value of vgg11_bn at 7e-8: a compiled forward summing in another order
    # (direct convolutions) flips its sign and with it a whole gradient path; the test is about the
    # backward, not about such ties
    ember.manual_seed(10)
    model: Any = getattr(models, name)(num_classes=10).train()
    eager = copy.deepcopy(model)
    x, y = ember.randn(2, 3, 64, 64), ember.tensor([1, 3])
    ember.manual_seed(31)
    F.cross_entropy(ember.compile(model)(x), y).backward()
    ember.manual_seed(31)
    F.cross_entropy(eager(x), y).backward()
    want = _grads(eager)
    top = max(float(np.abs(w).max()) for w in want.values())
    for n, g in _grads(model).items():
        if float(np.abs(want[n]).max()) < 1e-5 * top:
            # a conv bias in front of a train-mode batch norm: its gradient is zero in exact arithmetic,
            # and both sides hold float32 rounding noise there
            assert float(np.abs(g).max()) < 1e-5 * top, n
            continue
        _close_to_scale(g, want[n], n)


def test_bisector_feeds_seed_inputs_and_checks_the_mask_kernels() -> None:
    ember.manual_seed(4)
    cm = ember.compile(nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.Linear(8, 2)))
    with ember.no_grad():
        report = cm.bisect(ember.randn(3, 4))
    assert report.ok, report.summary()
