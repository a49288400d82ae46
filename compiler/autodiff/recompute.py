"""Which forward values the backward graph recomputes instead of saving.

The cost rule (issue 8 allows a min-cut or a cost rule; this is the cost rule): a value made by a cheap
op, one whose work is a few instructions per element and reads its inputs at most once per element
(elementwise, broadcasting and injective ops: relu, scale-and-shift of an eval batch norm, reshape,
transpose, slicing), is recomputed from its own inputs; everything else (matmul, conv, reductions, pooling,
opaque ops) is saved. Recomputation recurses, so a chain ``conv -> add bias -> relu`` saves the conv output
only and the backward recomputes the bias add and the relu: the kernels are memory-bound and fuse with the
backward's own elementwise work, while the saved tensor set (the memory between forward and backward)
shrinks to the outputs of the expensive ops. Graph inputs and parameters are never "saved": they are
alive anyway.
"""

from __future__ import annotations

from collections.abc import Callable

from ember.compiler.ir.graph import Node, Value
from ember.compiler.ops.registry import Pattern

RecomputeRule = Callable[[Node, Value], bool]

CHEAP = (Pattern.ELEMWISE, Pattern.BROADCAST, Pattern.INJECTIVE)


def default_rule(node: Node, value: Value) -> bool:
    """Recompute single-output cheap ops; save the rest."""
    return node.op.pattern in CHEAP and node.op.num_outputs == 1


def save_all(node: Node, value: Value) -> bool:
    """Never recompute (every value the backward reads is a forward output): the baseline for tests."""
    return False
