"""Convolution layers: Conv1d/2d/3d and ConvTranspose1d/2d/3d with PyTorch's arguments, parameter layout,
initialization rule and repr.

>>> import ember
>>> ember.nn.Conv2d(3, 64, 3)
Conv2d(3, 64, kernel_size=(3, 3), stride=(1, 1))
"""

from __future__ import annotations

import math
from typing import Any

from ember.nn.functional.conv import _conv_padding, conv_transposend, convnd, ntuple, pad_by_mode
from ember.nn.modules.module import Module
from ember.nn.parameter import Parameter
from ember.runtime.errors import ArgumentError, ShapeError
from ember.tensor import Tensor

__all__ = ["Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d"]

_PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def uniform_parameter(
    shape: tuple[int, ...], bound: float, dtype: Any = None, device: Any = None
) -> Parameter:
    """A parameter drawn from U(-bound, bound): PyTorch's default layer initialization
    (kaiming_uniform with a=sqrt(5) reduces to bound = 1/sqrt(fan_in))."""
    from ember.creation import rand

    with_grad = rand(*shape, dtype=dtype, device=device) * (2 * bound) - bound
    return Parameter(with_grad.detach())


def _module_padding(padding: Any, stride: tuple[int, ...], nd: int) -> Any:
    """'same'/'valid' as given (PyTorch keeps the string), numbers as a tuple per dim."""
    if not isinstance(padding, str):
        return ntuple(padding, nd, "padding")
    if padding not in ("same", "valid"):
        raise ArgumentError(f"Invalid padding string '{padding}', should be one of ['valid', 'same']")
    if padding == "same" and any(s != 1 for s in stride):
        raise ArgumentError("padding='same' is not supported for strided convolutions")
    return padding


class _ConvNd(Module):
    _nd = 0
    _transposed = False

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Any,
        stride: Any,
        padding: Any,
        dilation: Any,
        groups: int,
        bias: bool,
        padding_mode: str,
        output_padding: Any = 0,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        nd = self._nd
        if groups <= 0:
            raise ArgumentError("groups must be a positive integer")
        if in_channels % groups:
            raise ArgumentError("in_channels must be divisible by groups")
        if out_channels % groups:
            raise ArgumentError("out_channels must be divisible by groups")
        if padding_mode not in _PADDING_MODES:
            raise ArgumentError(
                f"padding_mode must be one of {list(_PADDING_MODES)}, but got padding_mode='{padding_mode}'"
            )
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = ntuple(kernel_size, nd, "kernel_size")
        self.stride = ntuple(stride, nd, "stride")
        self.dilation = ntuple(dilation, nd, "dilation")
        self.padding = _module_padding(padding, self.stride, nd)
        self.output_padding = ntuple(output_padding, nd, "output_padding")
        self.transposed = self._transposed
        self.padding_mode = padding_mode
        # (lo, hi) per dim, first dim first; used by the non-zero padding modes
        self._pads = _conv_padding(self.padding, nd, self.kernel_size, self.dilation, self.stride)
        if self._transposed:
            shape = (in_channels, out_channels // groups) + self.kernel_size
        else:
            shape = (out_channels, in_channels // groups) + self.kernel_size
        fan_in = shape[1] * math.prod(self.kernel_size)
        bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        self.weight = uniform_parameter(shape, bound, dtype, device)
        if bias:
            self.bias = uniform_parameter((out_channels,), bound, dtype, device)
        else:
            self.register_parameter("bias", None)

    def extra_repr(self) -> str:
        nd = self._nd
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0,) * nd:
            s += f", padding={self.padding}"
        if self.dilation != (1,) * nd:
            s += f", dilation={self.dilation}"
        if self.output_padding != (0,) * nd:
            s += f", output_padding={self.output_padding}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode}"
        return s


class _Conv(_ConvNd):
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Any,
        stride: Any = 1,
        padding: Any = 0,
        dilation: Any = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding,
            dilation,
            groups,
            bias,
            padding_mode,
            0,
            device,
            dtype,
        )

    def forward(self, input: Tensor) -> Tensor:
        if self.padding_mode != "zeros":
            x = pad_by_mode(input, self._pads, self.padding_mode)
            return convnd(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups, self._nd)
        return convnd(
            input, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups, self._nd
        )


class Conv1d(_Conv):
    """1-d convolution over (N, C_in, L)."""

    _nd = 1


class Conv2d(_Conv):
    """2-d convolution over (N, C_in, H, W)."""

    _nd = 2


class Conv3d(_Conv):
    """3-d convolution over (N, C_in, D, H, W)."""

    _nd = 3


class _ConvTranspose(_ConvNd):
    _transposed = True

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Any,
        stride: Any = 1,
        padding: Any = 0,
        output_padding: Any = 0,
        groups: int = 1,
        bias: bool = True,
        dilation: Any = 1,
        padding_mode: str = "zeros",
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        if padding_mode != "zeros":
            raise ArgumentError(f'Only "zeros" padding mode is supported for {type(self).__name__}')
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding,
            dilation,
            groups,
            bias,
            padding_mode,
            output_padding,
            device,
            dtype,
        )

    def _output_padding(self, input: Tensor, output_size: Any) -> tuple[int, ...]:
        """The output_padding that reaches ``output_size`` (PyTorch's rule, with its error message)."""
        if output_size is None:
            return self.output_padding
        nd = self._nd
        size = [int(s) for s in output_size][-nd:]
        spatial = list(input.shape[-nd:])
        out = []
        for i in range(nd):
            lo = (
                (spatial[i] - 1) * self.stride[i]
                - 2 * self.padding[i]
                + self.dilation[i] * (self.kernel_size[i] - 1)
                + 1
            )
            hi = lo + self.stride[i] - 1
            if not lo <= size[i] <= hi:
                raise ShapeError(
                    f"requested an output size of {size}, but valid sizes range from"
                    f" {[lo]} to {[hi]} (for an input of {spatial})"
                )
            out.append(size[i] - lo)
        return tuple(out)

    def forward(self, input: Tensor, output_size: Any = None) -> Tensor:
        op = self._output_padding(input, output_size)
        return conv_transposend(
            input, self.weight, self.bias, self.stride, self.padding, op, self.groups, self.dilation, self._nd
        )


class ConvTranspose1d(_ConvTranspose):
    """1-d transposed convolution (the gradient of Conv1d with respect to its input)."""

    _nd = 1


class ConvTranspose2d(_ConvTranspose):
    """2-d transposed convolution (the gradient of Conv2d with respect to its input)."""

    _nd = 2


class ConvTranspose3d(_ConvTranspose):
    """3-d transposed convolution (the gradient of Conv3d with respect to its input)."""

    _nd = 3
