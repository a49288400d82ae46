"""ember.Tensor: an array (numpy on the CPU, cupy on CUDA) plus dtype, device and autograd state.

The class stays thin: every operation goes through ``ember.dispatch.apply`` with an op from the registry.
Methods named after registry ops are attached by ``ember._methods``; this file holds state, conversion
and the Python protocols.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from ember.compiler import dtypes as _dt
from ember.compiler.dtypes import DType
from ember.compiler.ops import REGISTRY
from ember.device import CPU, as_device, device
from ember.dispatch import apply
from ember.runtime.errors import AutogradError, DTypeError

_OPS = REGISTRY


class Size(tuple):
    """The shape of a tensor: a tuple that prints like PyTorch's."""

    def __repr__(self) -> str:
        return f"ember.Size([{', '.join(map(str, self))}])"

    def numel(self) -> int:
        n = 1
        for s in self:
            n *= s
        return n


class Tensor:
    __slots__ = ("_data", "_dtype", "_device", "requires_grad", "grad", "grad_fn", "_out_index", "_version",
                 "_base", "_accum", "_value", "_retains_grad", "__weakref__", "__dict__")

    # ---- construction -------------------------------------------------------------------------------

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        from ember.creation import _legacy_tensor

        src = _legacy_tensor(*args, **kwargs)
        self._init_from(src._data, src._dtype, src._device)

    def _init_from(self, data: Any, dtype: DType, dev: Any, version: list[int] | None = None) -> None:
        self._data = data
        self._dtype = dtype
        self._device = dev
        self.requires_grad = False
        self.grad: Tensor | None = None
        self.grad_fn: Any = None
        self._out_index = 0
        self._version = [0] if version is None else version
        self._base: Tensor | None = None
        self._accum: Any = None
        self._value: Any = None
        self._retains_grad = False

    @classmethod
    def _make(cls, data: Any, dtype: DType, dev: Any = None, version: list[int] | None = None) -> Tensor:
        t = object.__new__(cls)
        t._init_from(data, dtype, dev if dev is not None else CPU, version)
        return t

    # ---- metadata ---------------------------------------------------------------------------------

    @property
    def shape(self) -> Size:
        return Size(self._data.shape)

    def size(self, dim: int | None = None) -> Any:
        if dim is None:
            return Size(self._data.shape)
        from ember.compiler.ops.rules import norm_dim

        return self._data.shape[norm_dim("size", dim, self._data.ndim)]

    @property
    def dtype(self) -> DType:
        return self._dtype

    @property
    def device(self) -> device:
        return self._device

    @property
    def is_cuda(self) -> bool:
        return self._device.type == "cuda"

    @property
    def ndim(self) -> int:
        return len(self._data.shape)

    def dim(self) -> int:
        return len(self._data.shape)

    def numel(self) -> int:
        return int(np.prod(self._data.shape, dtype=np.int64))

    nelement = numel

    def element_size(self) -> int:
        return self._dtype.itemsize

    def is_floating_point(self) -> bool:
        return self._dtype.is_floating_point

    def is_contiguous(self) -> bool:
        return bool(self._data.flags.c_contiguous)

    def stride(self, dim: int | None = None) -> Any:
        st = tuple(s // self._dtype.itemsize for s in self._data.strides)
        return st if dim is None else st[dim]

    def data_ptr(self) -> int:
        return int(self._data.__array_interface__["data"][0]) if self._device.type == "cpu" else 0

    @property
    def is_leaf(self) -> bool:
        return self.grad_fn is None

    @property
    def data(self) -> Tensor:
        return Tensor._make(self._data, self._dtype, self._device)

    @data.setter
    def data(self, value: Tensor) -> None:
        self._data = value._data
        self._dtype = value._dtype
        self._device = value._device

    @property
    def T(self) -> Tensor:  # noqa: N802
        return self.permute(*reversed(range(self.ndim)))

    @property
    def mT(self) -> Tensor:  # noqa: N802
        return self.transpose(-2, -1)

    @property
    def _version_number(self) -> int:
        return self._version[0]

    # ---- autograd -----------------------------------------------------------------------------------

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        if not self.is_leaf:
            raise AutogradError(
                "you can only change requires_grad flags of leaf variables. If you want to use a computed"
                " variable in a subgraph that doesn't require differentiation use var_no_grad = var.detach()."
            )
        if requires_grad and not (self._dtype.is_floating_point):
            raise AutogradError("only Tensors of floating point dtype can require gradients")
        self.requires_grad = bool(requires_grad)
        return self

    def detach(self) -> Tensor:
        t = Tensor._make(self._data, self._dtype, self._device, version=self._version)
        t._base = self._base
        return t

    def detach_(self) -> Tensor:
        self.grad_fn = None
        self.requires_grad = False
        return self

    def backward(self, gradient: Any = None, retain_graph: bool | None = None, create_graph: bool = False,
                 inputs: Any = None) -> None:
        from ember.autograd import backward

        backward(self, gradient, retain_graph, create_graph, inputs)

    def register_hook(self, hook: Any) -> Any:
        """Call ``hook(grad)`` when this tensor's gradient is computed; a returned tensor replaces it."""
        if not self.requires_grad:
            raise AutogradError("cannot register a hook on a tensor that doesn't require gradient")
        from ember.dispatch import edge_of

        node, index = edge_of(self)
        node.register_prehook_for(index, hook)

        class _Handle:
            def remove(self_inner) -> None:
                node._pre_hooks[index].remove(hook)

        return _Handle()

    def retain_grad(self) -> None:
        if self.is_leaf or self._retains_grad:
            return
        import weakref

        ref = weakref.ref(self)

        def keep(g: Tensor) -> None:
            t = ref()
            if t is not None:
                t.grad = g.detach().clone() if t.grad is None else t.grad + g.detach()

        self.register_hook(keep)
        self._retains_grad = True

    @property
    def retains_grad(self) -> bool:
        return self._retains_grad

    # ---- conversion ---------------------------------------------------------------------------------

    def numpy(self, *, force: bool = False) -> np.ndarray:
        if self.requires_grad and not force:
            raise AutogradError(
                "Can't call numpy() on Tensor that requires grad. Use tensor.detach().numpy() instead."
            )
        if self._device.type != "cpu":
            if not force:
                raise TypeError(
                    f"can't convert {self._device} device type tensor to numpy. Use Tensor.cpu() to copy the"
                    " tensor to host memory first."
                )
            return self._data.get()
        return self._data

    def item(self) -> Any:
        if self.numel() != 1:
            raise ValueError(
                f"a Tensor with {self.numel()} elements cannot be converted to Scalar"
            )
        return self._host().reshape(-1)[0].item()

    def tolist(self) -> Any:
        return self._host().tolist()

    def _host(self) -> np.ndarray:
        return self._data if self._device.type == "cpu" else self._data.get()

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        arr = self._host()
        return arr if dtype is None else arr.astype(dtype)

    def to(self, *args: Any, **kwargs: Any) -> Tensor:
        """``to(dtype)``, ``to(device)``, ``to(device, dtype)``, ``to(other_tensor)``."""
        dtype = kwargs.pop("dtype", None)
        dev = kwargs.pop("device", None)
        kwargs.pop("non_blocking", None)
        copy = kwargs.pop("copy", False)
        if kwargs:
            raise TypeError(f"to() got unexpected arguments {sorted(kwargs)}")
        for a in args:
            if isinstance(a, Tensor):
                dtype, dev = a.dtype, a.device
            elif isinstance(a, (device, int)) or (isinstance(a, str) and a.split(":")[0] in ("cpu", "cuda")):
                dev = a
            elif a is not None:
                dtype = a
        out = self
        if dev is not None:
            target = as_device(dev)
            if target is not self._device and target != self._device:  # identity first: tensors hold canonical devices
                from ember.cuda import to_device

                out = to_device(out, target)
        if dtype is not None:
            dt = _dt.as_dtype(dtype)
            if dt is not out._dtype:
                out = apply(_OPS["cast"], (out,), {"dtype": dt})
        if copy and out is self:
            out = self.clone()
        return out

    def cpu(self) -> Tensor:
        return self.to("cpu")

    def cuda(self, device: Any = None) -> Tensor:
        return self.to("cuda" if device is None else as_device(device if not isinstance(device, int)
                                                                 else f"cuda:{device}"))

    def type(self, dtype: Any = None) -> Any:
        if dtype is None:
            return {"float32": "FloatTensor", "float64": "DoubleTensor", "float16": "HalfTensor",
                    "int64": "LongTensor", "int32": "IntTensor", "bool": "BoolTensor", "uint8": "ByteTensor",
                    "int8": "CharTensor", "int16": "ShortTensor"}[self._dtype.name]
        return self.to(dtype)

    def float(self) -> Tensor:
        return self.to(_dt.float32)

    def double(self) -> Tensor:
        return self.to(_dt.float64)

    def half(self) -> Tensor:
        return self.to(_dt.float16)

    def long(self) -> Tensor:
        return self.to(_dt.int64)

    def int(self) -> Tensor:
        return self.to(_dt.int32)

    def bool(self) -> Tensor:
        return self.to(_dt.bool_)

    def byte(self) -> Tensor:
        return self.to(_dt.uint8)

    def short(self) -> Tensor:
        return self.to(_dt.int16)

    def char(self) -> Tensor:
        return self.to(_dt.int8)

    def type_as(self, other: Tensor) -> Tensor:
        return self.to(other.dtype)

    # ---- Python protocols ---------------------------------------------------------------------------

    __hash__ = object.__hash__

    def __len__(self) -> int:
        if not self._data.shape:
            raise TypeError("len() of a 0-d tensor")
        return self._data.shape[0]

    def __iter__(self) -> Any:
        if not self._data.shape:
            raise TypeError("iteration over a 0-d tensor")
        return iter(self.unbind(0))

    def __bool__(self) -> bool:
        if self.numel() != 1:
            raise RuntimeError("Boolean value of Tensor with more than one value is ambiguous")
        return bool(self.item())

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def __index__(self) -> int:
        if self._dtype.is_floating_point or self.numel() != 1:
            raise TypeError("only integer tensors of a single element can be converted to an index")
        return int(self.item())

    def __repr__(self) -> str:
        from ember._printing import tensor_repr

        return tensor_repr(self)

    def __format__(self, spec: str) -> str:
        if self.numel() == 1 and spec:
            return format(self.item(), spec)
        return repr(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> Tensor:
        t = Tensor._make(self._data.copy(), self._dtype, self._device)
        t.requires_grad = self.requires_grad
        if self.grad is not None:
            t.grad = self.grad.__deepcopy__(memo)
        t.__dict__.update(self.__dict__)
        memo[id(self)] = t
        return t

    def __reduce_ex__(self, protocol: int) -> Any:
        from ember.creation import _rebuild

        return (_rebuild, (self._host(), self._dtype.name, self.requires_grad))

    # operators: the arithmetic ones dispatch straight to the registry for speed
    def __add__(self, other: Any) -> Tensor:
        return apply(_ADD, (self, other), {})

    def __radd__(self, other: Any) -> Tensor:
        return apply(_ADD, (other, self), {})

    def __sub__(self, other: Any) -> Tensor:
        return apply(_SUB, (self, other), {})

    def __rsub__(self, other: Any) -> Tensor:
        return apply(_SUB, (other, self), {})

    def __mul__(self, other: Any) -> Tensor:
        return apply(_MUL, (self, other), {})

    def __rmul__(self, other: Any) -> Tensor:
        return apply(_MUL, (other, self), {})

    def __truediv__(self, other: Any) -> Tensor:
        return apply(_DIV, (self, other), {})

    def __rtruediv__(self, other: Any) -> Tensor:
        return apply(_DIV, (other, self), {})

    def __neg__(self) -> Tensor:
        return apply(_NEG, (self,), {})

    def __pos__(self) -> Tensor:
        return self

    def __matmul__(self, other: Any) -> Tensor:
        return apply(_OPS["matmul"], (self, other), {})

    def __rmatmul__(self, other: Any) -> Tensor:
        return apply(_OPS["matmul"], (other, self), {})

    def __iadd__(self, other: Any) -> Tensor:
        return self.add_(other)

    def __isub__(self, other: Any) -> Tensor:
        return self.sub_(other)

    def __imul__(self, other: Any) -> Tensor:
        return self.mul_(other)

    def __itruediv__(self, other: Any) -> Tensor:
        return self.div_(other)

    def __eq__(self, other: Any) -> Tensor:  # type: ignore[override]
        return apply(_OPS["eq"], (self, other), {})

    def __ne__(self, other: Any) -> Tensor:  # type: ignore[override]
        return apply(_OPS["ne"], (self, other), {})

    def __lt__(self, other: Any) -> Tensor:
        return apply(_OPS["lt"], (self, other), {})

    def __le__(self, other: Any) -> Tensor:
        return apply(_OPS["le"], (self, other), {})

    def __gt__(self, other: Any) -> Tensor:
        return apply(_OPS["gt"], (self, other), {})

    def __ge__(self, other: Any) -> Tensor:
        return apply(_OPS["ge"], (self, other), {})

    # more operators (math engineer's block): each is one registry op
    def __pow__(self, other: Any) -> Tensor:
        return apply(_OPS["pow"], (self, other), {})

    def __rpow__(self, other: Any) -> Tensor:
        return apply(_OPS["pow"], (other, self), {})

    def __ipow__(self, other: Any) -> Tensor:
        return self.pow_(other)

    def __floordiv__(self, other: Any) -> Tensor:
        return apply(_OPS["div"], (self, other), {"rounding_mode": "floor"})

    def __rfloordiv__(self, other: Any) -> Tensor:
        return apply(_OPS["div"], (other, self), {"rounding_mode": "floor"})

    def __mod__(self, other: Any) -> Tensor:
        return apply(_OPS["remainder"], (self, other), {})

    def __rmod__(self, other: Any) -> Tensor:
        return apply(_OPS["remainder"], (other, self), {})

    def __abs__(self) -> Tensor:
        return apply(_OPS["abs"], (self,), {})

    def __and__(self, other: Any) -> Tensor:
        return apply(_OPS["bitwise_and"], (self, other), {})

    __rand__ = __and__

    def __or__(self, other: Any) -> Tensor:
        return apply(_OPS["bitwise_or"], (self, other), {})

    __ror__ = __or__

    def __xor__(self, other: Any) -> Tensor:
        return apply(_OPS["bitwise_xor"], (self, other), {})

    __rxor__ = __xor__

    def __invert__(self) -> Tensor:
        return apply(_OPS["bitwise_not"], (self,), {})

    def __getitem__(self, index: Any) -> Tensor:
        from ember._indexing import getitem

        return getitem(self, index)

    def __setitem__(self, index: Any, value: Any) -> None:
        from ember._indexing import setitem

        setitem(self, index, value)


_ADD, _SUB, _MUL, _DIV, _NEG = (_OPS[n] for n in ("add", "sub", "mul", "div", "neg"))


def check_dtype_cast(op: str, result: DType, target: DType) -> None:
    """In-place results must be castable to the target, as in PyTorch (no float into an int tensor)."""
    if result.category > target.category:
        raise DTypeError(f"{op}: result type {result.name.capitalize()} can't be cast to the desired output"
                         f" type {target.name.capitalize()}")
