"""Reductions (sum, mean, prod, amax/amin, argmax/argmin, all/any, var/std, norm, dist, logsumexp,
max/min with dim), driven by opinfo_math.py: forward vs torch 2.13 incl. 0-d, empty and negative dims,
gradients vs torch and float64 finite differences, second order, and typed errors."""

from __future__ import annotations

import ember
import numpy as np
import pytest
import torch
from ember.runtime.errors import ArgumentError, DimError, DTypeError
from opinfo_math import (
    COVERED_BY,
    cases_of,
    check_forward,
    check_grad_vs_torch,
    check_gradcheck,
    check_gradgradcheck,
    check_traced,
    first_case_per_op,
    has_grad,
    uncovered_ops,
)

MODULE = "reduce"
CASES = cases_of(MODULE)
GRAD = [c for c in CASES if has_grad(c)]


def test_every_op_has_samples() -> None:
    """A new op in this module without samples (or without gradient samples) fails here."""
    needs_grad = lambda op, target: op.differentiable and not op.composite  # noqa: E731
    assert uncovered_ops(MODULE, CASES, GRAD, COVERED_BY, needs_grad) == []


@pytest.mark.parametrize("case", CASES, ids=str)
def test_forward_matches_torch(case) -> None:
    check_forward(case)


@pytest.mark.parametrize("case", [c for c in GRAD if c.torch_grad], ids=str)
def test_grad_matches_torch(case) -> None:
    check_grad_vs_torch(case)


@pytest.mark.parametrize("case", [c for c in GRAD if c.fd], ids=str)
def test_grad_matches_finite_differences(case) -> None:
    check_gradcheck(case)


@pytest.mark.parametrize("case", [c for c in CASES if c.gradgrad], ids=str)
def test_second_order_matches_finite_differences(case) -> None:
    check_gradgradcheck(case)


def test_max_with_dim_returns_named_values_and_indices() -> None:
    x = np.array([[1.0, 5.0, 3.0], [7.0, 2.0, 2.0]], np.float32)
    got, want = ember.tensor(x).max(dim=1, keepdim=True), torch.tensor(x).max(dim=1, keepdim=True)
    values, indices = got
    assert values is got.values and indices is got.indices
    np.testing.assert_array_equal(got.values.numpy(), want.values.numpy())
    np.testing.assert_array_equal(got.indices.numpy(), want.indices.numpy())
    assert got.indices.dtype is ember.int64


def test_training_loop_idiom_counts_correct_predictions() -> None:
    logits = np.array([[0.1, 2.0, -1.0], [3.0, 0.5, 0.2], [0.0, 0.1, 0.4]], np.float32)
    y = np.array([1, 2, 2])
    got = (ember.tensor(logits).argmax(dim=1) == ember.tensor(y)).float().sum().cpu().item()
    assert got == (torch.tensor(logits).argmax(dim=1) == torch.tensor(y)).float().sum().item() == 2.0


def test_var_positional_unbiased_and_keepdim() -> None:
    x = np.arange(12, dtype=np.float64).reshape(3, 4) ** 1.5
    for args in ((1, False, True), (0, True), ()):
        np.testing.assert_allclose(ember.tensor(x).var(*args).numpy(), torch.tensor(x).var(*args).numpy())
        np.testing.assert_allclose(ember.tensor(x).std(*args).numpy(), torch.tensor(x).std(*args).numpy())


@pytest.mark.parametrize("name", ["sum", "mean", "prod", "amax", "amin", "all", "any", "var", "std",
                                  "logsumexp", "norm"])
def test_bad_dim_is_an_index_error_naming_the_range(name: str) -> None:
    x = ember.ones(2, 3)
    message = r"Dimension out of range \(expected to be in range of \[-2, 1\], but got 2\)"
    with pytest.raises(DimError, match=message):
        getattr(ember, name)(x, dim=2)
    with pytest.raises(IndexError):
        getattr(ember, name)(x, dim=-3)
    assert x.tolist() == [[1.0] * 3] * 2


