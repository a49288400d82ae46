"""ember.cuda: GPUs through cupy. Device queries, the current device, streams and events, memory statistics,
seeding, device copies for ``Tensor.to`` and the ``comm`` helpers.

Without a GPU or without cupy, ``is_available()`` is False and ``device_count()`` is 0; entry points that
need a GPU raise ``DeviceError`` with the install hint. As in PyTorch, the calls that scripts make
unconditionally stay harmless without one: ``manual_seed``/``manual_seed_all`` seed the host generator
(CUDA tensors draw their random numbers there, so a seed gives the same numbers on every device),
``empty_cache`` does nothing, and the memory statistics read 0.

The array module is looked up in one place, ``ember.device.cuda_array_module()``; everything here asks it.
"""

from __future__ import annotations

from typing import Any

from ember.device import as_device, cuda_array_module, cuda_device
from ember.runtime.errors import DeviceError

_HINT = 'install the CUDA extra with: pip install "ember[cuda]" (needs an NVIDIA GPU and driver)'
_failure: str | None = None  # why cupy could not be used, remembered so is_available() stays cheap
_peak: dict[int, int] = {}  # device index -> most bytes in use at once, seen by the tracking allocator


def _find_cupy() -> Any:
    """Import cupy and check that it sees a GPU; ``DeviceError`` with the install hint otherwise."""
    global _failure
    if _failure is not None:
        raise DeviceError(_failure)
    try:
        import cupy
    except ImportError:
        _failure = f"CUDA tensors need cupy, which is not installed; {_HINT}"
        raise DeviceError(_failure) from None
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # noqa: BLE001  (cupy raises its own runtime error types without a driver)
        _failure = f"CUDA is not usable here ({e}); {_HINT}"
        raise DeviceError(_failure) from None
    if count < 1:
        _failure = f"no CUDA GPU is present; {_HINT}"
        raise DeviceError(_failure)
    _track_memory(cupy)
    return cupy


def _reset_state() -> None:
    """Forget what was found (called when the array module is replaced)."""
    global _failure
    _failure = None
    _peak.clear()
    from ember.device import _cuda_module

    if _cuda_module is not None:
        _track_memory(_cuda_module)


def _xp() -> Any:
    return cuda_array_module()


def is_available() -> bool:
    """Whether CUDA tensors can be made here (cupy installed and a GPU present)."""
    try:
        cuda_array_module()
    except DeviceError:
        return False
    return True


def is_initialized() -> bool:
    return is_available()


def device_count() -> int:
    return int(_xp().cuda.runtime.getDeviceCount()) if is_available() else 0


def current_device() -> int:
    return int(_xp().cuda.Device().id)


def _index(dev: Any) -> int:
    """The GPU index of an int, ``"cuda:1"``, ``device`` or ``None`` (the current GPU)."""
    if dev is None:
        return current_device()
    if isinstance(dev, int) and not isinstance(dev, bool):
        return dev
    d = as_device(dev)
    if d.type != "cuda":
        raise DeviceError(f"Expected a cuda device, but got: {d}")
    return int(d.index)


def set_device(dev: Any) -> None:
    _xp().cuda.Device(_index(dev)).use()


class device:  # noqa: N801  (PyTorch's name)
    """``with ember.cuda.device(1):`` makes GPU 1 current inside the block (``-1`` or ``None``: no change)."""

    def __init__(self, dev: Any) -> None:
        self.idx = -1 if dev is None or dev == -1 else _index(dev)
        self._ctx: Any = None
        if self.idx != -1:
            _xp()  # no GPU: DeviceError with the hint here, not later

    def __enter__(self) -> device:
        if self.idx != -1:
            self._ctx = _xp().cuda.Device(self.idx)
            self._ctx.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._ctx is not None:
            self._ctx.__exit__(*exc)
            self._ctx = None


def get_device_name(dev: Any = None) -> str:
    name = _xp().cuda.runtime.getDeviceProperties(_index(dev))["name"]
    return name.decode() if isinstance(name, bytes) else str(name)


def synchronize(dev: Any = None) -> None:
    """Wait for every kernel queued on the GPU (the current one unless ``dev`` is given)."""
    _xp().cuda.Device(_index(dev)).synchronize()


def manual_seed(seed: int) -> None:
    """Seed the generator CUDA tensors draw from: the host generator (see the module docstring)."""
    from ember.random import manual_seed as seed_all

    seed_all(seed)


manual_seed_all = manual_seed


# ---- memory ---------------------------------------------------------------------------------------------


def _track_memory(xp: Any) -> None:
    """Route cupy's allocations through the default pool with a peak counter: cupy keeps no peak, and
    peaks happen at allocations, so reading the pool's use after each one gives the exact maximum."""
    pool = xp.get_default_memory_pool()

    def malloc(size: int) -> Any:
        mem = pool.malloc(size)
        idx = int(xp.cuda.Device().id)
        used = int(pool.used_bytes())
        if used > _peak.get(idx, 0):
            _peak[idx] = used
        return mem

    xp.cuda.set_allocator(malloc)


