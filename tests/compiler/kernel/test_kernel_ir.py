"""Kernel IR: construction, the printer, the expression builder's promotion, index folding, views."""

from __future__ import annotations

import ember.compiler.ops  # noqa: F401
import pytest
from ember.compiler.dtypes import bool_, float32, float64, int32, int64
from ember.compiler.kernel.builder import ExprBuilder, const, iadd, ifloordiv, imod, imul
from ember.compiler.kernel.group import FusionGroup, GroupNode, expand_composites
from ember.compiler.kernel.ir import (
    Barrier,
    Binary,
    Buffer,
    Cast,
    Const,
    Declare,
    Kernel,
    Load,
    Local,
    Loop,
    LoopKind,
    Reduce,
    Store,
    Var,
    format_kernel,
    free_vars,
    linear_coeff,
)
from ember.compiler.kernel.lower import lower_group
from ember.compiler.kernel.values import View, contiguous_strides, movement
from ember.compiler.ops.registry import TensorType
from ember.runtime.errors import CompileError

i, j = Var("i"), Var("j")


def test_printer_shows_loops_kinds_stores_and_reductions() -> None:
    x = Buffer("x", float32, (4, 8))
    y = Buffer("y", float32, (4,))
    body = (Loop("i", 4, (
        Declare("acc", float32, const(0.0, float32)),
        Loop("j", 8, (Reduce("acc", "add", Load("x", iadd(imul(i, 8), j), float32)),), LoopKind.VECTORIZED),
        Store("y", i, Local("acc", float32)),
        Barrier(),
    ), LoopKind.PARALLEL),)
    text = format_kernel(Kernel("k", (x, y), body))
    assert text == (
        "kernel k(x: float32[4,8], y: float32[4]):\n"
        "  parallel for i in 0..4:\n"
        "    float32 acc = 0.0\n"
        "    vectorized for j in 0..8:\n"
        "      acc = add(acc, x[((i * 8) + j)])\n"
        "    y[i] = acc\n"
        "    barrier"
    )


def test_expressions_are_values_with_structural_equality() -> None:
    a = Binary("add", Load("x", i, float32), const(1.0, float32), float32)
    b = Binary("add", Load("x", Var("i"), float32), Const(1.0, float32), float32)
    assert a == b and hash(a) == hash(b)
    assert free_vars(a) == {"i"}


def test_index_helpers_fold_constants() -> None:
    assert iadd(0, i) == i and imul(i, 1) == i and imul(i, 0) == Const(0, int64)
    assert iadd(2, 3) == Const(5, int64) and ifloordiv(i, 1) == i and imod(i, 1) == Const(0, int64)
    assert ifloordiv(7, 2) == Const(3, int64) and imod(-1, 4) == Const(3, int64)


def test_linear_coeff_detects_affine_indices() -> None:
    assert linear_coeff(iadd(imul(i, 8), j), "j") == 1
    assert linear_coeff(iadd(imul(i, 8), j), "i") == 8
    assert linear_coeff(imul(iadd(i, j), 3), "j") == 3
    assert linear_coeff(imul(i, j), "j") is None  # a product of loop variables is not affine
    assert linear_coeff(ifloordiv(j, 4), "j") is None
    assert linear_coeff(Load("idx", j, int64), "j") is None
    assert linear_coeff(Load("idx", i, int64), "j") == 0


def test_builder_promotes_like_pytorch() -> None:
    e = ExprBuilder("t")
    xi = Load("a", i, int32)
    xf = Load("b", i, float32)
    assert e.add(xi, 2).dtype is int32          # an int scalar keeps the tensor's int dtype
    assert e.add(xi, 2.5).dtype is float32      # a float scalar with ints: the default float
    assert e.add(xf, Load("c", i, float64)).dtype is float64
    assert e.div(xi, xi).dtype is float32       # true division of ints
    assert e.div(xi, xi, "floor").dtype is int32
    assert e.exp(xi).dtype is float32
    assert e.cmp("lt", xi, 1.5).dtype is bool_
    assert isinstance(e.cmp("lt", xi, 1.5).a, Cast)
    assert e.not_(xi) == Binary("xor", xi, Const(-1, int32), int32)


