"""Reduction kernels: every registered ``lowering["reduce"]`` op against its reference, over several
dims (innermost: vectorized accumulators; outer and middle: strided; all dims), with and without
keepdim; one program (one JIT compile) for all cases."""

from __future__ import annotations

from typing import Any

import ember.compiler.ops  # noqa: F401
import numpy as np
import pytest
import torch
from ember.compiler.codegen.llvm.program import compile_groups
from ember.compiler.dtypes import float32, from_numpy
from ember.compiler.kernel.group import FusionGroup, GroupNode
from ember.compiler.kernel.lower import lower_group
from ember.compiler.ops.registry import REGISTRY, TensorType
from ember.runtime.errors import CompileError

SUPPORTED = {"add", "mul", "max", "min", "and", "or", "sum", "prod", "all", "any", "argmax", "argmin"}
REDUCE_OPS = sorted(op.name for op in REGISTRY
                    if "reduce" in op.lowering and op.lowering["reduce"] in SUPPORTED)
UNSUPPORTED = sorted(op.name for op in REGISTRY if "reduce" in op.lowering and op.name not in REDUCE_OPS)
SHAPE = (5, 7, 37)
DIMS: list[Any] = [(2,), (0,), (1,), (0, 2), None]
ONE_DIM = {"argmax", "argmin"}  # take one dim (or None)


def _input(op: str, rng: np.random.Generator) -> np.ndarray:
    if op in ("all", "any"):
        return rng.random(SHAPE) < (0.97 if op == "all" else 0.03)
    if op == "prod":
        return rng.uniform(0.8, 1.25, SHAPE).astype(np.float32)
    return rng.standard_normal(SHAPE).astype(np.float32)


