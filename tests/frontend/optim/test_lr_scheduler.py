"""Every scheduler's learning-rate sequence against torch 2.13's, with two parameter groups."""

from __future__ import annotations

import math

import ember
import numpy as np
import pytest
import torch
from ember.optim import lr_scheduler as esched

SCHEDULERS = {
    "step": ("StepLR", {"step_size": 3, "gamma": 0.5}),
    "multistep": ("MultiStepLR", {"milestones": [2, 5, 5, 9], "gamma": 0.3}),
    "exponential": ("ExponentialLR", {"gamma": 0.9}),
    "cosine": ("CosineAnnealingLR", {"T_max": 7, "eta_min": 0.001}),
    "lambda": ("LambdaLR", {"lr_lambda": lambda e: 1.0 / (1 + e) + 0.1 * math.sin(e)}),
    "constant": ("ConstantLR", {"factor": 0.25, "total_iters": 4}),
    "linear": ("LinearLR", {"start_factor": 0.1, "end_factor": 0.8, "total_iters": 7}),
    "polynomial": ("PolynomialLR", {"total_iters": 9, "power": 2.0}),
    "warm_restarts": ("CosineAnnealingWarmRestarts", {"T_0": 3, "T_mult": 2, "eta_min": 0.001}),
    "warm_restarts_fixed": ("CosineAnnealingWarmRestarts", {"T_0": 4}),
}


def _optimizers(lib):
    mod = torch if lib == "torch" else ember
    a = mod.zeros(2, requires_grad=True)
    b = mod.zeros(3, requires_grad=True)
    optim = torch.optim if lib == "torch" else ember.optim
    return optim.SGD([{"params": [a]}, {"params": [b], "lr": 0.03}], lr=0.1, momentum=0.9)


def _sequence(lib, name, kwargs, epochs=25):
    opt = _optimizers(lib)
    mod = torch.optim.lr_scheduler if lib == "torch" else esched
    sched = getattr(mod, name)(opt, **kwargs)
    out = [sched.get_last_lr()]
    for _ in range(epochs):
        opt.step()
        sched.step()
        out.append(sched.get_last_lr())
        assert [g["lr"] for g in opt.param_groups] == out[-1]
    return np.array(out)


@pytest.mark.parametrize("case", sorted(SCHEDULERS))
def test_sequence_matches_torch(case: str) -> None:
    name, kwargs = SCHEDULERS[case]
    expected = _sequence("torch", name, kwargs)
    got = _sequence("ember", name, kwargs)
    assert len(set(got[:, 0].tolist())) >= 2
    np.testing.assert_allclose(got, expected, rtol=1e-13, atol=0)


def test_two_schedulers_chain_like_torch() -> None:
    seqs = []
    for lib, mod in (("torch", torch.optim.lr_scheduler), ("ember", esched)):
        opt = _optimizers(lib)
        s1, s2 = mod.ExponentialLR(opt, gamma=0.9), mod.MultiStepLR(opt, milestones=[3, 6], gamma=0.1)
        seq = []
        for _ in range(10):
            opt.step()
            s1.step()
            s2.step()
            seq.append(s2.get_last_lr())
        seqs.append(seq)
    np.testing.assert_allclose(seqs[1], seqs[0], rtol=1e-13)


@pytest.mark.parametrize("kwargs", [
    {"mode": "min", "factor": 0.5, "patience": 2},
    {"mode": "max", "factor": 0.2, "patience": 1, "threshold_mode": "abs", "threshold": 0.05, "cooldown": 2},
    {"mode": "min", "factor": 0.5, "patience": 0, "min_lr": [0.02, 0.01], "eps": 1e-3},
])
def test_reduce_on_plateau_matches_torch(kwargs) -> None:
    metrics = [1.0, 0.9, 0.95, 0.95, 0.96, 0.8, 0.81, 0.82, 0.83, 0.84, 0.7, 0.7, 0.7, 0.71, 0.9,
               0.5, 0.5, 0.5]
    seqs = []
    for lib, mod in (("torch", torch.optim.lr_scheduler), ("ember", esched)):
        opt = _optimizers(lib)
        sched = mod.ReduceLROnPlateau(opt, **kwargs)
        seq = []
        for m in metrics:
            opt.step()
            sched.step(m)
            seq.append(sched.get_last_lr())
        seqs.append(seq)
    assert len({s[0] for s in seqs[1]}) > 1
    np.testing.assert_allclose(seqs[1], seqs[0], rtol=1e-13)


