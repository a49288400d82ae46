"""``nn.DataParallel`` and ``ember.cuda.comm`` on no GPU, one GPU and two (fake) GPUs: the numbers and the
gradients must be those of the plain module on the CPU."""

from __future__ import annotations

from typing import Any

import ember
import numpy as np
import pytest
import torch
from ember import nn
from ember.runtime.errors import ArgumentError, DeviceError, ShapeError

RNG = np.random.default_rng(11)


def _net() -> Any:
    ember.manual_seed(1)
    return nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3))


def _reference(x: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    net = _net()
    out = net(ember.tensor(x))
    (out * out).sum().backward()
    return out.detach().numpy(), [p.grad.numpy() for p in net.parameters()]


def test_without_gpus_it_calls_the_module_like_pytorch(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from ember.device import set_cuda_array_module

    monkeypatch.setitem(sys.modules, "cupy", None)
    previous = set_cuda_array_module(None)
    try:
        dp = nn.DataParallel(_net())
        tdp = torch.nn.DataParallel(torch.nn.Linear(4, 3))
        assert dp.device_ids == [] == tdp.device_ids and dp.output_device is None
        x = RNG.standard_normal((5, 4)).astype(np.float32)
        want, grads = _reference(x)
        out = dp(ember.tensor(x))
        (out * out).sum().backward()
        np.testing.assert_array_equal(out.detach().numpy(), want)
        for p, g in zip(dp.module.parameters(), grads):
            np.testing.assert_array_equal(p.grad.numpy(), g)
        assert list(dp.state_dict()) == ["module.0.weight", "module.0.bias", "module.2.weight", "module.2.bias"]
    finally:
        set_cuda_array_module(previous)


@pytest.mark.parametrize("gpus", [1, 2])
def test_data_parallel_matches_the_module(gpus: int, request: pytest.FixtureRequest) -> None:
    fake = request.getfixturevalue("fake_cuda" if gpus == 1 else "fake_cuda2")
    x = RNG.standard_normal((5, 4)).astype(np.float32)
    want, grads = _reference(x)
    net = _net().cuda()
    dp = nn.DataParallel(net)
    assert dp.device_ids == list(range(gpus)) and dp.output_device == 0
    out = dp(ember.tensor(x).cuda())
    assert out.device == ember.device("cuda:0") and out.shape == (5, 3)
    (out * out).sum().backward()
    np.testing.assert_allclose(out.detach().cpu().numpy(), want, rtol=1e-6, atol=1e-7)
    for p, g in zip(net.parameters(), grads):  # every replica's gradient lands on the original parameters
        assert p.grad.device == ember.device("cuda:0") and p.grad._data.dev == 0
        np.testing.assert_allclose(p.grad.cpu().numpy(), g, rtol=1e-5, atol=1e-6)
    assert isinstance(out._data, fake.ndarray)


def test_replicas_run_on_their_own_gpu(fake_cuda2: Any) -> None:
    seen: list[tuple[int, int]] = []

    class Probe(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = nn.Parameter(ember.tensor([2.0]))

        def forward(self, x: Any, shift: Any = 0.0) -> Any:
            seen.append((x._data.dev, self.scale._data.dev))
            return {"y": x * self.scale + shift, "n": x.shape[0]}

    dp = nn.DataParallel(Probe().cuda(), output_device=1)
    x = ember.arange(6.0).reshape(3, 2).cuda()
    out = dp(x, shift=ember.ones(3, 1).cuda())  # tensor keyword arguments are scattered too
    assert sorted(seen) == [(0, 0), (1, 1)]
    assert out["y"].device == ember.device("cuda:1") and out["n"] == 2  # non-tensors: the first replica's
    np.testing.assert_array_equal(out["y"].detach().cpu().numpy(), np.arange(6.0).reshape(3, 2) * 2 + 1)
    one = dp(ember.ones(1, 2).cuda())  # a batch smaller than the device list uses fewer replicas
    assert one["y"].shape == (1, 2)


def test_data_parallel_checks_where_the_module_is(fake_cuda: Any) -> None:
    dp = nn.DataParallel(_net())
    with pytest.raises(DeviceError, match=r"module must have its parameters and buffers on device cuda:0 "
                                          r"\(device_ids\[0\]\) but found one of them on device: cpu"):
        dp(ember.ones(2, 4).cuda())


def test_functional_pieces(fake_cuda2: Any) -> None:
    from ember.nn.parallel import data_parallel, gather, parallel_apply, replicate, scatter

    net = _net().cuda()
    devs = [ember.device("cuda:0"), ember.device("cuda:1")]
    x = ember.tensor(RNG.standard_normal((4, 4)), dtype=ember.float32).cuda()
    pieces = scatter((x, "tag"), devs)
    assert [p[0].device for p in pieces] == devs and [p[1] for p in pieces] == ["tag", "tag"]
    replicas = replicate(net, devs)
    assert replicas[0][0].weight is net[0].weight and replicas[1][0].weight.device == devs[1]
    outs = parallel_apply(replicas, [p[:1] for p in pieces], devices=devs)
    joined = gather(outs, devs[0])
    np.testing.assert_allclose(joined.detach().cpu().numpy(), net(x).detach().cpu().numpy(), rtol=1e-6)
    losses = gather([o.sum() for o in outs], devs[0])  # 0-d outputs become one entry per replica
    assert losses.shape == (2,)
    np.testing.assert_allclose(data_parallel(net, x).detach().cpu().numpy(), joined.detach().cpu().numpy())


def test_comm_broadcast_scatter_gather_reduce_add(fake_cuda2: Any) -> None:
    from ember.cuda import comm

    x = ember.tensor(RNG.standard_normal((6, 3)), dtype=ember.float32)
    copies = comm.broadcast(x.cuda(0), [0, 1])
    assert [c.device for c in copies] == [ember.device("cuda:0"), ember.device("cuda:1")]
    assert all(np.array_equal(c.cpu().numpy(), x.numpy()) for c in copies)
    out = [ember.zeros(6, 3, device="cuda:0"), ember.zeros(6, 3, device="cuda:1")]
    comm.broadcast(x, out=out)
    assert out[1]._data.dev == 1 and np.array_equal(out[1].cpu().numpy(), x.numpy())
    parts = comm.scatter(x, [0, 1])
    assert [p.shape for p in parts] == [(3, 3), (3, 3)] and parts[1]._data.dev == 1
    uneven = comm.scatter(x, [0, 1], chunk_sizes=[1, 5], dim=0)
    assert [p.shape[0] for p in uneven] == [1, 5]
    back = comm.gather(uneven, dim=0, destination=1)
    assert back._data.dev == 1 and np.array_equal(back.cpu().numpy(), x.numpy())
    assert comm.gather(parts, destination=-1).device.type == "cpu"
    total = comm.reduce_add([copies[0], copies[1]], destination=1)
    assert total._data.dev == 1
    np.testing.assert_array_equal(total.cpu().numpy(), 2 * x.numpy())
    np.testing.assert_array_equal(copies[1].cpu().numpy(), x.numpy())  # inputs untouched
    with pytest.raises(ShapeError, match=r"reduce_add: input of shape \[3, 3\]"):
        comm.reduce_add([copies[0], parts[1]])
    with pytest.raises(ArgumentError, match="chunk_sizes"):
        comm.scatter(x, [0, 1], chunk_sizes=[2, 2])
    with pytest.raises(DeviceError, match="expected CUDA devices, got cpu"):
        comm.broadcast(x, ["cpu"])


def test_comm_and_data_parallel_on_a_real_gpu(real_cuda: Any) -> None:
    from ember.cuda import comm

    n = ember.cuda.device_count()
    x = ember.tensor(RNG.standard_normal((4, 4)), dtype=ember.float32)
    copies = comm.broadcast(x.cuda(), list(range(n)))
    np.testing.assert_allclose(comm.reduce_add(copies).cpu().numpy(), n * x.numpy(), rtol=1e-6)
    np.testing.assert_array_equal(comm.gather(comm.scatter(x, list(range(n)))).cpu().numpy(), x.numpy())
    want, grads = _reference(x.numpy())
    net = _net().cuda()
    out = nn.DataParallel(net)(x.cuda())
    (out * out).sum().backward()
    np.testing.assert_allclose(out.detach().cpu().numpy(), want, rtol=1e-4, atol=1e-5)
    for p, g in zip(net.parameters(), grads):
        np.testing.assert_allclose(p.grad.cpu().numpy(), g, rtol=1e-4, atol=1e-5)
