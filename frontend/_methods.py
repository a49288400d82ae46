"""Binds registry ops to the user API: ``ember.<op>`` functions, ``Tensor.<op>`` methods and their in-place
``Tensor.<op>_`` forms, all from the op definitions, so a new op needs no edit here.

Positional arguments after an op's tensor inputs fill its attributes in schema order, which gives
PyTorch's signatures for free: ``x.sum(1, True)`` is ``sum(x, dim=1, keepdim=True)``.
"""

from __future__ import annotations

from typing import Any

from ember.compiler.ops import REGISTRY
from ember.compiler.ops.registry import OpDef
from ember.dispatch import apply


def _split(op: OpDef, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    if op.variadic:  # (tensors, *attrs): a sequence of tensors comes first
        seq = args[0] if args else kwargs.pop(op.inputs[0].lstrip("*"), ())
        inputs: tuple[Any, ...] = tuple(seq)
        rest = args[1:]
    else:
        n = len(op.inputs)
        inputs = args[:n]
        rest = args[n:]
        if len(inputs) < n:
            missing = op.inputs[len(inputs):]
            try:
                inputs = inputs + tuple(kwargs.pop(name) for name in missing)
            except KeyError as e:
                raise TypeError(f"{op.name}() missing required argument {e}") from None
    names = list(op.attrs)
    if len(rest) > len(names):
        raise TypeError(f"{op.name}() takes {len(op.inputs) + len(names)} arguments but more were given")
    attrs = dict(zip(names, rest))
    for k, v in kwargs.items():
        if k in attrs:
            raise TypeError(f"{op.name}() got multiple values for argument '{k}'")
        attrs[k] = v
    return inputs, attrs


def make_function(op: OpDef) -> Any:
    arity = -1 if op.variadic else len(op.inputs)

    def fn(*args: Any, **kwargs: Any) -> Any:
        if not kwargs and len(args) == arity:  # just the tensor inputs (x.relu(), x.exp()): nothing to split
            return apply(op, args, {})
        inputs, attrs = _split(op, args, kwargs)
        return apply(op, inputs, attrs)

    fn.__name__ = fn.__qualname__ = op.name
    fn.__doc__ = op.doc or f"The ``{op.name}`` op; see ember.compiler.ops for its definition."
    return fn


def make_inplace(op: OpDef) -> Any:
    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        from ember._inplace import inplace_apply

        inputs, attrs = _split(op, (self, *args), kwargs)
        return inplace_apply(self, op, inputs[1:], attrs)

    method.__name__ = op.name + "_"
    return method


def bind(tensor_cls: type, namespace: dict[str, Any]) -> None:
    """Attach every exposed op that is not already spelled out by hand."""
    for op in REGISTRY:
        fn = make_function(op)
        if op.function and op.name not in namespace:
            namespace[op.name] = fn
        if op.method and op.name not in tensor_cls.__dict__:
            setattr(tensor_cls, op.name, fn)
        if op.inplace and op.name + "_" not in tensor_cls.__dict__:
            setattr(tensor_cls, op.name + "_", make_inplace(op))
