"""The ``ember.cuda`` API of SEED_API.md: with the fake GPU (and a real one where present), and without any."""

from __future__ import annotations

import sys
from typing import Any

import ember
import pytest
import torch
from ember.device import set_cuda_array_module
from ember.runtime.errors import DeviceError

HINT = r'pip install "ember\[cuda\]"'


@pytest.fixture
def no_cuda(monkeypatch: pytest.MonkeyPatch) -> Any:
    """As if cupy were not installed, on any machine."""
    monkeypatch.setitem(sys.modules, "cupy", None)
    previous = set_cuda_array_module(None)
    yield
    set_cuda_array_module(previous)


def test_queries_without_cuda_answer_like_cpu_only_pytorch(no_cuda: Any) -> None:
    assert ember.cuda.is_available() is False and torch.cuda.is_available() is False
    assert ember.cuda.device_count() == 0 == torch.cuda.device_count()
    # the calls scripts make unconditionally stay harmless, as in PyTorch
    assert ember.cuda.memory_allocated() == 0 == torch.cuda.memory_allocated()
    assert ember.cuda.max_memory_allocated() == 0 == torch.cuda.max_memory_allocated()
    assert ember.cuda.memory_reserved() == 0 == torch.cuda.memory_reserved()
    assert ember.cuda.empty_cache() is None
    ember.cuda.manual_seed_all(5)
    a = ember.rand(3)
    ember.cuda.manual_seed(5)
    assert ember.rand(3).tolist() == a.tolist()  # it seeds the one host generator


def test_everything_that_needs_a_gpu_raises_the_install_hint(no_cuda: Any) -> None:
    calls = [ember.cuda.current_device, ember.cuda.synchronize, lambda: ember.cuda.set_device(0),
             ember.cuda.Stream, ember.cuda.Event, ember.cuda.current_stream, ember.cuda.get_device_name,
             lambda: ember.cuda.device(0), ember.cuda.reset_peak_memory_stats,
             lambda: ember.cuda.comm.broadcast(ember.ones(2), [0]),
             lambda: ember.cuda.comm.scatter(ember.ones(2), [0]),
             lambda: ember.cuda.comm.gather([ember.ones(2)], destination=0),
             lambda: ember.cuda.comm.reduce_add([ember.ones(2)], 0)]
    for call in calls:
        with pytest.raises(DeviceError, match=f"cupy, which is not installed; install the CUDA extra with: {HINT}"):
            call()


def test_no_driver_is_a_device_error_with_the_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    """cupy installed but no usable driver: cupy's own error is wrapped, with the hint."""
    import types

    def no_driver() -> int:
        raise RuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")

    fake = types.SimpleNamespace(cuda=types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=no_driver)))
    monkeypatch.setitem(sys.modules, "cupy", fake)
    previous = set_cuda_array_module(None)
    try:
        assert not ember.cuda.is_available()
        with pytest.raises(DeviceError, match=f"CUDA is not usable here .*no CUDA-capable device.*{HINT}"):
            ember.ones(1).cuda()
    finally:
        set_cuda_array_module(previous)


def test_device_queries_and_current_device(fake_cuda2: Any) -> None:
    assert ember.cuda.is_available() and ember.cuda.device_count() == 2
    assert ember.cuda.current_device() == 0
    assert ember.cuda.get_device_name(1) == "Fake GPU 1"
    with ember.cuda.device("cuda:1"):
        assert ember.cuda.current_device() == 1
        with ember.cuda.device(None):  # no change
            assert ember.cuda.current_device() == 1
    assert ember.cuda.current_device() == 0
    ember.cuda.set_device(1)
    assert ember.cuda.current_device() == 1 and ember.zeros(1, device="cuda").device == ember.device("cuda:1")
    ember.cuda.set_device(ember.device("cuda:0"))
    before = fake_cuda2.state["syncs"]
    ember.cuda.synchronize()
    assert fake_cuda2.state["syncs"] == before + 1
    with pytest.raises(DeviceError, match="Expected a cuda device, but got: cpu"):
        ember.cuda.set_device("cpu")


def test_memory_statistics_follow_allocations(fake_cuda: Any) -> None:
    ember.cuda.reset_peak_memory_stats()
    base = ember.cuda.memory_allocated()
    x = ember.zeros(1000, device="cuda")  # 4000 bytes, one 4096-byte block
    assert ember.cuda.memory_allocated() == base + 4096
    y = x + 1
    assert ember.cuda.memory_allocated() == base + 2 * 4096
    del x, y
    assert ember.cuda.memory_allocated() == base
    assert ember.cuda.max_memory_allocated() == base + 2 * 4096  # the peak stays
    assert ember.cuda.memory_reserved() >= base + 2 * 4096  # freed blocks stay cached ...
    ember.cuda.empty_cache()
    assert ember.cuda.memory_reserved() == base  # ... until the cache is emptied
    ember.cuda.reset_peak_memory_stats()
    assert ember.cuda.max_memory_allocated() == base


def test_streams_and_events(fake_cuda: Any) -> None:
    s = ember.cuda.Stream()
    assert ember.cuda.current_stream() == ember.cuda.default_stream()
    with ember.cuda.stream(s):
        assert ember.cuda.current_stream() == s
        y = ember.ones(3, device="cuda") * 2
    assert ember.cuda.current_stream() != s
    start, end = ember.cuda.Event(enable_timing=True), ember.cuda.Event(enable_timing=True)
    start.record()
    end.record(s)
    end.synchronize()
    assert end.native.recorded_on is s.native and end.query() and s.query()
    assert start.elapsed_time(end) == pytest.approx(1.5)
    other = ember.cuda.Stream()
    other.wait_stream(s)
    assert len(other.native.waited) == 1
    s.synchronize()
    assert y.tolist() == [2.0, 2.0, 2.0]


def test_real_gpu_api(real_cuda: Any) -> None:
    """On a real GPU: names, memory accounting and event timing."""
    assert ember.cuda.device_count() >= 1 and isinstance(ember.cuda.get_device_name(), str)
    ember.cuda.synchronize()
    before = ember.cuda.memory_allocated()
    x = ember.zeros(1 << 20, device="cuda")
    assert ember.cuda.memory_allocated() >= before + 4 * (1 << 20)
    assert ember.cuda.max_memory_allocated() >= before + 4 * (1 << 20)
    start, end = ember.cuda.Event(enable_timing=True), ember.cuda.Event(enable_timing=True)
    start.record()
    (x + 1).sum()
    end.record()
    end.synchronize()
    assert start.elapsed_time(end) >= 0.0
    del x
    ember.cuda.empty_cache()


def test_loading_a_cuda_checkpoint_without_cuda_says_map_location(fake_cuda: Any, tmp_path: Any,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "gpu.pt"
    ember.save({"w": ember.tensor([1.0, 2.0], device="cuda")}, path)
    monkeypatch.setitem(sys.modules, "cupy", None)
    set_cuda_array_module(None)  # now a machine without CUDA (the fixture puts things back)
    with pytest.raises(DeviceError, match=r"Attempting to deserialize object on a CUDA device but"
                                          r" ember.cuda.is_available\(\) is False.*map_location=ember.device"):
        ember.load(path)
    assert ember.load(path, map_location="cpu")["w"].tolist() == [1.0, 2.0]
