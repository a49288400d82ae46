"""Templates lowered by expansion into primitive ops (then fused like any elementwise/reduction code).

Some ops are primitives in the graph (so passes and gradients see them whole) but need no kernel
template of their own: softmax is a max, a sum and elementwise ops over one dim; batch norm with given
statistics is a per-channel affine map. Each entry here writes the op with the op builder ``b`` (as a
decomposition would), and ``group.expand_composites`` substitutes it inside fusion groups.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["EXPANSIONS"]


def _shifted(b: Any, x: Any, dim: int) -> Any:
    """x - max(x, dim), a non-finite max replaced by 0 (as the reference does)."""
    m = b.amax(x, dim=(dim,), keepdim=True)
    m = b.where(b.isfinite(m), m, 0.0)
    return b.sub(x, m)


def _softmax(b: Any, x: Any, dim: int) -> Any:
    e = b.exp(_shifted(b, x, dim))
    return b.div(e, b.sum(e, dim=(dim,), keepdim=True))


def _log_softmax(b: Any, x: Any, dim: int) -> Any:
    s = _shifted(b, x, dim)
    return b.sub(s, b.log(b.sum(b.exp(s), dim=(dim,), keepdim=True)))


def _batch_norm(b: Any, x: Any, mean: Any, var: Any, weight: Any, bias: Any, eps: float) -> Any:
    shape = (1, x.shape[1]) + (1,) * (len(x.shape) - 2)
    scale = b.mul(b.rsqrt(b.add(var, eps)), weight)
    xc = b.sub(x, b.reshape(mean, shape=shape))
    return b.add(b.mul(xc, b.reshape(scale, shape=shape)), b.reshape(bias, shape=shape))


EXPANSIONS: dict[str, Callable[..., Any]] = {
    "softmax": _softmax,
    "log_softmax": _log_softmax,
    "batch_norm": _batch_norm,
}
