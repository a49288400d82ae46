"""Hand-built fusion groups: elementwise chains, movement ops folded into indices, reductions with
producers and consumers (softmax, layer-norm statistics), GEMM with fused and unfused epilogues.
All groups of this file compile as one program (one JIT) in a module fixture."""

from __future__ import annotations

from typing import Any

import ember.compiler.ops  # noqa: F401
import numpy as np
import pytest
import torch
from ember.compiler.codegen.llvm.program import compile_groups
from ember.compiler.dtypes import float32, int64
from ember.compiler.kernel.group import FusionGroup, GroupNode
from ember.compiler.kernel.lower import lower_group
from ember.compiler.ops.registry import TensorType

F = float32


def T(*shape: int) -> TensorType:
    return TensorType(tuple(shape), F)


def N(op: str, inputs: tuple[Any, ...], out: str, **attrs: Any) -> GroupNode:
    return GroupNode(op, inputs, (out,), attrs)


def SUM(x: str, out: str, dim: tuple[int, ...], keepdim: bool = False) -> GroupNode:
    return N("sum", (x,), out, dim=dim, keepdim=keepdim, dtype=None)


rng = np.random.default_rng(11)


def R(*shape: int) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


# name -> (group, {input: array}, {output: expected})
CASES: dict[str, tuple[FusionGroup, dict[str, np.ndarray], dict[str, np.ndarray]]] = {}


def case(name: str, nodes: list[GroupNode], types: dict[str, TensorType], inputs: dict[str, np.ndarray],
         expected: dict[str, np.ndarray]) -> None:
    prefixed = {k: f"{name}_{k}" for k in types}
    nodes = [GroupNode(n.op, tuple(prefixed.get(x, x) if isinstance(x, str) else x for x in n.inputs),
                       tuple(prefixed[o] for o in n.outputs), n.attrs) for n in nodes]
    g = FusionGroup(name, nodes, {prefixed[k]: v for k, v in types.items()},
                    [prefixed[k] for k in inputs], [prefixed[k] for k in expected])
    CASES[name] = (g, {prefixed[k]: v for k, v in inputs.items()},
                   {prefixed[k]: v for k, v in expected.items()})


x, y, z = R(16, 45), R(45), R(16, 1)
case("exp_mul_add_sum", [N("mul", ("x", "y"), "t"), N("add", ("t", "z"), "u"), N("exp", ("u",), "v"),
                         SUM("v", "s", (1,))],
     {"x": T(16, 45), "y": T(45), "z": T(16, 1), "t": T(16, 45), "u": T(16, 45), "v": T(16, 45), "s": T(16)},
     {"x": x, "y": y, "z": z}, {"s": np.exp(x * y + z).sum(1)})

a = R(6, 40)
sm = torch.softmax(torch.from_numpy(a), 1).numpy()
case("softmax", [N("amax", ("a",), "m", dim=(1,), keepdim=True), N("sub", ("a", "m"), "d"),
                 N("exp", ("d",), "e"), SUM("e", "s", (1,), True),
                 N("div", ("e", "s"), "p", rounding_mode=None)],
     {"a": T(6, 40), "m": T(6, 1), "d": T(6, 40), "e": T(6, 40), "s": T(6, 1), "p": T(6, 40)},
     {"a": a}, {"p": sm})

h = R(4, 3, 33)
mu = h.mean(-1, keepdims=True)
var = ((h - mu) ** 2).mean(-1, keepdims=True)
case("layernorm", [SUM("h", "s1", (2,), True), N("div", ("s1", 33.0), "mu", rounding_mode=None),
                   N("sub", ("h", "mu"), "c"), N("mul", ("c", "c"), "c2"), SUM("c2", "s2", (2,), True),
                   N("div", ("s2", 33.0), "var", rounding_mode=None), N("add", ("var", 1e-5), "ve"),
                   N("rsqrt", ("ve",), "inv"), N("mul", ("c", "inv"), "out")],
     {"h": T(4, 3, 33), "s1": T(4, 3, 1), "mu": T(4, 3, 1), "c": T(4, 3, 33), "c2": T(4, 3, 33),
      "s2": T(4, 3, 1), "var": T(4, 3, 1), "ve": T(4, 3, 1), "inv": T(4, 3, 1), "out": T(4, 3, 33)},
     {"h": h}, {"out": (h - mu) / np.sqrt(var + 1e-5), "var": var})

