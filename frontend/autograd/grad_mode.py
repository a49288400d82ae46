"""no_grad / enable_grad / set_grad_enabled, usable as context managers and decorators."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from ember._state import STATE

F = TypeVar("F", bound=Callable[..., Any])


class _GradMode:
    enabled = True

    def __enter__(self) -> None:
        self._prev = STATE.grad_enabled
        STATE.grad_enabled = self.enabled

    def __exit__(self, *exc: Any) -> None:
        STATE.grad_enabled = self._prev

    def __call__(self, fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with type(self)():
                return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]


class no_grad(_GradMode):  # noqa: N801
    """Disable gradient recording: ``with ember.no_grad(): ...`` or ``@ember.no_grad()``."""

    enabled = False


class enable_grad(_GradMode):  # noqa: N801
    enabled = True


class set_grad_enabled(_GradMode):  # noqa: N801
    def __init__(self, mode: bool) -> None:
        self.enabled = bool(mode)
        self._prev = STATE.grad_enabled
        STATE.grad_enabled = self.enabled  # takes effect as a function call too, like PyTorch

    def __enter__(self) -> None:
        pass

    def __exit__(self, *exc: Any) -> None:
        STATE.grad_enabled = self._prev


def is_grad_enabled() -> bool:
    return STATE.grad_enabled


class inference_mode(no_grad):  # noqa: N801
    pass
