"""Pooling groups (max values, average with every divisor rule) against the ops' references and
torch, followed by an elementwise node; one JIT for all cases."""

from __future__ import annotations

from typing import Any

import ember.compiler.ops  # noqa: F401
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from ember.compiler.codegen.llvm.program import compile_groups
from ember.compiler.dtypes import float32
from ember.compiler.kernel.group import FusionGroup, GroupNode
from ember.compiler.kernel.lower import lower_group
from ember.compiler.ops.registry import REGISTRY, TensorType
from ember.runtime.errors import CompileError

SPECS: list[tuple[str, tuple[int, ...], dict[str, Any]]] = [
    ("max_pool", (2, 3, 12, 12), {"kernel_size": (2, 2)}),
    ("max_pool", (2, 3, 11, 9), {"kernel_size": (3, 3), "stride": (2, 2), "padding": (1,),
                                 "ceil_mode": True}),
    ("max_pool", (1, 2, 20), {"kernel_size": (3,), "stride": (1,), "dilation": (2,)}),
    ("avg_pool", (2, 3, 11, 10), {"kernel_size": (3, 3), "stride": (2, 2), "padding": (1,)}),
    ("avg_pool", (2, 3, 11, 10), {"kernel_size": (3, 2), "stride": (2, 2), "padding": (1,),
                                  "count_include_pad": False, "ceil_mode": True}),
    ("avg_pool", (1, 2, 16, 16), {"kernel_size": (4, 4), "divisor_override": 3}),
    # rows wide enough that the last dim splits into border windows and a vectorized interior
    ("max_pool", (2, 3, 10, 40), {"kernel_size": (3, 3), "stride": (2, 2), "padding": (1,)}),
    ("max_pool", (2, 3, 50), {"kernel_size": (5,), "stride": (3,), "padding": (2,), "ceil_mode": True}),
    ("avg_pool", (1, 2, 9, 37), {"kernel_size": (3, 3), "stride": (2, 2), "padding": (1,), "ceil_mode": True,
                                 "count_include_pad": False}),
]
rng = np.random.default_rng(4)


def _case(k: int, op: str, shape: tuple[int, ...], given: dict[str, Any]) -> tuple[FusionGroup, np.ndarray,
                                                                                   np.ndarray]:
    o = REGISTRY[op]
    t = TensorType(shape, float32)
    attrs = o.check_attrs(given)
    attrs = o.normalize(attrs, t) if o.normalize else attrs
    out = o.infer(t, **attrs)
    p = f"p{k}_"
    outs = (p + "y", p + "i") if op == "max_pool" else (p + "y",)
    types = {p + "x": t, p + "r": out[0] if op == "max_pool" else out}
    types.update(dict(zip(outs, out if op == "max_pool" else (out,))))
    nodes = [GroupNode(op, (p + "x",), outs, attrs), GroupNode("mul", (p + "y", 2.0), (p + "r",))]
    g = FusionGroup(f"pool{k}", nodes, types, [p + "x"], [p + "r"])
    x = rng.standard_normal(shape).astype(np.float32)
    ref = o.reference(np, x, **attrs)
    return g, x, 2 * (ref[0] if op == "max_pool" else ref)


CASES = [_case(k, *spec) for k, spec in enumerate(SPECS)]


@pytest.fixture(scope="module")
def results() -> tuple[np.ndarray, ...]:
    groups = [c[0] for c in CASES]
    exe = compile_groups("pools", groups, [g.inputs[0] for g in groups], [g.outputs[0] for g in groups])
    return exe(*[c[1] for c in CASES])


@pytest.mark.parametrize("k", range(len(SPECS)), ids=[f"{s[0]}_{k}" for k, s in enumerate(SPECS)])
def test_pool_matches_reference(k: int, results: tuple[np.ndarray, ...]) -> None:
    np.testing.assert_allclose(results[k], CASES[k][2], rtol=1e-6, atol=1e-6)


def test_references_agree_with_torch() -> None:
    """The references the kernels are checked against are themselves PyTorch's pools."""
    x = torch.from_numpy(CASES[1][1])
    want = 2 * F.max_pool2d(x, 3, 2, 1, ceil_mode=True).numpy()
    np.testing.assert_allclose(CASES[1][2], want, rtol=1e-6)
    want = 2 * F.avg_pool2d(torch.from_numpy(CASES[4][1]), (3, 2), 2, 1, ceil_mode=True,
                            count_include_pad=False).numpy()
    np.testing.assert_allclose(CASES[4][2], want, rtol=1e-6)


@pytest.mark.parametrize("k", [0, 1, 2, 6, 7])
def test_max_pool_indices_match_reference_and_torch(k: int) -> None:
    g = CASES[k][0]
    values, indices = g.nodes[0].outputs
    g2 = FusionGroup(f"idx{k}", g.nodes[:1], g.types, g.inputs, [values, indices])
    x = CASES[k][1]
    got_v, got_i = compile_groups(f"maxpool_idx{k}", [g2], g2.inputs, [values, indices])(x)
    want_v, want_i = REGISTRY["max_pool"].reference(np, x, **g.nodes[0].attrs)
    np.testing.assert_array_equal(got_v, want_v)
    np.testing.assert_array_equal(got_i, want_i)
    if k == 1:
        tv, ti = F.max_pool2d(torch.from_numpy(x), 3, 2, 1, ceil_mode=True, return_indices=True)
        np.testing.assert_array_equal(got_i, ti.numpy())


def test_max_pool_indices_with_a_fused_consumer_are_a_compile_error() -> None:
    g = CASES[0][0]
    values, indices = g.nodes[0].outputs
    types = {**g.types, "neg_i": g.types[indices]}
    nodes = [g.nodes[0], GroupNode("neg", (indices,), ("neg_i",))]
    g2 = FusionGroup("idx_use", nodes, types, g.inputs, ["neg_i"])
    with pytest.raises(CompileError, match="max_pool"):
        lower_group(g2)
