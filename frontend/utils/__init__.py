"""ember.utils: data loading (``ember.utils.data``)."""

from __future__ import annotations

from ember.utils import data

__all__ = ["data"]
