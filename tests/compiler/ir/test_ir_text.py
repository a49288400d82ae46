"""The text IR: printing, parsing back (structural round trip), literals that must keep their exact value,
and ParseError (with line and column) as the only failure the parser ever raises."""

from __future__ import annotations

import math

import numpy as np
import pytest
from ember.compiler import dtypes as dt
from ember.compiler.ir import (
    GraphBuilder,
    TensorType,
    interpret,
    parse,
    print_graph,
    structurally_equal,
    verify,
)
from ember.compiler.ops import REGISTRY
from ember.runtime.errors import ParseError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

F32 = dt.float32


def _t(*shape, dtype=F32):
    return TensorType(tuple(shape), dtype)


def sample_graph():
    """A graph with every feature of the text form: kinds, quoted names, constants (inline and by name),
    scalar operands, nested attributes, several results, locations and a nested output tree."""
    b = GraphBuilder("sample")
    x = b.add_input("x", _t(2, 3))
    w = b.add_input("layer1.0.weight", _t(3), "parameter")
    rm = b.add_input("0.running_mean", _t(3), "buffer")
    small = b.add_constant("c0", _t(3), np.array([1.5, -0.0, np.inf], np.float32))
    big = b.add_constant("big", _t(5, 5), np.arange(25, dtype=np.float32).reshape(5, 5))
    ints = b.add_constant("idx", _t(2, dtype=dt.int64), np.array([-3, 7], np.int64))
    n0 = b.add_node(REGISTRY["add"], (x, small), {}, (_t(2, 3),), "layer1.0.conv1", ("/home/u/model.py", 12))
    n1 = b.add_node(REGISTRY["mul"], (n0.outputs[0], 1e-07), {}, (_t(2, 3),), "layer1", None)
    n2 = b.add_node(REGISTRY["add"], (n1.outputs[0], w), {}, (_t(2, 3),))
    n3 = b.add_node(REGISTRY["sub"] if not REGISTRY["sub"].composite else REGISTRY["add"],
                    (n2.outputs[0], rm), {}, (_t(2, 3),))
    n4 = b.add_node(REGISTRY["sum"], (n3.outputs[0],), {"dim": (1,), "keepdim": True, "dtype": dt.float64},
                    (_t(2, 1, dtype=dt.float64),), 'we"ird\nscope', ("a b.py", 3))
    n5 = b.add_node(REGISTRY["getitem"], (n3.outputs[0],),
                    {"index": (("int", -1), ("slice", None, 2, None))}, (_t(2),))
    n6 = b.add_node(REGISTRY["cast"], (ints,), {"dtype": F32}, (_t(2),))
    n7 = b.add_node(REGISTRY["matmul"], (big, big), {}, (_t(5, 5),))
    outs = {"a": n4.outputs[0], "b": (n5.outputs[0],), "c": [n6.outputs[0], n7.outputs[0]], "x": x}
    return b.finish(outs)


def test_sample_graph_is_valid_and_round_trips():
    g = sample_graph()
    verify(g)
    text = print_graph(g)
    g2 = parse(text, constants={"big": g.constant_data["big"]})
    assert structurally_equal(g2, g)
    assert print_graph(g2) == text
    verify(g2)
    x = np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)
    params = {"layer1.0.weight": np.ones(3, np.float32), "0.running_mean": np.full(3, 2.0, np.float32)}
    a, b = interpret(g, [x], params), interpret(g2, [x], params)
    np.testing.assert_array_equal(a["a"], b["a"])
    np.testing.assert_array_equal(a["c"][1], b["c"][1])


def test_text_form_details():
    text = print_graph(sample_graph())
    assert '%"0.running_mean": float32[3] buffer' in text
    assert "%layer1.0.weight: float32[3] parameter" in text
    assert "%c0 = constant dense<[1.5, -0.0, inf]> : float32[3]" in text
    assert "%big = constant : float32[5,5]" in text  # large constants are held by name
    assert "%1 = mul(%0, 1e-07) : float32[2,3] loc(scope=\"layer1\")" in text
    assert '{dim=(1,), dtype=float64, keepdim=true}' in text
    assert '{index=(("int", -1), ("slice", none, 2, none))}' in text
    assert 'loc(scope="we\\"ird\\nscope", file="a b.py", line=3)' in text
    assert 'return {"a": %4, "b": (%5,), "c": [%6, %7], "x": %x}' in text


def test_elided_constant_without_data_keeps_structure_but_cannot_run():
    g = sample_graph()
    g2 = parse(print_graph(g))
    assert g2.constant_data["big"] is None
    assert structurally_equal(g2, g)  # data compared only where both graphs hold it
    with pytest.raises(ValueError, match="constant 'big' has no data"):
        params = {"layer1.0.weight": np.zeros(3), "0.running_mean": np.zeros(3)}
        interpret(g2, [np.zeros((2, 3), np.float32)], params)


def test_structural_equality_sees_differences():
    g = sample_graph()
    text = print_graph(g)
    edits = [("1e-07", "1e-06"), ("keepdim=true", "keepdim=false"), ("line=12", "line=13"),
             ('"layer1.0.conv1"', '"layer2"'), ("-0.0", "0.0"), ("%1 = mul(%0, 1e-07)", "%1 = mul(%0, 1)")]
    for old, new in edits:
        changed = text.replace(old, new, 1)
        assert changed != text
        assert not structurally_equal(parse(changed, {"big": g.constant_data["big"]}), g), old


