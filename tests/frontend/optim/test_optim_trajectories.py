"""Each optimizer's parameter trajectory against torch 2.13 over 20 steps on the same problem (float64):
a least-squares regression with two parameter tensors in separate groups, so per-group options,
weight decay, momentum, nesterov, amsgrad and maximize all take effect."""

from __future__ import annotations

import ember
import numpy as np
import pytest
import torch

RNG = np.random.default_rng(1234)
X = RNG.standard_normal((16, 5))
Y = RNG.standard_normal((16, 3))
W0 = RNG.standard_normal((5, 3)) * 0.5
B0 = RNG.standard_normal(3) * 0.5
STEPS = 20


def _loss(lib, x, y, w, b):
    r = x @ w + b - y
    return (r * r).sum() / 16 + (w * w * w).sum() * 0.01  # a cubic term keeps the Hessian changing


def _run(lib, make_opt, steps=STEPS, closure_style=False):
    mod = torch if lib == "torch" else ember
    x, y = mod.tensor(X), mod.tensor(Y)
    w = mod.tensor(W0.copy(), requires_grad=True)
    b = mod.tensor(B0.copy(), requires_grad=True)
    opt = make_opt(lib, w, b)
    traj = []
    for _ in range(steps):
        def closure():
            opt.zero_grad()
            loss = _loss(mod, x, y, w, b)
            loss.backward()
            return loss

        if closure_style:
            opt.step(closure)
        else:
            closure()
            opt.step()
        traj.append(np.concatenate([w.detach().numpy().ravel(), b.detach().numpy().ravel()]).copy())
    return np.array(traj), opt


def _groups(w, b, first, second):
    return [dict(params=[w], **first), dict(params=[b], **second)]


CASES = {
    "sgd_plain": ("SGD", {"lr": 0.05}, {"lr": 0.02}),
    "sgd_momentum_wd": ("SGD", {"lr": 0.05, "momentum": 0.9, "weight_decay": 0.01},
                        {"lr": 0.02, "momentum": 0.5, "dampening": 0.3}),
    "sgd_nesterov_maximize": ("SGD", {"lr": 0.03, "momentum": 0.8, "nesterov": True},
                              {"lr": -0.01, "momentum": 0.0, "maximize": True}),
    "adam": ("Adam", {"lr": 0.05, "weight_decay": 0.1}, {"lr": 0.01, "betas": (0.8, 0.99)}),
    "adam_amsgrad": ("Adam", {"lr": 0.05, "amsgrad": True}, {"lr": 0.02, "amsgrad": True, "eps": 1e-3}),
    "adam_maximize": ("Adam", {"lr": 0.01, "maximize": True}, {"lr": 0.01}),
    "adamw": ("AdamW", {"lr": 0.05}, {"lr": 0.02, "weight_decay": 0.3, "amsgrad": True}),
    "adamax": ("Adamax", {"lr": 0.05, "weight_decay": 0.05}, {"lr": 0.1, "betas": (0.5, 0.9)}),
    "adagrad": ("Adagrad", {"lr": 0.1, "lr_decay": 0.01}, {"lr": 0.05, "weight_decay": 0.1,
                                                           "initial_accumulator_value": 0.2}),
    "adadelta": ("Adadelta", {"lr": 1.0}, {"lr": 0.5, "rho": 0.8, "weight_decay": 0.1}),
    "rmsprop": ("RMSprop", {"lr": 0.01}, {"lr": 0.005, "alpha": 0.9, "weight_decay": 0.1}),
    "rmsprop_centered_momentum": ("RMSprop", {"lr": 0.01, "centered": True, "momentum": 0.9},
                                  {"lr": 0.005, "momentum": 0.5}),
    "rprop": ("Rprop", {"lr": 0.01}, {"lr": 0.05, "etas": (0.3, 1.5), "step_sizes": (1e-3, 0.2)}),
    "asgd": ("ASGD", {"lr": 0.05, "t0": 5}, {"lr": 0.02, "lambd": 0.01, "alpha": 0.5, "weight_decay": 0.1}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_trajectory_matches_torch(case: str) -> None:
    name, first, second = CASES[case]

    def make(lib, w, b):
        mod = torch.optim if lib == "torch" else ember.optim
        return getattr(mod, name)(_groups(w, b, first, second))

    prev = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # ASGD keeps eta/mu in the default dtype; ember keeps float64
    try:
        expected, topt = _run("torch", make)
    finally:
        torch.set_default_dtype(prev)
    got, eopt = _run("ember", make)
    assert not np.allclose(got[0], got[-1])  # the problem really moves
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)
    # the optimizer state (moments, buffers, averages, step counts) agrees too, key by key
    for tp, ep in zip(topt.param_groups[0]["params"] + topt.param_groups[1]["params"],
                      eopt.param_groups[0]["params"] + eopt.param_groups[1]["params"]):
        tstate, estate = topt.state[tp], eopt.state[ep]
        assert set(estate) == set(tstate)
        for key, value in tstate.items():
            mine, theirs = np.asarray(estate[key], np.float64), np.asarray(value, np.float64)
            np.testing.assert_allclose(mine, theirs, rtol=1e-10, atol=1e-12, err_msg=key)


@pytest.mark.parametrize("line_search", [None, "strong_wolfe"])
@pytest.mark.parametrize("history", [100, 3])
def test_lbfgs_matches_torch(line_search, history) -> None:
    def make(lib, w, b):
        mod = torch.optim if lib == "torch" else ember.optim
        return mod.LBFGS([w, b], lr=0.5 if line_search is None else 1.0, max_iter=5,
                         history_size=history, line_search_fn=line_search)

    expected, topt = _run("torch", make, steps=4, closure_style=True)
    got, eopt = _run("ember", make, steps=4, closure_style=True)
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-11)
    tstate = topt.state[topt.param_groups[0]["params"][0]]
    estate = eopt.state[eopt.param_groups[0]["params"][0]]
    assert estate["func_evals"] == tstate["func_evals"]
    assert estate["n_iter"] == tstate["n_iter"]
