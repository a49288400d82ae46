"""Graph passes: small named functions ``graph -> (graph, changed, stats)``, run by ``PassManager``."""

from ember.compiler.passes.cse import eliminate_common_subexpressions
from ember.compiler.passes.dce import eliminate_dead_code
from ember.compiler.passes.manager import PassManager, PassRecord, PassReport

__all__ = ["PassManager", "PassRecord", "PassReport", "eliminate_dead_code",
           "eliminate_common_subexpressions"]
