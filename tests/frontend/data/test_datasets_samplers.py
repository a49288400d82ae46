"""Datasets, samplers, random_split and default_collate."""

from __future__ import annotations

import collections

import ember
import numpy as np
import pytest
import torch
from ember.utils.data import (
    BatchSampler,
    ConcatDataset,
    RandomSampler,
    SequentialSampler,
    Subset,
    SubsetRandomSampler,
    TensorDataset,
    WeightedRandomSampler,
    default_collate,
    random_split,
)


def test_tensor_dataset_and_size_mismatch() -> None:
    ds = TensorDataset(ember.ones(5, 2), ember.arange(5))
    x, y = ds[3]
    assert x.shape == (2,) and y.item() == 3 and len(ds) == 5
    with pytest.raises(ValueError, match="Size mismatch between tensors"):
        TensorDataset(ember.ones(5, 2), ember.arange(4))


def test_subset_concat_and_add() -> None:
    a, b = TensorDataset(ember.arange(3)), TensorDataset(ember.arange(10, 14))
    both = a + b
    assert isinstance(both, ConcatDataset) and len(both) == 7
    assert [both[i][0].item() for i in range(7)] == [0, 1, 2, 10, 11, 12, 13]
    assert both[-1][0].item() == 13
    sub = Subset(both, [6, 0, 4])
    assert [sub[i][0].item() for i in range(3)] == [13, 0, 11]


def test_random_split_lengths_and_fractions() -> None:
    ember.manual_seed(0)
    parts = random_split(range(10), [3, 7])
    assert [len(p) for p in parts] == [3, 7]
    assert sorted(list(parts[0]) + list(parts[1])) == list(range(10))
    fracs = random_split(range(11), [0.5, 0.3, 0.2])
    expected = torch.utils.data.random_split(range(11), [0.5, 0.3, 0.2])
    assert [len(p) for p in fracs] == [len(x) for x in expected]
    with pytest.raises(ValueError, match="Sum of input lengths does not equal"):
        random_split(range(10), [3, 3])
    ember.manual_seed(5)
    again = [list(p) for p in random_split(range(10), [3, 7])]
    ember.manual_seed(5)
    assert [list(p) for p in random_split(range(10), [3, 7])] == again


def test_sequential_random_and_subset_samplers() -> None:
    assert list(SequentialSampler(range(4))) == [0, 1, 2, 3]
    ember.manual_seed(1)
    perm = list(RandomSampler(range(9)))
    assert sorted(perm) == list(range(9)) and perm != list(range(9))
    more = list(RandomSampler(range(4), num_samples=10))
    assert len(more) == 10 and sorted(more[:8]) == [0, 0, 1, 1, 2, 2, 3, 3]
    drawn = list(RandomSampler(range(3), replacement=True, num_samples=50))
    assert len(drawn) == 50 and set(drawn) == {0, 1, 2}
    sub = list(SubsetRandomSampler([10, 20, 30, 40]))
    assert sorted(sub) == [10, 20, 30, 40]
    with pytest.raises(ValueError, match="num_samples should be a positive integer value"):
        RandomSampler(range(3), num_samples=0)
    rng = np.random.default_rng(4)
    assert list(RandomSampler(range(6), generator=rng)) == np.random.default_rng(4).permutation(6).tolist()


def test_weighted_sampler_follows_weights() -> None:
    ember.manual_seed(2)
    draws = np.array(list(WeightedRandomSampler([0.1, 0.0, 0.9], 4000)))
    counts = np.bincount(draws, minlength=3) / 4000
    assert counts[1] == 0 and abs(counts[2] - 0.9) < 0.03
    unique = list(WeightedRandomSampler([1, 1, 1, 5], 4, replacement=False))
    assert sorted(unique) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="without replacement"):
        WeightedRandomSampler([1, 0, 1], 3, replacement=False)


def test_batch_sampler_len_and_drop_last() -> None:
    assert list(BatchSampler(range(7), 3, False)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(BatchSampler(range(7), 3, True)) == [[0, 1, 2], [3, 4, 5]]
    assert len(BatchSampler(range(7), 3, False)) == 3 and len(BatchSampler(range(7), 3, True)) == 2


def test_default_collate_matches_torch_structure() -> None:
    samples = [(np.arange(3, dtype=np.float32) + i, i, 0.5 * i, {"k": np.float64(i)}) for i in range(4)]
    got = default_collate(samples)
    ref = torch.utils.data.default_collate(samples)
    assert isinstance(got, list) and len(got) == 4
    for g, r in zip(got[:3], ref[:3]):
        assert str(g.dtype).split(".")[-1] == str(r.dtype).split(".")[-1]
        np.testing.assert_array_equal(g.numpy(), r.numpy())
    np.testing.assert_array_equal(got[3]["k"].numpy(), ref[3]["k"].numpy())
    pair = collections.namedtuple("Pair", "a b")
    nt = default_collate([pair(ember.ones(2), "x"), pair(ember.zeros(2), "y")])
    assert isinstance(nt, pair) and nt.a.shape == (2, 2) and nt.b == ["x", "y"]
    with pytest.raises(RuntimeError, match="each element in list of batch should be of equal size"):
        default_collate([[1, 2], [1]])
    with pytest.raises(TypeError, match="default_collate"):
        default_collate([object()])
