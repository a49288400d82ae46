"""AlexNet as torchvision builds it (the one-GPU variant of "One weird trick"), same module names."""

from __future__ import annotations

from typing import Any

import ember
from ember import nn
from ember.vision.models._common import no_pretrained


class AlexNet(nn.Module):
    """Five convolutions in ``features``, adaptive average pool to 6x6, three-layer ``classifier``."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),
            nn.Linear(256 * 6 * 6, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: Any) -> Any:
        return self.classifier(ember.flatten(self.avgpool(self.features(x)), 1))


def alexnet(weights: Any = None, **kwargs: Any) -> AlexNet:
    """AlexNet for 3x224x224 inputs."""
    no_pretrained("alexnet", weights, kwargs)
    return AlexNet(**kwargs)
