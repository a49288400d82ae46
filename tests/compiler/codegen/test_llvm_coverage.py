"""Coverage of the LLVM back end over the registry (issue 7): every op with a kernel lowers to generated
code; an op without one is a CompileError naming it, never an eager fallback.

* The ops lowered by lower_index / lower_upsample / lower_region_pool / lower_scatter_dim / lower_sort run
  compiled (one JIT module for all cases) against the op's reference on several shapes and dtypes; a few
  are also checked against torch directly, and a few run fused with elementwise neighbours.
* A registry-driven test lists the ops that still have no kernel (EXPECTED_GAPS) and checks that
  lowering each one raises a CompileError naming it.
"""

from __future__ import annotations

from typing import Any

import ember.compiler.ops  # noqa: F401
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from ember.compiler.codegen.llvm.program import compile_groups
from ember.compiler.dtypes import as_dtype, float32
from ember.compiler.kernel.group import FusionGroup, GroupNode
from ember.compiler.kernel.lower import TEMPLATE_LOWERINGS, lower_group, op_lowering_kind
from ember.compiler.kernel.templates import EXPANSIONS
from ember.compiler.ops.registry import REGISTRY, TensorType
from ember.runtime.errors import CompileError, EmberError

rng = np.random.default_rng(11)
S = ("slice", None, None, None)


def _f(*shape: int) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


def _i(hi: int, *shape: int) -> np.ndarray:
    return rng.integers(0, hi, shape).astype(np.int64)


