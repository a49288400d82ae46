"""Examples from the seed notes (shared/seeds/), run unchanged with ``import ember as torch``: each
snippet is executed once with torch and once with ember, and what it prints (modules() listings, reprs)
and computes (outputs, gradients, moving averages, with the weights copied through state_dict) must
agree. Only the library prefix of type names (``torch.Size`` / ``ember.Size``) may differ."""

# ruff: noqa: E501  (the notes' code is quoted verbatim, long lines included)

from __future__ import annotations

import ember
import numpy as np
import torch


def run_both(code: str) -> tuple[dict, dict, list[str], list[str]]:
    """Execute ``code`` (written for torch) as is and with ``import ember as torch``; return both
    namespaces and what each printed."""
    results = []
    for lib in ("torch", "ember"):
        src = code
        if lib == "ember":
            src = src.replace("import torch.nn as nn", "import ember.nn as nn")
            src = src.replace("import torch\n", "import ember as torch\n")
        printed: list[str] = []
        ns = {"print": lambda *a, _p=printed: _p.append(" ".join(str(x) for x in a)), "__name__": "notes"}
        exec(compile(src, f"<notes:{lib}>", "exec"), ns)
        results.append((ns, printed))
    (t_ns, t_out), (e_ns, e_out) = results
    return t_ns, e_ns, t_out, e_out


def same_listing(t_out: list[str], e_out: list[str]) -> None:
    assert [s.replace("torch.", "ember.") for s in t_out] == e_out


def copy_weights(e_model, t_model) -> None:
    t_model.load_state_dict({k: torch.tensor(v.numpy()) for k, v in e_model.state_dict().items()})


MODEL_WITH_FEATURES = '''
import torch
import torch.nn as nn
from collections import OrderedDict

class Model(nn.Module):
    def __init__(self):
        super(Model,self).__init__()
        self.conv1 = nn.Conv2d(in_channels=3,out_channels=64,kernel_size=3)
        self.conv2 = nn.Conv2d(64,64,3)
        self.maxpool1 = nn.MaxPool2d(2,2)

        self.features = nn.Sequential(OrderedDict([
            ('conv3', nn.Conv2d(64,128,3)),
            ('conv4', nn.Conv2d(128,128,3)),
            ('relu1', nn.ReLU())
        ]))

    def forward(self,x):
        x = self.conv1(x)
        x = self.conv2(x)
        x = self.maxpool1(x)
        x = self.features(x)

        return x

m = Model()
for idx, m in enumerate(m.modules()):
    print(idx,"-",m)

model = Model()
for name, layer in model.named_modules():
    if "conv" in name:
        print("named:", name)
for layer in model.modules():
    if isinstance(layer, nn.Conv2d):
        print("conv layer:", layer)
print(model.state_dict().keys())
for name, module in model.named_children():
    if name in ['conv4', 'conv5', 'features']:
        print(module)
'''


# the listing as printed in the notes (002_d8aeac6c7da91b32.txt)
NOTES_LISTING = """0 - Model(
  (conv1): Conv2d(3, 64, kernel_size=(3, 3), stride=(1, 1))
  (conv2): Conv2d(64, 64, kernel_size=(3, 3), stride=(1, 1))
  (maxpool1): MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False)
  (features): Sequential(
    (conv3): Conv2d(64, 128, kernel_size=(3, 3), stride=(1, 1))
    (conv4): Conv2d(128, 128, kernel_size=(3, 3), stride=(1, 1))
    (relu1): ReLU()
  )
)
1 - Conv2d(3, 64, kernel_size=(3, 3), stride=(1, 1))
2 - Conv2d(64, 64, kernel_size=(3, 3), stride=(1, 1))
3 - MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False)
4 - Sequential(
  (conv3): Conv2d(64, 128, kernel_size=(3, 3), stride=(1, 1))
  (conv4): Conv2d(128, 128, kernel_size=(3, 3), stride=(1, 1))
  (relu1): ReLU()
)
5 - Conv2d(64, 128, kernel_size=(3, 3), stride=(1, 1))
6 - Conv2d(128, 128, kernel_size=(3, 3), stride=(1, 1))
7 - ReLU()"""


