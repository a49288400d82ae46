"""``ember.save`` / ``ember.load``: checkpoints that never execute code from the file.

ember's own format is a zip archive (stored, not compressed) with two kinds of entries:

* ``ember/ember.json``: ``{"format": "ember", "version": 1, "root": <node>}``, the object tree. A node is
  a JSON ``null``/bool/int/float/string for Python's scalars, or a one-key-tagged object: ``{"list": [..]}``,
  ``{"tuple": [..]}``, ``{"dict": [[key, value], ..]}``, ``{"odict": [[key, value], ..]}``,
  ``{"tensor": n}`` (an index into ``"tensors"``), ``{"dtype": "float32"}``, ``{"device": "cpu"}``.
* ``ember/tensors/<n>``: the raw little-endian bytes of tensor ``n`` in row-major order; its dtype, shape,
  device, requires_grad and whether it is a Parameter are in ``"tensors"[n]`` of the JSON.

Why not pickle: unpickling calls whatever callables the file names. JSON plus raw bytes describe data
only. The same tensor object saved twice is stored once and loads as one object; distinct tensors that
share memory (views) are stored separately.

``ember.load`` also reads PyTorch's zip checkpoints (``torch.save``: ``<name>/data.pkl`` plus
``<name>/data/<key>`` storages) through ``_TorchUnpickler``, whose ``find_class`` admits only the few
globals a state dict needs and raises ``PackageError`` naming any other. Every other failure (a truncated
or foreign file, a storage too small for its tensor's strides) is a ``PackageError`` too.
"""

from __future__ import annotations

import collections
import io
import json
import os
import pickle
import zipfile
from typing import Any

import numpy as np
from ember.compiler import dtypes as _dt
from ember.runtime.errors import ArgumentError, PackageError

FORMAT_VERSION = 1
_META = "ember/ember.json"
_TENSORS = "ember/tensors/"
_JSON_SCALARS = (bool, int, float, str, type(None))

# ---- saving ------------------------------------------------------------------------------------------


