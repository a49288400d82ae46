"""Pooling layers against torch 2.13: max (indices, ceil_mode, dilation, padding), average
(count_include_pad, ceil_mode, divisor_override), adaptive, LP, fractional (given samples) and
max-unpooling, 1d to 3d, in float32 and float64 with gradients; reprs; typed errors."""

from __future__ import annotations

import ember
import ember.nn as nn
import ember.nn.functional as F
import numpy as np
import pytest
import torch
from ember.runtime.errors import ArgumentError, ShapeError

RNG = np.random.default_rng(5)


def randn(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape)


POOL_CASES = [
    ("MaxPool1d", (3, 2, 1), {"ceil_mode": True}, (2, 3, 10)),
    ("MaxPool1d", (2,), {"dilation": 2, "return_indices": True}, (3, 9)),
    ("MaxPool2d", (2,), {}, (2, 3, 8, 9)),
    (
        "MaxPool2d",
        ((3, 2), (2, 1), 1),
        {"dilation": (1, 2), "ceil_mode": True, "return_indices": True},
        (2, 2, 7, 8),
    ),
    ("MaxPool3d", (2,), {"stride": 1, "padding": 1, "return_indices": True}, (1, 2, 4, 3, 5)),
    ("AvgPool1d", (3,), {"stride": 2, "padding": 1, "count_include_pad": False}, (2, 3, 10)),
    ("AvgPool2d", (3, 2, 1), {"ceil_mode": True}, (2, 3, 8, 7)),
    ("AvgPool2d", ((2, 3),), {"divisor_override": 4}, (3, 6, 7)),
    ("AvgPool3d", (2, 2, 1), {"ceil_mode": True, "count_include_pad": False}, (1, 2, 5, 4, 3)),
    ("AdaptiveAvgPool1d", (4,), {}, (2, 3, 10)),
    ("AdaptiveAvgPool2d", ((3, 5),), {}, (2, 3, 7, 10)),
    ("AdaptiveAvgPool2d", (1,), {}, (2, 3, 4, 4)),
    ("AdaptiveAvgPool3d", ((2, None, 3),), {}, (1, 2, 5, 4, 7)),
    ("AdaptiveMaxPool1d", (3, True), {}, (2, 3, 10)),
    ("AdaptiveMaxPool2d", ((3, 4),), {"return_indices": True}, (2, 3, 7, 10)),
    ("AdaptiveMaxPool3d", (2,), {}, (1, 2, 5, 4, 7)),
    ("LPPool1d", (2, 3), {}, (2, 3, 10)),
    ("LPPool2d", (1.5, (2, 3)), {"stride": 2, "ceil_mode": True}, (2, 3, 7, 8)),
]


@pytest.mark.parametrize("cls, args, kwargs, shape", POOL_CASES)
def test_pooling_modules_match_torch(compare, cls, args, kwargs, shape) -> None:
    e, t = getattr(nn, cls)(*args, **kwargs), getattr(torch.nn, cls)(*args, **kwargs)
    assert repr(e) == repr(t)
    x = randn(*shape)
    if cls.startswith("LPPool"):
        x = np.abs(x) + 0.1  # fractional powers of negatives are NaN in both
    compare(e, t, x, rtol=1e-5, atol=1e-6)


def test_max_pool_indices_equal_torch_and_unpool_inverts() -> None:
    x = randn(2, 3, 9, 8)
    tv, ti = torch.nn.functional.max_pool2d(torch.tensor(x), 3, 2, 1, return_indices=True)
    ev, ei = F.max_pool2d(ember.tensor(x), 3, 2, 1, return_indices=True)
    np.testing.assert_array_equal(ei.numpy(), ti.numpy())
    for cls, pool, shape in [
        ("MaxUnpool1d", 2, (2, 3, 8)),
        ("MaxUnpool2d", 2, (2, 3, 6, 8)),
        ("MaxUnpool3d", 2, (1, 2, 4, 6, 4)),
    ]:
        nd = len(shape) - 2
        xs = randn(*shape)
        tv, ti = getattr(torch.nn.functional, f"max_pool{nd}d")(torch.tensor(xs), pool, return_indices=True)
        e_un, t_un = getattr(nn, cls)(pool), getattr(torch.nn, cls)(pool)
        assert repr(e_un) == repr(t_un)
        ev = ember.tensor(tv.numpy(), requires_grad=True)
        got = e_un(ev, ember.tensor(ti.numpy()))
        want = t_un(tv, ti)
        np.testing.assert_array_equal(got.detach().numpy(), want.numpy())
        g = randn(*want.shape)
        got.backward(ember.tensor(g))
        tvg = tv.clone().requires_grad_()
        t_un(tvg, ti).backward(torch.tensor(g))
        np.testing.assert_allclose(ev.grad.numpy(), tvg.grad.numpy())