def test_modules_listing_of_the_notes_model() -> None:
    t_ns, e_ns, t_out, e_out = run_both(MODEL_WITH_FEATURES)
    same_listing(t_out, e_out)
    assert "\n".join(e_out[:8]) == NOTES_LISTING
    e_model, t_model = e_ns["model"], t_ns["model"]
    copy_weights(e_model, t_model)
    x = np.random.default_rng(0).standard_normal((1, 3, 14, 14)).astype(np.float32)
    expected = t_model(torch.tensor(x)).detach().numpy()
    np.testing.assert_allclose(e_model(ember.tensor(x)).detach().numpy(), expected, rtol=1e-4, atol=1e-5)


MODULES_OF_TWO_CONVS = '''
import torch
import torch.nn as nn

class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(10, 20, 4)
        self.conv1 = nn.Conv2d(20, 10, 4)

model = Model()
for module in model.modules():
    print(module)
self_covn1 = nn.Sequential(nn.Conv2d(96, 96, 3, 1, 1), nn.BatchNorm2d(96), nn.ReLU(inplace=True),
nn.Conv2d(96, 32, 3, 1, 1), nn.BatchNorm2d(32), nn.ReLU(inplace=True))
print(self_covn1)
net = nn.Sequential()
net.add_module("fc", nn.Sequential(nn.Flatten(),
                                 nn.Linear(12, 8),
                                 nn.ReLU(),
                                 nn.Dropout(0.5),
                                 nn.Linear(8, 8),
                                 nn.ReLU(),
                                 nn.Dropout(0.5),
                                 nn.Linear(8, 10)
                                ))
print(net)
p = torch.nn.Parameter(torch.ones(2), True)
print(p)
'''


def test_modules_children_and_sequential_reprs() -> None:
    _, _, t_out, e_out = run_both(MODULES_OF_TWO_CONVS)
    same_listing(t_out, e_out)
    assert e_out[1] == "Conv2d(10, 20, kernel_size=(4, 4), stride=(1, 1))"


HAND_WRITTEN_BATCH_NORM = '''
import torch
import torch.nn as nn

def batch_norm(is_training, X, gamma, beta, moving_mean, moving_var, eps, momentum):
    if not is_training:
        X_hat = (X - moving_mean) / torch.sqrt(moving_var + eps)
    else:
        assert len(X.shape) in (2, 4)
        if len(X.shape) == 2:
            # 使用全连接层的情况，计算特征维上的均值和方差
            mean = X.mean(dim=0)
            var = ((X - mean) ** 2).mean(dim=0)
        else:
            # 使用二维卷积层的情况，计算通道维上（axis=1）的均值和方差。
            mean = X.mean(dim=0, keepdim=True).mean(dim=2, keepdim=True).mean(dim=3, keepdim=True)
            var = ((X - mean) ** 2).mean(dim=0, keepdim=True).mean(dim=2, keepdim=True).mean(dim=3, keepdim=True)
        # 训练模式下用当前的均值和方差做标准化
        X_hat = (X - mean) / torch.sqrt(var + eps)
        # 更新移动平均的均值和方差
        moving_mean = momentum * moving_mean + (1.0 - momentum) * mean
        moving_var = momentum * moving_var + (1.0 - momentum) * var
    Y = gamma * X_hat + beta  # 拉伸和偏移
    return Y, moving_mean, moving_var

class BatchNorm(nn.Module):
    def __init__(self, num_features, num_dims):
        super(BatchNorm, self).__init__()
        if num_dims == 2:
            shape = (1, num_features)
        else:
            shape = (1, num_features, 1, 1)
        self.gamma = nn.Parameter(torch.ones(shape))
        self.beta = nn.Parameter(torch.zeros(shape))
        self.moving_mean = torch.zeros(shape)
        self.moving_var = torch.zeros(shape)

    def forward(self, X):
        if self.moving_mean.device != X.device:
            self.moving_mean = self.moving_mean.to(X.device)
            self.moving_var = self.moving_var.to(X.device)
        Y, self.moving_mean, self.moving_var = batch_norm(self.training,
            X, self.gamma, self.beta, self.moving_mean,
            self.moving_var, eps=1e-5, momentum=0.9)
        return Y

bn4 = BatchNorm(3, num_dims=4)
bn2 = BatchNorm(5, num_dims=2)
print(bn4)
print([name for name, _ in bn4.named_parameters()])
'''


