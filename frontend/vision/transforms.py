"""Image transforms with torchvision's names and semantics, on (C, H, W) tensors (ToTensor also takes
numpy HxW / HxWxC uint8 arrays and, when Pillow is installed, PIL images). Random transforms draw from
ember's generator, so DataLoader workers get reproducible, per-worker streams."""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from typing import Any

import ember
import numpy as np
from ember.runtime.errors import ArgumentError, ShapeError


def _pair(size: Any, name: str) -> tuple[int, int]:
    if isinstance(size, numbers.Number):
        return int(size), int(size)
    if isinstance(size, Sequence) and len(size) == 1:
        return int(size[0]), int(size[0])
    if isinstance(size, Sequence) and len(size) == 2:
        return int(size[0]), int(size[1])
    raise ArgumentError(f"{name}: size should be an int or a sequence of one or two ints, got {size!r}")


def _check_image(name: str, img: Any) -> None:
    if not isinstance(img, ember.Tensor):
        raise TypeError(
            f"{name}: expected an ember.Tensor image (C, H, W); apply ToTensor() first, got"
            f" {type(img).__name__}"
        )
    if img.dim() < 2:
        raise ShapeError(f"{name}: expected an image of shape (..., H, W), got {list(img.shape)}")


class Compose:
    """Apply transforms in order."""

    def __init__(self, transforms: Sequence[Callable[[Any], Any]]) -> None:
        self.transforms = list(transforms)

    def __call__(self, img: Any) -> Any:
        for t in self.transforms:
            img = t(img)
        return img

    def __repr__(self) -> str:
        body = "".join(f"\n    {t}" for t in self.transforms)
        return f"{type(self).__name__}({body}\n)"


class ToTensor:
    """HxW or HxWxC uint8 (numpy or PIL) to a (C, H, W) float32 tensor in [0, 1]; float arrays keep
    their values."""

    def __call__(self, pic: Any) -> Any:
        arr = pic if isinstance(pic, np.ndarray) else _from_pil(pic)
        if arr.ndim == 2:
            arr = arr[:, :, None]
        if arr.ndim != 3:
            raise ShapeError(f"ToTensor: expected an HxW or HxWxC image, got shape {arr.shape}")
        t = ember.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))
        if arr.dtype == np.uint8:
            return t.float() / 255.0
        return t.float() if not t.is_floating_point() else t

    def __repr__(self) -> str:
        return "ToTensor()"


def _from_pil(pic: Any) -> np.ndarray:
    if not hasattr(pic, "mode") or not hasattr(pic, "size"):
        raise TypeError(f"ToTensor: pic should be a PIL Image or a numpy array, got {type(pic).__name__}")
    return np.asarray(pic)


class PILToTensor:
    """HxWxC uint8 (numpy or PIL) to a (C, H, W) uint8 tensor, values unchanged."""

    def __call__(self, pic: Any) -> Any:
        arr = pic if isinstance(pic, np.ndarray) else _from_pil(pic)
        arr = arr[:, :, None] if arr.ndim == 2 else arr
        return ember.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))


