"""``ember.cuda.comm``: copy tensors between GPUs (``broadcast``, ``scatter``, ``gather``, ``reduce_add``).

Over cupy arrays; with several GPUs and cupy's NCCL bindings, ``broadcast`` and ``reduce_add`` use one NCCL
communicator per device set (``nccl=False`` or no NCCL: device-to-device copies and additions, which give
the same numbers). With one GPU every helper still works; the device lists just name GPU 0.
These helpers move data only: like PyTorch's, they are not recorded for autograd.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ember.device import as_device, cuda_device
from ember.runtime.errors import ArgumentError, DeviceError, ShapeError


def _devices(devices: Sequence[Any], op: str) -> list[Any]:
    from ember import cuda

    if not cuda.is_available():
        cuda._xp()  # raises DeviceError with the install hint
    out = []
    for d in devices:
        dev = cuda_device(d) if isinstance(d, int) else as_device(d)
        if dev.type != "cuda":
            raise DeviceError(f"{op}: expected CUDA devices, got {dev}")
        out.append(dev)
    if not out:
        raise ArgumentError(f"{op}: expected at least one device")
    return out


def _to(t: Any, dev: Any) -> Any:
    from ember.cuda import copy_array
    from ember.tensor import Tensor

    return Tensor._make(copy_array(t._data, t._device, dev), t._dtype, dev)


def _current(dev: Any) -> Any:
    """cupy works on the current GPU only: make ``dev`` current (host: nothing to do)."""
    import contextlib

    from ember.device import cuda_array_module

    return cuda_array_module().cuda.Device(dev.index) if dev.type == "cuda" else contextlib.nullcontext()


def _assign(out: Any, src: Any) -> None:
    """Write ``src`` into ``out`` in place, across devices, casting to ``out``'s dtype."""
    moved = _to(src, out._device)._data
    with _current(out._device):
        out._data[...] = moved
    out._version[0] += 1


def broadcast(tensor: Any, devices: Sequence[Any] | None = None, *, out: Sequence[Any] | None = None) -> tuple:
    """A copy of ``tensor`` on each device of ``devices`` (or into each tensor of ``out``)."""
    if (devices is None) == (out is None):
        raise ArgumentError("broadcast: exactly one of 'devices' and 'out' must be given")
    if out is not None:
        for o in out:
            if tuple(o.shape) != tuple(tensor.shape):
                raise ShapeError(f"broadcast: output of shape {list(o.shape)} does not match the input's"
                                 f" {list(tensor.shape)}")
            _assign(o, tensor)
        return tuple(out)
    devs = _devices(devices, "broadcast")
    nccl = _nccl(devs)
    if nccl is not None and tensor._device in devs:
        return tuple(nccl.broadcast(tensor, devs))
    return tuple(_to(tensor, d) for d in devs)


def scatter(tensor: Any, devices: Sequence[Any] | None = None, chunk_sizes: Sequence[int] | None = None,
            dim: int = 0, streams: Any = None, *, out: Sequence[Any] | None = None) -> tuple:
    """Split ``tensor`` along ``dim`` (evenly, or by ``chunk_sizes``) and put piece i on device i."""
    if out is not None:
        pieces = tensor.split([o.shape[dim] for o in out], dim)
        for o, p in zip(out, pieces):
            _assign(o, p)
        return tuple(out)
    if devices is None:
        raise ArgumentError("scatter: 'devices' must be given when 'out' is not")
    devs = _devices(devices, "scatter")
    if chunk_sizes is not None:
        if len(chunk_sizes) != len(devs) or sum(chunk_sizes) != tensor.shape[dim]:
            raise ArgumentError(f"scatter: chunk_sizes {list(chunk_sizes)} must have one size per device and"
                                f" sum to the size {tensor.shape[dim]} of dim {dim}")
        pieces = tensor.split(list(chunk_sizes), dim)
    else:
        pieces = tensor.chunk(len(devs), dim)
    return tuple(_to(p.contiguous(), d) for p, d in zip(pieces, devs))


def gather(tensors: Sequence[Any], dim: int = 0, destination: Any = None, *, out: Any = None) -> Any:
    """Concatenate ``tensors`` (one per GPU) along ``dim`` on ``destination`` (default: the current GPU;
    ``"cpu"`` or ``-1`` for the host)."""
    from ember import cat, cuda

    if not tensors:
        raise ArgumentError("gather: expected at least one tensor")
    if out is not None:
        dest = out._device
    elif destination == -1:
        dest = as_device("cpu")
    elif destination is None:
        dest = cuda_device(cuda.current_device())
    else:
        dest = cuda_device(destination) if isinstance(destination, int) else as_device(destination)
    result = cat([_to(t, dest) for t in tensors], dim)
    if out is not None:
        _assign(out, result)
        return out
    return result


