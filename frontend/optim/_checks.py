"""Argument checks shared by the optimizers, with PyTorch's messages (``Invalid learning rate: -1``)."""

from __future__ import annotations

from typing import Any

from ember.runtime.errors import ArgumentError


def check_nonneg(what: str, value: Any) -> None:
    """Raise PyTorch's ``Invalid <what>: <value>`` when a hyper-parameter is negative."""
    if not isinstance(value, (int, float)) and hasattr(value, "item"):
        value = value.item()
    if value < 0.0:
        raise ArgumentError(f"Invalid {what}: {value}")


def check_betas(betas: tuple[float, float]) -> None:
    """Both betas of an Adam-style optimizer must lie in [0, 1)."""
    for i, beta in enumerate(betas):
        if not 0.0 <= beta < 1.0:
            raise ArgumentError(f"Invalid beta parameter at index {i}: {beta}")


def grad_for_update(p: Any, group: dict[str, Any], decay: bool = True) -> Any:
    """The gradient an update uses: negated under ``maximize``, plus L2 weight decay when asked."""
    g = p.grad
    if group.get("maximize", False):
        g = -g
    wd = group.get("weight_decay", 0)
    if decay and wd != 0:
        g = g + p * wd
    return g


def step_count(state: dict[str, Any]) -> int:
    """Advance and return the per-parameter step counter (a tensor when loaded from PyTorch)."""
    step = state.get("step", 0)
    step = int(step.item()) if hasattr(step, "item") else int(step)
    state["step"] = step + 1
    return step + 1
