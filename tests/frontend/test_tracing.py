"""ember.trace: graphs from functions and modules, scopes and locations, and the TraceErrors for what a
static graph cannot capture (each names the user's file and line)."""

from __future__ import annotations

import ember
import numpy as np
import pytest
from ember._state import STATE
from ember.compiler.ir import interpret, parse, structurally_equal, verify

HERE = __file__


def _line_of(fn, marker: str) -> int:
    """The line in this file holding ``marker`` (within fn's source), so tests do not hard-code numbers."""
    import inspect

    lines, start = inspect.getsourcelines(fn)
    for i, text in enumerate(lines):
        if marker in text:
            return start + i
    raise AssertionError(f"marker {marker!r} not found")


def _ops(g) -> list[str]:
    return [n.op.name for n in g.nodes]


# ---- graphs -------------------------------------------------------------------------------------


def test_function_graph_matches_eager_and_records_locations():
    def f(x, y):
        z = (x * 2 + y).relu()  # mark-z
        return z.sum(1) / 3.0

    x, y = ember.randn(2, 3), ember.randn(3)
    g = ember.trace(f, x, y)
    verify(g)
    assert [v.name for v in g.inputs] == ["x", "y"]
    assert [v.kind for v in g.inputs] == ["input", "input"]
    assert _ops(g) == ["mul", "add", "relu", "sum", "div"]
    assert g.nodes[0].loc == (HERE, _line_of(f, "mark-z"))
    assert g.nodes[1].inputs[1] is g.inputs[1]
    assert g.nodes[0].inputs[1] == 2 and isinstance(g.nodes[0].inputs[1], int)
    np.testing.assert_allclose(interpret(g, [x, y]), f(x, y).numpy(), rtol=1e-6)


def test_tuple_list_and_dict_outputs_and_nested_inputs():
    def f(pair, d):
        a, b = pair
        return {"sum": a + b, "parts": [a * d["k"], (b.neg(),)]}

    a, b, k = ember.randn(2, 2), ember.randn(2, 2), ember.randn(2, 2)
    g = ember.trace(f, (a, b), {"k": k})
    assert [v.name for v in g.inputs] == ["pair.0", "pair.1", "d.k"]
    out = interpret(g, [a, b, k])
    want = f((a, b), {"k": k})
    assert set(out) == {"sum", "parts"}
    assert isinstance(out["parts"], list) and isinstance(out["parts"][1], tuple)
    np.testing.assert_allclose(out["sum"], want["sum"].numpy())
    np.testing.assert_allclose(out["parts"][0], want["parts"][0].numpy())
    np.testing.assert_allclose(out["parts"][1][0], want["parts"][1][0].numpy())
    assert structurally_equal(parse(str(g)), g)


def test_python_control_flow_is_unrolled_and_composites_are_decomposed():
    def f(x, n):
        for _ in range(n):
            x = x * 2
        if x.shape[0] > 1:  # static: shapes are known while tracing
            x = x.mean()
        return x

    x = ember.randn(3, 2)
    g = ember.trace(f, x, 3)
    assert _ops(g) == ["mul", "mul", "mul", "sum", "div"]
    assert [v.name for v in g.inputs] == ["x"]
    np.testing.assert_allclose(interpret(g, [x]), f(x, 3).numpy(), rtol=1e-6)


def test_captured_tensor_becomes_named_constant_and_trace_records_no_tape():
    w = ember.randn(3, requires_grad=True)
    x = ember.randn(2, 3, requires_grad=True)
    g = ember.trace(lambda x: x * w, x)
    assert [c.name for c in g.constants] == ["const0"]
    np.testing.assert_array_equal(g.constant_data["const0"], w.detach().numpy())
    assert STATE.tracer is None and STATE.grad_enabled
    np.testing.assert_allclose(interpret(g, [x.detach()]), (x * w).detach().numpy())


def test_inplace_on_tensors_made_inside_the_trace_is_rebound():
    def f(x):
        y = x * 1.0
        y.add_(1)
        y.mul_(2)
        buf = ember.zeros(2, 3)
        buf[0] = x[0]
        return y, buf

    x = ember.randn(2, 3)
    g = ember.trace(f, x)
    verify(g)
    got = interpret(g, [x])
    want = f(x)
    np.testing.assert_allclose(got[0], want[0].numpy(), rtol=1e-6)
    np.testing.assert_allclose(got[1], want[1].numpy())


