"""Eager tensors on "cuda": transfers, creation, device errors, autograd across devices, modules, printing,
save/load. Run on the fake GPU of conftest.py (numpy memory behind cupy's interface), and the same checks
on a real GPU where one is present (``real_cuda``)."""

from __future__ import annotations

from typing import Any

import ember
import numpy as np
import pytest
import torch
from ember.runtime.errors import DeviceError

RNG = np.random.default_rng(7)


def _on_device(t: ember.Tensor, fake: object) -> bool:
    return t.device.type == "cuda" and isinstance(t._data, fake.ndarray) and not isinstance(t._data, np.ndarray)


@pytest.fixture(params=["fake", "real"])
def gpu(request: pytest.FixtureRequest) -> object:
    """Each test runs on the fake GPU, and on the real one where there is one."""
    return request.getfixturevalue("fake_cuda" if request.param == "fake" else "real_cuda")


def test_transfers_keep_values_dtype_and_land_on_the_device(gpu: object) -> None:
    for dtype in (ember.float32, ember.float64, ember.int64, ember.bool, ember.float16, ember.uint8):
        x = ember.tensor(RNG.standard_normal((3, 4)) * 5).to(dtype)
        for y in (x.cuda(), x.to("cuda"), x.to("cuda:0"), x.to(ember.device("cuda", 0)), x.cuda(0)):
            assert _on_device(y, gpu) and y.dtype is dtype and y.shape == (3, 4)
            assert str(y.device) == "cuda:0" and y.is_cuda and y.device == ember.device("cuda:0")
            back = y.cpu()
            assert back.device.type == "cpu" and isinstance(back._data, np.ndarray)
            np.testing.assert_array_equal(back.numpy(), x.numpy())
    x = ember.arange(6.0)
    both = x.to("cuda", ember.float64)
    assert _on_device(both, gpu) and both.dtype is ember.float64
    assert x.to(both).device == both.device and x.to(both).dtype is ember.float64
    same = both.to("cuda")
    assert same is both  # already there: no copy, as in PyTorch
    assert both.to("cuda", copy=True) is not both


def test_creation_functions_take_device(gpu: object) -> None:
    made = [ember.zeros(2, 3, device="cuda"), ember.ones(2, device="cuda:0"), ember.full((2,), 7.0, device="cuda"),
            ember.arange(5, device="cuda"), ember.eye(3, device="cuda"), ember.tensor([1, 2], device="cuda"),
            ember.linspace(0, 1, 4, device="cuda"), ember.empty(2, device="cuda"),
            ember.randn(2, 2, device="cuda"), ember.rand(3, device="cuda"), ember.randint(0, 5, (3,), device="cuda")]
    assert all(_on_device(t, gpu) for t in made)
    base = made[0]
    likes = [ember.zeros_like(base), ember.ones_like(base), ember.rand_like(base), base.new_zeros(4),
             base.new_tensor([1.0]), base.new_full((2,), 3.0)]
    assert all(_on_device(t, gpu) for t in likes)
    np.testing.assert_array_equal(made[2].cpu().numpy(), [7.0, 7.0])
    ember.manual_seed(3)
    on_gpu = ember.randn(4, device="cuda").cpu().numpy()
    ember.manual_seed(3)
    np.testing.assert_array_equal(ember.randn(4).numpy(), on_gpu)  # one generator for every device
    leaf = ember.zeros(2, device="cuda", requires_grad=True)
    assert leaf.is_leaf and leaf.requires_grad and _on_device(leaf, gpu)


def test_numpy_of_a_cuda_tensor_is_pytorchs_type_error(gpu: object) -> None:
    y = ember.ones(2).cuda()
    with pytest.raises(TypeError, match=r"can't convert cuda:0 device type tensor to numpy\. Use Tensor\.cpu\(\)"
                                        r" to copy the tensor to host memory first\."):
        y.numpy()
    assert y.tolist() == [1.0, 1.0] and y.sum().item() == 2.0 and float(y[0]) == 1.0


