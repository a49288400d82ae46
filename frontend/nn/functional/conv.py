"""Functional convolutions: PyTorch's signatures mapped onto the registry's N-d ``conv`` and
``conv_transpose`` ops. Unbatched inputs get a batch dim of one; 'same'/'valid' padding becomes explicit
(lo, hi) padding; the bias is an ``add`` (a fusable epilogue), never part of the primitive.

>>> import ember
>>> import ember.nn.functional as F
>>> F.conv2d(ember.ones(1, 1, 3, 3), ember.ones(1, 1, 2, 2)).shape
ember.Size([1, 1, 2, 2])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ember.compiler.ops import REGISTRY
from ember.dispatch import apply
from ember.runtime.errors import ArgumentError, ShapeError
from ember.tensor import Tensor

_op = REGISTRY.__getitem__

__all__ = ["conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d"]


def ntuple(v: Any, n: int, name: str = "argument") -> tuple[int, ...]:
    """An int or a sequence of ints as a tuple of n ints (PyTorch's _single/_pair/_triple)."""
    if isinstance(v, Sequence) and not isinstance(v, str):
        t = tuple(int(x) for x in v)
        if len(t) == 1:
            return t * n
        if len(t) != n:
            raise ArgumentError(f"expected {name} to be a single int or {n} ints, but got {list(t)}")
        return t
    return (int(v),) * n


def same_padding(ksize: tuple[int, ...], dilation: tuple[int, ...]) -> tuple[int, ...]:
    """(lo, hi) per dim so the output has the input's size; an odd total pads one more at the end."""
    out: list[int] = []
    for k, d in zip(ksize, dilation):
        total = d * (k - 1)
        out += [total // 2, total - total // 2]
    return tuple(out)


def _batched(input: Tensor, nd: int, name: str) -> tuple[Tensor, bool]:
    rank = input.dim()
    if rank == nd + 1:
        return input.unsqueeze(0), True
    if rank != nd + 2:
        raise ShapeError(
            f"Expected {nd + 1}D (unbatched) or {nd + 2}D (batched) input to {name}, but got input"
            f" of size: {list(input.shape)}"
        )
    return input, False


def _add_bias(y: Tensor, bias: Tensor | None, nd: int) -> Tensor:
    if bias is None:
        return y
    if bias.dim() != 1 or bias.shape[0] != y.shape[1]:
        raise ShapeError(
            f"Given weight producing {y.shape[1]} output channels, expected bias to be 1-D of"
            f" size {y.shape[1]}, but got bias of size {list(bias.shape)}"
        )
    return y + bias.reshape((y.shape[1],) + (1,) * nd)


def _conv_padding(
    padding: Any, nd: int, ksize: tuple[int, ...], dilation: tuple[int, ...], stride: tuple[int, ...]
) -> tuple[int, ...]:
    if isinstance(padding, str):
        if padding == "valid":
            return (0,) * (2 * nd)
        if padding == "same":
            if any(s != 1 for s in stride):
                raise ArgumentError("padding='same' is not supported for strided convolutions")
            return same_padding(ksize, dilation)
        raise ArgumentError(f"Invalid padding string '{padding}', should be one of 'valid', 'same'")
    return tuple(p for p in ntuple(padding, nd, "padding") for _ in range(2))


def convnd(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    stride: Any,
    padding: Any,
    dilation: Any,
    groups: int,
    nd: int,
) -> Tensor:
    """The shared body of conv1d/2d/3d."""
    name = f"conv{nd}d"
    if weight.dim() != nd + 2:
        raise ShapeError(f"{name}: expected a {nd + 2}-D weight, but got weight of size {list(weight.shape)}")
    x, unbatched = _batched(input, nd, name)
    st = ntuple(stride, nd, "stride")
    dil = ntuple(dilation, nd, "dilation")
    pad = _conv_padding(padding, nd, tuple(weight.shape[2:]), dil, st)
    y = apply(
        _op("conv"), (x, weight), {"stride": st, "padding": pad, "dilation": dil, "groups": int(groups)}
    )
    y = _add_bias(y, bias, nd)
    return y.squeeze(0) if unbatched else y


def conv1d(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    groups: int = 1,
) -> Tensor:
    """1-d convolution over (N, C, L) or (C, L)."""
    return convnd(input, weight, bias, stride, padding, dilation, groups, 1)


def conv2d(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    groups: int = 1,
) -> Tensor:
    """2-d convolution over (N, C, H, W) or (C, H, W)."""
    return convnd(input, weight, bias, stride, padding, dilation, groups, 2)


def conv3d(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    groups: int = 1,
) -> Tensor:
    """3-d convolution over (N, C, D, H, W) or (C, D, H, W)."""
    return convnd(input, weight, bias, stride, padding, dilation, groups, 3)


def conv_transposend(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    stride: Any,
    padding: Any,
    output_padding: Any,
    groups: int,
    dilation: Any,
    nd: int,
) -> Tensor:
    """The shared body of conv_transpose1d/2d/3d (the gradient of convnd with respect to its input)."""
    name = f"conv_transpose{nd}d"
    if weight.dim() != nd + 2:
        raise ShapeError(f"{name}: expected a {nd + 2}-D weight, but got weight of size {list(weight.shape)}")
    if isinstance(padding, str):
        raise ArgumentError(f"{name}: padding must be an int or a tuple of ints, got '{padding}'")
    x, unbatched = _batched(input, nd, name)
    attrs = {
        "stride": ntuple(stride, nd, "stride"),
        "padding": tuple(p for p in ntuple(padding, nd, "padding") for _ in range(2)),
        "output_padding": ntuple(output_padding, nd, "output_padding"),
        "dilation": ntuple(dilation, nd, "dilation"),
        "groups": int(groups),
    }
    y = apply(_op("conv_transpose"), (x, weight), attrs)
    y = _add_bias(y, bias, nd)
    return y.squeeze(0) if unbatched else y


def conv_transpose1d(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: Any = 1,
    padding: Any = 0,
    output_padding: Any = 0,
    groups: int = 1,
    dilation: Any = 1,
) -> Tensor:
    """1-d transposed convolution; weight is (C_in, C_out/groups, k)."""
    return conv_transposend(input, weight, bias, stride, padding, output_padding, groups, dilation, 1)


def conv_transpose2d(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: Any = 1,
    padding: Any = 0,
    output_padding: Any = 0,
    groups: int = 1,
    dilation: Any = 1,
) -> Tensor:
    """2-d transposed convolution; weight is (C_in, C_out/groups, kH, kW)."""
    return conv_transposend(input, weight, bias, stride, padding, output_padding, groups, dilation, 2)


def conv_transpose3d(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: Any = 1,
    padding: Any = 0,
    output_padding: Any = 0,
    groups: int = 1,
    dilation: Any = 1,
) -> Tensor:
    """3-d transposed convolution; weight is (C_in, C_out/groups, kD, kH, kW)."""
    return conv_transposend(input, weight, bias, stride, padding, output_padding, groups, dilation, 3)


def pad_by_mode(input: Tensor, pads: tuple[int, ...], mode: str) -> Tensor:
    """Pad the last len(pads)//2 dims ((lo, hi) per dim, first dim first) by 'reflect', 'replicate' or
    'circular', as an index_select with a constant index per dim (so the gradient is a scatter-add)."""
    import numpy as np
    from ember.creation import tensor

    nd = len(pads) // 2
    x = input
    for i in range(nd):
        dim = x.dim() - nd + i
        n = x.shape[dim]
        lo, hi = pads[2 * i], pads[2 * i + 1]
        if lo == 0 and hi == 0:
            continue
        pos = np.arange(-lo, n + hi)
        if mode == "reflect":
            if lo >= n or hi >= n:
                raise ShapeError(
                    f"Argument #4: Padding size should be less than the corresponding input"
                    f" dimension, but got: padding ({lo}, {hi}) at dimension {dim} of input"
                    f" {list(input.shape)}"
                )
            period = 2 * (n - 1) if n > 1 else 1
            pos = np.abs(pos) % period
            pos = np.where(pos >= n, period - pos, pos)
        elif mode == "replicate":
            pos = np.clip(pos, 0, n - 1)
        elif mode == "circular":
            if lo > n or hi > n:
                raise ShapeError("Padding value causes wrapping around more than once.")
            pos = pos % n
        else:
            raise ArgumentError(f"padding mode '{mode}' is not supported")
        x = x.index_select(dim, tensor(pos.astype(np.int64)))
    return x
