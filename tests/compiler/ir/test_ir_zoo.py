"""Every model of the vision zoo (ember.vision.models): interpret(trace(model)) equals eager output within
1e-5, and its graph round-trips through the text form. Models are discovered from the names SEED_API.md
lists, so a model added to the zoo is tested here without an edit."""

from __future__ import annotations

import importlib

import ember
import numpy as np
import pytest
from ember.compiler.ir import interpret, parse, print_graph, structurally_equal, verify

SEED_NAMES = ["lenet5", "alexnet", "vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn", "vgg16_bn",
              "vgg19_bn", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152"]
FAST = {"lenet5", "resnet18"}  # AlexNet and VGG build slowly (large classifiers); deep ResNets run slowly
# smallest inputs first: the first size a model accepts in eager mode is the one traced
SIZES = [(1, 1, 28, 28), (1, 1, 32, 32), (1, 3, 32, 32), (1, 3, 64, 64), (1, 3, 224, 224)]


def _zoo_names() -> list[str]:
    try:
        models = importlib.import_module("ember.vision.models")
    except ImportError:
        return []
    return [n for n in SEED_NAMES if callable(getattr(models, n, None))]


def _params():
    return [pytest.param(n, marks=() if n in FAST else pytest.mark.slow) for n in _zoo_names()]


def _eager_with_smallest_input(model):
    for size in SIZES:
        ember.manual_seed(1)
        x = ember.randn(*size)
        try:
            with ember.no_grad():
                return x, model(x)
        except (ember.ShapeError, ember.DimError, ValueError):
            continue
    raise AssertionError(f"{type(model).__name__} accepts none of the input sizes {SIZES}")


@pytest.mark.parametrize("name", _params())
def test_zoo_model_interpreter_matches_eager_and_round_trips(name):
    from ember.vision import models

    ember.manual_seed(0)
    model = getattr(models, name)()
    model.eval()
    x, want = _eager_with_smallest_input(model)
    g = verify(ember.trace(model, x))
    got = interpret(g, [x])
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-5, atol=1e-5)
    g2 = parse(print_graph(g), constants=g.constant_data)
    assert structurally_equal(g2, g)
    verify(g2)


def test_quickstart_example_model_and_loss():
    """examples/quickstart.py builds its model inside main(): the same architecture and loss, traced
    together as one graph with two inputs."""
    nn = ember.nn
    ember.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Linear(16, 1))
    loss_fn = nn.MSELoss()

    def step(xb, yb):
        return loss_fn(model(xb), yb)

    xb, yb = ember.randn(64, 3), ember.randn(64, 1)
    g = verify(ember.trace(step, xb, yb))
    names = [v.name for v in g.inputs if v.kind == "parameter"]
    assert names == ["Sequential.0.weight", "Sequential.0.bias", "Sequential.2.weight", "Sequential.2.bias"]
    assert {n.scope for n in g.nodes} >= {"Sequential.0", "Sequential.1", "Sequential.2", "MSELoss"}
    with ember.no_grad():
        want = step(xb, yb).item()
    np.testing.assert_allclose(interpret(g, [xb, yb]), want, rtol=1e-5)
    assert structurally_equal(parse(print_graph(g), constants=g.constant_data), g)


def test_resnet18_scopes_parameters_and_locations():
    from ember.vision import models

    ember.manual_seed(0)
    model = models.resnet18().eval()
    g = ember.trace(model, ember.randn(1, 3, 32, 32))
    by_scope = {}
    for n in g.nodes:
        by_scope.setdefault(n.scope, []).append(n.op.name)
    assert by_scope["layer1.0.conv1"] == ["conv"]
    assert by_scope["layer2.0.downsample.0"] == ["conv"]
    assert by_scope["layer4.1.bn2"] == ["batch_norm"]
    params = {v.name for v in g.inputs if v.kind == "parameter"}
    buffers = {v.name for v in g.inputs if v.kind == "buffer"}
    assert params == {k for k, _ in model.named_parameters()}
    assert {"layer3.1.bn1.running_mean", "bn1.running_var"} <= buffers
    # zoo code is model code: nodes point into resnet.py, where each layer is called
    assert all(n.loc is not None and n.loc[0].endswith("resnet.py") for n in g.nodes)
