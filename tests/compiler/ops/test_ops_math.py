"""Elementwise ops, driven by the sample table in opinfo_math.py: forward vs torch 2.13 over shapes and
dtypes, gradients vs torch and vs float64 finite differences, second order for the smooth ops, in-place
forms, and typed errors that leave the inputs untouched."""

from __future__ import annotations

import ember
import numpy as np
import pytest
import torch
from ember.compiler.ops import REGISTRY
from ember.runtime.errors import ArgumentError, DTypeError, ShapeError
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
    ops_of,
    uncovered_ops,
)

MODULE = "elementwise"
CASES = cases_of(MODULE)
GRAD = [c for c in CASES if has_grad(c)]
SECOND = [c for c in CASES if c.gradgrad]


def test_every_op_has_samples() -> None:
    """A new op in this module without samples (or without gradient samples) fails here."""
    def needs_grad(op, target: str) -> bool:
        return op.differentiable and not op.composite and any(c.grad for c in CASES if c.op == target)

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


@pytest.mark.parametrize("case", SECOND, ids=str)
def test_second_order_matches_finite_differences(case) -> None:
    check_gradgradcheck(case)


# ---- in-place forms ------------------------------------------------------------------------------

INPLACE = sorted(op.name for op in REGISTRY if op.inplace and op.name in ops_of(MODULE))


def _inplace_args(name: str) -> tuple:
    """Positive float operands keep every op (log, sqrt, pow, asin...) in its domain."""
    n = len(REGISTRY[name].inputs)
    x = np.array([[0.25, 0.5, 0.75], [0.3, 0.6, 0.9]], np.float64)
    others = [np.array([0.5, 0.4, 0.8]), np.array([[0.7], [0.2]])][: n - 1]
    if name.startswith(("bitwise", "logical")):
        mask = np.array([[True, False, True], [False, False, True]])
        return mask, [np.array([True, True, False])][: n - 1]
    if name == "clamp":
        return x, [0.3, 0.7]
    return x, others


@pytest.mark.parametrize("name", INPLACE)
def test_inplace_form_matches_out_of_place_and_bumps_version(name: str) -> None:
    x, others = _inplace_args(name)
    t = ember.tensor(x)
    args = [ember.tensor(o) if isinstance(o, np.ndarray) else o for o in others]
    expected = getattr(ember, name)(t, *args)
    version = t._version_number
    result = getattr(t, name + "_")(*args)
    assert result is t
    assert t._version_number == version + 1
    np.testing.assert_allclose(t.numpy(), expected.numpy())
    tt = torch.tensor(x)
    getattr(tt, name + "_")(*[torch.tensor(o) if isinstance(o, np.ndarray) else o for o in others])
    np.testing.assert_allclose(t.numpy(), tt.numpy(), rtol=1e-12)


@pytest.mark.parametrize("name", ["exp_", "sqrt_", "sigmoid_", "div_", "reciprocal_"])
def test_inplace_refuses_float_result_into_int_tensor(name: str) -> None:
    t = ember.tensor([1, 2, 3])
    args = (ember.tensor([2, 2, 2]),) if name == "div_" else ()
    with pytest.raises(DTypeError, match="can't be cast"):
        getattr(t, name)(*args)
    assert t.tolist() == [1, 2, 3] and t._version_number == 0


def test_inplace_shape_mismatch_is_a_shape_error_and_leaves_input() -> None:
    t = ember.tensor([1.0, 2.0, 3.0])
    with pytest.raises(ShapeError, match=r"\[3\].*\[2, 3\]"):
        t.mul_(ember.ones(2, 3))
    assert t.tolist() == [1.0, 2.0, 3.0]


def test_inplace_on_non_leaf_records_gradient() -> None:
    x = ember.tensor([0.5, 1.0, 2.0], requires_grad=True)
    y = x * 2
    y.exp_()
    y.sum().backward()
    xt = torch.tensor([0.5, 1.0, 2.0], requires_grad=True)
    yt = xt * 2
    yt.exp_()
    yt.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), xt.grad.numpy(), rtol=1e-6)


