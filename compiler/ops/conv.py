"""Convolution: one N-d primitive ``conv`` (1d, 2d and 3d are the rank of the weight) and its two adjoints.

The three ops form a closed family, so every gradient, at every order, is again one of them:

* ``conv(x, w)``: x (N, Cx, *in), w (Co, Cx/G, *k) -> (N, Co, *out)
* ``conv_transpose(y, w)``: the adjoint of ``conv`` in x; y (N, Co, *out) -> (N, Cx, *in). PyTorch's
  transposed-convolution weight (in_channels, out_channels/groups, *k) is exactly this layout.
* ``conv_weight_grad(x, y)``: the adjoint of ``conv`` in w; -> (Co, Cx/G, *k).

``padding`` is held as (lo, hi) per spatial dim, flattened, so 'same' padding with an even kernel (which
pads one more element at the end) is a plain attribute. Reference implementations use im2col through a
strided window view plus one batched matmul (BLAS); the input gradient scatters back tap by tap (k**d
strided adds), so no Python loop ever runs over pixels.
"""

from __future__ import annotations

import math
from typing import Any

from ember.compiler.ops.registry import INT, INTS, Pattern, TensorType, define_op
from ember.compiler.ops.rules import require_float, shape_of
from ember.runtime.errors import ArgumentError, DTypeError, ShapeError

_CONV_ATTRS = {"stride": (INTS, (1,)), "padding": (INTS, (0,)), "dilation": (INTS, (1,)), "groups": (INT, 1)}


def _spread(op: str, name: str, v: tuple[int, ...], n: int) -> tuple[int, ...]:
    if len(v) == 1:
        return v * n
    if len(v) != n:
        raise ArgumentError(
            f"{op}: expected {name} to be a single integer value or a list of {n} values"
            f" to match the convolution dimensions, but got {name}={list(v)}"
        )
    return v


def normalize_geometry(op: str, attrs: dict[str, Any], nd: int) -> dict[str, Any]:
    """Expand stride/dilation/padding to one value per spatial dim (padding to lo/hi pairs) and check
    them with PyTorch's messages."""
    for name in ("stride", "dilation"):
        attrs[name] = _spread(op, name, attrs[name], nd)
    pad = attrs["padding"]
    if len(pad) == 1:
        pad = pad * (2 * nd)
    elif len(pad) == nd:
        pad = tuple(p for p in pad for _ in range(2))
    if len(pad) != 2 * nd:
        raise ArgumentError(f"{op}: padding {list(attrs['padding'])} does not fit {nd} spatial dims")
    attrs["padding"] = pad
    if any(s <= 0 for s in attrs["stride"]):
        raise ArgumentError(f"{op}: non-positive stride is not supported (stride={list(attrs['stride'])})")
    if any(d <= 0 for d in attrs["dilation"]):
        raise ArgumentError(
            f"{op}: dilation should be greater than zero (dilation={list(attrs['dilation'])})"
        )
    if any(p < 0 for p in pad):
        raise ArgumentError(f"{op}: negative padding is not supported (padding={list(pad)})")
    if attrs["groups"] <= 0:
        raise ArgumentError(f"{op}: non-positive groups is not supported (groups={attrs['groups']})")
    if "output_padding" in attrs:
        attrs["output_padding"] = _spread(op, "output_padding", attrs["output_padding"], nd)
    if "kernel_size" in attrs:
        attrs["kernel_size"] = _spread(op, "kernel_size", attrs["kernel_size"], nd)
    return attrs


def out_size(size: int, lo: int, hi: int, k: int, stride: int, dilation: int) -> int:
    """Output length of a convolution (floor mode) along one dim."""
    return (size + lo + hi - dilation * (k - 1) - 1) // stride + 1


def live_tap_range(size: int, out: int, k: int, s: int, d: int, lo: int) -> tuple[int, int] | None:
    """``(first, last)`` live tap of one spatial dim: taps outside it read only padding for every
    output position; ``None`` when no tap reads the input at all."""
    live = [t for t in range(k) if any(0 <= p * s + t * d - lo < size for p in range(out))]
    return (live[0], live[-1]) if live else None


