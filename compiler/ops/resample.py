"""Resampling: ``upsample`` (nearest, nearest-exact, linear, cubic over the last len(size) dims) and its
adjoint ``upsample_backward``; ``pixel_shuffle`` / ``pixel_unshuffle`` as reshape + permute composites.

Every mode is separable: along each resized dim, output position j reads a few source positions
(``_taps``: index and weight arrays), so the reference is a handful of ``take`` calls per dim and the
adjoint a handful of segment sums (``add.reduceat``; the source indices never decrease). Source
coordinates follow PyTorch: align_corners maps corner to corner, otherwise pixel centres, with an
explicit scale factor (``scales``) taking the place of in/out when the caller gave one.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from ember.compiler.ops.registry import (
    ANY,
    BOOL,
    INT,
    INTS,
    Pattern,
    TensorType,
    define_composite,
    define_op,
    one_of,
)
from ember.compiler.ops.rules import require_float, shape_of
from ember.runtime.errors import ArgumentError, ShapeError

MODES = ("nearest", "nearest-exact", "linear", "cubic")
_CUBIC_A = -0.75


def _scale(n_in: int, n_out: int, align_corners: bool, scale: float | None) -> float:
    if align_corners:
        return (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
    return 1.0 / scale if scale is not None and scale > 0 else n_in / n_out


def _cubic_weights(t: Any) -> list[Any]:
    """Keys' cubic convolution weights (A = -0.75, as PyTorch) for offsets -1, 0, 1, 2."""
    a = _CUBIC_A

    def near(x: Any) -> Any:
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x: Any) -> Any:
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    return [far(t + 1), near(t), near(1 - t), far(2 - t)]


def _taps(n_in: int, n_out: int, mode: str, align_corners: bool, scale: float | None,
          dtype: Any) -> list[tuple[Any, Any]]:
    """(source index, weight or None) pairs along one dim; source positions are computed in the input's
    precision (float32 for half and float), as PyTorch does, so their rounding matches."""
    ft = np.float64 if np.dtype(dtype) == np.float64 else np.float32
    dst = np.arange(n_out, dtype=ft)
    s = ft(_scale(n_in, n_out, align_corners and mode in ("linear", "cubic"), scale))
    if mode in ("nearest", "nearest-exact"):
        src = (dst + ft(0.5)) * s if mode == "nearest-exact" else dst * s
        return [(np.minimum(np.floor(src).astype(np.int64), n_in - 1), None)]
    src = dst * s if align_corners else (dst + ft(0.5)) * s - ft(0.5)
    if mode == "linear":
        if not align_corners:
            src = np.maximum(src, ft(0))
        i0 = np.floor(src).astype(np.int64)
        i1 = np.minimum(i0 + 1, n_in - 1)
        lam = (src - i0).astype(np.float64)
        return [(i0, 1.0 - lam), (i1, lam)]
    i = np.floor(src).astype(np.int64)
    t = (src - i).astype(np.float64)
    ws = _cubic_weights(t)
    return [(np.clip(i + off, 0, n_in - 1), w) for off, w in zip((-1, 0, 1, 2), ws)]


def _apply_dim(xp: Any, x: Any, axis: int, taps: list[tuple[Any, Any]]) -> Any:
    out = None
    for idx, w in taps:
        part = xp.take(x, xp.asarray(idx), axis=axis)
        if w is not None:
            shape = [1] * x.ndim
            shape[axis] = len(idx)
            part = part * xp.asarray(w, dtype=x.dtype).reshape(shape)
        out = part if out is None else out + part
    return out


_DENSE_LIMIT = 1 << 18  # per-dim resampling matrices up to this many entries go through BLAS


def _scatter_dim(xp: Any, g: Any, axis: int, n_in: int, taps: list[tuple[Any, Any]]) -> Any:
    """Adjoint of ``_apply_dim``: sums gradient entries that read the same source position. Moderate
    sizes multiply by the dense (n_out, n_in) resampling matrix (one GEMM beats segment sums by far);
    large ones sum segments with ``add.reduceat``."""
    n_out = g.shape[axis]
    if n_out * n_in <= _DENSE_LIMIT:
        mat = np.zeros((n_out, n_in), dtype=g.dtype)
        rows = np.arange(n_out)
        for idx, w in taps:
            np.add.at(mat, (rows, idx), 1.0 if w is None else w)
        moved = xp.tensordot(g, xp.asarray(mat), axes=([axis], [0]))  # one 2-d GEMM (matmul would not)
        return xp.ascontiguousarray(xp.moveaxis(moved, -1, axis))
    shape = list(g.shape)
    shape[axis] = n_in
    out = xp.zeros(shape, dtype=g.dtype)
    for idx, w in taps:
        part = g
        if w is not None:
            wshape = [1] * g.ndim
            wshape[axis] = len(idx)
            part = g * xp.asarray(w, dtype=g.dtype).reshape(wshape)
        starts = np.flatnonzero(np.r_[True, idx[1:] != idx[:-1]])
        sums = xp.add.reduceat(part, xp.asarray(starts), axis=axis)
        where = [slice(None)] * g.ndim
        where[axis] = xp.asarray(idx[starts])
        out[tuple(where)] += sums
    return out


def _check_scales(v: Any) -> Any:
    return None if v is None else tuple(None if s is None else float(s) for s in v)


_ATTRS = {
    "size": INTS,
    "mode": one_of(*MODES),
    "align_corners": (BOOL, False),
    "scales": (ANY, None),
}


def _normalize(attrs: dict[str, Any], x: Any) -> dict[str, Any]:
    attrs["scales"] = _check_scales(attrs["scales"])
    if attrs["scales"] is not None and len(attrs["scales"]) != len(attrs["size"]):
        raise ArgumentError(f"upsample: {len(attrs['scales'])} scales given for {len(attrs['size'])} dims")
    return attrs


