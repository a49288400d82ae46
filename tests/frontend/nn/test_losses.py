"""Every loss, module and functional form, with every reduction, against torch 2.13: values and gradients
with respect to the input (and target where PyTorch differentiates it) in float32 and float64; typed
errors for bad targets."""

from __future__ import annotations

import ember
import ember.nn as nn
import ember.nn.functional as F
import numpy as np
import pytest
import torch

RNG = np.random.default_rng(7)
REDUCTIONS = ("none", "mean", "sum")


def randn(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape)


def _wrap(lib, arrays, dtype_np, grad_flags):
    out = []
    for a, g in zip(arrays, grad_flags):
        if np.issubdtype(a.dtype, np.floating):
            a = a.astype(dtype_np)
            out.append(lib.tensor(a, requires_grad=g))
        else:
            out.append(lib.tensor(a))
    return out


def check_loss(name: str, arrays: list[np.ndarray], kwargs: dict | None = None, grad_flags=None,
               tensor_kwargs: dict | None = None, rtol: float = 1e-5, atol: float = 1e-6) -> None:
    """Compare nn.<name> (module) against torch.nn.<name> for each reduction and dtype."""
    kwargs = kwargs or {}
    tensor_kwargs = tensor_kwargs or {}
    grad_flags = grad_flags or [True] + [False] * (len(arrays) - 1)
    for dt, tol in ((np.float32, (rtol, atol)), (np.float64, (1e-9, 1e-11))):
        for red in REDUCTIONS:
            e_kw = {k: ember.tensor(v.astype(dt)) for k, v in tensor_kwargs.items()}
            t_kw = {k: torch.tensor(v.astype(dt)) for k, v in tensor_kwargs.items()}
            e_args = _wrap(ember, arrays, dt, grad_flags)
            t_args = _wrap(torch, arrays, dt, grad_flags)
            e_out = getattr(nn, name)(reduction=red, **kwargs, **e_kw)(*e_args)
            t_out = getattr(torch.nn, name)(reduction=red, **kwargs, **t_kw)(*t_args)
            np.testing.assert_allclose(e_out.detach().numpy(), t_out.detach().numpy(), *tol,
                                       err_msg=f"{name} {red} {dt.__name__} value")
            g = RNG.standard_normal(tuple(t_out.shape)).astype(dt)
            (e_out * ember.tensor(g)).sum().backward()
            (t_out * torch.tensor(g)).sum().backward()
            for i, (ea, ta) in enumerate(zip(e_args, t_args)):
                if ta.requires_grad:
                    np.testing.assert_allclose(ea.grad.numpy(), ta.grad.numpy(), *tol,
                                               err_msg=f"{name} {red} {dt.__name__} grad {i}")


N, C = 6, 4


def targets(n=N, c=C, shape=None) -> np.ndarray:
    return RNG.integers(0, c, shape or (n,))


def probs(*shape: int) -> np.ndarray:
    return RNG.random(shape) * 0.98 + 0.01


def signs(*shape: int) -> np.ndarray:
    return np.where(RNG.random(shape) > 0.5, 1.0, -1.0)


def test_regression_losses() -> None:
    x, y = randn(N, C), randn(N, C)
    check_loss("L1Loss", [x, y], grad_flags=[True, True])
    check_loss("MSELoss", [x, y], grad_flags=[True, True])
    for beta in (1.0, 0.3, 0.0):
        check_loss("SmoothL1Loss", [x, y], {"beta": beta}, grad_flags=[True, True])
    check_loss("HuberLoss", [x, y], {"delta": 0.5}, grad_flags=[True, True])


@pytest.mark.parametrize("kwargs", [{}, {"ignore_index": 2}, {"label_smoothing": 0.15},
                                    {"ignore_index": 1, "label_smoothing": 0.3}])
@pytest.mark.parametrize("weighted", [False, True])
def test_cross_entropy_class_targets(kwargs, weighted) -> None:
    tk = {"weight": RNG.random(C) + 0.5} if weighted else {}
    t = targets()
    t[0] = kwargs.get("ignore_index", 0)
    check_loss("CrossEntropyLoss", [randn(N, C) * 2, t], kwargs, tensor_kwargs=tk)


