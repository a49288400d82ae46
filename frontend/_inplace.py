"""In-place forms (``add_``, ``x[i] = v``): compute out of place through the registry, then write the result
into the tensor's memory. The graph never sees mutation; eager users get PyTorch's semantics, including its
errors: in-place on a leaf that requires grad, results that cannot be cast, saved tensors modified later
(caught by the version counter the write bumps)."""

from __future__ import annotations

from typing import Any

import numpy as np
from ember._state import STATE
from ember.compiler.ops.registry import OpDef
from ember.dispatch import apply
from ember.runtime.errors import AutogradError, ShapeError


def inplace_apply(self: Any, op: OpDef, rest: tuple[Any, ...], attrs: dict[str, Any]) -> Any:
    from ember.tensor import Tensor, check_dtype_cast

    if STATE.tracer is not None:
        return STATE.tracer.record_inplace(self, op, rest, attrs)
    recording = STATE.grad_enabled and (
        self.requires_grad or any(isinstance(a, Tensor) and a.requires_grad for a in rest)
    )
    if recording and self.requires_grad and self.is_leaf:
        raise AutogradError("a leaf Variable that requires grad is being used in an in-place operation.")
    base = self._base if recording else None
    if base is not None:
        _check_view_base(self, base, op)
    first = self
    if recording and (op.composite or op.saved_input(0) or op.saves_out):
        # the rule reads the old value, which the write below destroys (a composite's inner ops may too)
        first = self.clone()
    result = apply(op, (first, *rest), attrs)
    if tuple(result.shape) != tuple(self.shape):
        raise ShapeError(
            f"output with shape {list(self.shape)} doesn't match the broadcast shape {list(result.shape)}"
        )
    check_dtype_cast(op.name + "_", result.dtype, self.dtype)
    if self._data.flags.writeable is False:
        raise ShapeError(
            f"{op.name}_: cannot write into a read-only (expanded or broadcast) tensor; clone it first"
        )
    if base is not None:
        _write_through_base(self, base, result)
        return self
    self._data[...] = result._data
    self._version[0] += 1
    if recording:
        self.grad_fn = result.grad_fn
        self._out_index = result._out_index
        self.requires_grad = result.requires_grad
    return self


# ---- in-place on a view that takes part in autograd ----------------------------------------------------
# PyTorch rewrites the base's history (CopySlices): the base becomes "old base with the view's slots
# replaced by the new values". ember builds exactly that from registry ops: the view's slots are found from
# its memory layout as flat positions in the base, and the new base is ``index_put`` of the result there.


def _check_view_base(view: Any, base: Any, op: OpDef) -> None:
    if base.requires_grad and base.is_leaf:
        raise AutogradError(
            "a view of a leaf Variable that requires grad is being used in an in-place operation."
        )
    arrays = (view._data, base._data)
    if not all(isinstance(a, np.ndarray) for a in arrays) or not base._data.flags.c_contiguous:
        raise AutogradError(
            f"{op.name}_: in-place operation on a view of a tensor that takes part in autograd needs a"
            " row-major CPU base in ember; use the out-of-place form (e.g. y = x.add(1)) instead."
        )


def _positions_in_base(view: Any, base: Any) -> np.ndarray:
    """Flat (row-major) index in ``base`` of every element of ``view``, from the view's strides."""
    item = base._data.itemsize
    start = view._data.__array_interface__["data"][0] - base._data.__array_interface__["data"][0]
    pos = np.array(start // item, dtype=np.int64)
    for n, stride in zip(view._data.shape, view._data.strides):
        pos = pos[..., None] + np.arange(n, dtype=np.int64) * (stride // item)
    return pos


def _write_through_base(view: Any, base: Any, result: Any) -> None:
    from ember.compiler.ops import REGISTRY
    from ember.creation import from_numpy

    idx = from_numpy(_positions_in_base(view, base).reshape(-1))
    spec = (("tensor",),)
    values = result if result.dtype is base.dtype else result.to(base.dtype)
    flat = apply(REGISTRY["reshape"], (base,), {"shape": (-1,)})
    values = apply(REGISTRY["reshape"], (values,), {"shape": (-1,)})
    new_flat = apply(REGISTRY["index_put"], (flat, values, idx), {"index": spec, "accumulate": False})
    new_base = apply(REGISTRY["reshape"], (new_flat,), {"shape": tuple(base.shape)})
    new_view = apply(REGISTRY["getitem"], (new_flat, idx), {"index": spec})
    new_view = apply(REGISTRY["reshape"], (new_view,), {"shape": tuple(view.shape)})
    base._data[...] = new_base._data  # the view's memory is part of the base's
    base._version[0] += 1
    for t, src in ((base, new_base), (view, new_view)):
        t.grad_fn, t._out_index, t.requires_grad = src.grad_fn, src._out_index, src.requires_grad


# ---- fills and copies: in-place forms with no out-of-place op of their own ----------------------------
# Both write the registry's ``overwrite`` (``where`` with an all-true condition), so broadcasting, casting,
# version bumps and autograd (the old value gets no gradient; a tensor ``src``/``value`` does) come from
# the registry like every other in-place form.


def fill_(self: Any, value: Any) -> Any:
    """Set every element to ``value`` (a number, or a 0-d tensor that then receives the gradient)."""
    from ember.compiler.ops import REGISTRY
    from ember.tensor import Tensor

    if isinstance(value, Tensor) and value.ndim != 0:
        raise ShapeError(
            f"fill_ only supports 0-dimension value tensor but got tensor with {value.ndim} dimensions."
        )
    return inplace_apply(self, REGISTRY["overwrite"], (value,), {})


def zero_(self: Any) -> Any:
    """Set every element to zero."""
    return fill_(self, False if self.dtype.name == "bool" else 0)


def copy_(self: Any, src: Any, non_blocking: bool = False) -> Any:
    """Copy ``src`` (broadcast to this shape, cast to this dtype) into this tensor's memory."""
    from ember.compiler.ops import REGISTRY
    from ember.creation import as_tensor
    from ember.tensor import Tensor

    if not isinstance(src, Tensor):
        src = as_tensor(src)
    if src.device != self.device:
        src = src.to(self.device)
    return inplace_apply(self, REGISTRY["overwrite"], (src,), {})
