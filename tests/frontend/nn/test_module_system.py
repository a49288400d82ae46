"""The Module system against torch 2.13: registration, traversal, state_dict keys and loading (strict
errors), modes, conversion in place, hooks (forward, pre, backward), reprs, containers and the tracer's
module scope."""

from __future__ import annotations

import contextlib
import warnings
from collections import OrderedDict

import ember
import ember.nn as nn
import numpy as np
import pytest
import torch


def build(lib):
    """The same nested model in either library."""
    m = lib.nn

    class Block(m.Module):
        def __init__(self):
            super().__init__()
            self.fc = m.Linear(4, 4)
            self.bn = m.BatchNorm1d(4)
            self.register_buffer("scale", lib.ones(4))
            self.register_buffer("scratch", lib.zeros(2), persistent=False)

        def forward(self, x):
            return self.bn(self.fc(x)) * self.scale

    class Net(m.Module):
        def __init__(self):
            super().__init__()
            self.stem = m.Linear(3, 4)
            self.blocks = m.ModuleList([Block(), Block()])
            self.head = m.Sequential(OrderedDict([("act", m.ReLU()), ("out", m.Linear(4, 2, bias=False))]))
            self.alpha = m.Parameter(lib.ones(1))

        def forward(self, x):
            x = self.stem(x)
            for b in self.blocks:
                x = b(x)
            return self.head(x) * self.alpha

    return Net()


def test_names_match_pytorch() -> None:
    e, t = build(ember), build(torch)
    assert list(e.state_dict().keys()) == list(t.state_dict().keys())
    assert [n for n, _ in e.named_parameters()] == [n for n, _ in t.named_parameters()]
    assert [n for n, _ in e.named_buffers()] == [n for n, _ in t.named_buffers()]
    assert [n for n, _ in e.named_modules()] == [n for n, _ in t.named_modules()]
    assert [n for n, _ in e.named_children()] == [n for n, _ in t.named_children()]
    assert [n for n, _ in e.named_parameters(prefix="model", recurse=True)] == \
        [n for n, _ in t.named_parameters(prefix="model")]
    assert [n for n, _ in e.blocks[0].named_parameters(recurse=False)] == []
    assert len(list(e.parameters())) == len(list(t.parameters()))
    assert list(e.state_dict(prefix="p.").keys()) == list(t.state_dict(prefix="p.").keys())


def test_repr_matches_pytorch() -> None:
    assert repr(build(ember)) == repr(build(torch))
    for em, tm in zip(build(ember).modules(), build(torch).modules()):
        assert repr(em) == repr(tm)


