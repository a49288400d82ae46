"""Creation functions against torch 2.13 (values, shapes, dtypes, errors), manual_seed reproducibility and
the thread-count settings."""

from __future__ import annotations

import warnings

import ember
import numpy as np
import pytest
import torch
from ember.runtime.errors import ArgumentError, DTypeError


def same(e, t, exact: bool = True) -> None:
    assert tuple(e.shape) == tuple(t.shape)
    assert e.dtype.name == str(t.dtype).replace("torch.", "")
    if exact:
        np.testing.assert_array_equal(e.numpy(), t.numpy())
    else:
        np.testing.assert_allclose(e.numpy(), t.numpy(), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    "data",
    [
        1,
        2.5,
        True,
        [],
        [1, 2],
        [1.0, 2],
        [True, 1],
        [[1, 2], [3, 4]],
        [[True, False]],
        [[[]]],
        [[1.5], [2.0]],
        np.arange(3),
        np.arange(3.0),
        np.float64(1.5),
        np.int32(3),
        np.array([True]),
        np.zeros((2, 0)),
        (1, 2, 3),
        [np.float32(1), 2],
    ],
)
def test_tensor_infers_dtype_and_copies(data) -> None:
    same(ember.tensor(data), torch.tensor(data))


@pytest.mark.parametrize(
    "dtype", ["float16", "float32", "float64", "int32", "int64", "bool", "uint8", "int8"]
)
def test_tensor_with_dtype(dtype) -> None:
    data = [[0, 1.7], [-2.2, 3]] if dtype not in ("uint8", "bool") else [[0, 1], [2, 3]]
    same(ember.tensor(data, dtype=getattr(ember, dtype)), torch.tensor(data, dtype=getattr(torch, dtype)))


def test_tensor_from_tensors_and_errors() -> None:
    same(
        ember.tensor([ember.tensor(1.0), ember.tensor(2.0)]),
        torch.tensor([torch.tensor(1.0), torch.tensor(2.0)]),
    )
    with pytest.raises(ValueError):
        ember.tensor([[1, 2], [3]])
    with pytest.raises(ValueError):
        torch.tensor([[1, 2], [3]])
    with pytest.raises(TypeError):
        ember.tensor("abc")
    with pytest.raises(RuntimeError, match="floating point"):
        ember.tensor([1, 2], requires_grad=True)
    t = ember.tensor([1.0, 2.0], requires_grad=True)
    assert t.requires_grad and t.is_leaf and t.grad_fn is None


def test_legacy_tensor_constructor() -> None:
    same(ember.Tensor(2, 3), torch.Tensor(2, 3).zero_())
    same(ember.Tensor([1, 2]), torch.Tensor([1, 2]))
    same(ember.Tensor(), torch.Tensor())


@pytest.mark.parametrize("fn", ["zeros", "ones", "empty"])
@pytest.mark.parametrize("size", [((),), (0,), (2, 3), ((2, 3),), ([4],), ((1, 0, 2),)])
def test_filled(fn, size) -> None:
    e, t = getattr(ember, fn)(*size), getattr(torch, fn)(*size)
    if fn == "empty":  # uninitialized memory: only the metadata is comparable
        assert tuple(e.shape) == tuple(t.shape) and e.dtype is ember.float32
    else:
        same(e, t)
    e64 = getattr(ember, fn)(*size, dtype=ember.int64)
    assert e64.dtype is ember.int64 and tuple(e64.shape) == tuple(t.shape)


def test_sizes_from_size_objects_and_negative_sizes() -> None:
    with pytest.raises(TypeError):
        ember.zeros()
    with pytest.raises(TypeError):
        torch.zeros()
    same(ember.zeros(ember.Size([2, 1])), torch.zeros(torch.Size([2, 1])))
    with pytest.raises(ArgumentError, match="negative dimension"):
        ember.zeros(2, -1)
    with pytest.raises(RuntimeError):
        torch.zeros(2, -1)


@pytest.mark.parametrize(
    "value,dtype", [(3, None), (3.5, None), (True, None), (2, "float64"), (7.9, "int32")]
)
def test_full(value, dtype) -> None:
    kw = {} if dtype is None else {"dtype": dtype}
    same(
        ember.full((2, 3), value, **{k: getattr(ember, v) for k, v in kw.items()}),
        torch.full((2, 3), value, **{k: getattr(torch, v) for k, v in kw.items()}),
    )


@pytest.mark.parametrize("args", [(3,), (2, 4), (4, 2), (0,), (1, 0)])
def test_eye(args) -> None:
    same(ember.eye(*args), torch.eye(*args))
    same(ember.eye(*args, dtype=ember.int64), torch.eye(*args, dtype=torch.int64))


@pytest.mark.parametrize(
    "args",
    [(5,), (0,), (2, 7), (7, 2, -2), (5.0,), (0, 1, 0.1), (1, 2.5, 0.3), (-1, 1, 0.25), (0, 10, 3), (3, 3)],
)
def test_arange(args) -> None:
    same(ember.arange(*args), torch.arange(*args), exact=False)
    same(ember.arange(*args, dtype=ember.float64), torch.arange(*args, dtype=torch.float64), exact=False)


