"""Pooling layers (max, average, adaptive, fractional, power-average) and max-unpooling, 1d to 3d, with
PyTorch's arguments and reprs; each forward is one call to its functional twin.

>>> import ember
>>> ember.nn.MaxPool2d(2)
MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False)
"""

from __future__ import annotations

from typing import Any

import ember.nn.functional.pooling as P
from ember.nn.functional.conv import ntuple
from ember.nn.modules.module import Module
from ember.tensor import Tensor

__all__ = [
    "MaxPool1d",
    "MaxPool2d",
    "MaxPool3d",
    "AvgPool1d",
    "AvgPool2d",
    "AvgPool3d",
    "AdaptiveMaxPool1d",
    "AdaptiveMaxPool2d",
    "AdaptiveMaxPool3d",
    "AdaptiveAvgPool1d",
    "AdaptiveAvgPool2d",
    "AdaptiveAvgPool3d",
    "MaxUnpool1d",
    "MaxUnpool2d",
    "MaxUnpool3d",
    "LPPool1d",
    "LPPool2d",
    "FractionalMaxPool2d",
]


class _MaxPoolNd(Module):
    _nd = 0

    def __init__(
        self,
        kernel_size: Any,
        stride: Any = None,
        padding: Any = 0,
        dilation: Any = 1,
        return_indices: bool = False,
        ceil_mode: bool = False,
    ) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None and stride != [] else kernel_size
        self.padding = padding
        self.dilation = dilation
        self.return_indices = return_indices
        self.ceil_mode = ceil_mode

    def extra_repr(self) -> str:
        return (
            f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding},"
            f" dilation={self.dilation}, ceil_mode={self.ceil_mode}"
        )

    def forward(self, input: Tensor) -> Any:
        return P.max_poolnd(
            input,
            self.kernel_size,
            self.stride,
            self.padding,
            self.dilation,
            self.ceil_mode,
            self.return_indices,
            self._nd,
        )


class MaxPool1d(_MaxPoolNd):
    """Max over sliding windows of (N, C, L)."""

    _nd = 1


class MaxPool2d(_MaxPoolNd):
    """Max over sliding windows of (N, C, H, W)."""

    _nd = 2


class MaxPool3d(_MaxPoolNd):
    """Max over sliding windows of (N, C, D, H, W)."""

    _nd = 3


class _AvgPoolNd(Module):
    _nd = 0

    def __init__(
        self,
        kernel_size: Any,
        stride: Any = None,
        padding: Any = 0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
        divisor_override: int | None = None,
    ) -> None:
        super().__init__()
        stride = stride if stride is not None and stride != [] else kernel_size
        if self._nd == 1:  # AvgPool1d stores tuples, the others what they were given (as PyTorch)
            kernel_size, stride, padding = ntuple(kernel_size, 1), ntuple(stride, 1), ntuple(padding, 1)
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.ceil_mode = ceil_mode
        self.count_include_pad = count_include_pad
        if self._nd > 1:
            self.divisor_override = divisor_override

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"

    def forward(self, input: Tensor) -> Tensor:
        return P.avg_poolnd(
            input,
            self.kernel_size,
            self.stride,
            self.padding,
            self.ceil_mode,
            self.count_include_pad,
            getattr(self, "divisor_override", None),
            self._nd,
        )


class AvgPool1d(_AvgPoolNd):
    """Mean over sliding windows of (N, C, L)."""

    _nd = 1

    def __init__(
        self,
        kernel_size: Any,
        stride: Any = None,
        padding: Any = 0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
    ) -> None:
        super().__init__(kernel_size, stride, padding, ceil_mode, count_include_pad)


class AvgPool2d(_AvgPoolNd):
    """Mean over sliding windows of (N, C, H, W)."""

    _nd = 2


class AvgPool3d(_AvgPoolNd):
    """Mean over sliding windows of (N, C, D, H, W)."""

    _nd = 3


class _AdaptiveMaxPoolNd(Module):
    _nd = 0

    def __init__(self, output_size: Any, return_indices: bool = False) -> None:
        super().__init__()
        self.output_size = output_size
        self.return_indices = return_indices

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"

    def forward(self, input: Tensor) -> Any:
        return P.adaptive_max_poolnd(input, self.output_size, self.return_indices, self._nd)


