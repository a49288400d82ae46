"""What runs inside a DataLoader worker process: seed every generator from the loader's base seed,
then turn index lists into collated batches until told to stop. An exception is sent back as its
formatted traceback, which the main process re-raises (``WorkerError``)."""

from __future__ import annotations

import pickle
import random
import traceback
from dataclasses import dataclass
from typing import Any

import numpy as np

_worker_info: WorkerInfo | None = None


@dataclass(frozen=True)
class WorkerInfo:
    """What ``get_worker_info()`` returns inside a worker: its id, the worker count, its seed and its
    copy of the dataset."""

    id: int
    num_workers: int
    seed: int
    dataset: Any


def get_worker_info() -> WorkerInfo | None:
    """The current worker's ``WorkerInfo``, or None in the main process."""
    return _worker_info


@dataclass
class ExceptionWrapper:
    """An exception caught in a worker, carried as text so it always pickles."""

    exc_type: type
    where: str
    text: str

    @classmethod
    def capture(cls, where: str) -> ExceptionWrapper:
        import sys

        exc_type = sys.exc_info()[0] or RuntimeError
        try:
            pickle.dumps(exc_type)
        except Exception:  # a class defined inside a function cannot cross the process boundary
            exc_type = RuntimeError
        return cls(exc_type, where, "".join(traceback.format_exc()))

    def reraise(self) -> None:
        msg = f"Caught {self.exc_type.__name__} {self.where}.\nOriginal {self.text}"
        if issubclass(self.exc_type, KeyError):
            msg = _KeyErrorMessage(msg)  # KeyError prints the repr of its argument; keep the lines readable
        try:
            err = self.exc_type(msg)
        except Exception:
            err = None
        if not isinstance(err, BaseException) or err.args != (msg,):
            err = RuntimeError(msg)  # exception types whose constructor takes other arguments
        raise err


class _KeyErrorMessage(str):
    def __repr__(self) -> str:
        return str(self)


def seed_worker(seed: int) -> None:
    """Seed ember, numpy's legacy global generator and Python's ``random`` for one worker."""
    import ember

    ember.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)


def worker_loop(
    dataset: Any,
    index_queue: Any,
    data_queue: Any,
    collate_fn: Any,
    auto_collation: bool,
    iterable: bool,
    batch_size: int | None,
    drop_last: bool,
    worker_id: int,
    num_workers: int,
    seed: int,
    init_fn: Any,
) -> None:
    """Serve (task, indices) requests until a None arrives; for iterable datasets, stream batches."""
    global _worker_info
    try:
        seed_worker(seed)
        _worker_info = WorkerInfo(worker_id, num_workers, seed, dataset)
        if init_fn is not None:
            init_fn(worker_id)
    except Exception:
        data_queue.put((-1, None, ExceptionWrapper.capture(f"in DataLoader worker process {worker_id}")))
        return
    fetch = IterableFetcher(dataset, collate_fn, auto_collation, batch_size, drop_last) if iterable else None
    while True:
        task = index_queue.get()
        if task is None:
            # results the main process will never read must not keep this process from exiting
            data_queue.cancel_join_thread()
            break
        task_id, indices = task
        try:
            batch = (
                fetch.next() if fetch is not None else fetch_map(dataset, indices, collate_fn, auto_collation)
            )
            payload = pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL)  # fail here, not in the feeder
        except StopIteration:
            data_queue.put((task_id, None, StopIteration))
            continue
        except Exception:
            data_queue.put(
                (task_id, None, ExceptionWrapper.capture(f"in DataLoader worker process {worker_id}"))
            )
            continue
        data_queue.put((task_id, payload, None))


def fetch_map(dataset: Any, indices: Any, collate_fn: Any, auto_collation: bool) -> Any:
    """One batch from a map-style dataset (or one sample when batching is off)."""
    if auto_collation:
        return collate_fn([dataset[i] for i in indices])
    return collate_fn(dataset[indices])


class IterableFetcher:
    """Pulls samples from an iterable dataset and groups them into batches."""

    def __init__(
        self, dataset: Any, collate_fn: Any, auto_collation: bool, batch_size: int | None, drop_last: bool
    ) -> None:
        self.it = iter(dataset)
        self.collate_fn, self.auto, self.batch_size, self.drop_last = (
            collate_fn,
            auto_collation,
            batch_size,
            drop_last,
        )

    def next(self) -> Any:
        if not self.auto:
            return self.collate_fn(next(self.it))
        samples = []
        for sample in self.it:
            samples.append(sample)
            if len(samples) == self.batch_size:
                break
        if not samples or (self.drop_last and len(samples) < (self.batch_size or 0)):
            raise StopIteration
        return self.collate_fn(samples)
