"""vision.transforms against torch (padding, interpolation) and against their definitions."""

from __future__ import annotations

import ember
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from ember.vision import transforms as T

IMG = np.random.default_rng(0).standard_normal((3, 5, 6)).astype(np.float32)


def _e(a):
    return ember.tensor(a)


def test_to_tensor_layouts_and_scaling() -> None:
    hwc = np.random.default_rng(1).integers(0, 256, (4, 5, 3), dtype=np.uint8)
    x = T.ToTensor()(hwc)
    assert x.shape == (3, 4, 5) and x.dtype == ember.float32
    np.testing.assert_allclose(x.numpy(), hwc.transpose(2, 0, 1) / 255.0, rtol=1e-6)
    gray = T.ToTensor()(hwc[:, :, 0])
    assert gray.shape == (1, 4, 5)
    assert T.PILToTensor()(hwc).dtype == ember.uint8
    with pytest.raises(TypeError, match="PIL Image or a numpy array"):
        T.ToTensor()([1, 2, 3])


def test_normalize_per_channel() -> None:
    mean, std = [0.1, 0.2, 0.3], [0.5, 2.0, 1.5]
    got = T.Normalize(mean, std)(_e(IMG)).numpy()
    expected = (IMG - np.array(mean, np.float32)[:, None, None]) / np.array(std, np.float32)[:, None, None]
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    with pytest.raises(ValueError, match="division by zero"):
        T.Normalize([0.0], [0.0])
    with pytest.raises(TypeError, match="float tensor"):
        T.Normalize([0.0], [1.0])(ember.zeros(1, 2, 2, dtype=ember.int64))


@pytest.mark.parametrize(
    "mode,torch_mode", [("constant", "constant"), ("edge", "replicate"), ("reflect", "reflect")]
)
@pytest.mark.parametrize("padding", [2, (1, 3), (1, 2, 3, 0)])
def test_pad_matches_torch(mode, torch_mode, padding) -> None:
    p4 = (padding,) * 4 if isinstance(padding, int) else (padding * 2 if len(padding) == 2 else padding)
    got = T.Pad(padding, fill=0.0, padding_mode=mode)(_e(IMG)).numpy()
    expected = F.pad(torch.from_numpy(IMG)[None], (p4[0], p4[2], p4[1], p4[3]), mode=torch_mode)[0].numpy()
    np.testing.assert_array_equal(got, expected)


def test_pad_symmetric_and_fill() -> None:
    got = T.Pad((2, 1), padding_mode="symmetric")(_e(IMG)).numpy()
    np.testing.assert_array_equal(got, np.pad(IMG, ((0, 0), (1, 1), (2, 2)), mode="symmetric"))
    filled = T.Pad(1, fill=7.0)(_e(IMG)).numpy()
    assert filled[:, 0].tolist() == np.full((3, 8), 7.0).tolist()
    with pytest.raises(ValueError, match="Padding mode"):
        T.Pad(1, padding_mode="wrap")(_e(IMG))


def test_center_crop_rounding_and_padding() -> None:
    np.testing.assert_array_equal(T.CenterCrop(3)(_e(IMG)).numpy(), IMG[:, 1:4, 2:5])
    np.testing.assert_array_equal(T.CenterCrop((4, 2))(_e(IMG)).numpy(), IMG[:, 0:4, 2:4])
    big = T.CenterCrop(8)(_e(IMG)).numpy()
    assert big.shape == (3, 8, 8)
    np.testing.assert_array_equal(big[:, 2:7, 1:7], IMG)
    assert big[:, 0].sum() == 0


def test_random_crop_is_a_window_of_the_padded_image_and_seeded() -> None:
    padded = np.pad(IMG, ((0, 0), (2, 2), (2, 2)))
    ember.manual_seed(5)
    crops = [T.RandomCrop(4, padding=2)(_e(IMG)).numpy() for _ in range(6)]
    windows = {
        (i, j)
        for c in crops
        for i in range(6)
        for j in range(7)
        if np.array_equal(padded[:, i : i + 4, j : j + 4], c)
    }
    assert len(windows) >= 2 and all(c.shape == (3, 4, 4) for c in crops)
    ember.manual_seed(5)
    np.testing.assert_array_equal(T.RandomCrop(4, padding=2)(_e(IMG)).numpy(), crops[0])
    with pytest.raises(ValueError, match="larger than input image size"):
        T.RandomCrop(9)(_e(IMG))


def test_flips_compose_and_lambda() -> None:
    np.testing.assert_array_equal(T.RandomHorizontalFlip(p=1.0)(_e(IMG)).numpy(), IMG[:, :, ::-1])
    np.testing.assert_array_equal(T.RandomHorizontalFlip(p=0.0)(_e(IMG)).numpy(), IMG)
    np.testing.assert_array_equal(T.RandomVerticalFlip(p=1.0)(_e(IMG)).numpy(), IMG[:, ::-1])
    pipeline = T.Compose([T.ToTensor(), T.Lambda(lambda t: t * 2), T.CenterCrop(2)])
    out = pipeline(np.full((4, 4), 51, np.uint8)).numpy()
    np.testing.assert_allclose(out, np.full((1, 2, 2), 0.4), rtol=1e-6)
    assert "Lambda()" in repr(pipeline) and "CenterCrop" in repr(pipeline)
    with pytest.raises(TypeError, match="callable"):
        T.Lambda(3)


def test_resize_matches_torch_bilinear() -> None:
    got = T.Resize((8, 9))(_e(IMG)).numpy()
    expected = F.interpolate(torch.from_numpy(IMG)[None], size=(8, 9), mode="bilinear", align_corners=False)[
        0
    ]
    np.testing.assert_allclose(got, expected.numpy(), rtol=1e-5, atol=1e-6)
    assert T.Resize(10)(_e(IMG)).shape == (3, 10, 12)


def test_transforms_reject_non_tensors() -> None:
    with pytest.raises(TypeError, match="apply ToTensor"):
        T.CenterCrop(2)(np.zeros((3, 4, 4)))
