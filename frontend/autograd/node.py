"""Tape entries of eager autograd.

Every op run on a tensor that requires grad records an ``OpNode``: the op, its attributes, the inputs the
gradient rule reads (the rest are kept as their ``TensorType`` only), the version of each saved tensor and
one edge per input pointing at the node that produced it. ``AccumulateGrad`` ends edges at leaves.
"""

from __future__ import annotations

from typing import Any

from ember.compiler.ops.registry import OpDef, TensorType
from ember.runtime.errors import AutogradError

Edge = tuple["Node", int]  # (producer, output index)


class Node:
    """Base of tape entries. ``next_edges[i]`` is the edge input ``i``'s gradient flows along, or None."""

    __slots__ = ("next_edges", "num_outputs", "_pre_hooks", "__weakref__")

    def __init__(self, next_edges: tuple[Edge | None, ...], num_outputs: int) -> None:
        self.next_edges = next_edges
        self.num_outputs = num_outputs
        self._pre_hooks: dict[int, list[Any]] | None = None  # output index -> tensor hooks

    def name(self) -> str:
        return type(self).__name__

    def apply(self, grads: list[Any], create_graph: bool) -> list[Any]:
        raise NotImplementedError

    def release(self) -> None:
        """Drop saved tensors after a backward without retain_graph."""

    def register_prehook_for(self, index: int, hook: Any) -> None:
        if self._pre_hooks is None:
            self._pre_hooks = {}
        self._pre_hooks.setdefault(index, []).append(hook)

    @property
    def next_functions(self) -> tuple[tuple[Any, int], ...]:
        return tuple((e[0], e[1]) if e is not None else (None, 0) for e in self.next_edges)

    def __repr__(self) -> str:
        return f"<{self.name()} object at {id(self):#x}>"


_FREED = object()


class OpNode(Node):
    __slots__ = ("op", "attrs", "saved", "versions", "out", "called")

    def __init__(self, op: OpDef, attrs: dict[str, Any], saved: list[Any], versions: list[Any],
                 next_edges: tuple[Edge | None, ...]) -> None:
        self.next_edges = next_edges  # Node.__init__ inlined: one node per recorded op
        self.num_outputs = op.num_outputs
        self._pre_hooks = None
        self.op = op
        self.attrs = attrs
        self.saved = saved          # per input: the Tensor, its TensorType, or the Python scalar
        self.versions = versions    # (tensor, version) for saved tensors, checked before the rule runs
        self.out: Any = None        # the output(s), when the rule reads them
        self.called: OpDef | None = None  # the composite the user called, when this node ends its expansion

    def name(self) -> str:
        """PyTorch's spelling (``MulBackward0``), after the op the user called: a composite's last node
        is named after the composite (``mean`` -> ``MeanBackward0``, not the ``div`` it expands to)."""
        op = self.called or self.op
        base = _TORCH_NAMES.get(op.name) or "".join(p.capitalize() for p in op.name.split("_"))
        return base + "Backward0"

    def apply(self, grads: list[Any], create_graph: bool) -> list[Any]:
        if self.saved is _FREED:
            raise AutogradError(
                "Trying to backward through the graph a second time (or directly access saved tensors after"
                " they have already been freed). Saved intermediate values of the graph are freed when you"
                " call .backward() or autograd.grad(). Specify retain_graph=True if you need to backward"
                " through the graph a second time or if you need to access saved tensors after calling"
                " backward."
            )
        for tensor, version in self.versions:
            if tensor._version[0] != version:
                raise AutogradError(
                    "one of the variables needed for gradient computation has been modified by an inplace"
                    f" operation: [{tensor.dtype.name} {list(tensor.shape)}] is at version"
                    f" {tensor._version[0]}; expected version {version} instead ({self.name()})."
                )
        g = grads[0] if self.num_outputs == 1 else tuple(grads)
        out = self.out
        if create_graph and out is not None:
            out = self._attached_out()
        return list(self.op.vjp(_eager_builder(), g, out, *self.saved, **self.attrs))

    def _attached_out(self) -> Any:
        """The saved output(s) with this node as their grad_fn again, so a rule that reads its output
        (exp, tanh, relu) is itself differentiated when ``create_graph`` is on."""
        outs = (self.out,) if self.num_outputs == 1 else self.out
        attached = []
        for i, o in enumerate(outs):
            t = type(o)._make(o._data, o._dtype, o._device, version=o._version)
            if o._dtype.is_floating_point:
                t.requires_grad = True
                t.grad_fn = self
                t._out_index = i
            attached.append(t)
        return attached[0] if self.num_outputs == 1 else tuple(attached)

    def release(self) -> None:
        """Free the saved tensors. A node that saved none (add, sum: only types and scalars) stays
        usable, so a second backward through it works, as in PyTorch."""
        if self.versions:
            self.saved = _FREED
            self.out = None
            self.versions = []


# Registry names whose PyTorch node is named differently.
_TORCH_NAMES = {"max_dim": "Max", "min_dim": "Min", "norm": "LinalgVectorNorm", "chunk": "Split",
                "narrow": "Slice", "movedim": "Permute"}


def name_composite_outputs(op: OpDef, inputs: tuple[Any, ...], result: Any) -> None:
    """Mark the nodes that end the expansion of composite ``op`` with ``op`` (for ``grad_fn`` names).
    Outputs that are inputs passed through unchanged keep their own node."""
    outs = result if isinstance(result, (tuple, list)) else (result,)
    for out in outs:
        node = getattr(out, "grad_fn", None)
        if type(node) is OpNode and not any(out is x for x in inputs):
            node.called = op


class AccumulateGrad(Node):
    """Ends a chain at a leaf tensor: adds the incoming gradient to ``tensor.grad``."""

    __slots__ = ("variable",)

    def __init__(self, variable: Any) -> None:
        super().__init__((), 1)
        self.variable = variable

    def apply(self, grads: list[Any], create_graph: bool) -> list[Any]:
        raise AutogradError("AccumulateGrad is applied by the engine")


_EAGER: Any = None


def _eager_builder() -> Any:
    global _EAGER
    if _EAGER is None:
        from ember.autograd.builder import EAGER

        _EAGER = EAGER
    return _EAGER


def meta(x: Any) -> Any:
    """What an unsaved input leaves on the tape: its type (Python scalars stay as they are)."""
    dt = getattr(x, "dtype", None)
    if dt is None:
        return x
    return TensorType(tuple(x._data.shape) if x._data is not None else tuple(x.shape), dt)
