"""nn.init and default initialisation: distributions checked statistically (Kolmogorov-Smirnov distance
against the exact CDF, under a fixed seed), deterministic initialisers and gains against torch, and the
in-place, history-free writes."""

from __future__ import annotations

import math

import ember
import ember.nn as nn
import numpy as np
import pytest
import torch
from ember.nn import init

_erf = np.vectorize(math.erf)


def ks_distance(sample: np.ndarray, cdf) -> float:
    """sup |empirical CDF - CDF| of a sample."""
    x = np.sort(np.asarray(sample, dtype=np.float64).ravel())
    n = x.size
    f = cdf(x)
    return float(max(np.max(np.arange(1, n + 1) / n - f), np.max(f - np.arange(n) / n)))


def ks_ok(sample: np.ndarray, cdf) -> bool:
    """Accept at the 0.1% level: critical value 1.95 / sqrt(n)."""
    return ks_distance(sample, cdf) < 1.95 / math.sqrt(np.asarray(sample).size)


def uniform_cdf(a: float, b: float):
    return lambda x: np.clip((x - a) / (b - a), 0.0, 1.0)


def normal_cdf(mean: float, std: float):
    return lambda x: 0.5 * (1 + _erf((x - mean) / (std * math.sqrt(2))))


@pytest.fixture(autouse=True)
def _seed() -> None:
    ember.manual_seed(2024)


def test_ks_check_rejects_wrong_distributions() -> None:
    rng = np.random.default_rng(0)
    sample = rng.uniform(-1, 1, 20000)
    assert ks_ok(sample, uniform_cdf(-1, 1))
    assert not ks_ok(sample, uniform_cdf(-1.05, 1.05))
    assert not ks_ok(rng.normal(0, 1.05, 20000), normal_cdf(0, 1))


def test_linear_default_init_follows_pytorch() -> None:
    lin = nn.Linear(400, 300)
    bound = 1 / math.sqrt(400)  # kaiming_uniform(a=sqrt(5)) reduces to this bound
    assert ks_ok(lin.weight.detach().numpy(), uniform_cdf(-bound, bound))
    big_bias = nn.Linear(400, 20000).bias.detach().numpy()
    assert ks_ok(big_bias, uniform_cdf(-bound, bound))
    assert not ks_ok(lin.weight.detach().numpy(), uniform_cdf(-1.1 * bound, 1.1 * bound))


def test_other_default_inits() -> None:
    emb = nn.Embedding(1000, 50, padding_idx=3)
    w = emb.weight.detach().numpy()
    assert not np.any(w[3])
    assert ks_ok(np.delete(w, 3, axis=0), normal_cdf(0, 1))
    bil = nn.Bilinear(30, 20, 40)
    b = 1 / math.sqrt(30)
    assert ks_ok(bil.weight.detach().numpy(), uniform_cdf(-b, b))
    bn = nn.BatchNorm1d(5)
    assert bn.weight.tolist() == [1.0] * 5 and bn.bias.tolist() == [0.0] * 5
    assert bn.running_var.tolist() == [1.0] * 5 and bn.num_batches_tracked.item() == 0
    assert nn.PReLU(3).weight.tolist() == pytest.approx([0.25] * 3)


@pytest.mark.parametrize("mode, fan", [("fan_in", 200 * 9), ("fan_out", 100 * 9)])
def test_kaiming(mode, fan) -> None:
    w = ember.empty(100, 200, 3, 3)
    init.kaiming_normal_(w, mode=mode, nonlinearity="relu")
    assert ks_ok(w.numpy(), normal_cdf(0, math.sqrt(2 / fan)))
    init.kaiming_uniform_(w, a=0.1, mode=mode)
    bound = math.sqrt(3) * math.sqrt(2 / (1 + 0.01)) / math.sqrt(fan)
    assert ks_ok(w.numpy(), uniform_cdf(-bound, bound))


def test_xavier() -> None:
    w = ember.empty(300, 200)
    init.xavier_uniform_(w, gain=init.calculate_gain("tanh"))
    a = 5 / 3 * math.sqrt(6 / 500)
    assert ks_ok(w.numpy(), uniform_cdf(-a, a))
    init.xavier_normal_(w, gain=2.0)
    assert ks_ok(w.numpy(), normal_cdf(0, 2 * math.sqrt(2 / 500)))


