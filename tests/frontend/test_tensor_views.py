"""PyTorch's view semantics: from_numpy and the view ops share memory with their base (writes either way
are seen by both, the version counter is shared); copying ops do not; view() refuses incompatible strides."""

from __future__ import annotations

import ember
import numpy as np
import pytest
import torch
from ember.runtime.errors import ShapeError

VIEW_OPS = {
    "view": lambda x: x.view(3, 4),
    "view_-1": lambda x: x.view(-1),
    "reshape_contiguous": lambda x: x.reshape(2, 2, 3),
    "squeeze": lambda x: x.unsqueeze(0).squeeze(0),
    "squeeze_all": lambda x: x.view(1, 4, 1, 3).squeeze(),
    "unsqueeze": lambda x: x.unsqueeze(-1),
    "transpose": lambda x: x.transpose(0, 1),
    "t": lambda x: x.t(),
    "T": lambda x: x.T,
    "permute": lambda x: x.permute(1, 0),
    "narrow": lambda x: x.narrow(1, 1, 2),
    "select": lambda x: x.select(1, 2),
    "slice": lambda x: x[1:, ::2],
    "slice_negative": lambda x: x[-3:-1, -2:],
    "int_index": lambda x: x[2],
    "ellipsis_none": lambda x: x[..., None, 1],
    "unbind": lambda x: x.unbind(0)[3],
    "chunk": lambda x: x.chunk(2, 1)[1],
    "split": lambda x: x.split([1, 3], 0)[1],
    "flatten_contiguous": lambda x: x.flatten(),
    "movedim": lambda x: ember.movedim(x, 0, 1) if isinstance(x, ember.Tensor) else torch.movedim(x, 0, 1),
    "detach": lambda x: x.detach(),
    "chain": lambda x: x.t()[1:].unsqueeze(0).squeeze(0).narrow(0, 0, 2),
}


def _base() -> tuple[np.ndarray, ember.Tensor, torch.Tensor]:
    a = np.arange(12.0, dtype=np.float32).reshape(4, 3)
    return a, ember.tensor(a), torch.tensor(a)


@pytest.mark.parametrize("name", list(VIEW_OPS))
def test_view_shares_memory_and_version(name) -> None:
    fn = VIEW_OPS[name]
    _, x, tx = _base()
    v, tv = fn(x), fn(tx)
    np.testing.assert_array_equal(v.numpy(), tv.numpy())
    assert v._version is x._version
    # a write through the view shows in the base, and the other way round, exactly as in torch
    v.mul_(10)
    tv.mul_(10)
    np.testing.assert_array_equal(x.numpy(), tx.numpy())
    x.add_(1)
    tx.add_(1)
    np.testing.assert_array_equal(v.numpy(), tv.numpy())
    assert x._version_number == 2 and v._version_number == 2
    assert v._version_number == tv._version


@pytest.mark.parametrize(
    "name,fn",
    [
        ("flip", lambda x: x.flip(0)),
        ("roll", lambda x: x.roll(1)),
        ("repeat", lambda x: x.repeat(1, 1)),
        ("advanced", lambda x: x[[0, 2]]),
        ("mask", lambda x: x[x > 3]),
        ("clone", lambda x: x.clone()),
        ("reshape_noncontiguous", lambda x: x.t().reshape(-1)),
        ("contiguous", lambda x: x.t().contiguous()),
        ("cat", lambda x: ember.cat([x]) if isinstance(x, ember.Tensor) else torch.cat([x])),
        (
            "index_select",
            lambda x: x.index_select(
                0, ember.tensor([1]) if isinstance(x, ember.Tensor) else torch.tensor([1])
            ),
        ),
    ],
)
def test_copying_ops_do_not_share(name, fn) -> None:
    _, x, tx = _base()
    y, ty = fn(x), fn(tx)
    y.zero_()
    ty.zero_()
    np.testing.assert_array_equal(x.numpy(), tx.numpy())
    assert x._version_number == 0


def test_from_numpy_shares_memory_both_ways() -> None:
    a = np.zeros((2, 3), dtype=np.float64)
    t = ember.from_numpy(a)
    assert t.dtype is ember.float64
    a[0, 1] = 5.0
    assert t[0, 1].item() == 5.0
    t[1, 2] = 7.0
    assert a[1, 2] == 7.0
    t.add_(1)
    np.testing.assert_array_equal(a, t.numpy())
    assert t.numpy() is a
    v = t.view(6)
    v[0] = -1
    assert a[0, 0] == -1


def test_from_numpy_keeps_dtypes_and_rejects_others() -> None:
    for dt in ("bool", "uint8", "int8", "int16", "int32", "int64", "float16", "float32", "float64"):
        t = ember.from_numpy(np.zeros(2, dtype=dt))
        assert t.dtype.name == str(torch.from_numpy(np.zeros(2, dtype=dt)).dtype).replace("torch.", "")
    with pytest.raises(TypeError):
        ember.from_numpy(np.zeros(2, dtype=np.complex64))
    with pytest.raises(TypeError):
        ember.from_numpy([1, 2])