@pytest.mark.parametrize("weighted", [False, True])
def test_cross_entropy_k_dim_inputs(weighted) -> None:
    tk = {"weight": RNG.random(C) + 0.5} if weighted else {}
    check_loss("CrossEntropyLoss", [randn(2, C, 3, 2), targets(shape=(2, 3, 2))], {"ignore_index": 0},
               tensor_kwargs=tk)
    check_loss("CrossEntropyLoss", [randn(2, C, 5), targets(shape=(2, 5))], {"label_smoothing": 0.1},
               tensor_kwargs=tk)


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_cross_entropy_probability_targets(smoothing) -> None:
    p = probs(N, C)
    p /= p.sum(1, keepdims=True)
    check_loss("CrossEntropyLoss", [randn(N, C), p], {"label_smoothing": smoothing},
               tensor_kwargs={"weight": RNG.random(C) + 0.5})
    q = probs(2, C, 3)
    check_loss("CrossEntropyLoss", [randn(2, C, 3), q / q.sum(1, keepdims=True)])


def test_cross_entropy_single_sample() -> None:
    check_loss("CrossEntropyLoss", [randn(C), np.array(2)])


@pytest.mark.parametrize("kwargs", [{}, {"ignore_index": 1}])
def test_nll_loss(kwargs) -> None:
    logp = np.log(probs(N, C))
    check_loss("NLLLoss", [logp, targets()], kwargs, tensor_kwargs={"weight": RNG.random(C) + 0.1})
    check_loss("NLLLoss", [np.log(probs(2, C, 3, 3)), targets(shape=(2, 3, 3))], kwargs)


@pytest.mark.parametrize("log_target", [False, True])
def test_kl_div(log_target) -> None:
    p = probs(N, C)
    t = np.log(p) if log_target else p
    check_loss("KLDivLoss", [np.log(probs(N, C)), t], {"log_target": log_target}, grad_flags=[True, True])
    t = t.copy()
    t[0, 0] = -50.0 if log_target else 0.0  # (near) zero probability; torch gives the target a nan grad at 0
    check_loss("KLDivLoss", [np.log(probs(N, C)), t], {"log_target": log_target})
    e = F.kl_div(ember.tensor(np.log(p)), ember.tensor(p), reduction="batchmean")
    ref = torch.nn.functional.kl_div(torch.tensor(np.log(p)), torch.tensor(p), reduction="batchmean")
    np.testing.assert_allclose(e.item(), ref.item(), rtol=1e-12, atol=1e-15)  # KL(p || p): zero up to rounding


def test_binary_cross_entropy() -> None:
    x, y = probs(N, C), probs(N, C)
    check_loss("BCELoss", [x, y], grad_flags=[True, True])
    check_loss("BCELoss", [x, (y > 0.5) * 1.0], tensor_kwargs={"weight": RNG.random(C)})
    edge = np.array([0.0, 1.0, 0.5])
    out = F.binary_cross_entropy(ember.tensor(edge), ember.tensor([1.0, 0.0, 1.0]), reduction="none")
    ref = torch.nn.functional.binary_cross_entropy(torch.tensor(edge), torch.tensor([1.0, 0.0, 1.0]).double(),
                                                   reduction="none")
    np.testing.assert_allclose(out.numpy(), ref.numpy())  # logs clamped at -100


def test_bce_with_logits() -> None:
    x, y = randn(N, C) * 5, probs(N, C)
    check_loss("BCEWithLogitsLoss", [x, y], grad_flags=[True, True])
    check_loss("BCEWithLogitsLoss", [x, y],
               tensor_kwargs={"weight": RNG.random(C), "pos_weight": RNG.random(C) * 3})
    big = F.binary_cross_entropy_with_logits(ember.tensor([200.0, -200.0]), ember.tensor([0.0, 1.0]),
                                             reduction="none")
    np.testing.assert_allclose(big.numpy(), [200.0, 200.0])


