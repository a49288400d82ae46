"""Gradient clipping by total norm or by value, in place on ``.grad``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ember.autograd import no_grad
from ember.runtime.errors import AutogradError
from ember.tensor import Tensor


def _grads(parameters: Any) -> list[Tensor]:
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    return [p.grad for p in parameters if p.grad is not None]


def _norm(t: Tensor, p: float) -> Tensor:
    if p == float("inf"):
        return t.abs().amax() if t.numel() else t.sum() * 0
    return t.abs().pow(p).sum().pow(1.0 / p)


def clip_grad_norm_(parameters: Iterable[Tensor] | Tensor, max_norm: float, norm_type: float = 2.0,
                    error_if_nonfinite: bool = False, foreach: Any = None) -> Tensor:
    """Scale all gradients together so their joint ``norm_type``-norm is at most ``max_norm``; returns
    the norm before clipping."""
    from ember import stack, tensor

    grads = _grads(parameters)
    norm_type = float(norm_type)
    if not grads:
        return tensor(0.0)
    with no_grad():
        norms = stack([_norm(g, norm_type).to(grads[0].dtype) for g in grads])
        total = _norm(norms, norm_type)
        if error_if_nonfinite and not bool(total.isfinite().all()):
            raise AutogradError(
                f"The total norm of order {norm_type} for gradients from `parameters` is non-finite, so it"
                " cannot be clipped. To disable this error and scale the gradients by the non-finite norm"
                " anyway, set `error_if_nonfinite=False`"
            )
        coef = (max_norm / (total + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.mul_(coef.to(g.dtype))
    return total


def clip_grad_value_(parameters: Iterable[Tensor] | Tensor, clip_value: float, foreach: Any = None) -> None:
    """Clamp every gradient element into [-clip_value, clip_value]."""
    clip_value = float(clip_value)
    with no_grad():
        for g in _grads(parameters):
            g.clamp_(min=-clip_value, max=clip_value)


def clip_grad_norm(parameters: Iterable[Tensor] | Tensor, max_norm: float, norm_type: float = 2.0,
                   error_if_nonfinite: bool = False, foreach: Any = None) -> Tensor:
    """Deprecated alias of ``clip_grad_norm_`` (the notes' spelling); warns as PyTorch does."""
    import warnings

    warnings.warn("`torch.nn.utils.clip_grad_norm` is now deprecated in favor of"
                  " `torch.nn.utils.clip_grad_norm_`.", FutureWarning, stacklevel=2)
    return clip_grad_norm_(parameters, max_norm, norm_type, error_if_nonfinite, foreach)


__all__ = ["clip_grad_norm_", "clip_grad_norm", "clip_grad_value_"]
