"""ember compiled vs PyTorch eager vs torch.compile (Inductor) vs ONNX Runtime, in one process, one table.

    python benchmarks/compare.py                 # every row, every contender installed
    python benchmarks/compare.py --rows mlp lenet5 --no-inductor --runs 30

Each model runs with the same weights in every framework (copied through the state dict) and the
outputs are checked against PyTorch eager before anything is timed. Every contender uses 2 threads.
Contenders alternate in blocks of a few calls with a short pause between blocks (OpenBLAS and MKL
helper threads spin after a call and slow whatever runs next); each figure is the median per-call time
over all blocks. Ratios are contender / ember: above 1 means ember is faster.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np

THREADS = 2
os.environ.setdefault("EMBER_NUM_THREADS", str(THREADS))
os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))

import ember  # noqa: E402
import torch  # noqa: E402
from ember.vision import models  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_twins import TWINS  # noqa: E402

ROWS = [
    ("MLP 784-512-512-10", "mlp", (1, 784)),
    ("MLP 784-512-512-10", "mlp", (64, 784)),
    ("LeNet-5 1x28x28", "lenet5", (1, 1, 28, 28)),
    ("LeNet-5 1x28x28", "lenet5", (64, 1, 28, 28)),
    ("ResNet-18 3x32x32", "resnet18", (1, 3, 32, 32)),
    ("ResNet-18 3x32x32", "resnet18", (32, 3, 32, 32)),
    ("ResNet-18 3x224x224", "resnet18", (1, 3, 224, 224)),
    ("VGG-11-BN 3x32x32", "vgg11_bn", (8, 3, 32, 32)),
]


def ember_model(name: str) -> Any:
    if name == "mlp":
        nn = ember.nn
        return nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10))
    return getattr(models, name)()


def twin(name: str, model: Any) -> torch.nn.Module:
    tm = TWINS[name]()
    state = {k: torch.from_numpy(np.array(v.detach().numpy())) for k, v in model.state_dict().items()}
    tm.load_state_dict(state)
    return tm.eval()


def _median_ms(fns: dict[str, Callable[[], Any]], runs: int, block: int = 5) -> dict[str, float]:
    times: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():  # warm-up
        for _ in range(3):
            fn()
    done = 0
    while done < runs:
        for name, fn in fns.items():
            for _ in range(block):
                t = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t)
            time.sleep(0.05)
        done += block
    return {k: statistics.median(v) * 1e3 for k, v in times.items()}


def _ort_session(tm: torch.nn.Module, x: torch.Tensor) -> Callable[[np.ndarray], Any] | None:
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    path = os.path.join(tempfile.mkdtemp(), "model.onnx")
    try:
        import warnings

        sys.stdout.flush()
        sys.stderr.flush()
        saved = [os.dup(1), os.dup(2)]  # the exporter prints the whole TorchScript graph on failure
        try:
            with warnings.catch_warnings(), open(os.devnull, "w") as null:
                warnings.simplefilter("ignore")
                os.dup2(null.fileno(), 1)
                os.dup2(null.fileno(), 2)
                torch.onnx.export(tm, (x,), path, input_names=["x"], dynamo=False, verbose=False)
        finally:
            for fd, copy in zip((1, 2), saved):
                os.dup2(copy, fd)
                os.close(copy)
    except Exception as e:  # the exporter cannot express some models (e.g. adaptive pooling 1x1 -> 7x7)
        print(f"  (onnxruntime: export failed: {str(e).splitlines()[0][:100]})", file=sys.stderr)
        return None
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = THREADS
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    return lambda arr: sess.run(None, {"x": arr})


def run_row(label: str, name: str, shape: tuple[int, ...], runs: int, inductor: bool) -> dict[str, Any]:
    ember.manual_seed(0)
    model = ember_model(name).eval()
    tm = twin(name, model)
    xn = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    x, xt = ember.from_numpy(xn), torch.from_numpy(xn)
    fast = ember.compile(model)
    with ember.no_grad(), torch.no_grad():
        t = time.perf_counter()
        got = fast(x).numpy()
        ember_compile_s = time.perf_counter() - t
        want = tm(xt).numpy()
        err = float(np.abs(got - want).max() / (np.abs(want).max() + 1e-12))
        fns: dict[str, Callable[[], Any]] = {"ember": lambda: fast(x), "torch eager": lambda: tm(xt)}
        inductor_s = float("nan")
        if inductor:
            tc = torch.compile(tm)
            t = time.perf_counter()
            tc(xt)
            inductor_s = time.perf_counter() - t
            fns["torch.compile"] = lambda: tc(xt)
        ort_run = _ort_session(tm, xt)
        if ort_run is not None:
            fns["onnxruntime"] = lambda: ort_run(xn)
        ms = _median_ms(fns, runs)
    return {"label": label, "batch": shape[0], "ms": ms, "rel_err": err, "ember_compile_s": ember_compile_s,
            "inductor_compile_s": inductor_s, "kernels": fast.compiled_for(x).result.kernel_count}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", nargs="*", default=None, help="model names to run (mlp lenet5 resnet18 vgg11_bn)")
    ap.add_argument("--runs", type=int, default=20, help="timed calls per contender (>= 20 for the README)")
    ap.add_argument("--no-inductor", action="store_true", help="skip torch.compile (its compiles are slow)")
    args = ap.parse_args(argv)
    torch.set_num_threads(THREADS)
    print(f"ember {ember.__version__} | torch {torch.__version__} | {THREADS} threads | medians of "
          f"{args.runs} runs | ratio = contender time / ember time (>1: ember faster)")
    peers = ["torch eager"] + ([] if args.no_inductor else ["torch.compile"])
    try:
        import onnxruntime  # noqa: F401

        peers.append("onnxruntime")
    except ImportError:
        pass
    head = f"{'model':<22}{'batch':>6}{'kernels':>8}{'ember ms':>10}" + "".join(f"{p + ' ms':>18}" for p in peers)
    head += "".join(f"{p + ' /ember':>20}" for p in peers) + f"{'max rel err':>13}{'compile s':>11}"
    print(head, flush=True)
    for label, name, shape in ROWS:
        if args.rows is not None and name not in args.rows:
            continue
        r = run_row(label, name, shape, args.runs, not args.no_inductor)
        e = r["ms"]["ember"]
        line = f"{r['label']:<22}{r['batch']:>6}{r['kernels']:>8}{e:>10.3f}"
        line += "".join(f"{r['ms'][p]:>18.3f}" if p in r["ms"] else f"{'n/a':>18}" for p in peers)
        line += "".join(f"{r['ms'][p] / e:>20.2f}" if p in r["ms"] else f"{'n/a':>20}" for p in peers)
        line += f"{r['rel_err']:>13.1e}{r['ember_compile_s']:>11.2f}"
        if not args.no_inductor:
            line += f"   (inductor compile {r['inductor_compile_s']:.1f} s)"
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
