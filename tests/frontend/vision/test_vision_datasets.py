"""On-disk data sets (MNIST IDX, CIFAR pickled batches, ImageFolder) from files written in the test, bad
files (truncated, foreign, malicious) rejected with clear errors, and the generated digits."""

from __future__ import annotations

import gzip
import os
import pickle
import struct
import sys

import ember
import numpy as np
import pytest
from ember.runtime.errors import PackageError
from ember.vision import transforms
from ember.vision.datasets import CIFAR10, CIFAR100, MNIST, ImageFolder, SyntheticDigits, read_idx, write_idx


def _mnist_root(tmp_path, n=7, gz=False):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    write_idx(str(raw / "t10k-images-idx3-ubyte"), images)
    write_idx(str(raw / "t10k-labels-idx1-ubyte"), labels)
    if gz:
        for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
            path = raw / name
            (raw / (name + ".gz")).write_bytes(gzip.compress(path.read_bytes()))
            path.unlink()
    return images, labels


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_reads_idx_files(tmp_path, gz) -> None:
    images, labels = _mnist_root(tmp_path, gz=gz)
    ds = MNIST(str(tmp_path), train=False)
    assert len(ds) == 7
    img, target = ds[3]
    np.testing.assert_array_equal(img, images[3])
    assert target == int(labels[3]) and isinstance(target, int)
    ds_t = MNIST(str(tmp_path), train=False, transform=transforms.ToTensor())
    x, _ = ds_t[3]
    assert x.shape == (1, 28, 28) and x.dtype == ember.float32
    np.testing.assert_allclose(x.numpy()[0], images[3] / 255.0, rtol=1e-6)
    xs, ys = ds.tensors()
    assert xs.shape == (7, 1, 28, 28) and ys.tolist() == labels.tolist()


def test_idx_header_is_big_endian_and_typed() -> None:
    values = np.array([[1, -2, 300], [7, 8, -9]], dtype=">i2")
    data = bytes([0, 0, 0x0B, 2]) + struct.pack(">2i", 2, 3) + values.tobytes()
    np.testing.assert_array_equal(read_idx(data), values.astype(np.int16))


def test_mnist_truncated_file_is_rejected(tmp_path) -> None:
    _mnist_root(tmp_path)
    path = tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(PackageError, match="truncated"):
        MNIST(str(tmp_path), train=False)


def test_mnist_foreign_file_is_rejected(tmp_path) -> None:
    _mnist_root(tmp_path)
    (tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(40))
    with pytest.raises(PackageError, match="not an IDX file"):
        MNIST(str(tmp_path), train=False)


