"""scatter_reduce (sum, prod, mean, amax, amin; include_self) and scatter(reduce='add'|'multiply'):
values, gradients and errors against torch 2.13, finite differences, and the compiled (LLVM) form."""

from __future__ import annotations

import warnings

import ember
import numpy as np
import pytest
import torch
from ember.testing import gradcheck

REDUCES = ["sum", "prod", "mean", "amax", "amin"]
rng = np.random.default_rng(5)

# (input shape, index, src shape, dim): index smaller than input apart from dim, src larger than index
CASES = [
    ((4, 3), np.array([[0, 2, 2], [0, 0, 1], [3, 0, 1]]), (3, 3), 0),
    ((3, 5), np.array([[4, 4, 0], [1, 1, 1]]), (2, 4), 1),
    ((5,), np.array([1, 1, 3, 1]), (6,), 0),
    ((2, 3, 4), np.array([[[0, 1], [2, 2]], [[1, 1], [0, 0]]]), (2, 2, 3), -1),
]


def _run(module, x, index, src, dim, reduce, include_self):
    return module.scatter_reduce(module.tensor(x), dim, module.tensor(index), module.tensor(src), reduce,
                                 include_self=include_self)


@pytest.mark.parametrize("reduce", REDUCES)
@pytest.mark.parametrize("include_self", [True, False])
@pytest.mark.parametrize("case", range(len(CASES)))
def test_values_match_torch(reduce: str, include_self: bool, case: int) -> None:
    xs, index, ss, dim = CASES[case]
    x, src = rng.standard_normal(xs), rng.standard_normal(ss)
    got = _run(ember, x, index, src, dim, reduce, include_self)
    want = _run(torch, x, index, src, dim, reduce, include_self)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("reduce", REDUCES)
@pytest.mark.parametrize("include_self", [True, False])
def test_integer_values_match_torch(reduce: str, include_self: bool) -> None:
    x = np.array([[-7, 20, 30], [5, -3, 1]])
    src = np.array([[3, -4, 7], [2, 2, -9]])
    index = np.array([[0, 0, 1], [1, 0, 1]])
    got = _run(ember, x, index, src, 0, reduce, include_self)
    want = _run(torch, x, index, src, 0, reduce, include_self)
    assert got.dtype is ember.int64
    np.testing.assert_array_equal(got.numpy(), want.numpy())  # integer mean rounds down, as torch's


@pytest.mark.parametrize("reduce", REDUCES)
@pytest.mark.parametrize("include_self", [True, False])
@pytest.mark.parametrize("case", [0, 3])
def test_gradients_match_torch(reduce: str, include_self: bool, case: int) -> None:
    xs, index, _, dim = CASES[case]
    # src the size of index: torch's backward rejects a larger src (its gradient comes out index-sized);
    # ember's larger-src gradient is covered by the finite-difference test below
    x, src = rng.standard_normal(xs), rng.standard_normal(index.shape)
    w = rng.standard_normal(xs)
    grads = []
    for m in (ember, torch):
        xt, st = m.tensor(x, requires_grad=True), m.tensor(src, requires_grad=True)
        out = m.scatter_reduce(xt, dim, m.tensor(index), st, reduce, include_self=include_self)
        (out * m.tensor(w)).sum().backward()
        grads.append((xt.grad.numpy(), st.grad.numpy()))
    np.testing.assert_allclose(grads[0][0], grads[1][0], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(grads[0][1], grads[1][1], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("reduce", ["amax", "amin", "prod"])
def test_ties_and_zeros_gradients_match_torch(reduce: str) -> None:
    """Ties (amax/amin share the gradient evenly, the input's own value included) and a zero factor."""
    x = np.array([2.0, 1.0, 0.5, 3.0])
    src = np.array([2.0, 2.0, 1.0, 0.0, 4.0, 3.0])
    index = np.array([0, 0, 1, 2, 2, 3])
    grads = []
    for m in (ember, torch):
        xt, st = m.tensor(x, requires_grad=True), m.tensor(src, requires_grad=True)
        out = m.scatter_reduce(xt, 0, m.tensor(index), st, reduce)
        out.backward(m.tensor([1.0, 2.0, 3.0, 4.0]))
        grads.append((out.detach().numpy(), xt.grad.numpy(), st.grad.numpy()))
    for a, b in zip(*grads):
        np.testing.assert_allclose(a, b, rtol=1e-12)


@pytest.mark.parametrize("reduce", REDUCES)
def test_gradcheck_finite_differences(reduce: str) -> None:
    xs, index, ss, dim = CASES[1]
    x = ember.tensor(rng.uniform(0.5, 2.0, xs), requires_grad=True)
    src = ember.tensor(rng.uniform(0.5, 2.0, ss), requires_grad=True)
    idx = ember.tensor(index)
    assert gradcheck(lambda a, b: ember.scatter_reduce(a, dim, idx, b, reduce, include_self=False), (x, src))


def test_scatter_with_reduce_matches_torch() -> None:
    x = np.arange(12.0).reshape(3, 4)
    index = np.array([[0, 1, 2, 0], [0, 0, 0, 0]])
    src = rng.standard_normal((2, 4))
    for reduce in ("add", "multiply"):
        with pytest.warns(UserWarning, match="reduce argument of torch.scatter with Tensor src is deprecated"):
            got = ember.tensor(x).scatter(0, ember.tensor(index), ember.tensor(src), reduce=reduce)
        with warnings.catch_warnings():  # torch warns only once per process
            warnings.simplefilter("ignore", UserWarning)
            want = torch.tensor(x).scatter(0, torch.tensor(index), torch.tensor(src), reduce=reduce)
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-12)
        got = ember.tensor(x).scatter(0, ember.tensor(index), 1.5, reduce=reduce)
        want = torch.tensor(x).scatter(0, torch.tensor(index), 1.5, reduce=reduce)
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-12)
        e, t = ember.tensor(x), torch.tensor(x)
        e.scatter_(1, ember.tensor(index), 2.0, reduce=reduce)
        t.scatter_(1, torch.tensor(index), 2.0, reduce=reduce)
        np.testing.assert_allclose(e.numpy(), t.numpy(), rtol=1e-12)


