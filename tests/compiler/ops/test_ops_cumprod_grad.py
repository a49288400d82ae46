"""cumprod's gradient is exact at zeros (one zero, several zeros, zero first/last), as torch's."""

from __future__ import annotations

import ember
import numpy as np
import pytest
import torch
from ember.testing import gradcheck

INPUTS = [
    np.array([2.0, 0.0, 3.0, 0.0, 5.0]),
    np.array([2.0, 0.0, 3.0, 4.0, 5.0]),
    np.array([0.0, 2.0, 3.0]),
    np.array([0.0, 0.0, 1.0]),
    np.array([1.5, -2.0, 3.0, 0.0]),
    np.array([0.5, -2.0, 3.0, 1.25]),
]


def _grads(module, x: np.ndarray, g: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    xt = module.tensor(x, requires_grad=True)
    y = xt.cumprod(dim)
    y.backward(module.tensor(g))
    return y.detach().numpy(), xt.grad.numpy()


@pytest.mark.parametrize("k", range(len(INPUTS)))
def test_1d_gradient_matches_torch(k: int) -> None:
    x = INPUTS[k]
    g = np.arange(1.0, len(x) + 1.0)
    for a, b in zip(_grads(ember, x, g, 0), _grads(torch, x, g, 0)):
        np.testing.assert_allclose(a, b, rtol=1e-13)


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_2d_with_zeros_matches_torch(dim: int) -> None:
    rng = np.random.default_rng(8)
    x = rng.standard_normal((4, 5))
    x[rng.random((4, 5)) < 0.3] = 0.0
    x[1, :] = 0.0
    g = rng.standard_normal((4, 5))
    for a, b in zip(_grads(ember, x, g, dim), _grads(torch, x, g, dim)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_finite_differences_and_second_order_with_a_zero() -> None:
    x = ember.tensor([[1.5, 0.0, -0.7], [0.3, 2.0, 0.0]], dtype=ember.float64, requires_grad=True)
    assert gradcheck(lambda t: t.cumprod(1), (x,))
    # second order against torch: d/dx of (grad . v)
    v = np.array([[0.2, -1.0, 0.5], [1.0, 0.3, -0.4]])
    out = []
    for m in (ember, torch):
        xt = m.tensor(x.detach().numpy(), requires_grad=True)
        (gx,) = m.autograd.grad(xt.cumprod(1).sum(), xt, create_graph=True)
        (gx * m.tensor(v)).sum().backward()
        out.append((gx.detach().numpy(), xt.grad.numpy()))
    for a, b in zip(*out):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("dim", [0, 1, 2])
def test_second_order_3d_with_zeros_matches_torch(dim: int) -> None:
    rng = np.random.default_rng(9)
    x = rng.standard_normal((3, 4, 3))
    x[rng.random(x.shape) < 0.35] = 0.0
    v, w = rng.standard_normal(x.shape), rng.standard_normal(x.shape)
    out = []
    for m in (ember, torch):
        xt = m.tensor(x, requires_grad=True)
        (gx,) = m.autograd.grad((xt.cumprod(dim) * m.tensor(w)).sum(), xt, create_graph=True)
        (gx * m.tensor(v)).sum().backward()
        out.append((gx.detach().numpy(), xt.grad.numpy()))
    for a, b in zip(*out):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-13)


def test_compiled_training_gradient_with_zeros_matches_torch() -> None:
    w0 = np.array([[2.0, 0.0, 3.0, 0.5], [1.0, 2.0, 0.0, 4.0]], dtype=np.float32)
    x = np.arange(8.0, dtype=np.float32).reshape(2, 4)

    class Model(ember.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = ember.nn.Parameter(ember.tensor(w0))

        def forward(self, x: ember.Tensor) -> ember.Tensor:
            return (self.w.cumprod(1) * x).sum()

    model = Model()
    ember.compile(model)(ember.tensor(x)).backward()
    w = torch.tensor(w0, requires_grad=True)
    (w.cumprod(1) * torch.tensor(x)).sum().backward()
    np.testing.assert_allclose(model.w.grad.numpy(), w.grad.numpy(), rtol=1e-6)
