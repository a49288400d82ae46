"""ResNet-18 at 224x224 (batch 1 and 32): ember's generated CUDA (plain launches and CUDA-graph replay)
against PyTorch CUDA eager and torch.compile, measured interleaved (A, B, A, B, ...) in one process;
prints medians and ratios. Without a usable GPU it prints "no GPU" and exits 0.

Run: python benchmarks/cuda_compare.py [--batches 1 32] [--repeats 20]
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any


def _timer(fn: Callable[[], Any], sync: Callable[[], None]) -> Callable[[], float]:
    def once() -> float:
        sync()
        start = time.perf_counter()
        fn()
        sync()
        return time.perf_counter() - start
    return once


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    import ember

    if not ember.cuda.is_available():
        print("no GPU: ember.cuda.is_available() is False; nothing to compare")
        return 0
    import cupy as cp
    import numpy as np
    import torch
    from ember.compiler.compile import compile_graph
    from ember.runtime.cuda import CudaExecutable
    from ember.tracing import trace
    from ember.vision.models import resnet18

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from torch_twins import TWINS  # the same architecture in torch (torchvision does not import beside 2.13)

    model = resnet18().eval()
    tmodel = TWINS["resnet18"]().eval().cuda()
    tmodel.load_state_dict({k: torch.from_numpy(v.numpy()) for k, v in model.state_dict().items()})
    tcompiled = torch.compile(tmodel)
    for batch in args.batches:
        x = ember.randn(batch, 3, 224, 224)
        exe = compile_graph(trace(model, x), "cuda", cache=False).executable
        plain = CudaExecutable(exe, device_outputs=True)
        graphed = CudaExecutable(exe, graph=True, device_outputs=True)
        xd, xt = cp.asarray(x.numpy()), torch.from_numpy(x.numpy()).cuda()
        with torch.no_grad():
            want = tmodel(xt).cpu().numpy()
            got = plain(xd)[0].get()
            print(f"batch {batch}: max |ember - torch| = {np.abs(got - want).max():.2e}")
            contenders = {"ember cuda": functools.partial(plain, xd),
                          "ember cuda graph": functools.partial(graphed, xd),
                          "torch eager": functools.partial(tmodel, xt),
                          "torch.compile": functools.partial(tcompiled, xt)}
            sync = lambda: (cp.cuda.Device().synchronize(), torch.cuda.synchronize())  # noqa: E731
            timers = {k: _timer(f, sync) for k, f in contenders.items()}
            for t in timers.values():  # warm-up (torch.compile compiles here)
                t(), t()
            samples: dict[str, list[float]] = {k: [] for k in timers}
            for _ in range(args.repeats):
                for k, t in timers.items():
                    samples[k].append(t())
        base = statistics.median(samples["torch eager"])
        for k, s in samples.items():
            med = statistics.median(s)
            print(f"  {k:18s} median {med * 1e3:8.3f} ms   x{base / med:5.2f} vs torch eager")
    return 0


if __name__ == "__main__":
    sys.exit(main())
