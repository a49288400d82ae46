"""Handwritten-style digits generated on the fly, so ``ember demo`` and the tests need no download.

Each digit 0-9 has one to three stroke skeletons (polylines and arcs on a unit box: open and closed 4,
7 with and without a bar, 1 with and without flag and base, ...). A sample draws a skeleton, jitters its
points, applies a random affine map (rotation, slant, scale, aspect, shift), renders the strokes with a
random pen width by their distance field (anti-aliased), and adds pixel noise. Images are 28x28 uint8,
white ink on black, the digit inside a ~20-pixel box, as in MNIST. Generation is deterministic under a
seed; train and test splits use different seeds, so the test digits are unseen variations.

This is data preparation (like decoding a file), so it is numpy, not ember ops.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ember
import numpy as np
from ember.utils.data import Dataset

Stroke = np.ndarray  # (k, 2) points of one polyline in the unit box, x right, y down


def _arc(cx: float, cy: float, rx: float, ry: float, a0: float, a1: float, n: int = 12) -> Stroke:
    a = np.radians(np.linspace(a0, a1, n))
    return np.stack([cx + rx * np.cos(a), cy + ry * np.sin(a)], 1)


def _line(*pts: tuple[float, float]) -> Stroke:
    return np.array(pts, dtype=np.float64)


def _skeletons() -> list[list[list[Stroke]]]:
    """Per digit, the list of its variants; a variant is a list of strokes."""
    return [
        [
            [_arc(0.5, 0.5, 0.26, 0.4, 0, 360, 20)],
            [_arc(0.5, 0.5, 0.22, 0.4, 0, 360, 20), _line((0.64, 0.22), (0.36, 0.78))],
        ],
        [
            [_line((0.5, 0.1), (0.5, 0.9))],
            [_line((0.33, 0.27), (0.52, 0.1), (0.52, 0.9))],
            [_line((0.35, 0.25), (0.5, 0.1), (0.5, 0.9)), _line((0.32, 0.9), (0.68, 0.9))],
        ],
        [
            [np.vstack([_arc(0.5, 0.33, 0.22, 0.22, 200, 380), _line((0.25, 0.9), (0.78, 0.9))])],
            [
                np.vstack(
                    [
                        _arc(0.5, 0.32, 0.23, 0.2, 190, 400),
                        _arc(0.52, 0.9, 0.3, 0.28, 270, 180, 6),
                        _line((0.24, 0.88), (0.8, 0.9)),
                    ]
                )
            ],
        ],
        [
            [_arc(0.5, 0.3, 0.19, 0.19, 200, 450), _arc(0.5, 0.69, 0.21, 0.21, 270, 520)],
            [
                np.vstack(
                    [_line((0.25, 0.1), (0.75, 0.1), (0.45, 0.44)), _arc(0.5, 0.67, 0.23, 0.23, 260, 510)]
                )
            ],
        ],
        [
            [_line((0.65, 0.9), (0.65, 0.1), (0.2, 0.65), (0.82, 0.65))],
            [_line((0.3, 0.1), (0.25, 0.6), (0.8, 0.6)), _line((0.65, 0.32), (0.65, 0.9))],
        ],
        [
            [
                np.vstack(
                    [_line((0.72, 0.1), (0.32, 0.1), (0.3, 0.45)), _arc(0.5, 0.65, 0.23, 0.23, 225, 495)]
                )
            ],
            [
                _line((0.32, 0.1), (0.3, 0.45)),
                _arc(0.5, 0.65, 0.22, 0.24, 235, 500),
                _line((0.33, 0.1), (0.75, 0.1)),
            ],
        ],
        [
            [
                np.vstack(
                    [_arc(0.7, 0.55, 0.42, 0.45, 265, 175, 10), _arc(0.5, 0.68, 0.21, 0.21, 180, 540, 16)]
                )
            ],
            [_line((0.66, 0.1), (0.3, 0.62)), _arc(0.5, 0.69, 0.2, 0.2, 0, 360, 16)],
        ],
        [
            [_line((0.22, 0.1), (0.78, 0.1), (0.4, 0.9))],
            [_line((0.22, 0.12), (0.78, 0.1), (0.42, 0.9)), _line((0.38, 0.52), (0.72, 0.5))],
        ],
        [
            [_arc(0.5, 0.29, 0.17, 0.18, 0, 360, 16), _arc(0.5, 0.69, 0.22, 0.21, 0, 360, 16)],
            [np.vstack([_arc(0.5, 0.29, 0.18, 0.18, 90, 450, 16), _arc(0.5, 0.69, 0.22, 0.2, 270, 630, 16)])],
        ],
        [
            [_arc(0.5, 0.32, 0.2, 0.2, 0, 360, 16), _line((0.7, 0.32), (0.66, 0.9))],
            [_arc(0.48, 0.32, 0.2, 0.19, 0, 360, 16), _arc(0.3, 0.32, 0.38, 0.58, 0, 80, 8)],
        ],
    ]


_SKELETONS = _skeletons()
_SIZE = 28
_SPACING = 0.03  # skeleton resampling step in the unit box: about 0.6 pixel after scaling


def _resample(stroke: Stroke) -> Stroke:
    """Points every ``_SPACING`` along a polyline (by arc length), so splatted points form a solid line."""
    seg = np.linalg.norm(np.diff(stroke, axis=0), axis=1)
    arc = np.concatenate([[0.0], np.cumsum(seg)])
    t = np.linspace(0.0, arc[-1], max(2, int(np.ceil(arc[-1] / _SPACING)) + 1))
    return np.stack([np.interp(t, arc, stroke[:, 0]), np.interp(t, arc, stroke[:, 1])], 1)


def _flatten(strokes: list[Stroke]) -> tuple[np.ndarray, np.ndarray]:
    """All resampled points of a variant and the stroke each belongs to."""
    dense = [_resample(s) for s in strokes]
    return np.concatenate(dense), np.concatenate([np.full(len(s), i) for i, s in enumerate(dense)])


def _affine(g: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``g`` random maps (rotation, slant, scale, aspect) from the unit box to pixels, and shifts."""
    theta = np.radians(rng.uniform(-14, 14, g))
    shear = rng.uniform(-0.35, 0.35, g)
    scale = rng.uniform(17.0, 21.5, g)
    sx = scale * rng.uniform(0.75, 1.15, g)
    c, s = np.cos(theta), np.sin(theta)
    # rotation @ [[1, shear], [0, 1]] @ diag(sx, scale)
    m = np.stack(
        [np.stack([c * sx, (c * shear - s) * scale], -1), np.stack([s * sx, (s * shear + c) * scale], -1)], -2
    )
    return m, 14.0 + rng.uniform(-2.0, 2.0, (g, 2))


