"""Forward convolutions on small planes drop the kernel taps that only ever read padding.

Each case runs under the three GEMM schedules (per image, batched images, positions as rows; forced
through ``lower_conv_batched``'s thresholds) against torch, and the lowered kernel's GEMM depth ``K``
is checked to be ``Cg`` times the live taps only (per image and batched; positions keeps every tap)."""

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
from ember.compiler.ops.conv import cut_dead_taps
from ember.compiler.ops.registry import REGISTRY, TensorType

CONV = REGISTRY["conv"]

# (x shape, w shape, stride, padding, dilation, groups, epilogue, GEMM K after the cut)
SPECS: list[tuple[Any, ...]] = [
    ((1, 16, 1, 1), (24, 16, 3, 3), 1, 1, 1, 1, "bias_relu", 16),           # centre tap only
    ((8, 16, 1, 1), (24, 16, 3, 3), 1, 1, 1, 1, "residual_relu", 16),
    ((1, 8, 2, 2), (12, 8, 3, 3), 2, 1, 1, 1, "bias_relu", 8 * 2 * 2),      # stride 2: taps 1..2
    ((8, 8, 2, 2), (12, 8, 3, 3), 2, 1, 1, 1, "residual", 8 * 2 * 2),
    ((1, 6, 1, 1), (10, 6, 5, 5), 1, 2, 1, 1, "bias_relu", 6),
    ((8, 6, 2, 2), (10, 6, 5, 5), 1, 2, 1, 1, "residual_relu", 6 * 3 * 3),   # taps 1..3 of 0..4
    ((1, 6, 3, 3), (10, 6, 5, 5), 1, 2, 1, 1, "bias", 6 * 25),               # every tap live
    ((8, 6, 3, 3), (10, 6, 5, 5), 2, 2, 1, 1, "bias_relu", 6 * 25),          # stride 2 on 3x3: all live
    ((8, 6, 3, 3), (10, 6, 5, 5), 3, 2, 1, 1, "bias_relu", 6 * 3 * 3),       # stride 3: taps 2..4
    ((1, 4, 2, 2), (6, 4, 3, 3), 1, 2, 2, 1, "bias_relu", 4),                # dilation 2: centre only
    ((8, 4, 3, 3), (6, 4, 3, 3), 1, 2, 2, 1, "residual", 4 * 9),             # dilation 2, all live
    ((1, 8, 1, 1), (12, 4, 3, 3), 1, 1, 1, 2, "bias_relu", 4),               # groups
    ((8, 8, 2, 2), (12, 4, 3, 3), 1, 1, 1, 2, "residual_relu", 4 * 9),
    ((8, 8, 1, 2), (12, 4, 3, 3), 1, 1, 1, 2, "bias", 4 * 1 * 3),            # one dim cut only
]
SCHEDULES = {"per_image": (0, 0, 1024), "batched": (0, 10**6, 16), "positions": (10**6, 0, 1024)}


def _T(shape: tuple[int, ...]) -> TensorType:
    return TensorType(tuple(shape), float32)


def _case(k: int, spec: tuple[Any, ...]) -> tuple[FusionGroup, list[np.ndarray], np.ndarray]:
    """A conv group with its epilogue, its inputs, and torch's float64 result."""
    xs, ws, stride, padding, dilation, groups, epilogue, _ = spec
    rng = np.random.default_rng(300 + k)
    p = f"t{k}_"
    attrs = CONV.normalize(CONV.check_attrs({"stride": stride, "padding": padding, "dilation": dilation,
                                             "groups": groups}), _T(xs), _T(ws))
    out_t = CONV.infer(_T(xs), _T(ws), **attrs)
    x, w = rng.standard_normal(xs).astype(np.float32), rng.standard_normal(ws).astype(np.float32)
    want = F.conv2d(torch.from_numpy(x).double(), torch.from_numpy(w).double(), None, stride, padding,
                    dilation, groups).numpy()
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

    if "bias" in epilogue:
        bias = rng.standard_normal((ws[0], 1, 1)).astype(np.float32)
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
    return FusionGroup(f"tapcut{k}", nodes, types, inputs, [cur]), arrays, want