def test_mixed_devices_raise_pytorchs_device_error(gpu: object) -> None:
    a, b = ember.ones(2), ember.ones(2).cuda()
    msg = r"Expected all tensors to be on the same device, but found at least two devices, (cpu and cuda:0|" \
          r"cuda:0 and cpu)!"
    for f in (lambda: a + b, lambda: b * a, lambda: ember.cat([b, a]), lambda: ember.where(b > 0, a, b),
              lambda: b.matmul(a)):
        with pytest.raises(DeviceError, match=msg):
            f()
    with pytest.raises(RuntimeError, match="same device"):  # DeviceError is a RuntimeError, as in PyTorch
        a - b
    assert (b + 1).device == b.device and (2 * b).device == b.device  # Python scalars go anywhere
    # as in PyTorch, a 0-d CPU tensor joins GPU tensors like a scalar (its dtype still counts)
    for y in (b * ember.tensor(3.0), ember.tensor(3.0) * b, ember.where(b > 0, ember.tensor(3.0), b)):
        assert _on_device(y, gpu) and y.tolist() == [3.0, 3.0]
    assert (b.long() * ember.tensor(2.5)).dtype is ember.float32
    with pytest.raises(DeviceError, match=msg):  # ... but not one whose gradient would have to come back
        b * ember.tensor(3.0, requires_grad=True)
    with pytest.raises(DeviceError, match=msg):
        ember.ones(2) + ember.tensor(1.0).cuda()  # a 0-d GPU tensor does not join CPU tensors


def test_ops_on_the_device_give_the_cpu_numbers(gpu: object) -> None:
    x = ember.tensor(RNG.standard_normal((4, 5)), dtype=ember.float32)
    w = ember.tensor(RNG.standard_normal((5, 3)), dtype=ember.float32)

    def f(x: ember.Tensor, w: ember.Tensor) -> list[ember.Tensor]:
        h = (x @ w).relu() + x.sum(1, keepdim=True).exp() * 0.1
        return [h, h.softmax(-1), h.max(1).values, h[1:, ::2], h.T.reshape(-1), h.argmax(0)]

    cpu = f(x, w)
    dev = f(x.cuda(), w.cuda())
    for c, d in zip(cpu, dev):
        assert _on_device(d, gpu) and d.dtype is c.dtype
        np.testing.assert_allclose(d.cpu().numpy(), c.numpy(), rtol=1e-5, atol=1e-6)


def test_in_place_ops_and_views_on_the_device(gpu: object) -> None:
    y = ember.zeros(2, 3).cuda()
    row = y[0]
    row.add_(5.0)
    y[1] = ember.tensor([1.0, 2.0, 3.0]).cuda()
    y.mul_(2)
    assert _on_device(y, gpu)
    np.testing.assert_array_equal(y.cpu().numpy(), [[10, 10, 10], [2, 4, 6]])
    np.testing.assert_array_equal(row.cpu().numpy(), [10, 10, 10])  # the view saw every write


def test_autograd_across_devices_matches_torch(gpu: object) -> None:
    """``.to`` is differentiable: a CPU leaf used on the GPU gets a CPU gradient (and back)."""
    xv, wv = RNG.standard_normal((3, 4)), RNG.standard_normal((4, 2))
    x = ember.tensor(xv, requires_grad=True)
    w = ember.tensor(wv, requires_grad=True).cuda()  # a non-leaf copy on the GPU
    loss = ((x.cuda() @ w).tanh().cpu() * 3).sum()
    loss.backward()
    tx, tw = torch.tensor(xv, requires_grad=True), torch.tensor(wv, requires_grad=True)
    ((tx @ tw).tanh() * 3).sum().backward()
    assert x.grad.device.type == "cpu" and isinstance(x.grad._data, np.ndarray)
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-12)
    leaf = ember.tensor(wv, requires_grad=True, device="cuda")
    assert leaf.is_leaf
    (x.detach().cuda() @ leaf).sum().backward()
    assert _on_device(leaf.grad, gpu)
    np.testing.assert_allclose(leaf.grad.cpu().numpy(), xv.T @ np.ones((3, 2)), rtol=1e-12)
    y = x.cuda()
    assert y.grad_fn is not None and not y.is_leaf and y.requires_grad
    with ember.no_grad():
        assert x.cuda().grad_fn is None


def test_gradcheck_through_device_copies(gpu: object) -> None:
    from ember.testing import gradcheck

    x = ember.tensor(RNG.standard_normal((2, 3)), requires_grad=True)
    assert gradcheck(lambda t: (t.cuda() * t.cuda().sin()).cpu(), (x,))