def reduce_add(inputs: Sequence[Any], destination: Any = None) -> Any:
    """The elementwise sum of ``inputs`` (same shape, one per GPU) on ``destination`` (default: the
    current GPU)."""
    from ember import cuda

    if not inputs:
        raise ArgumentError("reduce_add: expected at least one tensor")
    shape = tuple(inputs[0].shape)
    for t in inputs:
        if tuple(t.shape) != shape:
            raise ShapeError(f"reduce_add: input of shape {list(t.shape)} does not match the first input's"
                             f" {list(shape)}")
    dest = cuda_device(cuda.current_device() if destination is None else
                       destination if isinstance(destination, int) else as_device(destination).index)
    devs = _devices([t._device for t in inputs], "reduce_add")
    nccl = _nccl(devs)
    if nccl is not None and dest in devs:
        return nccl.reduce_add(inputs, dest)
    total = _to(inputs[0], dest)  # always a fresh array (a same-device copy copies), so += is safe
    with _current(dest):
        for t in inputs[1:]:
            total._data += _to(t, dest)._data
    return total


# ---- NCCL ---------------------------------------------------------------------------------------------


class _Nccl:
    """One NCCL communicator per GPU of a device set, initialized together."""

    def __init__(self, xp: Any, nccl: Any, devs: list[Any]) -> None:
        self.xp, self.nccl, self.devs = xp, nccl, devs
        self.comms = nccl.NcclCommunicator.initAll([d.index for d in devs])

    def _dtype(self, dtype: Any) -> int:
        from ember.runtime.errors import DTypeError

        code = {"float16": "NCCL_FLOAT16", "float32": "NCCL_FLOAT32", "float64": "NCCL_FLOAT64",
                "int32": "NCCL_INT32", "int64": "NCCL_INT64", "uint8": "NCCL_UINT8", "int8": "NCCL_INT8"}
        if dtype.name not in code:
            raise DTypeError(f"NCCL: unsupported dtype {dtype.name}")
        return getattr(self.nccl, code[dtype.name])

    def _run(self, fn: Any) -> None:
        self.nccl.groupStart()
        try:
            for i, d in enumerate(self.devs):
                with self.xp.cuda.Device(d.index):
                    fn(i, d, self.comms[i], self.xp.cuda.get_current_stream().ptr)
        finally:
            self.nccl.groupEnd()

    def broadcast(self, tensor: Any, devs: list[Any]) -> list[Any]:
        from ember.tensor import Tensor

        root = devs.index(tensor._device)
        outs = []
        for d in devs:
            with self.xp.cuda.Device(d.index):
                arr = self.xp.ascontiguousarray(tensor._data) if d is tensor._device else \
                    self.xp.empty(tensor._data.shape, tensor._data.dtype)
            outs.append(Tensor._make(arr, tensor._dtype, d))
        code = self._dtype(tensor._dtype)
        self._run(lambda i, d, comm, s: comm.bcast(outs[i]._data.data.ptr, outs[i]._data.size, code, root, s))
        outs[root] = outs[root].clone()
        return outs

    def reduce_add(self, inputs: list[Any], dest: Any) -> Any:
        from ember.tensor import Tensor

        root = self.devs.index(dest)
        with self.xp.cuda.Device(dest.index):
            out = self.xp.empty_like(inputs[root]._data)
        code = self._dtype(inputs[0]._dtype)
        arrays = [self.xp.ascontiguousarray(t._data) for t in inputs]
        self._run(lambda i, d, comm, s: comm.reduce(arrays[i].data.ptr, out.data.ptr if i == root else 0,
                                                   arrays[i].size, code, self.nccl.NCCL_SUM, root, s))
        return Tensor._make(out, inputs[0]._dtype, dest)


_COMMS: dict[tuple[int, ...], _Nccl] = {}


def _nccl(devs: list[Any]) -> _Nccl | None:
    """An NCCL helper for these GPUs when there are several distinct ones and cupy has NCCL."""
    ids = tuple(d.index for d in devs)
    if len(set(ids)) < 2 or len(set(ids)) != len(ids):
        return None
    if ids in _COMMS:
        return _COMMS[ids]
    from ember.device import cuda_array_module

    xp = cuda_array_module()
    nccl = getattr(getattr(xp, "cuda", None), "nccl", None)
    if nccl is None or not getattr(nccl, "available", False):
        return None
    _COMMS[ids] = _Nccl(xp, nccl, devs)
    return _COMMS[ids]
