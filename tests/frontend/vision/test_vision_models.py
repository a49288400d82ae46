"""vision.models against reference architectures written here in plain torch.nn with torchvision's
module names (torchvision itself cannot be installed next to this torch build): a torch-made ResNet-18
state dict loads into ember's resnet18 with strict=True and gives the same outputs."""

from __future__ import annotations

import ember
import numpy as np
import pytest
import torch
from ember.vision import models
from torch import nn as tnn


class _TorchBlock(tnn.Module):
    def __init__(self, cin: int, cout: int, stride: int, bottleneck: bool) -> None:
        super().__init__()
        width = cout // 4 if bottleneck else cout
        self.conv1 = tnn.Conv2d(
            cin,
            width,
            1 if bottleneck else 3,
            1 if bottleneck else stride,
            0 if bottleneck else 1,
            bias=False,
        )
        self.bn1 = tnn.BatchNorm2d(width)
        self.conv2 = tnn.Conv2d(
            width, width if bottleneck else cout, 3, stride if bottleneck else 1, 1, bias=False
        )
        self.bn2 = tnn.BatchNorm2d(width if bottleneck else cout)
        if bottleneck:
            self.conv3 = tnn.Conv2d(width, cout, 1, bias=False)
            self.bn3 = tnn.BatchNorm2d(cout)
        self.relu = tnn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = tnn.Sequential(
                tnn.Conv2d(cin, cout, 1, stride, bias=False), tnn.BatchNorm2d(cout)
            )
        self.bottleneck = bottleneck

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.bottleneck:
            out = self.bn3(self.conv3(self.relu(out)))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class _TorchResNet(tnn.Module):
    def __init__(self, layers, bottleneck: bool, num_classes: int) -> None:
        super().__init__()
        self.conv1 = tnn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = tnn.BatchNorm2d(64)
        self.relu = tnn.ReLU(inplace=True)
        self.maxpool = tnn.MaxPool2d(3, 2, 1)
        expansion = 4 if bottleneck else 1
        cin = 64
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), layers)):
            blocks = []
            for j in range(n):
                blocks.append(
                    _TorchBlock(cin, planes * expansion, 2 if (i > 0 and j == 0) else 1, bottleneck)
                )
                cin = planes * expansion
            setattr(self, f"layer{i + 1}", tnn.Sequential(*blocks))
        self.avgpool = tnn.AdaptiveAvgPool2d((1, 1))
        self.fc = tnn.Linear(512 * expansion, num_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _to_ember(state):
    return {k: ember.tensor(v.detach().numpy()) for k, v in state.items()}


def _randomize_bn(model) -> None:
    """Non-trivial running statistics and affine parameters, so eval-mode BN really matters."""
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, tnn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)


def test_resnet18_torch_state_dict_loads_strictly_and_matches_outputs() -> None:
    torch.manual_seed(0)
    ref = _TorchResNet([2, 2, 2, 2], bottleneck=False, num_classes=10)
    _randomize_bn(ref)
    ref.eval()
    model = models.resnet18(num_classes=10)
    result = model.load_state_dict(_to_ember(ref.state_dict()), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert list(model.state_dict()) == list(ref.state_dict())
    model.eval()
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)
    with torch.no_grad():
        expected = ref(torch.from_numpy(x)).numpy()
    with ember.no_grad():
        got = model(ember.tensor(x)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "factory,layers,bottleneck",
    [
        (models.resnet34, [3, 4, 6, 3], False),
        (models.resnet50, [3, 4, 6, 3], True),
    ],
)
def test_deeper_resnets_have_torchvision_keys_and_shapes(factory, layers, bottleneck) -> None:
    with torch.device("meta"):
        ref = _TorchResNet(layers, bottleneck, 1000)
    expected = {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in factory().state_dict().items()}
    assert got == expected


def test_resnet_trains_one_step() -> None:
    model = models.resnet18(num_classes=3)
    opt = ember.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = ember.randn(2, 3, 16, 16), ember.tensor([0, 2])
    loss = ember.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    assert model.conv1.weight.grad is not None and model.fc.bias.grad is not None
    before = model.fc.weight.detach().clone()
    opt.step()
    assert not np.allclose(before.numpy(), model.fc.weight.detach().numpy())
    assert model.bn1.num_batches_tracked.item() == 1


