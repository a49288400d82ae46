"""Per-op time of ember eager against PyTorch eager and numpy, side by side in one run.

    python benchmarks/eager_overhead.py                 # every op, 1 and 1M elements, with/without grad
    python benchmarks/eager_overhead.py --ops add --rounds 31 --json out.json

Why this benchmark exists: every ember op goes through one dispatcher (attribute check, type rule,
reference, wrapping, tape), so its fixed cost per call decides how usable eager mode is for small tensors,
and on large tensors that cost should vanish next to numpy's own work. The aims (issue 2): within 3x of
PyTorch's per-op time on 1-element tensors and within 1.2x of numpy's on 1M elements.

Method: the machine is shared and noisy, so the contenders run alternately in short blocks (a batch of
calls each, order rotated every round) and the table reports the median per-call time over the rounds.
By default a block is timed with the process's CPU clock, not the wall clock: with every contender on one
thread (see below) the two agree on a quiet machine, and on a loaded one the CPU clock does not count
the time the process waited for a core (``--clock wall`` for wall time). ``requires_grad`` rows time the
forward call only (ember and PyTorch record a tape entry); numpy has no such row. Every contender runs
single-threaded: PyTorch through ``set_num_threads(1)`` (``--torch-threads 0`` keeps its default),
numpy's BLAS (the matmul rows) through ``OPENBLAS_NUM_THREADS=1`` set before numpy loads, since the
helper threads of OpenBLAS spin after each call and steal the core from whatever runs next.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402  (after the thread settings, which numpy reads at import)

_CLOCK: Callable[[], float] = time.process_time

SIZES = {"1": (1,), "1M": (1000, 1000)}


def _ops(mod: Any, is_numpy: bool) -> dict[str, Callable[..., Any]]:
    """The op under test for one library; ``a`` and ``b`` have the benchmark shape, ``v`` is a column."""
    if is_numpy:
        return {
            "add": lambda a, b, v: np.add(a, b),
            "mul": lambda a, b, v: np.multiply(a, b),
            "relu": lambda a, b, v: np.maximum(a, 0),
            "sum": lambda a, b, v: a.sum(),
            "matmul": lambda a, b, v: a @ v,
        }
    return {
        "add": lambda a, b, v: a + b,
        "mul": lambda a, b, v: a * b,
        "relu": lambda a, b, v: a.relu(),
        "sum": lambda a, b, v: a.sum(),
        "matmul": lambda a, b, v: a @ v,
    }


def _inputs(shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    a = rng.standard_normal(shape).astype(np.float32)
    b = rng.standard_normal(shape).astype(np.float32)
    v = rng.standard_normal((shape[-1], 1)).astype(np.float32)
    if len(shape) == 1:  # 1 element: a (1,) vector times a (1, 1) matrix is still matmul
        a2 = a.reshape(1, 1)
        return a2, b.reshape(1, 1), v
    return a, b, v


def _contenders(op: str, size: str, grad: bool) -> dict[str, Callable[[], Any]]:
    import ember
    import torch

    a, b, v = _inputs(SIZES[size])
    out: dict[str, Callable[[], Any]] = {}
    for name, mod in (("ember", ember), ("torch", torch)):
        ta, tb, tv = (mod.tensor(x, requires_grad=grad) if i == 0 else mod.tensor(x)
                      for i, x in enumerate((a, b, v)))
        fn = _ops(mod, False)[op]
        out[name] = lambda fn=fn, ta=ta, tb=tb, tv=tv: fn(ta, tb, tv)
    if not grad:
        fn = _ops(np, True)[op]
        out["numpy"] = lambda fn=fn: fn(a, b, v)
    return out


def _batch(fn: Callable[[], Any], calls: int) -> float:
    clock = _CLOCK
    t0 = clock()
    for _ in range(calls):
        fn()
    return (clock() - t0) / calls


def _calls_for(fn: Callable[[], Any], target_s: float) -> int:
    """How many calls fill about ``target_s`` (measured once, after a warm-up)."""
    fn()
    t = _batch(fn, 3)
    return max(1, min(20000, int(target_s / max(t, 1e-9))))


def measure(op: str, size: str, grad: bool, rounds: int, block_s: float) -> dict[str, float]:
    """Median per-call microseconds of each contender, run alternately."""
    fns = _contenders(op, size, grad)
    names = list(fns)
    calls = {n: _calls_for(fns[n], block_s) for n in names}
    samples: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        for n in order:
            samples[n].append(_batch(fns[n], calls[n]))
    return {n: statistics.median(s) * 1e6 for n, s in samples.items()}


def _fmt(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.2f}" if x < 100 else f"{x:.0f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ops", nargs="*", default=["add", "mul", "relu", "sum", "matmul"])
    p.add_argument("--sizes", nargs="*", default=list(SIZES))
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--block-ms", type=float, default=20.0)
    p.add_argument("--torch-threads", type=int, default=1, help="0 keeps PyTorch's default")
    p.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    p.add_argument("--json", help="also write the rows here")
    args = p.parse_args(argv)

    global _CLOCK
    _CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter

    import torch

    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    header = f"{'op':<8}{'size':>5}{'grad':>6}{'ember us':>11}{'torch us':>11}{'numpy us':>11}" \
             f"{'ember/torch':>13}{'ember/numpy':>13}"
    print(f"clock: {args.clock}; threads: torch {torch.get_num_threads()},"
          f" OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}")
    print(header)
    print("-" * len(header))
    rows = []
    for op in args.ops:
        for size in args.sizes:
            for grad in (False, True):
                t = measure(op, size, grad, args.rounds, args.block_ms / 1000)
                e, to, nu = t["ember"], t["torch"], t.get("numpy")
                rows.append({"op": op, "size": size, "requires_grad": grad, "ember_us": e, "torch_us": to,
                             "numpy_us": nu})
                print(f"{op:<8}{size:>5}{'yes' if grad else 'no':>6}{_fmt(e):>11}{_fmt(to):>11}{_fmt(nu):>11}"
                      f"{e / to:>12.2f}x{(f'{e / nu:.2f}x' if nu else '-'):>13}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
