"""Linear-algebra adapters: PyTorch's ``addmm``/``addmv``/``baddbmm`` (``beta * input + alpha * product``),
``matrix_power`` and the ``ger`` alias, all composed from registry ops so they trace and differentiate."""

from __future__ import annotations

from typing import Any

from ember.api import method
from ember.compiler.ops import REGISTRY
from ember.dispatch import apply
from ember.runtime.errors import ShapeError

_op = REGISTRY.__getitem__


def _scaled_sum(input: Any, product: Any, beta: Any, alpha: Any) -> Any:
    """``beta * input + alpha * product``; beta=0 ignores ``input`` entirely (nan and inf included)."""
    if alpha != 1:
        product = apply(_op("mul"), (product, alpha), {})
    if beta == 0:
        return product
    if beta != 1:
        input = apply(_op("mul"), (input, beta), {})
    return apply(_op("add"), (input, product), {})


@method
def addmm(input: Any, mat1: Any, mat2: Any, *, beta: Any = 1, alpha: Any = 1) -> Any:
    """``beta * input + alpha * (mat1 @ mat2)``, ``input`` broadcast to the product's shape."""
    return _scaled_sum(input, apply(_op("mm"), (mat1, mat2), {}), beta, alpha)


@method
def addmv(input: Any, mat: Any, vec: Any, *, beta: Any = 1, alpha: Any = 1) -> Any:
    """``beta * input + alpha * (mat @ vec)``."""
    return _scaled_sum(input, apply(_op("mv"), (mat, vec), {}), beta, alpha)


@method
def baddbmm(input: Any, batch1: Any, batch2: Any, *, beta: Any = 1, alpha: Any = 1) -> Any:
    """``beta * input + alpha * bmm(batch1, batch2)``."""
    return _scaled_sum(input, apply(_op("bmm"), (batch1, batch2), {}), beta, alpha)


@method
def matrix_power(input: Any, n: int) -> Any:
    """``input`` multiplied by itself ``n`` times (square matrices, batched); n < 0 inverts first."""
    shape = tuple(input.shape)
    if len(shape) < 2 or shape[-1] != shape[-2]:
        raise ShapeError(
            f"linalg.matrix_power: A must be batches of square matrices, but got shape {list(shape)}"
        )
    if n == 0:
        from ember.creation import eye

        ident = eye(shape[-1], dtype=input.dtype, device=input.device)
        return apply(_op("clone"), (apply(_op("expand"), (ident,), {"shape": shape}),), {})
    if n < 0:
        input, n = apply(_op("inverse"), (input,), {}), -n
    result, base = None, input
    while n:  # square-and-multiply: log2(n) products
        if n & 1:
            result = base if result is None else apply(_op("matmul"), (result, base), {})
        n >>= 1
        if n:
            base = apply(_op("matmul"), (base, base), {})
    return apply(_op("clone"), (result,), {}) if result is input else result


@method
def ger(input: Any, vec2: Any) -> Any:
    """Old name of ``outer``."""
    return apply(_op("outer"), (input, vec2), {})
