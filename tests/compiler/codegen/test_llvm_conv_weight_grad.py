"""conv_weight_grad kernels (one GEMM per group over the whole batch) against torch's weight gradient:
batches 1/3/32, odd channel counts, 1x1 kernels, strides, padding, dilation, groups (the single-group
case has no group loop, so its im2col runs as top-level parallel loops), 1-d and 3-d; 2-d ones both by
the implicit GEMM (the template packs ``cols^T`` from the padded input: ``Im2col(transposed=True)``) and
by the im2col matrix (``lower_conv_grad.IMPLICIT_GEMM`` off)."""

from __future__ import annotations

from typing import Any

import ember
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from ember.compiler.autodiff import GraphEmitter
from ember.compiler.compile import compile_graph
from ember.compiler.kernel import lower_conv_grad
from ember.compiler.kernel.lower import lower_group
from ember.compiler.ops.registry import TensorType
from ember.runtime.cpu import CpuExecutable

# (conv input shape, weight shape, stride, padding per dim, dilation, groups)
CASES = [
    ((1, 5, 9, 7), (7, 5, 3, 3), 1, (1, 1), 1, 1),          # batch 1, odd channels
    ((3, 3, 11, 10), (5, 3, 5, 5), 2, (2, 1), 1, 1),        # batch 3, stride 2, uneven padding
    ((32, 16, 1, 1), (24, 16, 3, 3), 1, (1, 1), 1, 1),      # 1x1 plane at batch 32
    ((32, 8, 4, 4), (8, 8, 3, 3), 1, (1, 1), 1, 1),         # batch 32, small plane
    ((3, 9, 6, 6), (11, 9, 1, 1), 1, (0, 0), 1, 1),         # 1x1 kernel
    ((2, 8, 8, 8), (16, 8, 1, 1), 2, (0, 0), 1, 1),         # 1x1 stride-2 shortcut
    ((3, 6, 9, 8), (9, 2, 3, 3), 1, (2, 2), 2, 3),          # groups, dilation 2
    ((3, 4, 7, 7), (4, 1, 3, 3), 2, (1, 1), 1, 4),          # depthwise
    ((4, 3, 13), (5, 3, 4), 3, (1,), 1, 1),                 # 1-d, even kernel
    ((2, 2, 4, 5, 4), (3, 2, 2, 3, 2), 1, (1, 0, 1), 1, 1),  # 3-d
]
# implicit GEMM: K = N*P over several KC (384) blocks, N = Cg*kh*kw over several NC (4096) blocks
LARGE = [
    ((4, 6, 23, 19), (10, 3, 3, 2), (2, 1), (1, 2), (2, 1), 2),   # K = 4*11*19 = 836; everything non-square
    ((3, 16, 20, 17), (70, 16, 3, 3), 1, (1, 1), 1, 1),           # K = 1020, M = 70
    ((1, 460, 5, 5), (3, 460, 3, 3), 1, (1, 1), 1, 1),            # N = 4140: two NC blocks
    ((5, 12, 15, 14), (9, 4, 3, 3), 2, (0, 0), 1, 3),             # unpadded: reads the input itself
]


def _graph(xs: Any, ys: Any, ws: Any, stride: Any, pad: Any, dil: Any, groups: int) -> Any:
    nd = len(xs) - 2
    e = GraphEmitter()
    xv = e.graph.add_input("x", TensorType(xs, ember.float32))
    gv = e.graph.add_input("gy", TensorType(tuple(ys), ember.float32))
    tup = (lambda v: tuple(v) if isinstance(v, tuple) else (v,) * nd)
    return e.graph.finish(e.conv_weight_grad(
        xv, gv, kernel_size=ws[2:], stride=tup(stride), padding=tuple(p for q in pad for p in (q, q)),
        dilation=tup(dil), groups=groups))


