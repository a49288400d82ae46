"""make_grid and save_image, as in torchvision. The grid is built with ember ops; the PNG is written
with zlib and struct only (no Pillow): 8-bit grayscale, RGB or RGBA, no interlacing."""

from __future__ import annotations

import math
import os
import struct
import zlib
from typing import IO, Any

import ember
import numpy as np
from ember.runtime.errors import ArgumentError, ShapeError


def _as_batch(tensor: Any) -> Any:
    """A (N, C, H, W) tensor from a list of images or a 2-, 3- or 4-d tensor; one channel becomes three."""
    if isinstance(tensor, (list, tuple)):
        tensor = ember.stack(list(tensor), 0)
    if not isinstance(tensor, ember.Tensor):
        raise TypeError(f"tensor or list of tensors expected, got {type(tensor).__name__}")
    if tensor.dim() == 2:
        tensor = tensor.unsqueeze(0)
    if tensor.dim() == 3:
        tensor = tensor.unsqueeze(0)
    if tensor.dim() != 4:
        raise ShapeError(f"make_grid: expected a 2-, 3- or 4-d tensor, got shape {list(tensor.shape)}")
    if tensor.shape[1] == 1:
        tensor = ember.cat([tensor, tensor, tensor], 1)
    return tensor


def _normalize(t: Any, value_range: tuple[float, float] | None) -> Any:
    low, high = value_range if value_range is not None else (t.amin().item(), t.amax().item())
    return (t.clamp(low, high) - low) / max(high - low, 1e-5)


def make_grid(
    tensor: Any,
    nrow: int = 8,
    padding: int = 2,
    normalize: bool = False,
    value_range: tuple[float, float] | None = None,
    scale_each: bool = False,
    pad_value: float = 0.0,
) -> Any:
    """Tile a batch of images (N, C, H, W) into one (C, H', W') image, ``nrow`` images per row.

    >>> make_grid(ember.zeros(4, 1, 8, 8), nrow=2, padding=1).shape
    ember.Size([3, 19, 19])
    """
    batch = _as_batch(tensor).detach()
    if normalize:
        if scale_each:
            batch = ember.stack([_normalize(img, value_range) for img in batch.unbind(0)], 0)
        else:
            batch = _normalize(batch, value_range)
    n, c, h, w = batch.shape
    if n == 1:
        return batch[0]
    cols = min(nrow, n)
    rows = int(math.ceil(n / cols))
    step_h, step_w = h + padding, w + padding
    grid = ember.full((c, rows * step_h + padding, cols * step_w + padding), pad_value, dtype=batch.dtype)
    for k in range(n):
        y, x = divmod(k, cols)
        top, left = y * step_h + padding, x * step_w + padding
        grid[:, top : top + h, left : left + w] = batch[k]
    return grid


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def encode_png(pixels: np.ndarray) -> bytes:
    """PNG bytes for a uint8 array (H, W) or (H, W, C) with C in 1, 3, 4."""
    if pixels.dtype != np.uint8:
        raise ArgumentError(f"encode_png expects uint8 pixels, got {pixels.dtype}")
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    h, w, c = pixels.shape
    color = {1: 0, 3: 2, 4: 6}.get(c)
    if color is None:
        raise ShapeError(f"encode_png: expected 1, 3 or 4 channels, got {c}")
    rows = np.concatenate([np.zeros((h, 1), np.uint8), pixels.reshape(h, w * c)], 1)  # filter byte 0 per row
    header = struct.pack(">IIBBBBB", w, h, 8, color, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(rows.tobytes(), 6))
        + _png_chunk(b"IEND", b"")
    )


def save_image(
    tensor: Any,
    fp: str | os.PathLike[str] | IO[bytes],
    format: str | None = None,  # noqa: A002
    **kwargs: Any,
) -> None:
    """Save a tensor (or a batch, tiled by ``make_grid(**kwargs)``) with values in [0, 1] as a PNG."""
    if format is not None and format.lower() != "png":
        raise ArgumentError(f"save_image: ember writes PNG only, got format={format!r}")
    grid = make_grid(tensor, **kwargs)
    if grid.dim() == 2:
        grid = grid.unsqueeze(0)
    pixels = (grid * 255 + 0.5).clamp(0, 255).permute(1, 2, 0).to(ember.uint8).contiguous().numpy()
    data = encode_png(np.ascontiguousarray(pixels))
    if hasattr(fp, "write"):
        fp.write(data)  # type: ignore[union-attr]
    else:
        with open(fp, "wb") as f:
            f.write(data)
