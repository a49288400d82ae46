"""Pooling primitives. The pooled dims are always the last ``len(kernel_size)`` dims; every dim before them
is a batch dim, so batched and unbatched inputs need no special case.

* ``max_pool`` returns (values, indices); indices are flat positions in each input plane, as PyTorch's.
  Its gradient is ``max_unpool`` with ``accumulate=True`` (overlapping windows may pick one element
  twice), whose own gradient is ``unpool_gather`` — a closed pair, so double backward works.
* ``region_max_pool`` takes explicit (start, end) windows per dim: adaptive and fractional max pooling.
* ``avg_pool`` and ``avg_pool_backward`` are each other's adjoint.

References build strided window views (no loop over pixels); backward passes scatter tap by tap.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
from ember.compiler.dtypes import int64
from ember.compiler.ops.registry import ANY, BOOL, INT, INTS, Pattern, TensorType, define_op, optional
from ember.compiler.ops.rules import require_float, shape_of
from ember.runtime.errors import ArgumentError, DTypeError, ShapeError

R = Pattern.REDUCTION


def _fmt(shape: Any) -> str:
    return "x".join(map(str, shape))


def pool_out_size(size: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    """PyTorch's pooling output length: the last window must start inside the input or left padding."""
    num = size + 2 * p - d * (k - 1) - 1
    out = (num + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


def _spread(op: str, name: str, v: tuple[int, ...], n: int) -> tuple[int, ...]:
    if len(v) == 1:
        return v * n
    if len(v) != n:
        raise ArgumentError(f"{op}: {name} must be a single int or a tuple of {n} ints, got {list(v)}")
    return v


def _normalize(op: str):
    def normalize(attrs: dict[str, Any], *inputs: Any) -> dict[str, Any]:
        nd = len(attrs["kernel_size"])
        if not attrs.get("stride"):
            attrs["stride"] = attrs["kernel_size"]
        for name in ("stride", "padding", "dilation"):
            if name in attrs:
                attrs[name] = _spread(op, name, attrs[name], nd)
        if any(k <= 0 for k in attrs["kernel_size"]):
            raise ArgumentError(
                f"{op}: kernel_size must be greater than zero, but got {list(attrs['kernel_size'])}"
            )
        if any(s <= 0 for s in attrs["stride"]):
            raise ArgumentError(f"{op}: stride must be greater than zero, but got {list(attrs['stride'])}")
        if any(d <= 0 for d in attrs.get("dilation", (1,))):
            raise ArgumentError(
                f"{op}: dilation must be greater than zero, but got {list(attrs['dilation'])}"
            )
        dil = attrs.get("dilation", (1,) * nd)
        for p, k, d in zip(attrs["padding"], attrs["kernel_size"], dil):
            if p < 0 or p > (d * (k - 1) + 1) // 2:
                raise ArgumentError(
                    f"{op}: pad should be at most half of effective kernel size, but got pad={p},"
                    f" kernel_size={k} and dilation={d}"
                )
        return attrs

    return normalize


def _pool_geometry(
    op: str, x: Any, kernel_size: Any, stride: Any, padding: Any, dilation: Any, ceil_mode: bool
) -> tuple[int, ...]:
    require_float(op, x)
    sx = shape_of(x)
    nd = len(kernel_size)
    if len(sx) not in (nd + 1, nd + 2) or any(s == 0 for s in sx[-nd - 1 :]):
        raise ShapeError(
            f"{op}: Expected {nd + 1}D or {nd + 2}D input with non-zero spatial sizes, but got"
            f" input of size: {list(sx)}"
        )
    spatial = sx[-nd:]
    out = tuple(
        pool_out_size(spatial[i], kernel_size[i], stride[i], padding[i], dilation[i], ceil_mode)
        for i in range(nd)
    )
    if any(o <= 0 for o in out):
        raise ShapeError(
            f"{op}: Given input size: ({_fmt(sx[-nd - 1 :])}). Calculated output size:"
            f" ({_fmt(sx[-nd - 1 : -nd] + out)}). Output size is too small"
        )
    return out


def _window_view(
    xp: Any,
    x: Any,
    fill: float,
    kernel_size: Any,
    stride: Any,
    padding: Any,
    dilation: Any,
    out: tuple[int, ...],
) -> Any:
    """A strided view (lead..., *out, *k) over x padded with ``fill`` (extra right padding covers
    ceil_mode windows)."""
    nd = len(kernel_size)
    lead = x.ndim - nd
    widths = [(0, 0)] * lead
    for i in range(nd):
        need = (out[i] - 1) * stride[i] + dilation[i] * (kernel_size[i] - 1) + 1
        hi = max(need - x.shape[lead + i] - padding[i], 0)
        widths.append((padding[i], hi))
    xpad = xp.pad(x, widths, constant_values=fill) if any(w != (0, 0) for w in widths) else x
    st = xpad.strides
    return xp.lib.stride_tricks.as_strided(
        xpad,
        shape=xpad.shape[:lead] + tuple(out) + tuple(kernel_size),
        strides=st[:lead]
        + tuple(st[lead + i] * stride[i] for i in range(nd))
        + tuple(st[lead + i] * dilation[i] for i in range(nd)),
    )


# ---- max pooling ---------------------------------------------------------------------------------------


def _max_pool_infer(
    x: Any, kernel_size: Any, stride: Any, padding: Any, dilation: Any, ceil_mode: bool
) -> tuple[TensorType, TensorType]:
    out = _pool_geometry("max_pool", x, kernel_size, stride, padding, dilation, ceil_mode)
    shape = shape_of(x)[: -len(kernel_size)] + out
    return TensorType(shape, x.dtype), TensorType(shape, int64)


def _flat_index(
    xp: Any,
    arg: Any,
    starts: list[Any],
    steps: tuple[int, ...],
    ksize: tuple[int, ...],
    spatial: tuple[int, ...],
) -> Any:
    """Flat input-plane index of the argmax tap ``arg`` of each window; ``starts[i]`` is the window start
    along dim i (broadcastable over the output grid). Tap offsets come from one small table."""
    offsets = np.zeros(ksize, dtype=np.int64)
    for i in range(len(ksize)):
        shape = [1] * len(ksize)
        shape[i] = ksize[i]
        offsets = offsets * spatial[i] + (np.arange(ksize[i]) * steps[i]).reshape(shape)
    base = 0
    for i in range(len(ksize)):
        base = base * spatial[i] + starts[i]
    return xp.asarray(offsets.reshape(-1))[arg] + base


_TAP_LOOP_LIMIT = 64  # windows up to this many taps are reduced tap by tap over strided views


def _max_over_taps(xp: Any, win: Any, split: int) -> tuple[Any, Any]:
    """Max and argmax over the trailing window dims of a strided view, a few strided passes per tap: no
    copy of the windows and no arg-reduction over a tiny axis. Ties go to the first tap; a NaN wins (the
    last one), as in PyTorch's kernel."""
    ksize = win.shape[split:]
    taps = list(itertools.product(*(range(k) for k in ksize)))
    best = xp.array(win[(Ellipsis,) + taps[0]], copy=True)
    for tap in taps[1:]:
        xp.maximum(best, win[(Ellipsis,) + tap], out=best)  # propagates NaN
    arg = xp.zeros(best.shape, dtype=np.int64)
    for t in range(len(taps) - 1, 0, -1):  # backwards, so the first maximal tap is written last
        arg = xp.where(win[(Ellipsis,) + taps[t]] == best, t, arg)
    nans = xp.isnan(best)
    if nans.any():
        for t, tap in enumerate(taps):
            arg = xp.where(nans & xp.isnan(win[(Ellipsis,) + tap]), t, arg)
    return best, arg


def _max_pool_ref(
    xp: Any, x: Any, kernel_size: Any, stride: Any, padding: Any, dilation: Any, ceil_mode: bool
) -> tuple[Any, Any]:
    nd = len(kernel_size)
    spatial = x.shape[-nd:]
    out = tuple(
        pool_out_size(spatial[i], kernel_size[i], stride[i], padding[i], dilation[i], ceil_mode)
        for i in range(nd)
    )
    win = _window_view(xp, x, -np.inf, kernel_size, stride, padding, dilation, out)
    if math.prod(kernel_size) <= _TAP_LOOP_LIMIT:
        values, arg = _max_over_taps(xp, win, x.ndim)
    else:  # few large windows (global pooling): one copy, then a reduction per window
        win = win.reshape(win.shape[: x.ndim] + (-1,))
        arg = xp.argmax(win, axis=-1)
        values = xp.take_along_axis(win, arg[..., None], axis=-1)[..., 0]
    starts = []
    for i in range(nd):
        shape = [1] * nd
        shape[i] = out[i]
        starts.append((xp.arange(out[i]) * stride[i] - padding[i]).reshape(shape))
    return values, _flat_index(xp, arg, starts, tuple(dilation), tuple(kernel_size), spatial)


def _max_pool_vjp(
    b: Any,
    g: Any,
    out: Any,
    x: Any,
    kernel_size: Any,
    stride: Any,
    padding: Any,
    dilation: Any,
    ceil_mode: bool,
) -> list[Any]:
    if g[0] is None:
        return [None]
    return [b.max_unpool(g[0], out[1], output_size=tuple(x.shape[-len(kernel_size) :]), accumulate=True)]


max_pool = define_op(
    "max_pool",
    pattern=R,
    num_outputs=2,
    attrs={
        "kernel_size": INTS,
        "stride": (optional(INTS), None),
        "padding": (INTS, (0,)),
        "dilation": (INTS, (1,)),
        "ceil_mode": (BOOL, False),
    },
    normalize=_normalize("max_pool"),
    infer=_max_pool_infer,
    reference=_max_pool_ref,
    vjp=_max_pool_vjp,
    saves=("out",),
    lowering={"template": "pool"},
    method=False,
    function=False,
    doc="N-d max pooling over the last len(kernel_size) dims: (values, flat indices).",
)


def _regions_check(v: Any) -> tuple[tuple[tuple[int, int], ...], ...]:
    return tuple(tuple((int(a), int(e)) for a, e in dim) for dim in v)


def _region_infer(x: Any, regions: Any) -> tuple[TensorType, TensorType]:
    require_float("region_max_pool", x)
    sx = shape_of(x)
    nd = len(regions)
    if len(sx) < nd:
        raise ShapeError(f"region_max_pool: input of size {list(sx)} has fewer than {nd} dims")
    for i, dim in enumerate(regions):
        if any(not 0 <= a < e <= sx[len(sx) - nd + i] for a, e in dim):
            raise ShapeError(
                f"region_max_pool: a window of {dim} falls outside dim {i} of size"
                f" {sx[len(sx) - nd + i]} (input of size {list(sx)})"
            )
    shape = sx[:-nd] + tuple(len(d) for d in regions)
    return TensorType(shape, x.dtype), TensorType(shape, int64)


def _region_ref(xp: Any, x: Any, regions: Any) -> tuple[Any, Any]:
    nd = len(regions)
    spatial = x.shape[-nd:]
    lead = x.ndim - nd
    index: list[Any] = [slice(None)] * lead
    starts = []
    kmax = tuple(max(e - a for a, e in dim) for dim in regions)
    for i, dim in enumerate(regions):
        a = xp.asarray([s for s, _ in dim])
        e = xp.asarray([t for _, t in dim])
        idx = xp.minimum(a[:, None] + xp.arange(kmax[i])[None, :], e[:, None] - 1)  # repeat the last element
        shape = [1] * (2 * nd)
        shape[i], shape[nd + i] = len(dim), kmax[i]
        index.append(idx.reshape(shape))
        starts.append(a.reshape([len(dim) if j == i else 1 for j in range(nd)]))
    win = x[tuple(index)]
    win = win.reshape(win.shape[: x.ndim] + (-1,))
    arg = xp.argmax(win, axis=-1)
    values = xp.take_along_axis(win, arg[..., None], axis=-1)[..., 0]
    return values, _flat_index(xp, arg, starts, (1,) * nd, kmax, spatial)


def _region_vjp(b: Any, g: Any, out: Any, x: Any, regions: Any) -> list[Any]:
    if g[0] is None:
        return [None]
    return [b.max_unpool(g[0], out[1], output_size=tuple(x.shape[-len(regions) :]), accumulate=True)]


region_max_pool = define_op(
    "region_max_pool",
    pattern=R,
    num_outputs=2,
    attrs={"regions": ANY},
    normalize=lambda attrs, x: {"regions": _regions_check(attrs["regions"])},
    infer=_region_infer,
    reference=_region_ref,
    vjp=_region_vjp,
    saves=("out",),
    lowering={"template": "pool"},
    method=False,
    function=False,
    doc="Max pooling over explicit windows ((start, end) per output position, per dim): adaptive and"
    " fractional max pooling.",
)

# ---- unpooling and its adjoint -------------------------------------------------------------------------


def _unpool_infer(x: Any, indices: Any, output_size: Any, accumulate: bool) -> TensorType:
    require_float("max_unpool", x)
    if indices.dtype is not int64:
        raise DTypeError(f"max_unpool: expected indices to have dtype int64, but got {indices.dtype}")
    if shape_of(x) != shape_of(indices):
        raise ShapeError(
            f"max_unpool: Expected shape of indices to be same as that of the input tensor"
            f" ({list(shape_of(x))}) but got indices tensor with shape: {list(shape_of(indices))}"
        )
    nd = len(output_size)
    if len(shape_of(x)) < nd:
        raise ShapeError(f"max_unpool: input of size {list(shape_of(x))} has fewer than {nd} dims")
    return TensorType(shape_of(x)[:-nd] + tuple(output_size), x.dtype)


def _plane_offsets(xp: Any, lead: tuple[int, ...], nd_in: int, plane: int) -> Any:
    nplanes = math.prod(lead)
    return (xp.arange(nplanes, dtype=np.int64) * plane).reshape(lead + (1,) * nd_in)


def _unpool_ref(xp: Any, x: Any, indices: Any, output_size: Any, accumulate: bool) -> Any:
    nd = len(output_size)
    lead = x.shape[:-nd]
    plane = math.prod(output_size)
    if indices.size and (int(indices.min()) < 0 or int(indices.max()) >= plane):
        bad = int(indices.max()) if int(indices.max()) >= plane else int(indices.min())
        raise ShapeError(
            f"max_unpool: Found an invalid max index: {bad} (output volumes are of size {_fmt(output_size)})"
        )
    flat = (indices + _plane_offsets(xp, lead, nd, plane)).ravel()
    total = math.prod(lead) * plane
    if accumulate:
        out = xp.bincount(flat, weights=x.ravel().astype(np.float64), minlength=total).astype(x.dtype)
    else:
        out = xp.zeros(total, dtype=x.dtype)
        out[flat] = x.ravel()
    return out.reshape(lead + tuple(output_size))


max_unpool = define_op(
    "max_unpool",
    pattern=Pattern.OPAQUE,
    inputs=("input", "indices"),
    attrs={"output_size": INTS, "accumulate": (BOOL, False)},
    infer=_unpool_infer,
    reference=_unpool_ref,
    vjp=lambda b, g, out, x, indices, output_size, accumulate: [
        b.unpool_gather(g, indices, nd=len(output_size)),
        None,
    ],
    saves=(1,),
    lowering={"template": "scatter"},
    method=False,
    function=False,
    doc="Scatter pooled values back to their flat plane positions (max_pool's gradient when accumulating).",
)


def _gather_infer(x: Any, indices: Any, nd: int) -> TensorType:
    require_float("unpool_gather", x)
    sx, si = shape_of(x), shape_of(indices)
    if len(sx) != len(si) or sx[:-nd] != si[:-nd]:
        raise ShapeError(
            f"unpool_gather: input {list(sx)} and indices {list(si)} differ outside the last {nd} dims"
        )
    return TensorType(si, x.dtype)


def _gather_ref(xp: Any, x: Any, indices: Any, nd: int) -> Any:
    lead = x.shape[:-nd]
    plane = math.prod(x.shape[-nd:])
    return x.reshape(-1)[indices + _plane_offsets(xp, lead, nd, plane)]


unpool_gather = define_op(
    "unpool_gather",
    pattern=Pattern.INJECTIVE,
    inputs=("input", "indices"),
    attrs={"nd": INT},
    infer=_gather_infer,
    reference=_gather_ref,
    vjp=lambda b, g, out, x, indices, nd: [
        b.max_unpool(g, indices, output_size=tuple(x.shape[-nd:]), accumulate=True),
        None,
    ],
    saves=(1,),
    lowering={"index": "gather"},
    method=False,
    function=False,
    doc="out[..., j] = input[..., indices[..., j]] over the flat last ``nd`` dims: max_unpool's adjoint.",
)

# ---- average pooling -----------------------------------------------------------------------------------

_AVG_ATTRS = {
    "kernel_size": INTS,
    "stride": (optional(INTS), None),
    "padding": (INTS, (0,)),
    "ceil_mode": (BOOL, False),
    "count_include_pad": (BOOL, True),
    "divisor_override": (optional(INT), None),
}


def _divisor(
    xp: Any,
    spatial: tuple[int, ...],
    out: tuple[int, ...],
    kernel_size: Any,
    stride: Any,
    padding: Any,
    count_include_pad: bool,
    divisor_override: int | None,
    dtype: Any,
) -> Any:
    """PyTorch's per-window divisor: the window clipped to the padded input (count_include_pad) or to the
    input itself, one factor per dim."""
    if divisor_override is not None:
        return xp.asarray(divisor_override, dtype=dtype)
    div = xp.ones((), dtype=dtype)
    for i, (size, k, s, p) in enumerate(zip(spatial, kernel_size, stride, padding)):
        start = xp.arange(out[i]) * s - p
        end = xp.minimum(start + k, size + p)
        n = end - start if count_include_pad else xp.minimum(end, size) - xp.maximum(start, 0)
        div = div[..., None] * n.astype(dtype)
    return div


def _avg_infer(
    x: Any,
    kernel_size: Any,
    stride: Any,
    padding: Any,
    ceil_mode: bool,
    count_include_pad: bool,
    divisor_override: Any,
) -> TensorType:
    if divisor_override is not None and divisor_override == 0:
        raise ArgumentError("avg_pool: divisor must be not zero")
    nd = len(kernel_size)
    out = _pool_geometry("avg_pool", x, kernel_size, stride, padding, (1,) * nd, ceil_mode)
    return TensorType(shape_of(x)[:-nd] + out, x.dtype)


def _avg_ref(
    xp: Any,
    x: Any,
    kernel_size: Any,
    stride: Any,
    padding: Any,
    ceil_mode: bool,
    count_include_pad: bool,
    divisor_override: Any,
) -> Any:
    nd = len(kernel_size)
    spatial = x.shape[-nd:]
    out = tuple(
        pool_out_size(spatial[i], kernel_size[i], stride[i], padding[i], 1, ceil_mode) for i in range(nd)
    )
    win = _window_view(xp, x, 0.0, kernel_size, stride, padding, (1,) * nd, out)
    if math.prod(kernel_size) <= _TAP_LOOP_LIMIT:
        total = xp.zeros(win.shape[: x.ndim], dtype=x.dtype)
        for tap in itertools.product(*(range(k) for k in kernel_size)):
            total += win[(Ellipsis,) + tap]
    else:
        total = win.sum(axis=tuple(range(x.ndim, x.ndim + nd)))
    div = _divisor(
        xp, spatial, out, kernel_size, stride, padding, count_include_pad, divisor_override, x.dtype
    )
    return (total / div).astype(x.dtype, copy=False)


def _avg_bwd_infer(g: Any, input_size: Any, **attrs: Any) -> TensorType:
    nd = len(input_size)
    return TensorType(shape_of(g)[:-nd] + tuple(input_size), g.dtype)


def _avg_bwd_ref(
    xp: Any,
    g: Any,
    input_size: Any,
    kernel_size: Any,
    stride: Any,
    padding: Any,
    ceil_mode: bool,
    count_include_pad: bool,
    divisor_override: Any,
) -> Any:
    nd = len(kernel_size)
    out = g.shape[-nd:]
    lead = g.shape[:-nd]
    div = _divisor(
        xp, tuple(input_size), out, kernel_size, stride, padding, count_include_pad, divisor_override, g.dtype
    )
    share = g / div
    full = tuple(
        max((out[i] - 1) * stride[i] + kernel_size[i], input_size[i] + 2 * padding[i]) for i in range(nd)
    )
    buf = xp.zeros(lead + full, dtype=g.dtype)
    dots = (slice(None),) * len(lead)
    if math.prod(kernel_size) <= math.prod(out):  # a strided add per tap
        for tap in itertools.product(*(range(k) for k in kernel_size)):
            where = tuple(slice(t, t + (o - 1) * s + 1, s) for t, o, s in zip(tap, out, stride))
            buf[dots + where] += share
    else:  # few large windows (global pooling): a broadcast add per window
        for pos in itertools.product(*(range(o) for o in out)):
            where = tuple(slice(p * s, p * s + k) for p, s, k in zip(pos, stride, kernel_size))
            buf[dots + where] += share[dots + tuple(slice(p, p + 1) for p in pos)]
    crop = tuple(slice(p, p + n) for p, n in zip(padding, input_size))
    return xp.ascontiguousarray(buf[dots + crop])


def _avg_vjp(b: Any, g: Any, out: Any, x: Any, **attrs: Any) -> list[Any]:
    nd = len(attrs["kernel_size"])
    return [b.avg_pool_backward(g, input_size=tuple(x.shape[-nd:]), **attrs)]


avg_pool = define_op(
    "avg_pool",
    pattern=R,
    attrs=dict(_AVG_ATTRS),
    normalize=_normalize("avg_pool"),
    infer=_avg_infer,
    reference=_avg_ref,
    vjp=_avg_vjp,
    saves=(),
    lowering={"template": "pool"},
    method=False,
    function=False,
    doc="N-d average pooling over the last len(kernel_size) dims, with PyTorch's divisor rules.",
)

avg_pool_backward = define_op(
    "avg_pool_backward",
    pattern=R,
    attrs={"input_size": INTS, **_AVG_ATTRS},
    infer=_avg_bwd_infer,
    reference=_avg_bwd_ref,
    vjp=lambda b, g, out, x, input_size, **attrs: [b.avg_pool(g, **attrs)],
    saves=(),
    lowering={"template": "pool_backward"},
    method=False,
    function=False,
    doc="The adjoint of avg_pool: spreads each output gradient over its window.",
)

__all__ = [
    "max_pool",
    "region_max_pool",
    "max_unpool",
    "unpool_gather",
    "avg_pool",
    "avg_pool_backward",
    "pool_out_size",
]
