"""conv_transpose (a convolution's input gradient): the generated kernel against torch in both lowerings
(the forward-conv form and batched GEMM + col2im, each forced by a fixture) for strides, padding,
dilation, groups incl. depthwise, 1x1 kernels and 1x1 planes whose unused taps are cut, batches 1/3/5/32
(per-image, batched and positions schedules; col2im chunks with a remainder), odd channel counts; a fused
bias + relu tail; the cost estimate's choice on LeNet and ResNet shapes; and a compiled training step's
gradients against eager ember and torch."""

from __future__ import annotations

from typing import Any

import ember
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from ember.compiler.autodiff import GraphEmitter
from ember.compiler.compile import compile_graph
from ember.compiler.kernel import lower_conv_input_grad
from ember.compiler.kernel.lower import lower_group
from ember.compiler.kernel.lower_conv_input_grad import forward_geometry
from ember.compiler.ops.registry import TensorType
from ember.runtime.cpu import CpuExecutable


def _graph(build: Any, *arrays: np.ndarray) -> Any:
    e = GraphEmitter()
    vals = [e.graph.add_input(f"in{i}", TensorType(a.shape, ember.float32)) for i, a in enumerate(arrays)]
    return e.graph.finish(build(e, *vals))


def _compiled(build: Any, *arrays: np.ndarray) -> np.ndarray:
    # no disk cache: the tests force one lowering or the other for the same graph
    return CpuExecutable(compile_graph(_graph(build, *arrays), cache=False).executable)(*arrays)[0]


@pytest.fixture(params=["forward", "col2im"])
def path(request: Any, monkeypatch: Any) -> str:
    """Force the forward-conv form (where the geometry has one) or GEMM + col2im, whatever the cost
    estimate would pick, so both lowerings are checked on every case."""
    monkeypatch.setattr(lower_conv_input_grad, "_forward_pays", lambda *a: request.param == "forward")
    return str(request.param)


