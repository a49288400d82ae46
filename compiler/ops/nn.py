"""Neural-network ops: softmax family, activations that need care at the edges, batch normalization,
layer/group normalization, embedding, one-hot and the binary cross-entropy kernel.

Primitive where a pass or kernel must see the op whole (softmax-like reductions, batch_norm for
folding into convolutions, embedding as a gather) or where a composition would be numerically worse than
PyTorch (softplus, log_sigmoid, binary cross-entropy near 0 and 1). The rest are composites, so they get
gradients, tracing and code generation from their primitives.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from ember.compiler.dtypes import INTEGRAL, int64
from ember.compiler.ops.registry import (
    FLOAT,
    INT,
    INTS,
    Pattern,
    TensorType,
    define_composite,
    define_op,
    one_of,
    optional,
)
from ember.compiler.ops.rules import norm_dim, require_float, shape_of
from ember.runtime.errors import ArgumentError, DimError, DTypeError, ShapeError

E = Pattern.ELEMWISE
R = Pattern.REDUCTION

# ---- softmax family -----------------------------------------------------------------------------


def _dim_normalize(attrs: dict[str, Any], x: Any, *_: Any) -> dict[str, Any]:
    attrs["dim"] = norm_dim("softmax", attrs["dim"], len(shape_of(x)))
    return attrs


def _softmax_infer(name: str):
    def infer(x: Any, dim: int) -> TensorType:
        require_float(name, x)
        return TensorType(shape_of(x), x.dtype)

    return infer


def _shifted(xp: Any, x: Any, dim: int) -> Any:
    """``x - max(x, dim)``, the shift that keeps exp from overflowing (empty or 0-d inputs unshifted)."""
    if x.ndim == 0 or x.shape[dim] == 0:
        return x - 0
    m = xp.max(x, axis=dim, keepdims=True)
    m = xp.where(xp.isfinite(m), m, 0)
    return x - m


def _softmax_ref(xp: Any, x: Any, dim: int) -> Any:
    e = xp.exp(_shifted(xp, x, dim if x.ndim else 0))
    return e / xp.sum(e, axis=dim if x.ndim else None, keepdims=True)


def _log_softmax_ref(xp: Any, x: Any, dim: int) -> Any:
    s = _shifted(xp, x, dim if x.ndim else 0)
    return s - xp.log(xp.sum(xp.exp(s), axis=dim if x.ndim else None, keepdims=True))


def _keep(b: Any, x: Any, dim: int) -> Any:
    return b.sum(x, dim=(dim,) if len(x.shape) else None, keepdim=True)


softmax = define_op(
    "softmax", pattern=R, attrs={"dim": INT}, normalize=_dim_normalize, infer=_softmax_infer("softmax"),
    reference=_softmax_ref, saves=("out",),
    vjp=lambda b, g, out, x, dim: [b.mul(out, b.sub(g, _keep(b, b.mul(g, out), dim)))],
    lowering={"template": "softmax"},
)

log_softmax = define_op(
    "log_softmax", pattern=R, attrs={"dim": INT}, normalize=_dim_normalize,
    infer=_softmax_infer("log_softmax"), reference=_log_softmax_ref, saves=("out",),
    vjp=lambda b, g, out, x, dim: [b.sub(g, b.mul(b.exp(out), _keep(b, g, dim)))],
    lowering={"template": "log_softmax"},
)

# ---- activations ----------------------------------------------------------------------------------


def _float_same(name: str):
    def infer(x: Any, **_: Any) -> TensorType:
        require_float(name, x)
        return TensorType(shape_of(x), x.dtype)

    return infer


def _erf(xp: Any, x: Any) -> Any:
    if xp.__name__ != "numpy":  # a device array: cupy's own erf, else through the host
        try:
            from cupyx.scipy.special import erf as device_erf
        except ImportError:
            return xp.asarray(_erf(np, xp.asnumpy(x)))
        return device_erf(x)
    try:
        from scipy.special import erf
    except ImportError:  # scipy is optional: fall back to math.erf element by element
        return np.vectorize(math.erf, otypes=[x.dtype])(x)
    return erf(x)


_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def _gelu_ref(xp: Any, x: Any, approximate: str) -> Any:
    if approximate == "tanh":
        inner = _SQRT_2_OVER_PI * (x + 0.044715 * x ** 3)
        return 0.5 * x * (1.0 + xp.tanh(inner))
    return 0.5 * x * (1.0 + _erf(xp, x / math.sqrt(2.0)))


def _gelu_vjp(b: Any, g: Any, out: Any, x: Any, approximate: str) -> list[Any]:
    if approximate == "tanh":
        x2 = b.mul(x, x)
        t = b.tanh(b.mul(b.add(x, b.mul(b.mul(x2, x), 0.044715)), _SQRT_2_OVER_PI))
        dinner = b.mul(b.add(1.0, b.mul(x2, 3 * 0.044715)), _SQRT_2_OVER_PI)
        d = b.add(b.mul(b.add(1.0, t), 0.5), b.mul(b.mul(b.mul(x, 0.5), b.sub(1.0, b.mul(t, t))), dinner))
        return [b.mul(g, d)]
    pdf = b.mul(b.exp(b.mul(b.mul(x, x), -0.5)), 1.0 / math.sqrt(2.0 * math.pi))
    cdf = b.gelu_cdf(x)
    return [b.mul(g, b.add(cdf, b.mul(x, pdf)))]


gelu = define_op(
    "gelu", pattern=E, attrs={"approximate": (one_of("none", "tanh"), "none")}, infer=_float_same("gelu"),
    reference=_gelu_ref, vjp=_gelu_vjp, saves=(0,),
    lowering={"scalar": lambda e, x, approximate: e.gelu(x, approximate)},
)


def _cdf_vjp(b: Any, g: Any, out: Any, x: Any) -> list[Any]:
    return [b.mul(g, b.mul(b.exp(b.mul(b.mul(x, x), -0.5)), 1.0 / math.sqrt(2.0 * math.pi)))]


gelu_cdf = define_op(
    "gelu_cdf", pattern=E, infer=_float_same("gelu_cdf"),
    reference=lambda xp, x: 0.5 * (1.0 + _erf(xp, x / math.sqrt(2.0))), vjp=_cdf_vjp, saves=(0,),
    lowering={"scalar": lambda e, x: e.normal_cdf(x)}, method=False, function=False,
    doc="The standard normal CDF, Phi(x); the derivative of exact gelu needs it.",
)


def _elu_ref(xp: Any, x: Any, alpha: float, scale: float, input_scale: float) -> Any:
    neg = alpha * xp.expm1(xp.minimum(x, 0) * input_scale)
    return scale * xp.where(x > 0, x, neg)


def _elu_vjp(b: Any, g: Any, out: Any, x: Any, alpha: float, scale: float, input_scale: float) -> list[Any]:
    # for x <= 0: d/dx = scale * input_scale * alpha * exp(x * input_scale)
    #                 = input_scale * (out + scale * alpha)
    neg = b.mul(b.add(out, scale * alpha), input_scale)
    return [b.mul(g, b.where(b.gt(x, 0.0), scale, neg))]


elu = define_op(
    "elu", pattern=E, attrs={"alpha": (FLOAT, 1.0), "scale": (FLOAT, 1.0), "input_scale": (FLOAT, 1.0)},
    infer=_float_same("elu"), reference=_elu_ref, vjp=_elu_vjp, saves=(0, "out"),
    lowering={"scalar": lambda e, x, alpha, scale, input_scale: e.elu(x, alpha, scale, input_scale)},
)


def _softplus_ref(xp: Any, x: Any, beta: float, threshold: float) -> Any:
    bx = x * beta
    soft = xp.logaddexp(0, xp.minimum(bx, threshold)) / beta
    return xp.where(bx > threshold, x, soft).astype(x.dtype, copy=False)


softplus = define_op(
    "softplus", pattern=E, attrs={"beta": (FLOAT, 1.0), "threshold": (FLOAT, 20.0)},
    infer=_float_same("softplus"), reference=_softplus_ref, saves=(0,),
    vjp=lambda b, g, out, x, beta, threshold: [
        b.where(b.gt(b.mul(x, beta), threshold), g, b.mul(g, b.sigmoid(b.mul(x, beta))))],
    lowering={"scalar": lambda e, x, beta, threshold: e.softplus(x, beta, threshold)},
)


def _log_sigmoid_ref(xp: Any, x: Any) -> Any:
    return (xp.minimum(x, 0) - xp.log1p(xp.exp(-xp.abs(x)))).astype(x.dtype, copy=False)


log_sigmoid = define_op(
    "log_sigmoid", pattern=E, infer=_float_same("log_sigmoid"), reference=_log_sigmoid_ref, saves=(0,),
    vjp=lambda b, g, out, x: [b.mul(g, b.sigmoid(b.neg(x)))],
    lowering={"scalar": lambda e, x: e.log_sigmoid(x)},
)


def _where_pos(b: Any, x: Any, pos: Any, neg: Any) -> Any:
    return b.where(b.gt(x, 0.0), pos, neg)


define_composite(
    "leaky_relu", attrs={"negative_slope": (FLOAT, 0.01)},
    decompose=lambda b, x, negative_slope: _where_pos(b, x, x, b.mul(x, negative_slope)),
)

define_composite(
    "hardtanh", attrs={"min_val": (FLOAT, -1.0), "max_val": (FLOAT, 1.0)},
    decompose=lambda b, x, min_val, max_val: b.where(
        b.le(x, min_val), min_val, b.where(b.ge(x, max_val), max_val, x)),
)

define_composite(
    "threshold", attrs={"threshold": FLOAT, "value": FLOAT},
    decompose=lambda b, x, threshold, value: b.where(b.gt(x, threshold), x, value),
)

define_composite(
    "softshrink", attrs={"lambd": (FLOAT, 0.5)},
    decompose=lambda b, x, lambd: b.where(
        b.gt(x, lambd), b.sub(x, lambd), b.where(b.lt(x, -lambd), b.add(x, lambd), 0.0)),
)

define_composite(
    "softsign", decompose=lambda b, x: b.div(x, b.add(_where_pos(b, x, x, b.neg(x)), 1.0)),
)

define_composite("silu", decompose=lambda b, x: b.mul(x, b.sigmoid(x)))


def _channel_shape(x: Any, w: Any) -> tuple[int, ...]:
    """Shape that broadcasts a per-channel vector over dim 1 of ``x`` (PyTorch's channel dim)."""
    nd = len(x.shape)
    return (1, w.shape[0]) + (1,) * (nd - 2) if nd >= 2 else (w.shape[0],)


def _prelu(b: Any, x: Any, weight: Any) -> Any:
    n = weight.shape[0] if len(weight.shape) else 1
    if len(weight.shape) > 1:
        raise ShapeError(f"prelu: weight must be 0-d or 1-d, got shape {list(weight.shape)}")
    if n != 1:
        c = x.shape[1] if len(x.shape) >= 2 else (x.shape[0] if len(x.shape) else 1)
        if c != n:
            raise ShapeError(
                f"prelu: Mismatch of parameter numbers and input channel size. Found parameter numbers ="
                f" {n} and channel size = {c}."
            )
        weight = b.reshape(weight, shape=_channel_shape(x, weight))
    return _where_pos(b, x, x, b.mul(weight, x))


define_composite("prelu", inputs=("input", "weight"), decompose=_prelu)

# ---- normalization --------------------------------------------------------------------------------


def _bn_infer(x: Any, mean: Any, var: Any, weight: Any, bias: Any, eps: float) -> TensorType:
    require_float("batch_norm", x)
    xs = shape_of(x)
    if len(xs) < 2:
        raise ShapeError(f"batch_norm: expected an input with at least 2 dims (N, C, ...), got {list(xs)}")
    for name, t in (("running_mean", mean), ("running_var", var), ("weight", weight), ("bias", bias)):
        if shape_of(t) != (xs[1],):
            raise ShapeError(
                f"batch_norm: {name} should contain {xs[1]} elements not {math.prod(shape_of(t))}"
                f" (input shape {list(xs)}, {name} shape {list(shape_of(t))})"
            )
    return TensorType(xs, x.dtype)


def _bn_ref(xp: Any, x: Any, mean: Any, var: Any, weight: Any, bias: Any, eps: float) -> Any:
    shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    inv = 1.0 / xp.sqrt(var.astype(x.dtype) + eps)
    scale = (inv * weight).reshape(shape)
    return (x - mean.reshape(shape)) * scale + bias.reshape(shape)


def _bn_vjp(b: Any, g: Any, out: Any, x: Any, mean: Any, var: Any, weight: Any, bias: Any,
            eps: float) -> list[Any]:
    shape = _channel_shape(x, weight)
    dims = tuple(i for i in range(len(x.shape)) if i != 1)
    inv = b.rsqrt(b.add(var, eps))
    xc = b.sub(x, b.reshape(mean, shape=shape))
    s1 = b.sum(g, dim=dims)
    s2 = b.sum(b.mul(g, xc), dim=dims)
    winv = b.mul(weight, inv)
    dx = b.mul(g, b.reshape(winv, shape=shape))
    dmean = b.neg(b.mul(s1, winv))
    dvar = b.mul(b.mul(s2, weight), b.mul(b.mul(b.mul(inv, inv), inv), -0.5))
    return [dx, dmean, dvar, b.mul(s2, inv), s1]


batch_norm = define_op(
    "batch_norm", pattern=Pattern.BROADCAST, inputs=("input", "mean", "var", "weight", "bias"),
    attrs={"eps": (FLOAT, 1e-5)}, infer=_bn_infer, reference=_bn_ref, vjp=_bn_vjp, saves=(0, 1, 2, 3),
    lowering={"template": "batch_norm"}, method=False, function=False,
    doc="Normalize over the channel dim with given statistics: (x - mean) / sqrt(var + eps) * w + b."
        " Training mode computes the batch statistics with ops in front of it.",
)


def _normalize_last(b: Any, x: Any, dims: tuple[int, ...], eps: float) -> Any:
    mean = b.mean(x, dim=dims, keepdim=True)
    xc = b.sub(x, mean)
    var = b.mean(b.mul(xc, xc), dim=dims, keepdim=True)
    return b.mul(xc, b.rsqrt(b.add(var, eps)))


def _layer_norm(b: Any, x: Any, weight: Any, bias: Any, normalized_shape: tuple[int, ...],
                eps: float) -> Any:
    xs, k = tuple(x.shape), len(normalized_shape)
    if k == 0 or xs[len(xs) - k:] != normalized_shape or len(xs) < k:
        raise ShapeError(
            f"layer_norm: Given normalized_shape={list(normalized_shape)}, expected input with shape"
            f" [*, {', '.join(map(str, normalized_shape))}], but got input of size{list(xs)}"
        )
    require_float("layer_norm", x)
    y = _normalize_last(b, x, tuple(range(len(xs) - k, len(xs))), eps)
    if weight is not None:
        y = b.mul(y, weight)
    if bias is not None:
        y = b.add(y, bias)
    return y


layer_norm = define_composite(
    "layer_norm", inputs=("input", "weight", "bias"),
    attrs={"normalized_shape": INTS, "eps": (FLOAT, 1e-5)}, decompose=_layer_norm, method=False,
)


def _group_norm(b: Any, x: Any, weight: Any, bias: Any, num_groups: int, eps: float) -> Any:
    xs = tuple(x.shape)
    if len(xs) < 2 or xs[1] % num_groups:
        raise ShapeError(
            f"group_norm: Expected number of channels in input to be divisible by num_groups, but got input"
            f" of shape {list(xs)} and num_groups={num_groups}"
        )
    require_float("group_norm", x)
    grouped = b.reshape(x, shape=(xs[0], num_groups, -1))
    y = b.reshape(_normalize_last(b, grouped, (2,), eps), shape=xs)
    cshape = (1, xs[1]) + (1,) * (len(xs) - 2)
    if weight is not None:
        y = b.mul(y, b.reshape(weight, shape=cshape))
    if bias is not None:
        y = b.add(y, b.reshape(bias, shape=cshape))
    return y


group_norm = define_composite(
    "group_norm", inputs=("input", "weight", "bias"), attrs={"num_groups": INT, "eps": (FLOAT, 1e-5)},
    decompose=_group_norm, method=False, function=False,
)

# ---- dropout ----------------------------------------------------------------------------------------


def _dropout(b: Any, x: Any, mask: Any, p: float) -> Any:
    if not 0.0 <= p <= 1.0:
        raise ArgumentError(f"dropout probability has to be between 0 and 1, but got {p}")
    scale = 0.0 if p == 1.0 else 1.0 / (1.0 - p)
    return b.mul(b.mul(x, b.cast_like(mask, x)), scale)


dropout = define_composite(
    "dropout", inputs=("input", "mask"), attrs={"p": (FLOAT, 0.5)}, decompose=_dropout,
    method=False, function=False,
    doc="Scale by 1/(1-p) where ``mask`` keeps an element; the frontend draws the mask, so the op is"
        " deterministic and traces as a plain multiply.",
)

# ---- embedding and one-hot ------------------------------------------------------------------------


def _check_indices(op: str, idx: Any) -> None:
    if idx.dtype.category != INTEGRAL:
        raise DTypeError(
            f"{op}: Expected tensor for argument #1 'indices' to have one of the following scalar types:"
            f" Long, Int; but got {idx.dtype} instead (usage: {op}(input, weight))"
        )


def _embedding_infer(weight: Any, idx: Any, padding_idx: Any) -> TensorType:
    _check_indices("embedding", idx)
    ws = shape_of(weight)
    if len(ws) != 2:
        raise ShapeError(f"embedding: 'weight' must be 2-D, got shape {list(ws)}")
    return TensorType(shape_of(idx) + ws[1:], weight.dtype)


def _check_range(xp: Any, idx: Any, n: int, what: str) -> None:
    if idx.size and (int(idx.min()) < 0 or int(idx.max()) >= n):
        bad = int(idx.max()) if int(idx.max()) >= n else int(idx.min())
        raise DimError(f"{what}: index {bad} is out of range for {n} rows (index out of range in self)")


def _embedding_ref(xp: Any, weight: Any, idx: Any, padding_idx: Any) -> Any:
    _check_range(xp, idx, weight.shape[0], "embedding")
    return weight[idx]


def _embedding_vjp(b: Any, g: Any, out: Any, weight: Any, idx: Any, padding_idx: Any) -> list[Any]:
    return [b.embedding_backward(g, idx, num_weights=weight.shape[0], padding_idx=padding_idx), None]


embedding = define_op(
    "embedding", pattern=Pattern.INJECTIVE, inputs=("weight", "indices"),
    attrs={"padding_idx": (optional(INT), None)}, infer=_embedding_infer, reference=_embedding_ref,
    vjp=_embedding_vjp, saves=(1,), lowering={"index": "gather_rows"}, method=False, function=False,
    doc="Rows of ``weight`` picked by integer ``indices`` (a gather along dim 0).",
)


def _embedding_bw_infer(g: Any, idx: Any, num_weights: int, padding_idx: Any) -> TensorType:
    return TensorType((num_weights,) + shape_of(g)[len(shape_of(idx)):], g.dtype)


def _embedding_bw_ref(xp: Any, g: Any, idx: Any, num_weights: int, padding_idx: Any) -> Any:
    tail = g.shape[idx.ndim:]
    out = xp.zeros((num_weights,) + tail, dtype=g.dtype)
    flat = idx.reshape(-1)
    if padding_idx is not None:
        keep = flat != padding_idx
        xp.add.at(out, flat[keep], g.reshape((-1,) + tail)[keep])
    else:
        xp.add.at(out, flat, g.reshape((-1,) + tail))
    return out


def _embedding_bw_vjp(b: Any, g: Any, out: Any, grad: Any, idx: Any, num_weights: int,
                      padding_idx: Any) -> list[Any]:
    picked = b.embedding(g, idx)
    if padding_idx is not None:
        picked = b.where(b.reshape(b.ne(idx, padding_idx), shape=tuple(idx.shape) + (1,)), picked, 0.0)
    return [picked, None]


embedding_backward = define_op(
    "embedding_backward", pattern=Pattern.OPAQUE, inputs=("grad", "indices"),
    attrs={"num_weights": INT, "padding_idx": (optional(INT), None)},
    infer=_embedding_bw_infer, reference=_embedding_bw_ref, vjp=_embedding_bw_vjp, saves=(1,),
    lowering={"template": "scatter_add_rows"}, method=False, function=False,
    doc="Gradient of embedding: scatter-add rows of ``grad`` into a zero table, skipping padding_idx.",
)


def _one_hot_normalize(attrs: dict[str, Any], idx: Any) -> dict[str, Any]:
    if attrs["num_classes"] == -1:
        data = getattr(idx, "_data", None)
        if data is None:
            raise ArgumentError("one_hot: num_classes=-1 needs concrete values (tracing)")
        attrs["num_classes"] = int(data.max()) + 1 if data.size else 0
    return attrs


def _one_hot_infer(idx: Any, num_classes: int) -> TensorType:
    if idx.dtype.category != INTEGRAL:
        raise DTypeError(f"one_hot is only applicable to index tensor of integer dtype, got {idx.dtype}")
    return TensorType(shape_of(idx) + (num_classes,), int64)


def _one_hot_ref(xp: Any, idx: Any, num_classes: int) -> Any:
    if idx.size and (int(idx.min()) < 0 or int(idx.max()) >= num_classes):
        bad = int(idx.max()) if int(idx.max()) >= num_classes else int(idx.min())
        raise DimError(f"one_hot: Target {bad} is out of bounds (class values must be in [0, {num_classes}))")
    return (idx[..., None] == xp.arange(num_classes)).astype("int64")


one_hot = define_op(
    "one_hot", pattern=Pattern.INJECTIVE, attrs={"num_classes": (INT, -1)}, normalize=_one_hot_normalize,
    infer=_one_hot_infer, reference=_one_hot_ref, vjp=None, differentiable=False,
    lowering={"index": "one_hot"}, method=False, function=False,
)

# ---- binary cross-entropy -------------------------------------------------------------------------


def _bce_infer(x: Any, t: Any) -> TensorType:
    require_float("binary_cross_entropy", x)
    if shape_of(x) != shape_of(t):
        raise ShapeError(
            f"binary_cross_entropy: Using a target size ({list(shape_of(t))}) that is different to the input"
            f" size ({list(shape_of(x))}) is deprecated. Please ensure they have the same size."
        )
    return TensorType(shape_of(x), x.dtype)


def _clamped_logs(xp: Any, x: Any) -> tuple[Any, Any]:
    with np.errstate(divide="ignore"):  # a no-op for cupy arrays, which do not warn
        return xp.maximum(xp.log(x), -100), xp.maximum(xp.log(1 - x), -100)


def _bce_ref(xp: Any, x: Any, t: Any) -> Any:
    if x.size and (float(x.min()) < 0 or float(x.max()) > 1):
        raise ArgumentError("binary_cross_entropy: all elements of input should be between 0 and 1")
    lx, l1x = _clamped_logs(xp, x)
    return -(t * lx + (1 - t) * l1x)


def _bce_vjp(b: Any, g: Any, out: Any, x: Any, t: Any) -> list[Any]:
    denom = b.mul(b.sub(1.0, x), x)
    denom = b.where(b.gt(denom, 1e-12), denom, 1e-12)
    dx = b.div(b.mul(g, b.sub(x, t)), denom)
    dt = None
    if t.dtype.is_floating_point:
        dt = b.mul(g, b.sub(b.bce_log(b.sub(1.0, x)), b.bce_log(x)))
    return [dx, dt]


binary_cross_entropy = define_op(
    "binary_cross_entropy", pattern=E, inputs=("input", "target"), infer=_bce_infer,
    reference=_bce_ref, vjp=_bce_vjp, saves=(0, 1), method=False, function=False,
    lowering={"scalar": lambda e, x, t: e.binary_cross_entropy(x, t)},
    doc="Elementwise -(t log x + (1-t) log(1-x)) with each log clamped at -100, as PyTorch does.",
)


def _bce_log_ref(xp: Any, x: Any) -> Any:
    with np.errstate(divide="ignore"):  # a no-op for cupy arrays, which do not warn
        return xp.maximum(xp.log(x), -100)


bce_log = define_op(
    "bce_log", pattern=E, infer=_float_same("bce_log"), reference=_bce_log_ref, saves=(0,),
    vjp=lambda b, g, out, x: [b.where(b.gt(out, -100.0), b.div(g, x), 0.0)],
    lowering={"scalar": lambda e, x: e.max(e.log(x), e.const(-100.0, x.dtype))},
    method=False, function=False, doc="log(x) clamped below at -100 (binary cross-entropy's log).",
)

__all__ = ["softmax", "log_softmax", "gelu", "elu", "softplus", "log_sigmoid", "batch_norm", "layer_norm",
           "group_norm", "dropout", "embedding", "one_hot", "binary_cross_entropy"]
