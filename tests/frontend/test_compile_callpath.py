"""The per-call path of ``CompiledModule`` (inference): weights stay live through every way they can
change, outputs are wrapped right and never alias, and the runner's staged outputs survive ``out=``."""

from __future__ import annotations

import ember
import ember.nn as nn
import numpy as np
import pytest
import torch
from ember.runtime.cpu import CpuExecutable
from ember.runtime.errors import ArgumentError


@pytest.fixture(scope="module")
def _shared_cache(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("ember-cache-callpath"))


@pytest.fixture(autouse=True)
def _ember_cache_dir(_shared_cache: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Overrides the suite's per-test cache folder: these tests compile the same shapes (weights are
    live, not part of the key) and patch nothing, so one cold compile serves the whole file."""
    monkeypatch.setenv("EMBER_CACHE_DIR", _shared_cache)
    return _shared_cache


def _model() -> nn.Module:
    ember.manual_seed(1)
    return nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3)).eval()


def _torch_out(model: nn.Module, x: ember.Tensor) -> np.ndarray:
    twin = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 3))
    twin.load_state_dict({k: torch.from_numpy(np.array(v.detach().numpy())) for k, v in model.state_dict().items()})
    with torch.no_grad():
        return twin(torch.from_numpy(x.numpy())).numpy()


def _check(fast: ember.compile, model: nn.Module, x: ember.Tensor) -> np.ndarray:
    with ember.no_grad():
        got = fast(x).numpy()
    np.testing.assert_allclose(got, _torch_out(model, x), rtol=1e-5, atol=1e-6)
    return got


def _in_place(model: nn.Module) -> None:
    with ember.no_grad():
        model[0].weight.mul_(-1.5)


def _data_assign(model: nn.Module) -> None:
    model[2].weight.data = ember.randn(3, 6)


def _new_parameter(model: nn.Module) -> None:
    model[2].bias = nn.Parameter(ember.randn(3))


def _state_dict_load(model: nn.Module) -> None:
    model.load_state_dict({k: v * 0.5 for k, v in model.state_dict().items()})


@pytest.mark.parametrize("change", [_in_place, _data_assign, _new_parameter, _state_dict_load])
def test_weight_changes_after_compiling_are_seen(change):
    model, x = _model(), ember.randn(2, 4)
    fast = ember.compile(model)
    before = _check(fast, model, x)
    change(model)
    after = _check(fast, model, x)
    assert not np.allclose(before, after)
    assert len(fast._cache) == 1  # same signature, no recompile


def test_non_contiguous_weight_is_copied_and_its_in_place_updates_are_seen():
    model, x = _model(), ember.randn(2, 4)
    model[0].weight = nn.Parameter(ember.randn(4, 6).t())  # a transposed view: not C-contiguous
    assert not model[0].weight.detach().numpy().flags.c_contiguous
    fast = ember.compile(model)
    before = _check(fast, model, x)
    _in_place(model)  # the compiled call holds a contiguous copy: the version counter says it is stale
    after = _check(fast, model, x)
    assert not np.allclose(before, after)


def test_outputs_are_fresh_tensors_every_call():
    model, x = _model(), ember.randn(2, 4)
    fast = ember.compile(model)
    with ember.no_grad():
        a = fast(x)
        b = fast(x)
    assert not np.shares_memory(a.numpy(), b.numpy())
    a.numpy()[...] = 0.0
    np.testing.assert_allclose(b.numpy(), _torch_out(model, x), rtol=1e-5, atol=1e-6)
    assert a.dtype == ember.float32 and tuple(a.shape) == (2, 3) and not a.requires_grad


def test_tree_outputs_and_non_contiguous_input():
    def f(x, y):
        return {"sum": x + y, "pair": (x * y, (x - y).relu())}

    fast = ember.compile(f)
    x = ember.randn(5, 3).t()  # non-contiguous input
    y = ember.randn(3, 5)
    with ember.no_grad():
        got = fast(x, y)
    tx, ty = torch.from_numpy(np.array(x.numpy())), torch.from_numpy(y.numpy())
    np.testing.assert_allclose(got["sum"].numpy(), (tx + ty).numpy(), rtol=1e-6)
    np.testing.assert_allclose(got["pair"][0].numpy(), (tx * ty).numpy(), rtol=1e-6)
    np.testing.assert_allclose(got["pair"][1].numpy(), (tx - ty).relu().numpy(), rtol=1e-6)


def test_grad_mode_still_takes_the_training_path():
    model, x = _model(), ember.randn(2, 4)
    fast = ember.compile(model)
    out = fast(x)  # grad mode on, parameters require grad
    assert out.requires_grad and out.grad_fn is not None
    out.sum().backward()
    twin = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 3))
    twin.load_state_dict({k: torch.from_numpy(np.array(v.detach().numpy())) for k, v in model.state_dict().items()})
    twin(torch.from_numpy(x.numpy())).sum().backward()
    np.testing.assert_allclose(model[0].weight.grad.numpy(), twin[0].weight.grad.numpy(), rtol=1e-5, atol=1e-6)


def test_runner_out_then_staged_calls():
    model, x = _model(), ember.randn(2, 4)
    fast = ember.compile(model)
    with ember.no_grad():
        fast(x)
    runner: CpuExecutable = next(iter(fast._cache.values())).runner
    want = _torch_out(model, x)
    mine = np.full((2, 3), np.nan, np.float32)
    (res,) = runner(x.numpy(), out=[mine])
    assert res is mine
    np.testing.assert_allclose(mine, want, rtol=1e-5, atol=1e-6)
    (again,) = runner.run([x.numpy()])  # back to the staging buffer, not into ``mine``
    mine[...] = 7.0
    np.testing.assert_allclose(again, want, rtol=1e-5, atol=1e-6)
    with pytest.raises(ArgumentError, match="expected 1 inputs"):
        runner.run([])


def test_a_new_default_dtype_compiles_again() -> None:
    """A Python float traces to the default dtype, so switching it must not reuse the old executable."""
    fn = ember.compile(lambda x: x * 0.5 + 1)
    x = ember.arange(4)
    assert fn(x).dtype is ember.float32
    old = ember.get_default_dtype()
    try:
        ember.set_default_dtype(ember.float64)
        out = fn(x)
        assert out.dtype is ember.float64
        np.testing.assert_array_equal(out.numpy(), np.arange(4) * 0.5 + 1)
    finally:
        ember.set_default_dtype(old)
