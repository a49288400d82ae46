"""The op registry: every operator of ember is defined exactly once, here, by ``define_op``.

An ``OpDef`` bundles everything the rest of the system needs to know about an op:

======================  =====================================================================
part                    used by
======================  =====================================================================
name, attrs, pattern    tracer, printer/parser, verifier, fusion
infer (type rule)       eager dispatch (errors), tracer, verifier, shape inference
reference (over xp)     eager mode (numpy or cupy), interpreter, constant folding, tests
vjp (gradient rule)     eager autograd and graph autodiff, through the ``Builder`` interface
lowering                kernel-IR lowering shared by the LLVM and CUDA back ends
decompose               composite ops (built from primitives) and back ends lacking a kernel
======================  =====================================================================

Signatures (``inputs`` are tensors, anything with ``.shape`` and ``.dtype``, or Python scalars):

* ``infer(*inputs, **attrs) -> TensorType | tuple[TensorType, ...]``
* ``reference(xp, *arrays, **attrs) -> array | tuple[array, ...]``
* ``vjp(b, g, out, *inputs, **attrs) -> list[grad or None]`` (one entry per input; for ops with several
  outputs ``g`` and ``out`` are tuples, and a ``g`` entry may be None when that output got no gradient)
* ``decompose(b, *inputs, **attrs) -> output(s)`` written with the builder, like a vjp.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ember.compiler.dtypes import DType, as_dtype
from ember.runtime.errors import ArgumentError, InternalError


class Pattern(enum.IntEnum):
    """Fusion pattern, ordered as in TVM: a lower value fuses more freely."""

    ELEMWISE = 0      # out[i] = f(in[i]) with equal shapes
    BROADCAST = 1     # elementwise with broadcasting inputs
    INJECTIVE = 2     # each output element reads one input element (reshape, transpose, slicing)
    REDUCTION = 3     # sum, max, softmax-like
    OUT_FUSABLE = 4   # conv, matmul: takes elementwise epilogues
    OPAQUE = 8        # fuses with nothing (sort, random, ...)


class TensorType(NamedTuple):
    """Shape and dtype of a tensor value; what type rules consume and produce."""

    shape: tuple[int, ...]
    dtype: DType

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n

    def __str__(self) -> str:
        return f"{self.dtype.name}[{','.join(map(str, self.shape))}]"


# --------------------------------------------------------------------------------------------------
# attribute schema


class AttrKind:
    """A typed attribute: ``check`` validates and normalizes a value or raises ArgumentError."""

    def __init__(self, name: str, check: Callable[[Any], Any]) -> None:
        self.name = name
        self._check = check

    def check(self, op: str, attr: str, value: Any) -> Any:
        try:
            return self._check(value)
        except (TypeError, ValueError) as e:
            raise ArgumentError(f"{op}: argument '{attr}' must be {self.name}, got {value!r} ({e})") from None

    def __repr__(self) -> str:
        return self.name


def _int(v: Any) -> int:
    if isinstance(v, bool) or not hasattr(v, "__index__"):
        raise TypeError("not an int")
    return int(v.__index__())


def _float(v: Any) -> float:
    if isinstance(v, (int, float)) or hasattr(v, "__float__"):
        return float(v)
    raise TypeError("not a number")


def _bool(v: Any) -> bool:
    if isinstance(v, bool) or type(v).__name__ == "bool_":
        return bool(v)
    raise TypeError("not a bool")


def _ints(v: Any) -> tuple[int, ...]:
    if hasattr(v, "__index__") and not isinstance(v, bool):
        return (int(v),)
    return tuple(_int(x) for x in v)


def _scalar(v: Any) -> int | float | bool:
    if isinstance(v, (bool, int, float)):
        return v
    if hasattr(v, "item") and getattr(v, "shape", None) == ():
        return v.item()  # a numpy scalar
    raise TypeError("not a Python number")


def _str(v: Any) -> str:
    if not isinstance(v, str):
        raise TypeError("not a string")
    return v


INT = AttrKind("an int", _int)
FLOAT = AttrKind("a float", _float)
BOOL = AttrKind("a bool", _bool)
INTS = AttrKind("an int or a sequence of ints", _ints)
SCALAR = AttrKind("a number", _scalar)
STR = AttrKind("a string", _str)
DTYPE = AttrKind("a dtype", as_dtype)
ANY = AttrKind("a hashable value", lambda v: v)


def optional(kind: AttrKind) -> AttrKind:
    return AttrKind(f"{kind.name} or None", lambda v: None if v is None else kind._check(v))


def one_of(*choices: str) -> AttrKind:
    def check(v: Any) -> str:
        if v not in choices:
            raise ValueError(f"expected one of {', '.join(map(repr, choices))}")
        return v

    return AttrKind("one of " + ", ".join(map(repr, choices)), check)


_REQUIRED = object()


@dataclass(frozen=True)
class Attr:
    kind: AttrKind
    default: Any = _REQUIRED

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED


# --------------------------------------------------------------------------------------------------
# op definitions

SAVE_ALL = "all"


@dataclass(eq=False)
class OpDef:
    name: str
    pattern: Pattern
    inputs: tuple[str, ...]
    attrs: dict[str, Attr]
    infer: Callable[..., Any] | None
    reference: Callable[..., Any] | None
    vjp: Callable[..., Any] | None
    differentiable: bool
    saves: Any                        # SAVE_ALL, or a tuple of input indices / "*" (variadic tail) / "out"
    num_outputs: int
    view: bool                        # output 0 aliases input 0's memory in eager mode
    normalize: Callable[..., dict[str, Any]] | None
    decompose: Callable[..., Any] | None
    lowering: dict[str, Any]          # compute description for the back ends (scalar expr, template, ...)
    method: bool                      # exposed as a Tensor method
    function: bool                    # exposed as ember.<name>
    inplace: bool                     # has a Tensor.<name>_ in-place form
    doc: str = ""
    variadic: bool = field(init=False)

    def __post_init__(self) -> None:
        self.variadic = any(name.startswith("*") for name in self.inputs)

    @property
    def composite(self) -> bool:
        """A composite op has no reference of its own: it is its decomposition into primitives."""
        return self.reference is None

    def check_attrs(self, given: dict[str, Any]) -> dict[str, Any]:
        """Validate attributes against the schema and fill in defaults."""
        for k in given:
            if k not in self.attrs:
                known = ", ".join(self.attrs) or "none"
                raise ArgumentError(f"{self.name}() got an unexpected argument '{k}' (its arguments: {known})")
        out = {}
        for k, spec in self.attrs.items():
            if k in given:
                out[k] = spec.kind.check(self.name, k, given[k])
            elif spec.required:
                raise ArgumentError(f"{self.name}() missing required argument '{k}'")
            else:
                out[k] = spec.default
        return out

    def saved_input(self, i: int) -> bool:
        """Whether the vjp reads input ``i`` (else it gets only its TensorType). "*" names the variadic
        tail of the inputs."""
        if self.saves == SAVE_ALL or i in self.saves:
            return True
        return "*" in self.saves and i >= self.first_variadic

    @property
    def first_variadic(self) -> int:
        for i, name in enumerate(self.inputs):
            if name.startswith("*"):
                return i
        return len(self.inputs)

    @property
    def saves_out(self) -> bool:
        return self.saves == SAVE_ALL or "out" in self.saves

    def __repr__(self) -> str:
        return f"<op {self.name}>"


class Registry:
    """Name -> OpDef. Frozen once ``ember.compiler.ops`` has imported every op family."""

    def __init__(self) -> None:
        self._ops: dict[str, OpDef] = {}
        self.frozen = False

    def add(self, op: OpDef) -> None:
        if self.frozen:
            raise InternalError(f"op {op.name!r} defined after the registry was frozen")
        if op.name in self._ops:
            raise InternalError(f"op {op.name!r} is defined twice")
        self._ops[op.name] = op

    def __getitem__(self, name: str) -> OpDef:
        try:
            return self._ops[name]
        except KeyError:
            raise KeyError(f"no op named {name!r} in the registry") from None

    def get(self, name: str) -> OpDef | None:
        return self._ops.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._ops

    def __iter__(self) -> Iterator[OpDef]:
        return iter(self._ops.values())

    def __len__(self) -> int:
        return len(self._ops)


REGISTRY = Registry()


def _attrs(spec: dict[str, Any] | None) -> dict[str, Attr]:
    out = {}
    for k, v in (spec or {}).items():
        if isinstance(v, Attr):
            out[k] = v
        elif isinstance(v, tuple):
            out[k] = Attr(*v)  # (kind, default)
        else:
            out[k] = Attr(v)
    return out


def define_op(
    name: str,
    *,
    pattern: Pattern,
    infer: Callable[..., Any],
    reference: Callable[..., Any],
    vjp: Callable[..., Any] | None,
    inputs: tuple[str, ...] = ("input",),
    attrs: dict[str, Any] | None = None,
    differentiable: bool = True,
    saves: Any = SAVE_ALL,
    num_outputs: int = 1,
    view: bool = False,
    normalize: Callable[..., dict[str, Any]] | None = None,
    decompose: Callable[..., Any] | None = None,
    lowering: dict[str, Any] | None = None,
    method: bool = True,
    function: bool = True,
    inplace: bool = False,
    doc: str = "",
) -> OpDef:
    """Define and register a primitive op. ``vjp=None`` requires ``differentiable=False``: the absence
    of a gradient is always a decision, never an omission."""
    if vjp is None and differentiable:
        raise InternalError(f"op {name!r}: give a vjp or say differentiable=False")
    op = OpDef(name, pattern, inputs, _attrs(attrs), infer, reference, vjp, differentiable, saves,
               num_outputs, view, normalize, decompose, dict(lowering or {}), method, function, inplace, doc)
    REGISTRY.add(op)
    return op


def define_composite(
    name: str,
    *,
    decompose: Callable[..., Any],
    inputs: tuple[str, ...] = ("input",),
    attrs: dict[str, Any] | None = None,
    normalize: Callable[..., dict[str, Any]] | None = None,
    num_outputs: int = 1,
    method: bool = True,
    function: bool = True,
    inplace: bool = False,
    doc: str = "",
) -> OpDef:
    """Define an op that is built from primitives: it gets gradients, tracing and codegen from them."""
    op = OpDef(name, Pattern.OPAQUE, inputs, _attrs(attrs), None, None, None, True, (), num_outputs,
               False, normalize, decompose, {}, method, function, inplace, doc)
    REGISTRY.add(op)
    return op
