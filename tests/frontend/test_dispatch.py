"""The dispatcher's eager fast path: the memo of attribute checks and type rules must never change a
result or swallow an error, and the tape must not keep outputs alive through reference cycles."""

from __future__ import annotations

import gc
import weakref

import ember
import numpy as np
import pytest
import torch
from ember import dispatch
from ember.compiler.ops import REGISTRY
from ember.runtime.errors import ArgumentError, DimError, ShapeError


def test_scalar_types_are_part_of_the_key():
    x, xt = ember.tensor([1, 2], dtype=ember.int32), torch.tensor([1, 2], dtype=torch.int32)
    for scalar in (1, 1.0, True, 1, 2.5, False):
        got, want = x + scalar, xt + scalar
        assert str(got.dtype).split(".")[-1] == str(want.dtype).split(".")[-1], scalar
        np.testing.assert_array_equal(got.numpy(), want.numpy())


def test_shapes_and_dtypes_are_part_of_the_key():
    for shape in ((2,), (3,), (2, 3), ()):
        for dt in (ember.float32, ember.float64, ember.int64):
            a = ember.ones(shape, dtype=dt)
            out = a + a
            assert tuple(out.shape) == shape and out.dtype is dt


def test_errors_are_raised_every_time():
    a, b = ember.ones(2), ember.ones(3)
    for _ in range(3):
        with pytest.raises(ShapeError):
            a + b
    for _ in range(2):
        with pytest.raises(DimError):
            ember.ones(2, 2).sum(dim=5)


def test_attributes_memoized_after_normalization():
    x = ember.arange(6.0).reshape(2, 3)
    xt = torch.arange(6.0).reshape(2, 3)
    for dim in (-1, 1, 0, -2, (0, 1), [0, 1]):  # the list takes the unhashable path
        np.testing.assert_allclose(x.sum(dim=dim).numpy(), xt.sum(dim=dim).numpy())
        np.testing.assert_allclose(x.sum(dim, True).numpy(), xt.sum(dim, True).numpy())


def test_unknown_attribute_still_rejected_after_a_cached_call():
    x = ember.ones(2)
    x.sum(dim=0)
    with pytest.raises(ArgumentError, match="unexpected argument 'dims'"):
        dispatch.apply(REGISTRY["sum"], (x,), {"dims": 0})


def test_memo_is_bounded():
    x = ember.ones(1)
    for i in range(dispatch._TYPES_MAX + 10):
        x * float(i)
    assert len(dispatch._TYPES) <= dispatch._TYPES_MAX


def test_nan_scalar_works():
    out = ember.ones(2) * float("nan")
    assert np.isnan(out.numpy()).all()


def test_results_are_new_tensors_with_the_promised_dtype():
    a = ember.tensor([1.0, 2.0])
    s = a.sum()  # numpy returns a scalar here; the dispatcher wraps it as a 0-d array
    assert s.shape == () and s.dtype is ember.float32 and isinstance(s._data, np.ndarray)
    assert (a + 0)._data is not a._data


def test_views_share_version_counter():
    a = ember.zeros(2, 3)
    v = a.reshape(6)
    v.add_(1.0)
    assert a._version_number == 1
    np.testing.assert_array_equal(a.numpy(), np.ones((2, 3)))


def test_tape_does_not_keep_outputs_alive_through_a_cycle():
    x = ember.ones(1000, requires_grad=True)
    gc.disable()
    try:
        for make in (lambda: x.exp(), lambda: x * x, lambda: x.tanh(), lambda: x.relu()):
            y = make()
            ref = weakref.ref(y)
            del y
            assert ref() is None, "output kept alive by its own tape node"
    finally:
        gc.enable()


def test_gradient_through_saved_output_still_right_after_alias():
    xe = ember.tensor([0.5, -1.0], dtype=ember.float64, requires_grad=True)
    xt = torch.tensor([0.5, -1.0], dtype=torch.float64, requires_grad=True)
    (xe.exp() * 2.0).tanh().sum().backward()
    (xt.exp() * 2.0).tanh().sum().backward()
    np.testing.assert_allclose(xe.grad.numpy(), xt.grad.numpy(), rtol=1e-12)


def test_requires_grad_recorded_only_in_grad_mode_and_for_float_outputs():
    x = ember.ones(2, requires_grad=True)
    with ember.no_grad():
        assert (x * 2).grad_fn is None
    y = x * 2
    assert y.grad_fn is not None and y.grad_fn.name() == "MulBackward0"
    assert (x > 1).grad_fn is None


def test_composite_ops_decompose_eagerly():
    x = ember.arange(6.0).reshape(2, 3).requires_grad_()
    m = x.mean(dim=1)
    np.testing.assert_allclose(m.detach().numpy(), [1.0, 4.0])
    m.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), np.full((2, 3), 1 / 3), rtol=1e-6)


def test_data_dependent_rules_are_not_memoized():
    one_hot = REGISTRY["one_hot"]
    a = dispatch.apply(one_hot, (ember.tensor([0, 1]),), {})
    b = dispatch.apply(one_hot, (ember.tensor([0, 3]),), {})  # same shape and dtype, more classes
    assert tuple(a.shape) == (2, 2) and tuple(b.shape) == (2, 4)
    x, xt = ember.arange(6.0).reshape(3, 2), torch.arange(6.0).reshape(3, 2)
    for mask in ([True, False, True], [False, False, True], [True, True, True]):
        got = x[ember.tensor(mask)]
        np.testing.assert_array_equal(got.numpy(), xt[torch.tensor(mask)].numpy())
    assert x[0].shape == (2,) and x[ember.tensor([2, 0])].shape == (2, 2)


def test_attribute_types_are_part_of_the_key():
    x = ember.ones(2, 3)
    assert tuple(x.sum(dim=1).shape) == (2,)
    assert tuple(x.sum(dim=(0, 1)).shape) == ()
    for bad in (1.0, True, (0, 1.0)):  # equal to a memoized value, but not an int
        with pytest.raises(ArgumentError):
            x.sum(dim=bad)
