"""Distances between rows: pairwise (p-norm of the difference) and cosine similarity, as compositions
of registry ops."""

from __future__ import annotations

from ember.tensor import Tensor


def _pnorm(x: Tensor, p: float, dim: int, keepdim: bool) -> Tensor:
    if p == float("inf"):
        return x.abs().amax(dim, keepdim=keepdim)
    if p == 2.0:
        return (x * x).sum(dim, keepdim=keepdim).sqrt()
    if p == 1.0:
        return x.abs().sum(dim, keepdim=keepdim)
    return x.abs().pow(p).sum(dim, keepdim=keepdim).pow(1.0 / p)


def pairwise_distance(x1: Tensor, x2: Tensor, p: float = 2.0, eps: float = 1e-6,
                      keepdim: bool = False) -> Tensor:
    """``||x1 - x2 + eps||_p`` over the last dim (eps keeps the gradient finite at zero distance)."""
    nd = max(x1.ndim, x2.ndim)
    return _pnorm(x1 - x2 + eps, p, nd - 1 if nd else 0, keepdim)


def cosine_similarity(x1: Tensor, x2: Tensor, dim: int = 1, eps: float = 1e-8) -> Tensor:
    """``sum(x1 * x2) / (max(||x1||, eps) * max(||x2||, eps))`` along ``dim``, normalizing each input
    first as PyTorch 2 does (better conditioned than dividing the product)."""
    n1 = _pnorm(x1, 2.0, dim, True)
    n2 = _pnorm(x2, 2.0, dim, True)
    n1 = n1.where(n1 > eps, eps)
    n2 = n2.where(n2 > eps, eps)
    return ((x1 / n1) * (x2 / n2)).sum(dim)


def pdist(input: Tensor, p: float = 2.0) -> Tensor:
    """Distances between every pair of rows i < j of an (N, M) input, as a flat vector."""
    n = input.shape[0]
    rows = [i for i in range(n) for _ in range(i + 1, n)]
    cols = [j for i in range(n) for j in range(i + 1, n)]
    from ember.creation import tensor

    diff = input[tensor(rows, dtype="int64")] - input[tensor(cols, dtype="int64")]
    return _pnorm(diff, p, 1, False)


__all__ = ["pairwise_distance", "cosine_similarity", "pdist"]
