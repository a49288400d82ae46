"""Functional pooling: max/avg/adaptive/fractional/LP pooling and max-unpooling, 1d to 3d, as PyTorch's
functions, mapped onto the registry's N-d pooling ops (compiler/ops/pool.py).

Adaptive average pooling is an ``avg_pool`` when the sizes divide, otherwise one ``matmul`` per dim with a
constant averaging matrix; adaptive and fractional max pooling are ``region_max_pool`` over windows
computed here from the sizes (and, for fractional pooling, the random samples).

>>> import ember
>>> import ember.nn.functional as F
>>> F.max_pool2d(ember.arange(16.0).reshape(1, 1, 4, 4), 2)
tensor([[[[ 5.,  7.],
          [13., 15.]]]])
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from ember.compiler.ops import REGISTRY
from ember.dispatch import apply
from ember.nn.functional.conv import ntuple
from ember.runtime.errors import ArgumentError, ShapeError
from ember.tensor import Tensor

_op = REGISTRY.__getitem__

__all__ = [
    "max_pool1d",
    "max_pool2d",
    "max_pool3d",
    "max_pool1d_with_indices",
    "max_pool2d_with_indices",
    "max_pool3d_with_indices",
    "avg_pool1d",
    "avg_pool2d",
    "avg_pool3d",
    "adaptive_avg_pool1d",
    "adaptive_avg_pool2d",
    "adaptive_avg_pool3d",
    "adaptive_max_pool1d",
    "adaptive_max_pool2d",
    "adaptive_max_pool3d",
    "adaptive_max_pool1d_with_indices",
    "adaptive_max_pool2d_with_indices",
    "adaptive_max_pool3d_with_indices",
    "max_unpool1d",
    "max_unpool2d",
    "max_unpool3d",
    "lp_pool1d",
    "lp_pool2d",
    "fractional_max_pool2d",
    "fractional_max_pool2d_with_indices",
]


def _check_rank(input: Tensor, nd: int, name: str) -> None:
    if input.dim() not in (nd + 1, nd + 2):
        raise ShapeError(
            f"{name}: non-empty {nd + 1}D or {nd + 2}D (batch mode) tensor expected for input,"
            f" but got input of size: {list(input.shape)}"
        )


def max_poolnd(
    input: Tensor,
    kernel_size: Any,
    stride: Any,
    padding: Any,
    dilation: Any,
    ceil_mode: bool,
    return_indices: bool,
    nd: int,
) -> Any:
    """The shared body of max_pool1d/2d/3d."""
    _check_rank(input, nd, f"max_pool{nd}d")
    attrs = {
        "kernel_size": ntuple(kernel_size, nd, "kernel_size"),
        "stride": ntuple(stride, nd, "stride") if stride is not None and stride != [] else None,
        "padding": ntuple(padding, nd, "padding"),
        "dilation": ntuple(dilation, nd, "dilation"),
        "ceil_mode": bool(ceil_mode),
    }
    values, indices = apply(_op("max_pool"), (input,), attrs)
    return (values, indices) if return_indices else values


def max_pool1d(
    input: Tensor,
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    dilation: Any = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
) -> Any:
    """Max over sliding windows of (N, C, L); with return_indices also the flat argmax positions."""
    return max_poolnd(input, kernel_size, stride, padding, dilation, ceil_mode, return_indices, 1)


def max_pool2d(
    input: Tensor,
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    dilation: Any = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
) -> Any:
    """Max over sliding windows of (N, C, H, W)."""
    return max_poolnd(input, kernel_size, stride, padding, dilation, ceil_mode, return_indices, 2)


def max_pool3d(
    input: Tensor,
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    dilation: Any = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
) -> Any:
    """Max over sliding windows of (N, C, D, H, W)."""
    return max_poolnd(input, kernel_size, stride, padding, dilation, ceil_mode, return_indices, 3)


def max_pool1d_with_indices(
    input: Tensor,
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    dilation: Any = 1,
    ceil_mode: bool = False,
    return_indices: bool = True,
) -> Any:
    return max_poolnd(input, kernel_size, stride, padding, dilation, ceil_mode, True, 1)


def max_pool2d_with_indices(
    input: Tensor,
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    dilation: Any = 1,
    ceil_mode: bool = False,
    return_indices: bool = True,
) -> Any:
    return max_poolnd(input, kernel_size, stride, padding, dilation, ceil_mode, True, 2)


def max_pool3d_with_indices(
    input: Tensor,
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    dilation: Any = 1,
    ceil_mode: bool = False,
    return_indices: bool = True,
) -> Any:
    return max_poolnd(input, kernel_size, stride, padding, dilation, ceil_mode, True, 3)


def avg_poolnd(
    input: Tensor,
    kernel_size: Any,
    stride: Any,
    padding: Any,
    ceil_mode: bool,
    count_include_pad: bool,
    divisor_override: int | None,
    nd: int,
) -> Tensor:
    """The shared body of avg_pool1d/2d/3d."""
    _check_rank(input, nd, f"avg_pool{nd}d")
    attrs = {
        "kernel_size": ntuple(kernel_size, nd, "kernel_size"),
        "stride": ntuple(stride, nd, "stride") if stride is not None and stride != [] else None,
        "padding": ntuple(padding, nd, "padding"),
        "ceil_mode": bool(ceil_mode),
        "count_include_pad": bool(count_include_pad),
        "divisor_override": divisor_override,
    }
    return apply(_op("avg_pool"), (input,), attrs)


def avg_pool1d(
    input: Tensor,
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
) -> Tensor:
    """Mean over sliding windows of (N, C, L)."""
    return avg_poolnd(input, kernel_size, stride, padding, ceil_mode, count_include_pad, None, 1)


def avg_pool2d(
    input: Tensor,
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
) -> Tensor:
    """Mean over sliding windows of (N, C, H, W); divisor_override replaces the window size."""
    return avg_poolnd(input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, 2)


def avg_pool3d(
    input: Tensor,
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
) -> Tensor:
    """Mean over sliding windows of (N, C, D, H, W)."""
    return avg_poolnd(input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, 3)


# ---- adaptive pooling ----------------------------------------------------------------------------------


def _adaptive_sizes(
    input: Tensor, output_size: Any, nd: int, name: str
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    _check_rank(input, nd, name)
    spatial = tuple(input.shape[-nd:])
    if isinstance(output_size, (list, tuple)):
        if len(output_size) != nd:
            raise ArgumentError(f"{name}: output_size must be {nd} ints (or None), got {list(output_size)}")
        out = tuple(spatial[i] if s is None else int(s) for i, s in enumerate(output_size))
    else:
        out = (int(output_size),) * nd
    if any(s == 0 for s in spatial) or any(o < 0 for o in out):
        raise ShapeError(
            f"{name}: expected input with non-zero spatial sizes and a non-negative output size,"
            f" but got input of size {list(input.shape)} and output_size {list(out)}"
        )
    return spatial, out


def adaptive_windows(n_in: int, n_out: int) -> tuple[tuple[int, int], ...]:
    """PyTorch's adaptive windows: [floor(i*n_in/n_out), ceil((i+1)*n_in/n_out))."""
    return tuple(((i * n_in) // n_out, -((-(i + 1) * n_in) // n_out)) for i in range(n_out))


def adaptive_avg_poolnd(input: Tensor, output_size: Any, nd: int) -> Tensor:
    """The shared body of adaptive_avg_pool1d/2d/3d."""
    from ember.creation import tensor

    spatial, out = _adaptive_sizes(input, output_size, nd, f"adaptive_avg_pool{nd}d")
    if all(o > 0 and s % o == 0 for s, o in zip(spatial, out)):
        k = tuple(s // o for s, o in zip(spatial, out))
        return avg_poolnd(input, k, k, 0, False, True, None, nd)
    x = input
    for i, (n_in, n_out) in enumerate(zip(spatial, out)):
        if n_in == n_out:
            continue
        mat = np.zeros((n_in, n_out))
        for j, (a, e) in enumerate(adaptive_windows(n_in, n_out)):
            mat[a:e, j] = 1.0 / (e - a)
        dim = x.dim() - nd + i
        mat_t = tensor(mat, dtype=x.dtype, device=x.device)
        last = dim == x.dim() - 1
        x = x @ mat_t if last else (x.movedim(dim, -1) @ mat_t).movedim(-1, dim)
    return x


def adaptive_avg_pool1d(input: Tensor, output_size: Any) -> Tensor:
    """Average pooling to a given output length."""
    return adaptive_avg_poolnd(input, output_size, 1)


def adaptive_avg_pool2d(input: Tensor, output_size: Any) -> Tensor:
    """Average pooling to a given (H, W); None keeps that dim."""
    return adaptive_avg_poolnd(input, output_size, 2)


def adaptive_avg_pool3d(input: Tensor, output_size: Any) -> Tensor:
    """Average pooling to a given (D, H, W)."""
    return adaptive_avg_poolnd(input, output_size, 3)


def adaptive_max_poolnd(input: Tensor, output_size: Any, return_indices: bool, nd: int) -> Any:
    """The shared body of adaptive_max_pool1d/2d/3d."""
    spatial, out = _adaptive_sizes(input, output_size, nd, f"adaptive_max_pool{nd}d")
    regions = tuple(adaptive_windows(s, o) for s, o in zip(spatial, out))
    values, indices = apply(_op("region_max_pool"), (input,), {"regions": regions})
    return (values, indices) if return_indices else values


def adaptive_max_pool1d(input: Tensor, output_size: Any, return_indices: bool = False) -> Any:
    return adaptive_max_poolnd(input, output_size, return_indices, 1)


def adaptive_max_pool2d(input: Tensor, output_size: Any, return_indices: bool = False) -> Any:
    return adaptive_max_poolnd(input, output_size, return_indices, 2)


def adaptive_max_pool3d(input: Tensor, output_size: Any, return_indices: bool = False) -> Any:
    return adaptive_max_poolnd(input, output_size, return_indices, 3)


def adaptive_max_pool1d_with_indices(input: Tensor, output_size: Any, return_indices: bool = True) -> Any:
    return adaptive_max_poolnd(input, output_size, True, 1)


def adaptive_max_pool2d_with_indices(input: Tensor, output_size: Any, return_indices: bool = True) -> Any:
    return adaptive_max_poolnd(input, output_size, True, 2)


def adaptive_max_pool3d_with_indices(input: Tensor, output_size: Any, return_indices: bool = True) -> Any:
    return adaptive_max_poolnd(input, output_size, True, 3)


# ---- unpooling -----------------------------------------------------------------------------------------


def max_unpoolnd(
    input: Tensor, indices: Tensor, kernel_size: Any, stride: Any, padding: Any, output_size: Any, nd: int
) -> Tensor:
    """The shared body of max_unpool1d/2d/3d: default output size inverts max_pool's size formula."""
    _check_rank(input, nd, f"max_unpool{nd}d")
    k = ntuple(kernel_size, nd, "kernel_size")
    s = ntuple(stride, nd, "stride") if stride is not None else k
    p = ntuple(padding, nd, "padding")
    default = tuple((input.shape[-nd + i] - 1) * s[i] - 2 * p[i] + k[i] for i in range(nd))
    if output_size is None:
        size = default
    else:
        size = tuple(int(v) for v in output_size)[-nd:]
        if len(size) != nd:
            raise ShapeError(
                f"max_unpool{nd}d: output_size must have {nd} or {nd + 2} elements, got {list(output_size)}"
            )
        for i in range(nd):
            lo, hi = default[i] - s[i], default[i] + s[i]
            if not lo < size[i] < hi:
                raise ShapeError(
                    f'invalid output_size "{list(size)}" (dim {i} must be between {lo} and {hi})'
                )
    return apply(_op("max_unpool"), (input, indices), {"output_size": size, "accumulate": False})


def max_unpool1d(
    input: Tensor,
    indices: Tensor,
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    output_size: Any = None,
) -> Tensor:
    """Partial inverse of max_pool1d: values back at their indices, zeros elsewhere."""
    return max_unpoolnd(input, indices, kernel_size, stride, padding, output_size, 1)


def max_unpool2d(
    input: Tensor,
    indices: Tensor,
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    output_size: Any = None,
) -> Tensor:
    return max_unpoolnd(input, indices, kernel_size, stride, padding, output_size, 2)


def max_unpool3d(
    input: Tensor,
    indices: Tensor,
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    output_size: Any = None,
) -> Tensor:
    return max_unpoolnd(input, indices, kernel_size, stride, padding, output_size, 3)


# ---- power-average and fractional pooling -------------------------------------------------------------


def lp_poolnd(
    input: Tensor, norm_type: float, kernel_size: Any, stride: Any, ceil_mode: bool, nd: int
) -> Tensor:
    """(sum over the window of x**p) ** (1/p), as PyTorch computes it: from an average pool."""
    k = ntuple(kernel_size, nd, "kernel_size")
    out = avg_poolnd(input.pow(norm_type), k, stride, 0, ceil_mode, True, None, nd)
    return (out.sign() * out.abs().relu()).mul(math.prod(k)).pow(1.0 / norm_type)


def lp_pool1d(
    input: Tensor, norm_type: float, kernel_size: Any, stride: Any = None, ceil_mode: bool = False
) -> Tensor:
    return lp_poolnd(input, norm_type, kernel_size, stride, ceil_mode, 1)


def lp_pool2d(
    input: Tensor, norm_type: float, kernel_size: Any, stride: Any = None, ceil_mode: bool = False
) -> Tensor:
    return lp_poolnd(input, norm_type, kernel_size, stride, ceil_mode, 2)


def fractional_windows(
    sample: float, n_in: int, n_out: int, k: int, dtype: Any
) -> tuple[tuple[int, int], ...]:
    """PyTorch's pseudo-random interval starts for one dim, computed in the input's precision."""
    ft = np.float64 if dtype == np.float64 else np.float32
    starts = []
    if n_out > 1:
        alpha = ft(n_in - k) / ft(n_out - 1)
        s = ft(sample)
        starts = [int(ft(i + s) * alpha) - int(s * alpha) for i in range(n_out - 1)]
    starts.append(n_in - k)
    return tuple((a, a + k) for a in starts)


def fractional_max_pool2d(
    input: Tensor,
    kernel_size: Any,
    output_size: Any = None,
    output_ratio: Any = None,
    return_indices: bool = False,
    _random_samples: Tensor | None = None,
) -> Any:
    """Max pooling over pseudo-random overlapping windows (Graham, 2014); ``_random_samples`` (N, C, 2)
    in [0, 1) fixes the windows, else they are drawn from ember's generator."""
    _check_rank(input, 2, "fractional_max_pool2d")
    k = ntuple(kernel_size, 2, "kernel_size")
    h, w = input.shape[-2:]
    if output_size is None:
        if output_ratio is None:
            raise ArgumentError(
                "fractional_max_pool2d requires specifying either an output_size or an output_ratio"
            )
        ratio = output_ratio if isinstance(output_ratio, (list, tuple)) else (output_ratio, output_ratio)
        output_size = (int(h * ratio[0]), int(w * ratio[1]))
    out = ntuple(output_size, 2, "output_size")
    if out[0] + k[0] - 1 > h or out[1] + k[1] - 1 > w:
        raise ShapeError(
            f"fractional_max_pool2d(): pool height/width {list(k)} and output size {list(out)} are"
            f" too large for input of size {list(input.shape)}"
        )
    x = input if input.dim() == 4 else input.unsqueeze(0)
    n, c = x.shape[:2]
    if _random_samples is None:
        from ember.creation import rand

        _random_samples = rand(n, c, 2, dtype=x.dtype)
    samples = _random_samples.detach().numpy().reshape(n, c, 2)
    values, indices = [], []
    for b in range(n):  # windows differ per plane, so each plane is its own region pool
        for ch in range(c):
            regions = (
                fractional_windows(samples[b, ch, 1], h, out[0], k[0], samples.dtype),
                fractional_windows(samples[b, ch, 0], w, out[1], k[1], samples.dtype),
            )
            v, i = apply(_op("region_max_pool"), (x[b, ch],), {"regions": regions})
            values.append(v)
            indices.append(i)
    from ember import stack

    v_all = stack(values).reshape(n, c, *out)
    i_all = stack(indices).reshape(n, c, *out)
    if input.dim() == 3:
        v_all, i_all = v_all.squeeze(0), i_all.squeeze(0)
    return (v_all, i_all) if return_indices else v_all


def fractional_max_pool2d_with_indices(
    input: Tensor,
    kernel_size: Any,
    output_size: Any = None,
    output_ratio: Any = None,
    return_indices: bool = True,
    _random_samples: Tensor | None = None,
) -> Any:
    return fractional_max_pool2d(input, kernel_size, output_size, output_ratio, True, _random_samples)