def test_state_dict_round_trip_and_keep_vars() -> None:
    e, t = build(ember), build(torch)
    t.load_state_dict({k: torch.tensor(v.numpy()) for k, v in e.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    e.eval()
    t.eval()
    np.testing.assert_allclose(e(ember.tensor(x)).detach().numpy(), t(torch.tensor(x)).detach().numpy(),
                               rtol=1e-5, atol=1e-6)
    sd = e.state_dict()
    assert not sd["stem.weight"].requires_grad
    assert e.state_dict(keep_vars=True)["stem.weight"] is e.stem.weight
    e2 = build(ember)
    result = e2.load_state_dict(sd)
    assert repr(result) == "<All keys matched successfully>"
    assert result.missing_keys == [] and result.unexpected_keys == []
    np.testing.assert_array_equal(e2.stem.weight.detach().numpy(), e.stem.weight.detach().numpy())
    assert e2.blocks[1].bn.num_batches_tracked.dtype == ember.int64


def test_load_state_dict_strict_errors() -> None:
    e, t = build(ember), build(torch)
    sd = {k: v for k, v in e.state_dict().items() if k != "stem.bias"}
    sd["extra.weight"] = ember.zeros(1)
    sd["stem.weight.bad"] = ember.zeros(1)
    sd["head"] = ember.zeros(1)
    tsd = {k: torch.tensor(v.numpy()) for k, v in sd.items()}
    with pytest.raises(RuntimeError) as ee:
        e.load_state_dict(sd)
    with pytest.raises(RuntimeError) as te:
        t.load_state_dict(tsd)
    assert str(ee.value) == str(te.value)
    missing, unexpected = e.load_state_dict(sd, strict=False)
    assert (missing, unexpected) == tuple(t.load_state_dict(tsd, strict=False))
    bad = dict(e.state_dict())
    bad["stem.weight"] = ember.zeros(5, 3)
    with pytest.raises(ember.ShapeError, match=r"size mismatch for stem.weight: copying a param with"
                                               r" shape ember.Size\(\[5, 3\]\) from checkpoint, the shape in"
                                               r" current model is ember.Size\(\[4, 3\]\)"):
        e.load_state_dict(bad, strict=False)


def test_load_state_dict_copies_in_place() -> None:
    lin = nn.Linear(2, 2)
    w = lin.weight
    lin.load_state_dict({"weight": ember.ones(2, 2), "bias": ember.zeros(2)})
    assert lin.weight is w and w.tolist() == [[1.0, 1.0], [1.0, 1.0]]


def test_attribute_semantics() -> None:
    m = nn.Module()
    m.w = nn.Parameter(ember.ones(2))
    m.sub = nn.Linear(2, 2)
    m.register_buffer("b", ember.zeros(2))
    m.plain = 3
    assert set(m._parameters) == {"w"} and set(m._modules) == {"sub"} and set(m._buffers) == {"b"}
    assert "w" in dir(m) and "sub" in dir(m) and "b" in dir(m)
    m.b = ember.ones(2)  # assigning a tensor to a buffer name updates the buffer
    assert m._buffers["b"].tolist() == [1.0, 1.0]
    with pytest.raises(TypeError, match="cannot assign 'int' as parameter 'w'"):
        m.w = 3
    m.w = None
    assert m.w is None and "w" in m._parameters
    del m.sub
    assert "sub" not in m._modules
    with pytest.raises(AttributeError, match="'Module' object has no attribute 'sub'"):
        _ = m.sub
    with pytest.raises(KeyError, match="already exists"):
        m.register_buffer("plain", ember.zeros(1))
    with pytest.raises(AttributeError, match="before Module.__init__"):
        class Bad(nn.Module):
            def __init__(self):
                self.w = nn.Parameter(ember.ones(1))
        Bad()
    with pytest.raises(NotImplementedError, match=r'Module \[Module\] is missing the required "forward"'):
        nn.Module()(ember.ones(1))


def test_shared_parameters_are_deduplicated() -> None:
    a = nn.Linear(2, 2)
    net = nn.Sequential(a, nn.ReLU(), a)
    assert len(list(net.parameters())) == 2
    assert len(list(net.modules())) == 3
    assert [n for n, _ in net.named_parameters(remove_duplicate=False)] == ["0.weight", "0.bias", "2.weight",
                                                                             "2.bias"]


def test_train_eval_apply_zero_grad_requires_grad() -> None:
    net = build(ember)
    net.eval()
    assert all(not m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())
    seen = []
    net.apply(lambda m: seen.append(type(m).__name__))
    assert seen[-1] == "Net" and seen[0] == "Linear"
    net(ember.randn(4, 3)).sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    net.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not np.any(p.grad.numpy()) for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())
    net.requires_grad_(False)
    assert not any(p.requires_grad for p in net.parameters())


def test_conversion_is_in_place() -> None:
    net = build(ember)
    params = list(net.parameters())
    net.double()
    assert all(p.dtype == ember.float64 for p in net.parameters())
    assert [id(p) for p in net.parameters()] == [id(p) for p in params]
    assert net.blocks[0].bn.running_mean.dtype == ember.float64
    assert net.blocks[0].bn.num_batches_tracked.dtype == ember.int64
    out = net(ember.randn(4, 3).double())
    assert out.dtype == ember.float64
    net.to(ember.float32).cpu()
    assert all(p.dtype == ember.float32 for p in params)
    assert net.half().stem.weight.dtype == ember.float16
    net.float()
    with pytest.raises(TypeError, match="floating point"):
        net.to(ember.int64)


def test_forward_hooks_and_pre_hooks() -> None:
    lin = nn.Linear(2, 2)
    calls = []
    h1 = lin.register_forward_pre_hook(lambda m, args: (args[0] * 0,))
    h2 = lin.register_forward_hook(lambda m, args, out: calls.append(out.shape) or out + 1)
    out = lin(ember.ones(3, 2))
    np.testing.assert_allclose(out.detach().numpy(), np.broadcast_to(lin.bias.detach().numpy() + 1, (3, 2)),
                               rtol=1e-6)
    assert calls == [ember.Size([3, 2])]
    h1.remove()
    h2.remove()
    assert not lin._forward_hooks and not lin._forward_pre_hooks
    with lin.register_forward_hook(lambda m, args, kwargs, out: out * 0, with_kwargs=True):
        assert not np.any(lin(ember.ones(1, 2)).detach().numpy())
    assert np.any(lin(ember.ones(1, 2)).detach().numpy())


@pytest.mark.parametrize("input_grad", [True, False])
def test_full_backward_hook_matches_torch(input_grad) -> None:
    results = {}
    for lib in (ember, torch):
        lin = lib.nn.Linear(3, 2)
        lin.load_state_dict({"weight": lib.tensor([[1.0, 2.0, 3.0], [-1.0, 0.5, 0.0]]),
                             "bias": lib.tensor([0.5, -0.25])})
        seen = []

        def hook(module, grad_input, grad_output, seen=seen):
            seen.append(([None if g is None else g.detach().numpy().copy() for g in grad_input],
                         [g.detach().numpy().copy() for g in grad_output]))
            if grad_input[0] is not None:
                return (grad_input[0] * 2,)

        lin.register_full_backward_hook(hook)
        x = lib.tensor([[1.0, 0.0, -1.0], [0.5, 0.5, 0.5]], requires_grad=input_grad)
        with warnings.catch_warnings():  # torch warns when no input requires grad
            warnings.simplefilter("ignore")
            lin(x).pow(2).sum().backward()
        results[lib.__name__] = (seen, None if x.grad is None else x.grad.numpy())
    (e_seen, e_grad), (t_seen, t_grad) = results["ember"], results["torch"]
    assert len(e_seen) == len(t_seen) == 1
    for a, b in zip(e_seen[0][1], t_seen[0][1]):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    for a, b in zip(e_seen[0][0], t_seen[0][0]):
        assert (a is None) == (b is None)
        if a is not None:
            np.testing.assert_allclose(a, b, rtol=1e-6)
    if input_grad:
        np.testing.assert_allclose(e_grad, t_grad, rtol=1e-6)  # the hook's replacement took effect


def test_cannot_mix_backward_hook_kinds() -> None:
    lin = nn.Linear(2, 2)
    lin.register_full_backward_hook(lambda *a: None)
    with pytest.raises(RuntimeError, match="Cannot use both regular backward hooks and full backward hooks"):
        lin.register_backward_hook(lambda *a: None)


class _ScopeTracer:
    """A stand-in for the tracer: records the module scopes ``Module.__call__`` enters."""

    def __init__(self) -> None:
        self.entered: list[str] = []

    @contextlib.contextmanager
    def module_scope(self, module):
        self.entered.append(type(module).__name__)
        yield


def test_module_call_uses_module_scope(monkeypatch) -> None:
    from ember._state import STATE

    class Recorder(_ScopeTracer):
        def record(self, op, args, attrs):  # let ops run eagerly while "tracing"
            STATE.tracer = None
            try:
                from ember.dispatch import apply

                return apply(op, args, attrs)
            finally:
                STATE.tracer = self

    tracer = Recorder()
    net = nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.ReLU()))
    hooked = []
    net[1][0].register_forward_hook(lambda m, a, o: hooked.append(True))
    monkeypatch.setattr(STATE, "tracer", tracer)
    net(ember.ones(1, 2))
    monkeypatch.setattr(STATE, "tracer", None)
    assert tracer.entered == ["Sequential", "Linear", "Sequential", "ReLU"]
    assert hooked == [True]


