"""The numerics bisector (compiler/bisect.py): it names exactly the kernel whose generated code is wrong.

A wrong kernel is injected by wrapping kernel lowering (``ember.compiler.kernel.program.lower_group``,
which both ``ember.compile`` and the bisector's one-kernel programs go through) so that one fusion group,
chosen by name, computes its output and then flips its sign (or scales it by 1.001): a code generation
bug in exactly that kernel.
"""

from __future__ import annotations

import dataclasses

import ember
import ember.compiler.kernel.program as program_mod
import ember.nn.functional as F
import numpy as np
import pytest
import torch
from ember.compiler.bisect import _compare, bisect, kernel_groups
from ember.compiler.kernel.group import FusionGroup, GroupNode
from ember.runtime.errors import CompileError


def model(x):
    """Three kernels: [mul, add, relu], [max_pool], [tanh, mul]."""
    return F.max_pool2d((x * 2 + 1).relu(), 2).tanh() * 3


def torch_model(x):
    return torch.nn.functional.max_pool2d((x * 2 + 1).relu(), 2).tanh() * 3


def _wrong(group: FusionGroup, op: str, operand: float | None) -> FusionGroup:
    """``group`` with its output passed through ``op`` (neg, or mul by ``operand``) before it is stored."""
    out = group.outputs[0]
    pre = out + "_pre"
    nodes = [dataclasses.replace(n, outputs=tuple(pre if o == out else o for o in n.outputs))
             for n in group.nodes]
    nodes.append(GroupNode(op, (pre,) if operand is None else (pre, operand), (out,)))
    types = dict(group.types)
    types[pre] = types[out]
    return FusionGroup(group.name, nodes, types, list(group.inputs), list(group.outputs))


@pytest.fixture
def inject(monkeypatch):
    """inject(kernel_prefix, op="neg", operand=None): break the kernel whose group name starts so."""
    original = program_mod.lower_group

    def install(prefix: str, op: str = "neg", operand: float | None = None) -> None:
        def lower(group, name=None):
            if group.name.startswith(prefix):
                group = _wrong(group, op, operand)
            return original(group, name)
        monkeypatch.setattr(program_mod, "lower_group", lower)
    return install


@pytest.fixture
def x():
    ember.manual_seed(3)
    return ember.randn(2, 3, 8, 8)


def _kernel_names(compiled, x):
    return [name for name, _ in kernel_groups(compiled.compiled_for(x).result)]


def test_clean_model_every_kernel_passes(x):
    compiled = ember.compile(model)
    np.testing.assert_allclose(compiled(x).numpy(), torch_model(torch.from_numpy(x.numpy())).numpy(),
                               rtol=1e-5, atol=1e-6)
    report = compiled.bisect(x)
    assert [c.name for c in report.checks] == _kernel_names(compiled, x)
    assert len(report.checks) == 3
    assert report.ok and report.first_bad is None
    assert all(c.error < 0.1 for c in report.checks)
    assert "all 3 kernels match" in report.summary()
    assert report.checks[0].formed_by == "fuse: add fused into mul; relu fused into mul"


@pytest.mark.parametrize("prefix", ["fused_0_mul", "fused_1_max_pool", "fused_2_tanh"])
def test_sign_flip_names_exactly_that_kernel(inject, x, prefix):
    inject(prefix)
    compiled = ember.compile(model)
    got = compiled(x).numpy()
    want = torch_model(torch.from_numpy(x.numpy())).numpy()
    assert not np.allclose(got, want, rtol=1e-3, atol=1e-3)  # the injected bug is real
    report = compiled.bisect(x)
    bad = [c.name for c in report.checks if not c.ok]
    assert bad == [prefix]  # the wrong kernel, and no kernel after it (they run on reference inputs)
    assert report.first_bad.name == prefix
    assert report.first_bad.formed_by.startswith("fuse")
    assert prefix in report.summary() and "exceeds the tolerance" in report.summary()


def test_small_scale_error_is_caught(inject, x):
    inject("fused_2_tanh", "mul", 1.001)  # a 0.1% error: far above float32 rounding
    report = ember.compile(model).bisect(x)
    assert report.first_bad is not None and report.first_bad.name == "fused_2_tanh"
    # error is in units of the tolerance (<= 1 passes): a 0.1% error against rtol 1e-4 is about 10
    assert report.first_bad.error > 1.0
    assert report.first_bad.error < 100.0
    assert [c.ok for c in report.checks] == [True, True, False]


def test_check_bisect_raises_naming_the_kernel(inject, x):
    inject("fused_1_max_pool")
    compiled = ember.compile(model, check="bisect")
    with pytest.raises(CompileError, match="kernel fused_1_max_pool .* formed by fuse") as info:
        compiled(x)
    assert info.value.report.first_bad.name == "fused_1_max_pool"
    # the failed signature is not cached: the next call checks (and raises) again
    with pytest.raises(CompileError, match="fused_1_max_pool"):
        compiled(x)


def test_check_bisect_passes_a_correct_model(x):
    compiled = ember.compile(model, check="bisect")
    np.testing.assert_allclose(compiled(x).numpy(), torch_model(torch.from_numpy(x.numpy())).numpy(),
                               rtol=1e-5, atol=1e-6)


def test_unknown_check_is_an_argument_error():
    with pytest.raises(ValueError, match="unknown check 'everything'"):
        ember.compile(model, check="everything")


def test_interpret_target_has_no_kernels_to_bisect(x):
    compiled = ember.compile(model, target="interpret")
    with pytest.raises(CompileError, match="target 'interpret'"):
        bisect(compiled.compiled_for(x).result, [x.numpy()])


def test_compare_rules():
    ref = np.array([1.0, np.nan, np.inf, -2.0])
    assert _compare(np.array([1.0, np.nan, np.inf, -2.0], np.float32), ref, 1e-4, 1e-5) == (0.0, 0.0)
    err, diff = _compare(np.array([1.0, 0.0, np.inf, -2.0], np.float32), ref, 1e-4, 1e-5)
    assert err == np.inf and diff == np.inf  # a NaN the reference does not have is never within tolerance
    err, diff = _compare(np.array([1.0 + 2e-4], np.float32), np.array([1.0]), 1e-4, 1e-5)
    assert err == pytest.approx(2e-4 / 1.1e-4, rel=1e-2) and diff == pytest.approx(2e-4, rel=1e-2)
    assert _compare(np.array([1, 2]), np.array([1, 3]), 1e-4, 1e-5) == (np.inf, 1.0)
    assert _compare(np.array([1, 2]), np.array([1, 2]), 1e-4, 1e-5) == (0.0, 0.0)


def test_report_marks_the_injected_kernel(inject, x, tmp_path):
    inject("fused_2_tanh")
    compiled = ember.compile(model, check="bisect")
    path = compiled.report(str(tmp_path / "bad.html"), x)  # the report is made despite the bad kernel
    with open(path, encoding="utf-8") as f:
        text = f.read()
    assert text.count('<tr class="bad"') == 1
    assert '<tr class="bad" data-kernel-row="fused_2_tanh">' in text
    assert "kernel fused_2_tanh (#2, ops tanh, mul) is the first whose error exceeds" in text
    with pytest.raises(CompileError, match="fused_2_tanh"):  # the report did not open the gate
        compiled(x)