class AdaptiveMaxPool1d(_AdaptiveMaxPoolNd):
    _nd = 1


class AdaptiveMaxPool2d(_AdaptiveMaxPoolNd):
    _nd = 2


class AdaptiveMaxPool3d(_AdaptiveMaxPoolNd):
    _nd = 3


class _AdaptiveAvgPoolNd(Module):
    _nd = 0

    def __init__(self, output_size: Any) -> None:
        super().__init__()
        self.output_size = output_size

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"

    def forward(self, input: Tensor) -> Tensor:
        return P.adaptive_avg_poolnd(input, self.output_size, self._nd)


class AdaptiveAvgPool1d(_AdaptiveAvgPoolNd):
    _nd = 1


class AdaptiveAvgPool2d(_AdaptiveAvgPoolNd):
    _nd = 2


class AdaptiveAvgPool3d(_AdaptiveAvgPoolNd):
    _nd = 3


class _MaxUnpoolNd(Module):
    _nd = 0

    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0) -> None:
        super().__init__()
        nd = self._nd
        self.kernel_size = ntuple(kernel_size, nd)
        self.stride = ntuple(stride if stride is not None else kernel_size, nd)
        self.padding = ntuple(padding, nd)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"

    def forward(self, input: Tensor, indices: Tensor, output_size: Any = None) -> Tensor:
        return P.max_unpoolnd(
            input, indices, self.kernel_size, self.stride, self.padding, output_size, self._nd
        )


class MaxUnpool1d(_MaxUnpoolNd):
    """Puts max_pool1d's values back at their indices, zeros elsewhere."""

    _nd = 1


class MaxUnpool2d(_MaxUnpoolNd):
    _nd = 2


class MaxUnpool3d(_MaxUnpoolNd):
    _nd = 3


class _LPPoolNd(Module):
    _nd = 0

    def __init__(
        self, norm_type: float, kernel_size: Any, stride: Any = None, ceil_mode: bool = False
    ) -> None:
        super().__init__()
        self.norm_type = norm_type
        self.kernel_size = kernel_size
        self.stride = stride
        self.ceil_mode = ceil_mode

    def extra_repr(self) -> str:
        return (
            f"norm_type={self.norm_type}, kernel_size={self.kernel_size}, stride={self.stride},"
            f" ceil_mode={self.ceil_mode}"
        )

    def forward(self, input: Tensor) -> Tensor:
        return P.lp_poolnd(input, self.norm_type, self.kernel_size, self.stride, self.ceil_mode, self._nd)


class LPPool1d(_LPPoolNd):
    """Power-average pooling: (sum of x**p over the window) ** (1/p)."""

    _nd = 1


class LPPool2d(_LPPoolNd):
    _nd = 2


class FractionalMaxPool2d(Module):
    """Max pooling over pseudo-random windows that shrink the input by a fractional ratio."""

    def __init__(
        self,
        kernel_size: Any,
        output_size: Any = None,
        output_ratio: Any = None,
        return_indices: bool = False,
        _random_samples: Tensor | None = None,
    ) -> None:
        super().__init__()
        from ember.runtime.errors import ArgumentError

        self.kernel_size = ntuple(kernel_size, 2)
        self.return_indices = return_indices
        self.register_buffer("_random_samples", _random_samples)
        self.output_size = ntuple(output_size, 2) if output_size is not None else None
        self.output_ratio = output_ratio
        if output_size is None and output_ratio is None:
            raise ArgumentError(
                "FractionalMaxPool2d requires specifying either an output size, or a pooling ratio"
            )
        if output_size is not None and output_ratio is not None:
            raise ArgumentError("only one of output_size and output_ratio may be specified")
        if output_ratio is not None:
            ratio = output_ratio if isinstance(output_ratio, (list, tuple)) else (output_ratio, output_ratio)
            if not all(0 < r < 1 for r in ratio):
                raise ArgumentError(f"output_ratio must be between 0 and 1 (got {output_ratio})")
            self.output_ratio = tuple(ratio)

    def forward(self, input: Tensor) -> Any:
        return P.fractional_max_pool2d(
            input,
            self.kernel_size,
            self.output_size,
            self.output_ratio,
            self.return_indices,
            _random_samples=self._random_samples,
        )
