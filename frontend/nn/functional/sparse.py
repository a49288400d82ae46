"""``embedding``: a gather of weight rows, with PyTorch's padding_idx (no gradient for that row) and
max_norm (rows that are looked up are renormalized in place first)."""

from __future__ import annotations

from ember.autograd import no_grad
from ember.compiler.ops import REGISTRY
from ember.dispatch import apply
from ember.runtime.errors import ArgumentError
from ember.tensor import Tensor

_op = REGISTRY.__getitem__


def _padding_index(padding_idx: int | None, num: int) -> int | None:
    if padding_idx is None:
        return None
    if not -num <= padding_idx < num:
        raise ArgumentError(f"embedding: Padding_idx must be within num_embeddings ({num}),"
                            f" got {padding_idx}")
    return padding_idx % num


def _renorm_(weight: Tensor, indices: Tensor, max_norm: float, norm_type: float) -> None:
    """Scale the looked-up rows whose ``norm_type``-norm exceeds ``max_norm`` down to it, in place."""
    from ember.creation import ones

    num = weight.shape[0]
    flat = indices.reshape(-1)
    with no_grad():
        # lookup counts per row by a scatter-add (O(rows + lookups), unlike a one-hot matrix)
        hits = ones(flat.shape[0], 1, dtype=weight.dtype, device=weight.device)
        counts = apply(_op("embedding_backward"), (hits, flat), {"num_weights": num, "padding_idx": None})
        used = counts.reshape(num) > 0
        norms = weight.abs().pow(norm_type).sum(1).pow(1.0 / norm_type)
        scale = (max_norm / (norms + 1e-7)).where((norms > max_norm), 1.0)
        scale = scale.where(used, 1.0)
        weight.mul_(scale.reshape(num, 1).to(weight.dtype))


def embedding(input: Tensor, weight: Tensor, padding_idx: int | None = None, max_norm: float | None = None,
              norm_type: float = 2.0, scale_grad_by_freq: bool = False, sparse: bool = False) -> Tensor:
    """Rows of ``weight`` selected by the integer tensor ``input``.

    ``sparse=True`` is accepted, but ember has no sparse tensors: ``weight.grad`` is the dense tensor
    equal to PyTorch's sparse gradient ``.to_dense()`` (rows not looked up are zero)."""
    if scale_grad_by_freq:
        raise ArgumentError("embedding: scale_grad_by_freq is not supported by ember")
    pad = _padding_index(padding_idx, weight.shape[0])
    if max_norm is not None:
        _renorm_(weight, input, max_norm, norm_type)
    return apply(_op("embedding"), (weight, input), {"padding_idx": pad})


def embedding_bag(*args: object, **kwargs: object) -> Tensor:
    raise NotImplementedError("embedding_bag is not supported by ember; sum or average embedding() rows")


__all__ = ["embedding"]
