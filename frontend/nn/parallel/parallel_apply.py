"""Run each replica on its own inputs."""

from __future__ import annotations

from typing import Any


def parallel_apply(modules: list[Any], inputs: list[Any], kwargs_tup: list[dict[str, Any]] | None = None,
                   devices: list[Any] | None = None) -> list[Any]:
    """``modules[i](*inputs[i], **kwargs_tup[i])`` with device i current, for every i.

    The calls are issued one after another from this thread: GPU work is queued asynchronously, so the
    GPUs still compute at the same time, and ember's grad mode stays consistent (PyTorch uses a thread per
    device)."""
    from ember import cuda

    if len(modules) != len(inputs):
        raise ValueError(f"parallel_apply: {len(modules)} modules but {len(inputs)} inputs")
    kwargs_tup = kwargs_tup or [{}] * len(modules)
    outputs = []
    for i, (module, args) in enumerate(zip(modules, inputs)):
        args = args if isinstance(args, (tuple, list)) else (args,)
        dev = devices[i] if devices is not None else None
        if dev is not None and getattr(dev, "type", "cuda") == "cuda":
            with cuda.device(dev):
                outputs.append(module(*args, **kwargs_tup[i]))
        else:
            outputs.append(module(*args, **kwargs_tup[i]))
    return outputs
