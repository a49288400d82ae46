"""Core layers against torch 2.13 with identical weights: outputs, input and parameter gradients, buffers,
in float32 and float64; train/eval behaviour; reprs; typed errors."""

from __future__ import annotations

import ember
import ember.nn as nn
import ember.nn.functional as F
import numpy as np
import pytest
import torch

RNG = np.random.default_rng(0)


def randn(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape)


# ---- layers with parameters ---------------------------------------------------------------------


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(4, 3), (2, 5, 3), (3,)])
def test_linear(compare, bias, shape) -> None:
    compare(nn.Linear(3, 6, bias=bias), torch.nn.Linear(3, 6, bias=bias), randn(*shape))


def test_bilinear(compare) -> None:
    compare(nn.Bilinear(3, 4, 5), torch.nn.Bilinear(3, 4, 5), randn(6, 3), randn(6, 4))


def test_prelu(compare) -> None:
    compare(nn.PReLU(), torch.nn.PReLU(), randn(4, 3, 2))
    compare(nn.PReLU(3, init=0.1), torch.nn.PReLU(3, init=0.1), randn(4, 3, 2))


@pytest.mark.parametrize("cls, shape", [(nn.BatchNorm1d, (8, 3)), (nn.BatchNorm1d, (4, 3, 5)),
                                        (nn.BatchNorm2d, (4, 3, 2, 5)), (nn.BatchNorm3d, (2, 3, 2, 2, 3))])
@pytest.mark.parametrize("train", [True, False])
def test_batch_norm(compare, cls, shape, train) -> None:
    tcls = getattr(torch.nn, cls.__name__)
    mod, tmod = cls(3), tcls(3)
    with ember.no_grad():
        mod.running_mean.add_(ember.tensor([0.5, -1.0, 2.0]))
        mod.running_var.mul_(ember.tensor([0.5, 2.0, 3.0]))
        mod.weight.mul_(ember.tensor([1.5, -0.5, 2.0]))
    compare(mod, tmod, randn(*shape) * 2 + 1, train=train, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kwargs", [dict(affine=False), dict(momentum=None), dict(track_running_stats=False),
                                    dict(eps=1e-3, momentum=0.3)])
def test_batch_norm_options(compare, kwargs) -> None:
    compare(nn.BatchNorm2d(3, **kwargs), torch.nn.BatchNorm2d(3, **kwargs), randn(4, 3, 2, 2),
            rtol=1e-4, atol=1e-5)


def test_batch_norm_running_statistics_over_steps() -> None:
    """Momentum None is a cumulative average; the running variance is unbiased; eval uses it."""
    for momentum in (0.1, None):
        mod, tmod = nn.BatchNorm1d(4, momentum=momentum).double(), torch.nn.BatchNorm1d(4, momentum=momentum)
        tmod.double()
        for _ in range(3):
            x = randn(5, 4) * 3 + 2
            mod(ember.tensor(x))
            tmod(torch.tensor(x))
        assert int(mod.num_batches_tracked.item()) == 3
        np.testing.assert_allclose(mod.running_mean.numpy(), tmod.running_mean.numpy(), rtol=1e-12)
        np.testing.assert_allclose(mod.running_var.numpy(), tmod.running_var.numpy(), rtol=1e-12)
        mod.eval()
        tmod.eval()
        x = randn(2, 4)
        np.testing.assert_allclose(mod(ember.tensor(x)).detach().numpy(),
                                   tmod(torch.tensor(x)).detach().numpy(), rtol=1e-10)


