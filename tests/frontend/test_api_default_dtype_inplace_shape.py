"""set_default_dtype / set_default_tensor_type, in-place shape ops, in-place comparisons and normal_,
against torch 2.13."""

from __future__ import annotations

from collections.abc import Iterator

import ember
import numpy as np
import pytest
import torch


@pytest.fixture
def float64_default() -> Iterator[None]:
    ember.set_default_dtype(ember.float64)
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        ember.set_default_dtype(ember.float32)
        torch.set_default_dtype(torch.float32)


CREATIONS = [
    ("zeros", lambda m: m.zeros(2)),
    ("ones", lambda m: m.ones(2, 2)),
    ("rand", lambda m: m.rand(3)),
    ("randn", lambda m: m.randn(3)),
    ("full_float", lambda m: m.full((2,), 1.5)),
    ("full_int", lambda m: m.full((2,), 3)),
    ("arange_int", lambda m: m.arange(3)),
    ("arange_float", lambda m: m.arange(0.0, 1.0, 0.25)),
    ("linspace", lambda m: m.linspace(0, 1, 5)),
    ("logspace", lambda m: m.logspace(0, 1, 5)),
    ("eye", lambda m: m.eye(2)),
    ("tensor_float", lambda m: m.tensor([1.5, 2.0])),
    ("tensor_scalar", lambda m: m.tensor(1.5)),
    ("tensor_int", lambda m: m.tensor([1, 2])),
    ("int_times_float", lambda m: m.tensor([1, 2]) * 1.5),
    ("int_sqrt", lambda m: m.tensor([1, 4]).sqrt()),
    ("int_div", lambda m: m.tensor([1, 4]) / 2),
    ("float32_times_float", lambda m: m.tensor([1, 4], dtype=m.float32) * 1.5),
    ("zeros_like_int", lambda m: m.zeros_like(m.tensor([1, 2]))),
]


@pytest.mark.parametrize("make", [c[1] for c in CREATIONS], ids=[c[0] for c in CREATIONS])
def test_default_dtype_float64_matches_torch(float64_default: None, make) -> None:
    e, t = make(ember), make(torch)
    assert str(e.dtype).split(".")[-1] == str(t.dtype).split(".")[-1]
    assert tuple(e.shape) == tuple(t.shape)


def test_default_dtype_values_and_restore(float64_default: None) -> None:
    assert ember.get_default_dtype() is ember.float64
    e = ember.tensor([1, 2, 3]) * 0.1
    t = torch.tensor([1, 2, 3]) * 0.1
    np.testing.assert_array_equal(e.numpy(), t.numpy())  # computed in float64, bit for bit
    ember.set_default_dtype(ember.float32)
    assert (ember.tensor([1, 2]) * 1.5).dtype is ember.float32  # the dispatcher's memo was cleared
    assert ember.tensor(0.1).dtype is ember.float32


def test_default_dtype_float16() -> None:
    try:
        ember.set_default_dtype(ember.float16)
        assert ember.zeros(1).dtype is ember.float16
        assert ember.tensor([0.5]).dtype is ember.float16
    finally:
        ember.set_default_dtype(ember.float32)


@pytest.mark.parametrize("bad", ["int64", "bool", "int32"])
def test_default_dtype_rejects_non_float(bad: str) -> None:
    with pytest.raises(TypeError) as et:
        torch.set_default_dtype(getattr(torch, bad))
    with pytest.raises(TypeError, match="only floating-point types are supported as the default type") as ee:
        ember.set_default_dtype(getattr(ember, bad))
    assert str(ee.value) == str(et.value)
    assert ember.get_default_dtype() is ember.float32


def test_set_default_tensor_type() -> None:
    msg = "set_default_tensor_type\\(\\) is deprecated"
    try:
        with pytest.warns(UserWarning, match=msg):
            ember.set_default_tensor_type("torch.DoubleTensor")
        assert ember.zeros(1).dtype is ember.float64
        with pytest.warns(UserWarning, match=msg), pytest.raises(TypeError, match="only floating-point"):
            ember.set_default_tensor_type("torch.IntTensor")
        with pytest.warns(UserWarning, match=msg):
            ember.set_default_tensor_type("torch.FloatTensor")
        assert ember.zeros(1).dtype is ember.float32
    finally:
        ember.set_default_dtype(ember.float32)


# ---- in-place shape ops ---------------------------------------------------------------------------------

SHAPE_OPS = [
    ("t_", (), (2, 3)),
    ("t_", (), (4,)),
    ("transpose_", (0, 2), (2, 3, 4)),
    ("transpose_", (-1, 1), (2, 3, 4)),
    ("squeeze_", (), (2, 1, 3, 1)),
    ("squeeze_", (1,), (2, 1, 3, 1)),
    ("squeeze_", (0,), (2, 1, 3, 1)),
    ("unsqueeze_", (0,), (2, 3)),
    ("unsqueeze_", (-1,), (2, 3)),
]


