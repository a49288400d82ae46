"""MNIST (and Fashion-MNIST, KMNIST) from the IDX files of the original distribution, read from a
local folder. Every header field is checked against the file's size, so a truncated or foreign file
raises ``PackageError`` instead of yielding garbage.

IDX layout: two zero bytes, a type code (0x08 = uint8, ...), the number of dimensions, then each
dimension as a big-endian int32, then the values, big-endian, row-major.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from typing import Any

import ember
import numpy as np
from ember.runtime.errors import PackageError
from ember.utils.data import Dataset
from ember.vision.datasets._files import find_file, read_bytes

_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Parse one IDX file into a numpy array, validating the magic number and the sizes."""
    if len(data) < 4:
        raise PackageError(f"{name}: too short for an IDX header ({len(data)} bytes)")
    zero, code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or code not in _IDX_TYPES or not 1 <= ndim <= 8:
        raise PackageError(
            f"{name}: not an IDX file (magic number {data[:4].hex()}; expected 0000 followed by a"
            " type code 08/09/0b/0c/0d/0e and a dimension count)"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise PackageError(
            f"{name}: IDX header promises {ndim} dimensions but the file ends at byte {len(data)}"
        )
    dims = struct.unpack(f">{ndim}i", data[4:header])
    if any(d < 0 for d in dims):
        raise PackageError(f"{name}: negative dimension in IDX header {dims}")
    dtype = np.dtype(_IDX_TYPES[code])
    expected = header + int(np.prod(dims)) * dtype.itemsize
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "has trailing bytes"
        raise PackageError(f"{name}: file {what}: header {dims} needs {expected} bytes, found {len(data)}")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


class MNIST(Dataset):
    """MNIST from ``root`` (files in ``root/MNIST/raw``, ``root/MNIST`` or ``root``, optionally gzipped).

    A sample is ``(image, label)``: the image a (28, 28) uint8 numpy array (use ``transforms.ToTensor()``
    for a (1, 28, 28) float tensor in [0, 1]) and the label an int. ``download=True`` is refused: ember
    fetches nothing.
    """

    classes = [
        "0 - zero",
        "1 - one",
        "2 - two",
        "3 - three",
        "4 - four",
        "5 - five",
        "6 - six",
        "7 - seven",
        "8 - eight",
        "9 - nine",
    ]
    _files = {
        True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
        False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
    }

    def __init__(
        self,
        root: str,
        train: bool = True,
        transform: Callable[[Any], Any] | None = None,
        target_transform: Callable[[Any], Any] | None = None,
        download: bool = False,
    ) -> None:
        if download:
            raise RuntimeError(
                f"{type(self).__name__}: ember does not download data sets; place the IDX files"
                f" under {os.path.join(str(root), type(self).__name__, 'raw')}"
            )
        self.root, self.train = str(root), train
        self.transform, self.target_transform = transform, target_transform
        subdirs = [os.path.join(type(self).__name__, "raw"), type(self).__name__, ""]
        img_name, lbl_name = self._files[bool(train)]
        img_path = find_file(self.root, [img_name, img_name.replace("-idx3-", ".idx3-")], subdirs)
        lbl_path = find_file(self.root, [lbl_name, lbl_name.replace("-idx1-", ".idx1-")], subdirs)
        images = read_idx(read_bytes(img_path), img_path)
        labels = read_idx(read_bytes(lbl_path), lbl_path)
        if images.ndim != 3 or images.dtype != np.uint8:
            raise PackageError(
                f"{img_path}: expected uint8 images of shape (N, H, W), got {images.dtype} {images.shape}"
            )
        if labels.ndim != 1 or len(labels) != len(images):
            raise PackageError(f"{lbl_path}: expected {len(images)} labels, got shape {labels.shape}")
        self.data, self.targets = images, labels.astype(np.int64)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        img, target = self.data[index], int(self.targets[index])
        if self.transform is not None:
            img = self.transform(img)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return img, target

    def tensors(self) -> tuple[Any, Any]:
        """The whole split as (N, 1, H, W) float32 in [0, 1] and (N,) int64 tensors, for fast training."""
        images = ember.from_numpy(self.data).float().unsqueeze(1) / 255.0
        return images, ember.from_numpy(self.targets)


class FashionMNIST(MNIST):
    """Fashion-MNIST: same IDX layout as MNIST, files under ``root/FashionMNIST/raw``."""

    classes = [
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ]


class KMNIST(MNIST):
    """Kuzushiji-MNIST: same IDX layout as MNIST, files under ``root/KMNIST/raw``."""

    classes = ["o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"]


def write_idx(path: str, array: np.ndarray) -> None:
    """Write ``array`` as an IDX file (used to make test fixtures and to export generated digits)."""
    codes = {np.dtype(v).newbyteorder("="): k for k, v in _IDX_TYPES.items()}
    arr = np.ascontiguousarray(array)
    code = codes[arr.dtype.newbyteorder("=")]
    header = struct.pack(">HBB", 0, code, arr.ndim) + struct.pack(f">{arr.ndim}i", *arr.shape)
    with open(path, "wb") as f:
        f.write(header + arr.astype(np.dtype(_IDX_TYPES[code])).tobytes())
