"""DataLoader: batches from a dataset through a sampler and a collate function, in the main process or in
``num_workers`` worker processes.

Determinism: each iteration draws one base seed from ember's generator (or ``generator``) before any
index is drawn, in both modes, so a seeded loader visits the same order whether or not it uses workers;
worker ``i`` seeds ember, numpy and ``random`` with ``base_seed + i``. Indices are drawn in the main
process and batches come back in sampler order, so ``num_workers=2`` yields the same batches as
``num_workers=0`` for any dataset whose samples do not depend on worker-local randomness.
``persistent_workers=True`` keeps the worker processes between epochs; ``pin_memory`` is accepted and
does nothing (CPU tensors need no pinning here).
"""

from __future__ import annotations

import multiprocessing as mp
import pickle
import queue
from collections.abc import Callable, Iterator
from typing import Any

from ember.runtime.errors import ArgumentError
from ember.utils.data import _worker
from ember.utils.data.collate import default_collate, default_convert
from ember.utils.data.dataset import IterableDataset
from ember.utils.data.sampler import BatchSampler, RandomSampler, SequentialSampler, as_rng

_POLL_S = 0.5  # how often a waiting main process checks that its workers are still alive


class DataLoader:
    """Iterate over ``dataset`` in batches.

    >>> import ember
    >>> from ember.utils.data import TensorDataset
    >>> loader = DataLoader(TensorDataset(ember.arange(10)), batch_size=4, shuffle=False)
    >>> [b[0].tolist() for b in loader]
    [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    """

    def __init__(
        self,
        dataset: Any,
        batch_size: int | None = 1,
        shuffle: bool | None = None,
        sampler: Any = None,
        batch_sampler: Any = None,
        num_workers: int = 0,
        collate_fn: Callable[[list[Any]], Any] | None = None,
        pin_memory: bool = False,
        drop_last: bool = False,
        timeout: float = 0,
        worker_init_fn: Callable[[int], None] | None = None,
        multiprocessing_context: Any = None,
        generator: Any = None,
        *,
        prefetch_factor: int | None = None,
        persistent_workers: bool = False,
        pin_memory_device: str = "",
    ) -> None:
        _check_options(num_workers, timeout, prefetch_factor)
        self.dataset, self.num_workers = dataset, num_workers
        self.pin_memory, self.timeout, self.worker_init_fn = pin_memory, timeout, worker_init_fn
        self.prefetch_factor = 2 if prefetch_factor is None and num_workers > 0 else prefetch_factor
        self.persistent_workers, self.generator = persistent_workers, generator
        self.multiprocessing_context = multiprocessing_context
        self._iterable = isinstance(dataset, IterableDataset)
        _check_sampling(self._iterable, batch_size, shuffle, sampler, batch_sampler, drop_last)
        if batch_sampler is not None:
            batch_size, drop_last = None, False
        if sampler is None and not self._iterable:
            sampler = RandomSampler(dataset, generator=generator) if shuffle else SequentialSampler(dataset)
        if batch_size is not None and batch_sampler is None and not self._iterable:
            batch_sampler = BatchSampler(sampler, batch_size, drop_last)
        self.batch_size, self.drop_last = batch_size, drop_last
        self.sampler, self.batch_sampler = sampler, batch_sampler
        self._auto_collation = batch_sampler is not None or (self._iterable and batch_size is not None)
        if collate_fn is None:
            collate_fn = default_collate if self._auto_collation else default_convert
        self.collate_fn = collate_fn

    @property
    def _index_sampler(self) -> Any:
        return self.batch_sampler if self.batch_sampler is not None else self.sampler

    def __len__(self) -> int:
        if self._iterable:
            n = len(self.dataset)
            if self.batch_size is None:
                return n
            return n // self.batch_size if self.drop_last else -(-n // self.batch_size)
        return len(self._index_sampler)

    def __iter__(self) -> Iterator[Any]:
        base_seed = int(as_rng(self.generator).integers(0, 2**62))
        if self.num_workers == 0:
            return self._single_process(base_seed)
        if not (self.persistent_workers and not self._iterable):
            return _MultiProcessIter(self, base_seed)
        # persistent workers keep their processes (and the seeds they started with) across epochs; the base
        # seed above is still drawn, so the shuffling order matches num_workers=0
        live = getattr(self, "_persistent", None)
        if live is None or not live.workers:
            live = self._persistent = _MultiProcessIter(self, base_seed, persistent=True)
        else:
            live.restart()
        return live

    def _single_process(self, base_seed: int) -> Iterator[Any]:
        if self._iterable:
            fetch = _worker.IterableFetcher(
                self.dataset, self.collate_fn, self._auto_collation, self.batch_size, self.drop_last
            )
            while True:
                try:
                    yield fetch.next()
                except StopIteration:
                    return
        for indices in self._index_sampler:
            yield _worker.fetch_map(self.dataset, indices, self.collate_fn, self._auto_collation)


def _check_options(num_workers: int, timeout: float, prefetch_factor: int | None) -> None:
    if num_workers < 0:
        raise ArgumentError(
            "num_workers option should be non-negative; use num_workers=0 to disable multiprocessing."
        )
    if timeout < 0:
        raise ArgumentError("timeout option should be non-negative")
    if num_workers == 0 and prefetch_factor is not None:
        raise ArgumentError(
            "prefetch_factor option could only be specified in multiprocessing. let"
            " num_workers > 0 to enable multiprocessing, otherwise set prefetch_factor to None."
        )


