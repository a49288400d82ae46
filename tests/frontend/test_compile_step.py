"""ember.compile(step_fn): forward, loss, backward and optimizer update in one executable. After N compiled
steps, parameters, gradients and optimizer state equal eager ember's and torch's; loss curves match;
learning-rate changes take effect without recompiling; unsupported patterns raise clear errors."""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ember
import numpy as np
import pytest
import torch
from ember import nn
from ember.runtime.errors import CompileError, TraceError
from ember.vision.models import lenet5

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from torch_twins import TWINS  # noqa: E402  (torch models with the zoo's parameter names)


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 16), nn.Tanh(), nn.Linear(16, 5))


def _torch_mlp() -> torch.nn.Module:
    t = torch.nn
    return t.Sequential(t.Linear(10, 32), t.ReLU(), t.Linear(32, 16), t.Tanh(), t.Linear(16, 5))


def _torch_like(model: nn.Module, ref: torch.nn.Module) -> torch.nn.Module:
    ref.load_state_dict({k: torch.from_numpy(np.array(v.numpy())) for k, v in model.state_dict().items()})
    return ref


_OPTS = {"sgd": (ember.optim.SGD, torch.optim.SGD), "adam": (ember.optim.Adam, torch.optim.Adam),
         "adamw": (ember.optim.AdamW, torch.optim.AdamW)}


def _step_fn(model: Any, opt: Any, crit: Any, zero: bool = True) -> Callable[..., Any]:
    def step(x: Any, y: Any) -> Any:
        if zero:
            opt.zero_grad()
        loss = crit(model(x), y)
        loss.backward()
        opt.step()
        return loss

    return step


class _Trio:
    """The same model and optimizer three times: compiled step, eager ember, torch."""

    def __init__(self, model: nn.Module, ref: torch.nn.Module, kind: str, zero: bool = True,
                 target: str = "llvm", **hyper: Any) -> None:
        self.model, self.eager = model, copy.deepcopy(model)
        self.ref = _torch_like(model, ref)
        e_cls, t_cls = _OPTS[kind]
        self.opt, self.e_opt = e_cls(model.parameters(), **hyper), e_cls(self.eager.parameters(), **hyper)
        self.t_opt = t_cls(self.ref.parameters(), **hyper)
        crit = nn.CrossEntropyLoss()
        self.fast = ember.compile(_step_fn(model, self.opt, crit, zero), target=target)
        self.slow = _step_fn(self.eager, self.e_opt, crit, zero)
        self.torch_step = _step_fn(self.ref, self.t_opt, torch.nn.CrossEntropyLoss(), zero)

    def step(self, x: ember.Tensor, y: ember.Tensor) -> tuple[float, float, float]:
        tx, ty = torch.from_numpy(x.numpy()), torch.from_numpy(y.numpy())
        return self.fast(x, y).item(), self.slow(x, y).item(), self.torch_step(tx, ty).item()

    def set_lr(self, lr: float) -> None:
        for opt in (self.opt, self.e_opt, self.t_opt):
            for g in opt.param_groups:
                g["lr"] = lr

    def check(self, rtol: float = 1e-4, grad_rtol: float | None = None, torch_param_atol: float = 0.0,
              torch_all: bool = True) -> None:
        """Parameters, gradients, buffers and optimizer state of all three agree (gradients and the
        optimizer state built from them to ``grad_rtol``, default ``rtol``; parameters against torch
        also to ``torch_param_atol``; without ``torch_all`` only the parameters are compared with torch)."""
        grad_rtol = grad_rtol or rtol
        mine, eager = dict(self.model.named_parameters()), dict(self.eager.named_parameters())
        theirs = dict(self.ref.named_parameters())
        for n, p in mine.items():
            _close(p.detach().numpy(), eager[n].detach().numpy(), rtol, n + " vs eager")
            _close(p.detach().numpy(), theirs[n].detach().numpy(), rtol, n + " vs torch", torch_param_atol)
            _close(p.grad.numpy(), eager[n].grad.numpy(), grad_rtol, n + ".grad vs eager")
            if torch_all:
                _close(p.grad.numpy(), theirs[n].grad.numpy(), grad_rtol, n + ".grad vs torch")
        t_buffers = dict(self.ref.named_buffers())
        for (n, b), (_, e) in zip(self.model.named_buffers(), self.eager.named_buffers()):
            _close(b.numpy(), e.numpy(), rtol, n + " vs eager")
            if torch_all:
                _close(b.numpy(), t_buffers[n].numpy(), rtol, n + " vs torch")
        states = (self.opt.state_dict()["state"], self.e_opt.state_dict()["state"],
                  self.t_opt.state_dict()["state"])
        assert set(states[0]) == set(states[1]) == set(states[2])
        for i, entry in states[0].items():
            assert set(entry) == set(states[1][i]) == set(states[2][i])
            for key, v in entry.items():
                for other in (states[1][i][key], states[2][i][key])[:2 if torch_all else 1]:
                    _close(np.asarray(v.numpy() if hasattr(v, "numpy") else v), np.asarray(
                        other.numpy() if hasattr(other, "numpy") else other), grad_rtol, f"state {i}.{key}")


