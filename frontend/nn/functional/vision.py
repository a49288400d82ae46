"""Functional resampling: ``interpolate`` in every PyTorch mode and pixel (un)shuffle, mapped onto the
registry's ``upsample`` op (compiler/ops/resample.py); 'area' mode is adaptive average pooling, as in
PyTorch.

>>> import ember
>>> import ember.nn.functional as F
>>> F.interpolate(ember.tensor([[[1.0, 2.0]]]), scale_factor=2).tolist()
[[[1.0, 1.0, 2.0, 2.0]]]
"""

from __future__ import annotations

import math
from typing import Any

from ember.compiler.ops import REGISTRY
from ember.dispatch import apply
from ember.runtime.errors import ArgumentError, ShapeError
from ember.tensor import Tensor

_op = REGISTRY.__getitem__

__all__ = [
    "interpolate",
    "upsample",
    "upsample_nearest",
    "upsample_bilinear",
    "pixel_shuffle",
    "pixel_unshuffle",
    "pad",
]

# mode -> (registry mode, spatial rank it needs; 0 = any)
_MODES = {
    "nearest": ("nearest", 0),
    "nearest-exact": ("nearest-exact", 0),
    "linear": ("linear", 1),
    "bilinear": ("linear", 2),
    "trilinear": ("linear", 3),
    "bicubic": ("cubic", 2),
    "area": ("area", 0),
}


def _sizes(input: Tensor, nd: int, size: Any, scale_factor: Any) -> tuple[tuple[int, ...], Any]:
    """Output sizes and the scale factors handed to the kernel (None where size was given)."""
    if (size is None) == (scale_factor is None):
        raise ArgumentError(
            "only one of size or scale_factor should be defined"
            if size is not None
            else "either size or scale_factor should be defined"
        )
    if size is not None:
        out = tuple(int(s) for s in size) if isinstance(size, (list, tuple)) else (int(size),) * nd
        if len(out) != nd:
            raise ArgumentError(
                f"Input and output must have the same number of spatial dimensions, but got input"
                f" with spatial dimensions of {list(input.shape[2:])} and output size of"
                f" {list(out)}. Please provide input tensor in (N, C, d1, d2, ...,dK) format and"
                f" output size in (o1, o2, ...,oK) format."
            )
        return out, None
    scales = (
        tuple(float(s) for s in scale_factor)
        if isinstance(scale_factor, (list, tuple))
        else (float(scale_factor),) * nd
    )
    if len(scales) != nd:
        raise ArgumentError(
            f"Input and scale_factor must have the same number of spatial dimensions, but got"
            f" input with spatial dimensions of {list(input.shape[2:])} and scale_factor of"
            f" shape {list(scales)}."
        )
    out = tuple(math.floor(input.shape[2 + i] * scales[i]) for i in range(nd))
    return out, scales


def interpolate(
    input: Tensor,
    size: Any = None,
    scale_factor: Any = None,
    mode: str = "nearest",
    align_corners: bool | None = None,
    recompute_scale_factor: bool | None = None,
    antialias: bool = False,
) -> Tensor:
    """Resize the spatial dims of (N, C, *spatial): nearest, nearest-exact, (bi/tri)linear, bicubic, area."""
    if mode not in _MODES:
        raise ArgumentError(f"interpolate: unknown mode '{mode}' (expected one of {', '.join(_MODES)})")
    if antialias and mode not in ("bilinear", "bicubic"):
        raise ArgumentError("Anti-alias option is restricted to bilinear and bicubic modes and requires a"
                            " 4-D tensor as input")
    kind, need = _MODES[mode]
    nd = input.dim() - 2
    if nd < 1:
        raise ShapeError(f"interpolate: expected an input of shape (N, C, *spatial), got {list(input.shape)}")
    if need and need != nd:
        raise ShapeError(f"Got {input.dim()}D input, but {mode} mode needs {need + 2}D input")
    if align_corners is not None and kind not in ("linear", "cubic"):
        raise ArgumentError(
            "align_corners option can only be set with the interpolating modes: linear |"
            " bilinear | bicubic | trilinear"
        )
    out, scales = _sizes(input, nd, size, scale_factor)
    if recompute_scale_factor:
        scales = None
    if kind == "area":
        from ember.nn.functional.pooling import adaptive_avg_poolnd

        return adaptive_avg_poolnd(input, out, nd)
    attrs = {"size": out, "mode": kind, "align_corners": bool(align_corners), "scales": scales}
    return apply(_op("upsample_aa" if antialias else "upsample"), (input,), attrs)