# ---- errors ---------------------------------------------------------------------------------------

BINARY = sorted(name for name in ops_of(MODULE) if REGISTRY[name].inputs == ("input", "other")
                and name not in ("isclose",))


@pytest.mark.parametrize("name", BINARY)
def test_binary_shape_error_names_op_and_shapes(name: str) -> None:
    a = ember.ones(2, 3, dtype=ember.int64 if name.startswith("bitwise") else ember.float32)
    b = ember.ones(4, dtype=a.dtype)
    with pytest.raises(ShapeError) as info:
        getattr(ember, name)(a, b)
    assert name in str(info.value) and "[2, 3]" in str(info.value) and "[4]" in str(info.value)
    assert a.tolist() == [[1, 1, 1], [1, 1, 1]] and b.tolist() == [1, 1, 1, 1]


@pytest.mark.parametrize("call, error, words", [
    (lambda: ember.abs(ember.tensor([True])), DTypeError, "abs"),
    (lambda: -ember.tensor([True]), DTypeError, "Negation"),
    (lambda: ember.tensor([True]) - ember.tensor([False]), DTypeError, "Subtraction"),
    (lambda: ember.tensor([1, 2]) - ember.tensor([False, True]), DTypeError, "with a bool tensor"),
    (lambda: ember.frac(ember.tensor([1, 2])), DTypeError, "frac"),
    (lambda: ember.floor(ember.tensor([True])), DTypeError, "floor"),
    (lambda: ember.bitwise_and(ember.tensor([1.0]), ember.tensor([1.0])), DTypeError, "bitwise_and"),
    (lambda: ~ember.tensor([1.5]), DTypeError, "bitwise_not"),
    (lambda: ember.where(ember.tensor([1, 0]), ember.ones(2), ember.zeros(2)), DTypeError, "where"),
    (lambda: ember.where(ember.tensor([True, False]), ember.ones(3), 0.0), ShapeError, "where"),
    (lambda: ember.fmod(ember.tensor([True]), ember.tensor([True])), DTypeError, "fmod"),
    (lambda: ember.div(ember.tensor([1, 2]), ember.tensor([0, 1]), rounding_mode="floor"), ArgumentError,
     "ZeroDivisionError"),
    (lambda: ember.remainder(ember.tensor([1, 2]), 0), ArgumentError, "ZeroDivisionError"),
    (lambda: ember.tensor([2, 3]) ** -1, ArgumentError, "negative integer powers"),
    (lambda: ember.div(ember.ones(2), ember.ones(2), rounding_mode="round"), ArgumentError, "rounding_mode"),
    (lambda: ember.clamp(ember.ones(2)), ArgumentError, "min"),
    (lambda: ember.addcdiv(ember.ones(2), ember.tensor([1, 2]), ember.tensor([1, 2])), DTypeError, "addcdiv"),
    (lambda: ember.lerp(ember.tensor([1, 2]), ember.tensor([3, 4]), 0.5), DTypeError, "lerp"),
    (lambda: ember.isclose(ember.ones(2), ember.ones(2, dtype=ember.float64)), DTypeError, "isclose"),
])
def test_bad_input_raises_typed_error(call, error, words: str) -> None:
    with pytest.raises(error, match=words):
        call()


def test_errors_are_also_the_builtin_exceptions_torch_raises() -> None:
    with pytest.raises(RuntimeError):
        ember.add(ember.ones(2, 3), ember.ones(4))
    with pytest.raises(RuntimeError):
        -ember.tensor([True])


def test_equal_and_allclose_return_python_bools() -> None:
    a = ember.tensor([1.0, 2.0, float("nan")])
    assert ember.equal(a[:2], ember.tensor([1.0, 2.0])) is True
    assert ember.equal(ember.ones(2), ember.ones(3)) is False
    assert a.equal(a) is False  # nan != nan, as in torch.equal
    assert ember.allclose(a, a) is False and ember.allclose(a, a, equal_nan=True) is True
    assert ember.allclose(ember.tensor([1.0]), ember.tensor([1.0 + 1e-6])) == torch.allclose(
        torch.tensor([1.0]), torch.tensor([1.0 + 1e-6]))


