"""Per-image vs batched convolution GEMMs, side by side in one process (the machine is shared).

    python benchmarks/conv_ab.py                  # whole models: ResNet-18 32x32 b1/b32, LeNet-5 b64, ...
    python benchmarks/conv_ab.py --runs 30 --rows resnet18

Each model is compiled twice from the same graph: once with ``POSITION_ROWS = BATCH_MAX_POSITIONS = 0``
(every image its own GEMM, the schedule before batching) and once with the defaults
(``compiler/kernel/lower_conv_batched.py``). Calls alternate
A, B, A, B in blocks; the figures are medians, and the ratio is per-image time / batched time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("EMBER_NUM_THREADS", "2")
os.environ["EMBER_CACHE_DIR"] = "off"  # both variants come from the same graph: a cache hit would time one twice

import ember  # noqa: E402
import numpy as np  # noqa: E402
from ember.compiler.kernel import lower_conv_batched  # noqa: E402
from ember.vision import models  # noqa: E402

ROWS = [("lenet5", (64, 1, 28, 28)), ("resnet18", (1, 3, 32, 32)), ("resnet18", (32, 3, 32, 32)),
        ("vgg11_bn", (8, 3, 32, 32)), ("resnet18", (1, 3, 224, 224))]


def _compiled(model: Any, x: Any, per_image: bool) -> Callable[[], Any]:
    """``model`` compiled for ``x``; ``per_image``: with the batched and positions schedules disabled."""
    saved = lower_conv_batched.POSITION_ROWS, lower_conv_batched.BATCH_MAX_POSITIONS
    if per_image:
        lower_conv_batched.POSITION_ROWS, lower_conv_batched.BATCH_MAX_POSITIONS = 0, 0
    try:
        fast = ember.compile(model)
        fast(x)
    finally:
        lower_conv_batched.POSITION_ROWS, lower_conv_batched.BATCH_MAX_POSITIONS = saved
    return lambda: fast(x)


def interleaved(fns: dict[str, Callable[[], Any]], runs: int, block: int = 3,
                clock: Callable[[], float] = time.perf_counter) -> dict[str, float]:
    """Median ms per contender, alternating blocks of calls. ``clock=time.process_time`` counts the
    process's CPU time (all threads), which a loaded machine disturbs less than wall time."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():
        fn()
    while min(len(v) for v in times.values()) < runs:
        for name, fn in fns.items():
            for _ in range(block):
                t = clock()
                fn()
                times[name].append(clock() - t)
    return {k: statistics.median(v) * 1e3 for k, v in times.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", nargs="*", default=None)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--cpu", action="store_true", help="process CPU time instead of wall time")
    args = ap.parse_args(argv)
    clock = time.process_time if args.cpu else time.perf_counter
    head = f"{'model':<10}{'input':>18}{'per-image ms':>14}{'batched ms':>12}{'ratio':>8}"
    print(head + f"   ({'CPU' if args.cpu else 'wall'} time)")
    for name, shape in ROWS:
        if args.rows is not None and name not in args.rows:
            continue
        ember.manual_seed(0)
        model = getattr(models, name)().eval()
        x = ember.from_numpy(np.random.default_rng(0).standard_normal(shape).astype(np.float32))
        with ember.no_grad():
            old = _compiled(model, x, True)
            new = _compiled(model, x, False)
            np.testing.assert_allclose(old().numpy(), new().numpy(), rtol=1e-3, atol=1e-4)
            ms = interleaved({"old": old, "new": new}, args.runs, clock=clock)
        print(f"{name:<10}{'x'.join(map(str, shape)):>18}{ms['old']:>14.2f}{ms['new']:>12.2f}"
              f"{ms['old'] / ms['new']:>8.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
