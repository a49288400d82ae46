"""``DataParallel``: split the batch over the GPUs present, run a replica of the module on each, gather the
outputs on one device. Replicas read the original parameters through differentiable device copies, so
gradients accumulate into the original module, as in PyTorch. Without CUDA it calls the module."""

from __future__ import annotations

from typing import Any

from ember.autograd.function import Function
from ember.nn.modules.module import Module
from ember.runtime.errors import DeviceError
from ember.tensor import Tensor


class _ToDevice(Function):
    """A device copy that autograd sees: the gradient is copied back to the source device."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, target: Any) -> Tensor:
        ctx.source = x.device
        return x.to(target)

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Any, None]:
        return g.to(ctx.source), None


def to_device(x: Any, target: Any) -> Any:
    """Move a tensor (differentiably) or leave any other value as is."""
    if not isinstance(x, Tensor) or x.device == target:
        return x
    return _ToDevice.apply(x, target)


def scatter(inputs: tuple[Any, ...], devices: list[Any], dim: int) -> list[tuple[Any, ...]]:
    """Split each tensor input into ``len(devices)`` chunks along ``dim`` (fewer when the batch is
    smaller) and send chunk i to device i; other values go to every replica unchanged."""
    sizes = [x.shape[dim] for x in inputs if isinstance(x, Tensor)]
    n = min([len(devices)] + sizes) if sizes else 1
    per_input = [x.chunk(n, dim) if isinstance(x, Tensor) else [x] * n for x in inputs]
    n = min([n] + [len(c) for c in per_input])
    return [tuple(to_device(c[i], devices[i]) for c in per_input) for i in range(n)]


def replicate(module: Module, device: Any) -> Module:
    """A shallow copy of ``module`` (recursively) whose parameters are differentiable copies on
    ``device`` and whose buffers are plain copies there."""
    replica = module.__class__.__new__(module.__class__)
    replica.__dict__.update(module.__dict__)
    d = replica.__dict__
    d["_parameters"] = {k: None if p is None else to_device(p, device) for k, p in module._parameters.items()}
    d["_buffers"] = {k: None if b is None else b.detach().to(device) for k, b in module._buffers.items()}
    d["_modules"] = {k: None if m is None else replicate(m, device) for k, m in module._modules.items()}
    return replica


def gather(outputs: list[Any], device: Any, dim: int) -> Any:
    """Concatenate per-replica outputs (tensors, or tuples/lists/dicts of them) on ``device``."""
    from ember import cat

    first = outputs[0]
    if isinstance(first, Tensor):
        return cat([to_device(o, device) for o in outputs], dim) if first.ndim else \
            cat([to_device(o, device).reshape(1) for o in outputs], 0)
    if isinstance(first, dict):
        return {k: gather([o[k] for o in outputs], device, dim) for k in first}
    if isinstance(first, (tuple, list)):
        return type(first)(gather(list(parts), device, dim) for parts in zip(*outputs))
    return first


class DataParallel(Module):
    """``DataParallel(module, device_ids=None, output_device=None, dim=0)``: the module's parameters must
    live on ``device_ids[0]``; each forward scatters the inputs along ``dim``."""

    def __init__(self, module: Module, device_ids: list[Any] | None = None, output_device: Any = None,
                 dim: int = 0) -> None:
        from ember import cuda

        super().__init__()
        self.module = module
        self.dim = dim
        if not cuda.is_available():
            self.device_ids: list[int] = []
            self.output_device = None
            return
        ids = list(range(cuda.device_count())) if device_ids is None else device_ids
        self.device_ids = [_index(d) for d in ids]
        self.output_device = _index(output_device if output_device is not None else self.device_ids[0])

    def forward(self, *inputs: Any, **kwargs: Any) -> Any:
        if not self.device_ids:
            return self.module(*inputs, **kwargs)
        from ember.device import device

        devices = [device("cuda", i) for i in self.device_ids]
        for t in list(self.module.parameters()) + list(self.module.buffers()):
            if t.device != devices[0]:
                raise DeviceError(
                    f"module must have its parameters and buffers on device {devices[0]} (device_ids[0]) but"
                    f" found one of them on device: {t.device}"
                )
        chunks = scatter(inputs, devices, self.dim)
        if kwargs:
            raise DeviceError("DataParallel: keyword arguments to forward are not scattered by ember")
        replicas = [self.module] + [replicate(self.module, dev) for dev in devices[1:len(chunks)]]
        outputs = [replica(*chunk) for replica, chunk in zip(replicas, chunks)]
        return gather(outputs, device("cuda", self.output_device), self.dim)


def _index(d: Any) -> int:
    if isinstance(d, int):
        return d
    index = getattr(d, "index", None)
    if index is None and isinstance(d, str):
        index = int(d.split(":")[1]) if ":" in d else 0
    return int(index or 0)


__all__ = ["DataParallel"]