def test_operators_dispatch_like_torch() -> None:
    x = np.array([[1.5, -2.0, 3.0]], np.float32)
    e, t = ember.tensor(x), torch.tensor(x)
    for fn in (lambda v: v ** 2, lambda v: 2 ** v, lambda v: v // 0.7, lambda v: 7 // v, lambda v: v % 1.3,
               lambda v: -3 % v, abs, lambda v: (v > 0) & (v < 2), lambda v: (v > 0) | (v < -1),
               lambda v: (v > 0) ^ (v < 2), lambda v: ~(v > 0)):
        np.testing.assert_allclose(fn(e).numpy(), fn(t).numpy(), rtol=1e-6)
    e2 = ember.tensor(x)
    e2 **= 2
    np.testing.assert_allclose(e2.numpy(), x ** 2)


@pytest.mark.slow
@pytest.mark.parametrize("case", first_case_per_op(CASES), ids=str)
def test_traced_graph_matches_eager(case) -> None:
    check_traced(case)


# ---- property tests: broadcasting and promotion against torch ------------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_DTYPES = ["bool", "uint8", "int32", "int64", "float32", "float64"]
_shape = st.lists(st.integers(0, 3), min_size=0, max_size=3).map(tuple)


@settings(max_examples=60, deadline=None)
@given(sa=_shape, sb=_shape, da=st.sampled_from(_DTYPES), db=st.sampled_from(_DTYPES),
       op=st.sampled_from(["add", "mul", "maximum", "div", "eq", "remainder", "atan2", "bitwise_or"]))
def test_broadcasting_and_promotion_match_torch(sa, sb, da, db, op) -> None:
    a = np.asarray(np.arange(int(np.prod(sa))).reshape(sa) % 3 + 1).astype(da)
    b = np.asarray(np.arange(int(np.prod(sb))).reshape(sb) % 2 + 1).astype(db)
    try:
        want = getattr(torch, op)(torch.from_numpy(a.copy()), torch.from_numpy(b.copy()))
    except RuntimeError as e:  # torch refuses: ember must refuse with a typed error too
        with pytest.raises((ShapeError, DTypeError)):
            getattr(ember, op)(ember.tensor(a), ember.tensor(b))
        assert "size" in str(e) or "not implemented" in str(e) or "bool" in str(e)
        return
    got = getattr(ember, op)(ember.tensor(a), ember.tensor(b))
    assert tuple(got.shape) == tuple(want.shape)
    assert got.dtype.name == str(want.dtype).replace("torch.", "")
    np.testing.assert_allclose(got.numpy().astype(np.float64), want.numpy().astype(np.float64), rtol=1e-6)


@settings(max_examples=40, deadline=None)
@given(shape=_shape, dt=st.sampled_from(_DTYPES), scalar=st.sampled_from([2, -1.5, True, 0.5]),
       op=st.sampled_from(["add", "mul", "sub", "div", "pow"]))
def test_python_scalars_are_weakly_typed_like_torch(shape, dt, scalar, op) -> None:
    x = np.asarray(np.arange(int(np.prod(shape))).reshape(shape) % 3 + 1).astype(dt)
    try:
        want = getattr(torch, op)(torch.from_numpy(x.copy()), scalar)
    except RuntimeError:
        with pytest.raises((DTypeError, ArgumentError)):
            getattr(ember, op)(ember.tensor(x), scalar)
        return
    got = getattr(ember, op)(ember.tensor(x), scalar)
    assert got.dtype.name == str(want.dtype).replace("torch.", "")
    np.testing.assert_allclose(got.numpy().astype(np.float64), want.numpy().astype(np.float64), rtol=1e-6)
