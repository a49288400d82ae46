"""Training-step time and peak memory: ember's compiled whole step vs ember's compiled module with an eager
optimizer vs PyTorch eager vs torch.compile.

    python benchmarks/train_step.py                       # LeNet-5 @64 and ResNet-18 (CIFAR, 32x32) @32
    python benchmarks/train_step.py --rows lenet5 --steps 20 --no-inductor

One step is forward, cross-entropy, backward and SGD with momentum (lr 0.01, momentum 0.9), the same
weights in every contender (copied through the state dict):

* ``ember step``: ``ember.compile(step)`` of the whole step function: one native executable for forward,
  loss, backward and the optimizer update, parameters and momentum buffers written back in place;
* ``ember module``: ``ember.compile(model)`` (compiled forward and backward executables), eager loss and
  optimizer;
* ``PyTorch eager`` and ``torch.compile`` (of the same step function).

Time: all contenders live in one process with 2 threads and run interleaved (A, B, C, D, A, B, ...), so a
load change on the shared machine hits them alike; the first calls (tracing, compilation) are not timed;
the figure is each contender's median step time, and the ratios are taken against ``ember step``.

Peak memory: each of ``ember step`` and ``PyTorch eager`` runs alone in a fresh child process, with glibc
told to return freed memory at once (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``) so that the
resident set follows live memory. After the warm-up steps the heap is trimmed, the peak resident set
(VmHWM) is reset through ``/proc/self/clear_refs``, and the peak during the timed steps minus the resident
set at the reset is what one step adds on top of the model, its gradients, its optimizer state and the
runtime. ember's executable keeps its arena (all intermediates of forward and backward) between calls,
resident before the reset, so the arena is added to ember's figure. The arena is also compared with its
lower bound (the most bytes live at any one kernel call).
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
NAMES = {"step": "ember step", "module": "ember module", "torch": "PyTorch eager", "inductor": "torch.compile"}


def _ember_model(row: str) -> Any:
    import ember
    from ember.vision import models

    ember.manual_seed(0)
    return getattr(models, row)(num_classes=ROWS[row][3]).train()


def _ember_contender(row: str, model: Any, whole_step: bool) -> Any:
    """A zero-argument step over fixed data; ``whole_step``: compile the step function, else the model."""
    import ember

    _, batch, shape, classes = ROWS[row]
    opt = ember.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    crit = ember.nn.CrossEntropyLoss()
    net = model if whole_step else ember.compile(model)
    x, y = ember.randn(batch, *shape), ember.randint(0, classes, (batch,))

    def step(x: Any, y: Any) -> Any:
        opt.zero_grad()
        loss = crit(net(x), y)
        loss.backward()
        opt.step()
        return loss

    fast = ember.compile(step) if whole_step else step
    run = lambda: fast(x, y)  # noqa: E731
    run.compiled = fast if whole_step else net  # type: ignore[attr-defined]
    run.inputs = (x, y)  # type: ignore[attr-defined]
    return run


def _torch_contender(row: str, state: dict[str, Any] | None, compiled: bool) -> Any:
    import numpy as np
    import torch

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from torch_twins import TWINS

    torch.set_num_threads(THREADS)
    _, batch, shape, classes = ROWS[row]
    torch.manual_seed(0)
    model = TWINS[row](num_classes=classes).train() if row != "lenet5" else TWINS[row]().train()
    if state is not None:
        model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()})
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    crit = torch.nn.CrossEntropyLoss()
    x, y = torch.randn(batch, *shape), torch.randint(0, classes, (batch,))

    def step() -> Any:
        opt.zero_grad()
        loss = crit(model(x), y)
        loss.backward()
        opt.step()
        return loss

    return torch.compile(step) if compiled else step


def _arena_line(run: Any) -> str:
    """Arena of the compiled whole step vs its lower bound and the no-reuse sum."""
    plan = run.compiled.entry_for(*run.inputs).result.memory
    return (f"arena {plan.arena_bytes / 2**20:.1f} MB, lower bound {plan.lower_bound / 2**20:.1f} MB "
            f"({plan.arena_bytes / max(plan.lower_bound, 1):.2f}x), every buffer its own memory "
            f"{plan.naive_bytes / 2**20:.1f} MB")


def time_row(row: str, contenders: list[str], steps: int) -> None:
    """Build every contender in this process, warm each, then time them interleaved."""
    model = _ember_model(row)
    state = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    runs: dict[str, Any] = {}
    first: dict[str, float] = {}
    for c in contenders:
        t0 = time.perf_counter()
        try:
            if c in ("step", "module"):
                import copy

                runs[c] = _ember_contender(row, copy.deepcopy(model), c == "step")
            else:
                runs[c] = _torch_contender(row, state, c == "inductor")
            for _ in range(2):
                runs[c]()
        except Exception as e:  # noqa: BLE001  (a contender that cannot run is reported, not fatal)
            print(f"  {NAMES[c]:<14} n/a ({type(e).__name__}: {str(e)[:160]})")
            runs.pop(c, None)
        first[c] = time.perf_counter() - t0
    times: dict[str, list[float]] = {c: [] for c in runs}
    for _ in range(steps):
        for c, run in runs.items():
            t0 = time.perf_counter()
            run()
            times[c].append(time.perf_counter() - t0)
    med = {c: 1000 * statistics.median(ts) for c, ts in times.items()}
    base = med.get("step")
    for c in runs:
        ratio = f"{med[c] / base:.2f}x" if base else "n/a"
        print(f"  {NAMES[c]:<14} step {med[c]:8.2f} ms   (setup + 2 warm-up calls {first[c]:6.1f} s)   "
              f"time / ember step {ratio}")
    if "step" in runs:
        print(f"  ember step memory plan: {_arena_line(runs['step'])}")


# ---- peak memory, one contender per fresh process ----------------------------------------------------


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


def memory_child(contender: str, row: str, steps: int) -> None:
    """Runs in a fresh process: prints one JSON line with the peak resident growth of one step."""
    import ctypes
    import gc

    try:
        if contender == "step":
            run = _ember_contender(row, _ember_model(row), True)
        else:
            run = _torch_contender(row, None, False)
        for _ in range(3):
            run()
        gc.collect()
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        can_reset = _reset_peak()
        base = _status_kb("VmRSS")
        for _ in range(steps):
            run()
        peak = (_status_kb("VmHWM") - base) / 1024 if can_reset else None
        arena = 0.0
        if contender == "step":
            arena = run.compiled.entry_for(*run.inputs).result.executable.arena_bytes / 2**20
        result = {"peak_mb": None if peak is None else peak + arena, "arena_mb": arena}
    except Exception as e:  # noqa: BLE001
        result = {"error": f"{type(e).__name__}: {str(e)[:200]}"}
    print(json.dumps(result))


def _run_memory_child(contender: str, row: str, steps: int) -> dict[str, Any]:
    env = dict(os.environ, EMBER_NUM_THREADS=str(THREADS), OMP_NUM_THREADS=str(THREADS),
               MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--memory-child", contender, row,
                           "--steps", str(steps)], capture_output=True, text=True, env=env)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    return {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1][:200]}


def memory_row(row: str, steps: int) -> None:
    results = {c: _run_memory_child(c, row, steps) for c in ("step", "torch")}
    for c, r in results.items():
        if "error" in r or r.get("peak_mb") is None:
            print(f"  peak memory {NAMES[c]:<14} n/a ({r.get('error', 'cannot reset VmHWM')})")
            continue
        extra = f" (of which arena {r['arena_mb']:.1f} MB)" if c == "step" else ""
        print(f"  peak memory {NAMES[c]:<14} +{r['peak_mb']:7.1f} MB per step{extra}")
    a, b = results["step"].get("peak_mb"), results["torch"].get("peak_mb")
    if a and b:
        print(f"  peak memory PyTorch eager / ember step {b / a:.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--no-inductor", action="store_true")
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--memory-child", nargs=2, metavar=("CONTENDER", "ROW"))
    args = ap.parse_args()
    if args.memory_child:
        memory_child(args.memory_child[0], args.memory_child[1], args.steps)
        return
    os.environ.setdefault("EMBER_NUM_THREADS", str(THREADS))
    contenders = ["step", "module", "torch"] + ([] if args.no_inductor else ["inductor"])
    print(f"{THREADS} threads; times are medians of {args.steps} interleaved steps in one process")
    for row in args.rows:
        title, batch, shape, _ = ROWS[row]
        print(f"\n{title}, batch {batch}, input {shape}: forward + cross-entropy + backward + SGD momentum")
        time_row(row, contenders, args.steps)
        if not args.no_memory:
            memory_row(row, args.steps)
    print("\n(time / ember step above 1: ember's compiled step is faster; peak memory: growth of the peak "
          "resident set during steady-state steps, ember's arena added; see the module docstring)")


if __name__ == "__main__":
    main()