def _pads(pad: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(p for q in pad for p in (q, q))


# (conv input x shape, conv weight shape, stride, padding, dilation, groups): the conv_transpose computes
# the input gradient of this convolution
CASES = [
    ((3, 5, 9, 7), (7, 5, 3, 3), 1, (1, 1), 1, 1),          # odd channels, batch 3, per image
    ((32, 8, 1, 1), (16, 8, 3, 3), 1, (1, 1), 1, 1),        # 1x1 plane: only the centre tap is used
    ((32, 16, 2, 2), (8, 16, 3, 3), 2, (1, 1), 1, 1),       # stride 2 onto a 1x1 plane (batched)
    ((1, 6, 4, 4), (6, 6, 3, 3), 1, (1, 1), 1, 1),          # batch 1, 4x4 plane
    ((1, 4, 2, 2), (6, 4, 3, 3), 1, (1, 1), 1, 1),          # positions schedule (1 x 4 positions)
    ((2, 4, 9, 7), (6, 2, 3, 2), 2, (1, 0), 2, 2),          # groups, stride 2, dilation 2
    ((3, 6, 8, 8), (6, 1, 3, 3), 1, (1, 1), 1, 6),          # depthwise
    ((3, 6, 9, 9), (12, 1, 3, 3), 2, (1, 1), 1, 6),         # depthwise multiplier 2, stride 2
    ((2, 8, 8, 8), (16, 8, 1, 1), 2, (0, 0), 1, 1),         # 1x1 stride-2 shortcut
    ((3, 3, 10, 10), (5, 3, 1, 1), 1, (0, 0), 1, 1),        # 1x1 stride 1
    ((2, 3, 11, 11), (4, 3, 5, 5), 3, (2, 2), 1, 1),        # stride 3, output padding 1 or 2
    ((32, 4, 8, 8), (6, 4, 3, 3), 1, (1, 1), 1, 1),         # batch 32 at 8x8
    ((4, 3, 7), (5, 3, 3), 2, (1,), 1, 1),                  # 1-d
    ((5, 3, 20, 20), (4, 3, 3, 3), 1, (1, 1), 1, 1),        # col2im: chunks of 2 images and a last one
]


@pytest.mark.parametrize("xs,ws,stride,pad,dil,groups", CASES)
def test_input_gradient_kernel_equals_torch(xs: Any, ws: Any, stride: int, pad: Any, dil: int,
                                            groups: int, path: str) -> None:
    torch.manual_seed(0)
    nd = len(xs) - 2
    x, w = torch.randn(*xs, requires_grad=True), torch.randn(*ws)
    conv = {1: F.conv1d, 2: F.conv2d}[nd]
    y = conv(x, w, None, stride, pad, dil, groups)
    gy = torch.randn_like(y)
    y.backward(gy)
    extra = tuple(xs[2 + i] - ((y.shape[2 + i] - 1) * stride - 2 * pad[i] + dil * (ws[2 + i] - 1) + 1)
                  for i in range(nd))
    assert forward_geometry(tuple(y.shape[2:]), tuple(xs[2:]), tuple(ws[2:]), {
        "stride": (stride,) * nd, "padding": _pads(pad), "dilation": (dil,) * nd}) is not None
    got = _compiled(lambda e, gv, wv: e.conv_transpose(
        gv, wv, stride=(stride,) * nd, padding=_pads(pad), output_padding=extra, dilation=(dil,) * nd,
        groups=groups), gy.numpy(), w.numpy())
    np.testing.assert_allclose(got, x.grad.numpy(), rtol=1e-4, atol=1e-4)


def test_unused_taps_are_cut() -> None:
    """A 3x3 kernel over a 1x1 plane with padding 1 keeps one tap and no padding; a 2x2 plane keeps all."""
    attrs = {"stride": (1, 1), "padding": (1, 1, 1, 1), "dilation": (1, 1)}
    assert forward_geometry((1, 1), (1, 1), (3, 3), attrs) == [(1, 1, 0, 0), (1, 1, 0, 0)]
    assert forward_geometry((2, 2), (2, 2), (3, 3), attrs) == [(0, 3, 1, 1), (0, 3, 1, 1)]
    # a padding beyond (k-1)*dilation has no stride-1 equivalent: the GEMM + col2im lowering stays
    assert forward_geometry((5,), (3,), (2,), {"stride": (1,), "padding": (2, 2), "dilation": (1,)}) is None


@pytest.mark.parametrize("ys,ws,stride,pad,outpad", [
    ((2, 4, 5, 5), (4, 3, 3, 3), 2, 1, 1),     # ConvTranspose2d upsampling
    ((3, 6, 4, 4), (6, 2, 2, 2), 2, 0, 0),     # kernel = stride: no overlap
    ((2, 4, 6, 6), (4, 3, 2, 2), 1, 2, 0),     # padding 2 > k-1: the col2im fallback
])
def test_conv_transpose_with_bias_relu_equals_torch(ys: Any, ws: Any, stride: int, pad: int,
                                                    outpad: int, path: str) -> None:
    torch.manual_seed(1)
    y, w, b = torch.randn(*ys), torch.randn(*ws), torch.randn(ws[1], 1, 1)
    want = torch.relu(F.conv_transpose2d(y, w, None, stride, pad, outpad) + b)
    got = _compiled(lambda e, yv, wv, bv: e.relu(e.add(e.conv_transpose(
        yv, wv, stride=(stride,) * 2, padding=(pad,) * 4, output_padding=(outpad,) * 2, dilation=(1, 1),
        groups=1), bv)), y.numpy(), w.numpy(), b.numpy())
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("ys,ws,pad,forward", [
    ((32, 512, 1, 1), (512, 512, 3, 3), 1, True),    # ResNet-18 layer4: 1 tap of 9, batched GEMM
    ((32, 64, 8, 8), (64, 64, 3, 3), 1, True),       # ResNet-18 layer1
    ((64, 16, 8, 8), (16, 6, 5, 5), 0, False),       # LeNet conv2: 6 output channels, 144 vs 64 positions
])
def test_cost_estimate_picks_the_lowering(ys: Any, ws: Any, pad: int, forward: bool) -> None:
    arrays = (np.zeros(ys, np.float32), np.zeros(ws, np.float32))
    graph = _graph(lambda e, yv, wv: e.conv_transpose(yv, wv, stride=(1, 1), padding=(pad,) * 4,
                                                      output_padding=(0, 0), dilation=(1, 1), groups=1), *arrays)
    (group,) = compile_graph(graph, cache=False).groups
    scratch = {b.name.rsplit("_", 1)[-1] for b in lower_group(group).scratch}
    assert ("wf" in scratch) is forward  # the flipped weight of the forward-convolution route
    if not forward:
        assert "cols" in scratch  # the GEMM + col2im route (the forward route's per-image GEMM reads the
        # padded gradient in place: implicit GEMM)


def test_compiled_training_step_gradients_equal_eager_and_torch() -> None:
    """A two-conv block's weight gradients through ember.compile(step) (the first conv's gradient flows
    through the second's rewritten input-gradient kernel) against eager ember and torch."""
    torch.manual_seed(2)
    x = np.random.default_rng(3).standard_normal((3, 3, 6, 6)).astype(np.float32)
    c1, c2 = torch.nn.Conv2d(3, 5, 3, 2, 1), torch.nn.Conv2d(5, 4, 3, 1, 1)
    (c2(torch.relu(c1(torch.from_numpy(x)))) ** 2).sum().backward()
    grads = {}
    for compiled in (False, True):
        e1, e2 = ember.nn.Conv2d(3, 5, 3, 2, 1), ember.nn.Conv2d(5, 4, 3, 1, 1)
        for dst, src in ((e1, c1), (e2, c2)):
            dst.weight.data = ember.tensor(src.weight.detach().numpy())
            dst.bias.data = ember.tensor(src.bias.detach().numpy())

        def step(inp: Any, e1: Any = e1, e2: Any = e2) -> Any:
            loss = (e2(ember.relu(e1(inp))) ** 2).sum()
            loss.backward()
            return loss

        (ember.compile(step) if compiled else step)(ember.tensor(x))
        grads[compiled] = e1.weight.grad.numpy().copy()
    np.testing.assert_allclose(grads[True], grads[False], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(grads[True], c1.weight.grad.numpy(), rtol=1e-4, atol=1e-4)
