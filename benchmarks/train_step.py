"""Training-step time and peak memory: ember compiled vs PyTorch eager vs torch.compile.

    python benchmarks/train_step.py                       # LeNet-5 @64 and ResNet-18 (CIFAR, 32x32) @32
    python benchmarks/train_step.py --rows lenet5 --steps 20 --no-inductor

One step is forward, cross-entropy, backward and SGD with momentum (lr 0.01, momentum 0.9). ember runs
the model through ``ember.compile`` (compiled forward and backward, eager loss and optimizer); PyTorch
runs the same model (weights copied through the state dict) eagerly and under ``torch.compile``. Every
contender runs in its own fresh process (so one's allocator and thread pools cannot slow another) with 2
threads; the first steps (compilation, warm-up) are not timed, the figure is the median step time.

Peak memory: children run with glibc told to hand freed memory back at once (``MALLOC_MMAP_THRESHOLD_``,
``MALLOC_TRIM_THRESHOLD_``), so the resident set follows live memory. After the warm-up steps the heap
is trimmed, the peak resident set (VmHWM) is reset (``/proc/self/clear_refs``), and the peak during the
timed steps minus the resident set at the reset is what one training step adds on top of the model, its
gradients, its optimizer state and the runtime. ember's executables keep their arena (the planned
intermediate buffers) between calls, so it is resident before the reset: it is added to ember's figure.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

THREADS = 2
ROWS = {"lenet5": ("LeNet-5", 64, (1, 28, 28), 10), "resnet18": ("ResNet-18 CIFAR", 32, (3, 32, 32), 10)}


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _measure(step: Any, warmup: int, steps: int) -> dict[str, Any]:
    import ctypes
    import gc

    for _ in range(warmup):
        step()
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    can_reset = _reset_peak()
    base = _status_kb("VmRSS")
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    peak = _status_kb("VmHWM") - base if can_reset else None
    extra = getattr(step, "resident_bytes", 0) / 2**20
    return {"ms": 1000 * statistics.median(times), "peak_mb": None if peak is None else peak / 1024 + extra}


def _ember_step(row: str) -> Any:
    import ember
    from ember.vision import models

    _, batch, shape, classes = ROWS[row]
    ember.manual_seed(0)
    model = getattr(models, row)(num_classes=classes).train()
    cm = ember.compile(model)
    opt = ember.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    crit = ember.nn.CrossEntropyLoss()
    x, y = ember.randn(batch, *shape), ember.randint(0, classes, (batch,))

    class Step:
        def __call__(self) -> None:
            opt.zero_grad()
            loss = crit(cm(x), y)
            loss.backward()
            opt.step()

        @property
        def resident_bytes(self) -> int:
            """The arenas of the compiled forward and backward (allocated once, reused every call)."""
            entry = cm.training_for(x)
            return sum(e.arena_bytes for e in (entry.fwd.result.executable, entry.bwd.executable))

    return Step()


def _torch_step(row: str, compiled: bool) -> Any:
    import torch

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from torch_twins import TWINS

    torch.set_num_threads(THREADS)
    _, batch, shape, classes = ROWS[row]
    torch.manual_seed(0)
    model = TWINS[row](num_classes=classes).train() if row != "lenet5" else TWINS[row]().train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    crit = torch.nn.CrossEntropyLoss()
    x, y = torch.randn(batch, *shape), torch.randint(0, classes, (batch,))

    def step() -> None:
        opt.zero_grad()
        loss = crit(model(x), y)
        loss.backward()
        opt.step()

    return torch.compile(step) if compiled else step


def child(contender: str, row: str, steps: int) -> None:
    """Runs in a fresh process: prints one JSON line."""
    t0 = time.perf_counter()
    try:
        step = _ember_step(row) if contender == "ember" else _torch_step(row, contender == "inductor")
        warm_start = time.perf_counter()
        step()  # first call: trace + compile for ember and torch.compile
        first = time.perf_counter() - warm_start
        result = _measure(step, 2, steps)
        result["first_s"] = first
    except Exception as e:  # noqa: BLE001  (a contender that cannot run is reported, not fatal)
        result = {"error": f"{type(e).__name__}: {str(e)[:200]}"}
    result["setup_s"] = time.perf_counter() - t0
    print(json.dumps(result))


def _run_child(contender: str, row: str, steps: int) -> dict[str, Any]:
    env = dict(os.environ, EMBER_NUM_THREADS=str(THREADS), OMP_NUM_THREADS=str(THREADS),
               MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", contender, row,
                           "--steps", str(steps)], capture_output=True, text=True, env=env)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    return {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1][:200]}


def _fmt(r: dict[str, Any], key: str, unit: str) -> str:
    if "error" in r:
        return "n/a"
    v = r.get(key)
    return "n/a" if v is None else f"{v:.1f} {unit}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--no-inductor", action="store_true")
    ap.add_argument("--child", nargs=2, metavar=("CONTENDER", "ROW"))
    args = ap.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.steps)
        return
    contenders = ["ember", "torch"] + ([] if args.no_inductor else ["inductor"])
    names = {"ember": "ember compiled", "torch": "PyTorch eager", "inductor": "torch.compile"}
    for row in args.rows:
        title, batch, shape, _ = ROWS[row]
        print(f"\n{title}, batch {batch}, input {shape}: forward + cross-entropy + backward + SGD momentum")
        results = {c: _run_child(c, row, args.steps) for c in contenders}
        base = results["ember"].get("ms")
        for c in contenders:
            r = results[c]
            ratio = f"{r['ms'] / base:.2f}x" if base and "ms" in r else "n/a"
            line = (f"  {names[c]:<16} step {_fmt(r, 'ms', 'ms'):>10}   peak +{_fmt(r, 'peak_mb', 'MB'):>10}"
                    f"   first call {_fmt(r, 'first_s', 's'):>8}   {c}/ember {ratio}")
            if "error" in r:
                line += f"   ({r['error']})"
            print(line)
        print("  (ratios above 1 mean ember is faster; peak = resident memory one step adds)")


if __name__ == "__main__":
    main()
