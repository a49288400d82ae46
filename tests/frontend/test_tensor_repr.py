"""repr parity: ``repr(ember_tensor).replace("ember.", "torch.")`` must equal ``repr(torch_tensor)``."""

from __future__ import annotations

import ember
import numpy as np
import pytest
import torch

RNG = np.random.default_rng(3)


def _pair(data, dtype: str | None = None, requires_grad: bool = False):
    kw_e = {} if dtype is None else {"dtype": getattr(ember, dtype)}
    kw_t = {} if dtype is None else {"dtype": getattr(torch, dtype)}
    return (
        ember.tensor(data, requires_grad=requires_grad, **kw_e),
        torch.tensor(data, requires_grad=requires_grad, **kw_t),
    )


def assert_same_repr(e, t) -> None:
    assert repr(e).replace("ember.", "torch.") == repr(t)


CASES = [
    ([1, 2, 3], None),
    ([[1, 2], [3, 4]], None),
    ([-1, 100, 7], None),
    (5, None),
    (-3, None),
    (2.5, None),
    (0.0, None),
    ([1.0, 2.0], None),
    ([[1.0, 2.0]], None),
    ([1.5, -2.25, 3.0], None),
    ([0.1, 0.2], None),
    ([1e-5, 1.0], None),
    ([1e10, 1.0], None),
    ([1.0, 1e4], None),
    ([1.0, 999.0], None),
    ([123456.5, 0.5], None),
    ([1e-8], None),
    ([1e9], None),
    ([-1e-3, 2.0], None),
    ([float("nan"), 1.0], None),
    ([float("inf"), -2.5], None),
    ([float("nan"), float("inf"), float("-inf")], None),
    ([0.0, -0.0], None),
    ([0.0, float("nan")], None),
    ([1.0, 2.0], "float64"),
    ([1.5], "float64"),
    ([1, 2], "int32"),
    ([1, 2], "int16"),
    ([1, 2], "uint8"),
    ([1, 2], "int8"),
    ([1.5, 2.0], "float16"),
    ([True, False], None),
    ([[True], [False]], None),
    (7, "int32"),
    (True, None),
    (1.0, "float64"),
    ([], None),
    ([], "int64"),
    ([], "float64"),
    ([], "bool"),
    ([[1, 2, 3]] * 4, "float32"),
    ([[[1.25, 2.0]], [[3.0, 4.0]]], None),
    ([[-5, 10], [3, 7]], None),
    (list(range(30)), None),
    ([x / 3 for x in range(25)], None),
    ([12345678.0, 1.0], None),
]


@pytest.mark.parametrize("data,dtype", CASES, ids=lambda v: repr(v)[:30])
def test_repr_matches_torch(data, dtype) -> None:
    assert_same_repr(*_pair(data, dtype))


@pytest.mark.parametrize("shape", [(0, 3), (2, 0, 1), (0,)])
def test_empty_shapes(shape) -> None:
    assert_same_repr(ember.zeros(shape), torch.zeros(shape))
    assert_same_repr(ember.zeros(shape, dtype=ember.int64), torch.zeros(shape, dtype=torch.int64))


@pytest.mark.parametrize("shape", [(2000,), (40, 40), (5, 300), (11, 11, 11), (1001,)])
def test_large_tensors_are_summarized(shape) -> None:
    a = RNG.standard_normal(shape).astype(np.float32)
    assert_same_repr(ember.tensor(a), torch.tensor(a))
    i = RNG.integers(-1000, 1000, shape)
    assert_same_repr(ember.tensor(i), torch.tensor(i))


def test_wide_rows_wrap_like_torch() -> None:
    a = RNG.standard_normal((3, 25)) * 1000
    assert_same_repr(ember.tensor(a), torch.tensor(a))
    assert_same_repr(ember.tensor(a[0]), torch.tensor(a[0]))
    assert_same_repr(*_pair(RNG.standard_normal((2, 30)).tolist(), "float64", requires_grad=True))


def test_requires_grad_and_grad_fn_suffixes() -> None:
    e, t = _pair([[1.0, 2.0]], requires_grad=True)
    assert repr(e) == "tensor([[1., 2.]], requires_grad=True)"
    assert_same_repr(e, t)
    assert_same_repr(e + 1, t + 1)
    assert_same_repr(e * 2, t * 2)
    assert_same_repr((e * 2).sum(), (t * 2).sum())
    assert_same_repr(e.detach(), t.detach())
    e64, t64 = _pair([1.0], "float64", requires_grad=True)
    assert_same_repr(e64, t64)


def _lib(x):
    return ember if isinstance(x, ember.Tensor) else torch


SAME_NAME = {
    "T": lambda x: x.T,
    "cat": lambda x: _lib(x).cat([x, x]),
    "add": lambda x: x + 1,
    "mul": lambda x: x * 2,
    "div": lambda x: x / 2,
    "neg": lambda x: -x,
    "sum": lambda x: x.sum(),
    "permute": lambda x: x.permute(1, 0),
    "roll": lambda x: x.roll(1),
    "expand": lambda x: x[:1].expand(3, 2),
    "clone": lambda x: x.clone(),
    "gather": lambda x: x.gather(0, _lib(x).tensor([[0, 1]])),
}
# composites report the primitive that produced them (ember's op names live in autograd/node.py)
OTHER_NAME = {
    "flip": lambda x: x.flip(0),
    "view": lambda x: x.view(4),
    "select": lambda x: x[0],
    "slice": lambda x: x[1:],
    "index": lambda x: x[[0, 1]],
    "squeeze": lambda x: x[None].squeeze(0),
    "stack": lambda x: _lib(x).stack([x, x]),
    "mm": lambda x: x.mm(x),
    "transpose": lambda x: x.transpose(0, 1),
    "masked_fill": lambda x: x.masked_fill(x > 2, 0.0),
}


@pytest.mark.parametrize("name", list(SAME_NAME))
def test_grad_fn_suffix_matches(name) -> None:
    e, t = _pair([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    assert_same_repr(SAME_NAME[name](e), SAME_NAME[name](t))


@pytest.mark.parametrize("name", list(OTHER_NAME))
def test_grad_fn_suffix_of_composites(name) -> None:
    e, t = _pair([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    re, rt = repr(OTHER_NAME[name](e)), repr(OTHER_NAME[name](t))
    assert re[: re.index("grad_fn=<")] == rt[: rt.index("grad_fn=<")]
    assert re.endswith("Backward0>)")


def test_printoptions() -> None:
    a = [1.23456789, 2.5]
    try:
        for opts in (
            {"precision": 2},
            {"precision": 6},
            {"sci_mode": True},
            {"threshold": 5, "edgeitems": 1},
            {"linewidth": 30},
            {"profile": "short"},
            {"sci_mode": True, "precision": 3},
        ):
            ember.set_printoptions(**opts)
            torch.set_printoptions(**opts)
            assert_same_repr(*_pair(a))
            assert_same_repr(*_pair(list(range(12))))
            assert_same_repr(*_pair([x / 7 for x in range(12)]))
            assert_same_repr(*_pair([0.0, 0.0]))
            assert_same_repr(*_pair([1.0, 1e5]))
    finally:
        ember.set_printoptions(profile="default")
        torch.set_printoptions(profile="default")
    assert_same_repr(*_pair(a))


def test_str_and_format() -> None:
    e, t = _pair([1.0, 2.0])
    assert str(e) == str(t)
    s, ts = _pair(3.14159)
    assert f"{s:.2f}" == f"{ts:.2f}"
