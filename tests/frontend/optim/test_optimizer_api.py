"""Optimizer base behaviour: param groups, zero_grad, state_dict round trips, step(closure), errors."""

from __future__ import annotations

import copy

import ember
import numpy as np
import pytest
import torch
from ember.runtime.errors import ArgumentError


def _problem(seed=0):
    rng = np.random.default_rng(seed)
    x = ember.tensor(rng.standard_normal((8, 4)))
    y = ember.tensor(rng.standard_normal((8, 1)))
    w = ember.tensor(rng.standard_normal((4, 1)), requires_grad=True)
    b = ember.zeros(1, dtype=ember.float64, requires_grad=True)
    return x, y, w, b


def _train(opt, x, y, w, b, steps):
    for _ in range(steps):
        opt.zero_grad()
        r = x @ w + b - y
        (r * r).mean().backward()
        opt.step()


@pytest.mark.parametrize("name,kwargs", [
    ("SGD", {"lr": 0.1, "momentum": 0.9}), ("Adam", {"lr": 0.05, "amsgrad": True}),
    ("RMSprop", {"lr": 0.01, "centered": True, "momentum": 0.5}), ("Rprop", {}), ("ASGD", {"t0": 2}),
    ("Adagrad", {}), ("Adadelta", {}), ("Adamax", {}), ("AdamW", {}),
])
def test_state_dict_resume_continues_the_same_trajectory(name, kwargs) -> None:
    x, y, w, b = _problem()
    opt = getattr(ember.optim, name)([w, b], **kwargs)
    _train(opt, x, y, w, b, 5)
    saved = copy.deepcopy(opt.state_dict())  # as in PyTorch, the live state is returned, not a copy
    w_saved, b_saved = w.detach().clone(), b.detach().clone()
    _train(opt, x, y, w, b, 5)
    x2, y2, w2, b2 = _problem()
    with ember.no_grad():
        w2[...] = w_saved
        b2[...] = b_saved
    opt2 = getattr(ember.optim, name)([w2, b2], **kwargs)
    opt2.load_state_dict(saved)
    _train(opt2, x2, y2, w2, b2, 5)
    np.testing.assert_allclose(w2.detach().numpy(), w.detach().numpy(), rtol=1e-12)
    assert sorted(saved["state"]) == [0, 1]
    assert saved["param_groups"][0]["params"] == [0, 1]


def test_state_dict_layout_matches_torch_keys() -> None:
    tw = torch.zeros(3, requires_grad=True)
    topt = torch.optim.Adam([tw], lr=0.1)
    tw.sum().backward()
    topt.step()
    ew = ember.zeros(3, requires_grad=True)
    eopt = ember.optim.Adam([ew], lr=0.1)
    ew.sum().backward()
    eopt.step()
    assert set(eopt.state_dict()["state"][0]) == set(topt.state_dict()["state"][0])
    assert set(eopt.state_dict()["param_groups"][0]) == set(topt.state_dict()["param_groups"][0])


def test_load_state_dict_copies_tensors() -> None:
    x, y, w, b = _problem()
    opt = ember.optim.SGD([w, b], lr=0.1, momentum=0.9)
    _train(opt, x, y, w, b, 1)
    saved = opt.state_dict()
    opt.load_state_dict(saved)
    buf = opt.state[w]["momentum_buffer"]
    assert buf is not saved["state"][0]["momentum_buffer"]
    np.testing.assert_array_equal(buf.numpy(), saved["state"][0]["momentum_buffer"].numpy())


def test_zero_grad_modes() -> None:
    x, y, w, b = _problem()
    opt = ember.optim.SGD([w, b], lr=0.1)
    ((x @ w + b) ** 2).sum().backward()
    grad = w.grad
    opt.zero_grad(set_to_none=False)
    assert w.grad is grad and float(grad.abs().sum()) == 0.0
    opt.zero_grad()
    assert w.grad is None and b.grad is None


def test_param_groups_and_add_param_group() -> None:
    x, y, w, b = _problem()
    opt = ember.optim.SGD([w], lr=0.1, momentum=0.5)
    opt.add_param_group({"params": b, "lr": 0.01})
    assert opt.param_groups[1]["lr"] == 0.01 and opt.param_groups[1]["momentum"] == 0.5
    with pytest.raises(ArgumentError, match="more than one parameter group"):
        opt.add_param_group({"params": [w]})
    b_before = b.detach().clone()
    _train(opt, x, y, w, b, 1)
    assert not np.allclose(b.detach().numpy(), b_before.numpy())


def test_step_closure_returns_loss() -> None:
    x, y, w, b = _problem()
    opt = ember.optim.Adam([w, b], lr=0.1)

    def closure():
        opt.zero_grad()
        loss = ((x @ w + b - y) ** 2).mean()
        loss.backward()
        return loss

    first = opt.step(closure).item()
    for _ in range(20):
        last = opt.step(closure).item()
    assert last < first


def test_argument_errors_use_torch_wording() -> None:
    w = ember.zeros(2, requires_grad=True)
    with pytest.raises(ValueError, match="Invalid learning rate: -1"):
        ember.optim.SGD([w], lr=-1)
    with pytest.raises(ValueError, match="Nesterov momentum requires a momentum and zero dampening"):
        ember.optim.SGD([w], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="Invalid beta parameter at index 1"):
        ember.optim.Adam([w], betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="empty parameter list"):
        ember.optim.Adam([])
    with pytest.raises(TypeError, match="iterable of Tensors"):
        ember.optim.Adam(w)
    with pytest.raises(TypeError, match="ordered collections"):
        ember.optim.SGD([{"params": {w}}], lr=0.1)
    with pytest.raises(ValueError, match="strong_wolfe"):
        ember.optim.LBFGS([w], line_search_fn="armijo")
    with pytest.raises(ValueError, match="closure"):
        ember.optim.LBFGS([w]).step()


def test_lbfgs_minimizes_rosenbrock() -> None:
    xy = ember.tensor([-1.5, 2.0], dtype=ember.float64, requires_grad=True)
    opt = ember.optim.LBFGS([xy], lr=1, max_iter=100, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        a, c = xy[0], xy[1]
        loss = (1 - a) ** 2 + 100 * (c - a * a) ** 2
        loss.backward()
        return loss

    opt.step(closure)
    np.testing.assert_allclose(xy.detach().numpy(), [1.0, 1.0], atol=1e-5)
