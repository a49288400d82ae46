"""choose_layout: the recorded NCHW decision per convolution (with its GEMM schedule), an unchanged graph
(golden: after == before), compiled code under each schedule equal to the interpreter, and the decision
visible in the pipeline's report."""

from __future__ import annotations

import numpy as np
import pytest
from ember.compiler.compile import compile_graph
from ember.compiler.ir import interpret, parse, verify
from ember.compiler.passes import choose_layout, optimize
from ember.compiler.passes.layout import TARGET_LAYOUTS, layout_decisions
from ember.runtime.cpu import CpuExecutable

SOURCE = """graph @f(
    %x: float32[{n},3,{s},{s}] input,
    %w: float32[4,3,3,3] parameter,
    %v: float32[6,4,1,1] parameter
) {{
  %0 = conv(%x, %w) {{dilation=(1, 1), groups=1, padding=(1, 1, 1, 1), stride=(1, 1)}} : float32[{n},4,{s},{s}]
  %1 = relu(%0) : float32[{n},4,{s},{s}]
  %2 = conv(%1, %v) {{dilation=(1, 1), groups=1, padding=(0, 0, 0, 0), stride=(1, 1)}} : float32[{n},6,{s},{s}]
  return %2
}}
"""


def _graph(n: int, s: int):  # noqa: ANN202 - a parsed Graph
    return verify(parse(SOURCE.format(n=n, s=s)))


@pytest.mark.parametrize(("n", "s", "schedule"), [(1, 16, "per_image"), (8, 4, "batched"), (1, 2, "positions")])
def test_layout_keeps_nchw_and_records_the_schedule(n: int, s: int, schedule: str) -> None:
    g = _graph(n, s)
    before = str(g)
    out, changed, stats = choose_layout(g)
    assert out is g and not changed and str(out) == before  # golden: after == before
    assert stats["convolutions"] == 2 and stats["conversions_inserted"] == 0
    assert stats["layout"] == "NCHW" and stats["schedules"] == {schedule: 2}
    assert stats["decision"] == TARGET_LAYOUTS["llvm"][1] and "measured" in stats["decision"]
    lines = layout_decisions(g)
    assert lines[0].startswith(f"conv float32[{n}, 4, {s}, {s}]: NCHW, {schedule} schedule")
    if schedule == "batched":
        assert lines[0].endswith(f"({n} images per GEMM)")


@pytest.mark.parametrize(("n", "s"), [(1, 16), (8, 4), (1, 2)], ids=["per_image", "batched", "positions"])
def test_compiled_after_the_decision_matches_the_interpreter(n: int, s: int) -> None:
    g = verify(parse(SOURCE.format(n=n, s=s).replace(" parameter", " input")))
    rng = np.random.default_rng(n)
    feeds = [rng.standard_normal(shape).astype(np.float32)
             for shape in ((n, 3, s, s), (4, 3, 3, 3), (6, 4, 1, 1))]
    want = interpret(g, feeds)
    got = CpuExecutable(compile_graph(g, cache=False).executable)(*feeds)[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_pipeline_report_shows_the_layout_decision() -> None:
    _, report = optimize(_graph(8, 4))
    (record,) = [r for r in report.records if r.name == "choose_layout"]
    assert record.stats["schedules"] == {"batched": 2} and "layout=NCHW" in str(report)


def test_graph_without_convolutions_records_nothing() -> None:
    g = verify(parse("""graph @f(%x: float32[2,3] input) {
  %0 = relu(%x) : float32[2,3]
  return %0
}
"""))
    assert choose_layout(g)[2] == {"convolutions": 0, "conversions_inserted": 0}
    assert layout_decisions(g) == []
