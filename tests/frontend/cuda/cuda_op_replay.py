"""Record the registry-op calls that real workloads make on the CPU, then replay each on a CUDA device.

Recording wraps the dispatcher's eager path while the workloads run on the CPU: the OpInfo sample table of
the math families (forward and backward), small LeNet-5 and ResNet-18 training steps, and a set of nn and
tensor calls that reach the remaining op families (convolutions, pooling, resampling, recurrent layers,
linear algebra, indexing, joining, random draws). Each call keeps host copies of its inputs and outputs.
Replaying runs the same op with the same attributes on tensors moved to the device and compares: the device
path must give the CPU's numbers (to float tolerance on a real GPU) with every output on the device.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ember
import numpy as np
from ember import dispatch
from ember.compiler.ops import REGISTRY


@dataclass
class Call:
    op: Any
    args: tuple[Any, ...]  # host arrays (numpy) for tensors, or the Python values as given
    is_tensor: tuple[bool, ...]
    dtypes: tuple[Any, ...]
    attrs: dict[str, Any]
    outs: list[np.ndarray]


def _host(x: Any) -> np.ndarray:
    return np.array(x._host(), copy=True)


def record(per_op: int = 12) -> dict[str, list[Call]]:
    """Run the workloads on the CPU and keep up to ``per_op`` calls of each op (distinct signatures)."""
    calls: dict[str, list[Call]] = {}
    seen: set[tuple[Any, ...]] = set()
    original = dispatch._run_eager

    def spy(op: Any, args: tuple[Any, ...], attrs: dict[str, Any]) -> Any:
        out = original(op, args, attrs)
        sig = (op.name, repr(sorted(attrs.items())), *(a.dtype if isinstance(a, ember.Tensor) else type(a)
                                                      for a in args))
        if len(calls.get(op.name, ())) < per_op and sig not in seen:
            seen.add(sig)
            outs = out if isinstance(out, tuple) else (out,)
            calls.setdefault(op.name, []).append(Call(
                op, tuple(_host(a) if isinstance(a, ember.Tensor) else a for a in args),
                tuple(isinstance(a, ember.Tensor) for a in args),
                tuple(a.dtype if isinstance(a, ember.Tensor) else None for a in args),
                dict(attrs), [_host(o) for o in outs]))
        return out

    dispatch._run_eager = spy
    try:
        ember.manual_seed(0)
        _math_cases()
        _models()
        _nn_and_tensor_calls()
    finally:
        dispatch._run_eager = original
    return calls


def _math_cases() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "compiler" / "ops"))
    try:
        import opinfo_math
    finally:
        sys.path.pop(0)
    for case in opinfo_math.CASES:
        try:
            _, outs = opinfo_math.run(case, ember, requires_grad=case.grad)
            floats = [o for o in outs if isinstance(o, ember.Tensor) and o.requires_grad]
            if floats:
                sum(o.sum() for o in floats).backward()
        except Exception:  # noqa: BLE001,S112  (a case meant to raise: its own test checks it)
            continue


def _step(model: Any, x: Any, target: Any) -> None:
    loss = ember.nn.functional.cross_entropy(model(x), target)
    loss.backward()


def _models() -> None:
    from ember.vision import models

    _step(models.lenet5(), ember.randn(2, 1, 28, 28), ember.tensor([1, 7]))
    _step(models.resnet18(num_classes=10), ember.randn(2, 3, 32, 32), ember.tensor([3, 4]))


def _nn_and_tensor_calls() -> None:
    nn, F = ember.nn, ember.nn.functional
    x = ember.randn(2, 3, 8, 8, requires_grad=True)
    y = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    y = y + F.interpolate(x, size=(16, 16), mode="nearest")
    y = F.avg_pool2d(y, 2) + F.adaptive_avg_pool2d(y, (8, 8)) + F.adaptive_max_pool2d(y, (8, 8))
    pooled, idx = F.max_pool2d(y, 2, return_indices=True)
    y = F.max_unpool2d(pooled, idx, 2)
    y = F.conv_transpose2d(y, ember.randn(3, 2, 3, 3), padding=1)
    y = F.pixel_shuffle(ember.cat([y, y], 1), 2)
    y = F.layer_norm(y, y.shape[-2:]) + F.pad(y, (1, 1, 1, 1))[..., 1:-1, 1:-1]
    y.sum().backward()
    z = ember.randn(2, 4, 10, requires_grad=True)
    (F.conv1d(z, ember.randn(5, 4, 3)).sum() + F.group_norm(z, 2).sum() + F.max_pool1d(z, 2).sum()).backward()
    seq = ember.randn(5, 2, 4, requires_grad=True)
    for rnn in (nn.RNN(4, 3), nn.LSTM(4, 3), nn.GRU(4, 3)):
        out, _ = rnn(seq)
        out.sum().backward()
    emb = nn.Embedding(10, 4)
    tokens = ember.tensor([[1, 2, 3], [4, 5, 9]])
    (emb(tokens).sum() + F.one_hot(tokens, 10).sum()).backward()
    a = ember.randn(3, 3, dtype=ember.float64, requires_grad=True)
    (ember.inverse(a + 3 * ember.eye(3, dtype=ember.float64)).sum() + ember.det(a)).backward()
    b = ember.randn(4, 5, requires_grad=True)
    picked = b[ember.tensor([0, 2])] + b[b > 0].sum() + b.gather(1, ember.tensor([[0, 1]] * 4)).sum()
    scattered = ember.zeros(4, 5).scatter_add(1, ember.tensor([[0, 1]] * 4), b[:, :2])
    (picked.sum() + scattered.sum() + ember.where(b > 0, b, 0.0).sum() + b.masked_fill(b < 0, 1).sum()
     + ember.stack([b, b]).sum() + b.flip(0).roll(1, 1).sum() + b.cumsum(1).sum() + b.topk(2).values.sum()
     + b.sort(1).values.sum() + F.dropout(b, 0.5).sum()).backward()
    ember.nn.functional.mse_loss(b, ember.zeros(4, 5)).backward()
    (F.softmax(b, 1).sum() + F.gelu(b).sum() + F.gelu(b, approximate="tanh").sum() + F.elu(b).sum()
     + F.softplus(b).sum() + b.scatter(1, ember.tensor([[0, 1]] * 4), 2.0).sum()).backward()
    F.binary_cross_entropy(b.sigmoid(), ember.rand(4, 5)).backward()
    ember.eig(ember.tensor([[2.0, 1.0], [1.0, 3.0]]))
    F.nll_loss(F.log_softmax(b, 1), ember.tensor([0, 1, 2, 3])).backward()
    F.binary_cross_entropy_with_logits(b, ember.ones(4, 5)).backward()


def replay(call: Call, to_device: Any, from_device: Any) -> list[np.ndarray]:
    """Run ``call`` with its tensors moved by ``to_device``; the outputs come back through ``from_device``."""
    args = tuple(to_device(ember.Tensor._make(a, dt)) if t else a
                 for a, t, dt in zip(call.args, call.is_tensor, call.dtypes))
    out = dispatch.apply(call.op, args, dict(call.attrs))
    outs = out if isinstance(out, tuple) else (out,)
    return [from_device(o) for o in outs]


def uncovered(calls: dict[str, list[Call]]) -> list[str]:
    """Registry primitives (ops with a reference) that no workload reached."""
    return sorted(op.name for op in REGISTRY if op.reference is not None and op.name not in calls)
