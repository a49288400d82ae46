"""eliminate_common_subexpressions: golden before/after text and interpreter equivalence."""

from __future__ import annotations

import ember
import numpy as np
from ember.compiler.ir import interpret, parse, print_graph, verify
from ember.compiler.passes import eliminate_common_subexpressions, eliminate_dead_code

BEFORE = """graph @f(
    %x: float32[4] input
) {
  %0 = exp(%x) : float32[4]
  %1 = exp(%x) : float32[4]
  %2 = add(%0, %1) : float32[4]
  %3 = mul(%x, 2) : float32[4]
  %4 = mul(%x, 2.0) : float32[4]
  %5 = add(%1, 1.0) : float32[4]
  %6 = sum(%2) {dim=(0,), dtype=none, keepdim=false} : float32[]
  %7 = sum(%2) {dim=(0,), dtype=none, keepdim=true} : float32[1]
  return (%2, %3, %4, %5, %6, %7)
}
"""

AFTER = """graph @f(
    %x: float32[4] input
) {
  %0 = exp(%x) : float32[4]
  %1 = add(%0, %0) : float32[4]
  %2 = mul(%x, 2) : float32[4]
  %3 = mul(%x, 2.0) : float32[4]
  %4 = add(%0, 1.0) : float32[4]
  %5 = sum(%1) {dim=(0,), dtype=none, keepdim=false} : float32[]
  %6 = sum(%1) {dim=(0,), dtype=none, keepdim=true} : float32[1]
  return (%1, %2, %3, %4, %5, %6)
}
"""


def test_cse_golden_and_equivalence():
    g = verify(parse(BEFORE))
    out, changed, stats = eliminate_common_subexpressions(g)
    verify(out)
    assert changed and stats == {"merged_nodes": 1, "skipped_sources": 0}
    # int 2 and float 2.0 operands differ (they promote differently), so those nodes stay apart
    assert print_graph(out) == AFTER
    x = np.random.default_rng(1).standard_normal(4).astype(np.float32)
    for a, b in zip(interpret(g, [x]), interpret(out, [x])):
        np.testing.assert_array_equal(a, b)
    again, changed2, _ = eliminate_common_subexpressions(out)
    assert not changed2 and print_graph(again) == AFTER


def test_cse_merges_chains_then_dce_has_nothing_left():
    def f(x):
        a = (x * 2).exp().sum(1)
        b = (x * 2).exp().sum(1)
        return a + b

    x = ember.randn(3, 5)
    g = ember.trace(f, x)
    out, changed, stats = eliminate_common_subexpressions(g)
    assert stats["merged_nodes"] == 3
    assert [n.op.name for n in out.nodes] == ["mul", "exp", "sum", "add"]
    _, dce_changed, _ = eliminate_dead_code(out)
    assert not dce_changed
    np.testing.assert_allclose(interpret(out, [x]), f(x).numpy(), rtol=1e-6)


def test_cse_merges_pure_constants_but_not_operand_free_opaque_nodes():
    from ember.compiler import dtypes as dt
    from ember.compiler.ir import GraphBuilder, TensorType
    from ember.compiler.ops import REGISTRY
    from ember.compiler.ops.registry import OpDef, Pattern

    t = TensorType((2,), dt.float32)
    full = REGISTRY["full"]
    attrs = {"shape": (2,), "value": 1.0, "dtype": dt.float32}
    # an unregistered stand-in for a random source: opaque, no operands
    draw = OpDef("draw", Pattern.OPAQUE, (), {}, lambda: t, lambda xp: xp.zeros(2, "float32"), None, False,
                 (), 1, False, None, None, {}, False, False, False)
    b = GraphBuilder("g")
    nodes = [b.add_node(full, (), attrs, (t,)), b.add_node(full, (), attrs, (t,)),
             b.add_node(draw, (), {}, (t,)), b.add_node(draw, (), {}, (t,))]
    out, changed, stats = eliminate_common_subexpressions(b.finish(tuple(n.outputs[0] for n in nodes)))
    assert changed and stats == {"merged_nodes": 1, "skipped_sources": 2}
    assert [n.op.name for n in out.nodes] == ["full", "draw", "draw"]
    assert out.outputs[0] is out.outputs[1] and out.outputs[2] is not out.outputs[3]
