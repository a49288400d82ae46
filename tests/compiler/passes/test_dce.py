"""eliminate_dead_code: golden before/after text and interpreter equivalence."""

from __future__ import annotations

import ember
import numpy as np
from ember.compiler.ir import interpret, parse, print_graph, verify
from ember.compiler.passes import eliminate_dead_code

BEFORE = """graph @f(
    %x: float32[4] input,
    %w: float32[4] parameter
) {
  %unused = constant dense<[1.0, 2.0, 3.0, 4.0]> : float32[4]
  %k = constant dense<[0.5, 0.5, 0.5, 0.5]> : float32[4]
  %0 = mul(%x, 2) : float32[4]
  %1 = exp(%x) : float32[4]
  %2 = add(%1, %unused) : float32[4]
  %3 = mul(%0, %k) : float32[4]
  return (%3, %x)
}
"""

AFTER = """graph @f(
    %x: float32[4] input,
    %w: float32[4] parameter
) {
  %k = constant dense<[0.5, 0.5, 0.5, 0.5]> : float32[4]
  %0 = mul(%x, 2) : float32[4]
  %1 = mul(%0, %k) : float32[4]
  return (%1, %x)
}
"""


def test_dce_golden_and_equivalence():
    g = verify(parse(BEFORE))
    out, changed, stats = eliminate_dead_code(g)
    verify(out)
    assert changed and stats == {"removed_nodes": 2, "removed_constants": 1}
    assert print_graph(out) == AFTER
    x = np.random.default_rng(0).standard_normal(4).astype(np.float32)
    params = {"w": np.zeros(4, np.float32)}
    for a, b in zip(interpret(g, [x], params), interpret(out, [x], params)):
        np.testing.assert_array_equal(a, b)
    assert print_graph(g) == BEFORE  # the input graph is untouched


def test_dce_on_a_clean_graph_reports_no_change():
    g = parse(AFTER)
    out, changed, stats = eliminate_dead_code(g)
    assert not changed and stats == {"removed_nodes": 0, "removed_constants": 0}
    assert print_graph(out) == AFTER


def test_dce_on_a_traced_graph_with_dead_branches():
    def f(x):
        _ = x.exp().sum()  # computed and dropped
        y = x * 3
        _ = y.relu()
        return y - 1

    x = ember.randn(3, 2)
    g = ember.trace(f, x)
    out, changed, stats = eliminate_dead_code(g)
    assert [n.op.name for n in out.nodes] == ["mul", "add"]  # y - 1 decomposes to add(y, -1)
    assert stats["removed_nodes"] == len(g.nodes) - len(out.nodes) == 3
    np.testing.assert_allclose(interpret(out, [x]), interpret(g, [x]))
