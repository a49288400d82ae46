"""DataLoader: batching, shuffling under a seed, samplers, collate, drop_last, real worker processes
(same batches as num_workers=0, deterministic per-worker seeds, worker errors with their traceback)."""

from __future__ import annotations

import collections
import os

import ember
import numpy as np
import pytest
from ember.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    IterableDataset,
    SequentialSampler,
    TensorDataset,
    get_worker_info,
)


def _dataset(n=23):
    x = ember.arange(n * 3, dtype=ember.float32).reshape(n, 3)
    return TensorDataset(x, ember.arange(n))


def _batches(loader):
    return [tuple(t.numpy().copy() for t in batch) for batch in loader]


def test_sequential_batches_and_drop_last() -> None:
    ds = _dataset()
    got = _batches(DataLoader(ds, batch_size=5))
    assert [b[1].tolist() for b in got][-1] == [20, 21, 22]
    assert len(got) == 5 == len(DataLoader(ds, batch_size=5))
    np.testing.assert_array_equal(got[1][0], np.arange(15, 30, dtype=np.float32).reshape(5, 3))
    dropped = DataLoader(ds, batch_size=5, drop_last=True)
    assert len(dropped) == 4 and len(_batches(dropped)) == 4


def test_shuffle_is_a_seeded_permutation() -> None:
    ds = _dataset()
    ember.manual_seed(3)
    first = np.concatenate([b[1] for b in _batches(DataLoader(ds, batch_size=4, shuffle=True))])
    ember.manual_seed(3)
    again = np.concatenate([b[1] for b in _batches(DataLoader(ds, batch_size=4, shuffle=True))])
    assert sorted(first.tolist()) == list(range(23))
    assert first.tolist() != list(range(23))
    np.testing.assert_array_equal(first, again)


class _Noisy(Dataset):
    """Samples that use the worker's random state: equal runs need equal per-worker seeds."""

    def __len__(self) -> int:
        return 12

    def __getitem__(self, i):
        return ember.tensor([float(i)]), ember.rand(2)


def test_workers_yield_the_same_batches_as_the_main_process() -> None:
    ds = _dataset(40)
    ember.manual_seed(7)
    single = _batches(DataLoader(ds, batch_size=6, shuffle=True, num_workers=0))
    ember.manual_seed(7)
    multi = _batches(DataLoader(ds, batch_size=6, shuffle=True, num_workers=2))
    assert len(single) == len(multi) == 7
    for a, b in zip(single, multi):
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])


def test_worker_seeding_is_deterministic_and_differs_per_worker() -> None:
    ember.manual_seed(11)
    run1 = _batches(DataLoader(_Noisy(), batch_size=3, num_workers=2))
    ember.manual_seed(11)
    run2 = _batches(DataLoader(_Noisy(), batch_size=3, num_workers=2))
    for a, b in zip(run1, run2):
        np.testing.assert_array_equal(a[1], b[1])
    # batches 0 and 1 go to workers 0 and 1, whose generators are seeded differently
    assert not np.array_equal(run1[0][1], run1[1][1])


class _Broken(Dataset):
    def __len__(self) -> int:
        return 8

    def __getitem__(self, i):
        if i == 5:
            raise KeyError(f"sample {i} is missing")
        return ember.tensor([i])


def test_worker_exception_carries_the_worker_traceback() -> None:
    loader = DataLoader(_Broken(), batch_size=2, num_workers=2)
    with pytest.raises(KeyError) as info:
        list(loader)
    msg = str(info.value)
    assert "Caught KeyError in DataLoader worker process" in msg
    assert "Traceback (most recent call last)" in msg
    assert "sample 5 is missing" in msg and "__getitem__" in msg


def test_worker_exception_in_main_process_mode_is_the_original() -> None:
    with pytest.raises(KeyError, match="sample 5 is missing"):
        list(DataLoader(_Broken(), batch_size=2))


def _record_worker(worker_id: int) -> None:
    info = get_worker_info()
    assert info is not None and info.id == worker_id
    os.environ["EMBER_TEST_WORKER"] = str(worker_id)


class _WhoAmI(Dataset):
    def __len__(self) -> int:
        return 6

    def __getitem__(self, i):
        info = get_worker_info()
        return {"worker": info.id, "init": int(os.environ["EMBER_TEST_WORKER"]), "pid": os.getpid(), "i": i}


def test_worker_init_fn_and_worker_info_in_real_processes() -> None:
    loader = DataLoader(_WhoAmI(), batch_size=None, num_workers=2, worker_init_fn=_record_worker)
    samples = list(loader)
    assert [s["i"] for s in samples] == list(range(6))
    assert [s["worker"] for s in samples] == [0, 1, 0, 1, 0, 1]
    assert all(s["worker"] == s["init"] for s in samples)
    assert os.getpid() not in {s["pid"] for s in samples}
    assert get_worker_info() is None


