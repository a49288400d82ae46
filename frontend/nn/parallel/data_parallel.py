"""``DataParallel``: split the batch over the GPUs, run a replica of the module on each, gather the outputs
on one device. Replicas read the original parameters through differentiable device copies, so gradients
accumulate in the original module, as in PyTorch. Without CUDA it just calls the module (PyTorch's
behaviour on a CPU-only machine); with one GPU it moves the inputs there and calls the module."""

from __future__ import annotations

from typing import Any

from ember.nn.modules.module import Module
from ember.nn.parallel.parallel_apply import parallel_apply
from ember.nn.parallel.replicate import replicate
from ember.nn.parallel.scatter_gather import gather, scatter_kwargs
from ember.runtime.errors import DeviceError


def _index(d: Any) -> int:
    """The GPU index of ``1``, ``"cuda:1"`` or ``device("cuda", 1)`` (``"cuda"``: the current GPU)."""
    from ember import cuda

    return cuda._index(d)


class DataParallel(Module):
    """``DataParallel(module, device_ids=None, output_device=None, dim=0)``: ``device_ids`` defaults to
    every GPU; the module's parameters and buffers must be on ``device_ids[0]``."""

    def __init__(self, module: Module, device_ids: list[Any] | None = None, output_device: Any = None,
                 dim: int = 0) -> None:
        from ember import cuda

        super().__init__()
        self.module = module
        self.dim = dim
        if not cuda.is_available():
            self.device_ids: list[int] = []
            self.output_device: int | None = None
            return
        ids = list(range(cuda.device_count())) if device_ids is None else list(device_ids)
        self.device_ids = [_index(d) for d in ids]
        self.output_device = _index(output_device if output_device is not None else self.device_ids[0])

    def forward(self, *inputs: Any, **kwargs: Any) -> Any:
        if not self.device_ids:
            return self.module(*inputs, **kwargs)
        from ember.device import cuda_device

        devices = [cuda_device(i) for i in self.device_ids]
        for t in list(self.module.parameters()) + list(self.module.buffers()):
            if t.device != devices[0]:
                raise DeviceError(
                    f"module must have its parameters and buffers on device {devices[0]} (device_ids[0]) but"
                    f" found one of them on device: {t.device}"
                )
        args, kws = scatter_kwargs(inputs, kwargs, devices, self.dim)
        if not args:  # no inputs at all: run once on the first device
            args, kws = [()], [{}]
        if len(devices) == 1:  # as in PyTorch: no replica and no gather, the output stays where it is
            return self.module(*args[0], **kws[0])
        replicas = [self.module] + replicate(self.module, devices[1:len(args)])
        outputs = parallel_apply(replicas, args, kws, devices[:len(args)])
        return gather(outputs, cuda_device(self.output_device), self.dim)


def data_parallel(module: Module, inputs: Any, device_ids: list[Any] | None = None, output_device: Any = None,
                  dim: int = 0, module_kwargs: dict[str, Any] | None = None) -> Any:
    """The functional form: one ``DataParallel`` call of ``module`` on ``inputs``."""
    inputs = inputs if isinstance(inputs, tuple) else (inputs,)
    return DataParallel(module, device_ids, output_device, dim)(*inputs, **(module_kwargs or {}))