def _pool_bytes(dev: Any, what: str) -> int:
    if not is_available():
        return 0
    xp = _xp()
    with xp.cuda.Device(_index(dev)):
        return int(getattr(xp.get_default_memory_pool(), what)())


def memory_allocated(device: Any = None) -> int:  # noqa: A002  (PyTorch's name)
    """Bytes held by live arrays on the GPU (0 without CUDA, as in PyTorch)."""
    return _pool_bytes(device, "used_bytes")


def memory_reserved(device: Any = None) -> int:  # noqa: A002
    """Bytes the memory pool holds from the driver, in use or cached for reuse."""
    return _pool_bytes(device, "total_bytes")


def max_memory_allocated(device: Any = None) -> int:  # noqa: A002
    """The most bytes in use at once since start or the last ``reset_peak_memory_stats``."""
    if not is_available():
        return 0
    idx = _index(device)
    return max(_peak.get(idx, 0), memory_allocated(idx))


def reset_peak_memory_stats(device: Any = None) -> None:  # noqa: A002
    idx = _index(device)
    _peak[idx] = memory_allocated(idx)


def empty_cache() -> None:
    """Give the pool's cached, unused blocks back to the driver (nothing to do without CUDA)."""
    if is_available():
        _xp().get_default_memory_pool().free_all_blocks()


# ---- streams and events --------------------------------------------------------------------------------


class Stream:
    """A CUDA stream (``priority`` is accepted for PyTorch's signature; cupy streams have none here)."""

    def __init__(self, device: Any = None, priority: int = 0, _native: Any = None) -> None:  # noqa: A002
        xp = _xp()
        if _native is not None:
            self.native = _native
        else:
            with xp.cuda.Device(_index(device)):
                self.native = xp.cuda.Stream(non_blocking=True)
        self.device = cuda_device(_index(device))

    def synchronize(self) -> None:
        self.native.synchronize()

    def query(self) -> bool:
        return bool(self.native.done)

    def wait_event(self, event: Event) -> None:
        self.native.wait_event(event.native)

    def wait_stream(self, stream: Stream) -> None:
        self.wait_event(stream.record_event())

    def record_event(self, event: Event | None = None) -> Event:
        event = Event() if event is None else event
        event.record(self)
        return event

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Stream) and self.native is other.native

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        return f"<ember.cuda.Stream device={self.device}>"


class Event:
    """A CUDA event: ``record`` on a stream, ``synchronize``, ``elapsed_time(end)`` in milliseconds."""

    def __init__(self, enable_timing: bool = False, blocking: bool = False, interprocess: bool = False) -> None:
        self.native = _xp().cuda.Event(block=blocking, disable_timing=not enable_timing,
                                       interprocess=interprocess)

    def record(self, stream: Stream | None = None) -> None:
        self.native.record(None if stream is None else stream.native)

    def synchronize(self) -> None:
        self.native.synchronize()

    def query(self) -> bool:
        return bool(self.native.done)

    def wait(self, stream: Stream | None = None) -> None:
        (current_stream() if stream is None else stream).wait_event(self)

    def elapsed_time(self, end: Event) -> float:
        return float(_xp().cuda.get_elapsed_time(self.native, end.native))


def current_stream(device: Any = None) -> Stream:  # noqa: A002
    xp = _xp()
    with xp.cuda.Device(_index(device)):
        return Stream(device, _native=xp.cuda.get_current_stream())


def default_stream(device: Any = None) -> Stream:  # noqa: A002
    return Stream(device, _native=_xp().cuda.Stream.null)


class stream:  # noqa: N801  (PyTorch's name)
    """``with ember.cuda.stream(s):`` queues the block's GPU work on ``s`` (``None``: no change)."""

    def __init__(self, s: Stream | None) -> None:
        self.s = s

    def __enter__(self) -> Stream | None:
        if self.s is not None:
            self.s.native.__enter__()
        return self.s

    def __exit__(self, *exc: Any) -> None:
        if self.s is not None:
            self.s.native.__exit__(*exc)


# ---- device copies -----------------------------------------------------------------------------------


def copy_array(data: Any, source: Any, target: Any) -> Any:
    """``data`` (an array on ``source``) copied to ``target``: host->GPU, GPU->host or GPU->GPU."""
    if target.type == "cpu":
        return data if source.type == "cpu" else _xp().asnumpy(data)
    xp = _xp()
    with xp.cuda.Device(target.index):
        return xp.array(data, copy=True) if source is target else xp.asarray(data)


def to_device(t: Any, target: Any) -> Any:
    """``t`` copied to device ``target``; differentiable (the gradient is copied back), like PyTorch's."""
    from ember._state import STATE

    if t.requires_grad and STATE.grad_enabled:
        from ember.cuda._transfer import ToDevice

        return ToDevice.apply(t, target)
    from ember.tensor import Tensor

    return Tensor._make(copy_array(t._data, t._device, target), t._dtype, target)


from ember.cuda import comm  # noqa: E402,F401  (comm uses the functions above)
