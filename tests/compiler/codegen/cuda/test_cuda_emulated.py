"""The generated CUDA C, run on the CPU by the host emulator (cuda_host_emulator.py), gives eager mode's
numbers: grid-stride loops, block reductions with warp shuffles, the tiled GEMM and its epilogue, host
loops around per-image GEMMs. This is how the code's logic is checked on machines without a GPU."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ember
import ember.nn as nn
import ember.nn.functional as F
import numpy as np
import pytest
from cuda_host_emulator import EmulatedCuda, compiler_available
from ember.compiler.codegen.cuda.nvrtc import nvrtc_available
from ember.compiler.compile import compile_graph
from ember.tracing import trace
from ember.vision.models import lenet5

pytestmark = [pytest.mark.skipif(not nvrtc_available(), reason="NVRTC missing: pip install nvidia-cuda-nvrtc-cu12"),
              pytest.mark.skipif(not compiler_available(), reason="the host emulator needs g++")]


def conv_stack() -> nn.Module:
    """Grouped, depthwise, dilated and strided convolutions, batch norm, conv_transpose, max/avg pooling,
    adaptive average pooling and a linear head."""
    return nn.Sequential(nn.Conv2d(4, 8, 3, padding=1, groups=2), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=8), nn.Sigmoid(),
                         nn.Conv2d(8, 6, 3, stride=2), nn.MaxPool2d(2, ceil_mode=True),
                         nn.ConvTranspose2d(6, 5, 3, stride=2, padding=1, output_padding=1), nn.Tanh(),
                         nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False),
                         nn.AdaptiveAvgPool2d((2, 3)), nn.Flatten(), nn.Linear(30, 7)).eval()


def ops(x: ember.Tensor, y: ember.Tensor, i: ember.Tensor) -> tuple[ember.Tensor, ...]:
    return (F.softmax(x, dim=-1), F.layer_norm(x, (x.shape[-1],)), x.sum(), x.argmax(dim=1),
            ember.cumsum(x, dim=1), (x.exp() * 2 - 1).tanh().sum(dim=0), x.amax(dim=0), y.half() * 3,
            (i % 3) // 2, x @ y.t(), F.relu(x[:, :5] @ y[:, :5].t() + 0.5), (x > 0).any(dim=1))


N_OPS = 12


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[list[np.ndarray], list[np.ndarray]]]:
    """LeNet-5, an MLP with log-softmax, the op mix and the conv stack traced as ONE function, compiled
    and emulated once (NVRTC and the host compiler cost seconds per program): name -> (got, eager)."""
    ember.manual_seed(0)
    lenet = lenet5().eval()
    mlp = nn.Sequential(nn.Linear(100, 70), nn.ReLU(), nn.Linear(70, 130), nn.LogSoftmax(dim=1)).eval()
    convs = conv_stack()

    def everything(a: Any, b: Any, x: Any, y: Any, i: Any, c: Any) -> tuple[Any, ...]:
        return (lenet(a), mlp(b), *ops(x, y, i), convs(c))

    inputs = (ember.randn(2, 1, 28, 28), ember.randn(3, 100), ember.randn(8, 300), ember.randn(5, 300),
              ember.arange(-12, 12).reshape(4, 6), ember.randn(2, 4, 17, 15))
    exe = compile_graph(trace(everything, *inputs), "cuda", cache=False).executable
    emu = EmulatedCuda(exe, tmp_path_factory.mktemp("cuda_emulated"))
    got = list(emu(*[x.numpy() for x in inputs]))
    emu.close()
    with ember.no_grad():
        want = [w.numpy() for w in everything(*inputs)]
    assert len(got) == len(want) == 3 + N_OPS
    return {"lenet": (got[:1], want[:1]), "mlp": (got[1:2], want[1:2]),
            "ops": (got[2:2 + N_OPS], want[2:2 + N_OPS]), "convs": (got[-1:], want[-1:])}


def check(got: list[np.ndarray], want: list[np.ndarray]) -> None:
    for g, w in zip(got, want, strict=True):
        assert g.dtype == w.dtype and g.shape == w.shape
        if w.dtype.kind == "f":
            np.testing.assert_allclose(g.astype(np.float64), w.astype(np.float64), rtol=1e-5, atol=1e-5)
        else:
            np.testing.assert_array_equal(g, w)


def test_lenet5_matches_eager(outputs: dict[str, Any]) -> None:
    check(*outputs["lenet"])


def test_mlp_with_log_softmax_matches_eager(outputs: dict[str, Any]) -> None:
    check(*outputs["mlp"])


def test_reductions_scans_dtypes_and_gemm_epilogues_match_eager(outputs: dict[str, Any]) -> None:
    check(*outputs["ops"])


def test_conv_variants_and_pools_match_eager(outputs: dict[str, Any]) -> None:
    check(*outputs["convs"])


@pytest.mark.slow
def test_lenet_training_graphs_match_the_cpu_code(tmp_path: Path) -> None:
    """Forward (with saved values) and backward graphs of a LeNet training step: the generated CUDA run
    by the emulator gives the LLVM CPU code's outputs (conv weight gradients, max-pool backward, ...)."""
    from ember.compiler.autodiff import differentiate
    from ember.runtime.cpu import CpuExecutable

    ember.manual_seed(4)
    model = lenet5().train()
    x = ember.randn(2, 1, 28, 28)
    graph = trace(lambda t: model(t).sum(), x)
    ad = differentiate(graph, [v for v in graph.inputs if v.kind == "parameter"], grad_leaves=1)
    fwd_cpu = CpuExecutable(compile_graph(ad.forward, "llvm", cache=False).executable)(x.numpy())
    fwd_gpu = EmulatedCuda(compile_graph(ad.forward, "cuda", cache=False).executable, tmp_path)(x.numpy())
    for g, c in zip(fwd_gpu, fwd_cpu, strict=True):
        np.testing.assert_allclose(g, c, rtol=1e-5, atol=1e-5)
    values = {v.name: graph.bindings.get(v.name, x.numpy()) for v in graph.inputs}
    feeds = []
    for v in ad.backward.inputs:
        if v.name.startswith("in_"):
            feeds.append(np.ascontiguousarray(getattr(values[v.name[3:]], "_data", values[v.name[3:]])))
        elif v.name.startswith("saved"):
            feeds.append(fwd_cpu[1 + int(v.name[5:])])
        else:
            feeds.append(np.ones(v.type.shape, np.float32))
    bwd_cpu = CpuExecutable(compile_graph(ad.backward, "llvm", cache=False).executable)(*feeds)
    bwd_gpu = EmulatedCuda(compile_graph(ad.backward, "cuda", cache=False).executable, tmp_path)(*feeds)
    assert len(bwd_gpu) == len(bwd_cpu) >= 9
    for g, c in zip(bwd_gpu, bwd_cpu):
        np.testing.assert_allclose(g, c, rtol=1e-4, atol=1e-4)
