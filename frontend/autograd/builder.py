"""The eager side of the gradient-rule builder: each op call runs on tensors through the dispatcher, so a
rule run with grad mode on records its own tape (that is how create_graph gives higher-order gradients)."""

from __future__ import annotations

from typing import Any

from ember.compiler.ops.builder import Builder
from ember.compiler.ops.registry import OpDef


class EagerBuilder(Builder):
    def emit(self, op: OpDef, inputs: tuple[Any, ...], attrs: dict[str, Any]) -> Any:
        return _apply()(op, inputs, attrs)

    def differentiates_result(self) -> bool:
        from ember._state import STATE

        return STATE.grad_enabled  # rules run with grad mode on exactly when create_graph=True


_APPLY: Any = None


def _apply() -> Any:
    """ember.dispatch.apply, imported once (dispatch imports the autograd package at load time)."""
    global _APPLY
    if _APPLY is None:
        from ember.dispatch import apply

        _APPLY = apply
    return _APPLY


EAGER = EagerBuilder()