p = R(5, 12, 7)
case("permute_reshape_slice", [N("permute", ("p",), "q", dims=(2, 0, 1)), N("neg", ("q",), "nq"),
                               N("reshape", ("nq",), "r", shape=(7, 60)),
                               N("getitem", ("r",), "g", index=(("slice", 1, None, 2), ("slice", 3, 50, 1))),
                               N("expand", ("g",), "ex", shape=(2, 3, 47))],
     {"p": T(5, 12, 7), "q": T(7, 5, 12), "nq": T(7, 5, 12), "r": T(7, 60), "g": T(3, 47),
      "ex": T(2, 3, 47)},
     {"p": p}, {"ex": np.broadcast_to((-p.transpose(2, 0, 1)).reshape(7, 60)[1::2, 3:50], (2, 3, 47))})

v = R(8, 30)
case("view_input_reshape_int_index", [N("reshape", ("v",), "w", shape=(4, 2, 30)),
                                      N("getitem", ("w",), "row",
                                        index=(("int", -1), ("none",), ("ellipsis",))),
                                      N("mul", ("row", 3.0), "o")],
     {"v": T(8, 30), "w": T(4, 2, 30), "row": T(1, 2, 30), "o": T(1, 2, 30)},
     {"v": v}, {"o": v.reshape(4, 2, 30)[-1, None] * 3})

ga, gw, gb, gr = R(23, 40), R(31, 40), R(31), R(23, 31)
lin = ga @ gw.T + gb
case("linear_bias_residual_relu", [N("permute", ("w",), "wt", dims=(1, 0)), N("matmul", ("a", "wt"), "y"),
                                   N("add", ("y", "b"), "yb"), N("add", ("yb", "r"), "yr"),
                                   N("relu", ("yr",), "o")],
     {"a": T(23, 40), "w": T(31, 40), "wt": T(40, 31), "b": T(31), "y": T(23, 31), "yb": T(23, 31),
      "r": T(23, 31), "yr": T(23, 31), "o": T(23, 31)},
     {"a": ga, "w": gw, "b": gb, "r": gr}, {"o": np.maximum(lin + gr, 0)})

case("gemm_unfused_epilogue",
     [N("matmul", ("a", "b"), "y"), N("tanh", ("y",), "t"), N("mul", ("t", "b2"), "o")],
     {"a": T(23, 40), "b": T(40, 31), "y": T(23, 31), "t": T(23, 31), "b2": T(31), "o": T(23, 31)},
     {"a": ga, "b": gw.T.copy(), "b2": gb}, {"o": np.tanh(ga @ gw.T) * gb, "y": ga @ gw.T})

ba, bb = R(2, 3, 9, 17), R(3, 17, 5)
case("batched_matmul_transposed_a",
     [N("permute", ("a",), "at", dims=(0, 1, 3, 2)), N("matmul", ("at", "b"), "y")],
     {"a": T(2, 3, 17, 9), "at": T(2, 3, 9, 17), "b": T(3, 17, 5), "y": T(2, 3, 9, 5)},
     {"a": ba.transpose(0, 1, 3, 2).copy(), "b": bb}, {"y": ba @ bb})

sa, sw, sb = R(3, 5, 16), R(12, 16), R(12)
case("sequence_linear_gelu", [N("permute", ("w",), "wt", dims=(1, 0)), N("matmul", ("a", "wt"), "y"),
                              N("add", ("y", "b"), "yb"), N("tanh", ("yb",), "o")],
     {"a": T(3, 5, 16), "w": T(12, 16), "wt": T(16, 12), "y": T(3, 5, 12), "b": T(12), "yb": T(3, 5, 12),
      "o": T(3, 5, 12)}, {"a": sa, "w": sw, "b": sb}, {"o": np.tanh(sa @ sw.T + sb)})

mv, vv = R(7, 13), R(13)
case("matvec", [N("matmul", ("m", "v"), "y"), N("sigmoid", ("y",), "o")],
     {"m": T(7, 13), "v": T(13), "y": T(7), "o": T(7)}, {"m": mv, "v": vv},
     {"o": 1 / (1 + np.exp(-(mv @ vv)))})


s0 = R(19, 12)
case("softmax_op_dim0", [N("softmax", ("x",), "p", dim=0)], {"x": T(19, 12), "p": T(19, 12)}, {"x": s0},
     {"p": torch.softmax(torch.from_numpy(s0), 0).numpy()})
case("log_softmax_op", [N("log_softmax", ("x",), "q", dim=1)], {"x": T(19, 12), "q": T(19, 12)}, {"x": s0},
     {"q": torch.log_softmax(torch.from_numpy(s0), 1).numpy()})