def _close(got: np.ndarray, want: np.ndarray, rtol: float, name: str, atol: float = 0.0) -> None:
    """rtol, with an absolute floor of rtol times the tensor's largest entry: float32 sums in another
    order leave entries near zero with no meaningful relative precision."""
    scale = float(np.abs(want).max()) if np.size(want) else 0.0
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * scale + 1e-7 + atol, err_msg=name)


def _data(batch: int = 8, shape: tuple[int, ...] = (10,), classes: int = 5) -> tuple[ember.Tensor, ember.Tensor]:
    return ember.randn(batch, *shape), ember.randint(0, classes, (batch,))


# Native code for the main configurations; the variants check the traced update rules through the
# graph interpreter (the same graph, reference kernels: LLVM compile time stays out of the test budget).
@pytest.mark.parametrize("target,hyper", [
    ("llvm", dict(lr=0.1, momentum=0.9)),
    ("interpret", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-2)),
    ("interpret", dict(lr=0.05, momentum=0.8, dampening=0.3, weight_decay=1e-3, maximize=True)),
    ("interpret", dict(lr=0.1)),
], ids=["momentum", "nesterov_wd", "dampening_maximize", "plain"])
def test_mlp_sgd_steps_equal_eager_and_torch(target: str, hyper: dict[str, Any]) -> None:
    ember.manual_seed(1)
    trio = _Trio(_mlp(), _torch_mlp(), "sgd", target=target, **hyper)
    x, y = _data()
    for _ in range(3):
        got, eager, theirs = trio.step(x, y)
        np.testing.assert_allclose(got, eager, rtol=1e-5)
        np.testing.assert_allclose(got, theirs, rtol=1e-5)
    trio.check()
    # with dampening the first step builds the buffer from the gradient: a second graph, then no more
    assert sum(len(v) for v in trio.fast._cache.values()) == (2 if hyper.get("dampening") else 1)


@pytest.mark.parametrize("kind,target,hyper", [
    ("adam", "llvm", dict(lr=1e-2)),
    ("adam", "interpret", dict(lr=1e-2, weight_decay=1e-2, amsgrad=True)),
    ("adamw", "interpret", dict(lr=1e-2, weight_decay=0.1, betas=(0.8, 0.99))),
], ids=["adam", "adam_l2_amsgrad", "adamw"])
def test_mlp_adam_steps_equal_eager_and_torch(kind: str, target: str, hyper: dict[str, Any]) -> None:
    ember.manual_seed(2)
    trio = _Trio(_mlp(), _torch_mlp(), kind, target=target, **hyper)
    x, y = _data()
    for _ in range(4):
        trio.step(x, y)
    trio.check()
    assert trio.opt.state[next(trio.model.parameters())]["step"] == 4
    assert sum(len(v) for v in trio.fast._cache.values()) == 1