# ---- containers -------------------------------------------------------------------------------------


def test_sequential_indexing_slicing_and_mutation() -> None:
    seq = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    tseq = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1))
    assert len(seq) == 3 and isinstance(seq[-1], nn.Linear)
    assert repr(seq[1:]) == repr(tseq[1:])
    assert isinstance(seq[1:], nn.Sequential)
    seq.append(nn.Sigmoid())
    tseq.append(torch.nn.Sigmoid())
    assert repr(seq) == repr(tseq)
    del seq[1]
    del tseq[1]
    assert repr(seq) == repr(tseq)
    seq.insert(0, nn.Tanh())
    tseq.insert(0, torch.nn.Tanh())
    assert repr(seq) == repr(tseq)
    named = nn.Sequential(OrderedDict([("a", nn.ReLU()), ("b", nn.Tanh())]))
    assert named.a is named[0] and list(named._modules) == ["a", "b"]
    with pytest.raises(IndexError, match="index 5 is out of range"):
        seq[5]


def test_module_list_and_dict() -> None:
    ml = nn.ModuleList([nn.ReLU()])
    ml.append(nn.Tanh())
    ml.extend([nn.Sigmoid(), nn.Sigmoid()])
    ml.insert(1, nn.Identity())
    tml = torch.nn.ModuleList([torch.nn.ReLU()])
    tml.append(torch.nn.Tanh())
    tml.extend([torch.nn.Sigmoid(), torch.nn.Sigmoid()])
    tml.insert(1, torch.nn.Identity())
    assert repr(ml) == repr(tml)
    assert [type(m).__name__ for m in ml] == [type(m).__name__ for m in tml]
    assert isinstance(ml[-1], nn.Sigmoid) and len(ml[1:3]) == 2
    md = nn.ModuleDict({"a": nn.Linear(1, 1), "b": nn.ReLU()})
    tmd = torch.nn.ModuleDict({"a": torch.nn.Linear(1, 1), "b": torch.nn.ReLU()})
    assert repr(md) == repr(tmd) and list(md.keys()) == ["a", "b"] and "a" in md
    md["c"] = nn.Tanh()
    assert len(md) == 3 and [n for n, _ in md.named_parameters()] == ["a.weight", "a.bias"]
    assert isinstance(md.pop("c"), nn.Tanh) and len(md) == 2


