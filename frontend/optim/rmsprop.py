"""RMSprop (optionally centered, with momentum) and Rprop (sign-based step-size adaptation)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ember
from ember.optim._checks import check_nonneg, grad_for_update, step_count
from ember.optim.optimizer import Optimizer
from ember.runtime.errors import ArgumentError


class RMSprop(Optimizer):
    """``v = alpha v + (1 - alpha) g^2``; with ``centered`` the variance ``v - mean(g)^2`` replaces ``v``;
    ``p -= lr * g / (sqrt(v) + eps)`` (through a momentum buffer when ``momentum > 0``)."""

    def __init__(self, params: Any, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum: float = 0.0, centered: bool = False,
                 capturable: bool = False, foreach: bool | None = None, maximize: bool = False,
                 differentiable: bool = False) -> None:
        check_nonneg("learning rate", lr)
        check_nonneg("epsilon value", eps)
        check_nonneg("momentum value", momentum)
        check_nonneg("weight_decay value", weight_decay)
        check_nonneg("alpha value", alpha)
        defaults = dict(lr=lr, momentum=momentum, alpha=alpha, eps=eps, centered=centered,
                        weight_decay=weight_decay, capturable=capturable, foreach=foreach, maximize=maximize,
                        differentiable=differentiable)
        super().__init__(params, defaults)

    @ember.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One RMSprop update of every parameter that has a gradient."""
        loss = self._evaluate(closure)
        for group in self.param_groups:
            alpha, momentum = group["alpha"], group["momentum"]
            for p in self._params_with_grad(group):
                state = self.state[p]
                if not state:
                    state.update(step=0, square_avg=ember.zeros_like(p))
                    if momentum > 0:
                        state["momentum_buffer"] = ember.zeros_like(p)
                    if group["centered"]:
                        state["grad_avg"] = ember.zeros_like(p)
                g = grad_for_update(p, group)
                step_count(state)
                v = state["square_avg"]
                v.mul_(alpha).add_(g * g * (1 - alpha))
                if group["centered"]:
                    gm = state["grad_avg"]
                    gm.mul_(alpha).add_(g * (1 - alpha))
                    avg = (v - gm * gm).sqrt() + group["eps"]
                else:
                    avg = v.sqrt() + group["eps"]
                if momentum > 0:
                    buf = state["momentum_buffer"]
                    buf.mul_(momentum).add_(g / avg)
                    p.add_(buf * -group["lr"])
                else:
                    p.add_(g / avg * -group["lr"])
        return loss


class Rprop(Optimizer):
    """Resilient backpropagation: each coordinate's step grows by ``etas[1]`` while the gradient keeps
    its sign and shrinks by ``etas[0]`` when it flips (that step is then skipped), clamped to
    ``step_sizes``; ``p -= sign(g) * step``."""

    def __init__(self, params: Any, lr: float = 1e-2, etas: tuple[float, float] = (0.5, 1.2),
                 step_sizes: tuple[float, float] = (1e-6, 50), *, capturable: bool = False,
                 foreach: bool | None = None, maximize: bool = False, differentiable: bool = False) -> None:
        check_nonneg("learning rate", lr)
        if not 0.0 < etas[0] < 1.0 < etas[1]:
            raise ArgumentError(f"Invalid eta values: {etas[0]}, {etas[1]}")
        defaults = dict(lr=lr, etas=tuple(etas), step_sizes=tuple(step_sizes), foreach=foreach,
                        maximize=maximize, differentiable=differentiable, capturable=capturable)
        super().__init__(params, defaults)

    @ember.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One Rprop update of every parameter that has a gradient."""
        loss = self._evaluate(closure)
        for group in self.param_groups:
            etaminus, etaplus = group["etas"]
            lo, hi = group["step_sizes"]
            for p in self._params_with_grad(group):
                state = self.state[p]
                if not state:
                    state.update(step=0, prev=ember.zeros_like(p), step_size=ember.full_like(p, group["lr"]))
                g = grad_for_update(p, group, decay=False)
                step_count(state)
                agree = g * state["prev"]
                # factors made in the parameter's dtype: a float32 1.2 would drift from PyTorch's float64
                factor = ember.where(agree > 0, ember.full_like(p, etaplus),
                                     ember.where(agree < 0, ember.full_like(p, etaminus), ember.ones_like(p)))
                state["step_size"][...] = (state["step_size"] * factor).clamp(lo, hi)
                g = ember.where(agree < 0, 0.0, g)
                p.sub_(g.sign() * state["step_size"])
                state["prev"][...] = g
        return loss