def _infer(x: Any, size: Any, mode: str, align_corners: bool, scales: Any) -> TensorType:
    require_float("upsample", x)
    sx, nd = shape_of(x), len(size)
    if len(sx) < nd + 1 or any(s <= 0 for s in size) or any(s == 0 for s in sx[-nd:]):
        raise ShapeError(f"upsample: Input and output sizes should be greater than 0, but got input (sizes:"
                         f" {list(sx[-nd:])}) output (sizes: {list(size)})")
    return TensorType(sx[:-nd] + tuple(size), x.dtype)


def _dims(x_ndim: int, size: Any) -> range:
    return range(x_ndim - len(size), x_ndim)


def _reference(xp: Any, x: Any, size: Any, mode: str, align_corners: bool, scales: Any) -> Any:
    for j, axis in enumerate(_dims(x.ndim, size)):
        scale = scales[j] if scales else None
        x = _apply_dim(xp, x, axis, _taps(x.shape[axis], size[j], mode, align_corners, scale, x.dtype))
    return x


def _backward_infer(g: Any, input_size: Any, size: Any, mode: str, align_corners: bool,
                    scales: Any) -> TensorType:
    return TensorType(shape_of(g)[: -len(size)] + tuple(input_size), g.dtype)


def _backward_ref(xp: Any, g: Any, input_size: Any, size: Any, mode: str, align_corners: bool,
                  scales: Any) -> Any:
    dims = list(_dims(g.ndim, size))
    for j in reversed(range(len(dims))):  # the adjoint of a product runs backwards
        scale = scales[j] if scales else None
        taps = _taps(input_size[j], size[j], mode, align_corners, scale, g.dtype)
        g = _scatter_dim(xp, g, dims[j], input_size[j], taps)
    return g


upsample = define_op(
    "upsample", pattern=Pattern.INJECTIVE, attrs=dict(_ATTRS), normalize=_normalize,
    infer=_infer, reference=_reference,
    vjp=lambda b, g, out, x, **a: [b.upsample_backward(g, input_size=tuple(x.shape[-len(a["size"]):]), **a)],
    saves=(), lowering={"template": "upsample"}, method=False, function=False,
    doc="Resize the last len(size) dims (nearest, nearest-exact, linear, cubic; separable per dim).",
)

upsample_backward = define_op(
    "upsample_backward", pattern=Pattern.OPAQUE, attrs={"input_size": INTS, **_ATTRS},
    infer=_backward_infer, reference=_backward_ref,
    vjp=lambda b, g, out, x, input_size, **a: [b.upsample(g, **a)], saves=(),
    lowering={"template": "upsample_backward"}, method=False, function=False,
    doc="The adjoint of upsample: each source position collects the weighted gradients that read it.",
)

# ---- pixel shuffle -------------------------------------------------------------------------------------


def _pixel_shuffle(b: Any, x: Any, upscale_factor: int) -> Any:
    r = upscale_factor
    s = tuple(x.shape)
    if len(s) < 3:
        raise ShapeError(f"pixel_shuffle expects input to have at least 3 dimensions, but got input with"
                         f" {len(s)} dimension(s)")
    if r <= 0:
        raise ArgumentError(f"pixel_shuffle expects a positive upscale_factor, but got {r}")
    c, h, w = s[-3:]
    if c % (r * r):
        raise ShapeError(f"pixel_shuffle expects its input's 'channel' dimension to be divisible by the"
                         f" square of upscale_factor, but input.size(-3)={c} is not divisible by {r * r}")
    lead = s[:-3]
    n = len(lead)
    y = b.reshape(x, shape=lead + (c // (r * r), r, r, h, w))
    perm = tuple(range(n)) + (n, n + 3, n + 1, n + 4, n + 2)
    y = b.permute(y, dims=perm)
    return b.reshape(y, shape=lead + (c // (r * r), h * r, w * r))


def _pixel_unshuffle(b: Any, x: Any, downscale_factor: int) -> Any:
    r = downscale_factor
    s = tuple(x.shape)
    if len(s) < 3:
        raise ShapeError(f"pixel_unshuffle expects input to have at least 3 dimensions, but got input with"
                         f" {len(s)} dimension(s)")
    if r <= 0:
        raise ArgumentError(f"pixel_unshuffle expects a positive downscale_factor, but got {r}")
    c, h, w = s[-3:]
    if h % r or w % r:
        raise ShapeError(f"pixel_unshuffle expects height and width to be divisible by downscale_factor, but"
                         f" input.size(-2)={h} and input.size(-1)={w} are not divisible by {r}")
    lead = s[:-3]
    n = len(lead)
    y = b.reshape(x, shape=lead + (c, h // r, r, w // r, r))
    perm = tuple(range(n)) + (n, n + 2, n + 4, n + 1, n + 3)
    y = b.permute(y, dims=perm)
    return b.reshape(y, shape=lead + (c * r * r, h // r, w // r))


pixel_shuffle = define_composite(
    "pixel_shuffle", decompose=_pixel_shuffle, attrs={"upscale_factor": INT}, method=False,
    doc="(*, C*r*r, H, W) -> (*, C, H*r, W*r): sub-pixel convolution's rearrangement.",
)
pixel_unshuffle = define_composite(
    "pixel_unshuffle", decompose=_pixel_unshuffle, attrs={"downscale_factor": INT}, method=False,
    doc="The inverse of pixel_shuffle: (*, C, H*r, W*r) -> (*, C*r*r, H, W).",
)

__all__ = ["upsample", "upsample_backward", "pixel_shuffle", "pixel_unshuffle", "MODES"]
