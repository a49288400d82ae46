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
