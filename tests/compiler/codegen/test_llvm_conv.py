"""Convolution groups (im2col + GEMM template, fused per-channel epilogues) against torch's conv.

Covers 1-d/2-d/3-d, padding, stride, dilation, groups (incl. depthwise), 1x1 (no im2col), and the
conv + batch-norm scale + bias + residual + relu epilogue of a ResNet block. One JIT for all cases."""

from __future__ import annotations

from typing import Any

import ember.compiler.ops  # noqa: F401
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from ember.compiler.codegen.llvm import conv_direct
from ember.compiler.codegen.llvm.program import compile_groups
from ember.compiler.dtypes import float32
from ember.compiler.kernel import lower_conv_batched
from ember.compiler.kernel.group import FusionGroup, GroupNode
from ember.compiler.kernel.lower import lower_group
from ember.compiler.ops.registry import REGISTRY, TensorType

CONV = REGISTRY["conv"]
rng = np.random.default_rng(21)

# (x shape, w shape, stride, padding, dilation, groups, epilogue)
SPECS: list[tuple[Any, ...]] = [
    ((2, 3, 9, 11), (4, 3, 3, 3), 1, 1, 1, 1, "bias_relu"),
    ((2, 8, 8, 8), (16, 8, 1, 1), 1, 0, 1, 1, "bias"),             # 1x1: the image is the B operand
    ((1, 6, 10, 9), (6, 1, 3, 3), 2, 1, 1, 6, "bias_relu"),        # depthwise, stride 2
    ((2, 4, 7, 7), (6, 2, 3, 2), (2, 1), (1, 0), (1, 2), 2, "none"),
    ((2, 3, 12, 19), (6, 1, 3, 3), 1, 2, 2, 3, "bn_residual_relu"),  # depthwise x2, dilated, fused tail
    ((1, 4, 9, 10), (4, 1, 3, 3), 1, 0, 1, 4, "none"),              # depthwise without padding
    ((2, 3, 20), (5, 3, 4), 1, 2, 1, 1, "bias"),                   # conv1d, even kernel
    ((1, 2, 5, 6, 4), (3, 2, 2, 3, 2), 1, 1, 1, 1, "none"),        # conv3d
    ((2, 5, 6, 6), (5, 5, 3, 3), 1, 1, 1, 1, "bn_residual_relu"),  # a ResNet basic-block tail
    # implicit GEMM (B packed from the image): rows wider than a 16-column panel (vector panels), two
    # K blocks (the second starts mid-kernel: channel 25, tap (2, 1)), two N blocks (4900 > 4096)
    ((1, 50, 70, 70), (8, 50, 3, 3), 1, 1, 1, 1, "bias_relu"),
    ((1, 5, 41, 45), (7, 5, 3, 3), 2, 2, 2, 1, "none"),            # stride 2, dilated: lane-wise panels
    ((2, 3, 64, 64), (8, 3, 7, 7), 2, 3, 1, 1, "bias_relu"),       # a ResNet stem
]


def _T(shape: tuple[int, ...]) -> TensorType:
    return TensorType(tuple(shape), float32)


