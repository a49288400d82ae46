"""The fusion-group interface: what the fusion pass hands to kernel lowering.

A ``FusionGroup`` is a small, self-contained dataflow graph: nodes in topological order, each naming
its op, its operands (value names or Python scalars) and its attributes (normalized, as in the graph
IR), plus the types of every value and which values come from outside (``inputs``) and must be
written out (``outputs``). Values not listed as outputs live only in registers inside the kernel.
Lowering (``ember.compiler.kernel.lower``) turns one group into one kernel. See docs/kernel-ir.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ember.compiler.ops.registry import TensorType
from ember.runtime.errors import CompileError

__all__ = ["FusionGroup", "GroupNode"]


@dataclass(frozen=True)
class GroupNode:
    """One op application: ``outputs = op(*inputs, **attrs)``.

    ``inputs`` items are value names (``str``) or Python scalars (bool/int/float), like the graph IR's
    operands. ``outputs`` has one name per op output.
    """

    op: str
    inputs: tuple[Any, ...]
    outputs: tuple[str, ...]
    attrs: dict[str, Any] = field(default_factory=dict, hash=False)

    @property
    def output(self) -> str:
        return self.outputs[0]


@dataclass
class FusionGroup:
    """Nodes (topologically ordered), value types, and the group's boundary values."""

    name: str
    nodes: list[GroupNode]
    types: dict[str, TensorType]
    inputs: list[str]
    outputs: list[str]

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Every operand is defined before use, every value has a type, outputs are produced."""
        defined = set(self.inputs)
        for name in self.inputs:
            self.type_of(name)
        for node in self.nodes:
            for x in node.inputs:
                if isinstance(x, str) and x not in defined:
                    raise CompileError(f"fusion group {self.name!r}: node {node.op} reads {x!r} before "
                                       f"it is defined")
            for out in node.outputs:
                self.type_of(out)
                defined.add(out)
        for name in self.outputs:
            if name not in defined:
                raise CompileError(f"fusion group {self.name!r}: output {name!r} is never computed")

    def type_of(self, name: str) -> TensorType:
        try:
            return self.types[name]
        except KeyError:
            raise CompileError(f"fusion group {self.name!r}: value {name!r} has no type") from None

    def producer(self, name: str) -> GroupNode | None:
        for node in self.nodes:
            if name in node.outputs:
                return node
        return None

    def users(self, name: str) -> list[GroupNode]:
        return [n for n in self.nodes if name in n.inputs]


# --------------------------------------------------------------------------------------------------
# composite expansion


class _Handle:
    """A value inside a group being expanded: what a decomposition's builder calls operate on."""

    def __init__(self, name: str, t: TensorType) -> None:
        self.name = name
        self.shape = tuple(t.shape)
        self.dtype = t.dtype


def expand_composites(group: FusionGroup) -> FusionGroup:
    """The same group with every composite op replaced by the primitives of its decomposition.

    Graphs from the tracer already hold primitives only; this keeps hand-built and pass-built groups
    that name a composite (``sub``, ``mean``, ...) lowerable, with the op's own definition as the
    single source of truth.
    """
    from ember.compiler.kernel.templates import EXPANSIONS
    from ember.compiler.ops.builder import Builder
    from ember.compiler.ops.registry import REGISTRY

    def expansion(op: Any) -> Any:
        if op.composite:
            return op.decompose
        return EXPANSIONS.get(op.lowering.get("template", ""))

    if all(expansion(REGISTRY[n.op]) is None for n in group.nodes if n.op in REGISTRY):
        return group
    nodes: list[GroupNode] = []
    types = dict(group.types)
    counter = [0]

    class _Expander(Builder):
        def emit(self, op: Any, inputs: tuple[Any, ...], attrs: dict[str, Any]) -> Any:
            if op.attrs or attrs:
                attrs = op.check_attrs(attrs)
                if op.normalize is not None:
                    attrs = op.normalize(attrs, *inputs)
            if expansion(op) is not None:
                return expansion(op)(self, *inputs, **attrs)
            if op.num_outputs != 1:
                raise CompileError(f"cannot expand {op.name} inside fusion group {group.name!r}")
            counter[0] += 1
            name = f"{group.name}.x{counter[0]}"
            types[name] = op.infer(*inputs, **attrs)
            nodes.append(GroupNode(op.name, tuple(x.name if isinstance(x, _Handle) else x for x in inputs),
                                   (name,), attrs))
            return _Handle(name, types[name])

    builder = _Expander()
    handles = {name: _Handle(name, group.type_of(name)) for name in group.inputs}
    for node in group.nodes:
        op = REGISTRY[node.op]
        expand = expansion(op)
        if expand is None:
            nodes.append(node)
            handles.update({o: _Handle(o, group.type_of(o)) for o in node.outputs})
            continue
        args = tuple(handles[x] if isinstance(x, str) else x for x in node.inputs)
        result = expand(builder, *args, **node.attrs)
        results = result if isinstance(result, tuple) else (result,)
        for out, res in zip(node.outputs, results):
            # the composite's output name becomes an identity of the decomposition's result: free in a
            # fused kernel, where clone is just the same expression
            nodes.append(GroupNode("clone", (res.name,), (out,)))
            handles[out] = _Handle(out, group.type_of(out))
    return FusionGroup(group.name, nodes, types, list(group.inputs), list(group.outputs))