def test_learning_rate_changes_take_effect_without_recompiling() -> None:
    ember.manual_seed(3)
    trio = _Trio(_mlp(), _torch_mlp(), "adam", target="interpret", lr=1e-2)
    sched = ember.optim.lr_scheduler.StepLR(trio.opt, step_size=1, gamma=0.5)
    x, y = _data()
    for _ in range(4):
        trio.step(x, y)
        sched.step()
        trio.set_lr(trio.opt.param_groups[0]["lr"])  # the same schedule on the eager and torch twins
    assert trio.opt.param_groups[0]["lr"] == pytest.approx(1e-2 / 16)
    trio.check()
    assert sum(len(v) for v in trio.fast._cache.values()) == 1


def test_without_zero_grad_gradients_accumulate_as_in_eager() -> None:
    ember.manual_seed(4)
    trio = _Trio(_mlp(), _torch_mlp(), "sgd", zero=False, target="interpret", lr=0.05, momentum=0.9)
    x, y = _data()
    for _ in range(3):
        trio.step(x, y)
    trio.check()
    # first call without a .grad, then with one (accumulating): two entries, reused afterwards
    assert sum(len(v) for v in trio.fast._cache.values()) == 2


def test_float64_model_gets_float64_runtime_scalars() -> None:
    ember.manual_seed(11)
    trio = _Trio(_mlp().double(), _torch_mlp().double(), "adamw", target="interpret", lr=1e-2)
    x, y = ember.randn(8, 10, dtype=ember.float64), ember.randint(0, 5, (8,))
    for _ in range(2):
        trio.step(x, y)
    assert next(trio.model.parameters()).dtype == ember.float64
    trio.check(rtol=1e-9)


def test_twenty_step_loss_curves_equal_eager_and_torch_lenet5() -> None:
    ember.manual_seed(5)
    trio = _Trio(lenet5(), TWINS["lenet5"](), "sgd", lr=0.05, momentum=0.9)
    x, y = _data(16, (1, 28, 28), 10)
    curves = np.array([trio.step(x, y) for _ in range(20)])
    np.testing.assert_allclose(curves[:, 0], curves[:, 1], rtol=1e-4)
    np.testing.assert_allclose(curves[:, 0], curves[:, 2], rtol=1e-4)
    assert curves[-1, 0] < curves[0, 0]  # it trains
    trio.check(rtol=2e-4)


def test_lenet5_adam_steps_equal_eager_and_torch() -> None:
    ember.manual_seed(6)
    trio = _Trio(lenet5(), TWINS["lenet5"](), "adam", target="interpret", lr=1e-3)
    x, y = _data(8, (1, 28, 28), 10)
    for _ in range(3):
        trio.step(x, y)
    trio.check(rtol=2e-4)


@pytest.mark.slow
def test_resnet18_train_mode_steps_equal_eager_and_torch() -> None:
    """Batch norm in train mode: batch statistics in the graph, running statistics written back.
    Parameters and running statistics to rtol 1e-4; gradients of the deep layers and the momentum
    buffers summed from them (batch norm over 8 x 4 x 4 values, float32 sums in another order) to 1e-3
    of their scale, which is also how far eager ember and torch are apart there."""
    from ember.vision.models import resnet18

    ember.manual_seed(7)
    trio = _Trio(resnet18(num_classes=10).train(), TWINS["resnet18"](num_classes=10).train(), "sgd",
                 lr=0.01, momentum=0.9)
    x, y = _data(8, (3, 32, 32), 10)
    for _ in range(2):
        trio.step(x, y)
    trio.check(rtol=1e-4, grad_rtol=1e-3)
    plan = trio.fast.memory_plans[0]
    assert plan.lower_bound <= plan.arena_bytes < plan.naive_bytes


