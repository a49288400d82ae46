"""Eager dropout on "cuda": the mask is computed on the input's device from the same seed, so a GPU gives
the CPU's mask under the same ``manual_seed`` (fake GPU of conftest.py; a real one where present)."""

from __future__ import annotations

import ember
import numpy as np
import pytest
from ember import nn
from ember.nn import functional as F


@pytest.fixture(params=["fake", "real"])
def gpu(request: pytest.FixtureRequest) -> object:
    return request.getfixturevalue("fake_cuda" if request.param == "fake" else "real_cuda")


def test_dropout_on_the_gpu_gives_the_cpu_mask_and_gradient(gpu: object) -> None:
    x = ember.randn(6, 7)
    ember.manual_seed(3)
    want = F.dropout(x, 0.4).numpy()
    xc = x.cuda().requires_grad_(True)
    ember.manual_seed(3)
    out = F.dropout(xc, 0.4)
    assert out.device.type == "cuda" and isinstance(out._data, gpu.ndarray)
    np.testing.assert_array_equal(out.detach().cpu().numpy(), want)
    out.sum().backward()
    np.testing.assert_array_equal(xc.grad.cpu().numpy(), (want != 0) * np.float32(1 / 0.6))


def test_feature_dropout_on_the_gpu_gives_the_cpu_mask(gpu: object) -> None:
    x = ember.randn(2, 5, 3, 3)
    ember.manual_seed(8)
    want = nn.Dropout2d(0.5)(x).numpy()
    ember.manual_seed(8)
    got = nn.Dropout2d(0.5)(x.cuda())
    np.testing.assert_array_equal(got.cpu().numpy(), want)
