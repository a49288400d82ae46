"""The verifier (one test per invariant), the interpreter against torch, and inspection: DOT, SVG through
Graphviz (or the install hint), the per-node table and FLOP estimates."""

from __future__ import annotations

import os
import stat

import ember
import numpy as np
import pytest
import torch
from ember.compiler import dtypes as dt
from ember.compiler.ir import GraphBuilder, Node, TensorType, VerificationError, interpret, verify
from ember.compiler.ir.flops import estimate_flops
from ember.compiler.ir.table import node_rows
from ember.compiler.ops import REGISTRY

F32 = dt.float32


def _t(*shape, dtype=F32):
    return TensorType(tuple(shape), dtype)


def _base():
    b = GraphBuilder("g")
    x = b.add_input("x", _t(2, 3))
    return b, x


# ---- verifier ------------------------------------------------------------------------------------


def test_verify_accepts_a_traced_graph():
    g = ember.trace(lambda x: (x.exp() * 2).sum(0), ember.randn(2, 3))
    assert verify(g) is g


def test_verify_rejects_wrong_result_type():
    b, x = _base()
    n = b.add_node(REGISTRY["exp"], (x,), {}, (_t(3, 2),))
    with pytest.raises(VerificationError, match=r"node 0 \(exp\).*float32\[3,2\].*float32\[2,3\]"):
        verify(b.finish(n.outputs[0]))


def test_verify_rejects_type_rule_failure():
    b, x = _base()
    y = b.add_input("y", _t(4))
    n = b.add_node(REGISTRY["add"], (x, y), {}, (_t(2, 3),))
    with pytest.raises(VerificationError, match="type rule rejects"):
        verify(b.finish(n.outputs[0]))


def test_verify_rejects_use_before_definition():
    b, x = _base()
    n1 = Node(REGISTRY["exp"], (x,), {}, (_t(2, 3),))
    n2 = b.add_node(REGISTRY["neg"], (n1.outputs[0],), {}, (_t(2, 3),))
    b.append(n1)  # defined after its use
    with pytest.raises(VerificationError, match="used before it is defined"):
        verify(b.finish(n2.outputs[0]))


def test_verify_rejects_a_node_listed_twice():
    b, x = _base()
    n = b.add_node(REGISTRY["exp"], (x,), {}, (_t(2, 3),))
    b.append(n)
    with pytest.raises(VerificationError, match="defined twice"):
        verify(b.finish(n.outputs[0]))


def test_verify_rejects_bad_attributes():
    b, x = _base()
    attrs = {"dim": (1,), "keepdim": False, "dtype": None, "bogus": 1}
    n = b.add_node(REGISTRY["sum"], (x,), attrs, (_t(2),))
    with pytest.raises(VerificationError, match="unexpected argument 'bogus'"):
        verify(b.finish(n.outputs[0]))
    b, x = _base()
    n = b.add_node(REGISTRY["sum"], (x,), {"dim": (1,), "keepdim": 1.5, "dtype": None}, (_t(2),))
    with pytest.raises(VerificationError, match="keepdim"):
        verify(b.finish(n.outputs[0]))


def test_verify_rejects_undefined_output_and_duplicate_names():
    b, x = _base()
    stray = Node(REGISTRY["exp"], (x,), {}, (_t(2, 3),))
    with pytest.raises(VerificationError, match="not defined"):
        verify(b.finish(stray.outputs[0]))
    b, x = _base()
    b.add_input("x", _t(1), "parameter")
    with pytest.raises(VerificationError, match="named 'x'"):
        verify(b.finish(x))


def test_verify_rejects_wrong_operand_count():
    b, x = _base()
    n = b.add_node(REGISTRY["exp"], (x, x), {}, (_t(2, 3),))
    with pytest.raises(VerificationError, match="takes 1 operands, got 2"):
        verify(b.finish(n.outputs[0]))


# ---- interpreter -----------------------------------------------------------------------------------


def test_interpreter_matches_torch():
    def f(x, w):
        h = (x @ w).relu()
        return (h * 0.5 - 1).exp().sum(1, keepdim=True), h.permute(1, 0)

    rng = np.random.default_rng(0)
    xa, wa = rng.standard_normal((4, 3)).astype(np.float32), rng.standard_normal((3, 5)).astype(np.float32)
    g = ember.trace(f, ember.tensor(xa), ember.tensor(wa))
    a, b = interpret(g, [xa, wa])
    h = torch.relu(torch.from_numpy(xa) @ torch.from_numpy(wa))
    np.testing.assert_allclose(a, (h * 0.5 - 1).exp().sum(1, keepdim=True).numpy(), rtol=1e-5)
    np.testing.assert_allclose(b, h.permute(1, 0).numpy(), rtol=1e-6)


