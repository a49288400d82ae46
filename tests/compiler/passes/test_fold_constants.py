"""fold_constants and freeze_parameters: golden text, equivalence, the size limit."""

from __future__ import annotations

import numpy as np
from ember.compiler.ir import parse, print_graph, verify
from ember.compiler.passes import fold_constants, freeze_parameters
from ember.compiler.passes.fold_constants import FOLD_LIMIT_BYTES
from passes_testing import assert_equivalent, check_golden

BEFORE = """graph @f(
    %x: float32[2] input,
    %w: float32[2] parameter
) {
  %c = constant dense<[1.0, 4.0]> : float32[2]
  %0 = sqrt(%c) : float32[2]
  %1 = mul(%0, 3.0) : float32[2]
  %2 = mul(%x, %1) : float32[2]
  %3 = add(%w, %0) : float32[2]
  %4 = add(%2, %3) : float32[2]
  return %4
}
"""


def test_fold_constants_golden_and_equivalence() -> None:
    g = verify(parse(BEFORE))
    out, changed, stats = fold_constants(g)
    verify(out)
    assert changed and stats == {"folded_nodes": 2, "kept_too_large": 0, "dropped_constants": 1}
    check_golden("fold_constants", out)
    np.testing.assert_array_equal(out.constant_data["fold1"], np.array([3.0, 6.0], np.float32))
    assert_equivalent(g, out)
    assert print_graph(g) == BEFORE


def test_large_results_that_grow_the_graph_are_not_folded() -> None:
    n = FOLD_LIMIT_BYTES // 4 + 1024
    g = verify(parse(f"""graph @f(
    %x: float32[{n}] input
) {{
  %c = constant dense<[2.0]> : float32[1]
  %0 = expand(%c) {{shape=({n},)}} : float32[{n}]
  %1 = mul(%x, %0) : float32[{n}]
  return %1
}}
"""))
    out, changed, stats = fold_constants(g)
    assert not changed and out is g and stats == {"folded_nodes": 0, "kept_too_large": 1}


def test_freeze_then_fold_evaluates_weight_preparation() -> None:
    g = verify(parse("""graph @f(
    %x: float32[2,3] input,
    %w: float32[4,3] parameter
) {
  %0 = permute(%w) {dims=(1, 0)} : float32[3,4]
  %1 = matmul(%x, %0) : float32[2,4]
  return %1
}
"""))
    w = np.arange(12, dtype=np.float32).reshape(4, 3)
    g.bindings["w"] = w
    frozen, changed, stats = freeze_parameters(g)
    assert changed and stats == {"frozen": 1} and [v.name for v in frozen.inputs] == ["x"]
    folded, changed, _ = fold_constants(frozen)
    assert changed and [n.op.name for n in folded.nodes] == ["matmul"]
    np.testing.assert_array_equal(folded.constant_data[folded.constants[0].name], w.T)
    x = np.random.default_rng(1).standard_normal((2, 3)).astype(np.float32)
    from ember.compiler.ir import interpret
    np.testing.assert_allclose(interpret(folded, [x]), x @ w.T, rtol=1e-6)
