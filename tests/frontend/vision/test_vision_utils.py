"""make_grid against torchvision's layout rules, and save_image's PNG decoded by an independent reader."""

from __future__ import annotations

import struct
import zlib

import ember
import numpy as np
import pytest
from ember.vision.utils import encode_png, make_grid, save_image


def _reference_grid(batch, nrow, padding, pad_value):
    n, c, h, w = batch.shape
    if c == 1:
        batch = np.repeat(batch, 3, axis=1)
        c = 3
    cols = min(nrow, n)
    rows = -(-n // cols)
    grid = np.full(
        (c, rows * (h + padding) + padding, cols * (w + padding) + padding), pad_value, batch.dtype
    )
    for k in range(n):
        y, x = divmod(k, cols)
        grid[
            :,
            y * (h + padding) + padding : (y + 1) * (h + padding),
            x * (w + padding) + padding : (x + 1) * (w + padding),
        ] = batch[k]
    return grid


@pytest.mark.parametrize("n,c,nrow,padding", [(5, 3, 3, 2), (4, 1, 8, 1), (7, 3, 2, 0)])
def test_make_grid_layout(n, c, nrow, padding) -> None:
    batch = np.random.default_rng(n).random((n, c, 4, 5)).astype(np.float32)
    got = make_grid(ember.tensor(batch), nrow=nrow, padding=padding, pad_value=0.25).numpy()
    np.testing.assert_array_equal(got, _reference_grid(batch, nrow, padding, 0.25))


def test_make_grid_normalize_and_single_image() -> None:
    batch = np.linspace(-2, 6, 2 * 3 * 2 * 2, dtype=np.float32).reshape(2, 3, 2, 2)
    got = make_grid(ember.tensor(batch), normalize=True, padding=0).numpy()
    np.testing.assert_allclose(got, _reference_grid((batch + 2) / 8, 8, 0, 0.0), rtol=1e-6)
    clipped = make_grid(ember.tensor(batch), normalize=True, value_range=(0, 4), padding=0).numpy()
    np.testing.assert_allclose(clipped, _reference_grid(np.clip(batch, 0, 4) / 4, 8, 0, 0.0), rtol=1e-6)
    single = make_grid(ember.tensor(batch[:1]))
    assert single.shape == (3, 2, 2)
    listed = make_grid([ember.tensor(b) for b in batch], padding=0)
    assert listed.shape == (3, 2, 4)


def _decode_png(data: bytes) -> np.ndarray:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    idat = b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF
        chunks[kind] = body
        if kind == b"IDAT":
            idat += body
        pos += 12 + length
    w, h, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", chunks[b"IHDR"])
    assert depth == 8 and interlace == 0 and b"IEND" in chunks
    channels = {0: 1, 2: 3, 6: 4}[color]
    rows = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(h, 1 + w * channels)
    assert (rows[:, 0] == 0).all()
    return rows[:, 1:].reshape(h, w, channels)


def test_save_image_writes_a_valid_png(tmp_path) -> None:
    batch = np.random.default_rng(2).random((3, 3, 6, 7)).astype(np.float32)
    path = tmp_path / "grid.png"
    save_image(ember.tensor(batch), str(path), nrow=2, padding=1)
    pixels = _decode_png(path.read_bytes())
    grid = _reference_grid(batch, 2, 1, 0.0)
    expected = np.clip(grid * 255 + 0.5, 0, 255).astype(np.uint8).transpose(1, 2, 0)
    np.testing.assert_array_equal(pixels, expected)


def test_encode_png_gray_and_errors() -> None:
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    np.testing.assert_array_equal(_decode_png(encode_png(gray))[:, :, 0], gray)
    with pytest.raises(ValueError, match="uint8"):
        encode_png(gray.astype(np.float32))
    with pytest.raises(ValueError, match="PNG only"):
        save_image(ember.zeros(3, 2, 2), "x.jpg", format="jpeg")
