"""The three GEMM schedules of a convolution (per image, batched images, positions as rows) vs torch.

Every case runs under each schedule (forced through ``lower_conv_batched``'s thresholds), so a shape
the default rule sends one way still checks the other two; one JIT per schedule for all cases."""

from __future__ import annotations

from typing import Any

import ember.compiler.ops  # noqa: F401
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from ember.compiler.codegen.llvm.program import compile_groups
from ember.compiler.dtypes import float32
from ember.compiler.kernel import lower_conv_batched as LB
from ember.compiler.kernel.group import FusionGroup, GroupNode
from ember.compiler.kernel.lower import lower_group
from ember.compiler.ops.registry import REGISTRY, TensorType

CONV = REGISTRY["conv"]

# (x shape, w shape, stride, padding, dilation, groups, epilogue)
SPECS: list[tuple[Any, ...]] = [
    ((3, 5, 4, 4), (7, 5, 3, 3), 1, 1, 1, 1, "bn_residual_relu"),      # odd channels, ResNet tail
    ((32, 8, 2, 2), (16, 8, 3, 3), 1, 1, 1, 1, "bn_relu"),             # batch 32, 2x2 planes
    ((1, 16, 1, 1), (24, 16, 3, 3), 1, 1, 1, 1, "bias_residual_relu"),  # batch 1, 1x1 plane, padded
    ((3, 6, 7, 5), (10, 3, 3, 2), (2, 1), (1, 0), (1, 2), 2, "bias"),  # groups, stride, dilation
    ((3, 4, 5, 5), (6, 4, 1, 1), 1, 0, 1, 1, "bn_relu"),               # 1x1 stride 1
    ((5, 4, 6, 6), (8, 4, 1, 1), 2, 0, 1, 1, "residual"),              # 1x1 stride 2 (downsample)
    ((2, 3, 9), (5, 3, 4), 1, 2, 1, 1, "bias_relu"),                   # conv1d, even kernel
    ((2, 2, 3, 4, 3), (3, 2, 2, 3, 2), 1, 1, 1, 1, "none"),            # conv3d
    ((4, 3, 6, 6), (5, 3, 3, 3), 1, (1, 2, 0, 1), 1, 1, "relu"),       # asymmetric padding
]
SCHEDULES = {"per_image": (0, 0, 1024), "batched": (0, 10**6, 16), "positions": (10**6, 0, 1024)}


def _T(shape: tuple[int, ...]) -> TensorType:
    return TensorType(tuple(shape), float32)


def _case(k: int, spec: tuple[Any, ...]) -> tuple[FusionGroup, list[np.ndarray], np.ndarray]:
    xs, ws, stride, padding, dilation, groups, epilogue = spec
    rng = np.random.default_rng(100 + k)
    p = f"c{k}_"
    attrs = CONV.normalize(CONV.check_attrs({"stride": stride, "padding": padding, "dilation": dilation,
                                             "groups": groups}), _T(xs), _T(ws))
    out_t = CONV.infer(_T(xs), _T(ws), **attrs)
    nd = len(ws) - 2
    chan = (ws[0],) + (1,) * nd
    x, w = rng.standard_normal(xs).astype(np.float32), rng.standard_normal(ws).astype(np.float32)
    xt = torch.from_numpy(x)
    if isinstance(padding, tuple) and len(padding) == 4:  # torch pads symmetrically: pad by hand
        xt, padding = F.pad(xt, (padding[2], padding[3], padding[0], padding[1])), 0
    fn = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[nd]
    want = fn(xt, torch.from_numpy(w), None, stride, padding, dilation, groups).numpy().astype(np.float64)
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


def _force(monkeypatch: pytest.MonkeyPatch, schedule: str) -> None:
    rows, positions, columns = SCHEDULES[schedule]
    monkeypatch.setattr(LB, "POSITION_ROWS", rows)
    monkeypatch.setattr(LB, "BATCH_MAX_POSITIONS", positions)
    monkeypatch.setattr(LB, "TARGET_COLUMNS", columns)  # 16 columns: several chunks and a remainder
    if schedule == "positions":  # else direct convolutions (AVX-512 hosts) take planes of 8+ positions
        monkeypatch.setattr(LB, "DIRECT_MIN_POSITIONS", 1 << 30)


