"""RNN / LSTM / GRU and their cells against torch 2.13 with identical weights (through state_dict):
outputs, final states and gradients of inputs, initial states and parameters in float32 and float64,
over num_layers, bias, batch_first, bidirectional, nonlinearity, unbatched and packed inputs; the
packed-sequence helpers; reprs; typed errors."""

from __future__ import annotations

import ember
import ember.nn as nn
import numpy as np
import pytest
import torch
from ember.nn.utils import rnn as ernn
from ember.runtime.errors import ArgumentError, ShapeError
from torch.nn.utils import rnn as trnn

RNG = np.random.default_rng(17)
TOL32 = {"rtol": 1e-4, "atol": 1e-5}


def randn(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape)


LAYER_CASES = [
    ("RNN", (4, 5), {}, (6, 3, 4)),
    ("RNN", (4, 5, 2), {"nonlinearity": "relu", "bias": False, "batch_first": True}, (3, 6, 4)),
    ("LSTM", (4, 5), {}, (6, 3, 4)),
    ("LSTM", (4, 5, 2), {"bidirectional": True, "batch_first": True}, (3, 5, 4)),
    ("LSTM", (4, 3), {"bias": False, "dropout": 0.5}, (5, 2, 4)),  # dropout inactive in eval
    ("GRU", (4, 5), {"bidirectional": True}, (6, 3, 4)),
    ("GRU", (4, 5, 3), {"batch_first": True}, (2, 5, 4)),
    ("GRU", (4, 5), {}, (6, 4)),  # unbatched
    ("LSTM", (4, 5), {"bidirectional": True}, (6, 4)),  # unbatched
    ("LSTM", (4, 6, 2), {"proj_size": 3, "bidirectional": True}, (5, 2, 4)),
]


@pytest.mark.parametrize("cls, args, kwargs, shape", LAYER_CASES)
def test_recurrent_layers_match_torch(compare, cls, args, kwargs, shape) -> None:
    e, t = getattr(nn, cls)(*args, **kwargs), getattr(torch.nn, cls)(*args, **kwargs)
    assert repr(e) == repr(t)
    assert [n for n, _ in e.named_parameters()] == [n for n, _ in t.named_parameters()]
    compare(e, t, randn(*shape), train=False, **TOL32)


def _run_both(e, t, x, hx, packed_lengths=None, dtype=torch.float64):
    """Forward and backward in both libraries; returns the (ember, torch) input/state leaves and outputs."""
    t.to(dtype)
    e.to(ember.float64 if dtype == torch.float64 else ember.float32)
    t.load_state_dict({k: torch.tensor(v.numpy()) for k, v in e.state_dict().items()})
    tx = torch.tensor(x, dtype=dtype, requires_grad=True)
    ex = ember.tensor(tx.detach().numpy(), requires_grad=True)
    th = tuple(torch.tensor(h, dtype=dtype, requires_grad=True) for h in hx)
    eh = tuple(ember.tensor(h.detach().numpy(), requires_grad=True) for h in th)
    tin, ein = tx, ex
    if packed_lengths is not None:
        tin = trnn.pack_padded_sequence(tx, packed_lengths, batch_first=t.batch_first, enforce_sorted=False)
        ein = ernn.pack_padded_sequence(ex, packed_lengths, batch_first=e.batch_first, enforce_sorted=False)
    t_state = th if len(th) == 2 else th[0]
    e_state = eh if len(eh) == 2 else eh[0]
    to, tn = t(tin, t_state)
    eo, en = e(ein, e_state)
    if packed_lengths is not None:
        to, eo = to.data, eo.data
    touts = [to] + (list(tn) if isinstance(tn, tuple) else [tn])
    eouts = [eo] + (list(en) if isinstance(en, tuple) else [en])
    ups = [randn(*o.shape) for o in touts]
    torch.autograd.backward(touts, [torch.tensor(u, dtype=dtype) for u in ups])
    ember.autograd.backward(eouts, [ember.tensor(u).to(eouts[0].dtype) for u in ups])
    return (ex, eh, eouts), (tx, th, touts)


def _assert_same(e_side, t_side, e, t, rtol=1e-9, atol=1e-10) -> None:
    (ex, eh, eouts), (tx, th, touts) = e_side, t_side
    for a, b in zip(eouts, touts):
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=rtol, atol=atol)
    np.testing.assert_allclose(ex.grad.numpy(), tx.grad.numpy(), rtol=rtol, atol=atol)
    for a, b in zip(eh, th):
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=rtol, atol=atol)
    tp = dict(t.named_parameters())
    for name, p in e.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), tp[name].grad.numpy(), rtol=rtol, atol=atol, err_msg=name)