def test_interpreter_checks_input_count_and_shapes():
    g = ember.trace(lambda x: x + 1, ember.ones(2))
    with pytest.raises(ValueError, match="takes 1 inputs"):
        interpret(g, [])
    with pytest.raises(RuntimeError, match=r"expected shape \[2\], got \[3\]"):
        interpret(g, [np.ones(3, np.float32)])


# ---- inspection ------------------------------------------------------------------------------------


def _mlp_graph():
    nn = ember.nn

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.w1 = nn.Parameter(ember.randn(8, 4))
            self.w2 = nn.Parameter(ember.randn(4, 2))

        def forward(self, x):
            return ((x @ self.w1).relu() @ self.w2).sum()

    return ember.trace(M(), ember.randn(3, 8))


def test_flops_and_table():
    g = _mlp_graph()
    assert [estimate_flops(n) for n in g.nodes] == [2 * 3 * 4 * 8, 3 * 4, 2 * 3 * 2 * 4, 3 * 2]
    rows = node_rows(g)
    assert [r["params"] for r in rows] == [32, 0, 8, 0]
    text = g.table()
    assert text.splitlines()[0].split() == ["#", "op", "scope", "output", "params", "FLOPs"]
    assert "matmul" in text and "float32[3,4]" in text
    assert text.splitlines()[-1] == "total: 4 nodes, 40 parameters, 258 FLOPs"


def test_conv_flops():
    x = ember.randn(1, 3, 8, 8)
    w = ember.randn(4, 3, 3, 3)
    g = ember.trace(lambda x, w: ember.nn.functional.conv2d(x, w, padding=1), x, w)
    conv = [n for n in g.nodes if n.op.name == "conv"][0]
    assert estimate_flops(conv) == 2 * (1 * 4 * 8 * 8) * (3 * 3 * 3)


def test_to_dot_lists_every_node_and_edge():
    g = _mlp_graph()
    dot = g.to_dot()
    assert dot.startswith('digraph "M" {') and dot.rstrip().endswith("}")
    assert dot.count(" -> ") == sum(len(n.value_inputs) for n in g.nodes) + 1
    assert '"w1\\nfloat32[8,4]\\n(parameter)"' in dot
    nxg = g.to_networkx()
    assert nxg.number_of_nodes() == len(g.inputs) + len(g.nodes)
    import networkx as nx

    assert nx.is_directed_acyclic_graph(nxg)


def test_svg_without_graphviz_names_the_install(monkeypatch):
    monkeypatch.setattr("shutil.which", lambda name: None)
    with pytest.raises(ember.CompileError, match="apt-get install graphviz"):
        _mlp_graph().to_svg()


def test_svg_through_dot(tmp_path, monkeypatch):
    """A stand-in `dot` that checks it got DOT text on stdin, so the plumbing is tested without Graphviz."""
    fake = tmp_path / "dot"
    fake.write_text("#!/bin/sh\n[ \"$1\" = \"-Tsvg\" ] || exit 3\nhead -c 7 | grep -q digraph || exit 4\n"
                    "echo '<svg>ok</svg>'\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", str(tmp_path) + os.pathsep + os.environ.get("PATH", ""))
    assert _mlp_graph().to_svg().strip() == "<svg>ok</svg>"
    fake.write_text("#!/bin/sh\necho broken >&2\nexit 1\n")
    with pytest.raises(ember.CompileError, match="broken"):
        _mlp_graph().to_svg()


def test_topological_sort_repairs_order_and_reports_cycles():
    from ember.compiler.ir import topologically_sorted
    from ember.runtime.errors import InternalError

    b, x = _base()
    n1 = Node(REGISTRY["exp"], (x,), {}, (_t(2, 3),))
    n2 = b.add_node(REGISTRY["neg"], (n1.outputs[0],), {}, (_t(2, 3),))
    n3 = b.add_node(REGISTRY["relu"], (x,), {}, (_t(2, 3),))
    b.append(n1)
    g = b.finish((n2.outputs[0], n3.outputs[0]))
    with pytest.raises(VerificationError):
        verify(g)
    fixed = verify(topologically_sorted(g))
    assert [n.op.name for n in fixed.nodes] == ["relu", "exp", "neg"]  # ready nodes in listed order
    assert topologically_sorted(fixed).nodes == fixed.nodes  # a valid order is kept
    a = np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)
    np.testing.assert_array_equal(interpret(fixed, [a])[0], -np.exp(a))
    # a cycle: two nodes reading each other's result
    b, x = _base()
    p = Node(REGISTRY["exp"], (x,), {}, (_t(2, 3),))
    q = Node(REGISTRY["add"], (x, p.outputs[0]), {}, (_t(2, 3),))
    p.inputs = (q.outputs[0],)
    b.append(p)
    b.append(q)
    with pytest.raises(InternalError, match="cycle"):
        topologically_sorted(b.finish(q.outputs[0]))