@pytest.mark.slow
def test_resnet18_adam_steps_equal_eager_and_torch() -> None:
    """Adam on train-mode ResNet-18 through the graph interpreter (the traced update rules and the
    batch-norm write-back; the native path is the slow SGD test above). Compiled == eager ember to
    rtol 1e-4; against torch the parameters may differ by a fraction of Adam's step (lr per step):
    m / sqrt(v) turns float32 noise in a near-zero gradient into a step of up to lr (bound: 2 steps in
    opposite directions), and the second step's gradients, statistics and moments are compared with
    eager ember only (layer4's batch norm sees 4 values per channel at this size, which amplifies
    those differences; eager ember and torch differ as much)."""
    from ember.vision.models import resnet18

    ember.manual_seed(12)
    trio = _Trio(resnet18(num_classes=10).train(), TWINS["resnet18"](num_classes=10).train(), "adam",
                 target="interpret", lr=1e-3)
    x, y = _data(4, (3, 32, 32), 10)
    for _ in range(2):
        trio.step(x, y)
    trio.check(rtol=1e-4, grad_rtol=1e-4, torch_param_atol=2 * 2 * 1.5e-3, torch_all=False)


def test_one_arena_covers_forward_and_backward() -> None:
    """The whole step is one executable: saved activations are arena buffers that live from their
    forward producer to their last backward reader, and the plan reuses memory across the two."""
    ember.manual_seed(8)
    model = _mlp()
    opt = ember.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    fast = ember.compile(_step_fn(model, opt, nn.CrossEntropyLoss()))
    x, y = _data()
    fast(x, y)
    (plan,) = fast.memory_plans
    assert 0 < plan.lower_bound <= plan.arena_bytes < plan.naive_bytes
    # every parameter and momentum update is written straight into the live array (no copy back)
    entry = fast.entry_for(x, y)
    kinds = [t[0] for t in entry.writes.targets]
    assert sorted(t[0][0] for t in entry.aliased.values()) == sorted(k for k in kinds if k != "grad")
    arrays = [p._data for p in model.parameters()]
    before = [a.copy() for a in arrays]
    fast(x, y)
    assert all(p._data is a for p, a in zip(model.parameters(), arrays))
    assert all(not np.array_equal(a, b) for a, b in zip(arrays, before))
    ops = [n.op.name for n in fast.graph(x, y).nodes]
    assert "matmul" in ops and ops.count("matmul") >= 3 * 3 - 1  # forward and both backward GEMMs


def test_train_eval_switch_retraces() -> None:
    ember.manual_seed(9)
    model = nn.Sequential(nn.Linear(6, 8), nn.Dropout(0.5), nn.Linear(8, 3))
    opt = ember.optim.SGD(model.parameters(), lr=0.1)
    fast = ember.compile(_step_fn(model, opt, nn.CrossEntropyLoss()), target="interpret")
    x, y = _data(4, (6,), 3)
    model.eval()
    eager = copy.deepcopy(model)
    e_opt = ember.optim.SGD(eager.parameters(), lr=0.1)
    slow = _step_fn(eager, e_opt, nn.CrossEntropyLoss())
    np.testing.assert_allclose(fast(x, y).item(), slow(x, y).item(), rtol=1e-5)
    model.train()
    fast(x, y)
    assert sum(len(v) for v in fast._cache.values()) == 2


def test_detach_stops_gradients_and_method_steps_guard_train_eval() -> None:
    """A step written as a method (model and optimizer reached through ``self``): ``.detach()`` inside
    stops the gradient as in eager mode, and switching the model to eval mode traces a new entry."""

    class Trainer:
        def __init__(self, model: nn.Module) -> None:
            self.model = model
            self.opt = ember.optim.SGD(model.parameters(), lr=0.1, momentum=0.5)

        def step(self, x: Any) -> Any:
            self.opt.zero_grad()
            out = self.model(x)
            loss = (out * out.detach()).mean() + out.data.sum() * 0.0
            loss.backward()
            self.opt.step()
            return loss

    ember.manual_seed(10)
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Linear(6, 3))
    fast_t, slow_t = Trainer(model), Trainer(copy.deepcopy(model))
    fast = ember.compile(fast_t.step, target="interpret")
    x = ember.randn(5, 4)
    for mode in ("train", "eval", "train"):
        for t in (fast_t, slow_t):
            getattr(t.model, mode)()
        np.testing.assert_allclose(fast(x).item(), slow_t.step(x).item(), rtol=1e-5)
        for p, q in zip(fast_t.model.parameters(), slow_t.model.parameters()):
            np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-5, atol=1e-7)
            np.testing.assert_allclose(p.detach().numpy(), q.detach().numpy(), rtol=1e-5, atol=1e-7)
        for b, c in zip(fast_t.model.buffers(), slow_t.model.buffers()):
            np.testing.assert_allclose(b.numpy(), c.numpy(), rtol=1e-5, atol=1e-7)
    assert sum(len(v) for v in fast._cache.values()) == 2


