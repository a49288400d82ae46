"""Basic and advanced indexing (getitem and setitem) against torch 2.13, with gradients, plus the in-place
fills (fill_, zero_, copy_, masked_fill_) and their autograd/version behaviour."""

from __future__ import annotations

import ember
import numpy as np
import pytest
import torch
from ember.runtime.errors import AutogradError

A = np.arange(60, dtype=np.float64).reshape(3, 4, 5) / 7.0


def _idx(lib, index):
    """Turn the lists/arrays marked by ``T(...)`` into tensors of ``lib``."""
    if isinstance(index, tuple):
        return tuple(_idx(lib, i) for i in index)
    if isinstance(index, _T):
        return lib.tensor(index.value)
    return index


class _T:
    """Marks an index part that becomes a tensor of the library under test."""

    def __init__(self, value) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"T({np.asarray(self.value).tolist()})"


GET_CASES = [
    0,
    -1,
    (1, 2),
    (1, -2, 3),
    slice(None),
    slice(1, None),
    slice(-2, None),
    slice(None, -1),
    slice(0, 3, 2),
    slice(5, 10),
    slice(-10, 2),
    (slice(None), 1),
    (Ellipsis, 0),
    (0, Ellipsis),
    (None,),
    (None, 1, None),
    (Ellipsis, None),
    (slice(None), None, slice(1, 3)),
    (1, slice(None), slice(None, None, 3)),
    [0, 2],
    _T(np.array([[0, 1], [2, 2]])),
    [-1, 0],
    (slice(None), [1, 3]),
    ([0, 2], [1, 3]),
    ([0, 2], slice(None), [4, 0]),
    (slice(None), [0, 1], [2, 3]),
    ([[0], [2]], [1, 2, 3]),
    (1, [0, 3]),
    (Ellipsis, [4, 4]),
    _T(A.sum(axis=(1, 2)) > 100),
    _T(A > 3),
    (_T(A[:, 0, 0] > 2), 1),
    (slice(None), _T(A[0, :, 0] > 1)),
    _T(np.array([2, 0])),
    _T(np.array(1)),
    (_T(np.array([0, 1], dtype=np.int32)), 2),
    True,
    False,
    (None, True),
    ([True, False, True],),
    (_T(np.array([[0, 1]])), Ellipsis, None),
]


@pytest.mark.parametrize("index", GET_CASES, ids=lambda i: repr(i)[:40])
def test_getitem_values_and_grads(index) -> None:
    outs, grads = [], []
    for lib in (ember, torch):
        x = lib.tensor(A, requires_grad=True)
        y = x[_idx(lib, index)]
        outs.append(y.detach().numpy().copy())
        w = lib.tensor(np.cos(np.arange(y.numel()).reshape(tuple(y.shape))))
        (y * w).sum().backward()
        grads.append(x.grad.numpy())
    assert outs[0].shape == outs[1].shape
    np.testing.assert_allclose(outs[0], outs[1])
    np.testing.assert_allclose(grads[0], grads[1])


def test_getitem_on_0d_and_empty() -> None:
    for lib in (ember, torch):
        s = lib.tensor(3.5)
        assert (
            s[None].shape == (1,) and s[...].shape == () and s[True].shape == (1,) and s[False].shape == (0,)
        )
        e = lib.zeros(0, 3)
        assert e[:, 1].shape == (0,) and e[1:].shape == (0, 3) and e[e > 0].shape == (0,)


def test_getitem_dtypes() -> None:
    for dt in ("bool", "int32", "int64", "float16", "float32"):
        x = ember.tensor(A > 2).to(dt)
        t = torch.tensor(A > 2).to(getattr(torch, dt))
        assert x[1, ::2].dtype.name == dt
        np.testing.assert_array_equal(x[[0, 2], 1].numpy(), t[[0, 2], 1].numpy())


