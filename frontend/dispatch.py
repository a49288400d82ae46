"""The one path every tensor operation takes.

``apply(op, args, attrs)``:
1. checks the attributes against the op's schema and normalizes them (negative dims, -1 sizes);
2. a composite op is expanded through its decomposition, so everything below sees primitives only;
3. under tracing, hands the op to the tracer, which records a node and computes no data;
4. otherwise runs the type rule (which raises the typed errors), then the reference implementation on
   the tensors' array module, and wraps the result with the dtype the type rule promised;
5. if grad mode is on and an input requires grad, records an ``OpNode`` on the tape.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ember._state import STATE
from ember.autograd.node import AccumulateGrad, Edge, OpNode, meta
from ember.compiler.ops.registry import OpDef
from ember.runtime.errors import DeviceError


def apply(op: OpDef, args: tuple[Any, ...], attrs: dict[str, Any]) -> Any:
    if attrs or op.attrs:
        attrs = op.check_attrs(attrs)
        if op.normalize is not None:
            attrs = op.normalize(attrs, *args)
    if op.reference is None:
        from ember.autograd.builder import EAGER

        return op.decompose(EAGER, *args, **attrs)
    tracer = STATE.tracer
    if tracer is not None:
        return tracer.record(op, args, attrs)
    return _run_eager(op, args, attrs)


def _run_eager(op: OpDef, args: tuple[Any, ...], attrs: dict[str, Any]) -> Any:
    from ember.tensor import Tensor

    out_type = op.infer(*args, **attrs)
    arrays = []
    needs_grad = False
    dev = None
    for a in args:
        if isinstance(a, Tensor):
            arrays.append(a._data)
            if a.requires_grad:
                needs_grad = True
            if a._device is not dev:
                if dev is None:
                    dev = a._device
                elif a._device != dev:
                    raise DeviceError(
                        f"{op.name}: Expected all tensors to be on the same device, but found at least two"
                        f" devices, {dev} and {a._device}!"
                    )
        else:
            arrays.append(a)
    xp = np if dev is None or dev.type == "cpu" else _array_module(dev)
    result = op.reference(xp, *arrays, **attrs)
    if op.num_outputs == 1:
        out = _wrap(result, out_type, dev)
        if op.view:
            _share_version(out, args[0], result, arrays[0])
        outs: tuple[Any, ...] = (out,)
    else:
        outs = tuple(_wrap(r, t, dev) for r, t in zip(result, out_type))
        out = outs
    if needs_grad and STATE.grad_enabled and op.differentiable:
        _record(op, args, attrs, outs)
    return out


def _array_module(dev: Any) -> Any:
    from ember.device import array_module

    return array_module(dev)


def _wrap(arr: Any, t: Any, dev: Any) -> Any:
    from ember.tensor import Tensor

    want = t.dtype.np
    if type(arr) is not np.ndarray or arr.dtype != want:
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


def _record(op: OpDef, args: tuple[Any, ...], attrs: dict[str, Any], outs: tuple[Any, ...]) -> None:
    from ember.tensor import Tensor

    saved: list[Any] = []
    versions: list[Any] = []
    edges: list[Edge | None] = []
    for i, a in enumerate(args):
        if isinstance(a, Tensor):
            edges.append(edge_of(a))
            if op.saved_input(i):
                saved.append(a)
                versions.append((a, a._version[0]))
            else:
                saved.append(meta(a))
        else:
            edges.append(None)
            saved.append(a)
    node = OpNode(op, attrs, saved, versions, tuple(edges))
    if op.saves_out:
        node.out = outs[0] if op.num_outputs == 1 else outs
        versions.extend((o, o._version[0]) for o in outs)
    for i, o in enumerate(outs):
        if o.dtype.is_floating_point:
            o.requires_grad = True
            o.grad_fn = node
            o._out_index = i