def test_hand_written_batch_norm_with_moving_averages() -> None:
    t_ns, e_ns, t_out, e_out = run_both(HAND_WRITTEN_BATCH_NORM)
    same_listing(t_out, e_out)
    rng = np.random.default_rng(3)
    for name, shape in (("bn4", (4, 3, 2, 2)), ("bn2", (6, 5))):
        e_bn, t_bn = e_ns[name], t_ns[name]
        for step in range(3):
            x = (rng.standard_normal(shape) * (step + 1) + step).astype(np.float32)
            ex = ember.tensor(x, requires_grad=True)
            tx = torch.tensor(x, requires_grad=True)
            ey, ty = e_bn(ex), t_bn(tx)
            np.testing.assert_allclose(ey.detach().numpy(), ty.detach().numpy(), rtol=1e-4, atol=1e-5)
            (ey * ey).sum().backward()
            (ty * ty).sum().backward()
            np.testing.assert_allclose(ex.grad.numpy(), tx.grad.numpy(), rtol=1e-3, atol=1e-4)
            np.testing.assert_allclose(e_bn.moving_mean.detach().numpy(), t_bn.moving_mean.detach().numpy(),
                                       rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(e_bn.moving_var.detach().numpy(), t_bn.moving_var.detach().numpy(),
                                       rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(e_bn.gamma.grad.numpy(), t_bn.gamma.grad.numpy(), rtol=1e-3, atol=1e-4)
        e_bn.eval()
        t_bn.eval()
        x = rng.standard_normal(shape).astype(np.float32)
        expected = t_bn(torch.tensor(x)).detach().numpy()
        np.testing.assert_allclose(e_bn(ember.tensor(x)).detach().numpy(), expected, rtol=1e-4, atol=1e-5)


TRAINING_IDIOMS = '''
import torch
import torch.nn as nn

net = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.0), nn.Linear(8, 3))
loss = nn.CrossEntropyLoss()
X = torch.ones(6, 4) * torch.arange(6).reshape(6, 1).float() / 6
y = torch.tensor([0, 1, 2, 0, 1, 2])
'''


def test_training_loop_idioms() -> None:
    t_ns, e_ns, _, _ = run_both(TRAINING_IDIOMS)
    copy_weights(e_ns["net"], t_ns["net"])
    for ns in (t_ns, e_ns):
        lib = torch if ns is t_ns else ember
        net = ns["net"]
        out = net(ns["X"])
        ns["l"] = ns["loss"](out, ns["y"])
        ns["l"].backward()
        ns["acc"] = (net(ns["X"]).argmax(dim=1) == ns["y"]).float().sum().cpu().item()
        ns["keys"] = list(net.state_dict().keys())
        ns["grad"] = net[0].weight.grad.numpy()
        net.eval()
        with lib.no_grad():
            ns["eval_out"] = net(ns["X"]).numpy()
    assert e_ns["keys"] == t_ns["keys"]
    assert abs(e_ns["l"].item() - t_ns["l"].item()) < 1e-5
    assert e_ns["acc"] == t_ns["acc"]
    np.testing.assert_allclose(e_ns["grad"], t_ns["grad"], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(e_ns["eval_out"], t_ns["eval_out"], rtol=1e-4, atol=1e-5)