def _check(xs: Any, ws: Any, stride: Any, pad: Any, dil: Any, groups: int) -> str:
    """Compile the weight gradient, compare with torch, return the kernel IR text."""
    torch.manual_seed(0)
    nd = len(xs) - 2
    x, w = torch.randn(*xs), torch.randn(*ws, requires_grad=True)
    y = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[nd](x, w, None, stride, pad, dil, groups)
    gy = torch.randn_like(y)
    y.backward(gy)
    result = compile_graph(_graph(xs, y.shape, ws, stride, pad, dil, groups), cache=False)
    got = CpuExecutable(result.executable)(x.numpy(), gy.numpy())[0]
    np.testing.assert_allclose(got, w.grad.numpy(), rtol=1e-4, atol=2e-4)
    return "\n".join(str(lower_group(g).kernel) for g in result.groups)


@pytest.mark.parametrize("threads", ["1", "2"])
@pytest.mark.parametrize("xs,ws,stride,pad,dil,groups", LARGE)
def test_implicit_weight_gradient_spans_blocks(xs: Any, ws: Any, stride: Any, pad: Any, dil: Any, groups: int,
                                               threads: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMBER_NUM_THREADS", threads)  # 2: the threads' column ranges start mid-matrix
    monkeypatch.setattr(lower_conv_grad, "IMPLICIT_STRIDED", True)  # strided rows: the gathered packing
    text = _check(xs, ws, stride, pad, dil, groups)
    assert "_cols" not in text and "im2col(" in text and ")^T;" in text
    assert ("_pad:" in text) == any(pad)


def test_implicit_weight_gradient_kernel_text() -> None:
    # by default strided weight gradients keep the im2col matrix (measured faster)
    assert "_cols" in _check((2, 3, 9, 8), (4, 3, 3, 3), 2, (1, 1), 1, 1)
    text = _check((3, 6, 9, 8), (9, 2, 3, 3), 1, (2, 2), 2, 3)
    # [Cog, N*P] @ im2col^T of group g's channels of the padded input: rows positions, columns taps
    assert "_cols" not in text
    assert "= gemm[3x18x216](t0_dyt[g" in text and " * 312] im2col(k=3x3 stride=1x1 dilation=2x2 wout=8 wp=12 " \
           "plane=156 images=72/936)^T; epilogue=plain)" in text, text


@pytest.mark.parametrize("xs,ws,stride,pad,dil,groups", CASES + LARGE[:2])
def test_im2col_matrix_path_still_equals_torch(xs: Any, ws: Any, stride: Any, pad: Any, dil: Any, groups: int,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lower_conv_grad, "IMPLICIT_GEMM", False)
    text = _check(xs, ws, stride, pad, dil, groups)
    assert "_cols" in text and "im2col(" not in text


@pytest.mark.parametrize("xs,ws,stride,pad,dil,groups", CASES)
def test_weight_gradient_kernel_equals_torch(xs: Any, ws: Any, stride: int, pad: Any, dil: int,
                                             groups: int) -> None:
    torch.manual_seed(0)
    nd = len(xs) - 2
    x, w = torch.randn(*xs), torch.randn(*ws, requires_grad=True)
    y = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[nd](x, w, None, stride, pad, dil, groups)
    gy = torch.randn_like(y)
    y.backward(gy)
    e = GraphEmitter()
    xv = e.graph.add_input("x", TensorType(xs, ember.float32))
    gv = e.graph.add_input("gy", TensorType(tuple(y.shape), ember.float32))
    graph = e.graph.finish(e.conv_weight_grad(
        xv, gv, kernel_size=ws[2:], stride=(stride,) * nd, padding=tuple(p for q in pad for p in (q, q)),
        dilation=(dil,) * nd, groups=groups))
    got = CpuExecutable(compile_graph(graph, cache=False).executable)(x.numpy(), gy.numpy())[0]
    np.testing.assert_allclose(got, w.grad.numpy(), rtol=1e-4, atol=2e-4)
