"""Variable-length sequences for recurrent layers: ``PackedSequence`` and the pack/pad helpers.

A packed sequence stores time step 0 of every sequence, then step 1 of those still running, and so on:
``data`` is (sum(batch_sizes), *), ``batch_sizes[t]`` counts the sequences longer than t. Packing and
unpacking are getitem/cat/stack/index_select ops, so gradients flow through them.

>>> import ember
>>> from ember.nn.utils.rnn import pack_sequence
>>> pack_sequence([ember.tensor([1.0, 2.0, 3.0]), ember.tensor([4.0])]).batch_sizes
tensor([2, 1, 1])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
from ember.runtime.errors import ArgumentError, ShapeError
from ember.tensor import Tensor

__all__ = [
    "PackedSequence",
    "pack_padded_sequence",
    "pad_packed_sequence",
    "pack_sequence",
    "pad_sequence",
    "unpack_sequence",
    "unpad_sequence",
]


class PackedSequence(NamedTuple):
    """(data, batch_sizes, sorted_indices, unsorted_indices), as PyTorch's; the indices map between the
    caller's batch order and the length-sorted order the data is packed in (None when already sorted)."""

    data: Tensor
    batch_sizes: Tensor
    sorted_indices: Tensor | None = None
    unsorted_indices: Tensor | None = None

    def to(self, *args: Any, **kwargs: Any) -> PackedSequence:
        data = self.data.to(*args, **kwargs)
        return self._replace(data=data)

    def cpu(self) -> PackedSequence:
        return self._replace(data=self.data.cpu())

    def double(self) -> PackedSequence:
        return self._replace(data=self.data.double())

    def float(self) -> PackedSequence:
        return self._replace(data=self.data.float())

    @property
    def is_cuda(self) -> bool:
        return self.data.is_cuda


def _long(values: Any) -> Tensor:
    from ember.creation import tensor

    return tensor(np.asarray(values, dtype=np.int64))


def _lengths(lengths: Any) -> np.ndarray:
    if isinstance(lengths, Tensor):
        return lengths.detach().cpu().numpy().astype(np.int64).reshape(-1)
    return np.asarray(list(lengths), dtype=np.int64).reshape(-1)


def pack_padded_sequence(
    input: Tensor, lengths: Any, batch_first: bool = False, enforce_sorted: bool = True
) -> PackedSequence:
    """Pack a padded (T, B, *) batch (or (B, T, *) with batch_first) given each sequence's length."""
    lens = _lengths(lengths)
    if input.dim() < 2:
        raise ShapeError(
            f"pack_padded_sequence: expected an input of at least 2 dims, got {list(input.shape)}"
        )
    x = input.transpose(0, 1) if batch_first else input
    if len(lens) != x.shape[1]:
        raise ShapeError(
            f"Expected `len(lengths)` to be equal to batch_size, but got {len(lens)} (batch_size="
            f"{x.shape[1]})"
        )
    if enforce_sorted:
        if np.any(np.diff(lens) > 0):
            raise ArgumentError(
                "`lengths` array must be sorted in decreasing order when `enforce_sorted` is"
                " True. You can pass `enforce_sorted=False` to pack_padded_sequence and/or"
                " pack_sequence to sidestep this requirement if you do not need ONNX"
                " exportability."
            )
        sorted_idx = unsorted_idx = None
    else:
        order = np.argsort(-lens, kind="stable")
        lens = lens[order]
        sorted_idx, unsorted_idx = _long(order), _long(np.argsort(order))
        x = x.index_select(1, sorted_idx)
    if lens.size and lens[-1] <= 0:
        raise ArgumentError(
            "Length of all samples has to be greater than 0, but found an element in 'lengths' that is <= 0"
        )
    if lens.size and lens[0] > x.shape[0]:
        raise ShapeError(
            f"pack_padded_sequence: a length of {lens[0]} exceeds the padded length {x.shape[0]}"
        )
    steps = int(lens[0]) if lens.size else 0
    batch_sizes = [int((lens > t).sum()) for t in range(steps)]
    from ember import cat

    data = cat([x[t, :bs] for t, bs in enumerate(batch_sizes)], 0)
    return PackedSequence(data, _long(batch_sizes), sorted_idx, unsorted_idx)


def pad_packed_sequence(
    sequence: PackedSequence,
    batch_first: bool = False,
    padding_value: float = 0.0,
    total_length: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Inverse of pack_padded_sequence: (padded batch, lengths) in the caller's batch order."""
    from ember import cat, full, stack

    data = sequence.data
    sizes = [int(b) for b in sequence.batch_sizes.tolist()]
    batch = sizes[0] if sizes else 0
    steps = len(sizes)
    if total_length is not None:
        if total_length < steps:
            raise ArgumentError(
                f"Expected total_length to be at least the length of the longest sequence"
                f" ({steps}), but got total_length={total_length}"
            )
        steps = total_length
    rest = tuple(data.shape[1:])
    rows, offset = [], 0
    for t in range(steps):
        bs = sizes[t] if t < len(sizes) else 0
        part = data[offset : offset + bs]
        offset += bs
        if bs < batch:
            part = cat(
                [part, full((batch - bs,) + rest, padding_value, dtype=data.dtype, device=data.device)], 0
            )
        rows.append(part)
    padded = stack(rows, 0)
    lengths = np.array([sum(1 for s in sizes if s > b) for b in range(batch)], dtype=np.int64)
    if sequence.unsorted_indices is not None:
        padded = padded.index_select(1, sequence.unsorted_indices)
        lengths = lengths[sequence.unsorted_indices.numpy()]
    if batch_first:
        padded = padded.transpose(0, 1)
    return padded, _long(lengths)


def pad_sequence(
    sequences: Sequence[Tensor],
    batch_first: bool = False,
    padding_value: float = 0.0,
    padding_side: str = "right",
) -> Tensor:
    """Stack sequences of shape (L_i, *) into (max L, B, *) (or (B, max L, *)), padding with a value."""
    from ember import cat, full, stack

    if padding_side not in ("left", "right"):
        raise ArgumentError(f"padding_side must be 'left' or 'right', got '{padding_side}'")
    if not sequences:
        raise ArgumentError("pad_sequence: received an empty list of sequences")
    longest = max(s.shape[0] for s in sequences)
    rows = []
    for s in sequences:
        missing = longest - s.shape[0]
        if missing:
            pad = full((missing,) + tuple(s.shape[1:]), padding_value, dtype=s.dtype, device=s.device)
            s = cat([s, pad] if padding_side == "right" else [pad, s], 0)
        rows.append(s)
    return stack(rows, 0 if batch_first else 1)


def pack_sequence(sequences: Sequence[Tensor], enforce_sorted: bool = True) -> PackedSequence:
    """Pack a list of variable-length sequences (L_i, *)."""
    lengths = [s.shape[0] for s in sequences]
    return pack_padded_sequence(pad_sequence(sequences), lengths, enforce_sorted=enforce_sorted)


def unpad_sequence(padded_sequences: Tensor, lengths: Any, batch_first: bool = False) -> list[Tensor]:
    """Split a padded batch back into its sequences."""
    x = padded_sequences if batch_first else padded_sequences.transpose(0, 1)
    return [x[i, : int(n)] for i, n in enumerate(_lengths(lengths))]


def unpack_sequence(packed_sequences: PackedSequence) -> list[Tensor]:
    """Split a packed sequence back into its sequences, in the caller's order."""
    padded, lengths = pad_packed_sequence(packed_sequences, batch_first=True)
    return unpad_sequence(padded, lengths, batch_first=True)
