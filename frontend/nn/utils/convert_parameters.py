"""Flatten parameters into one vector and back (for optimizers and second-order methods)."""

from __future__ import annotations

from collections.abc import Iterable

from ember.runtime.errors import DeviceError, ShapeError
from ember.tensor import Tensor


def parameters_to_vector(parameters: Iterable[Tensor]) -> Tensor:
    """Concatenate the flattened parameters into one 1-d tensor (differentiable)."""
    from ember import cat

    params = list(parameters)
    device = params[0].device if params else None
    for p in params:
        if p.device != device:
            raise DeviceError("Found two parameters on different devices, this is currently not supported.")
    return cat([p.reshape(-1) for p in params])


def vector_to_parameters(vec: Tensor, parameters: Iterable[Tensor]) -> None:
    """Copy consecutive slices of ``vec`` into the parameters' data."""
    if not isinstance(vec, Tensor):
        raise TypeError(f"expected torch.Tensor, but got: {type(vec).__name__}")
    params = list(parameters)
    total = sum(p.numel() for p in params)
    if vec.ndim != 1 or vec.numel() != total:
        raise ShapeError(f"vector_to_parameters: vector of shape {list(vec.shape)} does not hold the {total}"
                         " elements of the parameters")
    pointer = 0
    for p in params:
        n = p.numel()
        p.data = vec[pointer:pointer + n].detach().reshape(tuple(p.shape)).clone()
        pointer += n


__all__ = ["parameters_to_vector", "vector_to_parameters"]