@pytest.mark.parametrize("value", [0.1, -2.5e-300, 1e300, math.inf, -math.inf, 5e-324, 1.0, -0.0,
                                   123456789.125])
def test_float_operands_round_trip_exactly(value):
    b = GraphBuilder("f")
    x = b.add_input("x", _t(2, dtype=dt.float64))
    n = b.add_node(REGISTRY["mul"], (x, value), {}, (_t(2, dtype=dt.float64),))
    g = b.finish(n.outputs[0])
    got = parse(print_graph(g)).nodes[0].inputs[1]
    assert isinstance(got, float) and got == value and math.copysign(1, got) == math.copysign(1, value)


def test_nan_and_int_and_bool_operands_keep_their_type():
    b = GraphBuilder("f")
    x = b.add_input("x", _t(2))
    n1 = b.add_node(REGISTRY["mul"], (x, math.nan), {}, (_t(2),))
    n2 = b.add_node(REGISTRY["mul"], (n1.outputs[0], 3), {}, (_t(2),))
    n3 = b.add_node(REGISTRY["mul"], (n2.outputs[0], True), {}, (_t(2),))
    g2 = parse(print_graph(b.finish(n3.outputs[0])))
    a, c, d = (n.inputs[1] for n in g2.nodes)
    assert math.isnan(a) and type(c) is int and c == 3 and d is True


@pytest.mark.parametrize("text, line, col, words", [
    ("graph @f(\n  %x: float32[2] input\n) {\n  return %y\n}\n", 4, 10, "undefined value"),
    ("graph @f(\n  %x: float33[2] input\n) {\n  return %x\n}\n", 2, 7, "unknown dtype"),
    ("graph @f(\n  %x: float32[2] input\n) {\n  %0 = nosuchop(%x) : float32[2]\n  return %0\n}\n", 4, 8,
     "unknown op"),
    ("graph @f(\n  %x: float32[2] input\n) {\n  %0 = neg(%x) : float32[2]\n  %0 = neg(%x) : float32[2]\n"
     "  return %0\n}\n", 5, 3, "defined twice"),
    ("graph @f(\n  %x: float32[2] weight\n) {\n  return %x\n}\n", 2, 18, "input kind"),
    ("graph @f() {\n  %c = constant dense<[1.0]> : float32[2]\n  return %c\n}\n", 2, 17, "holds 1 values"),
    ("graph @f() {\n  %c = constant dense<[300]> : int8[1]\n  return %c\n}\n", 2, 17, "out of range"),
    ("graph @f(\n  %x: float32[2] input\n) {\n  return %x\n}\n trailing", 6, 2, "after the graph"),
    ("graph @f(\n  %x: float32[2] input\n) {\n  %0 = neg(%x) {a=(1)} : float32[2]\n  return %0\n}\n", 4, 19,
     "trailing comma"),
    ("graph @f() {\n  return ?\n}\n", 2, 10, "unexpected character"),
])
def test_parse_errors_carry_line_and_column(text, line, col, words):
    with pytest.raises(ParseError) as info:
        parse(text)
    assert (info.value.line, info.value.column) == (line, col), str(info.value)
    assert words in str(info.value)
    assert str(info.value).startswith(f"{line}:{col}: ")


def test_huge_integer_literals_are_parse_errors():
    for text in ["graph @f() {\n  return " + "1" * 5000 + "\n}\n",
                 "graph @f(\n  %x: float32[" + "9" * 5000 + "] input\n) {\n  return %x\n}\n"]:
        with pytest.raises(ParseError, match="too long"):
            parse(text)


def test_deep_nesting_is_a_parse_error_not_a_recursion_error():
    text = "graph @f() {\n  return " + "(" * 5000 + "1" + ",)" * 5000 + "\n}\n"
    with pytest.raises(ParseError, match="nesting"):
        parse(text)


_VALID = print_graph(sample_graph())
_PIECES = ["float32", "none", "inf", "-inf", "nan", "constant", "dense", "loc", "(1,)", "int8"]
_ALPHABET = st.sampled_from(list("%@()[]{}<>,:=\"\\-.0123456789 \nabefinrstxz#_/") + _PIECES)


@st.composite
def _mutations(draw):
    text = _VALID
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["delete", "insert", "replace", "swap"]))
        i = draw(st.integers(0, len(text) - 1))
        j = min(len(text), i + draw(st.integers(1, 12)))
        piece = draw(_ALPHABET)
        if kind == "delete":
            text = text[:i] + text[j:]
        elif kind == "insert":
            text = text[:i] + piece + text[i:]
        elif kind == "replace":
            text = text[:i] + piece + text[j:]
        else:
            k = draw(st.integers(0, len(text) - 1))
            text = text[:i] + text[k:k + 8] + text[j:]
        if not text:
            text = piece
    return text


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mutations())
def test_mutated_ir_raises_only_parse_error(text):
    try:
        g = parse(text)
    except ParseError as e:
        assert e.line >= 1 and e.column >= 1
        return
    print_graph(g)  # whatever parses is a graph the printer can write
