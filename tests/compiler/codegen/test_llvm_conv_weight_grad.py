"""conv_weight_grad kernels (one GEMM per group over the whole batch) against torch's weight gradient:
batches 1/3/32, odd channel counts, 1x1 kernels, strides, padding, dilation, groups (the single-group
case has no group loop, so its im2col runs as top-level parallel loops), 1-d and 3-d."""

from __future__ import annotations

from typing import Any

import ember
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from ember.compiler.autodiff import GraphEmitter
from ember.compiler.compile import compile_graph
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
