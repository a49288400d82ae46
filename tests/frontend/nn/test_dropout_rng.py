"""Eager dropout on the counter-based generator: one seed drawn per call from ember's generator, the mask
from ``dropout_keep_mask`` under that seed, PyTorch's scaling and edge cases, gradients against torch
(same mask) and float64 finite differences."""

from __future__ import annotations

import math

import ember
import numpy as np
import pytest
import torch
from ember import nn
from ember.compiler.ops import REGISTRY
from ember.dispatch import apply
from ember.nn import functional as F

KEEP = REGISTRY["dropout_keep_mask"]


def _expected_mask(seed: int, shape: tuple[int, ...], p: float) -> np.ndarray:
    """The mask of the first dropout after ``manual_seed(seed)``: its seed is the generator's first draw."""
    ember.manual_seed(seed)
    s = ember.random.draw_seed()
    return apply(KEEP, (s,), {"shape": shape, "p": p}).numpy()


def test_dropout_uses_one_seed_per_call_and_the_keep_mask_op() -> None:
    x = ember.randn(6, 40)
    want = _expected_mask(11, (6, 40), 0.25)
    ember.manual_seed(11)
    out = F.dropout(x, 0.25).numpy()
    np.testing.assert_array_equal(out, np.where(want, x.numpy() * np.float32(1 / 0.75), 0.0))
    second = F.dropout(x, 0.25).numpy()  # the next call draws the next seed: a different mask
    assert not np.array_equal(second != 0, out != 0)
    ember.manual_seed(11)
    np.testing.assert_array_equal(F.dropout(x, 0.25).numpy(), out)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_rate_within_a_binomial_bound_and_scaling(p: float) -> None:
    ember.manual_seed(3)
    n = 50_000
    out = nn.Dropout(p)(ember.ones(n)).numpy()
    kept = out != 0
    assert abs(int(kept.sum()) - n * (1 - p)) < 5 * math.sqrt(n * p * (1 - p))
    np.testing.assert_array_equal(out[kept], np.float32(1.0) * np.float32(1 / (1 - p)))


def test_p0_is_the_identity_and_p1_zeroes_everything() -> None:
    x = ember.randn(4, 5, requires_grad=True)
    assert F.dropout(x, 0.0) is x
    out = F.dropout(x, 1.0)
    np.testing.assert_array_equal(out.detach().numpy(), np.zeros((4, 5), np.float32))
    out.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.zeros((4, 5), np.float32))
    assert nn.Dropout(0.7).eval()(x) is x


def test_gradient_equals_torch_with_the_same_mask() -> None:
    p = 0.4
    x = ember.randn(7, 9, requires_grad=True)
    g = ember.randn(7, 9)
    mask = _expected_mask(21, (7, 9), p)
    ember.manual_seed(21)
    out = F.dropout(x, p)
    out.backward(g)
    tx = torch.from_numpy(x.detach().numpy().copy()).requires_grad_(True)
    tout = tx * torch.from_numpy(mask).to(torch.float32) / (1 - p)
    tout.backward(torch.from_numpy(g.numpy()))
    np.testing.assert_allclose(out.detach().numpy(), tout.detach().numpy(), rtol=1e-6)
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-6)


def test_float64_gradient_against_finite_differences() -> None:
    p, seed = 0.3, 8
    x0 = np.random.default_rng(0).standard_normal((3, 5))
    w = np.random.default_rng(1).standard_normal((3, 5))

    def loss(arr: np.ndarray, grad: bool = False):
        x = ember.tensor(arr, dtype=ember.float64, requires_grad=grad)
        ember.manual_seed(seed)  # the same mask on every evaluation
        out = (F.dropout(x, p) * ember.tensor(w)).sum()
        return out, x

    val, x = loss(x0, grad=True)
    val.backward()
    eps = 1e-6
    fd = np.zeros_like(x0)
    for i in np.ndindex(x0.shape):
        hi, lo = x0.copy(), x0.copy()
        hi[i] += eps
        lo[i] -= eps
        fd[i] = (loss(hi)[0].item() - loss(lo)[0].item()) / (2 * eps)
    assert x.grad.dtype == ember.float64
    np.testing.assert_allclose(x.grad.numpy(), fd, rtol=1e-6, atol=1e-8)


def test_feature_dropout_masks_whole_channels_from_the_same_stream() -> None:
    x = ember.randn(3, 4, 5, 6)
    want = _expected_mask(4, (3, 4, 1, 1), 0.5)
    ember.manual_seed(4)
    out = nn.Dropout2d(0.5)(x).numpy()
    np.testing.assert_array_equal(out, np.where(want, x.numpy() * np.float32(2.0), 0.0))
    unbatched = _expected_mask(6, (4, 1, 1), 0.5)
    ember.manual_seed(6)
    out = F.dropout2d(x[0], 0.5).numpy()
    np.testing.assert_array_equal(out, np.where(unbatched, x[0].numpy() * np.float32(2.0), 0.0))
    want1 = _expected_mask(2, (3, 4, 1), 0.5)
    ember.manual_seed(2)
    out = nn.Dropout1d(0.5)(x[:, :, 0]).numpy()
    np.testing.assert_array_equal(out, np.where(want1, x[:, :, 0].numpy() * np.float32(2.0), 0.0))


def test_inplace_dropout_writes_the_masked_values_into_the_input() -> None:
    x = ember.randn(5, 8)
    before = x.numpy().copy()
    want = _expected_mask(13, (5, 8), 0.5)
    ember.manual_seed(13)
    out = F.dropout(x, 0.5, inplace=True)
    assert out is x
    np.testing.assert_array_equal(x.numpy(), np.where(want, before * np.float32(2.0), 0.0))
