"""Every op of ember, one definition each. Importing this package registers all op families and
freezes the registry, so no op can be added behind the back of code that already read it."""

from ember.compiler.ops import (  # noqa: F401  (registers)
    conv,
    creation,
    elementwise,
    joining,
    joining_extra,
    linalg,
    movement,
    nn,
    pool,
    random_ops,
    reduce,
    resample,
    resample_extra,
    sorting,
)
from ember.compiler.ops.builder import Builder
from ember.compiler.ops.registry import REGISTRY, OpDef, Pattern, TensorType, define_composite, define_op

REGISTRY.frozen = True

__all__ = ["REGISTRY", "Builder", "OpDef", "Pattern", "TensorType", "define_composite", "define_op"]