def test_module_cuda_moves_parameters_buffers_and_grads(gpu: object) -> None:
    net = ember.nn.Sequential(ember.nn.Linear(4, 3), ember.nn.BatchNorm1d(3), ember.nn.ReLU(), ember.nn.Linear(3, 2))
    x = ember.tensor(RNG.standard_normal((5, 4)), dtype=ember.float32)
    expected = net(x)
    expected.sum().backward()
    weight = net[0].weight
    grads = [p.grad.numpy().copy() for p in net.parameters()]
    assert net.cuda() is net
    assert net[0].weight is weight  # moved in place: optimizers holding the parameters keep working
    for t in list(net.parameters()) + list(net.buffers()):
        assert _on_device(t, gpu)
    for p, g in zip(net.parameters(), grads):
        assert _on_device(p.grad, gpu)
        np.testing.assert_array_equal(p.grad.cpu().numpy(), g)
    net.eval()
    net.train()
    got = net(x.cuda())
    assert _on_device(got, gpu)
    np.testing.assert_allclose(got.detach().cpu().numpy(), expected.detach().numpy(), rtol=1e-5, atol=1e-6)
    net.to("cpu", ember.float64)
    assert all(p.device.type == "cpu" and p.dtype is ember.float64 for p in net.parameters())
    net.to(ember.device("cuda"))
    assert all(_on_device(p, gpu) for p in net.parameters())
    assert net[1].num_batches_tracked.device.type == "cuda"


def test_training_step_on_the_device_matches_the_cpu(gpu: object) -> None:
    def run(device: str) -> list[np.ndarray]:
        ember.manual_seed(0)
        net = ember.nn.Sequential(ember.nn.Linear(4, 8), ember.nn.ReLU(), ember.nn.Linear(8, 3)).to(device)
        opt = ember.optim.Adam(net.parameters(), lr=0.01)
        x, y = ember.randn(16, 4).to(device), ember.randint(0, 3, (16,)).to(device)
        for _ in range(3):
            opt.zero_grad()
            loss = ember.nn.functional.cross_entropy(net(x), y)
            loss.backward()
            opt.step()
        acc = (net(x).argmax(dim=1) == y).float().sum().cpu().item()  # the notes' idiom
        return [p.detach().cpu().numpy() for p in net.parameters()] + [np.array(acc)]

    for c, d in zip(run("cpu"), run("cuda")):
        np.testing.assert_allclose(d, c, rtol=1e-5, atol=1e-6)


def test_printing_names_the_device(gpu: object) -> None:
    assert repr(ember.tensor([1.0, 2.0]).cuda()) == "tensor([1., 2.], device='cuda:0')"
    assert repr(torch.tensor([1.0, 2.0])) == "tensor([1., 2.])"
    y = ember.tensor([1.5], requires_grad=True).cuda()
    assert repr(y) == "tensor([1.5000], device='cuda:0', grad_fn=<ToDeviceBackward>)"
    assert repr(ember.ones(2, dtype=ember.int32, device="cuda")) == \
        "tensor([1, 1], device='cuda:0', dtype=ember.int32)"


def test_save_and_load_cuda_tensors(gpu: object, tmp_path: object) -> None:
    path = tmp_path / "ckpt.pt"
    net = ember.nn.Linear(3, 2).cuda()
    state = net.state_dict()
    ember.save({"state": state, "extra": ember.arange(3.0).cuda()}, path)
    back = ember.load(path)
    assert all(_on_device(v, gpu) for v in back["state"].values()) and _on_device(back["extra"], gpu)
    for k, v in state.items():
        np.testing.assert_array_equal(back["state"][k].cpu().numpy(), v.cpu().numpy())
    for where in ("cpu", ember.device("cpu"), {"cuda:0": "cpu"}, lambda t, loc: t):
        cpu = ember.load(path, map_location=where)
        assert cpu["extra"].device.type == "cpu" and isinstance(cpu["extra"]._data, np.ndarray)
    plain = ember.nn.Linear(3, 2)
    ember.save(plain.state_dict(), path)
    moved = ember.load(path, map_location="cuda:0")
    assert all(_on_device(v, gpu) for v in moved.values())
    fresh = ember.nn.Linear(3, 2).cuda()
    fresh.load_state_dict(moved)
    np.testing.assert_array_equal(fresh.weight.detach().cpu().numpy(), plain.weight.detach().numpy())


