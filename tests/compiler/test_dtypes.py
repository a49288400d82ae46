"""PyTorch's type promotion: promote_types over every dtype pair and result_type over dimensioned
tensors, 0-d tensors and Python scalars, checked against torch 2.13."""

from __future__ import annotations

import itertools

import ember
import numpy as np
import pytest
import torch
from ember.compiler import dtypes

NAMES = ["bool", "uint8", "int8", "int16", "int32", "int64", "float16", "float32", "float64"]
PAIRS = list(itertools.product(NAMES, NAMES))
SCALARS = [True, 3, -2, 2.5, 0.0]


def _name(dt) -> str:
    return str(dt).replace("torch.", "").replace("ember.", "")


@pytest.mark.parametrize("a,b", PAIRS)
def test_promote_types(a, b) -> None:
    got = ember.promote_types(getattr(ember, a if a != "bool" else "bool"), getattr(ember, b))
    assert _name(got) == _name(torch.promote_types(getattr(torch, a), getattr(torch, b)))


def _operand(lib, kind: str, name: str):
    shape = () if kind == "0d" else (2,)
    return lib.zeros(shape, dtype=getattr(lib, name))


@pytest.mark.parametrize("ka,kb", [("dims", "dims"), ("dims", "0d"), ("0d", "dims"), ("0d", "0d")])
def test_result_type_tensor_pairs(ka, kb) -> None:
    for a, b in PAIRS:
        got = ember.result_type(_operand(ember, ka, a), _operand(ember, kb, b))
        want = torch.result_type(_operand(torch, ka, a), _operand(torch, kb, b))
        assert _name(got) == _name(want), (ka, a, kb, b)


@pytest.mark.parametrize("kind", ["dims", "0d"])
@pytest.mark.parametrize("scalar", SCALARS)
def test_result_type_with_python_scalars(kind, scalar) -> None:
    for name in NAMES:
        for order in (0, 1):
            e_args = (_operand(ember, kind, name), scalar)
            t_args = (_operand(torch, kind, name), scalar)
            if order:
                e_args, t_args = e_args[::-1], t_args[::-1]
            assert _name(ember.result_type(*e_args)) == _name(torch.result_type(*t_args)), (
                kind,
                name,
                scalar,
            )


def test_result_type_of_three_operands() -> None:
    cases = [
        ((ember.zeros(2, dtype=ember.int32), ember.tensor(1.0, dtype=ember.float64), 2), "float64"),
        ((ember.zeros(2, dtype=ember.float16), ember.tensor(1.0, dtype=ember.float64), 2.0), "float16"),
        ((ember.zeros(2, dtype=ember.uint8), ember.tensor(1, dtype=ember.int8), 300), "uint8"),
        ((ember.zeros(2, dtype=ember.bool), ember.tensor(1, dtype=ember.int32), 1.5), "float32"),
    ]
    for args, want in cases:
        assert dtypes.result_type(*args).name == want
    # the same through a real op: the reference result is cast to the promised dtype
    x = ember.zeros(2, dtype=ember.int32) + ember.tensor(1.5, dtype=ember.float64)
    t = torch.zeros(2, dtype=torch.int32) + torch.tensor(1.5, dtype=torch.float64)
    assert _name(x.dtype) == _name(t.dtype)
    assert (ember.ones(2, dtype=ember.int8) * 2.5).dtype is ember.float32


def test_as_dtype_accepts_every_spelling() -> None:
    assert dtypes.as_dtype("float") is ember.float32 and dtypes.as_dtype("torch.int64") is ember.int64
    assert dtypes.as_dtype(np.float16) is ember.float16 and dtypes.as_dtype(torch.float64) is ember.float64
    assert dtypes.as_dtype(float) is ember.float64 and dtypes.as_dtype(bool) is ember.bool
    assert ember.half is ember.float16 and ember.long is ember.int64 and ember.double is ember.float64
    with pytest.raises(TypeError):
        dtypes.as_dtype("complex32")
    with pytest.raises(TypeError):
        dtypes.from_numpy(np.complex128)


def test_dtype_properties() -> None:
    for name in NAMES:
        e, t = getattr(ember, name), getattr(torch, name)
        assert e.is_floating_point == t.is_floating_point
        assert e.is_signed == t.is_signed
        assert e.itemsize == t.itemsize
        assert repr(e).replace("ember.", "torch.") == repr(t)