def _cases() -> list[tuple[str, FusionGroup, np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(7)
    cases = []
    for name in REDUCE_OPS:
        op = REGISTRY[name]
        for dims in DIMS:
            if name in ONE_DIM and dims is not None and len(dims) > 1:
                continue
            for keepdim in (False, True):
                x = _input(name, rng)
                t = TensorType(SHAPE, from_numpy(x.dtype))
                dim_attr = dims[0] if name in ONE_DIM and dims is not None else dims
                attrs = op.check_attrs({"dim": dim_attr, "keepdim": keepdim})
                attrs = op.normalize(attrs, t) if op.normalize else attrs
                out_t = op.infer(t, **attrs)
                tag = f"{name}_{'all' if dims is None else '_'.join(map(str, dims))}_{int(keepdim)}"
                g = FusionGroup(tag, [GroupNode(name, (f"{tag}_x",), (f"{tag}_y",), attrs)],
                                {f"{tag}_x": t, f"{tag}_y": out_t}, [f"{tag}_x"], [f"{tag}_y"])
                want = np.asarray(op.reference(np, x, **attrs)).astype(out_t.dtype.np)
                cases.append((name, g, x, want))
    return cases


@pytest.fixture(scope="module")
def results() -> dict[str, list[tuple[np.ndarray, np.ndarray, str]]]:
    cases = _cases()
    groups = [c[1] for c in cases]
    exe = compile_groups("reductions", groups, [g.inputs[0] for g in groups], [g.outputs[0] for g in groups])
    got = exe(*[c[2] for c in cases])
    out: dict[str, list[tuple[np.ndarray, np.ndarray, str]]] = {}
    for c, r in zip(cases, got):
        out.setdefault(c[0], []).append((r, c[3], c[1].name))
    return out


def test_registry_has_reductions() -> None:
    assert {"sum", "amax", "amin", "prod"} <= set(REDUCE_OPS)


@pytest.mark.parametrize("op_name", REDUCE_OPS)
def test_reduction_matches_reference(op_name: str, results: dict[str, Any]) -> None:
    for got, want, tag in results[op_name]:
        assert got.shape == want.shape and got.dtype == want.dtype, tag
        if want.dtype.kind == "f":
            np.testing.assert_allclose(got, want, rtol=3e-5, atol=3e-5, err_msg=tag)
        else:
            np.testing.assert_array_equal(got, want, err_msg=tag)


def test_every_registered_reduction_is_supported() -> None:
    unsupported = sorted(op.name for op in REGISTRY if "reduce" in op.lowering and op.name not in REDUCE_OPS)
    assert unsupported == []


def test_template_without_kernel_is_a_compile_error_naming_the_op() -> None:
    t = TensorType((4, 4), float32)  # argsort has a kernel now (lower_sort.py); det is eager_only
    op = REGISTRY["det"]
    g = FusionGroup("g", [GroupNode("det", ("x",), ("y",), {})], {"x": t, "y": op.infer(t)}, ["x"], ["y"])
    with pytest.raises(CompileError, match="'det'"):
        lower_group(g)


SCAN_OPS = sorted(op.name for op in REGISTRY if op.lowering.get("template") == "scan")


@pytest.mark.parametrize("op_name", SCAN_OPS)
def test_scans_match_reference(op_name: str) -> None:
    """Every dim of a 3-d input (innermost: serial chain; others: one running value per lane), with
    an elementwise producer and consumer fused around the scan."""
    op = REGISTRY[op_name]
    x = np.random.default_rng(8).uniform(0.5, 1.5, (3, 9, 10)).astype(np.float32)
    t = TensorType(x.shape, float32)
    groups, wants = [], []
    for dim in range(3):
        attrs = op.normalize(op.check_attrs({"dim": dim}), t)
        out_t = op.infer(t, **attrs)
        p = f"d{dim}_"
        groups.append(FusionGroup(f"{op_name}{dim}", [
            GroupNode("sqrt", ("x",), (p + "s",)), GroupNode(op_name, (p + "s",), (p + "c",), attrs),
            GroupNode("neg", (p + "c",), (p + "o",))], {"x": t, p + "s": t, p + "c": out_t, p + "o": out_t},
            ["x"], [p + "o"]))
        wants.append(-op.reference(np, np.sqrt(x), **attrs))
    got = compile_groups(f"scan_{op_name}", groups, ["x"], [g.outputs[0] for g in groups])(x)
    for dim, (g, w) in enumerate(zip(got, wants)):
        np.testing.assert_allclose(g, w, rtol=2e-6, atol=1e-6, err_msg=f"dim {dim}")


def test_argmax_takes_the_first_extreme_and_nan() -> None:
    x = np.array([[1, 3, 3, 0], [np.nan, 5, np.nan, 1], [2, 2, 2, 2], [-np.inf, -np.inf, -5, 7]], np.float32)
    t = TensorType(x.shape, float32)
    outs = {"argmax": "amx", "argmin": "amn"}
    groups = [FusionGroup(n, [GroupNode(n, ("x",), (o,), {"dim": 1, "keepdim": False})],
                          {"x": t, o: REGISTRY[n].infer(t, dim=1, keepdim=False)}, ["x"], [o])
              for n, o in outs.items()]
    amx, amn = compile_groups("args", groups, ["x"], list(outs.values()))(x)
    np.testing.assert_array_equal(amx, torch.from_numpy(x).argmax(1).numpy())
    np.testing.assert_array_equal(amn, torch.from_numpy(x).argmin(1).numpy())


def test_int_sum_accumulates_in_int64_and_nan_propagates_through_max() -> None:
    rng = np.random.default_rng(3)
    xi = rng.integers(-(2**30), 2**30, size=(4, 40)).astype(np.int32)
    xf = rng.standard_normal((4, 40)).astype(np.float32)
    xf[1, 17] = np.nan
    ti, tf = TensorType((4, 40), from_numpy(np.int32)), TensorType((4, 40), float32)
    attrs = {"dim": (1,), "keepdim": False, "dtype": None}
    gs = FusionGroup("isum", [GroupNode("sum", ("xi",), ("s",), attrs)],
                     {"xi": ti, "s": REGISTRY["sum"].infer(ti, **attrs)}, ["xi"], ["s"])
    gm = FusionGroup("fmax", [GroupNode("amax", ("xf",), ("m",), {"dim": (1,), "keepdim": False})],
                     {"xf": tf, "m": TensorType((4,), float32)}, ["xf"], ["m"])
    s, m = compile_groups("special_reductions", [gs, gm], ["xi", "xf"], ["s", "m"])(xi, xf)
    np.testing.assert_array_equal(s, xi.astype(np.int64).sum(1))
    assert s.dtype == np.int64
    assert np.isnan(m[1]) and not np.isnan(m[[0, 2, 3]]).any()
    np.testing.assert_array_equal(m[[0, 2, 3]], xf[[0, 2, 3]].max(1))


def test_large_reduction_runs_parallel_and_matches() -> None:
    """Enough rows to split over threads; rows longer than a vector with a remainder."""
    x = np.random.default_rng(5).standard_normal((1031, 77)).astype(np.float32)
    t = TensorType(x.shape, float32)
    g = FusionGroup("big", [GroupNode("sum", ("x",), ("y",), {"dim": (1,), "keepdim": True, "dtype": None})],
                    {"x": t, "y": TensorType((1031, 1), float32)}, ["x"], ["y"])
    text = str(lower_group(g).kernel)
    assert "parallel for" in text and "vectorized for" in text
    (y,) = compile_groups("big_sum", [g], ["x"], ["y"])(x)
    np.testing.assert_allclose(y, x.astype(np.float64).sum(1, keepdims=True), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("op_name", ["any", "all"])
def test_logical_reductions_over_uint8_count_truth_not_bits(op_name: str) -> None:
    """any/all over uint8 give uint8 0/1 as torch does; 1 | 2 must not leak through as 3, nor 1 & 2 as 0."""
    op = REGISTRY[op_name]
    x = np.array([[1, 2, 0], [2, 4, 8], [0, 0, 0]], dtype=np.uint8)
    t = TensorType(x.shape, from_numpy(x.dtype))
    attrs = op.normalize(op.check_attrs({"dim": (1,), "keepdim": False}), t)
    g = FusionGroup("g", [GroupNode(op_name, ("x",), ("y",), attrs)], {"x": t, "y": op.infer(t, **attrs)},
                    ["x"], ["y"])
    (got,) = compile_groups(f"logical_{op_name}", [g], ["x"], ["y"])(x)
    want = getattr(torch.from_numpy(x), op_name)(dim=1).numpy()
    assert got.dtype == want.dtype == np.uint8
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("width", [5, 10, 16, 37])
@pytest.mark.parametrize("op", ["sum", "amax", "mean"])
def test_reduce_over_a_size_one_dim(op: str, width: int) -> None:
    # The reduction loop of a size-1 dim vanishes, leaving Declare + Reduce + Store inside the
    # vectorized loop over the kept dim: a per-lane accumulation, not a reduction across lanes (this
    # kernel once failed to compile, in the backward of a batch-1 linear layer's bias).
    import ember

    x = np.random.default_rng(width).standard_normal((1, width)).astype(np.float32)
    fn = ember.compile(lambda t: getattr(ember, op)(t * 2.0, 0))
    got = fn(ember.tensor(x)).numpy()
    want = getattr(torch, op)(torch.from_numpy(x) * 2.0, 0).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-6)
