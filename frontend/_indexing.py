"""Python indexing (``t[...]``, ``t[...] = v``) translated to the registry's getitem / index_put ops."""

from __future__ import annotations

from typing import Any

import numpy as np
from ember.compiler.ops import REGISTRY
from ember.dispatch import apply
from ember.runtime.errors import ArgumentError

_GETITEM = REGISTRY["getitem"]
_INDEX_PUT = REGISTRY["index_put"]


def _as_int(v: Any) -> Any:
    return None if v is None else int(v)


def parse_index(index: Any) -> tuple[tuple[tuple[Any, ...], ...], tuple[Any, ...]]:
    """Split a Python index into the op's index description and its tensor operands."""
    from ember.creation import tensor as make_tensor
    from ember.tensor import Tensor

    items = index if isinstance(index, tuple) else (index,)
    spec: list[tuple[Any, ...]] = []
    tensors: list[Any] = []
    for it in items:
        if it is None:
            spec.append(("none",))
        elif it is Ellipsis:
            spec.append(("ellipsis",))
        elif isinstance(it, slice):
            if it.step is not None and int(it.step) <= 0:
                raise ArgumentError("step must be greater than zero")
            spec.append(("slice", _as_int(it.start), _as_int(it.stop), _as_int(it.step)))
        elif isinstance(it, (bool, np.bool_)):
            tensors.append(make_tensor(bool(it)))
            spec.append(("tensor",))
        elif isinstance(it, (int, np.integer)):
            spec.append(("int", int(it)))
        elif isinstance(it, Tensor):
            if it.dtype.is_floating_point:
                raise IndexError("tensors used as indices must be long, int, byte or bool tensors")
            tensors.append(it)
            spec.append(("tensor",))
        elif isinstance(it, (list, np.ndarray)):
            t = make_tensor(it)
            if t.dtype.is_floating_point:
                raise IndexError("tensors used as indices must be long, int, byte or bool tensors")
            tensors.append(t)
            spec.append(("tensor",))
        else:
            raise IndexError(f"unsupported index of type {type(it).__name__}: {it!r}")
    return tuple(spec), tuple(tensors)


def getitem(x: Any, index: Any) -> Any:
    """``x[index]``: a view for ints, slices, None and Ellipsis; a copy once tensors or lists take part."""
    spec, tensors = parse_index(index)
    return apply(_GETITEM, (x, *tensors), {"index": spec})


def setitem(x: Any, index: Any, value: Any) -> None:
    """``x[index] = value``: out-of-place ``index_put`` written back into x's memory (a version bump)."""
    from ember._inplace import inplace_apply
    from ember.tensor import Tensor

    spec, tensors = parse_index(index)
    if isinstance(value, (list, tuple, np.ndarray)):  # data, not a scalar: a tensor of x's dtype
        from ember.creation import tensor as make_tensor

        value = make_tensor(value, dtype=x.dtype, device=x.device)
    if isinstance(value, Tensor) and value.dtype is not x.dtype:
        value = value.to(x.dtype)
    inplace_apply(x, _INDEX_PUT, (value, *tensors), {"index": spec, "accumulate": False})


def index_put_(self: Any, indices: Any, values: Any, accumulate: bool = False) -> Any:
    """``self[indices] = values`` (or ``+=`` with ``accumulate``, duplicates summed), in place.

    >>> import ember
    >>> x = ember.zeros(3)
    >>> x.index_put_((ember.tensor([0, 0, 2]),), ember.tensor(1.0), accumulate=True)
    tensor([2., 0., 1.])
    """
    from ember._inplace import inplace_apply

    spec, tensors = parse_index(tuple(indices))
    return inplace_apply(
        self, _INDEX_PUT, (values, *tensors), {"index": spec, "accumulate": bool(accumulate)}
    )


def index_put(self: Any, indices: Any, values: Any, accumulate: bool = False) -> Any:
    """Out-of-place ``index_put_``."""
    spec, tensors = parse_index(tuple(indices))
    return apply(_INDEX_PUT, (self, values, *tensors), {"index": spec, "accumulate": bool(accumulate)})
