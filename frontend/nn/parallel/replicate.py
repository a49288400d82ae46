"""Copies of a module on other devices that still train the original."""

from __future__ import annotations

from typing import Any

from ember.nn.parallel.scatter_gather import to_device


def replicate(network: Any, devices: list[Any]) -> list[Any]:
    """One replica of ``network`` per device. A replica is a shallow copy of each submodule whose
    parameters are differentiable device copies of the originals (so gradients flow back into the
    original parameters and accumulate there) and whose buffers are plain copies; a device the network
    already lives on gets copies that are the original tensors."""
    return [_replica(network, dev) for dev in devices]


def _replica(module: Any, dev: Any) -> Any:
    replica = module.__class__.__new__(module.__class__)
    replica.__dict__.update(module.__dict__)
    d = replica.__dict__
    d["_parameters"] = {k: None if p is None else to_device(p, dev) for k, p in module._parameters.items()}
    d["_buffers"] = {k: None if b is None else to_device(b.detach(), dev) for k, b in module._buffers.items()}
    d["_modules"] = {k: None if m is None else _replica(m, dev) for k, m in module._modules.items()}
    return replica
