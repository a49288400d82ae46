"""cut_conv_taps: golden before/after text, interpreter equivalence, and where it must not cut."""

# ruff: noqa: E501  (golden IR text: one node per line, as the printer writes it)

from __future__ import annotations

import pytest
from ember.compiler.ir import parse, print_graph, verify
from ember.compiler.passes.cut_conv_taps import cut_conv_taps
from passes_testing import assert_equivalent

BEFORE = """graph @f(
    %x: float32[2,8,1,1] input,
    %w: float32[6,8,3,3] parameter,
    %y: float32[1,4,2,2] input,
    %v: float32[5,4,3,3] parameter
) {
  %0 = conv(%x, %w) {dilation=(1, 1), groups=1, padding=(1, 1, 1, 1), stride=(1, 1)} : float32[2,6,1,1]
  %1 = conv(%y, %v) {dilation=(1, 1), groups=1, padding=(1, 1, 1, 1), stride=(2, 2)} : float32[1,5,1,1]
  return (%0, %1)
}
"""

AFTER = """graph @f(
    %x: float32[2,8,1,1] input,
    %w: float32[6,8,3,3] parameter,
    %y: float32[1,4,2,2] input,
    %v: float32[5,4,3,3] parameter
) {
  %0 = getitem(%w) {index=(("slice", none, none, none), ("slice", none, none, none), ("slice", 1, 2, none), ("slice", 1, 2, none))} : float32[6,8,1,1]
  %1 = clone(%0) : float32[6,8,1,1]
  %2 = conv(%x, %1) {dilation=(1, 1), groups=1, padding=(0, 0, 0, 0), stride=(1, 1)} : float32[2,6,1,1]
  %3 = getitem(%v) {index=(("slice", none, none, none), ("slice", none, none, none), ("slice", 1, 3, none), ("slice", 1, 3, none))} : float32[5,4,2,2]
  %4 = clone(%3) : float32[5,4,2,2]
  %5 = conv(%y, %4) {dilation=(1, 1), groups=1, padding=(0, 0, 0, 0), stride=(2, 2)} : float32[1,5,1,1]
  return (%2, %5)
}
"""


def test_cut_conv_taps_golden_and_equivalence() -> None:
    g = verify(parse(BEFORE))
    out, changed, stats = cut_conv_taps(g)
    verify(out)
    assert changed and stats["cut"] == 2 and stats["kernels"] == ["3x3 -> 1x1", "3x3 -> 2x2"]
    assert print_graph(out, locations="none") == AFTER
    assert_equivalent(g, out)


@pytest.mark.parametrize("text", [
    # every tap reads the input somewhere: nothing to cut
    """graph @f(%x: float32[1,2,4,4] input, %w: float32[3,2,3,3] parameter) {
  %0 = conv(%x, %w) {dilation=(1, 1), groups=1, padding=(1, 1, 1, 1), stride=(1, 1)} : float32[1,3,4,4]
  return %0
}
""",
    # the weight is computed from a user input: slicing it would be per-call work, not preparation
    """graph @f(%x: float32[1,2,1,1] input, %w: float32[3,2,3,3] input) {
  %0 = conv(%x, %w) {dilation=(1, 1), groups=1, padding=(1, 1, 1, 1), stride=(1, 1)} : float32[1,3,1,1]
  return %0
}
"""])
def test_cut_conv_taps_leaves_alone(text: str) -> None:
    g = verify(parse(text))
    out, changed, stats = cut_conv_taps(g)
    assert not changed and stats["cut"] == 0
    assert print_graph(out) == print_graph(g)


def test_cut_conv_taps_dilated() -> None:
    # dilation 2, 5x5 kernel, padding 4 on a 2x2 plane: only the centre tap ever reads the input
    g = verify(parse("""graph @f(%x: float32[1,3,2,2] input, %w: float32[4,3,5,5] parameter) {
  %0 = conv(%x, %w) {dilation=(2, 2), groups=1, padding=(4, 4, 4, 4), stride=(1, 1)} : float32[1,4,2,2]
  return %0
}
"""))
    out, changed, _ = cut_conv_taps(g)
    assert changed
    conv = [n for n in out.nodes if n.op.name == "conv"][0]
    assert tuple(conv.inputs[1].shape) == (4, 3, 1, 1) and conv.attrs["padding"] == (0, 0, 0, 0)
    assert_equivalent(g, out)
