"""``ember demo``: train LeNet-5 on handwritten-style digits generated on the fly (nothing is downloaded),
with a progress bar showing loss and accuracy, then report held-out accuracy and wall time.

The data set is ``ember.vision.datasets.SyntheticDigits``: stroke skeletons of the ten digits (several
styles each) under random jitter, slant, rotation, scale, shift, pen width and noise, rendered at 28x28
like MNIST. Training and test images come from different seeds, so the test digits are unseen.

The compiler hooks in at ``compile_and_export``, the one marked place where the trained model will be
compiled and exported once the compiler lands.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any, TextIO

import ember
from ember import nn
from ember.utils.data import BatchSampler, DataLoader, RandomSampler, TensorDataset
from ember.vision.datasets import SyntheticDigits
from ember.vision.models import lenet5


@dataclass(frozen=True)
class DemoConfig:
    """Sizes of one demo run; ``quick`` is a smoke test that finishes in a few seconds."""

    train_size: int
    test_size: int
    epochs: int
    batch_size: int = 128
    lr: float = 3e-3
    seed: int = 0


FULL = DemoConfig(train_size=12000, test_size=2000, epochs=4)
QUICK = DemoConfig(train_size=1280, test_size=500, epochs=1)


class ProgressBar:
    """A one-line text bar, ``[#####.....] 45/94 loss 0.231 acc 93.1%``, redrawn in place on a terminal and
    printed only at the end (plus quarter marks) otherwise, so logs stay readable."""

    def __init__(self, total: int, prefix: str, out: TextIO, width: int = 30) -> None:
        self.total, self.prefix, self.out, self.width = total, prefix, out, width
        self.tty = out.isatty()
        self.start = time.perf_counter()
        self._marks = {total * k // 4 for k in (1, 2, 3)}

    def update(self, done: int, loss: float, acc: float) -> None:
        filled = self.width * done // self.total
        line = (
            f"{self.prefix} [{'#' * filled}{'.' * (self.width - filled)}] {done}/{self.total}"
            f"  loss {loss:.4f}  acc {100 * acc:5.1f}%  {time.perf_counter() - self.start:5.1f}s"
        )
        if self.tty:
            self.out.write("\r" + line + ("\n" if done == self.total else ""))
        elif done == self.total or done in self._marks:
            self.out.write(line + "\n")
        self.out.flush()


def make_data(cfg: DemoConfig) -> tuple[Any, Any, Any, Any]:
    """Generated training and held-out digits as (N, 1, 28, 28) floats in [0, 1] and int64 labels."""
    x_train, y_train = SyntheticDigits(cfg.train_size, seed=cfg.seed + 1).tensors()
    x_test, y_test = SyntheticDigits(cfg.test_size, seed=cfg.seed + 2).tensors()
    return x_train, y_train, x_test, y_test


def train_epoch(model: nn.Module, loader: DataLoader, opt: ember.optim.Optimizer, bar: ProgressBar) -> None:
    """One pass over the loader: the standard zero_grad / backward / step loop, with running statistics."""
    model.train()
    loss_fn = nn.CrossEntropyLoss()
    seen, correct, loss_sum = 0, 0, 0.0
    for i, (x, y) in enumerate(loader, 1):
        opt.zero_grad()
        logits = model(x)
        loss = loss_fn(logits, y)
        loss.backward()
        opt.step()
        seen += len(y)
        loss_sum += loss.item() * len(y)
        correct += int((logits.argmax(dim=1) == y).float().sum().item())
        bar.update(i, loss_sum / seen, correct / seen)


@ember.no_grad()
def evaluate(model: nn.Module, x: Any, y: Any, batch_size: int = 500) -> float:
    """Accuracy of ``model`` on (x, y), in eval mode."""
    model.eval()
    correct = 0
    for lo in range(0, len(y), batch_size):
        logits = model(x[lo : lo + batch_size])
        correct += int((logits.argmax(dim=1) == y[lo : lo + batch_size]).float().sum().item())
    return correct / len(y)


def _median_ms(fn: Any, runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    times.sort()
    return times[len(times) // 2] * 1e3


def compile_and_export(model: nn.Module, example: Any, out: TextIO) -> None:
    """Compile the trained ``model`` for ``example``'s shape, check it against eager, time both, and
    export it when ahead-of-time export is available."""
    model.eval()
    start = time.perf_counter()
    fast = ember.compile(model)
    with ember.no_grad():
        got = fast(example)
        compile_s = time.perf_counter() - start
        want = model(example)
        err = float((got - want).abs().max().item())
        result = fast.compiled_for(example).result
        out.write(f"compiled: {len(result.graph.nodes)} graph nodes -> {result.kernel_count} native kernels in "
                  f"{compile_s:.1f}s; max |compiled - eager| = {err:.2e}\n")
        runs = 50
        eager_ms = _median_ms(lambda: model(example), runs)
        compiled_ms = _median_ms(lambda: fast(example), runs)
    out.write(f"batch {example.shape[0]}: eager {eager_ms:.3f} ms, compiled {compiled_ms:.3f} ms "
              f"({eager_ms / compiled_ms:.1f}x)\n")
    try:
        import tempfile

        path = ember.export(model, (example,), tempfile.mkdtemp() + "/lenet5.so")
    except ember.CompileError as e:
        out.write(f"export: skipped ({str(e).splitlines()[0]})\n")
        return
    from ember.runtime import load

    exported = load(path)
    y = exported(example.numpy())
    y = y[0] if isinstance(y, (tuple, list)) else y
    out.write(f"exported to {path}; its output matches: {bool(abs(y - want.numpy()).max() < 1e-4)}\n")


def run_demo(epochs: int | None = None, quick: bool = False, out: TextIO | None = None) -> int:
    """Train LeNet-5 on generated digits and report held-out accuracy and wall time; returns 0."""
    out = out or sys.stdout
    cfg = QUICK if quick else FULL
    if epochs is not None:
        cfg = DemoConfig(cfg.train_size, cfg.test_size, epochs, cfg.batch_size, cfg.lr, cfg.seed)
    start = time.perf_counter()
    ember.manual_seed(cfg.seed)
    x_train, y_train, x_test, y_test = make_data(cfg)
    out.write(
        f"data: {cfg.train_size} generated training digits, {cfg.test_size} held-out test digits (28x28),"
        f" made in {time.perf_counter() - start:.1f}s\n"
    )
    model = lenet5()
    opt = ember.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = ember.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, cfg.epochs))
    train_set = TensorDataset(x_train, y_train)
    # whole batches of indices go to the dataset (one indexing op per tensor instead of one per sample)
    batches = BatchSampler(RandomSampler(train_set), cfg.batch_size, drop_last=True)
    loader = DataLoader(train_set, sampler=batches, batch_size=None)
    train_start = time.perf_counter()
    for epoch in range(cfg.epochs):
        train_epoch(model, loader, opt, ProgressBar(len(loader), f"epoch {epoch + 1}/{cfg.epochs}", out))
        sched.step()
    train_time = time.perf_counter() - train_start
    acc = evaluate(model, x_test, y_test)
    total = time.perf_counter() - start
    out.write(
        f"test accuracy {100 * acc:.2f}% on {cfg.test_size} held-out digits; training {train_time:.1f}s,"
        f" total {total:.1f}s\n"
    )
    compile_and_export(model, x_test[:1], out)
    return 0