def cut_dead_taps(in_sp: tuple[int, ...], out_sp: tuple[int, ...], ksize: tuple[int, ...],
                  attrs: dict[str, Any]) -> tuple[tuple[int, ...], tuple[int, ...], dict[str, Any]] | None:
    """``(first live tap per dim, live taps per dim, attrs of the equivalent conv over them)``, or
    ``None`` when no tap is dead. Small planes with wide padding
    (a 3x3 kernel on ResNet's 1x1 planes) otherwise run 9x the GEMM depth over zeros; cutting the
    outer taps makes the padding shrink with them (a 1x1 plane becomes a pointwise conv)."""
    firsts: list[int] = []
    taps: list[int] = []
    pads: list[int] = []
    for i, k in enumerate(ksize):
        s, d, lo = attrs["stride"][i], attrs["dilation"][i], attrs["padding"][2 * i]
        rng = live_tap_range(in_sp[i], out_sp[i], k, s, d, lo)
        first, last = rng if rng is not None else (0, k - 1)
        if lo - first * d < 0:  # cutting the leading taps would need a negative padding
            first = 0
        new_lo = lo - first * d
        reach = (out_sp[i] - 1) * s + (last - first) * d - new_lo  # the last input index read
        firsts.append(first)
        taps.append(last - first + 1)
        pads += [new_lo, max(0, reach + 1 - in_sp[i])]
    if tuple(taps) == tuple(ksize):
        return None
    return tuple(firsts), tuple(taps), {**attrs, "padding": tuple(pads)}


def transpose_size(size: int, lo: int, hi: int, k: int, stride: int, dilation: int, extra: int) -> int:
    """Output length of a transposed convolution along one dim (``extra`` is output_padding)."""
    return (size - 1) * stride - lo - hi + dilation * (k - 1) + 1 + extra


