"""Adagrad (per-coordinate accumulated squared gradients) and Adadelta (running averages of squared
gradients and squared updates)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ember
from ember.optim._checks import check_nonneg, grad_for_update, step_count
from ember.optim.optimizer import Optimizer
from ember.runtime.errors import ArgumentError


class Adagrad(Optimizer):
    """``s += g^2``; ``p -= lr / (1 + (t - 1) * lr_decay) * g / (sqrt(s) + eps)``."""

    def __init__(self, params: Any, lr: float = 1e-2, lr_decay: float = 0.0, weight_decay: float = 0.0,
                 initial_accumulator_value: float = 0.0, eps: float = 1e-10, foreach: bool | None = None, *,
                 maximize: bool = False, differentiable: bool = False, fused: bool | None = None) -> None:
        check_nonneg("learning rate", lr)
        check_nonneg("lr_decay value", lr_decay)
        check_nonneg("weight_decay value", weight_decay)
        check_nonneg("initial_accumulator_value value", initial_accumulator_value)
        check_nonneg("epsilon value", eps)
        defaults = dict(lr=lr, lr_decay=lr_decay, eps=eps, weight_decay=weight_decay,
                        initial_accumulator_value=initial_accumulator_value, foreach=foreach,
                        maximize=maximize, differentiable=differentiable, fused=fused)
        super().__init__(params, defaults)
        # PyTorch fills the accumulators eagerly, from the constructor argument (not a group's own value)
        for group in self.param_groups:
            for p in group["params"]:
                self.state[p].update(step=0, sum=ember.full_like(p, initial_accumulator_value))

    @ember.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One Adagrad update of every parameter that has a gradient."""
        loss = self._evaluate(closure)
        for group in self.param_groups:
            for p in self._params_with_grad(group):
                state = self.state[p]
                g = grad_for_update(p, group)
                t = step_count(state)
                clr = group["lr"] / (1 + (t - 1) * group["lr_decay"])
                state["sum"].add_(g * g)
                p.add_(g / (state["sum"].sqrt() + group["eps"]) * -clr)
        return loss


class Adadelta(Optimizer):
    """``v = rho v + (1 - rho) g^2``; ``d = sqrt(u + eps) / sqrt(v + eps) * g``;
    ``u = rho u + (1 - rho) d^2``; ``p -= lr * d``."""

    def __init__(self, params: Any, lr: float = 1.0, rho: float = 0.9, eps: float = 1e-6,
                 weight_decay: float = 0.0, foreach: bool | None = None, *, capturable: bool = False,
                 maximize: bool = False, differentiable: bool = False) -> None:
        check_nonneg("learning rate", lr)
        if not 0.0 <= rho <= 1.0:
            raise ArgumentError(f"Invalid rho value: {rho}")
        check_nonneg("epsilon value", eps)
        check_nonneg("weight_decay value", weight_decay)
        defaults = dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay, foreach=foreach,
                        capturable=capturable, maximize=maximize, differentiable=differentiable)
        super().__init__(params, defaults)

    @ember.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One Adadelta update of every parameter that has a gradient."""
        loss = self._evaluate(closure)
        for group in self.param_groups:
            rho, eps = group["rho"], group["eps"]
            for p in self._params_with_grad(group):
                state = self.state[p]
                if not state:
                    state.update(step=0, square_avg=ember.zeros_like(p), acc_delta=ember.zeros_like(p))
                g = grad_for_update(p, group)
                step_count(state)
                v, u = state["square_avg"], state["acc_delta"]
                v.mul_(rho).add_(g * g * (1 - rho))
                delta = (u + eps).sqrt() / (v + eps).sqrt() * g
                u.mul_(rho).add_(delta * delta * (1 - rho))
                p.add_(delta * -group["lr"])
        return loss
