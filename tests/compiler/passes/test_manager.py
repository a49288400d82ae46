"""PassManager: order, per-pass statistics and timing, and the settings switches (EMBER_CHECKS,
EMBER_DUMP_IR, EMBER_DEBUG) read through ember.runtime.settings."""

from __future__ import annotations

import io

import pytest
from ember.compiler.ir import GraphBuilder, Node, parse, print_graph
from ember.compiler.ir.verifier import VerificationError
from ember.compiler.passes import PassManager, eliminate_common_subexpressions, eliminate_dead_code
from ember.runtime import settings
from ember.runtime.errors import InternalError

TEXT = """graph @f(
    %x: float32[4] input
) {
  %0 = exp(%x) : float32[4]
  %1 = exp(%x) : float32[4]
  %2 = add(%0, %1) : float32[4]
  %3 = neg(%x) : float32[4]
  return %2
}
"""


def test_runs_passes_in_order_with_stats():
    pm = PassManager([eliminate_common_subexpressions, eliminate_dead_code])
    out, report = pm.run(parse(TEXT))
    assert [r.name for r in report.records] == ["eliminate_common_subexpressions", "eliminate_dead_code"]
    cse, dce = report.records
    assert (cse.changed, cse.stats, cse.nodes_before, cse.nodes_after) == (True, {"merged_nodes": 1,
                                                                                  "skipped_sources": 0}, 4, 3)
    assert (dce.changed, dce.stats["removed_nodes"], dce.nodes_after) == (True, 1, 2)
    assert all(r.seconds >= 0 for r in report.records) and report.total_seconds >= cse.seconds
    assert [n.op.name for n in out.nodes] == ["exp", "add"]
    table = str(report)
    assert "eliminate_dead_code" in table and "removed_nodes=1" in table and "4->3" in table


def test_named_passes_and_duplicate_names():
    pm = PassManager([("dce", eliminate_dead_code)])
    _, report = pm.run(parse(TEXT))
    assert report.records[0].name == "dce"
    with pytest.raises(InternalError, match="listed twice"):
        PassManager([eliminate_dead_code, eliminate_dead_code])


def _breaking_pass(graph):
    """Returns a graph whose node uses a value defined nowhere."""
    b = GraphBuilder.like(graph)
    stray = graph.nodes[0]
    bad = Node(stray.op, (Node(stray.op, (graph.inputs[0],), {}, (stray.outputs[0].type,)).outputs[0],), {},
               (stray.outputs[0].type,))
    b.append(bad)
    return b.finish(bad.outputs[0]), True, {}


def test_checks_setting_verifies_after_each_pass():
    pm = PassManager([eliminate_dead_code, ("break_it", _breaking_pass)])
    pm.run(parse(TEXT))  # checks off: the broken graph goes through
    with settings.override(CHECKS=True):
        with pytest.raises(VerificationError, match="after pass 'break_it'"):
            pm.run(parse(TEXT))


def test_checks_from_the_environment(monkeypatch):
    monkeypatch.setenv("EMBER_CHECKS", "1")
    with pytest.raises(VerificationError, match="after pass 'break_it'"):
        PassManager([("break_it", _breaking_pass)]).run(parse(TEXT))


def test_dump_ir_writes_one_numbered_file_per_pass(tmp_path, monkeypatch):
    monkeypatch.setenv("EMBER_DUMP_IR", str(tmp_path / "dump"))
    out, _ = PassManager([eliminate_common_subexpressions, eliminate_dead_code]).run(parse(TEXT))
    files = sorted(p.name for p in (tmp_path / "dump").iterdir())
    assert files == ["00-input.ir", "01-eliminate_common_subexpressions.ir", "02-eliminate_dead_code.ir"]
    assert (tmp_path / "dump" / "00-input.ir").read_text() == TEXT
    assert (tmp_path / "dump" / "02-eliminate_dead_code.ir").read_text() == print_graph(out)


def test_debug_3_prints_ir_after_changing_passes():
    stream = io.StringIO()
    pm = PassManager([eliminate_dead_code, ("dce_again", eliminate_dead_code)], stream=stream)
    with settings.override(DEBUG=3):
        out, _ = pm.run(parse(TEXT))
    text = stream.getvalue()
    assert "// ---- IR after eliminate_dead_code (changed) ----" in text
    assert "IR after dce_again" not in text  # unchanged: its IR is not printed
    assert text.count("graph @f(") == 1
    assert "total" in text  # the report is printed from level 2 up
    stream2 = io.StringIO()
    with settings.override(DEBUG=3):
        PassManager([("dce_again", eliminate_dead_code)], print_ir="always", stream=stream2).run(out)
    assert "// ---- IR after dce_again (unchanged) ----" in stream2.getvalue()
    stream3 = io.StringIO()
    PassManager([eliminate_dead_code], stream=stream3).run(parse(TEXT))
    assert stream3.getvalue() == ""  # debug 0: silent
    with settings.override(DEBUG=2):
        PassManager([eliminate_dead_code], stream=stream3).run(parse(TEXT))
    assert "removed_nodes=1" in stream3.getvalue() and "graph @f" not in stream3.getvalue()


def test_a_pass_returning_the_wrong_shape_is_an_internal_error():
    with pytest.raises(InternalError, match="must return"):
        PassManager([("bad", lambda g: g)]).run(parse(TEXT))