def _adaptive(n: int, m: int) -> tuple[tuple[int, int], ...]:
    return tuple((k * n // m, -(-(k + 1) * n // m)) for k in range(m))


_NAN_IN = _f(2, 3, 10, 9)
_NAN_IN[0, 0, :3, :3] = np.nan
_NAN_IN[1, 1] = -np.inf
_TIES = rng.integers(0, 4, (5, 7)).astype(np.float32)  # repeated values and NaNs: stable order, NaN last
_TIES[1, 2] = _TIES[2, 0] = _TIES[2, 5] = np.nan

# (op, inputs, attrs): one single-node group each
SPECS: list[tuple[str, list[np.ndarray], dict[str, Any]]] = [
    ("cat", [_f(2, 3), _f(2, 5)], {"dim": 1}),
    ("cat", [_f(2, 3, 4), _f(1, 3, 4), _f(3, 3, 4)], {"dim": 0}),
    ("cat", [_i(9, 4, 2), _i(9, 4, 1)], {"dim": -1}),
    ("cat", [_f(4, 2), _i(9, 4, 1).astype(np.int32), np.zeros((0,), np.float32)], {"dim": 1}),
    ("cat", [_f(2, 3), np.zeros((2, 0), np.float32), _f(2, 1)], {"dim": 1}),
    ("cat", [_i(2, 2, 3).astype(bool), _i(2, 2, 2).astype(bool)], {"dim": 1}),
    ("roll", [_f(3, 5)], {"shifts": (2,), "dims": (1,)}),
    ("roll", [_f(3, 5)], {"shifts": (-7, 1), "dims": (1, 0)}),
    ("roll", [_i(50, 3, 5)], {"shifts": (4,), "dims": None}),
    ("one_hot", [_i(5, 3, 4)], {"num_classes": 6}),
    ("one_hot", [_i(10, 7).astype(np.int32)], {"num_classes": 10}),
    ("one_hot", [_i(1, 4)], {"num_classes": 1}),
    ("getitem", [_f(5, 4), np.array([0, 3, -1, 2])], {"index": (("tensor",),)}),
    ("getitem", [_f(5, 4, 3), _i(4, 2, 2), np.array([1, 2])], {"index": (S, ("tensor",), ("tensor",))}),
    ("getitem", [_f(5, 4, 3), np.array([0, 1]), np.array([1, 2])],
     {"index": (("tensor",), ("slice", 1, None, None), ("tensor",))}),
    ("getitem", [_f(5, 4, 3), np.array([0, 3])], {"index": (("int", 1), ("tensor",))}),
    ("getitem", [_f(6, 4), rng.integers(-6, 6, (2, 3))], {"index": (("tensor",), ("none",))}),
    ("getitem", [_i(7, 5, 4, 3), np.array([0, 2])], {"index": (("ellipsis",), ("none",), ("tensor",))}),
    ("region_max_pool", [_NAN_IN], {"regions": (_adaptive(10, 3), _adaptive(9, 4))}),
    ("region_max_pool", [_f(2, 3, 7, 13)], {"regions": (_adaptive(7, 7), _adaptive(13, 10))}),
    ("region_max_pool", [_f(2, 11)], {"regions": (_adaptive(11, 4),)}),
    ("region_max_pool", [_f(1, 2, 9, 9)],  # fractional-pooling style windows
     {"regions": (((0, 2), (1, 4), (4, 7), (6, 9)), ((0, 3), (3, 5), (5, 9)))}),
    ("upsample", [_f(2, 3, 5, 7)], {"size": (10, 13), "mode": "nearest"}),
    ("upsample", [_f(2, 3, 9)], {"size": (4,), "mode": "nearest-exact"}),
    ("upsample", [_f(2, 3, 5, 7)], {"size": (9, 14), "mode": "linear"}),
    ("upsample", [_f(1, 2, 6, 5)], {"size": (12, 11), "mode": "linear", "align_corners": True}),
    ("upsample", [_f(1, 2, 6, 6)], {"size": (12, 12), "mode": "linear", "scales": (2.0, 2.0)}),
    ("upsample", [_f(2, 3, 9)], {"size": (5,), "mode": "cubic"}),
    ("upsample", [_f(1, 2, 4, 5)], {"size": (8, 7), "mode": "cubic", "align_corners": True}),
    ("upsample", [_f(1, 2, 3, 4, 5)], {"size": (6, 8, 10), "mode": "linear"}),
    ("upsample", [_f(1, 2, 5, 7).astype(np.float16)], {"size": (9, 3), "mode": "linear"}),
    ("upsample_backward", [_f(2, 3, 10, 13)], {"input_size": (5, 7), "size": (10, 13), "mode": "nearest"}),
    ("upsample_backward", [_f(2, 3, 9, 14)], {"input_size": (5, 7), "size": (9, 14), "mode": "linear"}),
    ("upsample_backward", [_f(2, 3, 4)], {"input_size": (9,), "size": (4,), "mode": "cubic",
                                          "align_corners": True}),
    ("scatter", [_f(4, 5), _i(4, 3, 5), _f(3, 6)], {"dim": 0}),
    ("scatter_add", [_f(4, 5), _i(5, 4, 7), _f(4, 7)], {"dim": 1}),
    ("scatter_add", [_i(9, 4, 5), _i(5, 4, 3), _i(9, 4, 3)], {"dim": -1}),
    ("take_along_dim_backward", [_f(3, 4), _i(6, 3, 4)], {"dim": 1, "shape": (3, 6)}),
    ("take_along_dim_backward", [_f(5, 4), _i(2, 5, 4)], {"dim": 0, "shape": (2, 4)}),
    ("embedding_backward", [_f(3, 4, 5), _i(6, 3, 4)], {"num_weights": 6}),
    ("embedding_backward", [_f(7, 5), _i(3, 7)], {"num_weights": 3, "padding_idx": 1}),
    ("argsort", [_f(3, 9)], {"dim": -1}),
    ("argsort", [_TIES], {"dim": 1}),
    ("argsort", [_TIES], {"dim": 1, "descending": True}),
    ("argsort", [_TIES], {"dim": 0}),
    ("argsort", [_i(3, 4, 10)], {"dim": 1, "descending": True}),
    ("argsort", [_f(3, 9, 4)], {"dim": 1}),
    ("median_index", [_TIES], {"dim": 1}),
    ("median_index", [_f(6, 4)], {"dim": 0}),
    ("median_index", [_i(3, 4, 10)], {"dim": 1}),
    ("mode_index", [_i(3, 4, 10)], {"dim": 1}),
    ("mode_index", [_i(4, 9, 5).astype(np.float32)], {"dim": 0}),
    ("index_put", [_f(5, 4), _f(3, 4), np.array([0, 3, 0])], {"index": (("tensor",),), "accumulate": True}),
    ("index_put", [_f(5, 4), _f(3, 4), np.array([0, 3, 1])], {"index": (("tensor",),), "accumulate": False}),
    ("index_put", [_f(5, 4, 3), _f(2), np.array([0, 1]), np.array([1, 2])],
     {"index": (S, ("tensor",), ("tensor",)), "accumulate": True}),
    ("index_put", [_f(5, 4), _f(2, 2)], {"index": (("slice", 1, 3, None), ("slice", None, None, 2)),
                                         "accumulate": False}),
]

# ops that still have no kernel: lowering them is a CompileError naming the op. Remove an op from here
# when its kernel lands (the registry test below fails until the list matches the registry).
EXPECTED_GAPS = {
    "det": (4, 4),            # eager_only: LAPACK-backed (pivoting, iteration)
    "inverse": (4, 4),
    "eig": (4, 4),
}


def _single(k: int, op: str, arrays: list[np.ndarray], given: dict[str, Any]) -> tuple[FusionGroup, tuple]:
    o = REGISTRY[op]
    types = [TensorType(a.shape, as_dtype(a.dtype)) for a in arrays]
    attrs = o.check_attrs(given)
    attrs = o.normalize(attrs, *types) if o.normalize else attrs
    out = o.infer(*types, **attrs)
    outs = (out,) if isinstance(out, TensorType) else out
    p = f"c{k}_"
    ins = [f"{p}x{j}" for j in range(len(arrays))]
    names = [f"{p}y{j}" for j in range(len(outs))]
    g = FusionGroup(f"cov{k}", [GroupNode(op, tuple(ins), tuple(names), attrs)],
                    {**dict(zip(ins, types)), **dict(zip(names, outs))}, ins, names)
    ref = o.reference(np, *arrays, **attrs)
    ref = ref if isinstance(ref, tuple) else (ref,)
    return g, tuple(np.asarray(r).astype(t.dtype.np) for r, t in zip(ref, outs))


CASES = [_single(k, *spec) for k, spec in enumerate(SPECS)]


@pytest.fixture(scope="module")
def results() -> list[tuple[np.ndarray, ...]]:
    groups = [c[0] for c in CASES]
    exe = compile_groups("coverage", groups, [i for g in groups for i in g.inputs],
                         [o for g in groups for o in g.outputs])
    flat = exe(*[a for spec in SPECS for a in spec[1]])
    out, j = [], 0
    for g in groups:
        out.append(tuple(flat[j:j + len(g.outputs)]))
        j += len(g.outputs)
    return out


@pytest.mark.parametrize("k", range(len(SPECS)), ids=[f"{s[0]}_{k}" for k, s in enumerate(SPECS)])
def test_compiled_matches_reference(k: int, results: list[tuple[np.ndarray, ...]]) -> None:
    for got, want in zip(results[k], CASES[k][1]):
        assert got.dtype == want.dtype and got.shape == want.shape
        if want.dtype.kind == "f":  # half: the reference rounds between dims, the kernel once at the end
            tol = 2e-3 if want.dtype == np.float16 else 2e-5
            np.testing.assert_allclose(got, want, rtol=tol, atol=tol, equal_nan=True)
        else:
            np.testing.assert_array_equal(got, want)


def _case(op: str, n: int = 0) -> int:
    return [k for k, s in enumerate(SPECS) if s[0] == op][n]


def test_upsample_and_adaptive_pool_match_torch(results: list[tuple[np.ndarray, ...]]) -> None:
    """The resampling and adaptive pooling kernels agree with F.interpolate / F.adaptive_max_pool2d."""
    x = torch.from_numpy(SPECS[_case("upsample", 2)][1][0])
    want = F.interpolate(x, size=(9, 14), mode="bilinear", align_corners=False)
    np.testing.assert_allclose(results[_case("upsample", 2)][0], want.numpy(), rtol=1e-5, atol=1e-5)
    x = torch.from_numpy(SPECS[_case("upsample", 6)][1][0])
    want = F.interpolate(x, size=(8, 7), mode="bicubic", align_corners=True)
    np.testing.assert_allclose(results[_case("upsample", 6)][0], want.numpy(), rtol=1e-5, atol=1e-5)
    x = torch.from_numpy(SPECS[_case("upsample", 0)][1][0])
    np.testing.assert_array_equal(results[_case("upsample", 0)][0], F.interpolate(x, size=(10, 13)).numpy())
    x = torch.from_numpy(SPECS[_case("region_max_pool", 1)][1][0])
    values, indices = F.adaptive_max_pool2d(x, (7, 10), return_indices=True)
    np.testing.assert_array_equal(results[_case("region_max_pool", 1)][0], values.numpy())
    np.testing.assert_array_equal(results[_case("region_max_pool", 1)][1], indices.numpy())


def test_index_ops_match_torch(results: list[tuple[np.ndarray, ...]]) -> None:
    a, b = (torch.from_numpy(t) for t in SPECS[_case("cat")][1])
    np.testing.assert_array_equal(results[_case("cat")][0], torch.cat([a, b], 1).numpy())
    x = torch.from_numpy(SPECS[_case("roll", 1)][1][0])
    np.testing.assert_array_equal(results[_case("roll", 1)][0], torch.roll(x, (-7, 1), (1, 0)).numpy())
    idx = torch.from_numpy(SPECS[_case("one_hot")][1][0])
    np.testing.assert_array_equal(results[_case("one_hot")][0], F.one_hot(idx, 6).numpy())
    x, i, j = (torch.from_numpy(t) for t in SPECS[_case("getitem", 1)][1])
    np.testing.assert_array_equal(results[_case("getitem", 1)][0], x[:, i, j].numpy())
    x = torch.from_numpy(SPECS[_case("argsort", 2)][1][0])
    np.testing.assert_array_equal(results[_case("argsort", 2)][0], torch.sort(x, stable=True, dim=1,
                                                                              descending=True).indices.numpy())
    x, i, src = (torch.from_numpy(t) for t in SPECS[_case("scatter_add")][1])
    np.testing.assert_allclose(results[_case("scatter_add")][0], x.scatter_add(1, i, src).numpy(), rtol=1e-6)


def _chain_group() -> tuple[FusionGroup, list[np.ndarray], list[np.ndarray]]:
    """Fused neighbours: relu(cat(a*2, b)) -> roll -> getitem with a tensor, and one_hot(i) * 3."""
    a, b, i, cls = _f(3, 4), _f(3, 2), np.array([2, 0, 2]), _i(5, 6)
    f32, i64 = float32, as_dtype(np.int64)
    t = TensorType
    types = {"a": t((3, 4), f32), "b": t((3, 2), f32), "i": t((3,), i64), "cls": t((6,), i64),
             "a2": t((3, 4), f32), "c": t((3, 6), f32), "r": t((3, 6), f32), "s": t((3, 6), f32),
             "y": t((3, 6), f32), "h": t((6, 5), i64), "z": t((6, 5), i64)}
    nodes = [GroupNode("mul", ("a", 2.0), ("a2",)), GroupNode("cat", ("a2", "b"), ("c",), {"dim": 1}),
             GroupNode("relu", ("c",), ("r",)),
             GroupNode("roll", ("r",), ("s",), {"shifts": (1,), "dims": (1,)}),
             GroupNode("getitem", ("s", "i"), ("y",), {"index": (("tensor",),)}),
             GroupNode("one_hot", ("cls",), ("h",), {"num_classes": 5}), GroupNode("mul", ("h", 3), ("z",))]
    g = FusionGroup("chain", nodes, types, ["a", "b", "i", "cls"], ["y", "z"])
    y = np.roll(np.maximum(np.concatenate([a * 2, b], 1), 0), 1, 1)[i]
    return g, [a, b, i, cls], [y, (cls[:, None] == np.arange(5)).astype(np.int64) * 3]


def _template_chain(op: str, x: np.ndarray, attrs: dict[str, Any], out: tuple[int, ...],
                    p: str) -> tuple[FusionGroup, np.ndarray]:
    """exp(x) -> op -> * 2 in one group (producers and consumers around a template); names start with p."""
    t = TensorType
    types = {p + "x": t(x.shape, float32), p + "e": t(x.shape, float32), p + "u": t(out, float32),
             p + "w": t(out, float32)}
    outs: tuple[str, ...] = (p + "u",)
    if op == "region_max_pool":
        types[p + "ui"] = t(out, as_dtype(np.int64))
        outs = (p + "u", p + "ui")
    nodes = [GroupNode("exp", (p + "x",), (p + "e",)), GroupNode(op, (p + "e",), outs, attrs),
             GroupNode("mul", (p + "u", 2.0), (p + "w",))]
    ref = REGISTRY[op].reference(np, np.exp(x), **attrs)
    return FusionGroup(p + "chain", nodes, types, [p + "x"], [p + "w"]), 2 * (ref[0] if isinstance(ref, tuple)
                                                                            else ref)


def test_fused_neighbours() -> None:
    g, inputs, wants = _chain_group()
    x = _f(2, 3, 5, 6)
    up_attrs = {"size": (7, 9), "mode": "linear", "align_corners": False, "scales": None}
    gu, want_u = _template_chain("upsample", x, up_attrs, (2, 3, 7, 9), "up_")
    gp, want_p = _template_chain("region_max_pool", x, {"regions": (_adaptive(5, 2), _adaptive(6, 4))},
                                 (2, 3, 2, 4), "rp_")
    exe = compile_groups("fused", [g, gu, gp], [*g.inputs, "up_x", "rp_x"], [*g.outputs, "up_w", "rp_w"])
    y, z, w, v = exe(*inputs, x, x)
    np.testing.assert_allclose(y, wants[0], rtol=1e-6)
    np.testing.assert_array_equal(z, wants[1])
    np.testing.assert_allclose(w, want_u, rtol=1e-5)
    np.testing.assert_allclose(v, want_p, rtol=1e-5)


BIG_SPECS: list[tuple[str, list[np.ndarray], dict[str, Any]]] = [  # enough work for parallel outer loops
    ("upsample_backward", [_f(4, 8, 64, 64)], {"input_size": (32, 32), "size": (64, 64), "mode": "linear"}),
    ("scatter_add", [_f(64, 600), _i(600, 64, 600), _f(64, 600)], {"dim": 1}),
    ("argsort", [_f(300, 128)], {"dim": 1}),
    ("region_max_pool", [_f(4, 16, 64, 64)], {"regions": (_adaptive(64, 7), _adaptive(64, 7))}),
]


def test_parallel_paths_match_reference() -> None:
    cases = [_single(100 + k, *spec) for k, spec in enumerate(BIG_SPECS)]
    groups = [c[0] for c in cases]
    exe = compile_groups("big", groups, [i for g in groups for i in g.inputs],
                         [o for g in groups for o in g.outputs])
    got = exe(*[a for spec in BIG_SPECS for a in spec[1]])
    wants = [w for c in cases for w in c[1]]
    for y, want in zip(got, wants):
        np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)


def test_scatter_with_scalar_source() -> None:
    """scatter(g, index, 0.0) (scatter's own gradient) takes a Python scalar as its source."""
    t = TensorType
    x, idx = _f(4, 5), _i(4, 2, 5)
    g = FusionGroup("sc", [GroupNode("scatter", ("x", "i", 0.0), ("y",), {"dim": 0})],
                    {"x": t((4, 5), float32), "i": t((2, 5), as_dtype(np.int64)), "y": t((4, 5), float32)},
                    ["x", "i"], ["y"])
    (y,) = compile_groups("sc", [g], ["x", "i"], ["y"])(x, idx)
    want = torch.from_numpy(x).scatter(0, torch.from_numpy(idx), 0.0).numpy()
    np.testing.assert_array_equal(y, want)


def test_bool_mask_getitem_is_a_compile_error() -> None:
    t = TensorType
    g = FusionGroup("m", [GroupNode("getitem", ("x", "m"), ("y",), {"index": (("tensor",),)})],
                    {"x": t((4,), float32), "m": t((4,), as_dtype(np.bool_)), "y": t((2,), float32)},
                    ["x", "m"], ["y"])
    with pytest.raises(CompileError, match="getitem"):
        lower_group(g)


# ---- the remaining gaps, from the registry ---------------------------------------------------------------


def _has_kernel(op: Any) -> bool:
    """Whether the LLVM back end has a lowering for ``op`` (statically, from the dispatch tables)."""
    try:
        kind = op_lowering_kind(op.name)
    except EmberError:
        return False
    if kind != "template":
        return True
    template = op.lowering["template"]
    return any(key in table for key, table in ((template, EXPANSIONS), (template, TEMPLATE_LOWERINGS),
                                               (f"{template}/{op.name}", TEMPLATE_LOWERINGS)))


def test_expected_gaps_match_registry() -> None:
    gaps = {op.name for op in REGISTRY if not op.composite and not _has_kernel(op)}
    assert gaps == set(EXPECTED_GAPS)


@pytest.mark.parametrize("op_name", sorted(EXPECTED_GAPS))
def test_gap_is_a_compile_error_naming_the_op(op_name: str) -> None:
    o = REGISTRY[op_name]
    x = TensorType(EXPECTED_GAPS[op_name], float32)
    attrs = o.check_attrs({"dim": 1} if "dim" in o.attrs else {})
    attrs = o.normalize(attrs, x) if o.normalize else attrs
    out = o.infer(x, **attrs)
    outs = (out,) if isinstance(out, TensorType) else tuple(out)
    names = tuple(f"y{j}" for j in range(len(outs)))
    g = FusionGroup("gap", [GroupNode(op_name, ("x",), names, attrs)], {"x": x, **dict(zip(names, outs))},
                    ["x"], list(names))
    with pytest.raises(CompileError, match=f"'{op_name}'"):
        compile_groups("gap", [g], ["x"], list(names))