@pytest.mark.parametrize("shape, norm", [((4, 6), 6), ((2, 3, 4), (3, 4)), ((2, 3, 5), 5)])
@pytest.mark.parametrize("affine", [True, False])
def test_layer_norm(compare, shape, norm, affine) -> None:
    mod = nn.LayerNorm(norm, elementwise_affine=affine)
    tmod = torch.nn.LayerNorm(norm, elementwise_affine=affine)
    if affine:
        ember.nn.init.normal_(mod.weight)
        ember.nn.init.normal_(mod.bias)
    compare(mod, tmod, randn(*shape), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("groups, shape", [(2, (3, 4, 5)), (1, (2, 6, 2, 2)), (6, (2, 6, 3))])
def test_group_norm(compare, groups, shape) -> None:
    mod, tmod = nn.GroupNorm(groups, shape[1]), torch.nn.GroupNorm(groups, shape[1])
    ember.nn.init.normal_(mod.weight)
    compare(mod, tmod, randn(*shape), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("cls, args, kwargs, shape", [
    ("InstanceNorm1d", (3,), {}, (2, 3, 5)), ("InstanceNorm2d", (3,), dict(affine=True), (2, 3, 4, 4)),
    ("InstanceNorm1d", (3,), dict(affine=True, track_running_stats=True), (2, 3, 6)),
    ("InstanceNorm3d", (3,), dict(track_running_stats=True, momentum=0.3), (2, 3, 2, 2, 3)),
    ("InstanceNorm2d", (3,), {}, (3, 4, 4)), ("RMSNorm", (4,), {}, (3, 4)),
    ("RMSNorm", ((3, 4),), dict(eps=1e-3), (2, 3, 4)), ("LocalResponseNorm", (3,), {}, (2, 5, 3)),
    ("LocalResponseNorm", (2,), dict(k=2.0), (2, 4, 2, 2)),
])
@pytest.mark.parametrize("train", [True, False])
def test_other_normalizations(compare, cls, args, kwargs, shape, train) -> None:
    mod, tmod = getattr(nn, cls)(*args, **kwargs), getattr(torch.nn, cls)(*args, **kwargs)
    assert repr(mod) == repr(tmod)
    compare(mod, tmod, randn(*shape) * 2 + 0.5, train=train, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kwargs", [{}, dict(padding_idx=1), dict(padding_idx=-1)])
def test_embedding(compare, kwargs) -> None:
    idx = np.array([[0, 1, 4], [1, 1, 3]])
    mod, tmod = nn.Embedding(5, 3, **kwargs), torch.nn.Embedding(5, 3, **kwargs)
    compare(mod, tmod, idx)
    if "padding_idx" in kwargs:
        row = kwargs["padding_idx"] % 5
        assert not np.any(mod.weight.detach().numpy()[row]), "padding row is initialised to zero"
        out = mod(ember.tensor(idx))
        out.sum().backward()
        assert not np.any(mod.weight.grad.numpy()[row]), "the padding row gets no gradient"


def test_embedding_max_norm_renormalizes_looked_up_rows() -> None:
    mod = nn.Embedding(6, 4, max_norm=1.0)
    tmod = torch.nn.Embedding(6, 4, max_norm=1.0)
    with ember.no_grad():
        mod.weight.mul_(3.0)
    tmod.load_state_dict({"weight": torch.tensor(mod.weight.detach().numpy())})
    idx = np.array([0, 2, 2, 5])
    out = mod(ember.tensor(idx))
    tout = tmod(torch.tensor(idx))
    np.testing.assert_allclose(out.detach().numpy(), tout.detach().numpy(), rtol=1e-5)
    np.testing.assert_allclose(mod.weight.detach().numpy(), tmod.weight.detach().numpy(), rtol=1e-5)


@pytest.mark.parametrize("cls, args, shapes", [
    (nn.PairwiseDistance, (), [(4, 5), (4, 5)]),
    (nn.PairwiseDistance, (1.0, 1e-6, True), [(4, 5), (4, 5)]),
    (nn.PairwiseDistance, (3.0,), [(4, 5), (1, 5)]),
    (nn.CosineSimilarity, (), [(4, 5), (4, 5)]),
    (nn.CosineSimilarity, (0,), [(4, 5), (4, 5)]),
])
def test_distances(compare, cls, args, shapes) -> None:
    tcls = getattr(torch.nn, cls.__name__)
    compare(cls(*args), tcls(*args), *[randn(*s) for s in shapes], rtol=1e-5, atol=1e-6)


# ---- activations ----------------------------------------------------------------------------------

ACTIVATIONS = [
    ("ReLU", ()), ("ReLU6", ()), ("ELU", ()), ("ELU", (0.5,)), ("LeakyReLU", ()), ("LeakyReLU", (0.2,)),
    ("Threshold", (0.1, 20.0)), ("Hardtanh", ()), ("Hardtanh", (-2.0, 0.5)), ("Sigmoid", ()), ("Tanh", ()),
    ("LogSigmoid", ()), ("Softplus", ()), ("Softplus", (2.0, 1.0)), ("Softshrink", ()),
    ("Softshrink", (1.0,)),
    ("Softsign", ()), ("Softmin", (1,)), ("Softmax", (1,)), ("Softmax", (-1,)), ("LogSoftmax", (1,)),
    ("LogSoftmax", (0,)), ("GELU", ()), ("GELU", ("tanh",)), ("SiLU", ()), ("SELU", ()), ("CELU", (0.7,)),
    ("Mish", ()), ("Hardswish", ()), ("Hardsigmoid", ()), ("Tanhshrink", ()), ("GLU", ()), ("Hardshrink", ()),
]


@pytest.mark.parametrize("name, args", ACTIVATIONS, ids=lambda a: str(a))
def test_activation(compare, name, args) -> None:
    x = randn(4, 6) * 3
    compare(getattr(nn, name)(*args), getattr(torch.nn, name)(*args), x, rtol=1e-5, atol=1e-6)


def test_softmax2d(compare) -> None:
    compare(nn.Softmax2d(), torch.nn.Softmax2d(), randn(2, 3, 2, 2))
    compare(nn.Softmax2d(), torch.nn.Softmax2d(), randn(3, 2, 2))


def test_activations_are_stable_at_extremes() -> None:
    x = np.array([-1000.0, -50.0, 0.0, 50.0, 1000.0], dtype=np.float32)
    for name in ("Softplus", "LogSigmoid", "Sigmoid", "ELU", "SiLU"):
        out = getattr(nn, name)()(ember.tensor(x)).numpy()
        ref = getattr(torch.nn, name)()(torch.tensor(x)).numpy()
        np.testing.assert_allclose(out, ref, rtol=1e-6, err_msg=name)
    big = np.array([[1000.0, 0.0, -1000.0]], dtype=np.float32)
    np.testing.assert_allclose(F.log_softmax(ember.tensor(big), 1).numpy(),
                               torch.log_softmax(torch.tensor(big), 1).numpy())


def test_inplace_activation_writes_input() -> None:
    x = ember.tensor([-1.0, 2.0])
    out = nn.ReLU(inplace=True)(x)
    assert out is x and x.tolist() == [0.0, 2.0]


@pytest.mark.parametrize("mod, text", [
    (nn.ReLU(inplace=True), "ReLU(inplace=True)"), (nn.ReLU(), "ReLU()"),
    (nn.Softmax(dim=1), "Softmax(dim=1)"), (nn.ELU(alpha=0.5), "ELU(alpha=0.5)"),
    (nn.LeakyReLU(0.2, True), "LeakyReLU(negative_slope=0.2, inplace=True)"),
    (nn.GELU(), "GELU(approximate='none')"), (nn.Hardtanh(), "Hardtanh(min_val=-1.0, max_val=1.0)"),
    (nn.ReLU6(), "ReLU6()"), (nn.Threshold(0.1, 20), "Threshold(threshold=0.1, value=20)"),
    (nn.Softplus(), "Softplus(beta=1.0, threshold=20.0)"), (nn.Softshrink(), "Softshrink(0.5)"),
    (nn.PReLU(), "PReLU(num_parameters=1)"),
    (nn.Linear(3, 4), "Linear(in_features=3, out_features=4, bias=True)"),
    (nn.Bilinear(2, 3, 4, bias=False),
     "Bilinear(in1_features=2, in2_features=3, out_features=4, bias=False)"),
    (nn.BatchNorm2d(64),
     "BatchNorm2d(64, eps=1e-05, momentum=0.1, affine=True, bias=True, track_running_stats=True)"),
    (nn.BatchNorm1d(3, momentum=None, affine=False),
     "BatchNorm1d(3, eps=1e-05, momentum=None, affine=False, bias=False, track_running_stats=True)"),
    (nn.LayerNorm(10), "LayerNorm((10,), eps=1e-05, elementwise_affine=True, bias=True)"),
    (nn.LayerNorm((2, 3), bias=False), "LayerNorm((2, 3), eps=1e-05, elementwise_affine=True, bias=False)"),
    (nn.GroupNorm(2, 4), "GroupNorm(2, 4, eps=1e-05, affine=True, bias=True)"),
    (nn.Dropout(0.2), "Dropout(p=0.2, inplace=False)"), (nn.Dropout2d(), "Dropout2d(p=0.5, inplace=False)"),
    (nn.Embedding(10, 3, padding_idx=0), "Embedding(10, 3, padding_idx=0)"),
    (nn.Flatten(), "Flatten(start_dim=1, end_dim=-1)"), (nn.Identity(), "Identity()"),
    (nn.Unflatten(1, (2, 5)), "Unflatten(dim=1, unflattened_size=(2, 5))"),
    (nn.CrossEntropyLoss(), "CrossEntropyLoss()"), (nn.Sigmoid(), "Sigmoid()"),
    (nn.PairwiseDistance(), "PairwiseDistance()"), (nn.CosineSimilarity(), "CosineSimilarity()"),
])
def test_reprs_match_pytorch(mod, text) -> None:
    assert repr(mod) == text
    assert repr(eval("torch.nn." + text.split("(")[0] + "(" + _ctor_args(mod) + ")")) == text


def _ctor_args(mod: nn.Module) -> str:
    """Rebuild the constructor call of a layer in the reprs table for torch (the same arguments)."""
    table = {
        "ReLU": lambda m: f"inplace={m.inplace}", "Softmax": lambda m: f"dim={m.dim}",
        "ELU": lambda m: f"alpha={m.alpha}", "LeakyReLU": lambda m: f"{m.negative_slope}, {m.inplace}",
        "Threshold": lambda m: f"{m.threshold}, {m.value}", "Softshrink": lambda m: str(m.lambd),
        "Linear": lambda m: f"{m.in_features}, {m.out_features}",
        "Bilinear": lambda m: f"{m.in1_features}, {m.in2_features}, {m.out_features}, bias=False",
        "BatchNorm2d": lambda m: f"{m.num_features}",
        "BatchNorm1d": lambda m: f"{m.num_features}, momentum={m.momentum}, affine={m.affine}",
        "LayerNorm": lambda m: f"{m.normalized_shape}, bias={m.bias is not None}",
        "GroupNorm": lambda m: f"{m.num_groups}, {m.num_channels}", "Dropout": lambda m: f"{m.p}",
        "Embedding": lambda m: f"{m.num_embeddings}, {m.embedding_dim}, padding_idx={m.padding_idx}",
        "Unflatten": lambda m: f"{m.dim}, {m.unflattened_size}",
    }
    fn = table.get(type(mod).__name__)
    return fn(mod) if fn else ""


def test_flatten_unflatten(compare) -> None:
    compare(nn.Flatten(), torch.nn.Flatten(), randn(2, 3, 4))
    compare(nn.Flatten(0, 1), torch.nn.Flatten(0, 1), randn(2, 3, 4))
    compare(nn.Unflatten(1, (2, 6)), torch.nn.Unflatten(1, (2, 6)), randn(3, 12))


# ---- dropout --------------------------------------------------------------------------------------


def test_dropout_train_and_eval() -> None:
    ember.manual_seed(0)
    x = ember.ones(200, 100, requires_grad=True)
    d = nn.Dropout(0.3)
    out = d(x)
    kept = out.detach().numpy() != 0
    assert abs(kept.mean() - 0.7) < 0.02
    np.testing.assert_allclose(out.detach().numpy()[kept], 1 / 0.7, rtol=1e-6)
    out.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), kept / 0.7, rtol=1e-6)
    d.eval()
    assert d(x) is x
    assert F.dropout(x, 1.0).detach().numpy().max() == 0.0


def test_dropout2d_zeroes_whole_channels() -> None:
    ember.manual_seed(1)
    out = nn.Dropout2d(0.5)(ember.ones(8, 16, 3, 3)).numpy()
    per_channel = out.reshape(8, 16, 9)
    assert np.all((per_channel == 0).all(-1) | (per_channel == 2.0).all(-1))
    assert 0.3 < (per_channel[..., 0] == 0).mean() < 0.7
    out3 = nn.Dropout3d(0.5)(ember.ones(4, 8, 2, 2, 2)).numpy().reshape(4, 8, 8)
    assert np.all((out3 == 0).all(-1) | (out3 == 2.0).all(-1))


def test_dropout_reproducible_under_seed() -> None:
    ember.manual_seed(5)
    a = F.dropout(ember.ones(50), 0.5).numpy()
    ember.manual_seed(5)
    b = F.dropout(ember.ones(50), 0.5).numpy()
    np.testing.assert_array_equal(a, b)


# ---- errors ---------------------------------------------------------------------------------------


def test_errors_are_typed_and_name_shapes() -> None:
    with pytest.raises(ember.ShapeError, match=r"4x5 and 3x2"):
        nn.Linear(3, 2)(ember.zeros(4, 5))
    with pytest.raises(ValueError, match=r"expected 4D input \(got 3D input"):
        nn.BatchNorm2d(3)(ember.zeros(2, 3, 4))
    with pytest.raises(ember.ShapeError, match=r"running_mean should contain 4 elements not 3.*\[2, 4\]"):
        nn.BatchNorm1d(3)(ember.zeros(2, 4))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        nn.BatchNorm1d(3)(ember.zeros(1, 3))
    with pytest.raises(ember.ShapeError, match=r"normalized_shape=\[4\]"):
        nn.LayerNorm(4)(ember.zeros(2, 5))
    with pytest.raises(ember.ShapeError, match="divisible by num_groups"):
        F.group_norm(ember.zeros(2, 5, 3), 2)
    with pytest.raises(IndexError, match="out of range"):
        nn.Embedding(3, 2)(ember.tensor([0, 3]))
    with pytest.raises(ember.DTypeError, match="Long, Int"):
        nn.Embedding(3, 2)(ember.tensor([0.0]))
    with pytest.raises(ValueError, match="between 0 and 1"):
        nn.Dropout(1.5)
    with pytest.raises(ember.DTypeError):
        F.softmax(ember.tensor([1, 2]), 0)
    with pytest.raises(IndexError, match="Dimension out of range"):
        F.softmax(ember.zeros(2, 3), 2)
    with pytest.raises(ember.ShapeError, match="channel size = 3"):
        nn.PReLU(2)(ember.zeros(4, 3))


def test_gelu_second_order_gradient_matches_torch() -> None:
    x = randn(5)
    for approx in ("none", "tanh"):
        a = ember.tensor(x, requires_grad=True)
        t = torch.tensor(x, requires_grad=True)
        (ga,) = ember.autograd.grad(F.gelu(a, approximate=approx).sum(), a, create_graph=True)
        out = torch.nn.functional.gelu(t, approximate=approx).sum()
        (gt,) = torch.autograd.grad(out, t, create_graph=True)
        ga.sum().backward()
        gt.sum().backward()
        np.testing.assert_allclose(a.grad.numpy(), t.grad.numpy(), rtol=1e-10)


def test_batch_norm_gradients_against_finite_differences() -> None:
    x = randn(4, 3, 2)
    w, b = randn(3), randn(3)
    g = randn(4, 3, 2)

    def f(arr: np.ndarray) -> float:
        out = F.batch_norm(ember.tensor(arr), None, None, ember.tensor(w), ember.tensor(b), training=True)
        return float((out * ember.tensor(g)).sum().item())

    xt = ember.tensor(x, requires_grad=True)
    out = F.batch_norm(xt, None, None, ember.tensor(w), ember.tensor(b), training=True)
    (out * ember.tensor(g)).sum().backward()
    num = np.zeros_like(x)
    eps = 1e-6
    for i in np.ndindex(x.shape):
        d = np.zeros_like(x)
        d[i] = eps
        num[i] = (f(x + d) - f(x - d)) / (2 * eps)
    np.testing.assert_allclose(xt.grad.numpy(), num, rtol=1e-5, atol=1e-7)
