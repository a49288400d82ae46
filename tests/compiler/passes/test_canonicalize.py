"""canonicalize: golden before/after text, interpreter equivalence, and what it must leave alone."""

from __future__ import annotations

import numpy as np
from ember.compiler.ir import interpret, parse, print_graph, verify
from ember.compiler.passes import canonicalize
from passes_testing import assert_equivalent, check_golden

BEFORE = """graph @f(
    %x: float32[2,3] input,
    %i: int64[2,3] input
) {
  %0 = mul(%x, 1) : float32[2,3]
  %1 = reshape(%0) {shape=(3, 2)} : float32[3,2]
  %2 = reshape(%1) {shape=(6,)} : float32[6]
  %3 = permute(%x) {dims=(1, 0)} : float32[3,2]
  %4 = permute(%3) {dims=(1, 0)} : float32[2,3]
  %5 = neg(%4) : float32[2,3]
  %6 = neg(%5) : float32[2,3]
  %7 = add(%6, 0.0) : float32[2,3]
  %8 = add(%i, 0) : int64[2,3]
  %9 = div(%x, 1) {rounding_mode=none} : float32[2,3]
  %10 = reshape(%x) {shape=(2, 3)} : float32[2,3]
  %11 = cast(%10) {dtype=float32} : float32[2,3]
  return (%2, %7, %8, %9, %11)
}
"""


def test_canonicalize_golden_and_equivalence() -> None:
    g = verify(parse(BEFORE))
    out, changed, stats = canonicalize(g)
    verify(out)
    assert changed and stats["rewritten"] == 8
    check_golden("canonicalize", out)
    assert_equivalent(g, out)
    assert print_graph(g) == BEFORE


def test_float_add_zero_is_kept_but_minus_zero_is_exact() -> None:
    g = verify(parse("""graph @f(
    %x: float32[3] input
) {
  %0 = add(%x, 0.0) : float32[3]
  %1 = add(%x, -0.0) : float32[3]
  return (%0, %1)
}
"""))
    out, changed, _ = canonicalize(g)
    assert changed and [n.op.name for n in out.nodes] == ["add"]
    x = np.array([-0.0, 1.0, np.nan], np.float32)
    a, b = interpret(out, [x])
    assert not np.signbit(a[0]) and np.signbit(b[0])  # x + 0.0 turns -0.0 into +0.0; x + -0.0 keeps it


def test_broadcasting_or_promoting_identities_are_kept() -> None:
    g = verify(parse("""graph @f(
    %x: float32[3] input,
    %i: int64[3] input
) {
  %0 = mul(%i, 1.0) : float32[3]
  %1 = permute(%x) {dims=(0,)} : float32[3]
  return (%0, %1)
}
"""))
    out, changed, stats = canonicalize(g)
    assert changed and stats == {"rewritten": 1, "permute": 1}
    assert [n.op.name for n in out.nodes] == ["mul"]  # int * 1.0 promotes to float: not the identity
    assert_equivalent(g, out)


def test_composed_permutes_and_clean_graph() -> None:
    g = verify(parse("""graph @f(
    %x: float32[2,3,4] input
) {
  %0 = permute(%x) {dims=(2, 0, 1)} : float32[4,2,3]
  %1 = permute(%0) {dims=(2, 0, 1)} : float32[3,4,2]
  return %1
}
"""))
    out, changed, _ = canonicalize(g)
    assert changed and len(out.nodes) == 1 and out.nodes[0].attrs["dims"] == (1, 2, 0)
    assert_equivalent(g, out)
    again, changed2, stats2 = canonicalize(out)
    assert not changed2 and again is out and stats2 == {"rewritten": 0}


def test_reshape_round_trip_disappears() -> None:
    g = verify(parse("""graph @f(
    %x: float32[2,3] input
) {
  %0 = reshape(%x) {shape=(6,)} : float32[6]
  %1 = reshape(%0) {shape=(2, 3)} : float32[2,3]
  %2 = exp(%1) : float32[2,3]
  return %2
}
"""))
    out, changed, stats = canonicalize(g)
    assert changed and [n.op.name for n in out.nodes] == ["exp"] and out.nodes[0].inputs[0] is g.inputs[0]
    assert_equivalent(g, out)