def _splat(pts: np.ndarray) -> np.ndarray:
    """Bilinear deposit of (g, k, 2) pixel-space points into (g, 28, 28) density images."""
    g, k, _ = pts.shape
    xy = pts - 0.5  # pixel centres sit at +0.5
    base = np.floor(xy)
    frac = xy - base
    base = base.astype(np.int64)
    img = np.zeros(g * _SIZE * _SIZE)
    image_of = np.repeat(np.arange(g), k) * _SIZE * _SIZE
    for dx, dy in ((0, 0), (1, 0), (0, 1), (1, 1)):
        x = base[..., 0].ravel() + dx
        y = base[..., 1].ravel() + dy
        wx = frac[..., 0].ravel() if dx else 1 - frac[..., 0].ravel()
        wy = frac[..., 1].ravel() if dy else 1 - frac[..., 1].ravel()
        inside = (x >= 0) & (x < _SIZE) & (y >= 0) & (y < _SIZE)
        img += np.bincount((image_of + y * _SIZE + x)[inside], (wx * wy)[inside], minlength=len(img))
    return img.reshape(g, _SIZE, _SIZE)


def _blur(img: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Separable Gaussian blur with one width per image: ``K @ img @ K.T``."""
    r = np.arange(_SIZE, dtype=np.float64)
    k = np.exp(-((r[:, None] - r[None, :]) ** 2)[None] / (2 * sigma[:, None, None] ** 2))
    k /= np.sqrt(2 * np.pi) * sigma[:, None, None]
    return k @ img @ k.transpose(0, 2, 1)


def _draw_group(strokes: list[Stroke], g: int, rng: np.random.Generator) -> np.ndarray:
    """``g`` random renderings of one skeleton, as (g, 28, 28) ink in [0, 1]: jittered points, an affine
    map, a splat, a blur whose width sets the pen, and a soft threshold."""
    points, owner = _flatten(strokes)
    wobble = rng.normal(0, 0.018, (g, len(strokes), 2))[:, owner] + rng.normal(0, 0.004, (g, len(points), 2))
    m, shift = _affine(g, rng)
    pts = np.einsum("gij,gkj->gki", m, points[None] - 0.5 + wobble) + shift[:, None]
    density = _splat(pts) / (_SPACING * 19.0)  # about one unit of ink per pixel of stroke length
    pen = rng.uniform(0.5, 1.1, g)
    ink = _blur(density, pen) * (2.2 * pen)[:, None, None] * rng.uniform(1.2, 2.2, (g, 1, 1))
    return np.clip(ink, 0.0, 1.0)


def generate_digits(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` digit images (n, 28, 28) uint8 and labels (n,) int64, balanced over the classes."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    rng.shuffle(labels)
    counts = np.array([len(v) for v in _SKELETONS])
    variant = (rng.random(n) * counts[labels]).astype(np.int64)
    ink = np.empty((n, _SIZE, _SIZE))
    for digit, variants in enumerate(_SKELETONS):
        for k, strokes in enumerate(variants):
            idx = np.flatnonzero((labels == digit) & (variant == k))
            if len(idx):
                ink[idx] = _draw_group(strokes, len(idx), rng)
    ink *= rng.uniform(0.75, 1.0, (n, 1, 1))
    ink += rng.normal(0, 1, ink.shape) * rng.uniform(0.0, 0.12, (n, 1, 1))
    images = np.clip(ink * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return images, labels.astype(np.int64)


class SyntheticDigits(Dataset):
    """Generated handwritten-style digits with MNIST's interface: ``(image, label)`` samples with the
    image a (28, 28) uint8 array, ``transform``/``target_transform``, and ``tensors()`` for the whole set.

    >>> ds = SyntheticDigits(100, seed=1)
    >>> ds[0][0].shape, len(ds)
    ((28, 28), 100)
    """

    classes = [str(d) for d in range(10)]

    def __init__(
        self,
        size: int = 10000,
        seed: int = 0,
        transform: Callable[[Any], Any] | None = None,
        target_transform: Callable[[Any], Any] | None = None,
    ) -> None:
        self.data, self.targets = generate_digits(size, seed)
        self.transform, self.target_transform = transform, target_transform

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
        """The whole set as (N, 1, 28, 28) float32 in [0, 1] and (N,) int64 tensors."""
        return ember.from_numpy(self.data).float().unsqueeze(1) / 255.0, ember.from_numpy(self.targets)
