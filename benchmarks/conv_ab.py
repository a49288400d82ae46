"""Two ways of running the same convolutions, side by side in one process (the machine is shared).

    python benchmarks/conv_ab.py                  # whole models: ResNet-18 32x32 b1/b32, LeNet-5 b64, ...
    python benchmarks/conv_ab.py --runs 30 --rows resnet18
    python benchmarks/conv_ab.py --compare direct # direct convolutions vs the packed GEMM template

Each model is compiled twice from the same graph, the first time with some module settings changed,
the second with the defaults. ``--compare schedules`` (the default): ``POSITION_ROWS =
BATCH_MAX_POSITIONS = 0`` (every image its own GEMM, the schedule before batching) against the
schedules of ``compiler/kernel/lower_conv_batched.py``. ``--compare direct``: ``conv_direct.DIRECT_CONV
= False`` (implicit-GEMM convolutions through the packed template, with its schedule rules) against the
direct convolutions of ``compiler/codegen/llvm/conv_direct.py`` (AVX-512 hosts). Calls alternate A, B,
A, B in blocks; the figures are medians, and the ratio is old time / new time.
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
from ember.compiler.codegen.llvm import conv_direct  # noqa: E402
from ember.compiler.kernel import lower_conv_batched  # noqa: E402
from ember.vision import models  # noqa: E402

ROWS = [("lenet5", (64, 1, 28, 28)), ("resnet18", (1, 3, 32, 32)), ("resnet18", (32, 3, 32, 32)),
        ("vgg11_bn", (8, 3, 32, 32)), ("resnet18", (1, 3, 224, 224))]


# comparison -> (old label, new label, the module settings of the old variant)
COMPARISONS: dict[str, tuple[str, str, list[tuple[Any, str, Any]]]] = {
    "schedules": ("per-image ms", "batched ms",
                  [(lower_conv_batched, "POSITION_ROWS", 0), (lower_conv_batched, "BATCH_MAX_POSITIONS", 0)]),
    "direct": ("packed ms", "direct ms", [(conv_direct, "DIRECT_CONV", False)]),
}


def _compiled(model: Any, x: Any, settings: list[tuple[Any, str, Any]]) -> Callable[[], Any]:
    """``model`` compiled for ``x`` with ``settings`` (module, attribute, value) in force meanwhile."""
    saved = [(mod, name, getattr(mod, name)) for mod, name, _ in settings]
    for mod, name, value in settings:
        setattr(mod, name, value)
    try:
        fast = ember.compile(model)
        fast(x)
    finally:
        for mod, name, value in saved:
            setattr(mod, name, value)
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
    ap.add_argument("--compare", choices=sorted(COMPARISONS), default="schedules")
    args = ap.parse_args(argv)
    clock = time.process_time if args.cpu else time.perf_counter
    old_label, new_label, settings = COMPARISONS[args.compare]
    head = f"{'model':<10}{'input':>18}{old_label:>14}{new_label:>12}{'ratio':>8}"
    print(head + f"   ({'CPU' if args.cpu else 'wall'} time)")
    for name, shape in ROWS:
        if args.rows is not None and name not in args.rows:
            continue
        ember.manual_seed(0)
        model = getattr(models, name)().eval()
        x = ember.from_numpy(np.random.default_rng(0).standard_normal(shape).astype(np.float32))
        with ember.no_grad():
            old = _compiled(model, x, settings)
            new = _compiled(model, x, [])
            np.testing.assert_allclose(old().numpy(), new().numpy(), rtol=1e-3, atol=1e-4)
            ms = interleaved({"old": old, "new": new}, args.runs, clock=clock)
        print(f"{name:<10}{'x'.join(map(str, shape)):>18}{ms['old']:>14.2f}{ms['new']:>12.2f}"
              f"{ms['old'] / ms['new']:>8.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