def _torch_vgg_features(cfg, bn):
    layers, cin = [], 3
    for v in cfg:
        if v == "M":
            layers.append(tnn.MaxPool2d(2, 2))
        else:
            layers += (
                [tnn.Conv2d(cin, v, 3, padding=1)] + ([tnn.BatchNorm2d(v)] if bn else []) + [tnn.ReLU(True)]
            )
            cin = v
    return tnn.Sequential(*layers)


@pytest.mark.parametrize("cfg,bn", [("A", True), ("D", False)])
def test_vgg_features_keys_and_shapes(cfg, bn) -> None:
    from ember.vision.models.vgg import CFGS, make_layers

    with torch.device("meta"):
        ref = _torch_vgg_features(CFGS[cfg], bn)
    expected = {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in make_layers(CFGS[cfg], bn).state_dict().items()} == expected


@pytest.mark.slow
def test_vgg11_bn_full_model_keys_and_shapes() -> None:
    from ember.vision.models.vgg import CFGS

    with torch.device("meta"):
        ref = tnn.Module()
        ref.features = _torch_vgg_features(CFGS["A"], True)
        ref.avgpool = tnn.AdaptiveAvgPool2d((7, 7))
        ref.classifier = tnn.Sequential(
            tnn.Linear(25088, 4096),
            tnn.ReLU(True),
            tnn.Dropout(),
            tnn.Linear(4096, 4096),
            tnn.ReLU(True),
            tnn.Dropout(),
            tnn.Linear(4096, 1000),
        )
    expected = {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    model = models.vgg11_bn(init_weights=False)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == expected
    assert isinstance(model.avgpool, ember.nn.AdaptiveAvgPool2d)


@pytest.mark.slow
def test_alexnet_keys_shapes_and_output_shape() -> None:
    with torch.device("meta"):
        feats = tnn.Sequential(
            tnn.Conv2d(3, 64, 11, 4, 2),
            tnn.ReLU(True),
            tnn.MaxPool2d(3, 2),
            tnn.Conv2d(64, 192, 5, padding=2),
            tnn.ReLU(True),
            tnn.MaxPool2d(3, 2),
            tnn.Conv2d(192, 384, 3, padding=1),
            tnn.ReLU(True),
            tnn.Conv2d(384, 256, 3, padding=1),
            tnn.ReLU(True),
            tnn.Conv2d(256, 256, 3, padding=1),
            tnn.ReLU(True),
            tnn.MaxPool2d(3, 2),
        )
        cls = tnn.Sequential(
            tnn.Dropout(),
            tnn.Linear(9216, 4096),
            tnn.ReLU(True),
            tnn.Dropout(),
            tnn.Linear(4096, 4096),
            tnn.ReLU(True),
            tnn.Linear(4096, 1000),
        )
        expected = {f"features.{k}": tuple(v.shape) for k, v in feats.state_dict().items()}
        expected.update({f"classifier.{k}": tuple(v.shape) for k, v in cls.state_dict().items()})
    model = models.alexnet()
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == expected


def test_lenet5_matches_a_torch_lenet() -> None:
    ref = tnn.Sequential()
    ref.features = tnn.Sequential(
        tnn.Conv2d(1, 6, 5, padding=2),
        tnn.ReLU(),
        tnn.MaxPool2d(2),
        tnn.Conv2d(6, 16, 5),
        tnn.ReLU(),
        tnn.MaxPool2d(2),
    )
    ref.classifier = tnn.Sequential(
        tnn.Linear(400, 120), tnn.ReLU(), tnn.Linear(120, 84), tnn.ReLU(), tnn.Linear(84, 10)
    )
    model = models.lenet5()
    model.load_state_dict(_to_ember(ref.state_dict()), strict=True)
    x = np.random.default_rng(1).standard_normal((3, 1, 28, 28)).astype(np.float32)
    with torch.no_grad():
        expected = ref.classifier(torch.flatten(ref.features(torch.from_numpy(x)), 1)).numpy()
    np.testing.assert_allclose(model(ember.tensor(x)).detach().numpy(), expected, rtol=1e-5, atol=1e-5)


def test_pretrained_weights_are_refused() -> None:
    with pytest.raises(ValueError, match="does not download"):
        models.resnet18(weights="IMAGENET1K_V1")
    with pytest.raises(ValueError, match="does not download"):
        models.lenet5(pretrained=True)
