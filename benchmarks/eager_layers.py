"""ember eager vs PyTorch eager on ResNet-18-sized layers (Conv2d, Linear, BatchNorm2d) and an LSTM,
forward and backward, in one run. Both libraries get 2 threads; contenders alternate within each round
so drifting machine load hits both alike; the table reports medians.

    python benchmarks/eager_layers.py [--repeats 7] [--batch 8]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import ember
import numpy as np
import torch


def _layers(batch: int) -> list[tuple[str, Callable[[Any], Any], Callable[[Any], Any], tuple[int, ...]]]:
    """(name, ember module factory, torch module factory, input shape)."""
    return [
        (
            "Conv2d 64->64 3x3 @56",
            lambda m: m.Conv2d(64, 64, 3, padding=1, bias=False),
            None,
            (batch, 64, 56, 56),
        ),
        (
            "Conv2d 128->256 3x3 s2 @28",
            lambda m: m.Conv2d(128, 256, 3, stride=2, padding=1, bias=False),
            None,
            (batch, 128, 28, 28),
        ),
        (
            "Conv2d 3->64 7x7 s2 @224",
            lambda m: m.Conv2d(3, 64, 7, stride=2, padding=3, bias=False),
            None,
            (max(batch // 4, 1), 3, 224, 224),
        ),
        ("Linear 512->1000", lambda m: m.Linear(512, 1000), None, (batch * 4, 512)),
        ("BatchNorm2d 64 @56", lambda m: m.BatchNorm2d(64), None, (batch, 64, 56, 56)),
        ("LSTM 256->256 T=16", lambda m: m.LSTM(256, 256, batch_first=True), None, (batch * 4, 16, 256)),
    ]


def _first(out: Any) -> Any:
    return out[0] if isinstance(out, tuple) else out


def _time(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e3


def _contender(lib: Any, module: Any, x_np: np.ndarray) -> tuple[Callable[[], float], Callable[[], float]]:
    """(forward timer, backward timer) for one library's module."""
    x = lib.tensor(x_np, requires_grad=True)

    def fwd() -> float:
        with lib.no_grad():
            return _time(lambda: module(x))

    def bwd() -> float:
        y = _first(module(x))
        g = lib.ones(*y.shape)
        return _time(lambda: y.backward(g))

    return fwd, bwd


def run(repeats: int, batch: int) -> list[tuple[str, str, float, float]]:
    torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    rows = []
    for name, factory, _, shape in _layers(batch):
        e_mod, t_mod = factory(ember.nn), factory(torch.nn)
        t_mod.load_state_dict({k: torch.tensor(v.numpy()) for k, v in e_mod.state_dict().items()})
        x = rng.standard_normal(shape).astype(np.float32)
        e_fwd, e_bwd = _contender(ember, e_mod, x)
        t_fwd, t_bwd = _contender(torch, t_mod, x)
        for phase, (ef, tf) in (("fwd", (e_fwd, t_fwd)), ("bwd", (e_bwd, t_bwd))):
            ef(), tf()  # warm-up
            e_ms, t_ms = [], []
            for _ in range(repeats):
                e_ms.append(ef())
                t_ms.append(tf())
            rows.append((name, phase, statistics.median(e_ms), statistics.median(t_ms)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    rows = run(args.repeats, args.batch)
    print(f"{'layer':<28} {'pass':<4} {'ember ms':>10} {'torch ms':>10} {'ratio':>7}")
    for name, phase, e_ms, t_ms in rows:
        print(f"{name:<28} {phase:<4} {e_ms:>10.2f} {t_ms:>10.2f} {e_ms / t_ms:>7.2f}")


if __name__ == "__main__":
    main()