def test_uniform_normal_trunc_normal() -> None:
    w = ember.empty(200, 100)
    init.uniform_(w, -0.5, 2.0)
    assert ks_ok(w.numpy(), uniform_cdf(-0.5, 2.0))
    init.normal_(w, 1.0, 0.3)
    assert ks_ok(w.numpy(), normal_cdf(1.0, 0.3))
    init.trunc_normal_(w, mean=0.5, std=1.0, a=-1.0, b=1.5)
    lo, hi = normal_cdf(0.5, 1.0)(np.array([-1.0, 1.5]))
    assert w.numpy().min() >= -1.0 and w.numpy().max() <= 1.5
    assert ks_ok(w.numpy(), lambda x: (normal_cdf(0.5, 1.0)(x) - lo) / (hi - lo))


@pytest.mark.parametrize("shape", [(30, 50), (50, 30), (8, 3, 2, 2)])
def test_orthogonal(shape) -> None:
    w = ember.empty(*shape)
    init.orthogonal_(w, gain=1.5)
    m = w.numpy().reshape(shape[0], -1)
    gram = m @ m.T if m.shape[0] <= m.shape[1] else m.T @ m
    np.testing.assert_allclose(gram, 2.25 * np.eye(gram.shape[0]), atol=1e-5)


def test_deterministic_initialisers_match_torch() -> None:
    for shape, groups in (((4, 2, 3), 1), ((6, 3, 3, 3), 2), ((2, 4, 3, 3, 3), 1)):
        e, t = ember.empty(*shape), torch.empty(*shape)
        init.dirac_(e, groups)
        torch.nn.init.dirac_(t, groups)
        np.testing.assert_array_equal(e.numpy(), t.numpy())
    e, t = ember.empty(3, 5), torch.empty(3, 5)
    init.eye_(e)
    torch.nn.init.eye_(t)
    np.testing.assert_array_equal(e.numpy(), t.numpy())
    for fn, args in ((init.constant_, (0.3,)), (init.ones_, ()), (init.zeros_, ())):
        e = ember.empty(2, 3)
        fn(e, *args)
        tfn = getattr(torch.nn.init, fn.__name__)
        np.testing.assert_array_equal(e.numpy(), tfn(torch.empty(2, 3), *args).numpy())


GAINS = [("linear", None), ("conv2d", None), ("sigmoid", None), ("tanh", None), ("relu", None),
         ("leaky_relu", None), ("leaky_relu", 0.2), ("selu", None), ("conv_transpose3d", None)]


@pytest.mark.parametrize("name, param", GAINS)
def test_calculate_gain(name, param) -> None:
    assert init.calculate_gain(name, param) == pytest.approx(torch.nn.init.calculate_gain(name, param))


def test_init_writes_in_place_without_history() -> None:
    lin = nn.Linear(3, 2)
    w = lin.weight
    version = w._version_number
    out = init.normal_(w)
    assert out is w and lin.weight is w
    assert w.is_leaf and w.requires_grad and w.grad_fn is None
    assert w._version_number > version
    sparse = ember.empty(100, 10)
    init.sparse_(sparse, 0.3)
    assert ((sparse.numpy() == 0).sum(0) == 30).all()


def test_init_errors() -> None:
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        init.xavier_uniform_(ember.empty(5))
    with pytest.raises(ValueError, match="Unsupported nonlinearity"):
        init.calculate_gain("softmax")
    with pytest.raises(ValueError, match="Mode fan_avg not supported"):
        init.kaiming_normal_(ember.empty(3, 3), mode="fan_avg")
    with pytest.raises(ValueError, match="Only tensors with 2 dimensions"):
        init.eye_(ember.empty(2, 2, 2))


def test_deprecated_spellings_of_the_notes_warn_and_work() -> None:
    w = ember.empty(4, 4)
    for name in ("uniform", "normal", "xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal",
                 "orthogonal", "eye"):
        with pytest.warns(FutureWarning, match=f"nn.init.{name}` is now deprecated"):
            getattr(init, name)(w)
    with pytest.warns(FutureWarning):
        init.constant(w, 0.5)
    assert w.tolist()[0] == [0.5] * 4
    p = nn.Parameter(ember.ones(3))
    p.grad = ember.tensor([3.0, 4.0, 0.0])
    with pytest.warns(FutureWarning, match="clip_grad_norm_"):
        total = nn.utils.clip_grad_norm(p, 1.0)
    assert total.item() == pytest.approx(5.0)
    with pytest.warns(FutureWarning, match="NLLLoss2d"):
        loss = nn.NLLLoss2d()
    x = ember.tensor(np.log(np.full((2, 3, 2, 2), 1 / 3)))
    assert loss(x, ember.zeros(2, 2, 2, dtype=ember.int64)).item() == pytest.approx(np.log(3))


def test_init_is_reproducible_under_seed() -> None:
    ember.manual_seed(7)
    a = nn.Linear(5, 5).weight.detach().numpy().copy()
    ember.manual_seed(7)
    b = nn.Linear(5, 5).weight.detach().numpy()
    np.testing.assert_array_equal(a, b)
