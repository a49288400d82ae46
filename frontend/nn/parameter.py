"""``nn.Parameter``: a tensor that a Module registers as one of its parameters when assigned to it."""

from __future__ import annotations

from typing import Any

from ember.tensor import Tensor


class Parameter(Tensor):
    """A leaf tensor that requires grad by default and that ``Module.__setattr__`` registers.

    It shares memory with ``data`` (as in PyTorch), so ``Parameter(t)`` sees later writes to ``t``.

    >>> import ember
    >>> p = ember.nn.Parameter(ember.ones(2))
    >>> p.requires_grad
    True
    """

    def __init__(self, data: Any = None, requires_grad: bool = True) -> None:
        if data is None:
            from ember.creation import empty

            data = empty(0)
        if not isinstance(data, Tensor):
            from ember.creation import tensor

            data = tensor(data)
        self._init_from(data._data, data._dtype, data._device)
        self.requires_grad = bool(requires_grad) and data._dtype.is_floating_point
        if requires_grad and not data._dtype.is_floating_point:
            from ember.runtime.errors import AutogradError

            raise AutogradError("Only Tensors of floating point and complex dtype can require gradients")

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()

    def __deepcopy__(self, memo: dict[int, Any]) -> Parameter:
        if id(self) in memo:
            return memo[id(self)]
        p = Parameter(Tensor._make(self._data.copy(), self._dtype, self._device), self.requires_grad)
        if self.grad is not None:
            p.grad = self.grad.__deepcopy__(memo)
        memo[id(self)] = p
        return p

    def __reduce_ex__(self, protocol: int) -> Any:
        return (_rebuild_parameter, (Tensor._make(self._data, self._dtype, self._device), self.requires_grad))


def _rebuild_parameter(data: Tensor, requires_grad: bool) -> Parameter:
    return Parameter(data, requires_grad)


class Buffer(Tensor):
    """Marker type (PyTorch 2.x's ``nn.Buffer``): assigning one to a Module registers a buffer."""

    def __init__(self, data: Any = None, *, persistent: bool = True) -> None:
        if not isinstance(data, Tensor):
            from ember.creation import tensor

            data = tensor(data if data is not None else [])
        self._init_from(data._data, data._dtype, data._device)
        self.persistent = persistent


__all__ = ["Parameter", "Buffer"]