def test_max_unpool_output_size() -> None:
    x = randn(1, 1, 5, 5)
    tv, ti = torch.nn.functional.max_pool2d(torch.tensor(x), 2, return_indices=True)
    got = F.max_unpool2d(ember.tensor(tv.numpy()), ember.tensor(ti.numpy()), 2, output_size=(1, 1, 5, 5))
    want = torch.nn.functional.max_unpool2d(tv, ti, 2, output_size=(1, 1, 5, 5))
    np.testing.assert_array_equal(got.numpy(), want.numpy())
    with pytest.raises(ShapeError, match="invalid output_size"):
        F.max_unpool2d(ember.tensor(tv.numpy()), ember.tensor(ti.numpy()), 2, output_size=(9, 9))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fractional_max_pool_with_given_samples_matches_torch(dtype) -> None:
    x = randn(2, 3, 9, 10).astype(dtype)
    samples = RNG.random((2, 3, 2)).astype(dtype)
    for kwargs in ({"output_size": (5, 4)}, {"output_ratio": 0.5}):
        t = torch.nn.FractionalMaxPool2d(
            3, return_indices=True, _random_samples=torch.tensor(samples), **kwargs
        )
        e = nn.FractionalMaxPool2d(3, return_indices=True, _random_samples=ember.tensor(samples), **kwargs)
        tx, ex = torch.tensor(x, requires_grad=True), ember.tensor(x, requires_grad=True)
        (tv, ti), (ev, ei) = t(tx), e(ex)
        np.testing.assert_array_equal(ev.detach().numpy(), tv.detach().numpy())
        np.testing.assert_array_equal(ei.numpy(), ti.numpy())
        g = randn(*tv.shape).astype(dtype)
        tv.backward(torch.tensor(g))
        ev.backward(ember.tensor(g))
        np.testing.assert_allclose(ex.grad.numpy(), tx.grad.numpy(), rtol=1e-6)  # overlapping windows: sum order


def test_fractional_max_pool_random_windows_properties() -> None:
    ember.manual_seed(0)
    x = ember.tensor(randn(2, 3, 12, 11))
    v, i = nn.FractionalMaxPool2d(2, output_ratio=(0.5, 0.7), return_indices=True)(x)
    assert tuple(v.shape) == (2, 3, 6, 7)
    flat = x.numpy().reshape(2, 3, -1)
    np.testing.assert_array_equal(
        np.take_along_axis(flat, i.numpy().reshape(2, 3, -1), 2).reshape(v.shape), v.numpy()
    )
    assert v.numpy().max() <= x.numpy().max()
    assert repr(nn.FractionalMaxPool2d(2, output_size=3)) == "FractionalMaxPool2d()"


def test_global_average_pool_is_the_mean() -> None:
    x = randn(2, 4, 5, 7)
    got = nn.AdaptiveAvgPool2d((1, 1))(ember.tensor(x))
    np.testing.assert_allclose(got.numpy()[..., 0, 0], x.mean(axis=(2, 3)), rtol=1e-12)


def test_reprs() -> None:
    assert (
        repr(nn.MaxPool2d(2)) == "MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False)"
    )
    assert repr(nn.AvgPool1d(3)) == repr(torch.nn.AvgPool1d(3))
    assert repr(nn.AvgPool2d(2, padding=1)) == repr(torch.nn.AvgPool2d(2, padding=1))
    assert repr(nn.AdaptiveMaxPool2d((2, None))) == repr(torch.nn.AdaptiveMaxPool2d((2, None)))


def test_pooling_errors() -> None:
    with pytest.raises(ArgumentError, match="pad should be at most half of effective kernel size"):
        nn.MaxPool2d(2, padding=2)(ember.zeros(1, 1, 6, 6))
    with pytest.raises(ShapeError, match=r"Given input size: \(1x2x2\). Calculated output size: \(1x0x0\)"):
        nn.MaxPool2d(3)(ember.zeros(1, 1, 2, 2))
    with pytest.raises(ShapeError, match="3D or 4D"):
        nn.MaxPool2d(2)(ember.zeros(4, 4))
    with pytest.raises(ShapeError, match="2D or 3D"):
        nn.AvgPool1d(2)(ember.zeros(1, 1, 4, 4))
    with pytest.raises(ArgumentError, match="either an output size, or a pooling ratio"):
        nn.FractionalMaxPool2d(2)
    with pytest.raises(ShapeError, match="too large"):
        F.fractional_max_pool2d(ember.zeros(1, 1, 4, 4), 3, output_size=3)


def test_max_pool_propagates_nan_like_torch() -> None:
    x = randn(1, 2, 6, 6)
    x[0, 0, 1, 1] = x[0, 0, 0, 1] = x[0, 1, 4, 5] = np.nan
    tv, ti = torch.nn.functional.max_pool2d(torch.tensor(x), 3, 2, 1, return_indices=True)
    ev, ei = F.max_pool2d(ember.tensor(x), 3, 2, 1, return_indices=True)
    np.testing.assert_array_equal(ev.numpy(), tv.numpy())  # NaNs in the same places
    np.testing.assert_array_equal(ei.numpy(), ti.numpy())