def _case(k: int, spec: tuple[Any, ...]) -> tuple[FusionGroup, list[np.ndarray], np.ndarray]:
    xs, ws, stride, padding, dilation, groups, epilogue = spec
    p = f"c{k}_"
    attrs = CONV.check_attrs({"stride": stride, "padding": padding, "dilation": dilation, "groups": groups})
    attrs = CONV.normalize(attrs, _T(xs), _T(ws))
    out_t = CONV.infer(_T(xs), _T(ws), **attrs)
    nd, co = len(ws) - 2, ws[0]
    chan = (co,) + (1,) * nd
    x, w = rng.standard_normal(xs).astype(np.float32), rng.standard_normal(ws).astype(np.float32)
    fn = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[nd]
    want = fn(torch.from_numpy(x), torch.from_numpy(w), None, stride, padding, dilation, groups).numpy()
    nodes = [GroupNode("conv", (p + "x", p + "w"), (p + "y",), attrs)]
    types = {p + "x": _T(xs), p + "w": _T(ws), p + "y": out_t}
    arrays, cur = [x, w], p + "y"

    def step(op: str, operand: np.ndarray | None, name: str) -> None:
        nonlocal cur
        inputs = (cur,) if operand is None else (cur, p + name + "_in")
        if operand is not None:
            types[p + name + "_in"] = _T(operand.shape)
            arrays.append(operand)
        nodes.append(GroupNode(op, inputs, (p + name,)))
        types[p + name] = out_t
        cur = p + name

    if epilogue.startswith("bn"):
        scale = rng.uniform(0.5, 1.5, chan).astype(np.float32)
        step("mul", scale, "scaled")
        want = want * scale
    if "bias" in epilogue or epilogue.startswith("bn"):
        bias = rng.standard_normal(chan).astype(np.float32)
        step("add", bias, "biased")
        want = want + bias
    if "residual" in epilogue:
        res = rng.standard_normal(out_t.shape).astype(np.float32)
        step("add", res, "residual")
        want = want + res
    if epilogue.endswith("relu"):
        step("relu", None, "relu")
        want = np.maximum(want, 0)
    inputs = [n for n in types if n.endswith(("_x", "_w", "_in"))]
    return FusionGroup(f"conv{k}", nodes, types, inputs, [cur]), arrays, want


CASES = [_case(k, spec) for k, spec in enumerate(SPECS)]


def test_implicit_gemm_everywhere_matches_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every 2-d case through the implicit GEMM (by default only wide stride-1 rows take it): narrow
    rows, stride 2 and dilation exercise the packer's gathered panels, the batched schedule its images
    side by side. Direct convolutions off: on AVX-512 hosts they would run these GEMMs
    (``test_llvm_conv_direct.py``)."""
    monkeypatch.setattr(conv_direct, "DIRECT_CONV", False)
    monkeypatch.setattr(lower_conv_batched, "IMPLICIT_MIN_WIDTH", 0)
    monkeypatch.setattr(lower_conv_batched, "IMPLICIT_MIN_DEPTH", 0)
    monkeypatch.setattr(lower_conv_batched, "IMPLICIT_MIN_ROWS", 0)
    monkeypatch.setattr(lower_conv_batched, "IMPLICIT_STRIDED", True)
    cases = [c for c, spec in zip(CASES, SPECS) if len(spec[1]) == 4]
    groups = [lower_group(c[0]) for c in cases]
    implicit = [k for k, g in enumerate(groups) if "im2col(" in str(g.kernel)]
    # all but the pointwise, the three depthwise and the positions-schedule cases
    assert [cases[k][0].name for k in implicit] == ["conv0", "conv8", "conv9", "conv10", "conv11"]
    exe = compile_groups("implicit", [c[0] for c in cases], [i for c in cases for i in c[0].inputs],
                         [c[0].outputs[0] for c in cases])
    got = exe(*[a for c in cases for a in c[1]])
    for (_, _, want), g in zip(cases, got, strict=True):
        np.testing.assert_allclose(g, want, rtol=1e-4, atol=1e-4)


@pytest.fixture(scope="module")
def results() -> tuple[np.ndarray, ...]:
    groups = [c[0] for c in CASES]
    inputs = [i for g in groups for i in g.inputs]
    exe = compile_groups("convs", groups, inputs, [g.outputs[0] for g in groups])
    return exe(*[a for c in CASES for a in c[1]])


@pytest.mark.parametrize("k", range(len(SPECS)), ids=[f"{s[0]}x{s[1]}_{s[6]}" for s in SPECS])
def test_conv_matches_torch(k: int, results: tuple[np.ndarray, ...]) -> None:
    np.testing.assert_allclose(results[k], CASES[k][2], rtol=1e-4, atol=1e-4)


def test_resnet_tail_is_one_gemm_epilogue(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lower_conv_batched, "TARGET_COLUMNS", 0)  # the per-image schedule
    monkeypatch.setattr(lower_conv_batched, "POSITION_ROWS", 0)
    text = str(lower_group(CASES[8][0]).kernel)  # the basic-block tail
    assert "epilogue=row_scale_row_bias_residual_relu" in text
    assert text.count("gemm[") == 1


def test_bias_reshaped_after_the_conv_still_joins_the_epilogue() -> None:
    """Tracing puts a conv's ``reshape(bias)`` between the conv and the ``add`` that reads it (LeNet-5's
    order); the lowering moves nodes that do not read the conv in front of it, so the bias and the ReLU
    are still the GEMM's epilogue, not a second pass over the output."""
    xs, ws = (3, 6, 14, 14), (16, 6, 5, 5)
    attrs = CONV.normalize(CONV.check_attrs({}), _T(xs), _T(ws))
    out_t = CONV.infer(_T(xs), _T(ws), **attrs)
    types = {"x": _T(xs), "w": _T(ws), "b": _T((16,)), "y": out_t, "b3": _T((16, 1, 1)), "z": out_t,
             "r": out_t}
    nodes = [GroupNode("conv", ("x", "w"), ("y",), attrs), GroupNode("reshape", ("b",), ("b3",), {"shape": (16, 1, 1)}),
             GroupNode("add", ("y", "b3"), ("z",)), GroupNode("relu", ("z",), ("r",))]
    group = FusionGroup("lenet_conv2", nodes, types, ["x", "w", "b"], ["r"])
    text = str(lower_group(group).kernel)
    assert "epilogue=row_bias_relu" in text and text.count("gemm[") == 1
    x, w, b = (rng.standard_normal(s).astype(np.float32) for s in (xs, ws, (16,)))
    got = compile_groups("lenet_conv2", [group], ["x", "w", "b"], ["r"])(x, w, b)[0]
    want = torch.relu(F.conv2d(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b))).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_pointwise_conv_needs_no_im2col(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lower_conv_batched, "TARGET_COLUMNS", 0)
    monkeypatch.setattr(lower_conv_batched, "POSITION_ROWS", 0)
    text = str(lower_group(CASES[1][0]).kernel)
    assert "_cols" not in text and "gemm[16x64x8]" in text