def test_margin_losses() -> None:
    x1, x2 = randn(N), randn(N)
    check_loss("MarginRankingLoss", [x1, x2, signs(N)], {"margin": 0.2}, grad_flags=[True, True, False])
    check_loss("HingeEmbeddingLoss", [randn(N, C), signs(N, C)], {"margin": 0.7})
    check_loss("SoftMarginLoss", [randn(N, C), signs(N, C)])
    check_loss("CosineEmbeddingLoss", [randn(N, C), randn(N, C), signs(N)], {"margin": 0.1},
               grad_flags=[True, True, False])


@pytest.mark.parametrize("p", [1, 2])
def test_multi_margin_loss(p) -> None:
    check_loss("MultiMarginLoss", [randn(N, C), targets()], {"p": p, "margin": 0.8})
    check_loss("MultiMarginLoss", [randn(N, C), targets()], {"p": p}, tensor_kwargs={"weight": RNG.random(C)})


def test_multilabel_losses() -> None:
    t = np.array([[3, 0, -1, 1], [0, 1, 2, 3], [1, -1, 0, 0], [-1, 1, 1, 1], [2, 2, -1, 0], [1, 3, -1, 2]])
    check_loss("MultiLabelMarginLoss", [randn(N, C), t])
    check_loss("MultiLabelMarginLoss", [randn(C), np.array([2, 0, -1, 3])])
    y = (RNG.random((N, C)) > 0.5) * 1.0
    check_loss("MultiLabelSoftMarginLoss", [randn(N, C), y])
    check_loss("MultiLabelSoftMarginLoss", [randn(N, C), y], tensor_kwargs={"weight": RNG.random(C)})


def test_functional_twins_match_modules() -> None:
    x, t = ember.tensor(randn(N, C)), ember.tensor(targets())
    assert F.cross_entropy(x, t).item() == nn.CrossEntropyLoss()(x, t).item()
    assert F.nll_loss(F.log_softmax(x, 1), t).item() == pytest.approx(F.cross_entropy(x, t).item(), rel=1e-6)
    y = ember.tensor(randn(N, C))
    assert F.mse_loss(x, y, reduction="sum").item() == nn.MSELoss(reduction="sum")(x, y).item()
    with pytest.warns(UserWarning, match="size_average and reduce args will be deprecated"):
        legacy = F.l1_loss(x, y, size_average=False).item()
    with pytest.warns(UserWarning, match="reduction='none'"):
        assert nn.MSELoss(reduce=False)(x, y).shape == x.shape
    assert legacy == pytest.approx(F.l1_loss(x, y, reduction="sum").item())


def test_loss_errors() -> None:
    x = ember.tensor(randn(3, 4))
    with pytest.raises(IndexError, match="Target 7 is out of bounds"):
        F.cross_entropy(x, ember.tensor([0, 7, 1]))
    with pytest.raises(IndexError, match="Target -3 is out of bounds"):
        F.nll_loss(x, ember.tensor([0, -3, 1]))
    with pytest.raises(ember.ShapeError, match=r"input batch_size \(3\) to match target batch_size \(2\)"):
        F.cross_entropy(x, ember.tensor([0, 1]))
    with pytest.raises(ember.DTypeError, match="Long"):
        F.nll_loss(x, ember.tensor([0.0, 1.0, 1.0]).reshape(3))
    with pytest.raises(ValueError, match="is not a valid value for reduction"):
        F.mse_loss(x, x, reduction="avg")
    with pytest.raises(ValueError, match="different to the input size"):
        F.binary_cross_entropy(ember.tensor([0.5, 0.5]), ember.tensor([[1.0, 0.0]]))
    with pytest.raises(ValueError, match="between 0 and 1"):
        F.binary_cross_entropy(ember.tensor([1.5]), ember.tensor([1.0]))
    with pytest.raises(ember.ShapeError, match=r"weight tensor should be defined either for all 4 classes"):
        F.cross_entropy(x, ember.tensor([0, 1, 2]), weight=ember.ones(3))
    with pytest.warns(UserWarning, match="target size"):
        F.mse_loss(x, ember.tensor(randn(4)))
