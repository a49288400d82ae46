"""Shared by the model factories: ember never downloads weights."""

from __future__ import annotations

from typing import Any

from ember.runtime.errors import ArgumentError


def no_pretrained(name: str, weights: Any, kwargs: dict[str, Any]) -> None:
    """Refuse ``weights=...`` / ``pretrained=True``: ember fetches nothing from the network."""
    if weights is not None or kwargs.pop("pretrained", False):
        raise ArgumentError(
            f"{name}: ember does not download pretrained weights; build the model with weights=None and"
            " load a torchvision state dict with model.load_state_dict(ember.load(path))"
        )
    kwargs.pop("progress", None)