class _Stream(IterableDataset):
    def __init__(self, n: int) -> None:
        self.n = n

    def __iter__(self):
        info = get_worker_info()
        start, step = (0, 1) if info is None else (info.id, info.num_workers)
        for i in range(start, self.n, step):
            yield ember.tensor(i)


def test_iterable_dataset_in_main_process_and_sharded_workers() -> None:
    single = [b.tolist() for b in DataLoader(_Stream(10), batch_size=3)]
    assert single == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]
    multi = [b.tolist() for b in DataLoader(_Stream(10), batch_size=2, num_workers=2)]
    assert sorted(v for b in multi for v in b) == list(range(10))
    with pytest.raises(ValueError, match="IterableDataset"):
        DataLoader(_Stream(3), shuffle=True)


def test_custom_collate_and_batch_sampler() -> None:
    ds = _dataset(10)
    sampler = BatchSampler(SequentialSampler(ds), batch_size=4, drop_last=False)
    loader = DataLoader(ds, batch_sampler=sampler, collate_fn=lambda batch: [int(s[1]) for s in batch])
    assert list(loader) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    with pytest.raises(ValueError, match="mutually exclusive"):
        DataLoader(ds, batch_sampler=sampler, batch_size=3)


def test_pin_memory_accepted_and_bad_arguments_rejected() -> None:
    ds = _dataset(4)
    assert len(list(DataLoader(ds, batch_size=2, pin_memory=True))) == 2
    with pytest.raises(ValueError, match="num_workers option should be non-negative"):
        DataLoader(ds, num_workers=-1)
    with pytest.raises(ValueError, match="sampler option is mutually exclusive with shuffle"):
        DataLoader(ds, sampler=SequentialSampler(ds), shuffle=True)
    with pytest.raises(ValueError, match="batch_size should be a positive integer value"):
        DataLoader(ds, batch_size=0)


def test_dict_and_namedtuple_samples_through_workers() -> None:
    point = collections.namedtuple("Point", "x y")

    class Points(Dataset):
        def __len__(self) -> int:
            return 4

        def __getitem__(self, i):
            return {"p": point(float(i), np.full(2, i, dtype=np.int32)), "name": f"n{i}"}

    ember.manual_seed(0)
    batch = next(iter(DataLoader(Points(), batch_size=4)))
    assert batch["name"] == ["n0", "n1", "n2", "n3"]
    assert batch["p"].x.dtype == ember.float64 and batch["p"].x.tolist() == [0.0, 1.0, 2.0, 3.0]
    assert batch["p"].y.dtype == ember.int32 and batch["p"].y.shape == (4, 2)


class _Crash(Dataset):
    def __len__(self) -> int:
        return 8

    def __getitem__(self, i):
        if get_worker_info() is not None and i == 3:
            os._exit(3)  # the worker dies without a Python exception
        return ember.tensor([i])


def test_dead_worker_is_reported() -> None:
    with pytest.raises(RuntimeError, match="exited unexpectedly"):
        list(DataLoader(_Crash(), batch_size=1, num_workers=2))


def test_breaking_out_early_stops_the_workers() -> None:
    it = iter(DataLoader(_dataset(200), batch_size=2, num_workers=2))
    first = next(it)
    assert first[1].tolist() == [0, 1]
    workers = list(it.workers)
    assert all(w.is_alive() for w in workers)
    del it
    for w in workers:
        w.join(timeout=10)
    assert not any(w.is_alive() for w in workers)


class _Pid(Dataset):
    def __len__(self) -> int:
        return 10

    def __getitem__(self, i):
        return ember.tensor([i, os.getpid()])


def test_persistent_workers_keep_their_processes_and_the_order() -> None:
    ember.manual_seed(4)
    single = [b[:, 0].tolist() for epoch in range(2) for b in DataLoader(_Pid(), batch_size=3, shuffle=True)]
    ember.manual_seed(4)
    loader = DataLoader(_Pid(), batch_size=3, shuffle=True, num_workers=2, persistent_workers=True)
    epochs = [list(loader) for _ in range(2)]
    assert [b[:, 0].tolist() for e in epochs for b in e] == single
    pids = [{int(p) for b in e for p in b[:, 1].tolist()} for e in epochs]
    assert pids[0] == pids[1] and len(pids[0]) == 2 and os.getpid() not in pids[0]
    first = next(iter(loader))  # abandon an epoch midway, then run a full one on the same workers
    assert len(first) == 3 and len(list(loader)) == 4
