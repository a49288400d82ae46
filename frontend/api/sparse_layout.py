"""``Tensor.is_sparse`` and ``Tensor.to_dense()``: ember has only dense (strided) tensors, so code written
for PyTorch's sparse gradients (``nn.Embedding(sparse=True)``) can test the flag and densify uniformly."""

from __future__ import annotations

from typing import Any

from ember.tensor import Tensor


def to_dense(self: Any, dtype: Any = None, *, masked_grad: bool | None = None) -> Any:
    """A dense tensor is its own dense form (PyTorch returns ``self`` too); ``dtype`` converts."""
    return self if dtype is None else self.to(dtype)


Tensor.is_sparse = property(lambda self: False, doc="Always False: ember tensors are dense.")
Tensor.to_dense = to_dense
