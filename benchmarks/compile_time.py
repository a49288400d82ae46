"""Compile time of ``ember.compile`` with a cold and a warm on-disk cache, and the per-call overhead of a
compiled module.

    python benchmarks/compile_time.py                   # both tables
    python benchmarks/compile_time.py --models mlp lenet5
    python benchmarks/compile_time.py --calls-only      # only the per-call overhead table

Compile time: every model is compiled in fresh interpreters (nothing cached in the process). "cold" runs
with an empty cache directory, "warm" is a second new process on the same directory, so it finds the
entry the cold one wrote. Each figure is trace + compile (``compiled_for``; the compiler's own imports
included, ``import ember`` not: it is printed once on its own), the median over ``--rounds`` pairs; the
first call after it is printed apart. The cache counters of the warm process are printed so a "warm"
figure that did not hit the cache cannot pass unnoticed.

Per-call overhead: a tiny MLP (16-32-4) at batch 1 under ``no_grad``, where the native work is well
under a microsecond, so the figure is the Python around it. ember.compile, eager ember and PyTorch
eager are timed interleaved in one process (A, B, C, A, B, C, ...) and the medians are printed with
ratios. On a loaded machine compare the ratios, not the absolute figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

_CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import ember
from ember.compiler import cache
t1 = time.perf_counter()
name, shape = sys.argv[1], tuple(int(s) for s in sys.argv[2].split(","))
if name == "mlp":
    nn = ember.nn
    model = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10))
else:
    from ember.vision import models
    model = getattr(models, name)()
model.eval()
x = ember.randn(*shape)
with ember.no_grad():
    t2 = time.perf_counter()
    fast = ember.compile(model)
    fast.compiled_for(x)
    t3 = time.perf_counter()
    fast(x)
    t4 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "compile_s": t3 - t2, "first_s": t4 - t3, "stats": dict(cache.STATS)}))
"""

MODELS = {
    "mlp": ("MLP 784-512-512-10", (1, 784)),
    "lenet5": ("LeNet-5 1x28x28", (1, 1, 28, 28)),
    "resnet18": ("ResNet-18 3x224x224", (1, 3, 224, 224)),
}


def _child(name: str, shape: tuple[int, ...], cache_dir: str) -> dict[str, Any]:
    env = dict(os.environ, EMBER_CACHE_DIR=cache_dir)
    proc = subprocess.run([sys.executable, "-c", _CHILD, name, ",".join(map(str, shape))], env=env,
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"compile_time: the child for {name} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _pair(name: str, shape: tuple[int, ...], tries: int = 3) -> tuple[dict[str, Any], dict[str, Any]]:
    """A cold and a warm process on a fresh cache folder. The key covers the compiler's source, so an
    edit of ember's compiler between the two (a shared working tree) makes the warm one miss: retried."""
    for _ in range(tries):
        with tempfile.TemporaryDirectory(prefix="ember-cache-bench-") as folder:
            first = _child(name, shape, folder)
            second = _child(name, shape, folder)
        if second["stats"]["hits"] == 1:
            break
        print(f"({name}: the warm process missed the cache; the compiler's source changed? trying again)")
    return first, second


def compile_table(names: list[str], rounds: int) -> None:
    """Cold and warm compile time per model, one row each (medians over ``rounds``)."""
    print(f"{'model':<22} {'cold s':>8} {'warm s':>8} {'ratio':>7} {'1st call s':>11}  warm-process cache counters")
    imports, firsts = [], []
    for name in names:
        label, shape = MODELS[name]
        cold, warm, stats = [], [], {}
        for _ in range(rounds):
            first, second = _pair(name, shape)
            cold.append(first["compile_s"])
            warm.append(second["compile_s"])
            imports += [first["import_s"], second["import_s"]]
            firsts.append(second["first_s"])
            stats = second["stats"]
        c, w = statistics.median(cold), statistics.median(warm)
        print(f"{label:<22} {c:>8.3f} {w:>8.3f} {c / w:>6.1f}x {statistics.median(firsts):>11.3f}  {stats}",
              flush=True)
        firsts.clear()
    print(f"(import ember: median {statistics.median(imports):.3f} s, not counted above)")


def _interleaved_us(fns: dict[str, Any], rounds: int, block: int) -> dict[str, float]:
    times: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():
        for _ in range(200):
            fn()
    for _ in range(rounds):
        for name, fn in fns.items():
            t = time.perf_counter()
            for _ in range(block):
                fn()
            times[name].append((time.perf_counter() - t) / block * 1e6)
    return {k: statistics.median(v) for k, v in times.items()}


def calls_table(rounds: int) -> None:
    """Microseconds per call of a tiny MLP at batch 1: compiled, eager ember, eager PyTorch."""
    import ember
    import numpy as np
    import torch

    nn = ember.nn
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4)).eval()
    twin = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4)).eval()
    twin.load_state_dict({k: torch.from_numpy(np.array(v.numpy())) for k, v in model.state_dict().items()})
    torch.set_num_threads(2)
    x = ember.randn(1, 16)
    tx = torch.from_numpy(np.array(x.numpy()))
    fast = ember.compile(model)
    with ember.no_grad(), torch.no_grad():
        np.testing.assert_allclose(fast(x).numpy(), twin(tx).numpy(), rtol=1e-4, atol=1e-5)
        us = _interleaved_us({"ember.compile": lambda: fast(x), "ember eager": lambda: model(x),
                              "torch eager": lambda: twin(tx)}, rounds, 200)
    base = us["ember.compile"]
    print(f"{'MLP 16-32-4, batch 1':<22} {'us/call':>9} {'vs compiled':>12}")
    for name, v in us.items():
        print(f"{name:<22} {v:>9.1f} {v / base:>11.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--rounds", type=int, default=1, help="cold/warm process pairs per model")
    ap.add_argument("--call-rounds", type=int, default=30, help="interleaved blocks of 200 calls")
    ap.add_argument("--calls-only", action="store_true")
    args = ap.parse_args()
    if not args.calls_only:
        compile_table(args.models, args.rounds)
        print()
    calls_table(args.call_rounds)


if __name__ == "__main__":
    main()
