"""ember.vision.models: LeNet-5, AlexNet, VGG and ResNet with torchvision's architectures and state-dict
keys. Pretrained weights are never downloaded: load a state dict from a local file instead."""

from __future__ import annotations

from ember.vision.models.alexnet import AlexNet, alexnet
from ember.vision.models.lenet import LeNet5, lenet5
from ember.vision.models.resnet import (
    BasicBlock,
    Bottleneck,
    ResNet,
    resnet18,
    resnet34,
    resnet50,
    resnet101,
    resnet152,
)
from ember.vision.models.vgg import VGG, vgg11, vgg11_bn, vgg13, vgg13_bn, vgg16, vgg16_bn, vgg19, vgg19_bn

__all__ = [
    "AlexNet",
    "BasicBlock",
    "Bottleneck",
    "LeNet5",
    "ResNet",
    "VGG",
    "alexnet",
    "lenet5",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "vgg11",
    "vgg11_bn",
    "vgg13",
    "vgg13_bn",
    "vgg16",
    "vgg16_bn",
    "vgg19",
    "vgg19_bn",
]
