"""VGG-11/13/16/19, with and without batch norm, as torchvision builds them (``features``, ``avgpool``
to 7x7, ``classifier``), so torchvision state dicts load with ``strict=True``."""

from __future__ import annotations

from typing import Any

import ember
from ember import nn
from ember.vision.models._common import no_pretrained

CFGS: dict[str, list[int | str]] = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [
        64,
        64,
        "M",
        128,
        128,
        "M",
        256,
        256,
        256,
        256,
        "M",
        512,
        512,
        512,
        512,
        "M",
        512,
        512,
        512,
        512,
        "M",
    ],
}


class VGG(nn.Module):
    """Convolutional ``features``, adaptive average pool to 7x7, three-layer ``classifier``."""

    def __init__(
        self, features: nn.Module, num_classes: int = 1000, init_weights: bool = True, dropout: float = 0.5
    ) -> None:
        super().__init__()
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096),
            nn.ReLU(True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, num_classes),
        )
        if init_weights:
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                    if m.bias is not None:
                        nn.init.constant_(m.bias, 0)
                elif isinstance(m, nn.BatchNorm2d):
                    nn.init.constant_(m.weight, 1)
                    nn.init.constant_(m.bias, 0)
                elif isinstance(m, nn.Linear):
                    nn.init.normal_(m.weight, 0, 0.01)
                    nn.init.constant_(m.bias, 0)

    def forward(self, x: Any) -> Any:
        return self.classifier(ember.flatten(self.avgpool(self.features(x)), 1))


def make_layers(cfg: list[int | str], batch_norm: bool = False) -> nn.Sequential:
    """3x3 convolutions (+ batch norm) + ReLU per number in ``cfg``, 2x2 max-pool per "M"."""
    layers: list[nn.Module] = []
    in_channels = 3
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        conv = nn.Conv2d(in_channels, int(v), kernel_size=3, padding=1)
        layers += (
            [conv, nn.BatchNorm2d(int(v)), nn.ReLU(inplace=True)]
            if batch_norm
            else [conv, nn.ReLU(inplace=True)]
        )
        in_channels = int(v)
    return nn.Sequential(*layers)


def _vgg(name: str, cfg: str, batch_norm: bool, weights: Any, kwargs: dict[str, Any]) -> VGG:
    no_pretrained(name, weights, kwargs)
    return VGG(make_layers(CFGS[cfg], batch_norm=batch_norm), **kwargs)


def vgg11(weights: Any = None, **kwargs: Any) -> VGG:
    """VGG-11 (configuration "A")."""
    return _vgg("vgg11", "A", False, weights, kwargs)


def vgg11_bn(weights: Any = None, **kwargs: Any) -> VGG:
    """VGG-11 with batch normalization."""
    return _vgg("vgg11_bn", "A", True, weights, kwargs)


def vgg13(weights: Any = None, **kwargs: Any) -> VGG:
    """VGG-13 (configuration "B")."""
    return _vgg("vgg13", "B", False, weights, kwargs)


def vgg13_bn(weights: Any = None, **kwargs: Any) -> VGG:
    """VGG-13 with batch normalization."""
    return _vgg("vgg13_bn", "B", True, weights, kwargs)


def vgg16(weights: Any = None, **kwargs: Any) -> VGG:
    """VGG-16 (configuration "D")."""
    return _vgg("vgg16", "D", False, weights, kwargs)


def vgg16_bn(weights: Any = None, **kwargs: Any) -> VGG:
    """VGG-16 with batch normalization."""
    return _vgg("vgg16_bn", "D", True, weights, kwargs)


def vgg19(weights: Any = None, **kwargs: Any) -> VGG:
    """VGG-19 (configuration "E")."""
    return _vgg("vgg19", "E", False, weights, kwargs)


def vgg19_bn(weights: Any = None, **kwargs: Any) -> VGG:
    """VGG-19 with batch normalization."""
    return _vgg("vgg19_bn", "E", True, weights, kwargs)