@pytest.mark.parametrize(
    "index,err",
    [
        (3, IndexError),
        (-4, IndexError),
        ((0, 0, 0, 0), IndexError),
        (1.5, IndexError),
        (_T(np.array([0.0, 1.0])), IndexError),
        (slice(None, None, -1), ValueError),
        ([5], IndexError),
    ],
)
def test_getitem_errors(index, err) -> None:
    x = ember.tensor(A)
    with pytest.raises(err):
        x[_idx(ember, index)]
    with pytest.raises(err):
        torch.tensor(A)[_idx(torch, index)]


SET_CASES = [
    (0, 5.0),
    ((1, 2), -1.0),
    (slice(None), 0.5),
    ((slice(None), 1), np.arange(5.0)),
    ((Ellipsis, 2), 7),
    ([0, 2], np.ones((4, 5))),
    ((slice(None), [1, 3], 0), 9.0),
    (_T(A > 4), -2.0),
    (_T(A[:, 0, 0] > 2), np.arange(20.0).reshape(4, 5)),
    ((None, 1), np.arange(5.0)),
    ((slice(1, None), slice(None, None, 2)), np.array([[[1.0]], [[2.0]]])),
    (_T(np.array([[0, 1], [1, 2]])), 3.0),
    (slice(5, 9), 1.0),
]


@pytest.mark.parametrize("index,value", SET_CASES, ids=lambda i: repr(i)[:30])
def test_setitem(index, value) -> None:
    x, t = ember.tensor(A), torch.tensor(A)
    xv = ember.tensor(value) if isinstance(value, np.ndarray) else value
    tv = torch.tensor(value) if isinstance(value, np.ndarray) else value
    x[_idx(ember, index)] = xv
    t[_idx(torch, index)] = tv
    np.testing.assert_allclose(x.numpy(), t.numpy())
    assert x._version_number == 1


def test_setitem_casts_value_and_into_int_tensor() -> None:
    x, t = ember.zeros(2, 3, dtype=ember.int64), torch.zeros(2, 3, dtype=torch.int64)
    x[0] = 2.7
    t[0] = 2.7
    x[1, :2] = ember.tensor([1.9, -1.2])
    t[1, :2] = torch.tensor([1.9, -1.2])
    np.testing.assert_array_equal(x.numpy(), t.numpy())
    assert x.dtype is ember.int64
    b = ember.zeros(3, dtype=ember.bool)
    b[1] = True
    assert b.tolist() == [False, True, False]


def test_setitem_through_a_view_writes_the_base() -> None:
    x = ember.zeros(3, 4)
    row = x[1]
    row[2] = 5.0
    x[2][1:3] = ember.tensor([1.0, 2.0])
    t = torch.zeros(3, 4)
    t[1][2] = 5.0
    t[2][1:3] = torch.tensor([1.0, 2.0])
    np.testing.assert_array_equal(x.numpy(), t.numpy())
    assert row._version_number == x._version_number == 2


def test_setitem_shape_mismatch_is_typed_and_leaves_input_untouched() -> None:
    x = ember.tensor(A)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        x[0] = ember.ones(3, 3)
    with pytest.raises(RuntimeError):
        torch.tensor(A)[0] = torch.ones(3, 3)
    np.testing.assert_array_equal(x.numpy(), A)
    assert x._version_number == 0


def test_setitem_autograd() -> None:
    grads = []
    for lib in (ember, torch):
        w = lib.tensor(A, requires_grad=True)
        v = lib.tensor(np.arange(5.0), requires_grad=True)
        y = w + 2  # not w * 2: ember's mul records its output's version (reported)
        y[1, [0, 2]] = v
        y[0] = 3.0
        (y * y).sum().backward()
        grads.append((w.grad.numpy(), v.grad.numpy()))
    np.testing.assert_allclose(grads[0][0], grads[1][0])
    np.testing.assert_allclose(grads[0][1], grads[1][1])


