"""ember.cuda: device queries and transfers. Without a GPU or without cupy every entry point that needs one
raises DeviceError with the install hint; queries such as ``is_available()`` answer False."""

from __future__ import annotations

from typing import Any

from ember.runtime.errors import DeviceError

_HINT = 'install the CUDA extra with: pip install "ember[cuda]" (needs an NVIDIA GPU and driver)'


def _cupy() -> Any:
    try:
        import cupy
    except ImportError:
        raise DeviceError(f"CUDA tensors need cupy, which is not installed; {_HINT}") from None
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            raise DeviceError("no CUDA GPU is present")
    except Exception as e:  # cupy raises its own runtime error types without a driver
        if isinstance(e, DeviceError):
            raise
        raise DeviceError(f"CUDA is not usable here ({e}); {_HINT}") from None
    return cupy


def is_available() -> bool:
    try:
        _cupy()
    except DeviceError:
        return False
    return True


def device_count() -> int:
    return _cupy().cuda.runtime.getDeviceCount() if is_available() else 0


def current_device() -> int:
    return int(_cupy().cuda.Device().id)


def set_device(index: Any) -> None:
    _cupy().cuda.Device(int(str(index).split(":")[-1])).use()


def synchronize(device: Any = None) -> None:
    _cupy().cuda.Device().synchronize()


def manual_seed(seed: int) -> None:
    from ember.random import manual_seed as seed_all

    seed_all(seed)


manual_seed_all = manual_seed


def to_device(t: Any, target: Any) -> Any:
    """Copy a tensor across devices. The copy is a new leaf: gradients do not flow back across devices."""
    from ember.tensor import Tensor

    if target.type == "cuda":
        cp = _cupy()
        with cp.cuda.Device(target.index or 0):
            data = cp.asarray(t._data)
    else:
        data = t._data.get() if t._device.type == "cuda" else t._data
    out = Tensor._make(data, t.dtype, target)
    out.requires_grad = t.requires_grad and t.is_leaf
    return out
