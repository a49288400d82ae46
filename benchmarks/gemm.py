"""GFLOP/s of ember's generated fp32 GEMM against numpy's BLAS (OpenBLAS here), 1 and 2 threads.

    python benchmarks/gemm.py                      # sizes 256 512 1024 2048, threads 1 2
    python benchmarks/gemm.py --sizes 1024 --threads 1 --rounds 7

The VM this runs on is shared and noisy, so the two contenders are timed side by side in one process,
alternating in blocks (several calls each, then a pause: OpenBLAS's helper thread spins for ~0.1 s after
a call and would halve whatever runs next), and the table reports medians over all calls and their
ratio. numpy reads OPENBLAS_NUM_THREADS at import, so without threadpoolctl each thread count runs in
its own subprocess with that variable set.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import numpy as np

PAUSE_S = 0.15  # longer than OpenBLAS's post-call spin


def _time_block(fn: Callable[[], object], seconds: float, min_calls: int = 2) -> list[float]:
    """Per-call times of ``fn`` for about ``seconds``."""
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_calls or time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def _measure(n: int, threads: int, rounds: int, block_s: float) -> dict[str, float]:
    """Median GFLOP/s of ember and numpy for an n x n x n product on ``threads`` threads."""
    from ember.compiler.codegen.llvm.gemm import gemm_callable

    rng = np.random.default_rng(n)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    c = np.empty((n, n), dtype=np.float32)
    ember_mm = gemm_callable(threads=threads)
    ember_mm(a, b, out=c)  # compile + warm up
    ref = a.astype(np.float64) @ b.astype(np.float64)
    err = float(np.abs(c - ref).max() / np.abs(ref).max())
    if err > 1e-4:
        raise SystemExit(f"ember GEMM is wrong at n={n}: relative error {err:.2e}")
    contenders = {"ember": lambda: ember_mm(a, b, out=c), "numpy": lambda: np.matmul(a, b, out=c)}
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for fn in contenders.values():  # warm-up block each, discarded
        _time_block(fn, block_s / 4)
    for r in range(rounds):
        order = list(contenders) if r % 2 == 0 else list(reversed(contenders))
        for name in order:
            time.sleep(PAUSE_S)
            times[name] += _time_block(contenders[name], block_s)
    flops = 2.0 * n**3
    return {name: flops / statistics.median(ts) / 1e9 for name, ts in times.items()}


def _worker(args: argparse.Namespace) -> None:
    """Measure every size for one thread count and print one JSON line per size."""
    for n in args.sizes:
        gf = _measure(n, args.threads[0], args.rounds, args.block)
        print(json.dumps({"n": n, "threads": args.threads[0], **gf}), flush=True)


def _run_thread_count(args: argparse.Namespace, threads: int) -> list[dict[str, float]]:
    """Results for one thread count: in-process with threadpoolctl, else in a subprocess."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        threadpool_limits = None
    if threadpool_limits is not None:
        with threadpool_limits(limits=threads, user_api="blas"):
            return [{"n": n, "threads": threads, **_measure(n, threads, args.rounds, args.block)}
                    for n in args.sizes]
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               OMP_NUM_THREADS=str(threads))
    cmd = [sys.executable, __file__, "--worker", "--threads", str(threads), "--rounds", str(args.rounds),
           "--block", str(args.block), "--sizes", *map(str, args.sizes)]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024, 2048])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=5, help="alternating blocks per contender")
    parser.add_argument("--block", type=float, default=0.3, help="seconds per timing block")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _worker(args)
        return
    rows = [row for t in args.threads for row in _run_thread_count(args, t)]
    print(f"{'size':>6} {'threads':>7} {'ember GFLOP/s':>14} {'numpy GFLOP/s':>14} {'ember/numpy':>12}")
    for row in rows:
        print(f"{row['n']:>6} {row['threads']:>7} {row['ember']:>14.1f} {row['numpy']:>14.1f} "
              f"{row['ember'] / row['numpy']:>12.2f}")


if __name__ == "__main__":
    main()
