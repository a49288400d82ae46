"""``ember.set_default_dtype`` / ``set_default_tensor_type``: the floating dtype that creation functions,
Python floats (``tensor(1.5)``, ``int_tensor * 1.5``) and integer-to-float ops (``sqrt``, ``/``) use.

The setting is the module attribute ``ember.compiler.dtypes.DEFAULT_FLOAT``, which every type rule reads
at call time. The dispatcher memoizes type-rule answers per input signature, and a Python float's dtype
is not part of that signature, so changing the default clears the memo.
"""

from __future__ import annotations

import warnings
from typing import Any

from ember.api import function
from ember.compiler import dtypes as _dt

# Legacy tensor type names (``torch.DoubleTensor``) and the dtype each stands for.
_TENSOR_TYPES = {"HalfTensor": _dt.float16, "FloatTensor": _dt.float32, "DoubleTensor": _dt.float64}


def _set(dt: Any, what: str) -> None:
    from ember import dispatch

    if not isinstance(dt, _dt.DType) or dt.category != _dt.FLOATING:
        raise TypeError("only floating-point types are supported as the default type")
    if dt is not _dt.DEFAULT_FLOAT:
        _dt.DEFAULT_FLOAT = dt
        dispatch._TYPES.clear()


@function
def set_default_dtype(d: Any) -> None:
    """Make ``d`` (float16, float32 or float64) the default floating dtype, as ``torch.set_default_dtype``.

    >>> import ember
    >>> ember.set_default_dtype(ember.float64); ember.tensor([1.5]).dtype
    ember.float64
    >>> ember.set_default_dtype(ember.float32)
    """
    _set(d if isinstance(d, _dt.DType) else None, "set_default_dtype")


@function
def set_default_tensor_type(t: Any) -> None:
    """Deprecated in PyTorch 2.1 (use set_default_dtype); takes ``"torch.DoubleTensor"``-style names."""
    warnings.warn(
        "torch.set_default_tensor_type() is deprecated as of PyTorch 2.1, please use"
        " torch.set_default_dtype() and torch.set_default_device() as alternatives.",
        UserWarning, stacklevel=2,
    )
    name = t if isinstance(t, str) else getattr(t, "__name__", "")
    short = name.rsplit(".", 1)[-1]
    if short in _TENSOR_TYPES:
        _set(_TENSOR_TYPES[short], "set_default_tensor_type")
    elif short.endswith("Tensor"):
        raise TypeError("only floating-point types are supported as the default type")
    else:
        raise TypeError(f"invalid type: '{name}'")
