"""The one path every tensor operation takes.

``apply(op, args, attrs)``:
1. checks the attributes against the op's schema and normalizes them (negative dims, -1 sizes);
2. a composite op is expanded through its decomposition, so everything below sees primitives only;
3. under tracing, hands the op to the tracer, which records a node and computes no data;
4. otherwise runs the type rule (which raises the typed errors), then the reference implementation on
   the tensors' array module, and wraps the result with the dtype the type rule promised;
5. if grad mode is on and an input requires grad, records an ``OpNode`` on the tape.

Eager fast path: steps 1 and 4's type rule depend only on the op, the given attributes, the inputs'
shapes and dtypes and the Python scalars among the inputs (type rules also run on bare types under
tracing). Their result is therefore memoized on exactly that key; a call on small tensors then costs one
dict lookup instead of attribute checks, normalization and promotion. Before an entry is stored, the rules
are run once more on the inputs' types alone: a call whose rules read data (one_hot's num_classes=-1, a
bool-mask index) gives a different answer or fails there, and is not memoized. Keys that cannot be
hashed (a list attribute, a slice) take the full path every time. Errors are never cached: a failing call
raises on every call.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from ember._state import STATE
from ember.autograd.node import AccumulateGrad, Edge, OpNode, name_composite_outputs
from ember.compiler.ops.registry import OpDef, TensorType
from ember.device import CPU
from ember.runtime.errors import DeviceError

_NDARRAY = np.ndarray
_new_type = tuple.__new__  # TensorType(shape, dtype) without NamedTuple's Python-level __new__
_TYPES: dict[tuple[Any, ...], tuple[dict[str, Any], Any]] = {}  # signature -> (attrs, inferred type)
_TYPES_MAX = 8192  # cleared when full: the working set of a model is a few hundred signatures
_SAVED_MASKS: dict[tuple[OpDef, int], tuple[tuple[bool, ...], bool]] = {}
_Tensor: Any = None  # ember.tensor.Tensor, bound on first use (ember.tensor imports this module)


def _tensor_class() -> Any:
    global _Tensor
    from ember.tensor import Tensor

    _Tensor = Tensor
    return Tensor


def apply(op: OpDef, args: tuple[Any, ...], attrs: dict[str, Any]) -> Any:
    """Run ``op`` on ``args`` with ``attrs``: eagerly, traced, or through its decomposition."""
    if op.reference is not None and STATE.tracer is None:
        return _run_eager(op, args, attrs)
    attrs = _check(op, args, attrs)
    if op.reference is None:
        from ember.autograd.builder import EAGER

        result = op.decompose(EAGER, *args, **attrs)
        if STATE.grad_enabled and STATE.tracer is None:
            name_composite_outputs(op, args, result)  # grad_fn names the composite, not its last primitive
        return result
    return STATE.tracer.record(op, args, attrs)


def _check(op: OpDef, args: tuple[Any, ...], attrs: dict[str, Any]) -> dict[str, Any]:
    if attrs or op.attrs:
        attrs = op.check_attrs(attrs)
        if op.normalize is not None:
            attrs = op.normalize(attrs, *args)
    return attrs


def _run_eager(op: OpDef, args: tuple[Any, ...], attrs: dict[str, Any]) -> Any:
    Tensor = _Tensor or _tensor_class()
    arrays = []
    sig: list[Any] = [op]
    needs_grad = False
    dev = None
    for a in args:
        if isinstance(a, Tensor):
            d = a._data
            arrays.append(d)
            sig.append(d.shape)
            sig.append(a._dtype)
            if a.requires_grad:
                needs_grad = True
            if a._device is not dev:
                dev = _same_device(op, dev, a._device, args)
        else:
            arrays.append(a)
            sig.append(type(a))
            sig.append(a)
    if attrs:
        sig.append(_attrs_key(attrs))  # makes the key length even: no clash with an extra input
    try:
        key: Any = tuple(sig)
        hit = _TYPES.get(key)
    except TypeError:  # an unhashable attribute or input (list, slice): no memo
        key = hit = None
    if hit is None:
        given = attrs
        attrs = _check(op, args, given)
        out_type = op.infer(*args, **attrs)
        if key is not None and _types_suffice(op, args, given, attrs, out_type):
            if len(_TYPES) >= _TYPES_MAX:
                _TYPES.clear()
            _TYPES[key] = (attrs, out_type)
    else:
        attrs, out_type = hit
    if dev is None or dev is CPU or dev.type == "cpu":
        result = op.reference(np, *arrays, **attrs)
    else:
        result = _run_on_device(op, dev, arrays, attrs, out_type)
    if op.num_outputs == 1:
        out = _wrap(Tensor, result, out_type, dev)
        if op.view:
            _share_version(out, args[0], result, arrays[0])
        if needs_grad and STATE.grad_enabled and op.differentiable:
            _record(op, args, attrs, (out,))
        return out
    outs = tuple(_wrap(Tensor, r, t, dev) for r, t in zip(result, out_type))
    if needs_grad and STATE.grad_enabled and op.differentiable:
        _record(op, args, attrs, outs)
    return outs


def _attrs_key(attrs: dict[str, Any]) -> tuple[Any, ...]:
    """The given attributes with their types (and their items' types), since ``1 == 1.0 == True``: a
    memo hit must not let ``dim=1.0`` or ``dim=True`` through after ``dim=1`` passed the checks."""
    key: list[Any] = []
    for k, v in attrs.items():
        t = type(v)
        key.append((k, t, tuple(map(type, v)) if t is tuple else None, v))
    return tuple(key)


def _types_suffice(op: OpDef, args: tuple[Any, ...], given: dict[str, Any], attrs: dict[str, Any],
                   out_type: Any) -> bool:
    """Whether the op's checked attributes and type come out the same from the inputs' types alone.

    This is what makes the memo sound. Nearly every call passes (rules also run under tracing, on types);
    one whose rules read data (``one_hot`` resolving ``num_classes=-1`` from the largest index, indexing
    with a bool mask) fails here, and that call is not memoized."""
    Tensor = _Tensor
    types = tuple(_new_type(TensorType, (a._data.shape, a._dtype)) if isinstance(a, Tensor) else a
                  for a in args)
    try:
        again = _check(op, types, dict(given))
        return bool(again == attrs and op.infer(*types, **again) == out_type)
    except Exception:  # noqa: BLE001  (a rule that cannot run on types alone: no memo, nothing else)
        return False


def _same_device(op: OpDef, dev: Any, other: Any, args: tuple[Any, ...]) -> Any:
    if dev is None:
        return other
    if other != dev:
        return _mixed_devices(op, dev, other, args)
    return dev


def _mixed_devices(op: OpDef, dev: Any, other: Any, args: tuple[Any, ...]) -> Any:
    """Inputs on two devices: as in PyTorch, a 0-d CPU tensor may join tensors on one GPU (it is copied
    there, like a Python scalar; without grad here, since its gradient would have to come back to the
    CPU); anything else is PyTorch's error."""
    Tensor = _Tensor
    devices = {a._device for a in args if isinstance(a, Tensor)
               and not (a._device.type == "cpu" and not a._data.shape and not a.requires_grad)}
    if len(devices) == 1:
        (only,) = devices
        if only.type == "cuda":
            return only
    raise DeviceError(
        f"{op.name}: Expected all tensors to be on the same device, but found at least two"
        f" devices, {dev} and {other}!"
    )


def _run_on_device(op: OpDef, dev: Any, arrays: list[Any], attrs: dict[str, Any], out_type: Any) -> Any:
    """The reference on the device's array module (cupy), with that GPU current (cupy refuses arrays of
    another GPU); results become device arrays of the promised dtypes (a reduction may give a scalar)."""
    from ember.device import array_module

    xp = array_module(dev)
    with xp.cuda.Device(dev.index):
        arrays = [xp.asarray(a) if type(a) is _NDARRAY else a for a in arrays]  # 0-d CPU tensors
        result = op.reference(xp, *arrays, **attrs)
        if op.num_outputs == 1:
            return xp.asarray(result, dtype=out_type.dtype.np)
        return tuple(xp.asarray(r, dtype=t.dtype.np) for r, t in zip(result, out_type))


def _wrap(Tensor: Any, arr: Any, t: Any, dev: Any) -> Any:  # noqa: N803  (the class, passed for speed)
    want = t.dtype.np
    if type(arr) is not _NDARRAY or arr.dtype != want:
        if dev is not None and dev.type == "cuda":
            arr = arr.astype(want, copy=False)
        else:
            arr = np.asarray(arr, dtype=want)
    return Tensor._make(arr, t.dtype, dev)


def _share_version(out: Any, src: Any, result: Any, src_array: Any) -> None:
    """A view shares its base's version counter, so in-place writes through either are seen by both."""
    if result is src_array or np.may_share_memory(result, src_array):
        out._version = src._version
        out._base = src if src._base is None else src._base


def edge_of(t: Any) -> Edge | None:
    """Where gradient for tensor ``t`` should flow: its grad_fn, or its leaf accumulator."""
    if not t.requires_grad:
        return None
    if t.grad_fn is not None:
        return (t.grad_fn, t._out_index)
    acc = t._accum
    if acc is None:
        acc = t._accum = AccumulateGrad(t)
    return (acc, 0)


def _saved_mask(op: OpDef, n: int) -> tuple[tuple[bool, ...], bool]:
    """Which of ``n`` inputs the op's gradient rule reads, and whether it reads the output; memoized per
    (op, arity)."""
    plan = _SAVED_MASKS.get((op, n))
    if plan is None:
        plan = _SAVED_MASKS[(op, n)] = (tuple(op.saved_input(i) for i in range(n)), op.saves_out)
    return plan


def _record(op: OpDef, args: tuple[Any, ...], attrs: dict[str, Any], outs: tuple[Any, ...]) -> None:
    """Put an ``OpNode`` on the tape and make the floating-point outputs its results.

    Saved outputs are kept as detached aliases (same memory, same version counter, no grad_fn): holding
    the output itself would make a reference cycle output -> node -> output, which keeps large arrays
    alive until the cycle collector runs. ``OpNode.apply`` re-attaches the node when it needs history.
    """
    Tensor = _Tensor
    saved: list[Any] = []
    versions: list[Any] = []
    edges: list[Edge | None] = []
    mask, saves_out = _SAVED_MASKS.get((op, len(args))) or _saved_mask(op, len(args))
    for a, keep in zip(args, mask):
        if isinstance(a, Tensor):
            if not a.requires_grad:
                edges.append(None)
            elif a.grad_fn is not None:
                edges.append((a.grad_fn, a._out_index))
            else:
                edges.append(edge_of(a))
            if keep:
                saved.append(a)
                versions.append((a, a._version[0]))
            else:
                saved.append(_new_type(TensorType, (a._data.shape, a._dtype)))
        else:
            edges.append(None)
            saved.append(a)
    node = OpNode(op, attrs, saved, versions, tuple(edges))
    if saves_out:
        alias = [Tensor._make(o._data, o._dtype, o._device, version=o._version) for o in outs]
        node.out = alias[0] if len(alias) == 1 else tuple(alias)
        versions.extend((o, o._version[0]) for o in alias)
    for i, o in enumerate(outs):
        if o._dtype.is_floating_point:
            o.requires_grad = True
            o.grad_fn = node
            o._out_index = i