def test_mnist_label_count_mismatch_and_bad_gzip(tmp_path) -> None:
    _mnist_root(tmp_path)
    write_idx(str(tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"), np.zeros(3, np.uint8))
    with pytest.raises(PackageError, match="expected 7 labels"):
        MNIST(str(tmp_path), train=False)
    raw = tmp_path / "MNIST" / "raw"
    (raw / "t10k-labels-idx1-ubyte").unlink()
    (raw / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"0" * 500)[:20])
    with pytest.raises(PackageError, match="gzip"):
        MNIST(str(tmp_path), train=False)


def test_missing_files_and_download_are_explained(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="never downloads"):
        MNIST(str(tmp_path))
    with pytest.raises(RuntimeError, match="does not download"):
        MNIST(str(tmp_path), download=True)
    with pytest.raises(FileNotFoundError, match="never downloads"):
        CIFAR10(str(tmp_path))


def _cifar_batch(n, seed, label_key="labels", protocol=2):
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    labels = rng.integers(0, 10, n).tolist()
    blob = pickle.dumps(
        {
            b"batch_label": b"batch",
            label_key.encode(): labels,
            b"data": data,
            b"filenames": [b"f%d.png" % i for i in range(n)],
        },
        protocol=protocol,
    )
    return blob, data, labels


@pytest.mark.parametrize("protocol", [2, 5])
def test_cifar10_reads_pickled_batches(tmp_path, protocol) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    expected_data, expected_labels = [], []
    for i, name in enumerate(CIFAR10.train_list):
        blob, data, labels = _cifar_batch(3, i, protocol=protocol)
        (folder / name).write_bytes(blob)
        expected_data.append(data)
        expected_labels += labels
    names = [b"airplane", b"automobile"] + [b"c%d" % i for i in range(8)]
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": names}, protocol=protocol))
    ds = CIFAR10(str(tmp_path), train=True)
    assert len(ds) == 15 and ds.classes[:2] == ["airplane", "automobile"]
    img, label = ds[4]
    row = np.concatenate(expected_data)[4]
    assert img.shape == (32, 32, 3) and label == expected_labels[4]
    np.testing.assert_array_equal(img[:, :, 0].ravel(), row[:1024])  # red plane first
    np.testing.assert_array_equal(img[:, :, 2].ravel(), row[2048:])


def test_cifar100_uses_fine_labels(tmp_path) -> None:
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    blob, _, labels = _cifar_batch(4, 9, label_key="fine_labels")
    (folder / "test").write_bytes(blob)
    ds = CIFAR100(str(tmp_path), train=False)
    assert [ds[i][1] for i in range(4)] == labels


class _Exploit:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_malicious_cifar_pickle_raises_and_runs_nothing(tmp_path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    marker = str(tmp_path / "pwned")
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": _Exploit(marker), b"labels": []}, protocol=2))
    with pytest.raises(PackageError, match="refusing to load global"):
        CIFAR10(str(tmp_path), train=False)
    assert not os.path.exists(marker)


def test_truncated_or_foreign_cifar_batch(tmp_path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    blob, _, _ = _cifar_batch(5, 0)
    (folder / "test_batch").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(PackageError, match="truncated"):
        CIFAR10(str(tmp_path), train=False)
    (folder / "test_batch").write_bytes(
        pickle.dumps({b"data": np.zeros((2, 10), np.uint8), b"labels": [0, 1]})
    )
    with pytest.raises(PackageError, match=r"\(N, 3072\)"):
        CIFAR10(str(tmp_path), train=False)


def test_image_folder_with_custom_loader(tmp_path) -> None:
    for cls, n in (("dog", 2), ("cat", 3)):
        (tmp_path / cls).mkdir()
        for i in range(n):
            np.save(tmp_path / cls / f"{i}.npy", np.full((4, 4, 3), i, np.uint8))
    (tmp_path / "cat" / "notes.txt").write_text("ignored")
    ds = ImageFolder(
        str(tmp_path),
        loader=np.load,
        is_valid_file=lambda p: p.endswith(".npy"),
        transform=transforms.ToTensor(),
    )
    assert ds.classes == ["cat", "dog"] and ds.class_to_idx == {"cat": 0, "dog": 1}
    assert [t for _, t in ds.samples] == [0, 0, 0, 1, 1]
    x, y = ds[4]
    assert x.shape == (3, 4, 4) and y == 1


def test_image_folder_without_pillow_says_how_to_install(tmp_path, monkeypatch) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.png").write_bytes(b"not really a png")
    monkeypatch.setitem(sys.modules, "PIL", None)  # import PIL now fails, whether or not it is installed
    ds = ImageFolder(str(tmp_path))
    with pytest.raises(ImportError, match="pip install pillow"):
        ds[0]


def test_synthetic_digits_are_deterministic_balanced_and_varied() -> None:
    a, b, c = SyntheticDigits(200, seed=3), SyntheticDigits(200, seed=3), SyntheticDigits(200, seed=4)
    np.testing.assert_array_equal(a.data, b.data)
    assert not np.array_equal(a.data, c.data)
    assert a.data.shape == (200, 28, 28) and a.data.dtype == np.uint8
    assert np.bincount(a.targets, minlength=10).tolist() == [20] * 10
    ink = a.data.astype(np.float64) / 255
    assert 0.05 < (ink > 0.5).mean() < 0.4  # strokes, not blank or flooded images
    twos = ink[a.targets == 2]
    assert np.abs(twos[0] - twos[1]).mean() > 0.05  # two samples of one digit differ
    x, y = a.tensors()
    assert x.shape == (200, 1, 28, 28) and float(x.amax()) <= 1.0 and y.dtype == ember.int64
