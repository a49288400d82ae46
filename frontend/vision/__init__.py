"""ember.vision: the torchvision part of the API: datasets from local files, models with torchvision's
architectures and state-dict keys, transforms, and make_grid / save_image."""

from __future__ import annotations

from ember.vision import datasets, models, transforms, utils

__all__ = ["datasets", "models", "transforms", "utils"]