def test_arange_and_range_errors_and_range_values() -> None:
    with pytest.raises(ArgumentError):
        ember.arange(0, 5, 0)
    with pytest.raises(RuntimeError):
        torch.arange(0, 5, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch.range is deprecated
        for args in [(1, 4), (0, 1, 0.25), (5, 1, -2)]:
            same(ember.range(*args), torch.range(*args), exact=False)


@pytest.mark.parametrize("args", [(0, 1, 5), (-3, 10, 7), (2, 2, 1), (0, 1, 0), (1, -1, 4)])
def test_linspace_logspace(args) -> None:
    same(ember.linspace(*args), torch.linspace(*args), exact=False)
    same(ember.linspace(*args, dtype=ember.int64), torch.linspace(*args, dtype=torch.int64))
    same(ember.logspace(*args), torch.logspace(*args), exact=False)
    same(ember.logspace(*args, base=2), torch.logspace(*args, base=2), exact=False)


def test_like_variants() -> None:
    x, t = ember.zeros(2, 3, dtype=ember.float64), torch.zeros(2, 3, dtype=torch.float64)
    same(ember.ones_like(x), torch.ones_like(t))
    same(ember.zeros_like(x, dtype=ember.int32), torch.zeros_like(t, dtype=torch.int32))
    same(ember.full_like(x, 4), torch.full_like(t, 4))
    assert ember.empty_like(x).shape == (2, 3) and ember.empty_like(x).dtype is ember.float64
    for fn in ("rand_like", "randn_like"):
        r = getattr(ember, fn)(x)
        assert r.dtype is ember.float64 and tuple(r.shape) == (2, 3)
    ri = ember.randint_like(ember.zeros(4, dtype=ember.int64), 3, 6)
    assert ri.dtype is ember.int64 and set(ri.tolist()) <= {3, 4, 5}
    assert ember.ones_like(x, requires_grad=True).requires_grad


def test_random_shapes_dtypes_ranges() -> None:
    ember.manual_seed(0)
    r = ember.rand(2000)
    assert r.dtype is ember.float32 and 0 <= r.min().item() and r.max().item() < 1
    assert abs(r.numpy().mean() - 0.5) < 0.05
    n = ember.randn(3, 4000, dtype=ember.float64)
    assert n.dtype is ember.float64 and abs(n.numpy().std() - 1) < 0.05
    ri = ember.randint(3, 7, (500,))
    assert ri.dtype is ember.int64 and set(ri.tolist()) == {3, 4, 5, 6}
    assert tuple(ember.randint(10, (2, 2)).shape) == (2, 2)
    p = ember.randperm(50)
    assert p.dtype is ember.int64 and sorted(p.tolist()) == list(range(50))
    g = ember.normal(2.0, 0.5, size=(4000,))
    assert g.dtype is ember.float32 and abs(g.numpy().mean() - 2.0) < 0.05
    gm = ember.normal(ember.tensor([0.0, 100.0]), ember.tensor([1e-3, 1e-3]))
    np.testing.assert_allclose(gm.numpy(), [0.0, 100.0], atol=0.02)
    assert ember.rand(0, 3).shape == (0, 3) and ember.randn(()).shape == ()


def test_random_dtype_errors() -> None:
    with pytest.raises(DTypeError, match="Long"):
        ember.rand(2, dtype=ember.int64)
    with pytest.raises(RuntimeError, match="Long"):
        torch.rand(2, dtype=torch.int64)
    with pytest.raises(ArgumentError):
        ember.randint(5, 5, (2,))


def test_manual_seed_reproducibility() -> None:
    def draws():
        return [
            ember.rand(3).tolist(),
            ember.randn(2, 2).tolist(),
            ember.randint(0, 100, (4,)).tolist(),
            ember.randperm(6).tolist(),
            ember.normal(0.0, 1.0, size=(2,)).tolist(),
        ]

    ember.manual_seed(1234)
    a = draws()
    ember.manual_seed(1234)
    b = draws()
    ember.manual_seed(4321)
    c = draws()
    assert a == b and a != c
    assert ember.initial_seed() == 4321
    state = ember.get_rng_state()
    d = draws()
    ember.set_rng_state(state)
    assert draws() == d


def test_num_threads() -> None:
    before = ember.get_num_threads()
    assert isinstance(before, int) and before >= 1
    try:
        ember.set_num_threads(2)
        assert ember.get_num_threads() == 2
        ember.set_num_threads(1)
        assert ember.get_num_threads() == 1
        with pytest.raises(ValueError):
            ember.set_num_threads(0)
        assert ember.get_num_threads() == 1
    finally:
        ember.set_num_threads(before)
    assert ember.get_num_threads() == before


def test_numel_and_is_tensor() -> None:
    x = ember.zeros(2, 3, 4)
    assert x.numel() == x.nelement() == 24 and ember.numel(x) == 24
    assert ember.is_tensor(x) and not ember.is_tensor(np.zeros(1))
    assert not ember.is_storage(x) and not torch.is_storage(torch.zeros(1))


def test_new_methods_keep_dtype_and_device() -> None:
    x, t = ember.zeros(2, dtype=ember.float64), torch.zeros(2, dtype=torch.float64)
    same(x.new_zeros(2, 3), t.new_zeros(2, 3))
    same(x.new_ones((1, 2)), t.new_ones((1, 2)))
    same(x.new_full((2,), 7), t.new_full((2,), 7))
    same(x.new_tensor([1, 2]), t.new_tensor([1, 2]))
    same(x.new_zeros(2, dtype=ember.int32), t.new_zeros(2, dtype=torch.int32))
    assert x.new_empty(4).shape == (4,) and x.new_empty(4).dtype is ember.float64