@pytest.mark.parametrize(
    "cls, kwargs",
    [
        ("LSTM", {"num_layers": 2, "bidirectional": True}),
        ("GRU", {"batch_first": True}),
        ("RNN", {"num_layers": 2}),
    ],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_initial_states_and_their_gradients(cls, kwargs, dtype) -> None:
    e, t = getattr(nn, cls)(3, 4, **kwargs), getattr(torch.nn, cls)(3, 4, **kwargs)
    count = kwargs.get("num_layers", 1) * (2 if kwargs.get("bidirectional") else 1)
    hx = [randn(count, 2, 4)] * (2 if cls == "LSTM" else 1)
    x = randn(2, 5, 3) if kwargs.get("batch_first") else randn(5, 2, 3)
    tol = {"rtol": 1e-9, "atol": 1e-10} if dtype == torch.float64 else {"rtol": 1e-4, "atol": 1e-5}
    _assert_same(*_run_both(e, t, x, hx, dtype=dtype), e, t, **tol)


@pytest.mark.parametrize(
    "cls, kwargs",
    [
        ("LSTM", {"num_layers": 2, "bidirectional": True}),
        ("GRU", {"batch_first": True, "bidirectional": True}),
        ("RNN", {"nonlinearity": "relu"}),
    ],
)
def test_packed_sequences_match_torch(cls, kwargs) -> None:
    e, t = getattr(nn, cls)(3, 4, **kwargs), getattr(torch.nn, cls)(3, 4, **kwargs)
    count = kwargs.get("num_layers", 1) * (2 if kwargs.get("bidirectional") else 1)
    hx = [randn(count, 3, 4)] * (2 if cls == "LSTM" else 1)
    x = randn(3, 6, 3) if kwargs.get("batch_first") else randn(6, 3, 3)
    _assert_same(*_run_both(e, t, x, hx, packed_lengths=[4, 6, 2]), e, t)


CELL_CASES = [
    ("RNNCell", {}),
    ("RNNCell", {"nonlinearity": "relu", "bias": False}),
    ("LSTMCell", {}),
    ("GRUCell", {}),
    ("GRUCell", {"bias": False}),
]


@pytest.mark.parametrize("cls, kwargs", CELL_CASES)
def test_cells_match_torch(compare, cls, kwargs) -> None:
    e, t = getattr(nn, cls)(4, 5, **kwargs), getattr(torch.nn, cls)(4, 5, **kwargs)
    assert repr(e) == repr(t)
    compare(e, t, randn(3, 4), **TOL32)
    compare(e, t, randn(4), **TOL32)  # unbatched
    if cls == "LSTMCell":
        return
    compare(e, t, randn(3, 4), randn(3, 5), **TOL32)


def test_lstm_projection_with_initial_states() -> None:
    e = nn.LSTM(3, 5, num_layers=2, proj_size=2, batch_first=True)
    t = torch.nn.LSTM(3, 5, num_layers=2, proj_size=2, batch_first=True)
    assert repr(e) == repr(t)
    assert [n for n, _ in e.named_parameters()] == [n for n, _ in t.named_parameters()]
    _assert_same(*_run_both(e, t, randn(2, 4, 3), [randn(2, 2, 2), randn(2, 2, 5)]), e, t)


def test_lstm_cell_with_state() -> None:
    e, t = nn.LSTMCell(3, 4).double(), torch.nn.LSTMCell(3, 4).double()
    t.load_state_dict({k: torch.tensor(v.numpy()) for k, v in e.state_dict().items()})
    x, h, c = randn(2, 3), randn(2, 4), randn(2, 4)
    eh, ec = e(ember.tensor(x), (ember.tensor(h), ember.tensor(c)))
    th, tc = t(torch.tensor(x), (torch.tensor(h), torch.tensor(c)))
    np.testing.assert_allclose(eh.detach().numpy(), th.detach().numpy(), rtol=1e-10)
    np.testing.assert_allclose(ec.detach().numpy(), tc.detach().numpy(), rtol=1e-10)


def test_dropout_between_layers_in_training() -> None:
    ember.manual_seed(0)
    m = nn.LSTM(3, 4, num_layers=2, dropout=0.5)
    x = ember.tensor(randn(5, 2, 3).astype(np.float32))
    m.eval()
    ref = m(x)[0].detach().numpy()
    m.train()
    out = m(x)[0].detach().numpy()
    assert out.shape == ref.shape
    assert not np.allclose(out, ref)


def test_pack_and_pad_helpers_match_torch() -> None:
    x = randn(5, 3, 2)
    tp = trnn.pack_padded_sequence(torch.tensor(x), [3, 5, 2], enforce_sorted=False)
    ep = ernn.pack_padded_sequence(ember.tensor(x), [3, 5, 2], enforce_sorted=False)
    np.testing.assert_array_equal(ep.data.numpy(), tp.data.numpy())
    for field in ("batch_sizes", "sorted_indices", "unsorted_indices"):
        assert getattr(ep, field).tolist() == getattr(tp, field).tolist()
    tpad, tl = trnn.pad_packed_sequence(tp, batch_first=True, padding_value=-1.0, total_length=6)
    epad, el = ernn.pad_packed_sequence(ep, batch_first=True, padding_value=-1.0, total_length=6)
    np.testing.assert_array_equal(epad.numpy(), tpad.numpy())
    assert el.tolist() == tl.tolist()
    seqs = [randn(n, 2) for n in (4, 2, 3)]
    for side in ("left", "right"):
        want = trnn.pad_sequence([torch.tensor(s) for s in seqs], batch_first=True, padding_side=side)
        got = ernn.pad_sequence([ember.tensor(s) for s in seqs], batch_first=True, padding_side=side)
        np.testing.assert_array_equal(got.numpy(), want.numpy())
    tps = trnn.pack_sequence([torch.tensor(s) for s in seqs], enforce_sorted=False)
    eps = ernn.pack_sequence([ember.tensor(s) for s in seqs], enforce_sorted=False)
    np.testing.assert_array_equal(eps.data.numpy(), tps.data.numpy())
    assert [tuple(u.shape) for u in ernn.unpack_sequence(eps)] == [(4, 2), (2, 2), (3, 2)]


def test_pack_padded_sequence_gradient_flows() -> None:
    x = ember.tensor(randn(4, 2, 3), requires_grad=True)
    packed = ernn.pack_padded_sequence(x, [4, 2])
    packed.data.sum().backward()
    want = np.zeros((4, 2, 3))
    want[:, 0] = 1
    want[:2, 1] = 1
    np.testing.assert_array_equal(x.grad.numpy(), want)


def test_reprs() -> None:
    assert (
        repr(nn.LSTM(10, 20, num_layers=2, batch_first=True))
        == "LSTM(10, 20, num_layers=2, batch_first=True)"
    )
    assert repr(nn.GRU(3, 4, bias=False, dropout=0.25, bidirectional=True)) == repr(
        torch.nn.GRU(3, 4, bias=False, dropout=0.25, bidirectional=True)
    )
    assert repr(nn.RNNCell(3, 4, nonlinearity="relu")) == repr(torch.nn.RNNCell(3, 4, nonlinearity="relu"))


def test_recurrent_errors() -> None:
    m = nn.LSTM(4, 5)
    with pytest.raises(ShapeError, match="input.size\\(-1\\) must be equal to input_size. Expected 4, got 3"):
        m(ember.zeros(2, 3, 3))
    with pytest.raises(ShapeError, match="Expected input to be 2D or 3D, got 4D"):
        m(ember.zeros(1, 2, 3, 4))
    with pytest.raises(ShapeError, match=r"Expected hidden size \(1, 3, 5\), got \[1, 2, 5\]"):
        m(ember.zeros(2, 3, 4), (ember.zeros(1, 2, 5), ember.zeros(1, 2, 5)))
    with pytest.raises(ArgumentError, match="Unknown nonlinearity"):
        nn.RNN(4, 5, nonlinearity="gelu")
    with pytest.raises(ArgumentError, match="proj_size argument is only supported for LSTM"):
        nn.RNNBase("GRU", 4, 5, proj_size=2)
    with pytest.raises(ArgumentError, match="smaller than hidden_size"):
        nn.LSTM(4, 5, proj_size=5)
    with pytest.raises(ArgumentError, match="dropout should be a number in range"):
        nn.GRU(4, 5, dropout=1.5)
    with pytest.raises(ArgumentError, match="sorted in decreasing order"):
        ernn.pack_padded_sequence(ember.zeros(4, 2, 1), [2, 4])
    with pytest.raises(ShapeError, match="inconsistent input_size"):
        nn.GRUCell(4, 5)(ember.zeros(2, 3))


@pytest.mark.parametrize("cls", ["LSTMCell", "GRUCell", "RNNCell"])
def test_cells_first_and_second_derivatives_by_finite_differences(cls) -> None:
    from ember.testing import gradcheck, gradgradcheck

    cell = getattr(nn, cls)(2, 3).double()
    x = ember.tensor(randn(2, 2), requires_grad=True)
    h = ember.tensor(randn(2, 3), requires_grad=True)
    if cls == "LSTMCell":
        c = ember.tensor(randn(2, 3), requires_grad=True)
        fn = lambda a, b, d: cell(a, (b, d))  # noqa: E731
        args = (x, h, c)
    else:
        fn = lambda a, b: cell(a, b)  # noqa: E731
        args = (x, h)
    assert gradcheck(fn, args)
    assert gradgradcheck(fn, args)
