"""CIFAR-10 and CIFAR-100 from the "python version" batches (``cifar-10-batches-py``,
``cifar-100-python``). The batches are pickles, so they are read through a restricted unpickler that
resolves only the few numpy globals an array needs: a batch that names any other global (``os.system``,
``builtins.eval``...) raises ``PackageError`` before anything from it runs."""

from __future__ import annotations

import io
import os
import pickle
from collections.abc import Callable
from typing import Any

import numpy as np
from ember.runtime.errors import PackageError
from ember.utils.data import Dataset
from ember.vision.datasets._files import read_bytes

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _ArrayUnpickler(pickle.Unpickler):
    """Resolves only numpy's array-reconstruction globals; everything else is refused."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise PackageError(
                f"refusing to load global {module}.{name} from a data file: only numpy arrays,"
                " numbers, strings, lists and dicts are allowed"
            )
        return super().find_class(module, name)


def load_pickled_batch(path: str) -> dict[str, Any]:
    """Read one CIFAR batch safely; keys come back as str (the files use Python 2 byte strings)."""
    data = read_bytes(path)
    try:
        obj = _ArrayUnpickler(io.BytesIO(data), encoding="latin1").load()
    except PackageError as e:
        raise PackageError(f"{path}: {e}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as e:
        raise PackageError(
            f"{path}: not a CIFAR python batch, or truncated ({type(e).__name__}: {e})"
        ) from None
    if not isinstance(obj, dict):
        raise PackageError(f"{path}: expected a pickled dict, found {type(obj).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _check_batch(path: str, batch: dict[str, Any], label_key: str) -> tuple[np.ndarray, list[int]]:
    data, labels = batch.get("data"), batch.get(label_key)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        shape = getattr(data, "shape", None)
        raise PackageError(f"{path}: 'data' must be a uint8 array of shape (N, 3072), got {shape}")
    if not isinstance(labels, list) or len(labels) != len(data):
        raise PackageError(f"{path}: '{label_key}' must be a list of {len(data)} labels")
    return data, labels


class CIFAR10(Dataset):
    """CIFAR-10 from ``root/cifar-10-batches-py``. A sample is ``(image, label)`` with the image an
    (32, 32, 3) uint8 numpy array (``transforms.ToTensor()`` gives (3, 32, 32) floats)."""

    base_folder = "cifar-10-batches-py"
    train_list = ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5"]
    test_list = ["test_batch"]
    meta_file, meta_key, label_key = "batches.meta", "label_names", "labels"

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
                f"{type(self).__name__}: ember does not download data sets; put the batches in"
                f" {os.path.join(str(root), self.base_folder)}"
            )
        self.root, self.train = str(root), train
        self.transform, self.target_transform = transform, target_transform
        folder = os.path.join(self.root, self.base_folder)
        chunks, targets = [], []
        for name in self.train_list if train else self.test_list:
            path = os.path.join(folder, name)
            if not os.path.isfile(path):
                raise FileNotFoundError(f"{path} not found; ember never downloads data sets")
            data, labels = _check_batch(path, load_pickled_batch(path), self.label_key)
            chunks.append(data)
            targets.extend(int(v) for v in labels)
        self.data = np.concatenate(chunks).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy()
        self.targets = targets
        meta = os.path.join(folder, self.meta_file)
        names = load_pickled_batch(meta).get(self.meta_key, []) if os.path.isfile(meta) else []
        self.classes = [n.decode("latin1") if isinstance(n, bytes) else str(n) for n in names]
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        img, target = self.data[index], self.targets[index]
        if self.transform is not None:
            img = self.transform(img)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return img, target


class CIFAR100(CIFAR10):
    """CIFAR-100 from ``root/cifar-100-python`` (fine labels)."""

    base_folder = "cifar-100-python"
    train_list = ["train"]
    test_list = ["test"]
    meta_file, meta_key, label_key = "meta", "fine_label_names", "fine_labels"