def test_devices_are_canonical(gpu: object) -> None:
    """Every cuda tensor on GPU 0 holds the same device object, so the dispatcher's check is one identity
    test; the spellings compare equal as PyTorch's do."""
    a, b = ember.ones(1, device="cuda"), ember.ones(1).to(ember.device("cuda:0"))
    assert a.device is b.device and (a + b).device is a.device
    assert ember.device("cuda") == ember.device("cuda:0") == "cuda:0"
    assert repr(ember.device("cuda", 1)) == repr(torch.device("cuda", 1)) == "device(type='cuda', index=1)"
    assert str(ember.device("cuda")) == str(torch.device("cuda")) == "cuda"
    assert ember.ones(1).device is ember.zeros(1, device="cpu").device


def test_device_strings_are_checked() -> None:
    with pytest.raises(DeviceError, match="Expected one of cpu, cuda device type at start of device string: gpu"):
        ember.device("gpu")
    with pytest.raises(DeviceError, match="Invalid device string: 'cuda:x'"):
        ember.device("cuda:x")
    with pytest.raises(DeviceError, match="must not be negative"):
        ember.device("cuda", -1)
    assert ember.device(1) == ember.device("cuda:1")


def test_second_gpu_transfers_and_errors(fake_cuda2: object) -> None:
    a = ember.arange(4.0, device="cuda:1")
    assert str(a.device) == "cuda:1" and a._data.dev == 1
    b = (a * 2).sum()  # runs with GPU 1 current: cupy refuses arrays of another GPU otherwise
    assert b.device == a.device and b.item() == 12.0
    c = a.to("cuda:0")
    assert c._data.dev == 0 and c.tolist() == [0.0, 1.0, 2.0, 3.0]
    with pytest.raises(DeviceError, match="found at least two devices, cuda:1 and cuda:0!"):
        a + c
    x = ember.ones(3, requires_grad=True, device="cuda:0")
    (x.to("cuda:1") * 3).sum().backward()
    assert x.grad._data.dev == 0 and x.grad.tolist() == [3.0, 3.0, 3.0]
    with ember.cuda.device(1):
        assert ember.cuda.current_device() == 1
        assert ember.ones(1, device="cuda").device == ember.device("cuda:1")  # "cuda" is the current GPU
    assert ember.cuda.current_device() == 0


def test_without_a_gpu_cuda_tensors_raise_the_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from ember.device import set_cuda_array_module

    monkeypatch.setitem(sys.modules, "cupy", None)  # as if cupy were not installed, even on a GPU machine
    previous = set_cuda_array_module(None)
    try:
        for f in (lambda: ember.ones(2).cuda(), lambda: ember.zeros(2, device="cuda"),
                  lambda: ember.ones(2).to("cuda:0"), lambda: ember.nn.Linear(2, 2).cuda()):
            with pytest.raises(DeviceError, match=r'pip install "ember\[cuda\]"'):
                f()
    finally:
        set_cuda_array_module(previous)


def test_training_on_a_second_gpu_with_it_current(fake_cuda2: Any) -> None:
    """Ops on any GPU run with that GPU current; writes made outside the dispatcher (in-place updates by
    optimizers, gradient accumulation, running statistics) need the GPU current, as cupy's do."""
    x = ember.tensor(RNG.standard_normal((6, 3)), dtype=ember.float32)

    def train(device: str) -> list[np.ndarray]:
        ember.manual_seed(2)
        net = ember.nn.Sequential(ember.nn.Linear(3, 4), ember.nn.BatchNorm1d(4)).to(device)
        opt = ember.optim.Adam(net.parameters(), lr=0.1)
        for _ in range(2):
            opt.zero_grad()
            (net(x.to(device)) * net(x.to(device))).sum().backward()
            opt.step()
        return [t.detach().cpu().numpy() for t in list(net.parameters()) + list(net.buffers())]

    want = train("cpu")
    with ember.cuda.device(1):
        got = train("cuda:1")
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
