"""interpolate(..., antialias=True): bilinear and bicubic, down- and upsampling, against torch 2.13
(values, gradients, errors) and compiled."""

from __future__ import annotations

import ember
import ember.nn.functional as F
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

rng = np.random.default_rng(3)
X32 = rng.standard_normal((2, 3, 17, 23)).astype(np.float32)

CASES = [  # size, scale_factor, align_corners
    ((5, 7), None, False),
    ((8, 30), None, False),   # down in H, up in W
    (None, (0.3, 0.5), False),
    ((5, 7), None, True),
    ((17, 23), None, False),  # same size: identity weights
    ((40, 9), None, False),
    ((1, 1), None, False),
]


@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
@pytest.mark.parametrize("size,scale_factor,align_corners", CASES)
def test_values_match_torch(mode: str, size, scale_factor, align_corners: bool) -> None:
    kw = dict(size=size, scale_factor=scale_factor, mode=mode, align_corners=align_corners, antialias=True)
    got = F.interpolate(ember.tensor(X32), **kw)
    want = TF.interpolate(torch.tensor(X32), **kw)
    assert tuple(got.shape) == tuple(want.shape) and got.dtype is ember.float32
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=2e-6)


@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
def test_float64_and_gradient_match_torch(mode: str) -> None:
    x = rng.standard_normal((1, 2, 13, 9))
    w = rng.standard_normal((1, 2, 4, 6))
    outs = []
    for m, f in ((ember, F), (torch, TF)):
        xt = m.tensor(x, requires_grad=True)
        y = f.interpolate(xt, size=(4, 6), mode=mode, antialias=True)
        (y * m.tensor(w)).sum().backward()
        outs.append((y.detach().numpy(), xt.grad.numpy()))
    np.testing.assert_allclose(outs[0][0], outs[1][0], rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(outs[0][1], outs[1][1], rtol=1e-12, atol=1e-13)


def test_antialias_differs_from_plain_when_downsampling() -> None:
    """The filter widens with the scale: a 4x downsample averages every input pixel, unlike the plain mode."""
    x = ember.tensor(X32)
    aa = F.interpolate(x, size=(4, 5), mode="bilinear", antialias=True)
    plain = F.interpolate(x, size=(4, 5), mode="bilinear")
    assert np.abs(aa.numpy() - plain.numpy()).max() > 0.1


def test_errors_match_torch() -> None:
    msg = "Anti-alias option is restricted to bilinear"  # torch 2.13 adds lanczos, which ember lacks
    with pytest.raises(ValueError, match=msg):
        F.interpolate(ember.tensor(X32), size=(4, 4), mode="nearest", antialias=True)
    with pytest.raises(ValueError, match=msg):
        TF.interpolate(torch.zeros(1, 2, 5, 5, 5), size=(2, 2, 2), mode="trilinear", antialias=True)
    with pytest.raises(ValueError, match=msg):
        F.interpolate(ember.zeros(1, 2, 5, 5, 5), size=(2, 2, 2), mode="trilinear", antialias=True)
    with pytest.raises(ValueError, match=msg):
        F.interpolate(ember.zeros(1, 2, 9), size=(4,), mode="linear", antialias=True)
    with pytest.raises(TypeError, match="floating-point"):
        F.interpolate(ember.zeros(1, 1, 4, 4, dtype=ember.int64), size=(2, 2), mode="bilinear", antialias=True)


@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
def test_compiles(mode: str) -> None:
    def fn(x: ember.Tensor) -> ember.Tensor:
        return F.interpolate(x, size=(6, 8), mode=mode, antialias=True).relu()

    got = ember.compile(fn)(ember.tensor(X32))
    want = TF.interpolate(torch.tensor(X32), size=(6, 8), mode=mode, antialias=True).relu()
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=2e-6)
