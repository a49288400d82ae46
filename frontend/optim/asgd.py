"""Averaged SGD: SGD with a decaying step and a running (Polyak) average of the iterates in ``ax``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ember
from ember.optim._checks import check_nonneg, grad_for_update, step_count
from ember.optim.optimizer import Optimizer


class ASGD(Optimizer):
    """``p = p (1 - lambd eta) - eta g``; ``eta = lr / (1 + lambd lr t)^alpha``; averaging starts after
    ``t0`` steps (``mu = 1 / max(1, t - t0)``). ``eta`` and ``mu`` are kept as float64 numbers."""

    def __init__(self, params: Any, lr: float = 1e-2, lambd: float = 1e-4, alpha: float = 0.75,
                 t0: float = 1e6, weight_decay: float = 0.0, foreach: bool | None = None,
                 maximize: bool = False, differentiable: bool = False, capturable: bool = False) -> None:
        check_nonneg("learning rate", lr)
        check_nonneg("weight_decay value", weight_decay)
        defaults = dict(lr=lr, lambd=lambd, alpha=alpha, t0=t0, weight_decay=weight_decay, foreach=foreach,
                        maximize=maximize, differentiable=differentiable, capturable=capturable)
        super().__init__(params, defaults)

    @ember.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One ASGD update of every parameter that has a gradient."""
        loss = self._evaluate(closure)
        for group in self.param_groups:
            lr, lambd = group["lr"], group["lambd"]
            for p in self._params_with_grad(group):
                state = self.state[p]
                if not state:
                    state.update(step=0, eta=float(lr), mu=1.0, ax=ember.zeros_like(p))
                g = grad_for_update(p, group)
                t = step_count(state)
                eta, mu = float(state["eta"]), float(state["mu"])
                p.mul_(1 - lambd * eta)
                p.add_(g * -eta)
                if mu != 1:
                    state["ax"].add_((p - state["ax"]) * mu)
                else:
                    state["ax"][...] = p
                state["eta"] = lr / ((1 + lambd * lr * t) ** group["alpha"])
                state["mu"] = 1 / max(1, t - group["t0"])
        return loss