# ---- refusals --------------------------------------------------------------------------------------


def _simple() -> tuple[nn.Module, Any, Any]:
    model = nn.Linear(4, 2)
    return model, ember.optim.SGD(model.parameters(), lr=0.1), nn.MSELoss()


def test_data_dependent_control_flow_is_refused_with_the_fallback() -> None:
    model, opt, crit = _simple()

    def step(x: Any, y: Any) -> Any:
        opt.zero_grad()
        loss = crit(model(x), y)
        if loss > 1.0:
            loss = loss * 2
        loss.backward()
        opt.step()
        return loss

    with pytest.raises(TraceError, match=r"data-dependent control flow(.|\n)*ember\.compile\(model\)"):
        ember.compile(step)(ember.randn(3, 4), ember.randn(3, 2))
    assert all(p.grad is None for p in model.parameters())  # the trace left no trace-time gradients


def test_item_inside_the_step_is_refused() -> None:
    model, opt, crit = _simple()

    def step(x: Any, y: Any) -> Any:
        opt.zero_grad()
        loss = crit(model(x), y)
        loss.backward()
        opt.step()
        return loss.item()

    with pytest.raises(TraceError, match=r"\.item\(\)"):
        ember.compile(step)(ember.randn(3, 4), ember.randn(3, 2))


def test_unsupported_optimizer_and_closure_are_refused() -> None:
    model, _, crit = _simple()
    opt = ember.optim.RMSprop(model.parameters(), lr=0.1)
    before = [p.detach().numpy().copy() for p in model.parameters()]
    with pytest.raises(CompileError, match=r"RMSprop(.|\n)*supported: SGD, Adam, AdamW(.|\n)*ember\.compile\(model\)"):
        ember.compile(_step_fn(model, opt, crit))(ember.randn(3, 4), ember.randn(3, 2))
    for p, b in zip(model.parameters(), before):
        np.testing.assert_array_equal(p.detach().numpy(), b)
    sgd = ember.optim.SGD(model.parameters(), lr=0.1)

    def step(x: Any, y: Any) -> Any:
        def closure() -> Any:
            return crit(model(x), y)

        loss = closure()
        loss.backward()
        sgd.step(closure)
        return loss

    with pytest.raises(CompileError, match=r"closure"):
        ember.compile(step)(ember.randn(3, 4), ember.randn(3, 2))
    assert type(sgd).step is not type(sgd).__dict__.get("_never") and "step" in type(sgd).__dict__
    assert type(sgd).__dict__["step"].__module__ == "ember.optim.sgd"  # the patch was undone


def test_inputs_that_require_grad_are_refused() -> None:
    model, opt, crit = _simple()
    with pytest.raises(CompileError, match=r"requires grad"):
        ember.compile(_step_fn(model, opt, crit))(ember.randn(3, 4, requires_grad=True), ember.randn(3, 2))


def test_backward_inside_a_traced_model_points_to_the_step_compiler() -> None:
    def f(x: Any) -> Any:
        y = (x * 2).sum()
        y.backward()
        return y

    with pytest.raises(TraceError, match=r"ember\.compile\(step\)"):
        ember.trace(f, ember.randn(3))