def test_as_tensor_shares_numpy_memory_and_tensor_identity() -> None:
    a = np.ones(3, dtype=np.float32)
    t = ember.as_tensor(a)
    a[0] = 3
    assert t[0].item() == 3
    assert ember.as_tensor(t) is t
    c = ember.tensor(a)
    a[1] = 9
    assert c[1].item() == 1


@pytest.mark.parametrize(
    "make,shape",
    [
        (lambda x: x.t(), (12,)),
        (lambda x: x.t(), (-1,)),
        (lambda x: x[:, ::2], (8,)),
        (lambda x: x.permute(1, 0).unsqueeze(0), (2, 6)),
    ],
)
def test_view_refuses_incompatible_strides(make, shape) -> None:
    _, x, tx = _base()
    with pytest.raises(RuntimeError) as t_err:
        make(tx).view(*shape)
    with pytest.raises(ShapeError) as e_err:
        make(x).view(*shape)
    assert str(e_err.value) == str(t_err.value)
    np.testing.assert_array_equal(make(x).reshape(*shape).numpy(), make(tx).reshape(*shape).numpy())


@pytest.mark.parametrize(
    "make,shape",
    [
        (lambda x: x.t(), (3, 1, 4)),
        (lambda x: x.t(), (1, 3, 4)),
        (lambda x: x[1:3], (6,)),
        (lambda x: x[:, 1:2], (4,)),
        (lambda x: x.unsqueeze(1).t() if False else x[::2], (2, 1, 3)),
    ],
)
def test_view_allows_compatible_strides(make, shape) -> None:
    _, x, tx = _base()
    v, tv = make(x).view(*shape), make(tx).view(*shape)
    np.testing.assert_array_equal(v.numpy(), tv.numpy())
    v.fill_(0) if hasattr(v, "fill_") else v.mul_(0)
    tv.mul_(0)
    np.testing.assert_array_equal(x.numpy(), tx.numpy())


def test_expand_is_a_readonly_view() -> None:
    x = ember.tensor([[1.0], [2.0]])
    e = x.expand(2, 3)
    assert np.shares_memory(e.numpy(), x.numpy())
    assert e._version is x._version
    x.mul_(2)
    np.testing.assert_array_equal(e.numpy(), [[2.0] * 3, [4.0] * 3])
    with pytest.raises(RuntimeError):
        e.add_(1)
    np.testing.assert_array_equal(x.numpy(), [[2.0], [4.0]])


def test_contiguous_returns_self_when_contiguous() -> None:
    _, x, _ = _base()
    assert x.contiguous() is x
    assert x.is_contiguous() and not x.t().is_contiguous()
    c = x.t().contiguous()
    assert c.is_contiguous() and c.stride() == torch.tensor(x.numpy()).t().contiguous().stride()
    assert x.t().stride() == torch.tensor(x.numpy()).t().stride()


def test_saved_view_modified_in_place_fails_backward() -> None:
    """The version counter is shared, so modifying the base invalidates a view saved for backward."""
    w = ember.ones(3, requires_grad=True)
    base = ember.arange(6.0)
    v = base[:3]
    y = (w * v).sum()
    base.add_(1)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.backward()


def test_view_grads_flow_to_base() -> None:
    a = np.arange(12.0).reshape(3, 4)
    grads = []
    for lib in (ember, torch):
        x = lib.tensor(a, requires_grad=True)
        y = x.t()[1:3].unsqueeze(0).squeeze(0).narrow(1, 1, 2).reshape(-1)
        (y * lib.arange(4.0, dtype=lib.float64)).sum().backward()
        grads.append(x.grad.numpy())
    np.testing.assert_array_equal(grads[0], grads[1])


def _inplace_on_views(lib, a: np.ndarray):
    x = lib.tensor(a, requires_grad=True)
    y = x * 1.5
    v = y[1:, ::2]
    v.mul_(3)
    y.transpose(0, 1)[1].add_(y[2, 0])
    s = lib.zeros(4, dtype=lib.float64)
    s[1:3].copy_(x[0, :2] * 2)  # a base outside autograd joins it through its view
    loss = (y * lib.tensor(np.cos(a))).sum() + (v * v).sum() + (s * lib.arange(4.0, dtype=lib.float64)).sum()
    loss.backward()
    return y.detach().numpy(), v.detach().numpy(), s.detach().numpy(), x.grad.numpy()


def test_inplace_on_views_in_autograd_matches_torch() -> None:
    a = np.arange(12.0).reshape(3, 4) / 5
    for got, want in zip(_inplace_on_views(ember, a), _inplace_on_views(torch, a)):
        np.testing.assert_allclose(got, want)


def test_inplace_on_view_of_leaf_requiring_grad_raises() -> None:
    x = ember.ones(2, 3, requires_grad=True)
    with pytest.raises(RuntimeError, match="view of a leaf Variable"):
        x[0].mul_(2)
    with pytest.raises(RuntimeError, match="view of a leaf Variable"):
        torch.ones(2, 3, requires_grad=True)[0].mul_(2)
    assert x.tolist() == [[1.0] * 3] * 2 and x._version_number == 0
