"""Antialiased resizing (``interpolate(..., antialias=True)``, bilinear and bicubic over (N, C, H, W)).

PyTorch's antialias path (PIL's method) gives output position ``i`` along a dim the normalized weights
``w_ij = f((j + 0.5 - center_i) * invscale)`` over the input positions ``j``, with
``center_i = scale * (i + 0.5)``, ``scale`` = in/out (or 1/scale_factor; (in-1)/(out-1) with
align_corners) and, when downsampling (scale >= 1), the filter ``f`` stretched by the scale
(``invscale = 1/scale``), so every input pixel contributes (a triangle for bilinear, Keys' cubic with
a = -0.5 for bicubic). ``f`` has compact support, so weights outside PyTorch's window are zero already.

The op is a composite: the (out, in) weight matrix of each dim is built from a position ramp
(``cumsum`` of ones) with elementwise ops and normalized by its row sums, and the resize is two
``matmul`` calls (H, then W). So it traces, compiles and differentiates with no kernel of its own; the
weights depend only on the shapes, so compiled code folds or computes them once per call.
"""

from __future__ import annotations

from typing import Any

from ember.compiler.ops.registry import ANY, BOOL, INTS, define_composite, one_of
from ember.compiler.ops.rules import require_float
from ember.runtime.errors import ShapeError

_SUPPORT = {"linear": 1.0, "cubic": 2.0}  # half the filter width, in input pixels at scale 1
_A = -0.5                                 # Keys' parameter for the antialias filter (PIL's, not -0.75)


def _ramp(b: Any, n: int, dtype: Any, shape: tuple[int, ...]) -> Any:
    """0.5, 1.5, ..., n - 0.5 laid out along the axis of ``shape`` whose size is n."""
    ones = b.full(shape=(n,), value=1.0, dtype=dtype)
    return b.reshape(b.sub(b.cumsum(ones, dim=0), 0.5), shape=shape)


def _filter(b: Any, x: Any, mode: str) -> Any:
    ax = b.abs(x)
    if mode == "linear":
        return b.relu(b.sub(1.0, ax))
    a = _A
    near = b.add(b.mul(b.mul(b.sub(b.mul(ax, a + 2), a + 3), ax), ax), 1.0)
    far = b.sub(b.mul(b.add(b.mul(b.sub(b.mul(ax, a), 5 * a), ax), 8 * a), ax), 4 * a)
    return b.where(b.lt(ax, 1.0), near, b.where(b.lt(ax, 2.0), far, 0.0))


def _weights(b: Any, n_in: int, n_out: int, mode: str, align_corners: bool, scale: Any, dtype: Any) -> Any:
    """The (n_out, n_in) matrix of normalized antialias weights along one dim."""
    if align_corners:
        s = (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
    else:
        s = 1.0 / scale if scale is not None and scale > 0 else n_in / n_out
    invscale = 1.0 / s if s >= 1.0 else 1.0
    centers = b.mul(_ramp(b, n_out, dtype, (n_out, 1)), s)          # scale * (i + 0.5)
    offsets = b.sub(_ramp(b, n_in, dtype, (1, n_in)), centers)      # j + 0.5 - center_i
    w = _filter(b, b.mul(offsets, invscale), mode)
    total = b.sum(w, dim=(1,), keepdim=True)
    return b.div(w, b.where(b.eq(total, 0.0), 1.0, total))


def _upsample_aa(b: Any, x: Any, size: tuple[int, ...], mode: str, align_corners: bool, scales: Any) -> Any:
    if len(x.shape) != 4 or len(size) != 2:
        raise ShapeError("Anti-alias option is restricted to bilinear and bicubic modes and requires a 4-D"
                         f" tensor as input, got {list(x.shape)}")
    require_float("upsample_aa", x)
    (h, w), (oh, ow) = x.shape[2:], size
    sh, sw = scales if scales is not None else (None, None)
    wh = _weights(b, h, oh, mode, align_corners, sh, x.dtype)      # (oh, h)
    ww = _weights(b, w, ow, mode, align_corners, sw, x.dtype)      # (ow, w)
    rows = b.matmul(wh, x)                                          # (N, C, oh, w)
    return b.matmul(rows, b.permute(ww, dims=(1, 0)))               # (N, C, oh, ow)


upsample_aa = define_composite(
    "upsample_aa",
    attrs={"size": INTS, "mode": one_of("linear", "cubic"), "align_corners": (BOOL, False),
           "scales": (ANY, None)},
    decompose=_upsample_aa,
    method=False,
    function=False,
    doc="Antialiased bilinear/bicubic resize of (N, C, H, W) to ``size`` (see the module docstring).",
)
