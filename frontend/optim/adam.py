"""Adam, AdamW (decoupled weight decay) and Adamax (infinity norm), following PyTorch's update order."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import ember
from ember.optim._checks import check_betas, check_nonneg, grad_for_update, step_count
from ember.optim.optimizer import Optimizer


class Adam(Optimizer):
    """Adam with optional AMSGrad: moments ``m, v`` with bias correction,
    ``p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)`` (``v`` replaced by its running maximum
    under ``amsgrad``). ``weight_decay`` adds ``wd * p`` to the gradient (L2), unlike AdamW.

    >>> w = ember.ones(3, requires_grad=True)
    >>> opt = ember.optim.Adam([w], lr=1e-3, amsgrad=True)
    """

    def __init__(self, params: Any, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, amsgrad: bool = False, *,
                 maximize: bool = False, foreach: bool | None = None, capturable: bool = False,
                 differentiable: bool = False, fused: bool | None = None,
                 decoupled_weight_decay: bool = False) -> None:
        check_nonneg("learning rate", lr)
        check_nonneg("epsilon value", eps)
        check_betas(betas)
        check_nonneg("weight_decay value", weight_decay)
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                        maximize=maximize, foreach=foreach, capturable=capturable,
                        differentiable=differentiable, fused=fused,
                        decoupled_weight_decay=decoupled_weight_decay)
        super().__init__(params, defaults)

    def _init_state(self, p: Any, state: dict[str, Any], amsgrad: bool) -> None:
        state["step"] = 0
        state["exp_avg"] = ember.zeros_like(p)
        state["exp_avg_sq"] = ember.zeros_like(p)
        if amsgrad:
            state["max_exp_avg_sq"] = ember.zeros_like(p)

    @ember.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One Adam update of every parameter that has a gradient; returns the closure's loss if given."""
        loss = self._evaluate(closure)
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            lr, amsgrad = group["lr"], group["amsgrad"]
            decoupled = group.get("decoupled_weight_decay", False)
            for p in self._params_with_grad(group):
                state = self.state[p]
                if not state:
                    self._init_state(p, state, amsgrad)
                if decoupled:
                    p.mul_(1 - lr * group["weight_decay"])
                g = grad_for_update(p, group, decay=not decoupled)
                t = step_count(state)
                m, v = state["exp_avg"], state["exp_avg_sq"]
                m.mul_(beta1).add_(g * (1 - beta1))
                v.mul_(beta2).add_(g * g * (1 - beta2))
                if amsgrad:
                    state["max_exp_avg_sq"][...] = ember.maximum(state["max_exp_avg_sq"], v)
                    v = state["max_exp_avg_sq"]
                denom = v.sqrt() / math.sqrt(1 - beta2 ** t) + group["eps"]
                p.add_(m / denom * (-lr / (1 - beta1 ** t)))
        return loss


class AdamW(Adam):
    """Adam with decoupled weight decay: ``p *= 1 - lr * weight_decay`` before the Adam step
    (default ``weight_decay=1e-2``)."""

    def __init__(self, params: Any, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2, amsgrad: bool = False, **kwargs: Any) -> None:
        kwargs["decoupled_weight_decay"] = True
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, **kwargs)


class Adamax(Optimizer):
    """Adamax: Adam with the infinity norm, ``u = max(b2 * u, |g| + eps)``,
    ``p -= lr / (1 - b1^t) * m / u``."""

    def __init__(self, params: Any, lr: float = 2e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, foreach: bool | None = None, *,
                 maximize: bool = False, differentiable: bool = False, capturable: bool = False) -> None:
        check_nonneg("learning rate", lr)
        check_nonneg("epsilon value", eps)
        check_betas(betas)
        check_nonneg("weight_decay value", weight_decay)
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, foreach=foreach,
                        maximize=maximize, differentiable=differentiable, capturable=capturable)
        super().__init__(params, defaults)

    @ember.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One Adamax update of every parameter that has a gradient."""
        loss = self._evaluate(closure)
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in self._params_with_grad(group):
                state = self.state[p]
                if not state:
                    state.update(step=0, exp_avg=ember.zeros_like(p), exp_inf=ember.zeros_like(p))
                g = grad_for_update(p, group)
                t = step_count(state)
                m, u = state["exp_avg"], state["exp_inf"]
                m.mul_(beta1).add_(g * (1 - beta1))
                u[...] = ember.maximum(u * beta2, g.abs() + group["eps"])
                p.add_(m / u * (-group["lr"] / (1 - beta1 ** t)))
        return loss
