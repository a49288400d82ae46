"""The default inference pipeline, run through the ``PassManager``.

Order and why:

1. ``canonicalize``: one spelling for identities and movement chains, so the patterns below match;
2. ``fold_batch_norm``: eval-mode batch norms into the conv / linear before them;
3. ``canonicalize`` again: the fold's bias reshapes meet the layer's own (reshape chains collapse);
4. ``fold_constants``: everything computable from constants is computed now;
5. ``eliminate_common_subexpressions`` then ``eliminate_dead_code``;
6. ``choose_layout`` last, on the final graph (a recorded decision, see ``layout.py``).

``INFERENCE_PIPELINE`` keeps parameters as graph inputs, so ``ember.compile`` still reads live weights.
It does not fold batch norms: with live weights the folded ``W * s`` would be computed by extra kernels
on every call (40 for ResNet-18), while fusion already absorbs an eval-mode batch norm into the conv's
epilogue as a per-channel scale and bias at no cost. ``FROZEN_PIPELINE`` first turns bound parameters
into constants and then folds batch norms, so that weight preparation happens once at compile time
(``optimize(graph, freeze=True)``, ``compile_graph(..., freeze=True)``; the compiled code then no longer
sees later changes to the weights). Export keeps the live pipeline so that exporting a model and
exporting its ``ember.compile`` result give the same bytes.
"""

from __future__ import annotations

from typing import Any

from ember.compiler.ir.graph import Graph
from ember.compiler.passes.affine_batch_norm import affine_batch_norm
from ember.compiler.passes.canonicalize import canonicalize
from ember.compiler.passes.cse import eliminate_common_subexpressions
from ember.compiler.passes.cut_conv_taps import cut_conv_taps
from ember.compiler.passes.dce import eliminate_dead_code
from ember.compiler.passes.fold_batch_norm import fold_batch_norm
from ember.compiler.passes.fold_constants import fold_constants, freeze_parameters
from ember.compiler.passes.layout import choose_layout
from ember.compiler.passes.manager import PassManager, PassReport

_CLEANUP: list[Any] = [fold_constants, eliminate_common_subexpressions, eliminate_dead_code, choose_layout]

INFERENCE_PIPELINE: list[Any] = [canonicalize, *_CLEANUP]

# ember.compile's inference path: weight preparation (a batch norm's scale and shift, cut_conv_taps' weight
# slices) is then split off by hoist_parameter_work and runs only when the weights change
# (compile_graph(..., hoist=True)).
PREPARED_PIPELINE: list[Any] = [canonicalize, affine_batch_norm, cut_conv_taps, *_CLEANUP]

FROZEN_PIPELINE: list[Any] = [
    freeze_parameters,
    canonicalize,
    fold_batch_norm,
    ("canonicalize_after_folding", canonicalize),
    cut_conv_taps,
    *_CLEANUP,
]


def optimize(graph: Graph, freeze: bool = False) -> tuple[Graph, PassReport]:
    """Run the inference pipeline (frozen: parameters become constants first) on ``graph``."""
    return PassManager(FROZEN_PIPELINE if freeze else INFERENCE_PIPELINE).run(graph)


__all__ = ["FROZEN_PIPELINE", "INFERENCE_PIPELINE", "PREPARED_PIPELINE", "optimize"]