bx, bm, bv, bw, bb = R(2, 5, 3, 4), R(5), rng.uniform(0.5, 2, 5).astype(np.float32), R(5), R(5)
case("batch_norm_relu", [N("batch_norm", ("x", "m", "v", "w", "b"), "y", eps=1e-5), N("relu", ("y",), "o")],
     {"x": T(2, 5, 3, 4), "m": T(5), "v": T(5), "w": T(5), "b": T(5), "y": T(2, 5, 3, 4), "o": T(2, 5, 3, 4)},
     {"x": bx, "m": bm, "v": bv, "w": bw, "b": bb},
     {"o": torch.relu(torch.nn.functional.batch_norm(*map(torch.from_numpy, (bx, bm, bv, bw, bb)))).numpy()})


ew, ei = R(10, 6), np.array([[3, 0, 9], [9, 2, 2]], dtype=np.int64)
case("embedding_then_tanh", [N("embedding", ("w", "i"), "e", padding_idx=None), N("tanh", ("e",), "o")],
     {"w": T(10, 6), "i": TensorType((2, 3), int64), "e": T(2, 3, 6), "o": T(2, 3, 6)},
     {"w": ew, "i": ei}, {"o": np.tanh(ew[ei])})

tx, ti = R(4, 9), np.random.default_rng(2).integers(-9, 9, size=(4, 3)).astype(np.int64)
case("take_along_dim", [N("take_along_dim", ("x", "i"), "o", dim=1)],
     {"x": T(4, 9), "i": TensorType((4, 3), int64), "o": T(4, 3)}, {"x": tx, "i": ti},
     {"o": np.take_along_axis(tx, ti, axis=1)})


@pytest.fixture(scope="module")
def results() -> dict[str, dict[str, np.ndarray]]:
    groups = [c[0] for c in CASES.values()]
    inputs = [k for c in CASES.values() for k in c[1]]
    outputs = [k for c in CASES.values() for k in c[2]]
    exe = compile_groups("fused", groups, inputs, outputs)
    got = exe(*[a for c in CASES.values() for a in c[1].values()])
    return dict(zip(outputs, got))


@pytest.mark.parametrize("name", sorted(CASES))
def test_fused_group_matches_numpy(name: str, results: dict[str, np.ndarray]) -> None:
    for out, want in CASES[name][2].items():
        np.testing.assert_allclose(results[out], want, rtol=2e-5, atol=2e-5, err_msg=out)


def test_gemm_epilogue_is_fused_into_the_template() -> None:
    text = str(lower_group(CASES["linear_bias_residual_relu"][0]).kernel)
    assert "gemm[23x31x40]" in text and "^T" in text
    assert "epilogue=col_bias_residual_relu" in text
    assert "for " not in text  # nothing left for a loop nest


def test_views_of_inputs_stay_affine() -> None:
    """Permute/slice/expand of an input fold into strides: the innermost loop loads without // or %."""
    text = str(lower_group(CASES["view_input_reshape_int_index"][0]).kernel)
    assert "//" not in text and "%" not in text
    assert "_v[((180 + (i0 * 30)) + i1)]" in text, text  # row -1 of [4, 2, 30] starts at 3 * 60


def test_softmax_is_one_pass_per_row() -> None:
    text = str(lower_group(CASES["softmax"][0]).kernel)
    assert text.count("for i") == 1  # one outer loop over rows; reductions and the store inside it
    assert "vectorized for r" in text and "vectorized for j" in text


def test_reductions_over_different_dims_cannot_share_a_kernel() -> None:
    from ember.runtime.errors import CompileError

    g = FusionGroup("two", [N("softmax", ("x",), "p", dim=0), N("softmax", ("x",), "q", dim=1)],
                    {"x": T(4, 5), "p": T(4, 5), "q": T(4, 5)}, ["x"], ["p", "q"])
    with pytest.raises(CompileError, match="different domains"):
        lower_group(g)


def test_kernels_named_like_libm_functions_do_not_shadow_them() -> None:
    """A float64 log calls libm's ``log``; a kernel (group) named ``log`` must not be picked instead."""
    from ember.compiler.dtypes import float64

    t = TensorType((5,), float64)
    g = FusionGroup("log", [N("log", ("x",), "y")], {"x": t, "y": t}, ["x"], ["y"])
    x = np.linspace(0.5, 3.0, 5)
    (y,) = compile_groups("shadow", [g], ["x"], ["y"])(x)
    np.testing.assert_allclose(y, np.log(x), rtol=1e-14)


def test_linear_over_a_sequence_is_one_gemm_with_its_epilogue() -> None:
    text = str(lower_group(CASES["sequence_linear_gelu"][0]).kernel)
    assert "gemm[15x12x16]" in text and "epilogue=col_bias_tanh" in text and "for " not in text
