"""The first ``.grad`` of a leaf takes the fresh gradient's memory when nothing else holds it, and is a
copy otherwise: later in-place updates of ``.grad`` never leak into another tensor."""

from __future__ import annotations

import weakref
from typing import Any

import ember
import numpy as np
import torch


class _Fresh(ember.autograd.Function):
    """Identity whose backward returns a brand-new array and remembers it only weakly."""

    made: list[Any] = []

    @staticmethod
    def forward(ctx: Any, x: ember.Tensor) -> ember.Tensor:
        return x * 1.0

    @staticmethod
    def backward(ctx: Any, g: ember.Tensor) -> ember.Tensor:
        out = ember.from_numpy(np.asarray(g.numpy() * 3.0))
        _Fresh.made.append(weakref.ref(out._data))
        return out


class _Kept(ember.autograd.Function):
    """Returns the same tensor object it keeps (as a user's Function might return a saved tensor)."""

    keep: list[ember.Tensor] = []

    @staticmethod
    def forward(ctx: Any, x: ember.Tensor) -> ember.Tensor:
        return x * 1.0

    @staticmethod
    def backward(ctx: Any, g: ember.Tensor) -> ember.Tensor:
        out = ember.ones(tuple(g.shape)) * 5.0
        _Kept.keep.append(out)
        return out


def test_fresh_gradient_becomes_grad_without_a_copy() -> None:
    x = ember.randn(4, 3, requires_grad=True)
    _Fresh.made.clear()
    _Fresh.apply(x).sum().backward()
    made = _Fresh.made[0]()
    assert made is not None and x.grad._data is made
    np.testing.assert_array_equal(x.grad.numpy(), np.full((4, 3), 3.0, np.float32))


def test_gradient_shared_by_two_leaves_is_copied_for_the_first() -> None:
    a = ember.randn(5, requires_grad=True)
    b = ember.randn(5, requires_grad=True)
    (a + b).sum().backward()  # add hands the same gradient to both leaves
    assert not np.shares_memory(a.grad._data, b.grad._data)
    with ember.no_grad():
        a.grad.add_(1.0)
    np.testing.assert_array_equal(b.grad.numpy(), np.ones(5, np.float32))
    np.testing.assert_array_equal(a.grad.numpy(), np.full(5, 2.0, np.float32))


def test_gradient_kept_by_a_hook_is_not_taken() -> None:
    x = ember.randn(3, requires_grad=True)
    kept: list[ember.Tensor] = []
    x.register_hook(lambda g: kept.append(g))
    (x * 2.0).sum().backward()
    with ember.no_grad():
        x.grad.mul_(10.0)
    np.testing.assert_array_equal(kept[0].numpy(), np.full(3, 2.0, np.float32))
    np.testing.assert_array_equal(x.grad.numpy(), np.full(3, 20.0, np.float32))


def test_user_seed_and_kept_tensor_are_not_taken() -> None:
    x = ember.randn(3, requires_grad=True)
    seed = ember.full((3,), 7.0)
    x.backward(seed)  # the seed flows straight into the leaf
    with ember.no_grad():
        x.grad.zero_()
    np.testing.assert_array_equal(seed.numpy(), np.full(3, 7.0, np.float32))
    y = ember.randn(2, 2, requires_grad=True)
    _Kept.keep.clear()
    _Kept.apply(y).sum().backward()
    with ember.no_grad():
        y.grad.add_(1.0)
    np.testing.assert_array_equal(_Kept.keep[0].numpy(), np.full((2, 2), 5.0, np.float32))


def test_owned_first_grad_then_accumulation_and_in_place_zero_match_torch() -> None:
    """Two backward passes accumulate into the owned first gradient; zero_grad(set_to_none=False) zeros
    in place without touching anything else; the values follow torch."""
    rng = np.random.default_rng(0)
    w0, x0 = rng.standard_normal((4, 3)).astype(np.float32), rng.standard_normal((2, 4)).astype(np.float32)
    w, tw = ember.tensor(w0, requires_grad=True), torch.tensor(w0, requires_grad=True)
    x, tx = ember.tensor(x0), torch.tensor(x0)
    for _ in range(2):
        (x @ w).tanh().pow(2).sum().backward()
        (tx @ tw).tanh().pow(2).sum().backward()
    np.testing.assert_allclose(w.grad.numpy(), tw.grad.numpy(), rtol=1e-5, atol=1e-6)
    first = w.grad
    opt = ember.optim.SGD([w], lr=0.1)
    opt.zero_grad(set_to_none=False)
    assert w.grad is first
    np.testing.assert_array_equal(w.grad.numpy(), np.zeros((4, 3), np.float32))
    np.testing.assert_array_equal(w.detach().numpy(), w0)
