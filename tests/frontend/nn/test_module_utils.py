"""nn.utils (gradient clipping, parameter/vector conversion) against torch, and float64 finite-difference
checks (first and second order) of the nn primitives in compiler/ops/nn.py."""

from __future__ import annotations

import ember
import ember.nn as nn
import ember.nn.functional as F
import numpy as np
import pytest
import torch
from ember.testing import gradcheck, gradgradcheck

RNG = np.random.default_rng(11)


def twin_models():
    e = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    t = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    t.load_state_dict({k: torch.tensor(v.numpy()) for k, v in e.state_dict().items()})
    x = RNG.standard_normal((5, 3)).astype(np.float32)
    (e(ember.tensor(x)) ** 2).sum().backward()
    (t(torch.tensor(x)) ** 2).sum().backward()
    return e, t


@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, float("inf")])
@pytest.mark.parametrize("max_norm", [0.1, 1e6])
def test_clip_grad_norm(norm_type, max_norm) -> None:
    e, t = twin_models()
    total_e = nn.utils.clip_grad_norm_(e.parameters(), max_norm, norm_type)
    total_t = torch.nn.utils.clip_grad_norm_(t.parameters(), max_norm, norm_type)
    assert total_e.item() == pytest.approx(total_t.item(), rel=1e-5)
    for pe, pt in zip(e.parameters(), t.parameters()):
        np.testing.assert_allclose(pe.grad.numpy(), pt.grad.numpy(), rtol=1e-5, atol=1e-7)


def test_clip_grad_norm_nonfinite_and_empty() -> None:
    p = nn.Parameter(ember.ones(2))
    p.grad = ember.tensor([float("inf"), 1.0])
    with pytest.raises(RuntimeError, match="is non-finite, so it cannot be clipped"):
        nn.utils.clip_grad_norm_([p], 1.0, error_if_nonfinite=True)
    assert nn.utils.clip_grad_norm_([nn.Parameter(ember.ones(2))], 1.0).item() == 0.0


def test_clip_grad_value() -> None:
    e, t = twin_models()
    nn.utils.clip_grad_value_(e.parameters(), 0.05)
    torch.nn.utils.clip_grad_value_(t.parameters(), 0.05)
    for pe, pt in zip(e.parameters(), t.parameters()):
        np.testing.assert_allclose(pe.grad.numpy(), pt.grad.numpy(), rtol=1e-5, atol=1e-7)


def test_parameters_to_vector_and_back() -> None:
    e, t = twin_models()
    vec = nn.utils.parameters_to_vector(e.parameters())
    np.testing.assert_allclose(vec.detach().numpy(),
                               torch.nn.utils.parameters_to_vector(t.parameters()).detach().numpy())
    params = list(e.parameters())
    nn.utils.vector_to_parameters(vec * 2, e.parameters())
    assert [id(p) for p in e.parameters()] == [id(p) for p in params]
    np.testing.assert_allclose(nn.utils.parameters_to_vector(e.parameters()).detach().numpy(),
                               2 * vec.detach().numpy(), rtol=1e-6)
    with pytest.raises(ember.ShapeError, match="does not hold"):
        nn.utils.vector_to_parameters(ember.zeros(3), e.parameters())


# ---- finite differences of the nn primitives (float64) ---------------------------------------------


def t64(*shape: int, scale: float = 1.0, positive: bool = False) -> ember.Tensor:
    a = RNG.random(shape) * 0.8 + 0.1 if positive else RNG.standard_normal(shape) * scale
    return ember.tensor(a, dtype=ember.float64, requires_grad=True)


SMOOTH = [
    ("softmax", lambda x: F.softmax(x, 1)), ("log_softmax", lambda x: F.log_softmax(x, 0)),
    ("gelu", F.gelu), ("gelu_tanh", lambda x: F.gelu(x, approximate="tanh")),
    ("softplus", lambda x: F.softplus(x, beta=2.0)), ("logsigmoid", F.logsigmoid),
    ("silu", F.silu), ("layer_norm", lambda x: F.layer_norm(x, (4,))),
    ("group_norm", lambda x: F.group_norm(x.reshape(3, 4, 1), 2)),
    ("cosine_similarity", lambda x: F.cosine_similarity(x, x.flip(0) + 1.0)),
]


