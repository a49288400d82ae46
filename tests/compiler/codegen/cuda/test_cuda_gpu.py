"""On a GPU: compiled CUDA (runtime/cuda.py) against eager CPU for the zoo models and a set of registry
ops, with and without CUDA-graph replay. Skipped, with the reason, where ember.cuda.is_available() is
False (no cupy, no driver or no GPU)."""

from __future__ import annotations

from typing import Any

import ember
import ember.nn.functional as F
import numpy as np
import pytest
from ember.compiler.compile import compile_graph
from ember.tracing import trace
from ember.vision.models import alexnet, lenet5, resnet18, vgg11_bn

pytestmark = pytest.mark.skipif(not ember.cuda.is_available(),
                                reason="no usable CUDA GPU (ember.cuda.is_available() is False)")


def run_on_gpu(fn: Any, inputs: tuple[ember.Tensor, ...], graph: bool = False) -> tuple[list[Any], list[Any]]:
    from ember.runtime.cuda import CudaExecutable

    exe = compile_graph(trace(fn, *inputs), "cuda", cache=False).executable
    runner = CudaExecutable(exe, graph=graph)
    got = runner(*[x.numpy() for x in inputs])
    if graph:  # the replayed graph gives the same numbers again
        again = runner(*[x.numpy() for x in inputs])
        for a, b in zip(got, again):
            np.testing.assert_array_equal(a, b)
    with ember.no_grad():
        want = fn(*inputs)
    want = list(want) if isinstance(want, tuple) else [want]
    return list(got), [w.numpy() for w in want]


@pytest.mark.parametrize("make, shape", [(lenet5, (4, 1, 28, 28)), (lambda: alexnet(num_classes=10), (2, 3, 64, 64)),
                                         (lambda: vgg11_bn(num_classes=10), (2, 3, 32, 32)),
                                         (lambda: resnet18(num_classes=10), (2, 3, 64, 64))])
@pytest.mark.parametrize("graph", [False, True])
def test_zoo_model_matches_eager_cpu(make: Any, shape: tuple[int, ...], graph: bool) -> None:
    ember.manual_seed(0)
    model = make().eval()
    (got,), (want,) = run_on_gpu(model, (ember.randn(*shape),), graph)
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3)


OPS = {
    "softmax": lambda x: F.softmax(x, dim=-1),
    "log_softmax": lambda x: F.log_softmax(x, dim=0),
    "layer_norm": lambda x: F.layer_norm(x, (x.shape[-1],)),
    "sum_all": lambda x: x.sum(),
    "mean_dim0": lambda x: x.mean(dim=0),
    "argmax": lambda x: x.argmax(dim=1),
    "cumsum": lambda x: ember.cumsum(x, dim=1),
    "sort": lambda x: ember.sort(x, dim=1).values,
    "unary_chain": lambda x: (x.exp() - x.sigmoid() + x.abs().sqrt() + x.tanh()).clamp(-2, 2),
    "matmul_relu": lambda x: F.relu(x @ x.t() + 1.0),
    "half": lambda x: x.half() * 3,
    "gather": lambda x: ember.take_along_dim(x, x.argsort(dim=1), dim=1),
}


@pytest.mark.parametrize("name", sorted(OPS))
def test_registry_op_matches_eager_cpu(name: str) -> None:
    ember.manual_seed(1)
    got, want = run_on_gpu(OPS[name], (ember.randn(33, 257),))
    for g, w in zip(got, want):
        if w.dtype.kind == "f":
            np.testing.assert_allclose(g.astype(np.float64), w.astype(np.float64), rtol=1e-4, atol=1e-4)
        else:
            np.testing.assert_array_equal(g, w)

