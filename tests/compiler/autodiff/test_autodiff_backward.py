"""Graph autodiff (compiler/autodiff): the backward graph, run by the interpreter, gives the gradients
eager ember autograd and torch give; the save-vs-recompute rule saves expensive results only; the
calling convention (reads, saved values, gradient inputs) is what the runtime relies on."""

from __future__ import annotations

from typing import Any

import ember
import numpy as np
import pytest
import torch
from ember import nn
from ember.compiler.autodiff import differentiate, save_all
from ember.compiler.ir.graph import flatten_tree
from ember.compiler.ir.interpreter import interpret
from ember.compiler.ir.verifier import verify
from ember.runtime.errors import AutogradError
from ember.vision.models import lenet5


def _run(graph: Any, r: Any, inputs: list[Any], grads_out: list[np.ndarray]) -> tuple[list[Any], list[Any]]:
    """Forward then backward through the interpreter, wired as the runtime wires them."""
    out_tree, saved = interpret(r.forward, inputs)
    data = {}
    user = iter(inputs)
    for v in graph.inputs:
        data[id(v)] = next(user) if v.kind == "input" else graph.bindings[v.name]
    reads = [_array(data[id(graph.inputs[i])]) for i in r.reads_inputs]
    grads = interpret(r.backward, [*reads, *saved, *grads_out])
    return flatten_tree(out_tree), list(grads)


def _array(x: Any) -> np.ndarray:
    return x.numpy() if isinstance(x, ember.Tensor) else np.asarray(x)


def _eager_grads(model: Any, x: ember.Tensor, gy: np.ndarray) -> dict[str, np.ndarray]:
    model.zero_grad()
    model(x).backward(ember.from_numpy(gy))
    return {n: p.grad.numpy() for n, p in model.named_parameters()}


def _torch_grads(model: Any, ref: torch.nn.Module, x: ember.Tensor, gy: np.ndarray) -> dict[str, np.ndarray]:
    ref.load_state_dict({k: torch.from_numpy(np.array(v.numpy())) for k, v in model.state_dict().items()})
    ref(torch.from_numpy(x.numpy())).backward(torch.from_numpy(gy))
    return {n: p.grad.numpy() for n, p in ref.named_parameters()}


def _check_model(model: Any, ref: torch.nn.Module, x: ember.Tensor) -> Any:
    graph = ember.trace(model, x)
    r = differentiate(graph, graph.inputs_of_kind("parameter"))
    verify(r.forward)
    verify(r.backward)
    gy = np.random.default_rng(0).standard_normal(graph.flat_outputs[0].shape).astype(np.float32)
    outs, grads = _run(graph, r, [x], [gy])
    got = {v.name: g for v, g in zip(r.wrt, grads)}
    eager = _eager_grads(model, x, gy)
    theirs = _torch_grads(model, ref, x, gy)
    assert set(got) == set(eager) == set(theirs)
    for name in got:
        np.testing.assert_allclose(got[name], eager[name], rtol=1e-4, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(got[name], theirs[name], rtol=1e-4, atol=1e-5, err_msg=name)
    with ember.no_grad():
        np.testing.assert_allclose(outs[0], model(x).numpy(), rtol=1e-5, atol=1e-6)
    return r


def _torch_mlp() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))


def test_mlp_gradients_equal_eager_and_torch() -> None:
    ember.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 4))
    r = _check_model(model, _torch_mlp(), ember.randn(5, 6))
    # the first matmul's output is saved (relu is recomputed from it); nothing else is
    assert [n.producer.op.name for n in r.saved] == ["matmul"]
    assert {n.op.name for n in r.recomputed} >= {"add", "relu"}


