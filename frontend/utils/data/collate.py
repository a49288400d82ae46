"""``default_collate``: turn a list of samples into a batch, recursively, as PyTorch does: tensors and
numpy arrays are stacked along a new first dimension, Python numbers become tensors (float64 / int64),
dicts and sequences are collated field by field, strings are kept as lists."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import ember
import numpy as np


def _is_namedtuple(x: Any) -> bool:
    return isinstance(x, tuple) and hasattr(x, "_fields")


def default_collate(batch: Sequence[Any]) -> Any:
    """Collate a list of samples into one batch.

    >>> default_collate([(ember.zeros(2), 1), (ember.ones(2), 0)])[1]
    tensor([1, 0])
    """
    elem = batch[0]
    if isinstance(elem, ember.Tensor):
        return ember.stack(list(batch), 0)
    if isinstance(elem, np.ndarray) and elem.dtype.kind not in "USO":
        return ember.stack([ember.as_tensor(b) for b in batch], 0)
    if isinstance(elem, np.generic) and elem.dtype.kind not in "USO":
        return ember.as_tensor(np.array(batch))
    if isinstance(elem, bool):
        return ember.tensor(list(batch), dtype=ember.bool)
    if isinstance(elem, float):
        return ember.tensor(list(batch), dtype=ember.float64)
    if isinstance(elem, int):
        return ember.tensor(list(batch), dtype=ember.int64)
    if isinstance(elem, (str, bytes)):
        return list(batch)
    if isinstance(elem, Mapping):
        return {key: default_collate([d[key] for d in batch]) for key in elem}
    if _is_namedtuple(elem):
        return type(elem)(*(default_collate(list(field)) for field in zip(*batch)))
    if isinstance(elem, Sequence):
        if any(len(s) != len(elem) for s in batch):
            raise RuntimeError("each element in list of batch should be of equal size")
        fields = [default_collate(list(field)) for field in zip(*batch)]
        if isinstance(elem, tuple):
            return fields
        try:
            return type(elem)(fields)
        except TypeError:
            return fields
    raise TypeError(
        f"default_collate: batch must contain tensors, numpy arrays, numbers, dicts or lists;"
        f" found {type(elem)}"
    )


def default_convert(data: Any) -> Any:
    """What a DataLoader without batching does to each sample: numpy arrays become tensors."""
    if isinstance(data, np.ndarray) and data.dtype.kind not in "USO":
        return ember.as_tensor(data)
    if isinstance(data, Mapping):
        return {k: default_convert(v) for k, v in data.items()}
    if _is_namedtuple(data):
        return type(data)(*(default_convert(d) for d in data))
    if isinstance(data, tuple):
        return [default_convert(d) for d in data]
    if isinstance(data, list):
        return [default_convert(d) for d in data]
    return data