def test_parameter_list_and_dict() -> None:
    pl = nn.ParameterList([nn.Parameter(ember.ones(2, 3)), ember.zeros(4)])
    tpl = torch.nn.ParameterList([torch.nn.Parameter(torch.ones(2, 3)), torch.zeros(4)])
    assert repr(pl) == repr(tpl).replace("torch.", "ember.")
    assert isinstance(pl[1], nn.Parameter) and len(pl) == 2
    pl.append(ember.ones(1))
    assert [n for n, _ in pl.named_parameters()] == ["0", "1", "2"]
    pd = nn.ParameterDict({"w": nn.Parameter(ember.ones(2)), "b": ember.zeros(2, dtype=ember.float64)})
    tpd = torch.nn.ParameterDict({"w": torch.nn.Parameter(torch.ones(2)), "b": torch.zeros(2).double()})
    assert repr(pd) == repr(tpd).replace("torch.", "ember.")
    assert list(pd.keys()) == ["b", "w"] and isinstance(pd["b"], nn.Parameter)  # a dict is sorted
    od = nn.ParameterDict(OrderedDict([("w", ember.ones(1)), ("b", ember.ones(1))]))
    assert list(od.keys()) == ["w", "b"]


def test_parameter_semantics() -> None:
    t = ember.tensor([1.0, 2.0])
    p = nn.Parameter(t)
    assert p.requires_grad and p.is_leaf and isinstance(p, ember.Tensor)
    assert repr(p) == "Parameter containing:\ntensor([1., 2.], requires_grad=True)"
    assert not nn.Parameter(t, requires_grad=False).requires_grad
    assert repr(p) == repr(torch.nn.Parameter(torch.tensor([1.0, 2.0])))
    import copy

    q = copy.deepcopy(p)
    assert isinstance(q, nn.Parameter) and q is not p and q.tolist() == p.tolist()


DOCUMENTED = ["ember.nn", "ember.nn.parameter", "ember.nn.init", "ember.nn.modules.module",
              "ember.nn.modules.container", "ember.nn.modules.linear"]


@pytest.mark.parametrize("name", DOCUMENTED)
def test_docstring_examples_run(name) -> None:
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0 and result.failed == 0


def test_traced_nodes_carry_module_paths_and_forward_hooks() -> None:
    """Under ember.trace, Module.__call__ enters the tracer's module scope (qualified names) and forward
    hooks still run, so their ops are recorded in the hooked module's scope."""
    net = nn.Sequential(nn.Linear(4, 8), nn.Sequential(nn.ReLU(), nn.Linear(8, 2)))
    net[1][0].register_forward_hook(lambda mod, args, out: out * 2)
    graph = ember.trace(net, ember.randn(2, 4))
    scopes = [(node.op.name, node.scope) for node in graph.nodes]
    assert ("relu", "1.0") in scopes and ("mul", "1.0") in scopes
    assert {s for _, s in scopes} == {"0", "1.0", "1.1"}


def test_optimizer_keeps_working_after_conversion() -> None:
    """Conversion rewrites parameters in place, so an optimizer built before .double() still updates the
    module's weights."""
    net = nn.Linear(3, 2)
    opt = ember.optim.SGD(net.parameters(), lr=0.5)
    net.double()
    before = net.weight.detach().numpy().copy()
    net(ember.ones(4, 3, dtype=ember.float64)).sum().backward()
    opt.step()
    np.testing.assert_allclose(net.weight.detach().numpy(), before - 0.5 * 4.0, rtol=1e-12)
