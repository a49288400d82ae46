"""Devices: ``ember.device("cpu")``, ``ember.device("cuda:0")``; and the array module of each.

Tensors hold canonical device objects (``CPU``, or one object per CUDA index, always with its index), so
the dispatcher's same-device check is an identity test on the hot path and ``t.device`` prints
``cuda:0`` as PyTorch's does. The array module of a device is numpy for the CPU and, for CUDA, whatever
``cuda_array_module()`` answers: the one place that looks up cupy (and where tests install a stand-in).
"""

from __future__ import annotations

from typing import Any

from ember.runtime.errors import DeviceError


class device:  # noqa: N801  (PyTorch's name)
    """``device("cuda:1")``, ``device("cuda", 1)``, ``device("cpu")``; ``device(other_device)`` copies."""

    __slots__ = ("type", "index")

    def __init__(self, spec: Any, index: int | None = None) -> None:
        if isinstance(spec, device):
            self.type, self.index = spec.type, spec.index
            return
        if isinstance(spec, int) and not isinstance(spec, bool):
            spec, index = "cuda", spec
        if not isinstance(spec, str):
            raise DeviceError(f"expected a device string like 'cpu' or 'cuda:0', got {spec!r}")
        kind, colon, idx = spec.partition(":")
        if kind not in ("cpu", "cuda"):
            raise DeviceError(
                f"Expected one of cpu, cuda device type at start of device string: {spec}"
            )
        if colon:
            if not idx.isdigit():
                raise DeviceError(f"Invalid device string: '{spec}'")
            if index is not None:
                raise DeviceError(f"device(): type (string) must not include an index because index was"
                                  f" passed explicitly: {spec}")
            index = int(idx)
        if index is not None and index < 0:
            raise DeviceError(f"Device index must not be negative, got {index}")
        self.type = kind
        self.index = index

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):
            other = device(other)
        return isinstance(other, device) and (self.type, self.index or 0) == (other.type, other.index or 0)

    def __hash__(self) -> int:
        return hash((self.type, self.index or 0))

    def __str__(self) -> str:
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def __repr__(self) -> str:
        idx = "" if self.index is None else f", index={self.index}"
        return f"device(type='{self.type}'{idx})"


CPU = device("cpu")
_CUDA: dict[int, device] = {}  # index -> the canonical device object tensors hold


def cuda_device(index: int) -> device:
    """The canonical ``cuda:index`` object."""
    dev = _CUDA.get(index)
    if dev is None:
        dev = _CUDA[index] = device("cuda", index)
    return dev


def as_device(spec: Any) -> device:
    """A canonical device for any spelling: ``None`` and ``"cpu"`` give ``CPU``; ``"cuda"`` (no index)
    gives the current GPU, as PyTorch's tensors do."""
    if spec is None or spec is CPU or spec == "cpu":
        return CPU
    dev = spec if isinstance(spec, device) else device(spec)
    if dev.type == "cpu":
        return CPU
    index = dev.index
    if index is None:
        from ember import cuda

        index = cuda.current_device()
    return cuda_device(index)


_cuda_module: Any = None  # the CUDA array module once found (cupy, or a stand-in a test installed)


def cuda_array_module() -> Any:
    """The array module of CUDA tensors: cupy, found once. Raises ``DeviceError`` with the install hint
    when cupy or a GPU is missing. Tests replace it with ``set_cuda_array_module``."""
    mod = _cuda_module
    if mod is None:
        from ember.cuda import _find_cupy

        mod = _set(_find_cupy())
    return mod


def _set(mod: Any) -> Any:
    global _cuda_module
    _cuda_module = mod
    return mod


def set_cuda_array_module(module: Any) -> Any:
    """Use ``module`` (cupy's API: asarray, asnumpy, ndarray, cuda.Device, ...) for CUDA tensors, or go back
    to looking up cupy with ``None``; returns the module used before. For tests without a GPU."""
    previous = _cuda_module
    _set(module)
    from ember import cuda

    cuda._reset_state()
    return previous


def array_module(dev: device) -> Any:
    """numpy for the CPU, cupy for CUDA (imported only when a CUDA tensor is first made)."""
    if dev.type == "cpu":
        import numpy

        return numpy
    return cuda_array_module()
