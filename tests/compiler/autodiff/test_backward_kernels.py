"""Generated code for the ops only backward graphs use (conv_weight_grad, max_unpool, avg_pool_backward)
against torch's gradients: the kernels compiled training runs are checked on their own, with groups,
stride, padding, dilation, overlapping pooling windows and 1x1 spatial maps."""

from __future__ import annotations

from typing import Any

import ember
import numpy as np
import pytest
import torch
from ember.compiler.autodiff import GraphEmitter
from ember.compiler.compile import compile_graph
from ember.compiler.ops.registry import TensorType
from ember.runtime.cpu import CpuExecutable


def _run(build: Any, *arrays: np.ndarray) -> np.ndarray:
    e = GraphEmitter()
    vals = [e.graph.add_input(f"in{i}", TensorType(a.shape, _dtype(a))) for i, a in enumerate(arrays)]
    graph = e.graph.finish(build(e, *vals))
    return CpuExecutable(compile_graph(graph).executable)(*arrays)[0]


def _dtype(a: np.ndarray) -> Any:
    return ember.int64 if a.dtype == np.int64 else ember.float32


@pytest.mark.parametrize("xs,ws,stride,pad,dil,groups", [
    ((4, 3, 8, 8), (6, 3, 3, 3), 1, (1, 1), 1, 1),
    ((2, 4, 9, 7), (6, 2, 3, 2), 2, (1, 0), 2, 2),
    ((3, 8, 4, 4), (8, 1, 3, 3), 1, (1, 1), 1, 8),
    ((5, 16, 1, 1), (32, 16, 1, 1), 1, (0, 0), 1, 1),
])
def test_conv_weight_grad_kernel_equals_torch(xs: Any, ws: Any, stride: int, pad: Any, dil: int,
                                              groups: int) -> None:
    torch.manual_seed(0)
    x, w = torch.randn(*xs), torch.randn(*ws, requires_grad=True)
    y = torch.nn.functional.conv2d(x, w, None, stride, pad, dil, groups)
    gy = torch.randn_like(y)
    y.backward(gy)
    got = _run(lambda e, xv, gv: e.conv_weight_grad(
        xv, gv, kernel_size=ws[2:], stride=(stride,) * 2, padding=(pad[0], pad[0], pad[1], pad[1]),
        dilation=(dil,) * 2, groups=groups), x.numpy(), gy.numpy())
    np.testing.assert_allclose(got, w.grad.numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("shape,k,s,p", [((2, 3, 8, 8), 2, 2, 0), ((2, 4, 9, 9), 3, 2, 1)])
def test_max_pool_gradient_kernel_equals_torch(shape: Any, k: int, s: int, p: int) -> None:
    torch.manual_seed(1)
    x = torch.randn(*shape, requires_grad=True)
    y, idx = torch.nn.functional.max_pool2d(x, k, s, p, return_indices=True)
    gy = torch.randn_like(y)
    y.backward(gy)
    got = _run(lambda e, gv, iv: e.max_unpool(gv, iv, output_size=shape[2:], accumulate=True),
               gy.numpy(), idx.numpy())
    np.testing.assert_allclose(got, x.grad.numpy(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("shape,k,s,p,ceil,cip", [
    ((2, 3, 7, 7), 7, 7, 0, False, True),
    ((2, 3, 8, 9), 3, 2, 1, False, True),
    ((1, 2, 9, 9), 3, 2, 1, True, False),
])
def test_avg_pool_backward_kernel_equals_torch(shape: Any, k: int, s: int, p: int, ceil: bool,
                                               cip: bool) -> None:
    torch.manual_seed(2)
    x = torch.randn(*shape, requires_grad=True)
    y = torch.nn.functional.avg_pool2d(x, k, s, p, ceil, cip)
    gy = torch.randn_like(y)
    y.backward(gy)
    fwd = ember.trace(lambda t: ember.nn.functional.avg_pool2d(t, k, s, p, ceil, cip), ember.randn(*shape))
    attrs = dict(fwd.nodes[-1].attrs)
    got = _run(lambda e, gv: e.avg_pool_backward(gv, input_size=shape[2:], **attrs), gy.numpy())
    np.testing.assert_allclose(got, x.grad.numpy(), rtol=1e-5, atol=1e-6)
