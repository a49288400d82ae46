"""Sorting and scans (argsort, sort, topk, kthvalue, median, mode, cumsum, cumprod, take_along_dim),
driven by opinfo_math.py: values and indices vs torch 2.13, gradients through the selected values vs
torch and float64 finite differences, and typed errors."""

from __future__ import annotations

import ember
import numpy as np
import pytest
import torch
from ember.runtime.errors import ArgumentError, DimError, DTypeError, ShapeError
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

MODULE = "sorting"
CASES = cases_of(MODULE)
GRAD = [c for c in CASES if has_grad(c)]


def test_every_op_has_samples() -> None:
    """A new op in this module without samples (or without gradient samples) fails here."""
    assert uncovered_ops(MODULE, CASES, GRAD, COVERED_BY, lambda op, target: op.differentiable) == []


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


def test_sort_results_are_named_tuples() -> None:
    x = np.array([[3.0, 1.0, 2.0]], np.float32)
    for name, args in (("sort", ()), ("topk", (2,)), ("kthvalue", (2,)), ("median", (1,)), ("mode", ())):
        got, want = getattr(ember.tensor(x), name)(*args), getattr(torch.tensor(x), name)(*args)
        assert type(got).__name__ == type(want).__name__ == name
        np.testing.assert_array_equal(got.values.numpy(), want.values.numpy())
        np.testing.assert_array_equal(got.indices.numpy(), want.indices.numpy())


def test_cumsum_in_place_bumps_version() -> None:
    x = ember.tensor([1.0, 2.0, 3.0])
    x.cumsum_(0)
    assert x.tolist() == [1.0, 3.0, 6.0] and x._version_number == 1
    with pytest.raises(DTypeError):
        ember.tensor([1, 2]).cumsum_(0, dtype=ember.float32)


@pytest.mark.parametrize("call, error, words", [
    (lambda: ember.sort(ember.ones(2, 3), dim=2), DimError, "range"),
    (lambda: ember.topk(ember.ones(2, 3), 4), ArgumentError, "k out of range"),
    (lambda: ember.kthvalue(ember.ones(3), 0), ArgumentError, "k out of range"),
    (lambda: ember.kthvalue(ember.ones(3), 4), ArgumentError, "k out of range"),
    (lambda: ember.cumsum(ember.ones(2, 3), dim=-3), DimError, "range"),
    (lambda: ember.median(ember.ones(2, 0), dim=1), ArgumentError, "non-zero size"),
    (lambda: ember.take_along_dim(ember.ones(2, 3), ember.tensor([[0]]).int(), dim=1), DTypeError, "int64"),
    (lambda: ember.take_along_dim(ember.ones(2, 3), ember.tensor([[0], [1], [1]]), dim=1), ShapeError,
     r"\[3, 1\].*\[2, 3\]"),
])
def test_bad_input_raises_typed_error(call, error, words: str) -> None:
    with pytest.raises(error, match=words):
        call()


def test_gradient_of_repeated_indices_accumulates() -> None:
    x = ember.tensor([[1.0, 2.0, 3.0]], dtype=ember.float64, requires_grad=True)
    idx = ember.tensor([[2, 2, 0, 2]])
    ember.take_along_dim(x, idx, dim=1).sum().backward()
    xt = torch.tensor([[1.0, 2.0, 3.0]], dtype=torch.float64, requires_grad=True)
    torch.take_along_dim(xt, torch.tensor([[2, 2, 0, 2]]), dim=1).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), xt.grad.numpy())


@pytest.mark.slow
@pytest.mark.parametrize("case", first_case_per_op(CASES), ids=str)
def test_traced_graph_matches_eager(case) -> None:
    check_traced(case)