def test_builder_rejects_unknown_functions_naming_the_op() -> None:
    with pytest.raises(CompileError, match="'myop'"):
        ExprBuilder("myop").zeta(const(1.0))
    with pytest.raises(CompileError, match="comparison"):
        ExprBuilder("myop").cmp("spaceship", const(1.0), const(2.0))


def test_movement_on_views_gives_strided_views() -> None:
    v = View("x", (4, 6), float32, contiguous_strides((4, 6)))
    p = movement("permute", v, {"dims": (1, 0)}, (6, 4))
    assert isinstance(p, View) and p.strides == (1, 6)
    s = movement("getitem", v, {"index": (("slice", 1, None, 2), ("int", 2))}, (2,))
    assert isinstance(s, View) and (s.offset, s.strides) == (8, (12,))
    r = movement("reshape", v, {"shape": (2, 2, 6)}, (2, 2, 6))
    assert isinstance(r, View) and r.strides == (12, 6, 1)
    bad = movement("reshape", p, {"shape": (24,)}, (24,))  # a transposed view cannot flatten: re-index
    assert not isinstance(bad, View)
    assert "//" in str(lower_group(FusionGroup(
        "g", [GroupNode("permute", ("x",), ("t",), {"dims": (1, 0)}),
              GroupNode("reshape", ("t",), ("y",), {"shape": (24,)})],
        {"x": TensorType((4, 6), float32), "t": TensorType((6, 4), float32), "y": TensorType((24,), float32)},
        ["x"], ["y"])).kernel)


def test_elementwise_schedule_marks_parallel_and_vector_loops() -> None:
    t = TensorType((256, 300), float32)
    g = FusionGroup("g", [GroupNode("exp", ("x",), ("y",))], {"x": t, "y": t}, ["x"], ["y"])
    k = lower_group(g).kernel
    outer = k.body[0]
    assert isinstance(outer, Loop) and outer.kind is LoopKind.PARALLEL
    assert outer.body[0].kind is LoopKind.VECTORIZED  # type: ignore[attr-defined]
    small = FusionGroup("s", [GroupNode("exp", ("x",), ("y",))],
                        {"x": TensorType((3, 5), float32), "y": TensorType((3, 5), float32)}, ["x"], ["y"])
    assert "parallel" not in str(lower_group(small).kernel)


def test_fusion_group_validation() -> None:
    t = TensorType((2,), float32)
    with pytest.raises(CompileError, match="before it is defined"):
        FusionGroup("g", [GroupNode("exp", ("z",), ("y",))], {"x": t, "y": t}, ["x"], ["y"])
    with pytest.raises(CompileError, match="never computed"):
        FusionGroup("g", [GroupNode("exp", ("x",), ("y",))], {"x": t, "y": t}, ["x"], ["q"])
    with pytest.raises(CompileError, match="no type"):
        FusionGroup("g", [GroupNode("exp", ("x",), ("y",))], {"x": t}, ["x"], ["y"])


def test_composites_expand_into_primitives() -> None:
    t = TensorType((3, 4), float32)
    g = FusionGroup("g", [GroupNode("mean", ("x",), ("m",), {"dim": (1,), "keepdim": False, "dtype": None})],
                    {"x": t, "m": TensorType((3,), float32)}, ["x"], ["m"])
    ops = [n.op for n in expand_composites(g).nodes]
    assert "mean" not in ops and "sum" in ops and ops[-1] == "clone"


def test_short_trailing_dims_merge_into_one_vector_loop() -> None:
    t, one = TensorType((64, 3), float32), TensorType((1, 1), float32)
    g = FusionGroup("g", [GroupNode("mul", ("x", "y"), ("u",))], {"x": t, "y": one, "u": t},
                    ["x", "y"], ["u"])
    k = lower_group(g).kernel
    assert str(k).splitlines()[1:] == ["  vectorized for i0 in 0..192:", "    u[i0] = x[i0] * y[0]"]
    assert k.param("x").shape == (64, 3)  # the signature keeps the group's shapes
    bcast = FusionGroup("b", [GroupNode("add", ("x", "z"), ("u",))],
                        {"x": t, "z": TensorType((3,), float32), "u": t}, ["x", "z"], ["u"])
    assert "for i1 in 0..3" in str(lower_group(bcast).kernel)  # a broadcast keeps its nest
