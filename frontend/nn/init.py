"""``ember.nn.init``: in-place weight initialisers with PyTorch's distributions (filled in below)."""

from __future__ import annotations

__all__: list[str] = []