def _check_sampling(
    iterable: bool,
    batch_size: int | None,
    shuffle: bool | None,
    sampler: Any,
    batch_sampler: Any,
    drop_last: bool,
) -> None:
    """PyTorch's rules on which of shuffle / sampler / batch_sampler / batch_size go together."""
    if iterable and (shuffle or sampler is not None or batch_sampler is not None):
        raise ArgumentError(
            f"DataLoader with IterableDataset: expected unspecified shuffle, sampler or"
            f" batch_sampler option, but got shuffle={shuffle}"
        )
    if sampler is not None and shuffle:
        raise ArgumentError("sampler option is mutually exclusive with shuffle")
    if batch_sampler is not None:
        if batch_size != 1 or shuffle or sampler is not None or drop_last:
            raise ArgumentError(
                "batch_sampler option is mutually exclusive with batch_size, shuffle, sampler, and drop_last"
            )
    elif batch_size is None and drop_last:
        raise ArgumentError(
            "batch_size=None option disables auto-batching and is mutually exclusive with drop_last"
        )


class _MultiProcessIter:
    """Workers fed round-robin with index lists; results are put back in order before they are yielded."""

    def __init__(self, loader: DataLoader, base_seed: int, persistent: bool = False) -> None:
        self.loader, self.persistent = loader, persistent
        ctx = loader.multiprocessing_context
        if ctx is None:
            ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
        elif isinstance(ctx, str):
            ctx = mp.get_context(ctx)
        n = loader.num_workers
        self.data_queue = ctx.Queue()
        self.index_queues = [ctx.Queue() for _ in range(n)]
        self.workers = []
        for i in range(n):
            w = ctx.Process(
                target=_worker.worker_loop,
                daemon=True,
                args=(
                    loader.dataset,
                    self.index_queues[i],
                    self.data_queue,
                    loader.collate_fn,
                    loader._auto_collation,
                    loader._iterable,
                    loader.batch_size,
                    loader.drop_last,
                    i,
                    n,
                    base_seed + i,
                    loader.worker_init_fn,
                ),
            )
            w.start()
            self.workers.append(w)
        self._start_epoch()

    def _start_epoch(self) -> None:
        loader = self.loader
        self.tasks = iter(loader._index_sampler) if not loader._iterable else None
        self.sent = 0
        self.next_out = 0
        self.done_workers: set[int] = set()
        self.buffer: dict[int, Any] = {}
        self.owner: dict[int, int] = {}
        self.exhausted = False
        for _ in range(loader.num_workers * (loader.prefetch_factor or 2)):
            self._send()

    def restart(self) -> None:
        """A new epoch on the same workers; results still in flight from an abandoned epoch are dropped."""
        while self.next_out + len(self.buffer) < self.sent:
            self._receive()
        self._start_epoch()

    def _send(self) -> None:
        """Hand the next task to the next live worker (round-robin)."""
        if self.exhausted:
            return
        live = [i for i in range(len(self.workers)) if i not in self.done_workers]
        if not live:
            self.exhausted = True
            return
        if self.tasks is not None:
            try:
                indices = next(self.tasks)
            except StopIteration:
                self.exhausted = True
                return
        else:
            indices = None
        worker = live[self.sent % len(live)] if self.tasks is not None else self._next_stream_worker(live)
        self.index_queues[worker].put((self.sent, indices))
        self.owner[self.sent] = worker
        self.sent += 1

    def _next_stream_worker(self, live: list[int]) -> int:
        return sorted(live, key=lambda i: (i - self.sent) % len(self.workers))[0]

    def __iter__(self) -> _MultiProcessIter:
        return self

    def __next__(self) -> Any:
        while True:
            if self.next_out >= self.sent and self.exhausted:
                if not self.persistent:
                    self._shutdown()
                raise StopIteration
            if self.next_out in self.buffer:
                payload, err = self.buffer.pop(self.next_out)
                self.next_out += 1
                if err is StopIteration:  # an iterable dataset's worker ran dry
                    self.done_workers.add(self.owner[self.next_out - 1])
                    self._send()
                    continue
                self._send()
                return pickle.loads(payload)
            self._receive()

    def _receive(self) -> None:
        waited = 0.0
        while True:
            try:
                task_id, payload, err = self.data_queue.get(timeout=_POLL_S)
                break
            except queue.Empty:
                waited += _POLL_S
                dead = [w for w in self.workers if not w.is_alive()]
                if dead:
                    self._shutdown()
                    raise RuntimeError(
                        f"DataLoader worker (pid(s) {', '.join(str(w.pid) for w in dead)}) exited"
                        " unexpectedly"
                    ) from None
                if self.loader.timeout and waited >= self.loader.timeout:
                    self._shutdown()
                    raise RuntimeError(f"DataLoader timed out after {self.loader.timeout} seconds") from None
        if isinstance(err, _worker.ExceptionWrapper):
            self._shutdown()
            err.reraise()
        self.buffer[task_id] = (payload, err)

    def _shutdown(self) -> None:
        for q in self.index_queues:
            try:
                q.put(None)
            except (OSError, ValueError):
                pass
        for w in self.workers:
            w.join(timeout=5)
            if w.is_alive():
                w.terminate()
        self.workers = []
        self.exhausted = True
        self.sent = self.next_out

    def __del__(self) -> None:
        if getattr(self, "workers", None):
            self._shutdown()