TRANSPOSED = [  # (y shape, w shape, stride, padding, output_padding, dilation, groups)
    ((2, 4, 5, 5), (4, 3, 3, 3), 2, 1, 1, 1, 1),
    ((1, 6, 7), (6, 2, 4), 1, 0, 0, 1, 3),
    ((2, 4, 4, 5), (4, 2, 2, 3), (2, 1), (0, 1), (1, 0), (1, 2), 2),
]


def test_conv_transpose_matches_torch() -> None:
    op = REGISTRY["conv_transpose"]
    groups, arrays, wants = [], [], []
    for k, (ys, ws, s, p, op_, d, g) in enumerate(TRANSPOSED):
        given = {"stride": s, "padding": p, "output_padding": op_, "dilation": d, "groups": g}
        attrs = op.normalize(op.check_attrs(given), _T(ys), _T(ws))
        out_t = op.infer(_T(ys), _T(ws), **attrs)
        n = f"t{k}_"
        nodes = [GroupNode("conv_transpose", (n + "y", n + "w"), (n + "o",), attrs),
                 GroupNode("relu", (n + "o",), (n + "r",))]
        types = {n + "y": _T(ys), n + "w": _T(ws), n + "o": out_t, n + "r": out_t}
        groups.append(FusionGroup(f"tconv{k}", nodes, types, [n + "y", n + "w"], [n + "r"]))
        y, w = rng.standard_normal(ys).astype(np.float32), rng.standard_normal(ws).astype(np.float32)
        arrays += [y, w]
        fn = {1: F.conv_transpose1d, 2: F.conv_transpose2d}[len(ys) - 2]
        wants.append(torch.relu(fn(torch.from_numpy(y), torch.from_numpy(w), None, s, p, op_, g, d)).numpy())
    got = compile_groups("tconvs", groups, [i for g in groups for i in g.inputs],
                         [g.outputs[0] for g in groups])(*arrays)
    for k, (a, b) in enumerate(zip(got, wants)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4, err_msg=str(TRANSPOSED[k]))


def test_depthwise_conv_is_a_direct_loop_with_the_tail_fused() -> None:
    k = next(i for i, spec in enumerate(SPECS) if spec[6] == "bn_residual_relu" and spec[5] == 3)
    text = str(lower_group(CASES[k][0]).kernel)
    assert "gemm[" not in text and "vectorized for" in text
    assert "_tmpl" not in text  # bias, residual and relu are stored from the accumulator directly
