"""The interface gradient rules and decompositions are written against.

A rule calls ops as builder methods, ``b.mul(g, x)``, ``b.sum(g, dim=(0,), keepdim=False)``. The eager
builder (frontend) runs them on tensors, recording a tape when higher-order gradients are wanted; the
graph builder (compiler.autodiff) emits IR nodes. One rule, two uses.
"""

from __future__ import annotations

import functools
from typing import Any

from ember.compiler.ops.registry import REGISTRY, OpDef


class Builder:
    """Base class; subclasses implement ``emit``. Unknown op names raise AttributeError at once."""

    def emit(self, op: OpDef, inputs: tuple[Any, ...], attrs: dict[str, Any]) -> Any:
        raise NotImplementedError

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        op = REGISTRY.get(name)
        if op is None:
            raise AttributeError(f"{type(self).__name__}: no op named {name!r} in the registry")
        call = functools.partial(self._call, op)
        self.__dict__[name] = call  # cache: later lookups skip __getattr__
        return call

    def _call(self, op: OpDef, *inputs: Any, **attrs: Any) -> Any:
        return self.emit(op, inputs, attrs)

    # ---- helpers shared by many rules; compositions of ops, never new semantics ----

    @staticmethod
    def shape(x: Any) -> tuple[int, ...]:
        return tuple(x.shape)

    @staticmethod
    def dtype(x: Any) -> Any:
        return x.dtype

    def differentiates_result(self) -> bool:
        """Whether what a rule builds will itself be differentiated (eager ``create_graph``). A rule whose
        cheap form is exact in value but not in derivative (cumprod at zeros) picks its exact form then."""
        return False

    def sum_to(self, g: Any, like: Any) -> Any:
        """Reduce a broadcast gradient ``g`` back to the shape of ``like`` (a tensor or a type)."""
        if not hasattr(like, "shape"):  # a Python scalar operand
            return None
        target = tuple(like.shape)
        shape = tuple(g.shape)
        if shape == target:
            return g
        lead = len(shape) - len(target)
        dims = tuple(range(lead)) + tuple(
            i + lead for i, s in enumerate(target) if s == 1 and shape[i + lead] != 1
        )
        if dims:
            g = self.sum(g, dim=dims, keepdim=False)
        if tuple(g.shape) != target:
            g = self.reshape(g, shape=target)
        return g

    def cast_like(self, g: Any, like: Any) -> Any:
        if not hasattr(like, "dtype") or g.dtype is like.dtype:
            return g
        return self.cast(g, dtype=like.dtype)
