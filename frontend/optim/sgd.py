"""Stochastic gradient descent with momentum, dampening, Nesterov momentum, weight decay and maximize."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ember
from ember.optim._checks import check_nonneg, grad_for_update
from ember.optim.optimizer import Optimizer
from ember.runtime.errors import ArgumentError


class SGD(Optimizer):
    """PyTorch's SGD: ``buf = momentum * buf + (1 - dampening) * g``; ``p -= lr * (g + momentum * buf)``
    under Nesterov, else ``p -= lr * buf``. The first step seeds the buffer with the gradient itself.

    >>> w = ember.ones(3, requires_grad=True)
    >>> opt = ember.optim.SGD([w], lr=0.1, momentum=0.9)
    """

    def __init__(self, params: Any, lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False, *, maximize: bool = False,
                 foreach: bool | None = None, differentiable: bool = False,
                 fused: bool | None = None) -> None:
        check_nonneg("learning rate", lr)
        check_nonneg("momentum value", momentum)
        check_nonneg("weight_decay value", weight_decay)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ArgumentError("Nesterov momentum requires a momentum and zero dampening")
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                        nesterov=nesterov, maximize=maximize, foreach=foreach, differentiable=differentiable,
                        fused=fused)
        super().__init__(params, defaults)

    @ember.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One update of every parameter that has a gradient; returns the closure's loss if given."""
        loss = self._evaluate(closure)
        for group in self.param_groups:
            momentum, dampening = group["momentum"], group["dampening"]
            for p in self._params_with_grad(group):
                g = grad_for_update(p, group)
                if momentum != 0:
                    state = self.state[p]
                    buf = state.get("momentum_buffer")
                    if buf is None:
                        buf = state["momentum_buffer"] = g.detach().clone()
                    else:
                        buf.mul_(momentum).add_(g * (1 - dampening))
                    g = g + buf * momentum if group["nesterov"] else buf
                p.add_(g * -group["lr"])
        return loss
