"""The differentiable device copy behind ``Tensor.to(device)`` when the tensor requires grad."""

from __future__ import annotations

from typing import Any

from ember.autograd.function import Function


class ToDevice(Function):
    """Forward copies to ``target``; backward copies the gradient back to the source device, so a
    leaf on the CPU used on the GPU receives a CPU ``.grad``, as in PyTorch."""

    @staticmethod
    def forward(ctx: Any, x: Any, target: Any) -> Any:
        from ember.cuda import copy_array
        from ember.tensor import Tensor

        ctx.source = x._device
        return Tensor._make(copy_array(x._data, x._device, target), x._dtype, target)

    @staticmethod
    def backward(ctx: Any, g: Any) -> tuple[Any, None]:
        return g.to(ctx.source), None