def test_inplace_scatter_reduce_matches_torch() -> None:
    x, src, index = rng.standard_normal((4, 3)), rng.standard_normal((3, 3)), CASES[0][1]
    e, t = ember.tensor(x), torch.tensor(x)
    assert e.scatter_reduce_(0, ember.tensor(index), ember.tensor(src), "amax", include_self=False) is e
    t.scatter_reduce_(0, torch.tensor(index), torch.tensor(src), "amax", include_self=False)
    np.testing.assert_array_equal(e.numpy(), t.numpy())


def test_errors() -> None:
    x, idx, src = ember.zeros(3, 4), ember.tensor([[0, 1], [2, 0]]), ember.ones(2, 2)
    with pytest.raises(ValueError, match="reduce"):
        ember.scatter_reduce(x, 0, idx, src, "max")
    with pytest.raises(TypeError, match="Expected dtype int64 for index"):
        ember.scatter_reduce(x, 0, idx.float(), src, "sum")
    with pytest.raises(RuntimeError, match="same number of dimensions"):
        ember.scatter_reduce(x, 0, idx.reshape(-1), src, "amax")
    with pytest.raises(RuntimeError, match="self.dtype to be equal to src.dtype"):
        ember.scatter_reduce(x, 0, idx, src.double(), "prod")
    with pytest.raises(RuntimeError):
        torch.scatter_reduce(torch.zeros(3, 4), 0, torch.tensor([[0, 1]]), torch.ones(1, 2).double(), "prod")
    with pytest.raises(IndexError):
        ember.scatter_reduce(x, 0, ember.tensor([[0, 3]]), src, "sum")
    with pytest.raises(ValueError, match="reduce argument must be either add or multiply"):
        x.scatter(0, idx, src, reduce="mean")


@pytest.mark.parametrize("reduce", REDUCES)
def test_compiles_to_kernels(reduce: str) -> None:
    x = rng.standard_normal((4, 3)).astype(np.float32)
    src = rng.standard_normal((3, 3)).astype(np.float32)
    index = ember.tensor(CASES[0][1])

    def fn(a: ember.Tensor, b: ember.Tensor) -> ember.Tensor:
        return ember.scatter_reduce(a, 0, index, b, reduce, include_self=False) * 2

    got = ember.compile(fn)(ember.tensor(x), ember.tensor(src))
    want = torch.tensor(x).scatter_reduce(0, torch.tensor(CASES[0][1]), torch.tensor(src), reduce,
                                          include_self=False) * 2
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-6, atol=1e-6)
