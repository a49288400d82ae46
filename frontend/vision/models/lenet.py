"""LeNet-5 in its common modern form, for 1x28x28 digits (MNIST's size): conv1 5x5 with padding 2 (so
the 28x28 input plays the role of LeCun's 32x32), ReLU and 2x2 max-pooling in place of the original
scaled tanh and subsampling, then 16x5x5 -> 120 -> 84 -> classes. torchvision has no LeNet; the module
names follow its style (``features``, ``classifier``)."""

from __future__ import annotations

from typing import Any

import ember
from ember import nn
from ember.vision.models._common import no_pretrained


class LeNet5(nn.Module):
    """conv(1->6, 5x5, pad 2) ReLU maxpool2 | conv(6->16, 5x5) ReLU maxpool2 | fc 400->120->84->classes."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, kernel_size=5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, kernel_size=5),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Linear(16 * 5 * 5, 120),
            nn.ReLU(),
            nn.Linear(120, 84),
            nn.ReLU(),
            nn.Linear(84, num_classes),
        )

    def forward(self, x: Any) -> Any:
        return self.classifier(ember.flatten(self.features(x), 1))


def lenet5(weights: Any = None, **kwargs: Any) -> LeNet5:
    """LeNet-5 for (N, 1, 28, 28) inputs."""
    no_pretrained("lenet5", weights, kwargs)
    return LeNet5(**kwargs)