def save(obj: Any, f: Any) -> None:
    """Write ``obj`` (tensors, dicts incl. OrderedDict, lists, tuples, Python scalars, dtypes, devices)
    to the path or binary file ``f``."""
    enc = _Encoder()
    root = enc.node(obj)
    meta = {"format": "ember", "version": FORMAT_VERSION, "tensors": enc.specs, "root": root}
    with zipfile.ZipFile(_open_write(f), "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr(_META, json.dumps(meta, separators=(",", ":")))
        for i, arr in enumerate(enc.arrays):
            zf.writestr(f"{_TENSORS}{i}", arr.tobytes(order="C"))


def _open_write(f: Any) -> Any:
    if isinstance(f, (str, os.PathLike)):
        return os.fspath(f)
    if not hasattr(f, "write"):
        raise ArgumentError(f"save: expected a path or a writable binary file, got {type(f).__name__}")
    return f


class _Encoder:
    """Turns an object tree into JSON nodes, collecting tensor bytes on the side."""

    def __init__(self) -> None:
        self.specs: list[dict[str, Any]] = []
        self.arrays: list[np.ndarray] = []
        self._seen: dict[int, int] = {}  # id(tensor) -> index
        self._keep: list[Any] = []        # keeps ids stable while encoding

    def node(self, obj: Any) -> Any:
        from ember.device import device
        from ember.tensor import Tensor

        if isinstance(obj, _JSON_SCALARS):
            return obj
        if isinstance(obj, Tensor):
            return {"tensor": self._tensor(obj)}
        if isinstance(obj, collections.OrderedDict):
            return {"odict": [[self.node(k), self.node(v)] for k, v in obj.items()]}
        if isinstance(obj, dict):
            return {"dict": [[self.node(k), self.node(v)] for k, v in obj.items()]}
        if isinstance(obj, list):
            return {"list": [self.node(v) for v in obj]}
        if isinstance(obj, tuple):
            return {"tuple": [self.node(v) for v in obj]}
        if isinstance(obj, _dt.DType):
            return {"dtype": obj.name}
        if isinstance(obj, device):
            return {"device": str(obj)}
        if isinstance(obj, (np.integer, np.floating, np.bool_)):
            return obj.item()
        raise ArgumentError(
            f"save: cannot store an object of type {type(obj).__module__}.{type(obj).__qualname__}; ember's"
            " format holds tensors, dicts, lists, tuples, numbers, strings, None, dtypes and devices"
        )

    def _tensor(self, t: Any) -> int:
        known = self._seen.get(id(t))
        if known is not None:
            return known
        arr = t._host()
        if not arr.flags.c_contiguous:
            arr = arr.copy(order="C")  # (np.ascontiguousarray would turn a 0-d tensor into 1-d)
        arr = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
        index = len(self.specs)
        self.specs.append({"dtype": t.dtype.name, "shape": list(arr.shape), "device": str(t.device),
                           "requires_grad": bool(t.requires_grad), "parameter": _is_parameter(t)})
        self.arrays.append(arr)
        self._seen[id(t)] = index
        self._keep.append(t)
        return index


def _is_parameter(t: Any) -> bool:
    return any(c.__name__ == "Parameter" and c.__module__.startswith("ember.") for c in type(t).__mro__)


# ---- loading -----------------------------------------------------------------------------------------


def load(f: Any, map_location: Any = None, weights_only: bool = True, **_pickle_args: Any) -> Any:
    """Read what ``ember.save`` or PyTorch's ``torch.save`` (zip format) wrote to the path or file ``f``.

    ``map_location`` (a device, a string, a ``{saved: target}`` dict or a callable ``(tensor, location)``)
    says where tensors go. ``weights_only`` is accepted for PyTorch compatibility: ember never runs code
    from a file, so loading is always restricted to data."""
    try:
        zf = zipfile.ZipFile(_open_read(f))
    except (zipfile.BadZipFile, EOFError, ValueError) as e:
        raise PackageError(f"load: not an ember or PyTorch zip checkpoint (truncated or corrupted?): {e}") \
            from None
    with zf:
        names = zf.namelist()
        try:
            if _META in names:
                return _EmberReader(zf, map_location).read()
            pkl = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
            if len(pkl) == 1:
                return _load_torch(zf, pkl[0][: -len("data.pkl")], map_location)
        except PackageError:
            raise
        except (zipfile.BadZipFile, EOFError, KeyError, OSError, ValueError, TypeError, IndexError) as e:
            raise PackageError(f"load: corrupted checkpoint: {type(e).__name__}: {e}") from None
    raise PackageError("load: a zip file, but neither an ember checkpoint nor a PyTorch one")


def _open_read(f: Any) -> Any:
    if isinstance(f, (str, os.PathLike)):
        return os.fspath(f)
    if isinstance(f, (bytes, bytearray)):
        return io.BytesIO(f)
    if not hasattr(f, "read"):
        raise ArgumentError(f"load: expected a path or a readable binary file, got {type(f).__name__}")
    return f


def _read_array(zf: zipfile.ZipFile, name: str, dtype: Any, count: int) -> np.ndarray:
    """``count`` elements of the little-endian entry ``name``, checked before anything is read."""
    want = count * dtype.itemsize
    try:
        size = zf.getinfo(name).file_size
    except KeyError:
        raise PackageError(f"load: the checkpoint has no entry {name!r}") from None
    if size < want:
        raise PackageError(f"load: entry {name!r} holds {size} bytes, {want} needed")
    raw = zf.read(name)
    return np.frombuffer(raw, dtype=dtype.newbyteorder("<"), count=count).astype(dtype)


def _place(t: Any, location: str, map_location: Any) -> Any:
    """Apply ``map_location`` to a freshly loaded CPU tensor saved at ``location``."""
    target: Any = location if map_location is None else map_location
    if isinstance(map_location, dict):
        target = map_location.get(location, location)
    elif callable(map_location) and not isinstance(map_location, (str, bytes)):
        from ember.device import device as _device_type

        if not isinstance(map_location, _device_type):
            got = map_location(t, location)
            return got if got is not None and hasattr(got, "_data") else t
    target = str(target)
    if target.startswith("cpu"):
        return t
    from ember import cuda

    if target.startswith("cuda") and not cuda.is_available():
        from ember.runtime.errors import DeviceError

        raise DeviceError(
            "Attempting to deserialize object on a CUDA device but ember.cuda.is_available() is False. If you"
            " are running on a CPU-only machine, please use ember.load with map_location=ember.device('cpu')"
            f" to map your storages to the CPU; {cuda._HINT}"
        )
    return t.to(target)


def _make_tensor(arr: np.ndarray, dtype: Any, requires_grad: bool, parameter: bool) -> Any:
    from ember.tensor import Tensor

    t = Tensor._make(arr, dtype)
    if parameter:
        from ember.nn import Parameter

        return Parameter(t, requires_grad=requires_grad)
    if requires_grad:
        if not dtype.is_floating_point:
            raise PackageError(f"load: a {dtype.name} tensor cannot require grad")
        t.requires_grad = True
    return t


class _EmberReader:
    """Rebuilds the object tree of ember's own format, validating every node."""

    def __init__(self, zf: zipfile.ZipFile, map_location: Any) -> None:
        self.zf = zf
        self.map_location = map_location
        self.tensors: dict[int, Any] = {}

    def read(self) -> Any:
        try:
            meta = json.loads(self.zf.read(_META).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise PackageError(f"load: {_META} is not valid JSON: {e}") from None
        if not isinstance(meta, dict) or meta.get("format") != "ember":
            raise PackageError("load: not an ember checkpoint (missing format tag)")
        if meta.get("version") != FORMAT_VERSION:
            raise PackageError(f"load: ember checkpoint format version {meta.get('version')!r} is not"
                               f" supported (this ember reads version {FORMAT_VERSION})")
        specs = meta.get("tensors")
        if not isinstance(specs, list):
            raise PackageError("load: the checkpoint's tensor table is missing")
        self.specs = specs
        return self.node(meta.get("root"), 0)

    def node(self, n: Any, depth: int) -> Any:
        if depth > 500:
            raise PackageError("load: the object tree is nested too deeply")
        if isinstance(n, _JSON_SCALARS):
            return n
        if not isinstance(n, dict) or len(n) != 1:
            raise PackageError(f"load: malformed node {str(n)[:80]!r}")
        ((tag, v),) = n.items()
        if tag in ("list", "tuple") and isinstance(v, list):
            items = [self.node(x, depth + 1) for x in v]
            return items if tag == "list" else tuple(items)
        if tag in ("dict", "odict") and isinstance(v, list):
            out: dict[Any, Any] = {} if tag == "dict" else collections.OrderedDict()
            for pair in v:
                if not isinstance(pair, list) or len(pair) != 2:
                    raise PackageError("load: malformed dict entry")
                out[self.node(pair[0], depth + 1)] = self.node(pair[1], depth + 1)
            return out
        if tag == "tensor" and isinstance(v, int) and not isinstance(v, bool):
            return self.tensor(v)
        if tag == "dtype" and isinstance(v, str):
            return _dtype_named(v)
        if tag == "device" and isinstance(v, str):
            from ember.device import device

            return device(v)
        raise PackageError(f"load: unknown node tag {tag!r}")

    def tensor(self, index: int) -> Any:
        if index in self.tensors:
            return self.tensors[index]
        if not 0 <= index < len(self.specs) or not isinstance(self.specs[index], dict):
            raise PackageError(f"load: tensor {index} is not in the checkpoint's tensor table")
        spec = self.specs[index]
        dtype = _dtype_named(spec.get("dtype"))
        shape = spec.get("shape")
        if not isinstance(shape, list) or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0
                                                   for s in shape):
            raise PackageError(f"load: tensor {index} has an invalid shape {shape!r}")
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        arr = _read_array(self.zf, f"{_TENSORS}{index}", dtype.np, count).reshape(shape)
        t = _make_tensor(arr, dtype, bool(spec.get("requires_grad")), bool(spec.get("parameter")))
        t = _place(t, str(spec.get("device", "cpu")), self.map_location)
        self.tensors[index] = t
        return t


def _dtype_named(name: Any) -> Any:
    if not isinstance(name, str) or name not in {d.name for d in _dt.ALL}:
        raise PackageError(f"load: unsupported dtype {name!r}")
    return _dt.as_dtype(name)


# ---- PyTorch checkpoints -----------------------------------------------------------------------------

_TORCH_STORAGES = {
    "FloatStorage": "float32", "DoubleStorage": "float64", "HalfStorage": "float16", "LongStorage": "int64",
    "IntStorage": "int32", "ShortStorage": "int16", "CharStorage": "int8", "ByteStorage": "uint8",
    "BoolStorage": "bool",
}


class _StorageType:
    """Stands in for ``torch.FloatStorage`` and friends: only its dtype name is used."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.dtype = _TORCH_STORAGES.get(name)

    def __reduce__(self) -> Any:
        raise PackageError("load: storage types cannot be re-pickled")


class _Storage:
    """A PyTorch storage read from the archive: a flat array and the location it was saved on."""

    __slots__ = ("array", "location")

    def __init__(self, array: np.ndarray, location: str) -> None:
        self.array = array
        self.location = location


class _Loaded:
    """A tensor rebuilt from a PyTorch pickle; turned into an ember tensor once unpickling is done.

    ``__setstate__`` refuses every state: a pickle's BUILD opcode must not poke attributes into it."""

    __slots__ = ("array", "location", "requires_grad", "parameter")

    def __init__(self, array: np.ndarray, location: str, requires_grad: bool, parameter: bool) -> None:
        self.array = array
        self.location = location
        self.requires_grad = requires_grad
        self.parameter = parameter

    def __setstate__(self, state: Any) -> None:
        raise PackageError("load: the pickle tries to set attributes on a tensor")


def _rebuild_tensor_v2(storage: Any, offset: Any, size: Any, stride: Any, requires_grad: Any = False,
                       backward_hooks: Any = None, metadata: Any = None) -> _Loaded:
    """PyTorch's ``torch._utils._rebuild_tensor_v2``: a strided window on a storage, bounds-checked."""
    if not isinstance(storage, _Storage):
        raise PackageError("load: _rebuild_tensor_v2 without a storage from the archive")
    size, stride, offset = _ints(size), _ints(stride), _ints((offset,))[0]
    if len(size) != len(stride) or offset < 0 or any(s < 0 for s in size) or any(s < 0 for s in stride):
        raise PackageError(f"load: invalid tensor geometry size={size} stride={stride} offset={offset}")
    flat = storage.array
    if 0 not in size:
        last = offset + sum((n - 1) * s for n, s in zip(size, stride))
        if last >= flat.size:
            raise PackageError(
                f"load: a tensor of size {list(size)} and stride {list(stride)} at offset {offset} reads past"
                f" the end of its storage ({flat.size} elements)"
            )
        item = flat.itemsize
        view = np.lib.stride_tricks.as_strided(flat[offset:], shape=size, strides=[s * item for s in stride])
        arr = np.array(view, copy=True)
    else:
        arr = np.zeros(size, dtype=flat.dtype)
    return _Loaded(arr, storage.location, bool(requires_grad), False)


def _rebuild_parameter(data: Any, requires_grad: Any, backward_hooks: Any = None) -> _Loaded:
    if not isinstance(data, _Loaded):
        raise PackageError("load: _rebuild_parameter of something that is not a tensor")
    return _Loaded(data.array, data.location, bool(requires_grad), True)


def _ints(v: Any) -> tuple[int, ...]:
    if not isinstance(v, (tuple, list)) or not all(isinstance(x, int) and not isinstance(x, bool) for x in v):
        raise PackageError(f"load: expected a tuple of ints, got {str(v)[:80]!r}")
    return tuple(v)


_TORCH_GLOBALS: dict[tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("collections", "OrderedDict"): collections.OrderedDict,
}


class _TorchUnpickler(pickle.Unpickler):
    """Admits only the globals of tensors and state dicts; storages come from the archive by key."""

    def __init__(self, data: bytes, zf: zipfile.ZipFile, prefix: str, little: bool) -> None:
        super().__init__(io.BytesIO(data))
        self.zf = zf
        self.prefix = prefix
        self.little = little
        self.storages: dict[str, _Storage] = {}

    def find_class(self, module: str, name: str) -> Any:
        found = _TORCH_GLOBALS.get((module, name))
        if found is not None:
            return found
        if module == "torch" and name in _TORCH_STORAGES:
            return _StorageType(name)
        raise PackageError(
            f"load: the checkpoint refers to the global '{module}.{name}', which ember does not load"
            " (only tensors, parameters and state-dict containers are allowed)"
        )

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise PackageError(f"load: unknown persistent id {str(pid)[:80]!r}")
        _, kind, key, location, numel = pid
        if not isinstance(kind, _StorageType) or kind.dtype is None:
            raise PackageError(f"load: unsupported storage type {getattr(kind, 'name', kind)!r}")
        if not isinstance(key, str) or not isinstance(numel, int) or numel < 0:
            raise PackageError("load: malformed storage reference")
        if key not in self.storages:
            np_dtype = _dt.as_dtype(kind.dtype).np
            dtype = np_dtype if self.little else np_dtype.newbyteorder(">")
            arr = _read_array_any_order(self.zf, f"{self.prefix}data/{key}", dtype, numel)
            self.storages[key] = _Storage(arr.astype(np_dtype), str(location))
        return self.storages[key]


def _read_array_any_order(zf: zipfile.ZipFile, name: str, dtype: Any, count: int) -> np.ndarray:
    if dtype.byteorder == ">":
        want = count * dtype.itemsize
        if zf.getinfo(name).file_size < want:
            raise PackageError(f"load: entry {name!r} is shorter than its {count} elements")
        return np.frombuffer(zf.read(name), dtype=dtype, count=count)
    return _read_array(zf, name, dtype, count)


def _load_torch(zf: zipfile.ZipFile, prefix: str, map_location: Any) -> Any:
    names = set(zf.namelist())
    order = "little"
    if prefix + "byteorder" in names:
        order = zf.read(prefix + "byteorder").decode("ascii", "replace").strip()
    if order not in ("little", "big"):
        raise PackageError(f"load: unknown byte order {order!r}")
    unpickler = _TorchUnpickler(zf.read(prefix + "data.pkl"), zf, prefix, order == "little")
    try:
        tree = unpickler.load()
    except PackageError:
        raise
    except Exception as e:  # noqa: BLE001  (any failure inside a foreign pickle is a bad file)
        raise PackageError(f"load: the PyTorch checkpoint's pickle is corrupted: {type(e).__name__}: {e}") \
            from None
    return _convert(tree, map_location, {}, 0)


def _convert(obj: Any, map_location: Any, memo: dict[int, Any], depth: int) -> Any:
    """Replace ``_Loaded`` records with ember tensors in the unpickled tree (containers are rebuilt)."""
    if depth > 500:
        raise PackageError("load: the object tree is nested too deeply")
    if isinstance(obj, _Loaded):
        if id(obj) not in memo:
            t = _make_tensor(obj.array, _dt.as_dtype(obj.array.dtype.name), obj.requires_grad, obj.parameter)
            memo[id(obj)] = _place(t, obj.location, map_location)
        return memo[id(obj)]
    if isinstance(obj, collections.OrderedDict):
        out = collections.OrderedDict((k, _convert(v, map_location, memo, depth + 1)) for k, v in obj.items())
        meta = getattr(obj, "_metadata", None)
        if isinstance(meta, dict):
            out._metadata = meta  # type: ignore[attr-defined]  (PyTorch's state-dict version info)
        return out
    if isinstance(obj, dict):
        return {k: _convert(v, map_location, memo, depth + 1) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_convert(v, map_location, memo, depth + 1) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_convert(v, map_location, memo, depth + 1) for v in obj)
    if isinstance(obj, (_Storage, _StorageType)):
        raise PackageError("load: a bare storage in the checkpoint (only tensors are supported)")
    return obj


__all__ = ["save", "load"]
