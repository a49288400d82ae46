"""The main job behind ``ember demo``. For now: logistic regression with eager autograd on generated
two-class data; the training-stack issue replaces it with LeNet-5 on generated digits."""

from __future__ import annotations

import time

import ember


def run_demo(epochs: int | None = None, quick: bool = False) -> int:
    ember.manual_seed(0)
    n, d = 512, 8
    x = ember.randn(n, d)
    true_w = ember.randn(d, 1)
    y = ((x @ true_w) > 0).float()
    w = ember.zeros(d, 1, requires_grad=True)
    steps = epochs or (20 if quick else 200)
    start = time.perf_counter()
    for step in range(steps):
        p = (x @ w).sigmoid()
        loss = -(y * (p + 1e-7).log() + (1 - y) * (1 - p + 1e-7).log()).mean()
        loss.backward()
        with ember.no_grad():
            w -= 0.5 * w.grad
        w.grad = None
        if step % max(1, steps // 5) == 0 or step == steps - 1:
            print(f"step {step:4d}  loss {loss.item():.4f}")
    acc = (((x @ w) > 0).float() == y).float().mean().item()
    print(f"train accuracy {acc:.3f} in {time.perf_counter() - start:.2f} s")
    return 0
