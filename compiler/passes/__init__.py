"""Graph passes: small named functions ``graph -> (graph, changed, stats)``, run by ``PassManager``."""

from ember.compiler.passes.canonicalize import canonicalize
from ember.compiler.passes.cse import eliminate_common_subexpressions
from ember.compiler.passes.dce import eliminate_dead_code
from ember.compiler.passes.fold_batch_norm import fold_batch_norm
from ember.compiler.passes.fold_constants import fold_constants, freeze_parameters
from ember.compiler.passes.layout import choose_layout
from ember.compiler.passes.manager import PassManager, PassRecord, PassReport
from ember.compiler.passes.pipeline import FROZEN_PIPELINE, INFERENCE_PIPELINE, optimize

__all__ = ["PassManager", "PassRecord", "PassReport", "eliminate_dead_code",
           "eliminate_common_subexpressions", "canonicalize", "fold_batch_norm", "fold_constants",
           "freeze_parameters", "choose_layout", "INFERENCE_PIPELINE", "FROZEN_PIPELINE", "optimize"]