def test_module_parameters_buffers_and_scopes():
    nn = ember.nn

    class Inner(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(ember.randn(3, 3))
            self.register_buffer("shift", ember.randn(3))

        def forward(self, x):
            return x @ self.weight + self.shift  # mark-inner

    class Outer(nn.Module):
        def __init__(self):
            super().__init__()
            self.block = nn.Module()
            self.block.inner = Inner()
            self.scale = nn.Parameter(ember.ones(1))

        def forward(self, x):
            return self.block.inner(x) * self.scale

    m = Outer()
    x = ember.randn(2, 3)
    g = ember.trace(m, x)
    verify(g)
    kinds = {v.name: v.kind for v in g.inputs}
    assert kinds == {"x": "input", "block.inner.weight": "parameter", "block.inner.shift": "buffer",
                     "scale": "parameter"}
    assert [n.scope for n in g.nodes] == ["block.inner", "block.inner", ""]
    assert g.nodes[0].loc == (HERE, _line_of(Inner.forward, "mark-inner"))
    with ember.no_grad():
        want = m(x).numpy()
    np.testing.assert_allclose(interpret(g, [x]), want, rtol=1e-6)
    # params= replaces the bound weights
    zero = {"block.inner.weight": np.zeros((3, 3), np.float32), "block.inner.shift": np.zeros(3, np.float32),
            "scale": np.ones(1, np.float32)}
    np.testing.assert_array_equal(interpret(g, [x], zero), np.zeros((2, 3), np.float32))


def test_traced_tensor_metadata_works():
    seen = {}

    def f(x):
        seen.update(shape=tuple(x.shape), ndim=x.ndim, numel=x.numel(), dtype=x.dtype, size1=x.size(1))
        return x.reshape(-1).view(3, 2).contiguous()

    g = ember.trace(f, ember.randn(2, 3))
    assert seen == {"shape": (2, 3), "ndim": 2, "numel": 6, "dtype": ember.float32, "size1": 3}
    assert g.nodes[-1].outputs[0].type.shape == (3, 2)


# ---- TraceErrors: one per untraceable pattern, each naming the user's file:line ------------------


def _assert_trace_error(fn, marker, *inputs, words=(), src=None):
    with pytest.raises(ember.TraceError) as info:
        ember.trace(fn, *inputs)
    msg = str(info.value)
    assert f"{HERE}:{_line_of(src or fn, marker)}" in msg, msg
    assert "fix:" in msg
    for w in words:
        assert w in msg, msg
    assert STATE.tracer is None and STATE.grad_enabled
    return msg


def test_data_dependent_if_raises():
    def f(x):
        if x.sum() > 0:  # mark
            return x
        return -x

    _assert_trace_error(f, "# mark", ember.randn(3), words=("data-dependent control flow", "ember.where"))


def test_item_raises():
    def f(x):
        return x * x.max().item()  # mark

    _assert_trace_error(f, "# mark", ember.randn(3), words=(".item()",))


def test_numpy_raises():
    def f(x):
        return ember.from_numpy(x.numpy() * 2)  # mark

    _assert_trace_error(f, "# mark", ember.randn(3), words=(".numpy()",))


def test_numpy_after_detach_raises():
    def f(x):
        a = x.detach().numpy()  # mark
        return x + float(a.sum())

    _assert_trace_error(f, "# mark", ember.randn(3))


def test_tolist_raises():
    def f(x):
        return x + len(x.tolist())  # mark

    _assert_trace_error(f, "# mark", ember.randn(3), words=(".tolist()",))


def test_float_and_index_of_traced_value_raise():
    def f(x):
        return x * float(x.sum())  # mark

    def g(x):
        return x.reshape(x.sum().long(), -1)  # mark

    _assert_trace_error(f, "# mark", ember.randn(3))
    _assert_trace_error(g, "# mark", ember.ones(4))


def test_inplace_on_input_raises():
    def f(x):
        x.add_(1)  # mark
        return x

    x = ember.zeros(3)
    _assert_trace_error(f, "# mark", x, words=("graph input",))
    np.testing.assert_array_equal(x.numpy(), np.zeros(3, np.float32))


def test_setitem_on_view_of_input_raises():
    def f(x):
        v = x[0]
        v[1] = 5.0  # mark
        return x

    _assert_trace_error(f, "# mark", ember.zeros(2, 3), words=("graph input",))


def test_inplace_on_captured_tensor_raises():
    captured = ember.zeros(3)

    def f(x):
        captured.add_(x)  # mark
        return captured * 1

    _assert_trace_error(f, "# mark", ember.ones(3), words=("captured",))
    np.testing.assert_array_equal(captured.numpy(), np.zeros(3, np.float32))


def test_inplace_on_parameter_raises():
    nn = ember.nn

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(ember.ones(3))

        def forward(self, x):
            self.w.data.mul_(2)  # mark
            return x * self.w

    _assert_trace_error(M(), "# mark", ember.ones(3), words=("parameter 'w'",), src=M.forward)


def test_stale_view_after_inplace_raises():
    def f(x):
        y = x * 1
        v = y[0]
        y.mul_(2)
        return v + 1  # mark

    _assert_trace_error(f, "# mark", ember.ones(2, 2), words=("view",))


def test_traced_tensor_escaping_the_trace_is_refused():
    kept = []

    def f(x):
        kept.append(x * 2)
        return x

    ember.trace(f, ember.ones(2))
    with pytest.raises(ember.TraceError):
        kept[0].numpy()


def test_returning_a_non_tensor_object_raises():
    def f(x):
        return x, object()  # mark

    with pytest.raises(ember.TraceError, match="returned a object"):
        ember.trace(f, ember.ones(2))


def test_training_mode_batch_norm_update_is_refused_with_the_eval_hint():
    nn = ember.nn

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.bn = nn.BatchNorm2d(3)

        def forward(self, x):
            return self.bn(x)  # mark

    m = M()
    before = m.bn.running_mean.numpy().copy()
    msg = _assert_trace_error(m, "# mark", ember.randn(2, 3, 4, 4), words=("model.eval()", "buffer"),
                              src=M.forward)
    assert "bn.running_mean" in msg or "bn.num_batches_tracked" in msg
    np.testing.assert_array_equal(m.bn.running_mean.numpy(), before)
    m.eval()
    g = ember.trace(m, ember.randn(2, 3, 4, 4))
    assert [n.op.name for n in g.nodes] == ["batch_norm"]


def test_assigning_data_is_refused_and_parameters_are_restored():
    nn = ember.nn

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(ember.ones(3))

        def forward(self, x):
            self.w.data = x * 2
            return x * self.w

    m = M()
    with pytest.raises(ember.TraceError, match="parameter 'w'"):
        ember.trace(m, ember.ones(3))
    np.testing.assert_array_equal(m.w.detach().numpy(), np.ones(3, np.float32))

    def f(x):
        y = x * 1
        y.data = x  # mark
        return y

    _assert_trace_error(f, "# mark", ember.ones(3), words=(".data",))


def test_input_names_give_way_to_parameter_names():
    nn = ember.nn

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(ember.ones(2))

        def forward(self, weight, const0):
            return weight * self.weight + const0 * ember.tensor([1.0, 2.0])

    g = ember.trace(M(), ember.ones(2), ember.ones(2))
    verify(g)
    assert [(v.name, v.kind) for v in g.inputs] == [("weight_1", "input"), ("const0", "input"),
                                                    ("weight", "parameter")]
    assert [c.name for c in g.constants] == ["const0_1"]
    assert structurally_equal(parse(str(g)), g)


def test_random_draws_inside_the_trace_are_refused():
    def f(x):  # mark
        return x + ember.randn(3)

    _assert_trace_error(f, "# mark", ember.ones(3), words=("random numbers",))
    drop = ember.nn.Dropout(0.5)  # train-mode dropout is no draw: it traces to a seed graph input
    assert [v.name for v in ember.trace(drop, ember.ones(4)).user_inputs] == ["input", "rng_seed"]
    g = ember.trace(drop.eval(), ember.ones(4))
    assert len(g.nodes) == 0 and g.outputs is g.inputs[0]


def test_inplace_on_a_tensor_sharing_outside_memory_raises():
    outside = np.zeros((2, 3), np.float32)

    def f(x):
        t = ember.from_numpy(outside[0])
        t.add_(x)  # mark
        return t

    _assert_trace_error(f, "# mark", ember.ones(3), words=("captured",))
    np.testing.assert_array_equal(outside, np.zeros((2, 3), np.float32))


def test_alias_of_a_tensor_modified_in_the_trace_raises():
    def f(x):
        buf = ember.zeros(3)
        alias = buf.detach()
        buf.add_(x)
        return alias * 2  # mark

    _assert_trace_error(f, "# mark", ember.ones(3), words=("shares memory",))
