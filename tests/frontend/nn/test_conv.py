"""Conv1d/2d/3d and ConvTranspose1d/2d/3d against torch 2.13 with identical weights: outputs, input and
parameter gradients in float32 and float64 over strides, paddings ('same', 'valid', padding modes),
dilations, groups, no bias and unbatched inputs; reprs; typed errors with shapes in their messages."""

from __future__ import annotations

import ember
import ember.nn as nn
import ember.nn.functional as F
import numpy as np
import pytest
import torch
from ember.runtime.errors import ArgumentError, ShapeError

RNG = np.random.default_rng(11)
TOL = {"rtol": 1e-4, "atol": 1e-5}


def randn(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape)


CONV_CASES = [
    ("Conv1d", (4, 6, 3), {}, (2, 4, 9)),
    ("Conv1d", (4, 6, 4), {"stride": 2, "padding": "valid", "dilation": 2, "groups": 2}, (2, 4, 12)),
    ("Conv1d", (3, 4, 3), {"padding": 2, "padding_mode": "circular"}, (2, 3, 7)),
    ("Conv2d", (3, 6, 3), {"padding": 1}, (2, 3, 7, 8)),
    ("Conv2d", (4, 6, (3, 2)), {"stride": (2, 1), "padding": (1, 0), "bias": False}, (2, 4, 7, 6)),
    ("Conv2d", (4, 4, 4), {"padding": "same", "dilation": 2, "groups": 4}, (1, 4, 9, 8)),
    ("Conv2d", (2, 3, 3), {"padding": 1, "padding_mode": "reflect", "stride": 2}, (2, 2, 6, 7)),
    ("Conv2d", (2, 3, 2), {"padding": "same", "padding_mode": "replicate"}, (2, 2, 5, 6)),
    ("Conv2d", (3, 5, 3), {}, (3, 6, 6)),  # unbatched
    ("Conv3d", (2, 4, 2), {"stride": 2, "padding": 1}, (2, 2, 4, 5, 3)),
    ("Conv3d", (2, 4, 3), {"padding": "same", "padding_mode": "reflect"}, (1, 2, 4, 4, 3)),
]


@pytest.mark.parametrize("cls, args, kwargs, shape", CONV_CASES)
def test_conv_modules_match_torch(compare, cls, args, kwargs, shape) -> None:
    e, t = getattr(nn, cls)(*args, **kwargs), getattr(torch.nn, cls)(*args, **kwargs)
    assert repr(e) == repr(t)
    compare(e, t, randn(*shape), **TOL)


TRANSPOSE_CASES = [
    ("ConvTranspose1d", (4, 6, 3), {"stride": 2, "padding": 1, "output_padding": 1}, (2, 4, 5)),
    ("ConvTranspose1d", (4, 6, 3), {"stride": 3, "groups": 2, "dilation": 2, "output_padding": 2}, (2, 4, 4)),
    ("ConvTranspose2d", (3, 4, 3), {"stride": 2, "padding": 1}, (2, 3, 4, 5)),
    ("ConvTranspose2d", (4, 2, (2, 3)), {"stride": (1, 2), "bias": False, "groups": 2}, (2, 4, 3, 3)),
    ("ConvTranspose2d", (2, 3, 3), {}, (2, 4, 3)),  # unbatched
    ("ConvTranspose3d", (2, 3, 2), {"stride": 2, "output_padding": 1}, (1, 2, 2, 3, 2)),
]


@pytest.mark.parametrize("cls, args, kwargs, shape", TRANSPOSE_CASES)
def test_conv_transpose_modules_match_torch(compare, cls, args, kwargs, shape) -> None:
    e, t = getattr(nn, cls)(*args, **kwargs), getattr(torch.nn, cls)(*args, **kwargs)
    assert repr(e) == repr(t)
    compare(e, t, randn(*shape), **TOL)


