"""Functional normalization: batch norm (batch statistics in training, running ones in eval, with the
running update PyTorch makes), layer norm, group norm and ``normalize``."""

from __future__ import annotations

from typing import Any

import numpy as np
from ember.autograd import no_grad
from ember.compiler.ops import REGISTRY
from ember.dispatch import apply
from ember.runtime.errors import ArgumentError, ShapeError
from ember.tensor import Tensor

_op = REGISTRY.__getitem__


def _batch_stats(input: Tensor) -> tuple[Tensor, Tensor, int]:
    """Mean and biased variance over every dim but the channel dim (1), and the count behind them."""
    dims = tuple(i for i in range(input.ndim) if i != 1)
    n = input.numel() // input.shape[1]
    if n <= 1:
        raise ArgumentError(
            f"Expected more than 1 value per channel when training, got input size {input.shape}"
        )
    cshape = (1, input.shape[1]) + (1,) * (input.ndim - 2)
    mean = input.mean(dims)
    centered = input - mean.reshape(cshape)
    var = (centered * centered).mean(dims)
    return mean, var, n


def _update_running(running: Tensor, value: Tensor, momentum: float) -> None:
    with no_grad():
        running.mul_(1.0 - momentum)
        running.add_(value.detach().to(running.dtype) * momentum)


def batch_norm(input: Tensor, running_mean: Tensor | None, running_var: Tensor | None,
               weight: Tensor | None = None, bias: Tensor | None = None, training: bool = False,
               momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """Normalize each channel (dim 1). In training, batch statistics are used and the running ones are
    moved toward them (the variance unbiased, as PyTorch does)."""
    from ember.creation import ones, zeros

    if input.ndim < 2:
        raise ArgumentError(f"batch_norm: expected an input with at least 2 dims, got {list(input.shape)}")
    c = input.shape[1]
    for name, t in (("running_mean", running_mean), ("running_var", running_var), ("weight", weight),
                    ("bias", bias)):
        if t is not None and tuple(t.shape) != (c,):
            raise ShapeError(f"batch_norm: {name} should contain {c} elements not {t.numel()} (input shape"
                             f" {list(input.shape)}, {name} shape {list(t.shape)})")
    if training or running_mean is None or running_var is None:
        mean, var, n = _batch_stats(input)
        if training and running_mean is not None and running_var is not None:
            _update_running(running_mean, mean, momentum)
            _update_running(running_var, var * (n / (n - 1)), momentum)
    else:
        mean, var = running_mean, running_var
    if weight is None:
        weight = ones(c, dtype=input.dtype, device=input.device)
    if bias is None:
        bias = zeros(c, dtype=input.dtype, device=input.device)
    return apply(_op("batch_norm"), (input, mean, var, weight, bias), {"eps": eps})


def layer_norm(input: Tensor, normalized_shape: Any, weight: Tensor | None = None,
               bias: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    """Normalize over the trailing ``normalized_shape`` dims of each sample."""
    if isinstance(normalized_shape, int):
        normalized_shape = (normalized_shape,)
    return apply(_op("layer_norm"), (input, weight, bias),
                 {"normalized_shape": tuple(normalized_shape), "eps": eps})


def group_norm(input: Tensor, num_groups: int, weight: Tensor | None = None, bias: Tensor | None = None,
               eps: float = 1e-5) -> Tensor:
    """Normalize over groups of channels of each sample."""
    return apply(_op("group_norm"), (input, weight, bias), {"num_groups": num_groups, "eps": eps})


def instance_norm(input: Tensor, running_mean: Tensor | None = None, running_var: Tensor | None = None,
                  weight: Tensor | None = None, bias: Tensor | None = None, use_input_stats: bool = True,
                  momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """Normalize each (sample, channel) plane by its own statistics (or, with ``use_input_stats=False``,
    by the running ones); running statistics move toward the batch average of the instance statistics."""
    if not use_input_stats:
        return batch_norm(input, running_mean, running_var, weight, bias, False, momentum, eps)
    n, c = input.shape[0], input.shape[1]
    if input.numel() // (n * c) <= 1:
        raise ArgumentError(f"Expected more than 1 spatial element when training, got input size"
                            f" {input.shape}")
    y = group_norm(input, c, weight, bias, eps)
    if running_mean is not None and running_var is not None:
        dims = tuple(range(2, input.ndim))
        count = input.numel() // (n * c)
        with no_grad():
            mean = input.mean(dims)
            var = ((input - mean.reshape(n, c, *([1] * len(dims)))) ** 2).mean(dims) * (count / (count - 1))
            _update_running(running_mean, mean.mean(0), momentum)
            _update_running(running_var, var.mean(0), momentum)
    return y


def rms_norm(input: Tensor, normalized_shape: Any, weight: Tensor | None = None,
             eps: float | None = None) -> Tensor:
    """``x / sqrt(mean(x^2) + eps) * weight`` over the trailing ``normalized_shape`` dims."""
    if isinstance(normalized_shape, int):
        normalized_shape = (normalized_shape,)
    k = len(tuple(normalized_shape))
    if tuple(input.shape[input.ndim - k:]) != tuple(normalized_shape):
        raise ShapeError(f"rms_norm: Given normalized_shape={list(normalized_shape)}, expected input with"
                         f" shape [*, {', '.join(map(str, normalized_shape))}], but got input of size"
                         f"{list(input.shape)}")
    if eps is None:
        eps = float(np.finfo(input.dtype.np).eps)
    dims = tuple(range(input.ndim - k, input.ndim))
    y = input * ((input * input).mean(dims, keepdim=True) + eps).rsqrt()
    return y if weight is None else y * weight


def local_response_norm(input: Tensor, size: int, alpha: float = 1e-4, beta: float = 0.75,
                        k: float = 1.0) -> Tensor:
    """Divide by (k + alpha/size * sum of squares over ``size`` neighbouring channels)^beta."""
    from ember import cat, zeros

    sq = input * input
    c = input.shape[1]
    pad_front, pad_back = size // 2, (size - 1) // 2
    rest = tuple(input.shape[2:])
    padded = cat([zeros(input.shape[0], pad_front, *rest, dtype=input.dtype), sq,
                  zeros(input.shape[0], pad_back, *rest, dtype=input.dtype)], 1)
    window = padded.narrow(1, 0, c)
    for i in range(1, size):
        window = window + padded.narrow(1, i, c)
    return input / (window * (alpha / size) + k).pow(beta)


def normalize(input: Tensor, p: float = 2.0, dim: int = 1, eps: float = 1e-12, out: Any = None) -> Tensor:
    """``x / max(||x||_p, eps)`` along ``dim``."""
    norm = input.abs().pow(p).sum(dim, keepdim=True).pow(1.0 / p)
    return input / norm.clamp(min=eps)


__all__ = ["batch_norm", "layer_norm", "group_norm", "instance_norm", "rms_norm", "local_response_norm",
           "normalize"]
