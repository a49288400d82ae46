"""Custom differentiable functions: subclass ``Function`` with static forward(ctx, ...) and
backward(ctx, ...).

>>> import ember
>>> class Square(ember.autograd.Function):
...     @staticmethod
...     def forward(ctx, x):
...         ctx.save_for_backward(x)
...         return x * x
...     @staticmethod
...     def backward(ctx, g):
...         (x,) = ctx.saved_tensors
...         return 2 * x * g
>>> x = ember.tensor([3.0], requires_grad=True)
>>> Square.apply(x).backward()
>>> x.grad
tensor([6.])
"""

from __future__ import annotations

from typing import Any

from ember._state import STATE
from ember.autograd.node import _FREED, Node
from ember.runtime.errors import AutogradError


class FunctionCtx:
    def __init__(self) -> None:
        self._saved: Any = ()
        self._versions: list[tuple[Any, int]] = []
        self.needs_input_grad: tuple[bool, ...] = ()
        self._non_differentiable: set[int] = set()
        self.materialize_grads = True

    def save_for_backward(self, *tensors: Any) -> None:
        from ember.tensor import Tensor

        for i, t in enumerate(tensors):
            if t is not None and not isinstance(t, Tensor):
                raise TypeError(f"save_for_backward can only save variables, but argument {i} is of type"
                                f" {type(t).__name__}")
        self._saved = tensors
        self._versions = [(t, t._version[0]) for t in tensors if t is not None]

    @property
    def saved_tensors(self) -> tuple[Any, ...]:
        if self._saved is _FREED:
            raise AutogradError(
                "Trying to backward through the graph a second time; specify retain_graph=True the first time"
            )
        for t, v in self._versions:
            if t._version[0] != v:
                raise AutogradError(
                    "one of the variables needed for gradient computation has been modified by an inplace"
                    f" operation: [{t.dtype.name} {list(t.shape)}] is at version {t._version[0]};"
                    f" expected version {v} instead."
                )
        return tuple(self._saved)

    def mark_non_differentiable(self, *tensors: Any) -> None:
        self._non_differentiable.update(id(t) for t in tensors)

    def set_materialize_grads(self, value: bool) -> None:
        self.materialize_grads = value

    def mark_dirty(self, *tensors: Any) -> None:
        """Accepted for compatibility; in-place forward outputs are treated as new tensors."""


class FunctionNode(Node):
    __slots__ = ("fn", "ctx", "outputs_meta", "input_shapes")

    def __init__(self, fn: type, ctx: FunctionCtx, next_edges: tuple[Any, ...], outputs_meta: list[Any],
                 input_shapes: tuple[Any, ...] = ()):
        super().__init__(next_edges, len(outputs_meta))
        self.fn = fn
        self.ctx = ctx
        self.outputs_meta = outputs_meta
        self.input_shapes = input_shapes  # per input: its shape, or None for a non-tensor

    def name(self) -> str:
        return f"{self.fn.__name__}Backward"

    def apply(self, grads: list[Any], create_graph: bool) -> list[Any]:
        from ember.creation import zeros

        if self.ctx.materialize_grads:
            grads = [g if g is not None else zeros(m[0], dtype=m[1])
                     for g, m in zip(grads, self.outputs_meta)]
        out = self.fn.backward(self.ctx, *grads)
        if not isinstance(out, tuple):
            out = (out,)
        if len(out) < len(self.next_edges):
            raise AutogradError(
                f"function {self.name()} returned an incorrect number of gradients (expected"
                f" {len(self.next_edges)}, got {len(out)})"
            )
        return [self._checked(i, g) for i, g in enumerate(out[: len(self.next_edges)])]

    def _checked(self, i: int, g: Any) -> Any:
        """PyTorch's validation of a custom backward's result: a gradient whose shape the input expands
        to is summed back to it; any other shape is an error naming the function and the index."""
        want = self.input_shapes[i] if i < len(self.input_shapes) else None
        if g is None or want is None or self.next_edges[i] is None or tuple(g.shape) == want:
            return g
        got = tuple(g.shape)
        lead = len(got) - len(want)
        if lead < 0 or any(w not in (1, s) for w, s in zip(want, got[lead:])):
            raise AutogradError(
                f"Function {self.name()} returned an invalid gradient at index {i} - got {list(got)} but"
                f" expected shape compatible with {list(want)}"
            )
        from ember.autograd.builder import EAGER
        from ember.compiler.ops.registry import TensorType

        return EAGER.sum_to(g, TensorType(want, g.dtype))

    def release(self) -> None:
        self.ctx._saved = _FREED


class Function:
    """Base class of user-defined autograd functions."""

    @staticmethod
    def forward(ctx: FunctionCtx, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("a Function subclass must define forward(ctx, ...)")

    @staticmethod
    def backward(ctx: FunctionCtx, *grads: Any) -> Any:
        raise NotImplementedError("a Function subclass must define backward(ctx, ...)")

    @classmethod
    def apply(cls, *args: Any, **kwargs: Any) -> Any:
        from ember.dispatch import edge_of
        from ember.tensor import Tensor

        ctx = FunctionCtx()
        ctx.needs_input_grad = tuple(isinstance(a, Tensor) and a.requires_grad for a in args)
        prev = STATE.grad_enabled
        STATE.grad_enabled = False
        try:
            out = cls.forward(ctx, *args, **kwargs)
        finally:
            STATE.grad_enabled = prev
        single = not isinstance(out, tuple)
        outs = (out,) if single else out
        if not (prev and any(ctx.needs_input_grad)):
            return out
        edges = tuple(edge_of(a) if isinstance(a, Tensor) else None for a in args)
        metas = [(tuple(o.shape), o.dtype) if isinstance(o, Tensor) else ((), None) for o in outs]
        shapes = tuple(tuple(a.shape) if isinstance(a, Tensor) else None for a in args)
        node = FunctionNode(cls, ctx, edges, metas, shapes)
        wrapped = []
        for i, o in enumerate(outs):
            if isinstance(o, Tensor) and id(o) not in ctx._non_differentiable and o.dtype.is_floating_point:
                if any(o is a for a in args):
                    o = o.view_as(o)  # an input returned as is: give the output its own history
                o = Tensor._make(o._data, o.dtype, o._device, version=o._version)
                o.requires_grad = True
                o.grad_fn = node
                o._out_index = i
            wrapped.append(o)
        return wrapped[0] if single else tuple(wrapped)
