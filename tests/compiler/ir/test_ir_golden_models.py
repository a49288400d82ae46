"""Golden IR text for LeNet-5 and a ResNet BasicBlock (written here with ember.nn), their parser round
trip, and interpret(trace(model)) == eager. ``EMBER_ACCEPT=1`` rewrites the golden files."""

from __future__ import annotations

import os
from pathlib import Path

import ember
import numpy as np
import pytest
from ember.compiler.ir import interpret, parse, print_graph, structurally_equal, verify

nn = ember.nn
F = ember.nn.functional
GOLDEN = Path(__file__).parent / "golden"


class LeNet5(nn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = x.flatten(1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(planes))

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


def _randomize_bn(model: nn.Module) -> None:
    """Non-trivial running statistics, so eval-mode batch norm is really tested."""
    rng = np.random.default_rng(0)
    for name, buf in model.named_buffers():
        if name.endswith("running_mean"):
            buf.copy_(ember.tensor(rng.standard_normal(buf.shape).astype(np.float32)))
        elif name.endswith("running_var"):
            buf.copy_(ember.tensor(rng.uniform(0.5, 2.0, buf.shape).astype(np.float32)))


CASES = {
    "lenet5": (lambda: LeNet5(), (1, 1, 28, 28)),
    "basic_block": (lambda: BasicBlock(4, 8, stride=2), (2, 4, 8, 8)),
}


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / f"{name}.ir"
    if os.environ.get("EMBER_ACCEPT") == "1":
        path.write_text(text)
    assert path.exists(), f"no golden file {path}; run with EMBER_ACCEPT=1 to create it"
    assert text == path.read_text(), f"IR of {name} changed; if intended, rerun with EMBER_ACCEPT=1"


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_ir_round_trip_and_interpreter(name):
    factory, shape = CASES[name]
    ember.manual_seed(0)
    model = factory()
    _randomize_bn(model)
    model.eval()
    x = ember.randn(*shape)
    g = verify(ember.trace(model, x))
    check_golden(name, print_graph(g, locations="basename"))
    g2 = verify(parse(print_graph(g), constants=g.constant_data))
    assert structurally_equal(g2, g)
    with ember.no_grad():
        want = model(x).numpy()
    got = interpret(g, [x])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(interpret(g2, [x], g.bindings), want, rtol=1e-5, atol=1e-5)


def test_basic_block_scopes_and_parameter_names():
    ember.manual_seed(0)
    model = BasicBlock(4, 8, stride=2).eval()
    g = ember.trace(model, ember.randn(1, 4, 8, 8))
    params = [v.name for v in g.inputs if v.kind == "parameter"]
    buffers = [v.name for v in g.inputs if v.kind == "buffer"]
    assert "conv1.weight" in params and "downsample.0.weight" in params and "downsample.1.weight" in params
    assert "bn1.running_mean" in buffers and "downsample.1.running_var" in buffers
    scopes = {n.scope for n in g.nodes}
    assert {"conv1", "bn1", "relu", "downsample.0", "downsample.1"} <= scopes
    assert all(n.loc is not None and n.loc[0] == __file__ for n in g.nodes)