def test_conv_transpose_output_size_argument() -> None:
    e, t = (
        nn.ConvTranspose2d(2, 3, 3, stride=2, padding=1),
        torch.nn.ConvTranspose2d(2, 3, 3, stride=2, padding=1),
    )
    t.load_state_dict({k: torch.tensor(v.numpy()) for k, v in e.state_dict().items()})
    x = randn(1, 2, 4, 4).astype(np.float32)
    got = e(ember.tensor(x), output_size=[8, 8])
    want = t(torch.tensor(x), output_size=[8, 8])
    assert tuple(got.shape) == (1, 3, 8, 8)
    np.testing.assert_allclose(got.detach().numpy(), want.detach().numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(ShapeError, match="requested an output size of"):
        e(ember.tensor(x), output_size=[10, 10])


def test_reprs_and_parameter_layout() -> None:
    assert repr(nn.Conv2d(3, 64, 3)) == "Conv2d(3, 64, kernel_size=(3, 3), stride=(1, 1))"
    assert repr(nn.Conv1d(2, 4, 3, padding="valid")) == repr(torch.nn.Conv1d(2, 4, 3, padding="valid"))
    m = nn.ConvTranspose2d(4, 6, 3, groups=2)
    assert tuple(m.weight.shape) == (4, 3, 3, 3)
    assert [n for n, _ in m.named_parameters()] == ["weight", "bias"]
    bound = 1 / np.sqrt(3 * 9)
    assert np.all(np.abs(m.weight.detach().numpy()) <= bound)
    assert np.abs(m.weight.detach().numpy()).max() > bound / 2  # drawn, not constant


def test_functional_conv_matches_torch() -> None:
    x, w, b = randn(2, 4, 6, 6), randn(6, 2, 3, 3), randn(6)
    got = F.conv2d(ember.tensor(x), ember.tensor(w), ember.tensor(b), stride=2, padding=1, groups=2)
    want = torch.nn.functional.conv2d(
        torch.tensor(x), torch.tensor(w), torch.tensor(b), stride=2, padding=1, groups=2
    )
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-10)
    got = F.conv1d(ember.tensor(x[:, :, 0]), ember.tensor(w[:, :, 0]), padding="same", groups=2)
    want = torch.nn.functional.conv1d(
        torch.tensor(x[:, :, 0]), torch.tensor(w[:, :, 0]), padding="same", groups=2
    )
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-10)


def test_conv_errors() -> None:
    conv = nn.Conv2d(3, 4, 3)
    with pytest.raises(ShapeError, match=r"expected input\[1, 2, 8, 8\] to have 3 channels, but got 2"):
        conv(ember.zeros(1, 2, 8, 8))
    with pytest.raises(
        ShapeError,
        match=r"Expected 3D \(unbatched\) or 4D \(batched\) input to conv2d, but got"
        r" input of size: \[8, 8\]",
    ):
        conv(ember.zeros(8, 8))
    with pytest.raises(ShapeError, match=r"padded input size per channel: \(2 x 2\). Kernel size: \(3 x 3\)"):
        conv(ember.zeros(1, 3, 2, 2))
    with pytest.raises(ArgumentError, match="in_channels must be divisible by groups"):
        nn.Conv2d(3, 4, 3, groups=2)
    with pytest.raises(ArgumentError, match="padding='same' is not supported for strided convolutions"):
        nn.Conv2d(3, 4, 3, stride=2, padding="same")
    with pytest.raises(ArgumentError, match="padding_mode"):
        nn.Conv2d(3, 4, 3, padding_mode="mirror")
    with pytest.raises(
        ShapeError, match="Padding size should be less than the corresponding input dimension"
    ):
        nn.Conv1d(1, 1, 3, padding=4, padding_mode="reflect")(ember.zeros(1, 1, 3))
    with pytest.raises(ShapeError, match="to have 3 channels"):
        nn.ConvTranspose2d(3, 4, 3)(ember.zeros(1, 2, 5, 5))


def test_empty_batch() -> None:
    x = ember.zeros(0, 3, 5, 5, requires_grad=True)
    conv = nn.Conv2d(3, 4, 3)
    y = conv(x)
    assert tuple(y.shape) == (0, 4, 3, 3)
    y.sum().backward()
    assert tuple(x.grad.shape) == (0, 3, 5, 5)
    assert not np.any(conv.weight.grad.numpy())
    assert tuple(nn.ConvTranspose2d(3, 4, 3)(ember.zeros(0, 3, 5, 5)).shape) == (0, 4, 7, 7)


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_padding_modes_gradcheck(mode) -> None:
    from ember.testing import gradcheck

    conv = nn.Conv2d(2, 2, 3, padding=1, padding_mode=mode).double()
    x = ember.tensor(randn(1, 2, 4, 3), requires_grad=True)
    assert gradcheck(lambda a: conv(a), (x,))
