"""Devices: ``ember.device("cpu")``, ``ember.device("cuda:0")``; and the array module of each."""

from __future__ import annotations

from typing import Any

from ember.runtime.errors import DeviceError


class device:  # noqa: N801  (PyTorch's name)
    __slots__ = ("type", "index")

    def __init__(self, spec: Any, index: int | None = None) -> None:
        if isinstance(spec, device):
            self.type, self.index = spec.type, spec.index
            return
        if not isinstance(spec, str):
            raise DeviceError(f"expected a device string like 'cpu' or 'cuda:0', got {spec!r}")
        kind, _, idx = spec.partition(":")
        if kind not in ("cpu", "cuda"):
            raise DeviceError(f"unknown device type {kind!r}; expected 'cpu' or 'cuda'")
        self.type = kind
        self.index = int(idx) if idx else index

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


def as_device(spec: Any) -> device:
    if spec is None:
        return CPU
    if isinstance(spec, device):
        return spec
    if isinstance(spec, int):
        return device("cuda", spec)
    return device(spec)


def array_module(dev: device) -> Any:
    """numpy for the CPU, cupy for CUDA (imported only when a CUDA tensor is first made)."""
    if dev.type == "cpu":
        import numpy

        return numpy
    from ember.cuda import _cupy

    return _cupy()
