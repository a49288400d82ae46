"""Whole small models as programs of several fusion groups (weights as parameters, intermediates in
the arena), run by the CPU back end and compared with torch: an MLP and a LeNet-style CNN."""

from __future__ import annotations

from typing import Any

import ember.compiler.ops  # noqa: F401
import numpy as np
import torch
import torch.nn.functional as F
from ember.compiler.codegen.llvm.program import compile_groups
from ember.compiler.dtypes import float32
from ember.compiler.kernel.group import FusionGroup, GroupNode
from ember.compiler.ops.registry import REGISTRY, TensorType

rng = np.random.default_rng(12)


def T(*shape: int) -> TensorType:
    return TensorType(tuple(shape), float32)


def W(*shape: int) -> np.ndarray:
    return (rng.standard_normal(shape) / np.sqrt(shape[-1])).astype(np.float32)


def _linear(name: str, x: str, w: str, b: str, out: str, xs: tuple[int, int], n: int,
            relu: bool) -> FusionGroup:
    m, k = xs
    nodes = [GroupNode("permute", (w,), (f"{name}_wt",), {"dims": (1, 0)}),
             GroupNode("matmul", (x, f"{name}_wt"), (f"{name}_mm",)),
             GroupNode("add", (f"{name}_mm", b), (f"{name}_add" if relu else out,))]
    types = {x: T(m, k), w: T(n, k), b: T(n), f"{name}_wt": T(k, n), f"{name}_mm": T(m, n), out: T(m, n)}
    if relu:
        nodes.append(GroupNode("relu", (f"{name}_add",), (out,)))
        types[f"{name}_add"] = T(m, n)
    return FusionGroup(name, nodes, types, [x, w, b], [out])


def test_mlp_with_log_softmax_matches_torch() -> None:
    batch = 5
    params = {"w1": W(64, 100), "b1": W(64), "w2": W(10, 64), "b2": W(10)}
    groups = [
        _linear("fc1", "x", "w1", "b1", "h", (batch, 100), 64, relu=True),
        _linear("fc2", "h", "w2", "b2", "logits", (batch, 64), 10, relu=False),
        FusionGroup("head", [GroupNode("log_softmax", ("logits",), ("out",), {"dim": 1})],
                    {"logits": T(batch, 10), "out": T(batch, 10)}, ["logits"], ["out"]),
    ]
    run = compile_groups("mlp", groups, ["x"], ["out"], params)
    assert run.exe.call_order == ("fc1", "fc2", "head") and "h" in run.exe.memory_plan
    x = rng.standard_normal((batch, 100)).astype(np.float32)
    (got,) = run(x)
    t = {k: torch.from_numpy(v) for k, v in params.items()}
    hidden = F.relu(F.linear(torch.from_numpy(x), t["w1"], t["b1"]))
    want = F.log_softmax(F.linear(hidden, t["w2"], t["b2"]), 1)
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-5, atol=1e-5)


def _conv_groups(name: str, x: str, w: str, b: str, out: str, xs: tuple[int, ...],
                 ws: tuple[int, ...]) -> list[FusionGroup]:
    """conv + bias + relu (one GEMM with its epilogue), then a 2x2 max pool (its own kernel)."""
    conv = REGISTRY["conv"]
    attrs = conv.normalize(conv.check_attrs({"padding": 2 if name == "c1" else 0}), T(*xs), T(*ws))
    yt = conv.infer(T(*xs), T(*ws), **attrs)
    nodes = [GroupNode("conv", (x, w), (f"{name}_y",), attrs),
             GroupNode("add", (f"{name}_y", b), (f"{name}_b",)),
             GroupNode("relu", (f"{name}_b",), (f"{name}_r",))]
    types = {x: T(*xs), w: T(*ws), b: T(ws[0], 1, 1), f"{name}_y": yt, f"{name}_b": yt, f"{name}_r": yt}
    pool = REGISTRY["max_pool"]
    pattrs = pool.normalize(pool.check_attrs({"kernel_size": (2, 2)}), yt)
    vt, it = pool.infer(yt, **pattrs)
    pool_node = GroupNode("max_pool", (f"{name}_r",), (out, f"{name}_idx"), pattrs)
    pooled = FusionGroup(f"{name}_pool", [pool_node], {f"{name}_r": yt, out: vt, f"{name}_idx": it},
                         [f"{name}_r"], [out])
    return [FusionGroup(name, nodes, types, [x, w, b], [f"{name}_r"]), pooled]


def test_two_templates_in_one_group_are_a_compile_error() -> None:
    import pytest
    from ember.compiler.kernel.lower import lower_group
    from ember.runtime.errors import CompileError

    conv_group, pool_group = _conv_groups("c1", "x", "w", "b", "p", (1, 1, 8, 8), (2, 1, 3, 3))
    both = FusionGroup("both", conv_group.nodes + pool_group.nodes, {**conv_group.types, **pool_group.types},
                       ["x", "w", "b"], ["p"])
    with pytest.raises(CompileError, match="several template ops"):
        lower_group(both)


def test_lenet_style_cnn_matches_torch() -> None:
    batch = 2
    p: dict[str, Any] = {"cw1": W(6, 1, 5, 5), "cb1": W(6, 1, 1), "cw2": W(16, 6, 5, 5),
                         "cb2": W(16, 1, 1), "fw": W(10, 400), "fb": W(10)}
    flat = FusionGroup("flatten_fc", [
        GroupNode("reshape", ("p2",), ("flat",), {"shape": (batch, 400)}),
        GroupNode("permute", ("fw",), ("fwt",), {"dims": (1, 0)}),
        GroupNode("matmul", ("flat", "fwt"), ("mm",)), GroupNode("add", ("mm", "fb"), ("out",))],
        {"p2": T(batch, 16, 5, 5), "flat": T(batch, 400), "fw": T(10, 400), "fwt": T(400, 10),
         "mm": T(batch, 10), "fb": T(10), "out": T(batch, 10)}, ["p2", "fw", "fb"], ["out"])
    groups = [*_conv_groups("c1", "x", "cw1", "cb1", "p1", (batch, 1, 28, 28), (6, 1, 5, 5)),
              *_conv_groups("c2", "p1", "cw2", "cb2", "p2", (batch, 6, 14, 14), (16, 6, 5, 5)), flat]
    run = compile_groups("lenet", groups, ["x"], ["out"], p)
    x = rng.standard_normal((batch, 1, 28, 28)).astype(np.float32)
    (got,) = run(x)
    t = {k: torch.from_numpy(v) for k, v in p.items()}
    h = F.max_pool2d(F.relu(F.conv2d(torch.from_numpy(x), t["cw1"], t["cb1"].reshape(-1), padding=2)), 2)
    h = F.max_pool2d(F.relu(F.conv2d(h, t["cw2"], t["cb2"].reshape(-1))), 2)
    want = F.linear(h.reshape(batch, 400), t["fw"], t["fb"])
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-4, atol=1e-4)