def _torch_lenet() -> torch.nn.Module:
    t = torch.nn

    class Ref(t.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = t.Sequential(t.Conv2d(1, 6, 5, padding=2), t.ReLU(), t.MaxPool2d(2),
                                         t.Conv2d(6, 16, 5), t.ReLU(), t.MaxPool2d(2))
            self.classifier = t.Sequential(t.Linear(400, 120), t.ReLU(), t.Linear(120, 84), t.ReLU(),
                                           t.Linear(84, 10))

        def forward(self, x: Any) -> Any:
            return self.classifier(torch.flatten(self.features(x), 1))

    return Ref()


def test_lenet5_gradients_equal_eager_and_torch() -> None:
    ember.manual_seed(1)
    r = _check_model(lenet5(), _torch_lenet(), ember.randn(3, 1, 28, 28))
    kinds = {v.producer.op.name for v in r.saved}
    assert kinds <= {"conv", "max_pool", "matmul"}  # expensive results only; relu/bias are recomputed
    assert "max_unpool" in {n.op.name for n in r.backward.nodes}


class _ConvBnRelu(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.relu = nn.ReLU()

    def forward(self, x: Any) -> Any:
        return self.relu(self.bn(self.conv(x)))


def test_conv_bn_eval_relu_gradients_equal_eager_and_torch() -> None:
    ember.manual_seed(2)
    model = _ConvBnRelu()
    with ember.no_grad():
        model.bn.running_mean.copy_(ember.randn(4) * 0.1)
        model.bn.running_var.copy_(ember.rand(4) + 0.5)
        model.bn.weight.copy_(ember.randn(4))
    model.eval()
    t = torch.nn
    ref = t.Sequential()
    ref.add_module("conv", t.Conv2d(3, 4, 3, padding=1, bias=False))
    ref.add_module("bn", t.BatchNorm2d(4))
    ref.add_module("relu", t.ReLU())
    ref.eval()
    r = _check_model(model, ref, ember.randn(2, 3, 6, 6))
    assert [v.producer.op.name for v in r.saved] == ["conv"]


def _lstm_like(x: Any, h: Any, c: Any, w: Any, u: Any, b: Any) -> Any:
    """Three steps of an LSTM cell written with tensor ops."""
    for t in range(x.shape[1]):
        gates = x[:, t] @ w + h @ u + b
        i, f, g, o = gates.chunk(4, 1)
        c = f.sigmoid() * c + i.sigmoid() * g.tanh()
        h = o.sigmoid() * c.tanh()
    return h.sum(1) + c.mean(1)


def test_lstm_like_function_gradients_equal_eager_torch_and_finite_differences() -> None:
    rng = np.random.default_rng(3)
    shapes = [(2, 3, 4), (2, 5), (2, 5), (4, 20), (5, 20), (20,)]
    arrays = [rng.standard_normal(s) * 0.5 for s in shapes]
    xs = [ember.tensor(a, dtype=ember.float64) for a in arrays]
    graph = ember.trace(_lstm_like, *xs)
    r = differentiate(graph, graph.user_inputs)
    gy = rng.standard_normal(2)
    outs, grads = _run(graph, r, xs, [gy])
    leaves = [ember.tensor(a, dtype=ember.float64, requires_grad=True) for a in arrays]
    _lstm_like(*leaves).backward(ember.tensor(gy))
    tl = [torch.tensor(a, requires_grad=True) for a in arrays]
    _lstm_like(*tl).backward(torch.tensor(gy))
    for g, e, t in zip(grads, leaves, tl):
        np.testing.assert_allclose(g, e.grad.numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(g, t.grad.numpy(), rtol=1e-8, atol=1e-10)
    # float64 central differences on the weight u
    eps, k = 1e-6, 7
    plus, minus = [a.copy() for a in arrays], [a.copy() for a in arrays]
    plus[4].flat[k] += eps
    minus[4].flat[k] -= eps
    f = lambda arrs: float(interpret(graph, arrs) @ gy)  # noqa: E731
    np.testing.assert_allclose(grads[4].flat[k], (f(plus) - f(minus)) / (2 * eps), rtol=1e-6)


def test_save_all_rule_saves_what_the_default_rule_recomputes() -> None:
    model = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 2))
    x = ember.randn(4, 3)
    graph = ember.trace(model, x)
    wrt = graph.inputs_of_kind("parameter")
    lazy = differentiate(graph, wrt)
    eager = differentiate(graph, wrt, rule=save_all)
    assert not eager.recomputed and lazy.recomputed
    assert len(eager.saved) > len(lazy.saved)
    gy = [np.ones((4, 2), np.float32)]
    _, a = _run(graph, lazy, [x], gy)
    _, b = _run(graph, eager, [x], gy)
    for ga, gb in zip(a, b):
        np.testing.assert_allclose(ga, gb, rtol=1e-6)


def test_input_gradient_and_unreached_inputs_get_zeros() -> None:
    w = ember.randn(3, 3)
    graph = ember.trace(lambda x, y, z: (x @ w).relu() + y * 2, ember.randn(2, 3), ember.randn(2, 3),
                        ember.randn(2, 3))
    r = differentiate(graph, graph.user_inputs)
    assert [v.name for v in r.backward.inputs if v.name.startswith("grad_out")] == ["grad_out0"]
    gy = np.random.default_rng(4).standard_normal((2, 3)).astype(np.float32)
    xs = [ember.randn(2, 3) for _ in range(3)]
    _, (gx, gy_, gz) = _run(graph, r, xs, [gy])
    np.testing.assert_allclose(gy_, 2 * gy)
    np.testing.assert_array_equal(gz, np.zeros((2, 3), np.float32))
    mask = (xs[0].numpy() @ w.numpy()) > 0
    np.testing.assert_allclose(gx, (gy * mask) @ w.numpy().T, rtol=1e-5, atol=1e-6)


def test_gradients_of_several_outputs_add_up() -> None:
    graph = ember.trace(lambda x: (x.exp(), x * 3), ember.randn(4))
    r = differentiate(graph, graph.user_inputs)
    x = ember.randn(4)
    ga, gb = np.ones(4, np.float32), np.full(4, 2.0, np.float32)
    _, (gx,) = _run(graph, r, [x], [ga, gb])
    np.testing.assert_allclose(gx, np.exp(x.numpy()) + 6, rtol=1e-6)


def test_wrt_must_be_a_graph_input() -> None:
    graph = ember.trace(lambda x: x.exp(), ember.randn(4))
    with pytest.raises(AutogradError, match="not an input"):
        differentiate(graph, [graph.nodes[0].outputs[0]])


def test_resnet18_train_mode_saves_conv_and_reduction_results_only() -> None:
    from ember.vision.models import resnet18

    model = resnet18(num_classes=10).train()
    graph = ember.trace(model, ember.randn(4, 3, 32, 32), buffer_updates=True)
    wrt = graph.inputs_of_kind("parameter")
    lazy = differentiate(graph, wrt, grad_leaves=1)
    eager = differentiate(graph, wrt, rule=save_all, grad_leaves=1)
    nbytes = lambda r: sum(v.type.numel * v.type.dtype.itemsize for v in r.saved)  # noqa: E731
    assert {v.producer.op.name for v in lazy.saved} == {"conv", "sum", "max_pool", "avg_pool"}
    assert nbytes(lazy) < 0.5 * nbytes(eager)
    # the running-statistic updates are outputs without a gradient input
    assert [v.name for v in lazy.backward.inputs if v.name.startswith("grad_out")] == ["grad_out0"]
    assert len(lazy.backward.outputs) == len(wrt)