def test_setitem_on_leaf_requiring_grad_raises() -> None:
    w = ember.ones(3, requires_grad=True)
    with pytest.raises(AutogradError, match="leaf Variable"):
        w[0] = 2.0
    with pytest.raises(RuntimeError, match="leaf Variable"):
        torch.ones(3, requires_grad=True)[0] = 2.0
    assert w.tolist() == [1.0, 1.0, 1.0]
    with ember.no_grad():
        w[0] = 2.0
    assert w.tolist() == [2.0, 1.0, 1.0]


# ---- fill_, zero_, copy_ -----------------------------------------------------------------------------------


def test_fill_zero_copy_match_torch() -> None:
    for lib in (ember, torch):
        x = lib.ones(2, 3, dtype=lib.int32)
        x.fill_(7)
        assert x.tolist() == [[7] * 3] * 2
        x.zero_()
        assert x.tolist() == [[0] * 3] * 2
        x.copy_(lib.tensor([1.7, -2.2, 3.0]))
        assert x.tolist() == [[1, -2, 3]] * 2 and x.dtype == lib.int32
        x[0].fill_(lib.tensor(5))
        assert x.tolist() == [[5] * 3, [1, -2, 3]]
    y = ember.zeros(2, 2)
    assert y.fill_(1.5) is y and y._version_number == 1


def test_copy_autograd_flows_to_src() -> None:
    grads = []
    for lib in (ember, torch):
        s = lib.tensor([1.0, 2.0, 3.0], requires_grad=True)
        y = lib.zeros(2, 3)
        y.copy_(s * 2)
        (y * lib.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])).sum().backward()
        grads.append(s.grad.numpy())
    np.testing.assert_allclose(grads[0], grads[1])


def test_fill_rejects_non_scalar_tensor() -> None:
    x = ember.zeros(3)
    with pytest.raises(RuntimeError, match="0-dimension"):
        x.fill_(ember.ones(2))
    assert x._version_number == 0


def test_setitem_with_list_and_array_values() -> None:
    x, t = ember.zeros(2, 3, dtype=ember.int64), torch.zeros(2, 3, dtype=torch.int64)
    x[0] = [7, 8, 9]
    t[0] = torch.tensor([7, 8, 9])
    x[1] = np.array([1.5, 2.5, 3.5])
    t[1] = torch.tensor([1.5, 2.5, 3.5])
    np.testing.assert_array_equal(x.numpy(), t.numpy())
    with pytest.raises(RuntimeError, match="shape mismatch"):
        x[0] = [1, 2]
    np.testing.assert_array_equal(x.numpy(), t.numpy())


@pytest.mark.parametrize("accumulate", [False, True])
def test_index_put(accumulate) -> None:
    idx = np.array([0, 2, 2]) if accumulate else np.array([0, 2])
    vals = np.arange(len(idx) * 3, dtype=np.float64).reshape(len(idx), 3)
    outs, grads = [], []
    for lib in (ember, torch):
        x = lib.tensor(A[0, :3, :3], requires_grad=True)
        v = lib.tensor(vals, requires_grad=True)
        y = x.index_put((lib.tensor(idx),), v, accumulate=accumulate)
        (y * y).sum().backward()
        outs.append(y.detach().numpy())
        grads.append((x.grad.numpy(), v.grad.numpy()))
        z = lib.zeros(3, 3, dtype=lib.float64)
        z.index_put_(
            (lib.tensor(idx), lib.tensor(idx)), lib.tensor(1.0, dtype=lib.float64), accumulate=accumulate
        )
        outs.append(z.numpy())
    np.testing.assert_allclose(outs[0], outs[2])
    np.testing.assert_allclose(outs[1], outs[3])
    np.testing.assert_allclose(grads[0][0], grads[1][0])
    np.testing.assert_allclose(grads[0][1], grads[1][1])


def test_iteration_and_len() -> None:
    x = ember.arange(6).reshape(2, 3)
    assert len(x) == 2 and [r.tolist() for r in x] == [[0, 1, 2], [3, 4, 5]]
    with pytest.raises(TypeError):
        len(ember.tensor(1))