@pytest.mark.parametrize("name,args,shape", SHAPE_OPS)
def test_inplace_shape_op_matches_torch(name: str, args: tuple, shape: tuple) -> None:
    data = np.arange(np.prod(shape), dtype=np.float64).reshape(shape)
    e, t = ember.tensor(data), torch.tensor(data)
    e_view = e[0] if len(shape) > 1 else e[:]
    re_, rt = getattr(e, name)(*args), getattr(t, name)(*args)
    assert re_ is e and rt is t
    assert tuple(e.shape) == tuple(t.shape)
    np.testing.assert_array_equal(e.numpy(), t.numpy())
    assert tuple(e_view.shape) == (shape[1:] if len(shape) > 1 else shape)  # other views keep their shape
    assert e._version[0] == t._version


@pytest.mark.parametrize("name,args,shape", SHAPE_OPS)
def test_inplace_shape_op_gradient(name: str, args: tuple, shape: tuple) -> None:
    data = np.random.default_rng(0).standard_normal(shape)
    weights = np.random.default_rng(1).standard_normal(np.prod(shape))
    grads = []
    for m in (ember, torch):
        leaf = m.tensor(data, requires_grad=True)
        y = leaf * 2
        getattr(y, name)(*args)
        w = m.tensor(weights.reshape(tuple(y.shape)))
        (y * w).sum().backward()
        grads.append(leaf.grad.numpy())
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-12)


def test_inplace_shape_op_errors() -> None:
    leaf = ember.zeros(2, 3, requires_grad=True)
    with pytest.raises(RuntimeError, match="a leaf Variable that requires grad is being used in an in-place"):
        leaf.t_()
    with pytest.raises(IndexError, match="out of range"):
        ember.zeros(2, 1, 3).squeeze_(5)
    with pytest.raises(RuntimeError):
        ember.zeros(2, 3, 4).t_()  # t() expects a tensor with <= 2 dimensions
    with pytest.raises(RuntimeError):
        torch.zeros(2, 3, 4).t_()


def test_inplace_shape_under_no_grad_on_leaf() -> None:
    leaf = ember.zeros(2, 3, requires_grad=True)
    with ember.no_grad():
        leaf.t_()
    assert tuple(leaf.shape) == (3, 2)


# ---- in-place comparisons and normal_ -----------------------------------------------------------------


@pytest.mark.parametrize("name", ["eq_", "ne_", "lt_", "le_", "gt_", "ge_"])
@pytest.mark.parametrize("dtype", ["float32", "int64"])
def test_inplace_comparisons(name: str, dtype: str) -> None:
    a = np.array([[1, 2, 3], [4, 2, 0]])
    b = np.array([1, 3, 0])
    e = ember.tensor(a, dtype=getattr(ember, dtype))
    t = torch.tensor(a, dtype=getattr(torch, dtype))
    getattr(e, name)(ember.tensor(b, dtype=getattr(ember, dtype)))
    getattr(t, name)(torch.tensor(b, dtype=getattr(torch, dtype)))
    assert str(e.dtype).split(".")[-1] == dtype
    np.testing.assert_array_equal(e.numpy(), t.numpy())
    getattr(e, name)(2.5)
    getattr(t, name)(2.5)
    np.testing.assert_array_equal(e.numpy(), t.numpy())


def test_normal_inplace_statistics() -> None:
    ember.manual_seed(0)
    x = ember.zeros(200, 100, dtype=ember.float64)
    assert x.normal_(2.0, 0.5) is x
    assert x.dtype is ember.float64
    values = x.numpy()
    assert abs(values.mean() - 2.0) < 0.01 and abs(values.std() - 0.5) < 0.01
    ember.manual_seed(0)
    again = ember.zeros(200, 100, dtype=ember.float64).normal_(2.0, 0.5)
    np.testing.assert_array_equal(again.numpy(), values)
    with pytest.raises(RuntimeError, match="leaf Variable"):
        ember.zeros(3, requires_grad=True).normal_()


def test_inplace_shape_ops_compile() -> None:
    def fn(x: ember.Tensor) -> ember.Tensor:
        y = x * 2
        y.t_()
        y.unsqueeze_(0)
        return y + 1

    x = ember.tensor(np.arange(12.0).reshape(3, 4))
    got = ember.compile(fn)(x)
    want = (torch.tensor(np.arange(12.0).reshape(3, 4)) * 2).t().unsqueeze(0) + 1
    assert tuple(got.shape) == (1, 4, 3)
    np.testing.assert_array_equal(got.numpy(), want.numpy())


def test_inplace_shape_op_on_a_graph_input_is_refused_when_compiling() -> None:
    def fn(x: ember.Tensor) -> ember.Tensor:
        x.t_()
        return x * 1

    with pytest.raises(ember.TraceError, match="in-place t_ on a graph input"):
        ember.compile(fn)(ember.zeros(3, 4))


def test_inplace_shape_op_bumps_version_seen_by_backward() -> None:
    """A tensor saved for backward and then transposed in place: backward raises, as in torch."""
    for m in (ember, torch):
        leaf = m.ones(2, 3, requires_grad=True)
        y = leaf * 2
        z = y * y  # saves y
        y.t_()
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            z.sum().backward()
