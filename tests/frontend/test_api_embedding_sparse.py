"""nn.Embedding(sparse=True) / F.embedding(sparse=True): ember's gradient is dense and equals torch's
sparse gradient densified (repeated indices, padding_idx, a training step with SGD)."""

from __future__ import annotations

import ember
import numpy as np
import pytest
import torch

W = np.random.default_rng(2).standard_normal((7, 4))
IDX = np.array([[1, 3, 3], [0, 6, 1]])


@pytest.mark.parametrize("padding_idx", [None, 3, -1])
def test_sparse_gradient_equals_torch_densified(padding_idx) -> None:
    g = np.random.default_rng(4).standard_normal(IDX.shape + (4,))
    grads = []
    for m in (ember, torch):
        emb = m.nn.Embedding(7, 4, padding_idx=padding_idx, sparse=True)
        with m.no_grad():
            emb.weight.copy_(m.tensor(W))
        out = emb(m.tensor(IDX))
        out.backward(m.tensor(g))
        grad = emb.weight.grad
        grads.append((out.detach().numpy(), grad.to_dense().numpy() if grad.is_sparse else grad.numpy()))
    assert torch.nn.Embedding(7, 4, sparse=True).sparse
    np.testing.assert_array_equal(grads[0][0], grads[1][0])
    np.testing.assert_allclose(grads[0][1], grads[1][1], rtol=1e-12)


def test_sparse_sgd_step_matches_torch() -> None:
    weights = []
    for m in (ember, torch):
        emb = m.nn.Embedding.from_pretrained(m.tensor(W), freeze=False, sparse=True)
        opt = m.optim.SGD(emb.parameters(), lr=0.5)
        (emb(m.tensor(IDX)) ** 2).sum().backward()
        opt.step()
        weights.append(emb.weight.detach().numpy())
    np.testing.assert_allclose(weights[0], weights[1], rtol=1e-12)


def test_functional_sparse_flag_and_repr() -> None:
    w = ember.tensor(W, requires_grad=True)
    ember.nn.functional.embedding(ember.tensor(IDX), w, sparse=True).sum().backward()
    counts = np.bincount(IDX.reshape(-1), minlength=7)[:, None] * np.ones((1, 4))
    np.testing.assert_array_equal(w.grad.numpy(), counts)
    assert repr(ember.nn.Embedding(7, 4, sparse=True)) == repr(torch.nn.Embedding(7, 4, sparse=True))


def test_scale_grad_by_freq_still_refused() -> None:
    with pytest.raises(ValueError, match="scale_grad_by_freq"):
        ember.nn.functional.embedding(ember.tensor(IDX), ember.tensor(W), scale_grad_by_freq=True)