def _fmt(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(map(str, shape)) + "]"


def _check_operands(op: str, x: Any, w: Any, x_channels_dim_of_w: int) -> int:
    """Rank, dtype and channel checks shared by the family; returns the number of spatial dims."""
    require_float(op, x, w)
    if x.dtype is not w.dtype:
        raise DTypeError(f"{op}: Input type ({x.dtype}) and weight type ({w.dtype}) should be the same")
    sw, sx = shape_of(w), shape_of(x)
    nd = len(sw) - 2
    if nd < 1 or len(sx) != nd + 2:
        raise ShapeError(
            f"Expected {nd + 2}D (batched) input to {op}{nd}d, but got input of size: {_fmt(sx)}"
            f" (weight of size {_fmt(sw)})"
        )
    return nd


def _conv_infer(x: Any, w: Any, stride: Any, padding: Any, dilation: Any, groups: int) -> TensorType:
    nd = _check_operands("conv", x, w, 1)
    sx, sw = shape_of(x), shape_of(w)
    if sw[0] % groups:
        raise ShapeError(
            f"Given groups={groups}, expected weight to be divisible by {groups} at dimension 0,"
            f" but got weight of size {_fmt(sw)} instead"
        )
    if sx[1] != sw[1] * groups:
        raise ShapeError(
            f"Given groups={groups}, weight of size {_fmt(sw)}, expected input{_fmt(sx)} to have"
            f" {sw[1] * groups} channels, but got {sx[1]} channels instead"
        )
    padded = [sx[2 + i] + padding[2 * i] + padding[2 * i + 1] for i in range(nd)]
    eff = [dilation[i] * (sw[2 + i] - 1) + 1 for i in range(nd)]
    if any(p < e for p, e in zip(padded, eff)):
        raise ShapeError(
            f"Calculated padded input size per channel: ({' x '.join(map(str, padded))}). Kernel size:"
            f" ({' x '.join(map(str, eff))}). Kernel size can't be greater than actual input size"
        )
    out = tuple(
        out_size(sx[2 + i], padding[2 * i], padding[2 * i + 1], sw[2 + i], stride[i], dilation[i])
        for i in range(nd)
    )
    return TensorType((sx[0], sw[0]) + out, x.dtype)


def _transpose_infer(
    y: Any, w: Any, stride: Any, padding: Any, output_padding: Any, dilation: Any, groups: int
) -> TensorType:
    nd = _check_operands("conv_transpose", y, w, 0)
    sy, sw = shape_of(y), shape_of(w)
    if sy[1] != sw[0]:
        raise ShapeError(
            f"Given transposed=1, weight of size {_fmt(sw)}, expected input{_fmt(sy)} to have"
            f" {sw[0]} channels, but got {sy[1]} channels instead"
        )
    if sw[0] % groups:
        raise ShapeError(
            f"Given groups={groups}, expected weight to be divisible by {groups} at dimension 0,"
            f" but got weight of size {_fmt(sw)} instead"
        )
    for i in range(nd):
        if output_padding[i] >= max(stride[i], dilation[i]):
            raise ArgumentError(
                f"conv_transpose: output padding must be smaller than either stride or dilation, but got"
                f" output_padding={list(output_padding)}, stride={list(stride)}, dilation={list(dilation)}"
            )
    out = tuple(
        transpose_size(
            sy[2 + i],
            padding[2 * i],
            padding[2 * i + 1],
            sw[2 + i],
            stride[i],
            dilation[i],
            output_padding[i],
        )
        for i in range(nd)
    )
    if any(o <= 0 for o in out):
        raise ShapeError(
            f"conv_transpose: given input size {_fmt(sy)} and weight {_fmt(sw)}, the calculated"
            f" output size {_fmt(out)} is too small"
        )
    return TensorType((sy[0], sw[1] * groups) + out, y.dtype)


def _weight_grad_infer(
    x: Any, y: Any, kernel_size: Any, stride: Any, padding: Any, dilation: Any, groups: int
) -> TensorType:
    require_float("conv_weight_grad", x, y)
    sx, sy = shape_of(x), shape_of(y)
    if len(sx) != len(sy) or len(sx) < 3 or sx[0] != sy[0] or sx[1] % groups or sy[1] % groups:
        raise ShapeError(
            f"conv_weight_grad: input {_fmt(sx)} and grad_output {_fmt(sy)} do not fit groups={groups}"
        )
    return TensorType((sy[1], sx[1] // groups) + tuple(kernel_size), x.dtype)


# ---- reference implementations ------------------------------------------------------------------------


def _pad(xp: Any, x: Any, padding: tuple[int, ...], extra: tuple[int, ...] | None = None) -> Any:
    nd = x.ndim - 2
    widths = [(0, 0), (0, 0)] + [
        (padding[2 * i], padding[2 * i + 1] + (extra[i] if extra else 0)) for i in range(nd)
    ]
    if not any(padding) and not (extra and any(extra)):
        return x
    return xp.pad(x, widths)


def _windows(
    xp: Any,
    xpad: Any,
    groups: int,
    ksize: tuple[int, ...],
    out: tuple[int, ...],
    stride: tuple[int, ...],
    dilation: tuple[int, ...],
) -> Any:
    """im2col in channel-major layout: (G, Cg*K, N*P) contiguous (K = prod(k), P = prod(out)), so each
    group's convolution is a single large GEMM over the whole batch."""
    n, c = xpad.shape[:2]
    nd = len(ksize)
    st = xpad.strides
    view = xp.lib.stride_tricks.as_strided(
        xpad,
        shape=(c,) + tuple(ksize) + (n,) + tuple(out),
        strides=(st[1],)
        + tuple(st[2 + i] * dilation[i] for i in range(nd))
        + (st[0],)
        + tuple(st[2 + i] * stride[i] for i in range(nd)),
    )
    cols = xp.ascontiguousarray(view)
    return cols.reshape(groups, (c // groups) * math.prod(ksize), n * math.prod(out))


def _channel_major(xp: Any, y: Any, groups: int) -> Any:
    """(N, C, *grid) -> (G, C/G, N*P) contiguous."""
    n, c = y.shape[:2]
    p = math.prod(y.shape[2:])
    return xp.ascontiguousarray(xp.swapaxes(y.reshape(n, c, p), 0, 1)).reshape(groups, c // groups, n * p)


def _batch_major(xp: Any, y: Any, n: int, spatial: tuple[int, ...]) -> Any:
    """(G, C/G, N*P) -> (N, C, *spatial) contiguous."""
    c = y.shape[0] * y.shape[1]
    p = math.prod(spatial)
    return xp.ascontiguousarray(xp.swapaxes(y.reshape(c, n, p), 0, 1)).reshape((n, c) + tuple(spatial))


def _per_group(xp: Any, a: Any, b: Any, transpose_a: bool = False, transpose_b: bool = False) -> Any:
    """Stacked GEMMs, one BLAS call per group (a broadcast batched matmul would leave BLAS)."""
    outs = [
        xp.matmul(a[g].T if transpose_a else a[g], b[g].T if transpose_b else b[g]) for g in range(a.shape[0])
    ]
    return outs[0][None] if len(outs) == 1 else xp.stack(outs)


def _conv_ref(xp: Any, x: Any, w: Any, stride: Any, padding: Any, dilation: Any, groups: int) -> Any:
    nd = w.ndim - 2
    ksize = w.shape[2:]
    out = tuple(
        out_size(x.shape[2 + i], padding[2 * i], padding[2 * i + 1], ksize[i], stride[i], dilation[i])
        for i in range(nd)
    )
    cols = _windows(xp, _pad(xp, x, padding), groups, ksize, out, stride, dilation)
    y = _per_group(xp, w.reshape(groups, w.shape[0] // groups, -1), cols)  # (G, Co/G, N*P)
    return _batch_major(xp, y, x.shape[0], out)


def _transpose_ref(
    xp: Any, y: Any, w: Any, stride: Any, padding: Any, output_padding: Any, dilation: Any, groups: int
) -> Any:
    nd = w.ndim - 2
    n, co = y.shape[:2]
    ksize, grid = w.shape[2:], y.shape[2:]
    cx = w.shape[1] * groups
    w3 = w.reshape(groups, co // groups, -1)
    cols = _per_group(xp, w3, _channel_major(xp, y, groups), transpose_a=True)
    cols = cols.reshape((cx,) + tuple(ksize) + (n,) + tuple(grid))
    full = tuple(
        (grid[i] - 1) * stride[i] + dilation[i] * (ksize[i] - 1) + 1 + output_padding[i] for i in range(nd)
    )
    buf = xp.zeros((cx, n) + full, dtype=y.dtype)  # channel-major, like cols: every add is contiguous
    for tap in _taps(ksize):
        where = tuple(
            slice(t * d, t * d + (g - 1) * s + 1, s) for t, d, g, s in zip(tap, dilation, grid, stride)
        )
        buf[(slice(None), slice(None)) + where] += cols[(slice(None),) + tap]
    size = tuple(
        transpose_size(
            grid[i], padding[2 * i], padding[2 * i + 1], ksize[i], stride[i], dilation[i], output_padding[i]
        )
        for i in range(nd)
    )
    crop = tuple(slice(padding[2 * i], padding[2 * i] + size[i]) for i in range(nd))
    return xp.ascontiguousarray(xp.swapaxes(buf[(slice(None), slice(None)) + crop], 0, 1))


def _taps(ksize: tuple[int, ...]) -> list[tuple[int, ...]]:
    import itertools

    return list(itertools.product(*(range(k) for k in ksize)))


def _weight_grad_ref(
    xp: Any, x: Any, y: Any, kernel_size: Any, stride: Any, padding: Any, dilation: Any, groups: int
) -> Any:
    co = y.shape[1]
    cols = _windows(xp, _pad(xp, x, padding), groups, tuple(kernel_size), y.shape[2:], stride, dilation)
    # gw[g]^T = cols[g] @ y[g]^T: OpenBLAS is an order of magnitude slower on the equivalent y @ cols^T
    # (a short M with a long shared K), so the product is formed transposed
    gwt = _per_group(xp, cols, _channel_major(xp, y, groups), transpose_b=True)  # (G, Cg*K, Co/G)
    gw = xp.ascontiguousarray(xp.swapaxes(gwt, 1, 2))
    return gw.reshape((co, x.shape[1] // groups) + tuple(kernel_size))


# ---- gradient rules (each is again an op of this family) ----------------------------------------------


def _fit(b: Any, t: Any, shape: tuple[int, ...]) -> Any:
    """Crop trailing spatial positions a strided adjoint may produce beyond ``shape`` (only when
    output_padding reaches the stride)."""
    if tuple(t.shape) == tuple(shape):
        return t
    index = tuple(("slice", 0, s, 1) for s in shape)
    return b.getitem(t, index=index)


def _extra(
    x_shape: tuple[int, ...],
    y_shape: tuple[int, ...],
    ksize: tuple[int, ...],
    stride: Any,
    padding: Any,
    dilation: Any,
) -> tuple[int, ...]:
    """The output_padding that makes a transposed conv of y's grid reproduce x's spatial size."""
    return tuple(
        x_shape[2 + i]
        - transpose_size(
            y_shape[2 + i], padding[2 * i], padding[2 * i + 1], ksize[i], stride[i], dilation[i], 0
        )
        for i in range(len(ksize))
    )


def _conv_vjp(
    b: Any, g: Any, out: Any, x: Any, w: Any, stride: Any, padding: Any, dilation: Any, groups: int
) -> list[Any]:
    ksize = tuple(w.shape[2:])
    geo = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}
    extra = _extra(tuple(x.shape), tuple(g.shape), ksize, stride, padding, dilation)
    gx = b.conv_transpose(g, w, output_padding=extra, **geo)
    gw = b.conv_weight_grad(x, g, kernel_size=ksize, **geo)
    return [gx, gw]


def _transpose_vjp(
    b: Any,
    g: Any,
    out: Any,
    y: Any,
    w: Any,
    stride: Any,
    padding: Any,
    output_padding: Any,
    dilation: Any,
    groups: int,
) -> list[Any]:
    geo = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}
    gy = _fit(b, b.conv(g, w, **geo), tuple(y.shape))
    gw = b.conv_weight_grad(g, y, kernel_size=tuple(w.shape[2:]), **geo)
    return [gy, gw]


def _weight_grad_vjp(
    b: Any,
    g: Any,
    out: Any,
    x: Any,
    y: Any,
    kernel_size: Any,
    stride: Any,
    padding: Any,
    dilation: Any,
    groups: int,
) -> list[Any]:
    geo = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}
    extra = _extra(tuple(x.shape), tuple(y.shape), tuple(kernel_size), stride, padding, dilation)
    gx = b.conv_transpose(y, g, output_padding=extra, **geo)
    gy = _fit(b, b.conv(x, g, **geo), tuple(y.shape))
    return [gx, gy]


def _norm(op: str):
    def normalize(attrs: dict[str, Any], a: Any, c: Any) -> dict[str, Any]:
        nd = len(shape_of(c if op != "conv_weight_grad" else a)) - 2
        return normalize_geometry(op, attrs, max(nd, 1))

    return normalize


conv = define_op(
    "conv",
    pattern=Pattern.OUT_FUSABLE,
    inputs=("input", "weight"),
    attrs=dict(_CONV_ATTRS),
    normalize=_norm("conv"),
    infer=_conv_infer,
    reference=_conv_ref,
    vjp=_conv_vjp,
    lowering={"template": "conv"},
    method=False,
    function=False,
    doc="N-d convolution (cross-correlation, as PyTorch's); the rank of the weight picks 1d/2d/3d.",
)

conv_transpose = define_op(
    "conv_transpose",
    pattern=Pattern.OUT_FUSABLE,
    inputs=("input", "weight"),
    attrs={**_CONV_ATTRS, "output_padding": (INTS, (0,))},
    normalize=_norm("conv_transpose"),
    infer=_transpose_infer,
    reference=_transpose_ref,
    vjp=_transpose_vjp,
    lowering={"template": "conv_transpose"},
    method=False,
    function=False,
    doc="Transposed N-d convolution: the adjoint of ``conv`` with respect to its input.",
)

conv_weight_grad = define_op(
    "conv_weight_grad",
    pattern=Pattern.OUT_FUSABLE,
    inputs=("input", "grad_output"),
    attrs={"kernel_size": INTS, **_CONV_ATTRS},
    normalize=_norm("conv_weight_grad"),
    infer=_weight_grad_infer,
    reference=_weight_grad_ref,
    vjp=_weight_grad_vjp,
    lowering={"template": "conv_weight_grad"},
    method=False,
    function=False,
    doc="The adjoint of ``conv`` with respect to its weight (PyTorch's convolution_backward, weight part).",
)

__all__ = ["conv", "conv_transpose", "conv_weight_grad", "cut_dead_taps", "live_tap_range", "normalize_geometry",
           "out_size", "transpose_size"]
