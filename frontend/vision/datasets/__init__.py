"""ember.vision.datasets: standard data sets read from local files (nothing is downloaded), and
generated digits."""

from __future__ import annotations

from ember.vision.datasets.cifar import CIFAR10, CIFAR100
from ember.vision.datasets.digits import SyntheticDigits, generate_digits
from ember.vision.datasets.folder import IMG_EXTENSIONS, DatasetFolder, ImageFolder
from ember.vision.datasets.mnist import KMNIST, MNIST, FashionMNIST, read_idx, write_idx

__all__ = [
    "CIFAR10",
    "CIFAR100",
    "DatasetFolder",
    "FashionMNIST",
    "IMG_EXTENSIONS",
    "ImageFolder",
    "KMNIST",
    "MNIST",
    "SyntheticDigits",
    "generate_digits",
    "read_idx",
    "write_idx",
]
