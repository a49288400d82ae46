"""choose_layout: the recorded NC* decision per convolution, and an unchanged graph."""

from __future__ import annotations

from ember.compiler.ir import parse, verify
from ember.compiler.passes import choose_layout
from ember.compiler.passes.layout import layout_decisions


def test_layout_keeps_nchw_and_says_why() -> None:
    g = verify(parse("""graph @f(
    %x: float32[1,3,8,8] input,
    %w: float32[4,3,3,3] parameter
) {
  %0 = conv(%x, %w) {dilation=(1, 1), groups=1, padding=(1, 1, 1, 1), stride=(1, 1)} : float32[1,4,8,8]
  %1 = relu(%0) : float32[1,4,8,8]
  return %1
}
"""))
    out, changed, stats = choose_layout(g)
    assert out is g and not changed
    assert stats["convolutions"] == 1 and stats["conversions_inserted"] == 0
    assert stats["decision"].startswith("NC* kept") and "no NCHWc/NHWC kernel" in stats["decision"]
    (line,) = layout_decisions(g)
    assert line == "conv float32[1, 4, 8, 8]: " + stats["decision"]