CASES = [_case(k, spec) for k, spec in enumerate(SPECS)]


def _force(monkeypatch: pytest.MonkeyPatch, schedule: str) -> None:
    rows, positions, columns = SCHEDULES[schedule]
    monkeypatch.setattr(LB, "POSITION_ROWS", rows)
    monkeypatch.setattr(LB, "BATCH_MAX_POSITIONS", positions)
    monkeypatch.setattr(LB, "TARGET_COLUMNS", columns)
    if schedule == "positions":  # else direct convolutions (AVX-512 hosts) take planes of 8+ positions
        monkeypatch.setattr(LB, "DIRECT_MIN_POSITIONS", 1 << 30)


@pytest.mark.parametrize("schedule", list(SCHEDULES))
def test_tap_cut_convs_match_torch(schedule: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _force(monkeypatch, schedule)
    groups = [c[0] for c in CASES]
    exe = compile_groups(f"tapcut_{schedule}", groups, [i for g in groups for i in g.inputs],
                         [g.outputs[0] for g in groups])
    got = exe(*[a for c in CASES for a in c[1]])
    for k, (out, case) in enumerate(zip(got, CASES)):
        np.testing.assert_allclose(out, case[2], rtol=1e-4, atol=1e-4, err_msg=f"{schedule}: {SPECS[k]}")


@pytest.mark.parametrize("schedule", list(SCHEDULES))
def test_gemm_depth_counts_only_live_taps(schedule: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Per image and batched: K is the live taps'; positions (the weights read once, unpacked, as
    the transposed B) keeps every tap, since copying the live ones out costs more than it saves."""
    _force(monkeypatch, schedule)
    for k, spec in enumerate(SPECS):
        text = str(lower_group(CASES[k][0]).kernel)
        depths = {int(g.split("]")[0].split("x")[2]) for g in text.split("gemm[")[1:]}
        full = spec[1][1] * spec[1][2] * spec[1][3]
        want = full if schedule == "positions" else spec[-1]
        assert depths == {want}, f"{schedule}: {spec}: {text}"
        assert (f"t{k}_y_wcut" in text) == (want != full)


def test_centre_tap_on_a_1x1_plane_becomes_pointwise(monkeypatch: pytest.MonkeyPatch) -> None:
    _force(monkeypatch, "per_image")
    text = str(lower_group(CASES[1][0]).kernel)  # batch 8, 1x1 plane, 3x3 pad 1
    assert "_cols" not in text and "_pad" not in text  # the image itself is the GEMM's right operand


def test_cut_geometry() -> None:
    attrs = {"stride": (1, 1), "padding": (1, 1, 1, 1), "dilation": (1, 1), "groups": 1}
    assert cut_dead_taps((1, 1), (1, 1), (3, 3), attrs) == ((1, 1), (1, 1), {**attrs, "padding": (0,) * 4})
    assert cut_dead_taps((4, 4), (4, 4), (3, 3), attrs) is None
    s2 = {**attrs, "stride": (2, 2)}  # 2x2 -> 1x1: taps 1, 2 read rows 0, 1
    assert cut_dead_taps((2, 2), (1, 1), (3, 3), s2) == ((1, 1), (2, 2), {**s2, "padding": (0,) * 4})
    # 5 taps, dilation 2, padding (3, 4) on 2 wide: only tap 2 (reading index 1) is live, but cutting
    # taps 0, 1 would need padding -1, so only the trailing taps 3, 4 go
    d2 = {**attrs, "dilation": (2, 2), "padding": (3, 4, 3, 4)}
    assert cut_dead_taps((2, 2), (1, 1), (5, 5), d2) == ((0, 0), (3, 3), {**d2, "padding": (3, 0, 3, 0)})
