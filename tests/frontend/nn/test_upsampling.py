"""Upsample / interpolate in every mode, UpsamplingNearest2d / UpsamplingBilinear2d and PixelShuffle /
PixelUnshuffle against torch 2.13 (float32 and float64, with gradients); reprs; typed errors."""

from __future__ import annotations

import ember
import ember.nn as nn
import ember.nn.functional as F
import numpy as np
import pytest
import torch
from ember.runtime.errors import ArgumentError, ShapeError

RNG = np.random.default_rng(3)


def randn(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape)


UPSAMPLE_CASES = [
    ({"scale_factor": 2}, (2, 3, 4, 5)),
    ({"size": (7, 3)}, (2, 3, 4, 5)),
    ({"scale_factor": 1.7, "mode": "nearest"}, (2, 3, 5)),
    ({"scale_factor": 0.6, "mode": "nearest-exact"}, (1, 2, 9, 7)),
    ({"size": 9, "mode": "linear"}, (2, 3, 4)),
    ({"scale_factor": 2.5, "mode": "linear", "align_corners": True}, (2, 3, 4)),
    ({"size": (7, 3), "mode": "bilinear"}, (2, 3, 4, 5)),
    ({"scale_factor": (1.5, 0.5), "mode": "bilinear", "align_corners": True}, (2, 3, 4, 6)),
    ({"scale_factor": 1.5, "mode": "bicubic"}, (1, 2, 4, 5)),
    ({"size": (3, 8), "mode": "bicubic", "align_corners": True}, (1, 2, 4, 5)),
    ({"scale_factor": (2, 1.5, 3), "mode": "trilinear"}, (1, 2, 3, 4, 2)),
    ({"size": (2, 5, 3), "mode": "trilinear", "align_corners": True}, (1, 2, 3, 4, 2)),
    ({"size": 4, "mode": "nearest"}, (1, 2, 3, 2, 5)),
    ({"scale_factor": 2, "mode": "bilinear", "recompute_scale_factor": True}, (1, 2, 3, 3)),
]


@pytest.mark.parametrize("kwargs, shape", UPSAMPLE_CASES)
def test_upsample_matches_torch(compare, kwargs, shape) -> None:
    e, t = nn.Upsample(**kwargs), torch.nn.Upsample(**kwargs)
    assert repr(e) == repr(t)
    compare(e, t, randn(*shape), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cls", ["UpsamplingNearest2d", "UpsamplingBilinear2d"])
def test_fixed_mode_upsampling_modules(compare, cls) -> None:
    e, t = getattr(nn, cls)(scale_factor=2), getattr(torch.nn, cls)(scale_factor=2)
    assert repr(e) == repr(t)
    compare(e, t, randn(2, 3, 3, 4), rtol=1e-5, atol=1e-5)
    e, t = getattr(nn, cls)(size=(5, 2)), getattr(torch.nn, cls)(size=(5, 2))
    compare(e, t, randn(1, 2, 3, 4), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kwargs", [{"size": (3, 2)}, {"scale_factor": 0.5}])
def test_interpolate_area_mode(kwargs) -> None:
    x = randn(2, 3, 7, 5)
    got = F.interpolate(ember.tensor(x), mode="area", **kwargs)
    want = torch.nn.functional.interpolate(torch.tensor(x), mode="area", **kwargs)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-12)


def test_pixel_shuffle_modules(compare) -> None:
    e, t = nn.PixelShuffle(2), torch.nn.PixelShuffle(2)
    assert repr(e) == repr(t) == "PixelShuffle(upscale_factor=2)"
    compare(e, t, randn(2, 8, 3, 4))
    compare(nn.PixelShuffle(3), torch.nn.PixelShuffle(3), randn(9, 2, 2))
    e, t = nn.PixelUnshuffle(2), torch.nn.PixelUnshuffle(2)
    assert repr(e) == repr(t)
    compare(e, t, randn(2, 2, 4, 6))


def test_interpolate_errors() -> None:
    x = ember.zeros(1, 1, 4, 4)
    with pytest.raises(ArgumentError, match="only one of size or scale_factor should be defined"):
        F.interpolate(x, size=3, scale_factor=2)
    with pytest.raises(ArgumentError, match="either size or scale_factor should be defined"):
        F.interpolate(x)
    with pytest.raises(
        ArgumentError, match="align_corners option can only be set with the interpolating modes"
    ):
        F.interpolate(x, scale_factor=2, mode="nearest", align_corners=True)
    with pytest.raises(ShapeError, match="Got 4D input, but linear mode needs 3D input"):
        F.interpolate(x, scale_factor=2, mode="linear")
    with pytest.raises(ArgumentError, match="same number of spatial dimensions"):
        F.interpolate(x, size=(2, 3, 4))
    with pytest.raises(ArgumentError, match="unknown mode"):
        F.interpolate(x, scale_factor=2, mode="cubic")
    with pytest.raises(ShapeError, match="not divisible by 2"):
        nn.PixelUnshuffle(2)(ember.zeros(1, 1, 3, 4))


@pytest.mark.parametrize(
    "amounts, mode, value",
    [
        ((1, 2), "constant", None),
        ((1, 2, 0, 3), "constant", 1.5),
        ((-1, 2, 1, -2), "constant", 0.0),
        ((2, 1, 1, 3), "reflect", None),
        ((2, 1, 1, 3), "replicate", None),
        ((2, 1, 1, 3), "circular", None),
        ((1, 1, 1, 1, 1, 1), "constant", 2.0),
    ],
)
def test_functional_pad_matches_torch(amounts, mode, value) -> None:
    x = randn(2, 3, 4, 5)
    ex, tx = ember.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    kwargs = {} if value is None else {"value": value}
    ey = F.pad(ex, amounts, mode, **kwargs)
    ty = torch.nn.functional.pad(tx, amounts, mode, **kwargs)
    np.testing.assert_array_equal(ey.detach().numpy(), ty.detach().numpy())
    g = randn(*ty.shape)
    ey.backward(ember.tensor(g))
    ty.backward(torch.tensor(g))
    np.testing.assert_allclose(ex.grad.numpy(), tx.grad.numpy(), rtol=1e-12, atol=1e-12)


def test_functional_pad_errors() -> None:
    with pytest.raises(ArgumentError, match="Padding length must be divisible by 2"):
        F.pad(ember.zeros(2, 3), (1,))
    with pytest.raises(ArgumentError, match="doesn't take in value argument"):
        F.pad(ember.zeros(1, 2, 3), (1, 1), mode="reflect", value=1.0)
    with pytest.raises(
        ShapeError, match="Padding size should be less than the corresponding input dimension"
    ):
        F.pad(ember.zeros(1, 2, 3), (3, 0), mode="reflect")
