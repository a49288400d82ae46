"""The graph IR: ``Graph``/``Node``/``Value``, its text form (printer and parser), the verifier, the
reference interpreter, and inspection (DOT/SVG, a per-node table with FLOP estimates)."""

from ember.compiler.ir.graph import (
    Graph,
    GraphBuilder,
    Node,
    Value,
    flatten_tree,
    map_tree,
    structurally_equal,
    topologically_sorted,
)
from ember.compiler.ir.interpreter import interpret
from ember.compiler.ir.parser import parse
from ember.compiler.ir.printer import print_graph
from ember.compiler.ir.verifier import VerificationError, verify
from ember.compiler.ops.registry import TensorType

__all__ = ["Graph", "GraphBuilder", "Node", "Value", "TensorType", "flatten_tree", "map_tree",
           "structurally_equal", "topologically_sorted", "interpret", "parse", "print_graph", "verify",
           "VerificationError"]
