"""Process-wide dispatch state: grad mode and the active tracer.

Kept as attributes of one object so the dispatcher reads them with a single attribute lookup. Grad mode is
process-wide rather than thread-local (unlike PyTorch); ember's data-loader workers are processes.
"""

from __future__ import annotations

from typing import Any


class DispatchState:
    __slots__ = ("grad_enabled", "tracer")

    def __init__(self) -> None:
        self.grad_enabled = True
        self.tracer: Any = None


STATE = DispatchState()