@pytest.mark.parametrize("name, fn", SMOOTH, ids=[s[0] for s in SMOOTH])
def test_smooth_primitives_first_and_second_order(name, fn) -> None:
    x = t64(3, 4)
    assert gradcheck(fn, (x,))
    assert gradgradcheck(fn, (x,))


def test_piecewise_primitives_first_order() -> None:
    x = ember.tensor(RNG.choice([-1.5, -0.7, -0.2, 0.3, 0.9, 1.6], (3, 4)), dtype=ember.float64,
                     requires_grad=True)
    for fn in (F.elu, lambda v: F.leaky_relu(v, 0.2), F.hardtanh, F.softshrink, F.softsign,
               lambda v: F.threshold(v, 0.1, 2.0), F.relu6, lambda v: F.celu(v, 0.5)):
        assert gradcheck(fn, (x,))


def test_batch_norm_primitive_all_inputs() -> None:
    x, mean, w, b = t64(4, 3, 2), t64(3), t64(3), t64(3)
    var = t64(3, positive=True)
    op = ember.compiler.ops.REGISTRY["batch_norm"]
    from ember.dispatch import apply

    fn = lambda *a: apply(op, a, {"eps": 1e-3})  # noqa: E731
    assert gradcheck(fn, (x, mean, var, w, b))
    assert gradgradcheck(fn, (x, mean, var, w, b))
    train = lambda v, ww, bb: F.batch_norm(v, None, None, ww, bb, training=True)  # noqa: E731
    assert gradcheck(train, (x, w, b))


def test_loss_kernels() -> None:
    p, t = t64(3, 4, positive=True), t64(3, 4, positive=True)
    assert gradcheck(lambda a, b: F.binary_cross_entropy(a, b), (p, t))
    target = ember.tensor([1, 0, 3])
    assert gradcheck(lambda a: F.cross_entropy(a, target, label_smoothing=0.2), (t64(3, 4),))
    assert gradgradcheck(lambda a: F.cross_entropy(a, target), (t64(3, 4),))


def test_embedding_first_and_second_order() -> None:
    idx = ember.tensor([[0, 2], [2, 3]])
    w = t64(4, 3)
    assert gradcheck(lambda v: F.embedding(idx, v) ** 2, (w,))  # padding_idx drops gradient by design
    assert gradgradcheck(lambda v: F.embedding(idx, v) ** 2, (w,))


# ---- DataParallel ---------------------------------------------------------------------------------


def test_data_parallel_without_gpus_calls_the_module() -> None:
    lin = nn.Linear(3, 2)
    dp = nn.DataParallel(lin)
    tdp = torch.nn.DataParallel(torch.nn.Linear(3, 2))
    assert repr(dp) == repr(tdp)
    assert list(dp.state_dict().keys()) == list(tdp.state_dict().keys()) == ["module.weight", "module.bias"]
    x = ember.randn(4, 3)
    np.testing.assert_array_equal(dp(x).detach().numpy(), lin(x).detach().numpy())


def test_data_parallel_pieces_split_replicate_and_gather() -> None:
    """The multi-device path on CPU 'devices': chunks along dim, replicas share the parameters'
    gradients, outputs are gathered in order."""
    from ember.device import device
    from ember.nn.modules.parallel import _ToDevice, gather, replicate, scatter

    cpu = device("cpu")
    lin = nn.Linear(3, 2)
    x = ember.tensor(RNG.standard_normal((5, 3)), dtype=ember.float32)
    chunks = scatter((x, "flag"), [cpu, cpu, cpu], 0)
    assert [c[0].shape[0] for c in chunks] == [2, 2, 1] and all(c[1] == "flag" for c in chunks)
    replicas = [lin] + [replicate(lin, cpu) for _ in range(2)]
    assert replicas[1] is not lin and replicas[1].weight is lin.weight
    out = gather([r(c[0]) for r, c in zip(replicas, chunks)], cpu, 0)
    np.testing.assert_allclose(out.detach().numpy(), lin(x).detach().numpy(), rtol=1e-6)
    out.sum().backward()
    np.testing.assert_allclose(lin.bias.grad.numpy(), [5.0, 5.0])
    y = ember.ones(2, requires_grad=True)
    (_ToDevice.apply(y, cpu) * 3).sum().backward()
    assert y.grad.tolist() == [3.0, 3.0]
