"""Split inputs over devices and join outputs again; both directions are differentiable (they are
``chunk``/``cat`` and device copies, which autograd records)."""

from __future__ import annotations

from typing import Any

from ember.tensor import Tensor


def to_device(x: Any, target: Any) -> Any:
    """Move a tensor (differentiably) or leave any other value as is."""
    if not isinstance(x, Tensor) or x.device == target:
        return x
    return x.to(target)


def _split(x: Any, n: int, dim: int) -> list[Any]:
    """``x`` cut into ``n`` pieces for ``n`` devices; tensors, and tuples, lists and dicts of them, are
    split; any other value goes to every device as is."""
    if isinstance(x, Tensor):
        return list(x.chunk(n, dim))
    if isinstance(x, (tuple, list)) and x:
        parts = [_split(v, n, dim) for v in x]
        count = min(len(p) for p in parts)
        return [type(x)(p[i] for p in parts) for i in range(count)]
    if isinstance(x, dict) and x:
        parts_of = {k: _split(v, n, dim) for k, v in x.items()}
        count = min(len(p) for p in parts_of.values())
        return [{k: p[i] for k, p in parts_of.items()} for i in range(count)]
    return [x] * n


def _send(x: Any, target: Any) -> Any:
    if isinstance(x, (tuple, list)):
        return type(x)(_send(v, target) for v in x)
    if isinstance(x, dict):
        return {k: _send(v, target) for k, v in x.items()}
    return to_device(x, target)


def scatter(inputs: Any, devices: list[Any], dim: int = 0) -> list[Any]:
    """Piece i of ``inputs`` (a tuple of arguments) on device i: tensors are chunked along ``dim``, so a
    batch smaller than the device list uses fewer devices, as in PyTorch."""
    pieces = _split(tuple(inputs), len(devices), dim)
    return [_send(p, d) for p, d in zip(pieces, devices)]


def scatter_kwargs(inputs: Any, kwargs: dict[str, Any] | None, devices: list[Any],
                   dim: int = 0) -> tuple[list[Any], list[dict[str, Any]]]:
    """``scatter`` for positional and keyword arguments together; the shorter list is padded so that each
    replica gets both."""
    args = scatter(inputs, devices, dim) if inputs else []
    kws = scatter((kwargs,), devices, dim) if kwargs else []
    kws = [k[0] for k in kws]
    n = max(len(args), len(kws))
    args += [()] * (n - len(args))
    kws += [{}] * (n - len(kws))
    return args, kws


def gather(outputs: list[Any], target_device: Any, dim: int = 0) -> Any:
    """Concatenate per-replica outputs (tensors, or tuples/lists/dicts of them) on ``target_device``;
    0-d outputs (a per-replica loss) become a vector with one entry per replica, as in PyTorch."""
    from ember import cat

    first = outputs[0]
    if isinstance(first, Tensor):
        moved = [to_device(o, target_device) for o in outputs]
        return cat(moved, dim) if first.ndim else cat([o.reshape(1) for o in moved], 0)
    if isinstance(first, dict):
        return type(first)((k, gather([o[k] for o in outputs], target_device, dim)) for k in first)
    if isinstance(first, (tuple, list)):
        return type(first)(gather(list(parts), target_device, dim) for parts in zip(*outputs))
    return first