def upsample(
    input: Tensor,
    size: Any = None,
    scale_factor: Any = None,
    mode: str = "nearest",
    align_corners: bool | None = None,
) -> Tensor:
    """Deprecated spelling of interpolate."""
    return interpolate(input, size, scale_factor, mode, align_corners)


def upsample_nearest(input: Tensor, size: Any = None, scale_factor: Any = None) -> Tensor:
    return interpolate(input, size, scale_factor, mode="nearest")


def upsample_bilinear(input: Tensor, size: Any = None, scale_factor: Any = None) -> Tensor:
    return interpolate(input, size, scale_factor, mode="bilinear", align_corners=True)


def pixel_shuffle(input: Tensor, upscale_factor: int) -> Tensor:
    """(*, C*r*r, H, W) -> (*, C, H*r, W*r)."""
    return apply(_op("pixel_shuffle"), (input,), {"upscale_factor": upscale_factor})


def pixel_unshuffle(input: Tensor, downscale_factor: int) -> Tensor:
    """(*, C, H*r, W*r) -> (*, C*r*r, H, W)."""
    return apply(_op("pixel_unshuffle"), (input,), {"downscale_factor": downscale_factor})


def pad(input: Tensor, pad: Any, mode: str = "constant", value: float | None = None) -> Tensor:
    """Pad the last len(pad)//2 dims; ``pad`` lists (left, right) pairs starting from the last dim, as
    PyTorch's. 'constant' joins blocks of ``value`` (negative amounts crop); 'reflect', 'replicate' and
    'circular' gather with a constant index per dim.

    >>> import ember
    >>> import ember.nn.functional as F
    >>> F.pad(ember.ones(1, 2), (1, 0), value=5.0).tolist()
    [[5.0, 1.0, 1.0]]
    """
    from ember.nn.functional.conv import pad_by_mode

    amounts = [int(p) for p in pad]
    if len(amounts) % 2:
        raise ArgumentError("Padding length must be divisible by 2")
    nd = len(amounts) // 2
    if nd > input.dim():
        raise ArgumentError(
            f"Padding length should be less than or equal to two times the input dimension"
            f" but got padding length {len(amounts)} and input of dimension {input.dim()}"
        )
    pairs: list[int] = []
    for i in reversed(range(nd)):  # first padded dim first
        pairs += [amounts[2 * i], amounts[2 * i + 1]]
    if mode != "constant":
        if value not in (None, 0, 0.0):
            raise ArgumentError(f'Padding mode "{mode}" doesn\'t take in value argument')
        if any(a < 0 for a in pairs):
            raise ArgumentError(f"pad: negative padding is only supported in constant mode, got {list(pad)}")
        return pad_by_mode(input, tuple(pairs), mode)
    return _constant_pad(input, pairs, 0.0 if value is None else float(value))


def _constant_pad(x: Tensor, pairs: list[int], value: float) -> Tensor:
    from ember import cat, full

    nd = len(pairs) // 2
    for i in range(nd):
        dim = x.dim() - nd + i
        lo, hi = pairs[2 * i], pairs[2 * i + 1]
        size = x.shape[dim]
        if lo < 0 or hi < 0:
            start, stop = max(-lo, 0), size - max(-hi, 0)
            if stop <= start:
                raise ShapeError(
                    f"pad: the padding {pairs[2 * i : 2 * i + 2]} crops dim {dim} of size {size} to"
                    f" nothing (input of size {list(x.shape)})"
                )
            x = x.narrow(dim, start, stop - start)
            lo, hi = max(lo, 0), max(hi, 0)
        parts = []
        for amount in (lo, hi):
            shape = list(x.shape)
            shape[dim] = amount
            parts.append(full(tuple(shape), value, dtype=x.dtype, device=x.device) if amount else None)
        if parts[0] is not None or parts[1] is not None:
            x = cat([p for p in (parts[0], x, parts[1]) if p is not None], dim)
    return x
