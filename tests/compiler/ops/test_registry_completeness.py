"""Walks the op registry: every op must carry each part of its definition (STYLE.md section 1)."""

from __future__ import annotations

import inspect

import pytest
from ember.compiler.ops import REGISTRY, Pattern
from ember.compiler.ops.registry import Attr

OPS = list(REGISTRY)


def test_registry_is_frozen_and_nonempty() -> None:
    assert REGISTRY.frozen
    assert len(OPS) > 10


@pytest.mark.parametrize("op", OPS, ids=lambda o: o.name)
def test_op_definition_is_complete(op) -> None:
    assert op.name.isidentifier()
    assert all(isinstance(a, Attr) for a in op.attrs.values())
    if op.composite:
        assert op.decompose is not None, f"{op.name}: a composite needs a decomposition"
        return
    assert isinstance(op.pattern, Pattern)
    assert callable(op.infer), f"{op.name}: no type rule"
    assert callable(op.reference), f"{op.name}: no reference implementation"
    if op.differentiable:
        assert callable(op.vjp), f"{op.name}: differentiable but no vjp"
        params = list(inspect.signature(op.vjp).parameters)
        assert params[:3] == ["b", "g", "out"], f"{op.name}: vjp must take (b, g, out, *inputs, **attrs)"
    else:
        assert op.vjp is None


@pytest.mark.parametrize("op", [o for o in OPS if not o.composite], ids=lambda o: o.name)
def test_primitive_declares_a_lowering(op) -> None:
    """Each primitive says how it lowers: a scalar expression, a template, a reduction or a layout map."""
    assert op.lowering, f"{op.name}: no lowering description (scalar=, template=, reduce= or index=)"