class Normalize:
    """``(x - mean[c]) / std[c]`` per channel."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], inplace: bool = False) -> None:
        self.mean, self.std, self.inplace = list(mean), list(std), inplace
        if any(s == 0 for s in self.std):
            raise ArgumentError(
                f"std evaluated to zero after conversion to float32, leading to division by zero: {self.std}"
            )

    def __call__(self, tensor: Any) -> Any:
        _check_image("Normalize", tensor)
        if not tensor.is_floating_point():
            raise TypeError(f"Input tensor should be a float tensor. Got {tensor.dtype}.")
        shape = (-1,) + (1,) * 2
        mean = ember.tensor(self.mean, dtype=tensor.dtype).reshape(shape)
        std = ember.tensor(self.std, dtype=tensor.dtype).reshape(shape)
        return (tensor - mean) / std

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean}, std={self.std})"


def pad(img: Any, padding: Sequence[int], fill: float = 0.0, padding_mode: str = "constant") -> Any:
    """Pad the last two dims by (left, top, right, bottom): constant, edge, reflect or symmetric."""
    left, top, right, bottom = padding
    for dim, before, after in ((-1, left, right), (-2, top, bottom)):
        img = _pad_dim(img, dim, before, after, fill, padding_mode)
    return img


def _pad_dim(img: Any, dim: int, before: int, after: int, fill: float, mode: str) -> Any:
    n = img.shape[dim]
    parts = []
    for count, at_start in ((before, True), (after, False)):
        if count <= 0:
            parts.append(None)
            continue
        if mode == "constant":
            shape = list(img.shape)
            shape[dim] = count
            parts.append(ember.full(tuple(shape), fill, dtype=img.dtype))
            continue
        if mode == "edge":
            idx = [0] * count if at_start else [n - 1] * count
        elif mode in ("reflect", "symmetric"):
            shift = 1 if mode == "reflect" else 0
            if count > n - shift:
                raise ArgumentError(f"Pad: padding {count} too large for {mode} mode on a side of size {n}")
            idx = (
                list(range(count + shift - 1, shift - 1, -1))
                if at_start
                else list(range(n - 1 - shift, n - 1 - shift - count, -1))
            )
        else:
            raise ArgumentError(
                f"Padding mode should be either constant, edge, reflect or symmetric, got {mode}"
            )
        parts.append(img.index_select(dim % img.dim(), ember.tensor(idx)))
    pieces = [p for p in (parts[0], img, parts[1]) if p is not None]
    return ember.cat(pieces, dim) if len(pieces) > 1 else img


def _padding4(padding: Any) -> tuple[int, int, int, int]:
    if isinstance(padding, numbers.Number):
        p = int(padding)
        return p, p, p, p
    if len(padding) == 2:
        return int(padding[0]), int(padding[1]), int(padding[0]), int(padding[1])
    if len(padding) == 4:
        return tuple(int(p) for p in padding)  # type: ignore[return-value]
    raise ArgumentError(
        f"Padding must be an int or a 1, 2, or 4 element tuple, not a {len(padding)} element tuple"
    )


class Pad:
    """Pad all sides (int), left/right and top/bottom (2), or left, top, right, bottom (4)."""

    def __init__(self, padding: Any, fill: float = 0, padding_mode: str = "constant") -> None:
        self.padding, self.fill, self.padding_mode = _padding4(padding), fill, padding_mode

    def __call__(self, img: Any) -> Any:
        _check_image("Pad", img)
        return pad(img, self.padding, self.fill, self.padding_mode)

    def __repr__(self) -> str:
        return f"Pad(padding={self.padding}, fill={self.fill}, padding_mode={self.padding_mode})"


def crop(img: Any, top: int, left: int, height: int, width: int) -> Any:
    """The (height, width) window at (top, left); parts outside the image are zero, as in torchvision."""
    h, w = img.shape[-2], img.shape[-1]
    if top < 0 or left < 0 or top + height > h or left + width > w:
        img = pad(img, (max(0, -left), max(0, -top), max(0, left + width - w), max(0, top + height - h)))
        top, left = max(top, 0), max(left, 0)
    return img[..., top : top + height, left : left + width]


class CenterCrop:
    """Crop the centre (padding with zeros when the image is smaller)."""

    def __init__(self, size: Any) -> None:
        self.size = _pair(size, "CenterCrop")

    def __call__(self, img: Any) -> Any:
        _check_image("CenterCrop", img)
        th, tw = self.size
        h, w = img.shape[-2], img.shape[-1]
        return crop(img, int(round((h - th) / 2.0)), int(round((w - tw) / 2.0)), th, tw)

    def __repr__(self) -> str:
        return f"CenterCrop(size={self.size})"


class RandomCrop:
    """A random window of ``size``, after optional ``padding`` (and ``pad_if_needed``)."""

    def __init__(
        self,
        size: Any,
        padding: Any = None,
        pad_if_needed: bool = False,
        fill: float = 0,
        padding_mode: str = "constant",
    ) -> None:
        self.size = _pair(size, "RandomCrop")
        self.padding = None if padding is None else _padding4(padding)
        self.pad_if_needed, self.fill, self.padding_mode = pad_if_needed, fill, padding_mode

    def __call__(self, img: Any) -> Any:
        _check_image("RandomCrop", img)
        if self.padding is not None:
            img = pad(img, self.padding, self.fill, self.padding_mode)
        th, tw = self.size
        h, w = img.shape[-2], img.shape[-1]
        if self.pad_if_needed and (h < th or w < tw):
            dw, dh = max(0, tw - w), max(0, th - h)
            img = pad(img, (dw, dh, dw, dh), self.fill, self.padding_mode)
            h, w = img.shape[-2], img.shape[-1]
        if h < th or w < tw:
            raise ArgumentError(f"Required crop size {(th, tw)} is larger than input image size {(h, w)}")
        top = int(ember.randint(0, h - th + 1, (1,)).item())
        left = int(ember.randint(0, w - tw + 1, (1,)).item())
        return img[..., top : top + th, left : left + tw]

    def __repr__(self) -> str:
        return f"RandomCrop(size={self.size}, padding={self.padding})"


class RandomHorizontalFlip:
    """Mirror left-right with probability ``p``."""

    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def __call__(self, img: Any) -> Any:
        _check_image("RandomHorizontalFlip", img)
        if ember.rand(1).item() < self.p:
            return img.flip(-1)
        return img

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class RandomVerticalFlip(RandomHorizontalFlip):
    """Mirror top-bottom with probability ``p``."""

    def __call__(self, img: Any) -> Any:
        _check_image("RandomVerticalFlip", img)
        if ember.rand(1).item() < self.p:
            return img.flip(-2)
        return img


class Resize:
    """Resize to ``size`` (h, w), or the shorter side to ``size`` keeping the aspect ratio; bilinear."""

    def __init__(self, size: Any, interpolation: str = "bilinear", antialias: bool = True) -> None:
        self.size, self.interpolation = size, interpolation

    def __call__(self, img: Any) -> Any:
        _check_image("Resize", img)
        h, w = img.shape[-2], img.shape[-1]
        if isinstance(self.size, numbers.Number) or len(self.size) == 1:
            s = int(self.size if isinstance(self.size, numbers.Number) else self.size[0])
            out = (s, int(s * w / h)) if h <= w else (int(s * h / w), s)
        else:
            out = (int(self.size[0]), int(self.size[1]))
        from ember.nn import functional as F

        batch = img.unsqueeze(0) if img.dim() == 3 else img
        mode = "nearest" if self.interpolation == "nearest" else "bilinear"
        kwargs = {} if mode == "nearest" else {"align_corners": False}
        res = F.interpolate(batch.float(), size=out, mode=mode, **kwargs)
        return res[0] if img.dim() == 3 else res

    def __repr__(self) -> str:
        return f"Resize(size={self.size}, interpolation={self.interpolation})"


class Lambda:
    """Wrap any function as a transform."""

    def __init__(self, lambd: Callable[[Any], Any]) -> None:
        if not callable(lambd):
            raise TypeError(f"Argument lambd should be callable, got {type(lambd).__name__!r}")
        self.lambd = lambd

    def __call__(self, img: Any) -> Any:
        return self.lambd(img)

    def __repr__(self) -> str:
        return "Lambda()"