@pytest.mark.parametrize("schedule", list(SCHEDULES))
def test_every_schedule_matches_torch(schedule: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _force(monkeypatch, schedule)
    monkeypatch.setenv("EMBER_NUM_THREADS", "2")  # image slots and GEMMs really run on two threads
    groups = [c[0] for c in CASES]
    exe = compile_groups(f"convs_{schedule}", groups, [i for g in groups for i in g.inputs],
                         [g.outputs[0] for g in groups])
    got = exe(*[a for c in CASES for a in c[1]])
    for k, (out, case) in enumerate(zip(got, CASES)):
        np.testing.assert_allclose(out, case[2], rtol=1e-4, atol=1e-4, err_msg=f"{schedule}: {SPECS[k]}")


def test_rule_picks_the_schedule_by_plane_and_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(LB, "direct_convolutions", lambda: False)  # the packed template's rule
    assert LB.choose_schedule(1, 1) == ("positions", 1)          # ResNet layer4 at 32x32, batch 1
    assert LB.choose_schedule(2, 4) == ("positions", 2)
    assert LB.choose_schedule(1, 49) == ("positions", 1)         # ResNet layer4 at 224: 49 rows
    assert LB.choose_schedule(1, 65) == ("per_image", 1)
    assert LB.choose_schedule(32, 16) == ("batched", 32)         # 512 columns: one GEMM for the batch
    assert LB.choose_schedule(64, 4) == ("batched", 64 if 64 * 4 <= LB.TARGET_COLUMNS else 256 // 4)
    assert LB.choose_schedule(32, 64) == ("per_image", 1)        # large enough planes stay per image
    assert LB.choose_schedule(3, 1024) == ("per_image", 1)
    assert LB.images_per_gemm(100, 16, target=256) == 16          # chunks bound the im2col scratch


def test_direct_convolutions_take_every_plane_of_one_tile_or_more(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(LB, "direct_convolutions", lambda: True)
    assert LB.choose_schedule(1, 1) == ("positions", 1)          # under one 8-position tile: the dot path
    assert LB.choose_schedule(3, 2) == ("positions", 3)
    assert LB.choose_schedule(1, 49) == ("per_image", 1)         # ResNet layer4 at 224
    assert LB.choose_schedule(1, 16) == ("per_image", 1)
    assert LB.choose_schedule(2, 4) == ("batched", 2)            # 8 positions over the batch
    assert LB.choose_schedule(32, 16) == ("batched", 32)
    assert LB.choose_schedule(32, 64) == ("per_image", 1)
    assert LB.implicit_pays(5, 2, 9, 6)                          # any 2-d shape reads its image in place
    monkeypatch.setattr(LB, "direct_convolutions", lambda: False)
    assert not LB.implicit_pays(5, 2, 9, 6)


def _kernel_text(k: int, schedule: str, monkeypatch: pytest.MonkeyPatch) -> str:
    _force(monkeypatch, schedule)
    return str(lower_group(CASES[k][0]).kernel)


def test_batched_kernel_is_one_gemm_per_chunk_with_the_residual_in_the_nchw_write(
        monkeypatch: pytest.MonkeyPatch) -> None:
    _force(monkeypatch, "batched")
    monkeypatch.setattr(LB, "TARGET_COLUMNS", 32)  # 3 images of 4x4: a chunk of 2 and a remainder of 1
    text = str(lower_group(CASES[0][0]).kernel)
    assert text.count("gemm[7x32x45]") == 1 and text.count("gemm[7x16x45]") == 1
    assert "epilogue=row_scale_row_bias)" in text  # the residual is not a row-major [Co, N*P] matrix
    monkeypatch.setattr(LB, "TARGET_COLUMNS", 1024)
    text = str(lower_group(CASES[0][0]).kernel)
    assert text.count("gemm[7x48x45]") == 1  # the whole batch side by side
    assert "c0_residual_in[" in text.split("gemm[")[1]  # the residual is read after the GEMM


def test_positions_kernel_uses_the_weights_as_transposed_b(monkeypatch: pytest.MonkeyPatch) -> None:
    text = _kernel_text(2, "positions", monkeypatch)  # [1,16,1,1]: one row
    assert "gemm[1x24x144](c2_y_cols[0], c2_w[0]^T, col_bias=" in text
    assert "epilogue=col_bias)" in text


def test_batched_conv_through_ember_compile_matches_eager() -> None:
    import ember
    from ember import nn

    ember.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(8, 16, 3, padding=1, stride=2), nn.ReLU(), nn.Conv2d(16, 4, 1)).eval()
    for batch in (1, 3, 32):
        x = ember.randn(batch, 3, 8, 8)
        with ember.no_grad():
            np.testing.assert_allclose(ember.compile(model)(x).numpy(), model(x).numpy(), rtol=1e-4, atol=1e-4)


def test_per_image_schedule_splits_even_batches_over_slots(monkeypatch: pytest.MonkeyPatch) -> None:
    from ember.compiler.kernel.lower_conv import image_slots

    assert [image_slots(b) for b in (1, 2, 3, 4, 6, 64)] == [1, 2, 1, 4, 2, 4]
    monkeypatch.setattr(LB, "direct_convolutions", lambda: False)  # the packed template's im2col rule
    text = _kernel_text(8, "per_image", monkeypatch)  # batch 4, padded: 4 slots of one image each
    assert "parallel for s" in text and "c8_y_pad: float32[4,3," in text and "c8_y_cols: float32[108,35]" in text
    # implicit GEMM (forced here: a 5-wide output row is below IMPLICIT_MIN_WIDTH): the template packs B
    # from the slot's padded image; no im2col matrix is stored
    monkeypatch.setattr(LB, "IMPLICIT_MIN_WIDTH", 0)
    monkeypatch.setattr(LB, "IMPLICIT_MIN_DEPTH", 0)
    monkeypatch.setattr(LB, "IMPLICIT_MIN_ROWS", 0)
    text = _kernel_text(8, "per_image", monkeypatch)
    assert "_cols" not in text
    assert "gemm[5x35x27](c8_w[0], c8_y_pad[s0 * 189] im2col(k=3x3 stride=1x1 dilation=1x1 wout=5 wp=7 " \
           "plane=63); epilogue=relu)" in text
    text = _kernel_text(0, "per_image", monkeypatch)  # batch 3: images in turn, threads inside each GEMM
    assert "parallel for s" not in text
