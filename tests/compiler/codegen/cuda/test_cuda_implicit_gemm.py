"""Implicit-GEMM convolutions on CUDA: a ``Gemm`` whose B operand is the im2col matrix of a (padded) image
(``Gemm.b_image``) runs the GEMM template's image loader, and the generated CUDA C, run by the host
emulator, gives torch's numbers for padded, strided, dilated, non-square and grouped convolutions, at
batch 1 (top-level GEMM) and batch 2 (a host loop over images, per group); and the weight gradient's
transposed form (``Im2col.transposed``: B = im2col^T, rows positions over the batch, columns taps)."""

from __future__ import annotations

from typing import Any

import ember
import ember.nn as nn
import numpy as np
import pytest
from cuda_host_emulator import EmulatedCuda, compiler_available
from ember.compiler.codegen.cuda.gemm import gemm_function, gemm_wrapper
from ember.compiler.codegen.cuda.nvrtc import nvrtc_available
from ember.compiler.compile import compile_graph
from ember.tracing import trace

torch = pytest.importorskip("torch")

# (in, out, kernel, stride, padding, dilation, groups, input shape): output planes above 32 positions, so
# the per-image schedule (the one that emits b_image) lowers them
CONVS = [
    (3, 70, 3, 2, 2, 2, 1, (2, 3, 21, 19)),              # padding, stride 2, dilation 2, M = 70 (2 tiles)
    (4, 6, 3, 1, 1, 1, 2, (2, 4, 13, 11)),               # groups 2, K = 18 (two K steps), N = 143 (3 tiles)
    (6, 9, (3, 2), (1, 2), (2, 1), (2, 1), 3, (1, 6, 12, 17)),  # batch 1, non-square everything
    (8, 4, 3, 2, 0, 1, 4, (2, 8, 19, 23)),               # unpadded (reads the input itself), stride 2, groups 4
]
# small planes at batch > 1: the batched schedule's GEMM takes a chunk of images side by side
# (Im2col.positions / image_stride), one launch per (chunk, group)
BATCHED = [
    (5, 6, 3, 1, 1, 1, 1, (5, 5, 4, 4)),
    (4, 6, 3, 2, 1, 1, 2, (5, 4, 8, 8)),
]


def conv_model(c: tuple[Any, ...]) -> nn.Module:
    cin, cout, k, s, p, d, g, _ = c
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride=s, padding=p, dilation=d, groups=g), nn.ReLU()).eval()


def torch_reference(model: nn.Module, c: tuple[Any, ...], x: np.ndarray) -> np.ndarray:
    conv = model[0]
    _, _, _, s, p, d, g, _ = c
    y = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(conv.weight.detach().numpy().copy()),
                                   torch.from_numpy(conv.bias.detach().numpy().copy()), stride=s, padding=p,
                                   dilation=d, groups=g)
    return torch.relu(y).numpy()


def test_image_wrapper_is_its_own_variant() -> None:
    from ember.compiler.codegen.llvm.gemm import Epilogue

    epi = Epilogue()
    assert gemm_function(False, epi, True) not in (gemm_function(False, epi), gemm_function(True, epi))
    text = gemm_wrapper(False, epi, True)
    assert "ember_gemm<false, true," in text and "long long image_stride, long long transposed)" in text
    assert "ember_gemm<false, false," in gemm_wrapper(False, epi)