@pytest.mark.parametrize("call, error, words", [
    (lambda: ember.argmax(ember.ones(2, 3), dim=5), DimError, "argmax"),
    (lambda: ember.max(ember.ones(2, 3), 2), DimError, "max"),
    (lambda: ember.sum(ember.ones(2, 3), dim=(0, 0)), DimError, "multiple times"),
    (lambda: ember.mean(ember.tensor([1, 2])), DTypeError, "mean"),
    (lambda: ember.var(ember.tensor([1, 2])), DTypeError, "floating point"),
    (lambda: ember.norm(ember.tensor([1, 2])), DTypeError, "norm"),
    (lambda: ember.norm(ember.ones(2), p="nuc"), ArgumentError, "norm"),
    (lambda: ember.amax(ember.ones(0, 3), dim=0), DimError, "non-zero size"),
    (lambda: ember.ones(0, 3).max(), ArgumentError, "numel\\(\\) == 0"),
    (lambda: ember.argmax(ember.ones(0, 3)), DimError, "argmax"),
    (lambda: ember.sum(ember.ones(2), dim=1.5), ArgumentError, "dim"),
])
def test_bad_input_raises_typed_error(call, error, words: str) -> None:
    with pytest.raises(error, match=words):
        call()


def test_sum_keeps_torch_dtypes() -> None:
    for dt in ("bool", "int32", "int64", "float32", "float64"):
        x = np.ones((2, 2), dtype=dt)
        got, want = ember.tensor(x).sum().dtype, torch.tensor(x).sum().dtype
        assert str(got).split(".")[-1] == str(want).split(".")[-1]


@pytest.mark.slow
@pytest.mark.parametrize("case", first_case_per_op(CASES), ids=str)
def test_traced_graph_matches_eager(case) -> None:
    check_traced(case)


# ---- property test: any dims, keepdim, shapes (incl. size-1 and 0-d) against torch ------------------

from hypothesis import assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@st.composite
def _reduction(draw):
    shape = tuple(draw(st.lists(st.integers(1, 3), min_size=0, max_size=3)))
    nd = len(shape)
    dims = draw(st.lists(st.integers(-nd, nd - 1), unique_by=lambda d: d % nd, max_size=nd)) if nd else []
    op = draw(st.sampled_from(["sum", "mean", "amax", "amin", "prod", "var", "std", "logsumexp", "norm",
                               "all", "any"]))
    return shape, tuple(dims), draw(st.booleans()), op


@settings(max_examples=80, deadline=None)
@given(spec=_reduction())
def test_reductions_over_any_dims_match_torch(spec) -> None:
    shape, dims, keepdim, op = spec
    x = np.random.default_rng(len(shape) + len(dims)).uniform(0.5, 2.0, size=shape)
    if not dims and op == "logsumexp":  # its dim is required
        dims = tuple(range(len(shape))) or (0,)
    reduced = int(np.prod([shape[d] for d in dims])) if dims and shape else int(np.prod(shape))
    assume(op not in ("var", "std") or reduced > 1)  # torch warns about degrees of freedom <= 0
    kwargs = {"dim": dims, "keepdim": keepdim} if dims else {}
    assume(op not in ("prod", "all", "any") or len(dims) <= 1)  # torch takes one dim there
    assume(op != "norm" or len(dims) <= 2)  # torch.norm's 'fro' is a matrix norm: at most two dims
    torch_kwargs = {"dim": dims[0], "keepdim": keepdim} if op in ("prod", "all", "any") and dims else kwargs
    want = getattr(torch, op)(torch.tensor(x), **torch_kwargs)
    got = getattr(ember, op)(ember.tensor(x), **kwargs)
    assert tuple(got.shape) == tuple(want.shape), f"{op}{shape} dims={dims} keepdim={keepdim}"
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-9, equal_nan=True)
