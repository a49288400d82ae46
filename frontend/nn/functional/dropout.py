"""Dropout: the keep-mask comes from the counter-based ``dropout_keep_mask`` op (Philox4x32-10 bits
compared with an integer threshold) under a seed drawn from ember's generator per call, and the
``dropout`` op scales by it. Both are pure registry ops, so a traced train-mode model holds the seed as
a graph input (``ember.random.draw_seed``) and eager mode, the interpreter and compiled code give the same
masks for the same seed; a compiled backward recomputes the mask from the seed instead of storing it."""

from __future__ import annotations

from ember.compiler.ops import REGISTRY
from ember.dispatch import apply
from ember.runtime.errors import ArgumentError
from ember.tensor import Tensor

_DROPOUT = REGISTRY["dropout"]
_KEEP_MASK = REGISTRY["dropout_keep_mask"]


def _check_p(p: float) -> None:
    if not 0.0 <= p <= 1.0:
        raise ArgumentError(f"dropout probability has to be between 0 and 1, but got {p}")


def _masked(input: Tensor, p: float, mask_shape: tuple[int, ...], inplace: bool) -> Tensor:
    from ember.random import draw_seed

    seed = draw_seed()
    if input.device != seed.device:  # the mask is computed where the input lives (a GPU's array module)
        seed = seed.to(input.device)
    mask = apply(_KEEP_MASK, (seed,), {"shape": mask_shape, "p": p})  # True with probability 1 - p
    if inplace:
        from ember._inplace import inplace_apply

        return inplace_apply(input, _DROPOUT, (mask,), {"p": p})
    return apply(_DROPOUT, (input, mask), {"p": p})


def dropout(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """Zero each element with probability ``p`` and scale the rest by 1/(1-p); identity when not
    training."""
    _check_p(p)
    if not training or p == 0.0:
        return input
    return _masked(input, p, tuple(input.shape), inplace)


def _feature_dropout(input: Tensor, p: float, training: bool, inplace: bool, batched_rank: int,
                     name: str) -> Tensor:
    _check_p(p)
    if input.ndim not in (batched_rank - 1, batched_rank):
        raise ArgumentError(
            f"{name}: Expected {batched_rank - 1}D or {batched_rank}D input, but received a"
            f" {input.ndim}D input"
        )
    if not training or p == 0.0:
        return input
    keep = 2 if input.ndim == batched_rank else 1
    shape = tuple(input.shape[:keep]) + (1,) * (input.ndim - keep)
    return _masked(input, p, shape, inplace)


def dropout1d(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """Zero whole channels of (N, C, L) or (C, L) inputs."""
    return _feature_dropout(input, p, training, inplace, 3, "dropout1d")


def dropout2d(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """Zero whole channels of (N, C, H, W) or (C, H, W) inputs."""
    return _feature_dropout(input, p, training, inplace, 4, "dropout2d")


def dropout3d(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """Zero whole channels of (N, C, D, H, W) or (C, D, H, W) inputs."""
    return _feature_dropout(input, p, training, inplace, 5, "dropout3d")


__all__ = ["dropout", "dropout1d", "dropout2d", "dropout3d"]