@pytest.mark.skipif(not nvrtc_available(), reason="NVRTC missing: pip install nvidia-cuda-nvrtc-cu12")
@pytest.mark.skipif(not compiler_available(), reason="the host emulator needs g++")
def test_implicit_gemm_convolutions_match_torch(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from ember.compiler.kernel import lower_conv_batched

    # every shape through the implicit GEMM (by default narrow rows take the im2col loop nest)
    monkeypatch.setattr(lower_conv_batched, "IMPLICIT_MIN_WIDTH", 0)
    monkeypatch.setattr(lower_conv_batched, "IMPLICIT_MIN_DEPTH", 0)
    monkeypatch.setattr(lower_conv_batched, "IMPLICIT_MIN_ROWS", 0)
    monkeypatch.setattr(lower_conv_batched, "IMPLICIT_STRIDED", True)
    ember.manual_seed(3)
    models = [conv_model(c) for c in CONVS + BATCHED]
    inputs = [ember.randn(*c[-1]) for c in CONVS + BATCHED]

    def everything(*xs: Any) -> tuple[Any, ...]:
        return tuple(m(x) for m, x in zip(models, xs))

    exe = compile_graph(trace(everything, *inputs), "cuda", cache=False).executable
    image = exe.owner
    image_launches = [ln for ln in image.launches if ln.function.startswith("ember_gemm_bi_")]
    # one image GEMM per (image, group) of every per-image convolution, per (chunk, group) when batched
    assert len(image_launches) == sum(c[-1][0] * c[6] for c in CONVS) + sum(c[6] for c in BATCHED)
    assert sum("images=" in exe.sources[k] for k in exe.call_order) == len(BATCHED)
    assert "im2col(" in "".join(exe.sources[k] for k in exe.call_order)
    emu = EmulatedCuda(exe, tmp_path)
    got = emu(*[x.numpy() for x in inputs])
    emu.close()
    for c, m, x, g in zip(CONVS + BATCHED, models, inputs, got, strict=True):
        want = torch_reference(m, c, x.numpy())
        assert g.shape == want.shape, c
        np.testing.assert_allclose(g, want, rtol=1e-5, atol=1e-5, err_msg=str(c))


# weight gradients (x shape, w shape, stride, padding, dilation, groups): padded, stride 2, dilation, groups,
# batch > 1, non-square, unpadded (reads the input itself); K = N*P spans several 16-deep K steps, N several
# 64-column tiles
WEIGHT_GRADS = [
    ((2, 3, 11, 9), (70, 3, 3, 3), 2, (1, 1), 1, 1),
    ((3, 6, 9, 8), (9, 2, 3, 2), (1, 2), (2, 1), (2, 1), 3),
    ((1, 12, 7, 6), (4, 12, 3, 3), 1, (1, 1), 1, 1),          # N = 108: two column tiles
    ((2, 8, 9, 9), (4, 4, 3, 3), 2, (0, 0), 1, 2),
]


@pytest.mark.skipif(not nvrtc_available(), reason="NVRTC missing: pip install nvidia-cuda-nvrtc-cu12")
@pytest.mark.skipif(not compiler_available(), reason="the host emulator needs g++")
def test_implicit_weight_gradients_match_torch(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from ember.compiler.autodiff import GraphEmitter
    from ember.compiler.kernel import lower_conv_grad
    from ember.compiler.ops.registry import TensorType

    monkeypatch.setattr(lower_conv_grad, "IMPLICIT_STRIDED", True)  # the strided ones too

    torch.manual_seed(0)
    e = GraphEmitter()
    outs, feeds, wants = [], [], []
    for k, (xs, ws, stride, pad, dil, groups) in enumerate(WEIGHT_GRADS):
        x, w = torch.randn(*xs), torch.randn(*ws, requires_grad=True)
        y = torch.nn.functional.conv2d(x, w, None, stride, pad, dil, groups)
        gy = torch.randn_like(y)
        y.backward(gy)
        xv = e.graph.add_input(f"x{k}", TensorType(xs, ember.float32))
        gv = e.graph.add_input(f"gy{k}", TensorType(tuple(y.shape), ember.float32))
        two = (lambda v: tuple(v) if isinstance(v, tuple) else (v, v))
        outs.append(e.conv_weight_grad(xv, gv, kernel_size=ws[2:], stride=two(stride),
                                       padding=tuple(p for q in pad for p in (q, q)), dilation=two(dil),
                                       groups=groups))
        feeds += [x.numpy(), gy.numpy()]
        wants.append(w.grad.numpy())
    exe = compile_graph(e.graph.finish(tuple(outs)), "cuda", cache=False).executable
    image = exe.owner
    launches = [ln for ln in image.launches if ln.function.startswith("ember_gemm_bi_")]
    assert len(launches) == sum(c[-1] for c in WEIGHT_GRADS)  # one per group, the whole batch in K
    assert all(ln.args[-1] == ("i64", 1) for ln in launches)  # transposed
    emu = EmulatedCuda(exe, tmp_path)
    got = emu(*feeds)
    emu.close()
    for c, g, want in zip(WEIGHT_GRADS, got, wants, strict=True):
        np.testing.assert_allclose(g, want, rtol=1e-4, atol=2e-4, err_msg=str(c))
