"""ember.compile: compiled (LLVM) against eager and the interpreter, the signature cache, live weights."""

from __future__ import annotations

import ember
import ember.nn as nn
import numpy as np
import pytest
from ember.vision import models


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 3)).eval()


def test_compiled_mlp_matches_eager_and_interpreter() -> None:
    ember.manual_seed(0)
    model = _mlp()
    x = ember.randn(7, 20)
    with ember.no_grad():
        want = model(x).numpy()
        got = ember.compile(model)(x).numpy()
        interp = ember.compile(model, target="interpret")(x).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(interp, want, rtol=1e-5, atol=1e-6)


def test_new_shape_recompiles_and_weights_are_read_live() -> None:
    ember.manual_seed(1)
    model = _mlp()
    fast = ember.compile(model)
    with ember.no_grad():
        a = fast(ember.randn(2, 20))
        b = fast(ember.randn(5, 20))
        assert a.shape == (2, 3) and b.shape == (5, 3)
        assert len(fast._cache) == 2
        x = ember.randn(2, 20)
        model[0].weight.mul_(0.5)  # in place: the compiled code must see the new values
        np.testing.assert_allclose(fast(x).numpy(), model(x).numpy(), rtol=1e-4, atol=1e-5)
        model[0].weight = nn.Parameter(model[0].weight * 2.0)  # a new tensor: rebound too
        np.testing.assert_allclose(fast(x).numpy(), model(x).numpy(), rtol=1e-4, atol=1e-5)


def test_tuple_and_dict_outputs_keep_their_structure() -> None:
    fn = lambda x, y: {"s": (x * y).sum(dim=1), "pair": (x.exp(), y - 1.0)}  # noqa: E731
    x, y = ember.randn(3, 4), ember.randn(3, 4)
    out = ember.compile(fn)(x, y)
    np.testing.assert_allclose(out["s"].numpy(), (x * y).sum(dim=1).numpy(), rtol=1e-5)
    np.testing.assert_allclose(out["pair"][0].numpy(), x.exp().numpy(), rtol=1e-5)
    np.testing.assert_allclose(out["pair"][1].numpy(), (y - 1.0).numpy(), rtol=1e-6)


def test_unknown_target_is_a_compile_error() -> None:
    with pytest.raises(ember.CompileError, match="unknown target"):
        ember.compile(_mlp(), target="tpu")


@pytest.mark.slow
@pytest.mark.parametrize("name,shape", [("lenet5", (2, 1, 28, 28)), ("resnet18", (1, 3, 32, 32)),
                                        ("vgg11_bn", (1, 3, 32, 32))])
def test_zoo_model_compiled_matches_eager(name: str, shape: tuple[int, ...]) -> None:
    ember.manual_seed(0)
    model = getattr(models, name)().eval()
    x = ember.randn(*shape)
    fast = ember.compile(model)
    with ember.no_grad():
        np.testing.assert_allclose(fast(x).numpy(), model(x).numpy(), rtol=1e-4, atol=1e-4)
    plan = fast.compiled_for(x).result.plan
    assert plan.kernel_count < len(fast.graph(x).nodes)
