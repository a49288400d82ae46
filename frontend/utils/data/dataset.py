"""Datasets: the map-style ``Dataset`` (``__getitem__`` + ``__len__``), ``IterableDataset`` (``__iter__``),
``TensorDataset``, ``Subset``, ``ConcatDataset`` and ``random_split``."""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator, Sequence
from typing import Any

from ember.runtime.errors import ArgumentError
from ember.utils.data.sampler import as_rng


class Dataset:
    """A map-style dataset: ``dataset[i]`` gives one sample and ``len(dataset)`` their number."""

    def __getitem__(self, index: int) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must implement __getitem__")

    def __add__(self, other: Dataset) -> ConcatDataset:
        return ConcatDataset([self, other])


class IterableDataset(Dataset):
    """A stream of samples. Under several workers each worker iterates its own copy; shard with
    ``ember.utils.data.get_worker_info()`` so samples are not repeated."""

    def __iter__(self) -> Iterator[Any]:
        raise NotImplementedError(f"{type(self).__name__} must implement __iter__")


class TensorDataset(Dataset):
    """Samples are the ``i``-th rows of tensors that share their first dimension.

    >>> import ember
    >>> ds = TensorDataset(ember.zeros(4, 2), ember.arange(4))
    >>> len(ds), ds[1][1].item()
    (4, 1)
    """

    def __init__(self, *tensors: Any) -> None:
        if not tensors:
            raise ArgumentError("TensorDataset needs at least one tensor")
        n = tensors[0].shape[0]
        if any(t.shape[0] != n for t in tensors):
            sizes = [t.shape[0] for t in tensors]
            raise ArgumentError(f"Size mismatch between tensors: first dimensions are {sizes}")
        self.tensors = tensors

    def __getitem__(self, index: int) -> tuple[Any, ...]:
        return tuple(t[index] for t in self.tensors)

    def __len__(self) -> int:
        return self.tensors[0].shape[0]


class Subset(Dataset):
    """The samples of ``dataset`` at ``indices``, in that order."""

    def __init__(self, dataset: Any, indices: Sequence[int]) -> None:
        self.dataset = dataset
        self.indices = indices

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, list):
            return [self.dataset[self.indices[i]] for i in index]
        return self.dataset[self.indices[index]]

    def __len__(self) -> int:
        return len(self.indices)


class ConcatDataset(Dataset):
    """Several map-style datasets end to end."""

    def __init__(self, datasets: Sequence[Any]) -> None:
        self.datasets = list(datasets)
        if not self.datasets:
            raise ArgumentError("datasets should not be an empty iterable")
        for d in self.datasets:
            if isinstance(d, IterableDataset):
                raise ArgumentError("ConcatDataset does not support IterableDataset")
        self.cumulative_sizes: list[int] = []
        total = 0
        for d in self.datasets:
            total += len(d)
            self.cumulative_sizes.append(total)

    def __len__(self) -> int:
        return self.cumulative_sizes[-1]

    def __getitem__(self, index: int) -> Any:
        if index < 0:
            if -index > len(self):
                raise ArgumentError("absolute value of index should not exceed dataset length")
            index += len(self)
        which = bisect.bisect_right(self.cumulative_sizes, index)
        start = self.cumulative_sizes[which - 1] if which else 0
        return self.datasets[which][index - start]


def _split_lengths(n: int, lengths: Sequence[float]) -> list[int]:
    """Turn fractions summing to 1 into counts (the remainder goes round-robin), as PyTorch does."""
    if math.isclose(sum(lengths), 1) and sum(lengths) <= 1:
        counts = [int(math.floor(n * frac)) for frac in lengths]
        for i in range(n - sum(counts)):
            counts[i % len(counts)] += 1
        return counts
    return [int(x) for x in lengths]


def random_split(dataset: Any, lengths: Sequence[float], generator: Any = None) -> list[Subset]:
    """Split ``dataset`` into non-overlapping random subsets of the given lengths (or fractions).

    >>> a, b = random_split(range(10), [0.8, 0.2])
    >>> len(a), len(b)
    (8, 2)
    """
    for frac in lengths:
        if frac < 0:
            raise ArgumentError(f"random_split: lengths must be non-negative, got {list(lengths)}")
    counts = _split_lengths(len(dataset), lengths)
    if sum(counts) != len(dataset):
        raise ArgumentError("Sum of input lengths does not equal the length of the input dataset!")
    perm = as_rng(generator).permutation(sum(counts)).tolist()
    out, offset = [], 0
    for c in counts:
        out.append(Subset(dataset, perm[offset : offset + c]))
        offset += c
    return out