def test_scheduler_state_dict_resumes() -> None:
    opt = _optimizers("ember")
    sched = esched.CosineAnnealingLR(opt, T_max=10)
    for _ in range(4):
        sched.step()
    saved = sched.state_dict()
    assert "optimizer" not in saved and saved["last_epoch"] == 4
    reference = [sched.step() or sched.get_last_lr() for _ in range(3)]
    opt2 = _optimizers("ember")
    sched2 = esched.CosineAnnealingLR(opt2, T_max=10)
    sched2.load_state_dict(saved)
    for group, lr in zip(opt2.param_groups, saved["_last_lr"]):
        group["lr"] = lr
    assert [sched2.step() or sched2.get_last_lr() for _ in range(3)] == reference


def test_resuming_without_initial_lr_raises() -> None:
    with pytest.raises(KeyError, match="initial_lr"):
        esched.StepLR(_optimizers("ember"), step_size=2, last_epoch=3)


def test_plateau_rejects_bad_factor() -> None:
    with pytest.raises(ValueError, match="Factor should be < 1.0"):
        esched.ReduceLROnPlateau(_optimizers("ember"), factor=1.5)


def test_warm_restarts_fractional_epochs_match_torch() -> None:
    seqs = []
    for lib, mod in (("torch", torch.optim.lr_scheduler), ("ember", esched)):
        opt = _optimizers(lib)
        sched = mod.CosineAnnealingWarmRestarts(opt, T_0=2, T_mult=3)
        seq = []
        for epoch in (0.5, 1.25, 2.0, 3.7, 8.1, 9.0, 20.5):
            sched.step(epoch)
            seq.append(sched.get_last_lr())
        seqs.append(seq)
    np.testing.assert_allclose(seqs[1], seqs[0], rtol=1e-12)


@pytest.mark.parametrize("optimizer,kwargs", [
    ("SGD", {"max_lr": 0.5, "total_steps": 30}),
    ("Adam", {"max_lr": [0.01, 0.02], "epochs": 3, "steps_per_epoch": 9, "pct_start": 0.25}),
    ("SGD", {"max_lr": 0.3, "total_steps": 25, "three_phase": True, "anneal_strategy": "linear"}),
])
def test_one_cycle_lr_and_momentum_match_torch(optimizer, kwargs) -> None:
    seqs = []
    for lib, mod in (("torch", torch.optim.lr_scheduler), ("ember", esched)):
        params = (torch if lib == "torch" else ember).zeros(2, requires_grad=True)
        other = (torch if lib == "torch" else ember).zeros(2, requires_grad=True)
        optim = torch.optim if lib == "torch" else ember.optim
        extra = {"momentum": 0.9} if optimizer == "SGD" else {}
        opt = getattr(optim, optimizer)([{"params": [params]}, {"params": [other]}], lr=0.1, **extra)
        sched = mod.OneCycleLR(opt, **kwargs)
        seq = []
        total = kwargs.get("total_steps") or kwargs["epochs"] * kwargs["steps_per_epoch"]
        for _ in range(total - 1):
            opt.step()
            sched.step()
            group = opt.param_groups[1]
            seq.append([group["lr"], group["momentum"] if optimizer == "SGD" else group["betas"][0]])
        seqs.append(seq)
    np.testing.assert_allclose(seqs[1], seqs[0], rtol=1e-12)
