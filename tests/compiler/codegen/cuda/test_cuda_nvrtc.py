"""The generated CUDA C of every kernel of the vision zoo, the MLP, the examples' models and LeNet's
compiled training step compiles with NVRTC for sm_90 (no GPU needed), and NVRTC's log reaches the
CompileError of a broken kernel."""

from __future__ import annotations

from typing import Any

import ember
import ember.nn as nn
import pytest
from ember.compiler.codegen.cuda.nvrtc import compile_cuda, cubin_resources, nvrtc_available
from ember.compiler.codegen.cuda.program import emit_cuda
from ember.compiler.compile import compile_graph
from ember.runtime.errors import CompileError
from ember.tracing import trace
from ember.vision.models import alexnet, lenet5, resnet18, vgg11_bn

pytestmark = pytest.mark.skipif(not nvrtc_available(),
                                reason="NVRTC missing: pip install nvidia-cuda-nvrtc-cu12 (the test extra has it)")


def check_program(model: Any, *inputs: Any) -> Any:
    """Compile ``model`` for target cuda; every kernel-IR kernel must own __global__ functions present
    in the cubin with a plausible register count, and every launch must name one of them."""
    if hasattr(model, "eval"):
        model.eval()
    result = compile_graph(trace(model, *inputs), "cuda", cache=False)
    exe = result.executable
    image = exe.owner
    assert exe.backend == "cuda" and image.arch == "sm_90"
    assert image.cubin[:4] == b"\x7fELF"
    assert set(image.functions) == set(image.resources), "every __global__ is in the cubin"
    for fn in image.functions:
        assert 0 < image.resources[fn]["registers"] <= 255, fn
    assert len(exe.sources["cuda.resources"].splitlines()) == len(image.functions)
    for kernel in exe.call_order:
        launched = {ln.function for ln in image.launches if ln.kernel == kernel}
        assert launched and launched <= set(image.functions), kernel
    for ln in image.launches:
        assert ln.block == (256, 1, 1) and all(g >= 1 for g in ln.grid)
    return exe


def test_lenet5_and_its_gemm_tiles_compile() -> None:
    exe = check_program(lenet5(), ember.randn(2, 1, 28, 28))
    image = exe.owner
    gemms = [f for f in image.functions if f.startswith("ember_gemm_")]
    assert gemms, "convolutions and linears run on the tiled GEMM"
    for f in gemms:  # two staged 16x68 float slices (plus what the toolchain reserves)
        assert image.resources[f]["shared_bytes"] >= 2 * 16 * 68 * 4


def test_mlp_compiles() -> None:
    mlp = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10),
                        nn.LogSoftmax(dim=1))
    check_program(mlp, ember.randn(4, 784))


def test_quickstart_model_compiles() -> None:
    check_program(nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Linear(16, 1)), ember.randn(64, 3))


@pytest.mark.slow
def test_alexnet_compiles() -> None:
    check_program(alexnet(num_classes=10), ember.randn(1, 3, 64, 64))


@pytest.mark.slow
def test_vgg11_bn_compiles() -> None:
    check_program(vgg11_bn(num_classes=10), ember.randn(1, 3, 32, 32))


@pytest.mark.slow
def test_resnet18_compiles() -> None:
    check_program(resnet18(num_classes=10), ember.randn(2, 3, 32, 32))


def test_lenet_training_step_compiles() -> None:
    """Forward and backward graphs of a training step (conv weight gradients, pool backward, ...)."""
    from ember.compiler.autodiff import differentiate

    model = lenet5()
    model.train()
    graph = trace(lambda x: model(x).sum(), ember.randn(2, 1, 28, 28))
    wrt = [v for v in graph.inputs if v.kind == "parameter"]
    ad = differentiate(graph, wrt, grad_leaves=1)
    for g in (ad.forward, ad.backward):
        exe = compile_graph(g, "cuda", cache=False).executable
        assert exe.owner.launches and set(exe.owner.resources) == set(exe.owner.functions)


def test_broken_kernel_fails_with_nvrtc_log() -> None:
    graph = trace(lambda x: (x * 2).exp(), ember.randn(2, 8))
    from ember.compiler.compile import _front_end, default_pipeline
    from ember.compiler.passes.manager import PassManager

    optimized, _ = PassManager(default_pipeline()).run(graph)
    source = emit_cuda(_front_end(optimized, "broken").program).source
    assert compile_cuda(source, "ok.cu").cubin  # the real source compiles
    at = source.index("] = ", source.index('extern "C" __global__ void __launch_bounds__(256) fused'))
    broken = source[:at] + "] = not_declared_anywhere + " + source[at + 4:]  # in the first generated kernel
    with pytest.raises(CompileError) as err:
        compile_cuda(broken, "broken.cu")
    text = str(err.value)
    assert "NVRTC could not compile broken.cu for sm_90" in text
    assert 'identifier "not_declared_anywhere" is undefined' in text  # NVRTC's own log line


def test_cubin_resources_reads_registers_and_shared_memory() -> None:
    src = ('extern "C" __global__ void k(float *y) { __shared__ float s[100]; s[threadIdx.x] = y[threadIdx.x];'
           ' __syncthreads(); y[threadIdx.x] = s[99 - threadIdx.x]; }')
    res = cubin_resources(compile_cuda(src, "res.cu").cubin)
    assert res["k"]["shared_bytes"] >= 400 and res["k"]["registers"] > 0


@pytest.mark.skipif(ember.cuda.is_available(), reason="checks the no-GPU error path")
def test_compile_for_cuda_without_a_gpu_raises_device_error_with_the_install_hint() -> None:
    from ember.runtime.errors import DeviceError

    with pytest.raises(DeviceError, match=r'pip install "ember\[cuda\]"'):
        ember.compile(lenet5(), target="cuda")
