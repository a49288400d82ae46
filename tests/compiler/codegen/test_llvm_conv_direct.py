"""Direct convolutions (``codegen/llvm/conv_direct.py``): implicit-GEMM convolutions computed with the
output channels in the vector lanes, through ``ember.compile``, against torch's conv.

The shapes hit the kernel's edges: every tile height (8, 7, 4), a short last tile (masked stores), a
last block of fewer than 16 channels, tiles that run across output-row breaks and across images (the
batched schedule), stride, dilation, groups, a depth of several thousand, every fused epilogue operand,
and one and two threads (two threads split channel blocks, or positions when there is a single block).
The direct path is forced on, so hosts without AVX-512 run it too (LLVM splits the 16-lane vectors)."""

from __future__ import annotations

from typing import Any

import ember
import ember.nn as nn
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from ember.compiler.codegen.llvm import conv_direct

# (batch, in channels, height, width, out channels, kernel, stride, padding, dilation, groups, tail)
SPECS: list[tuple[Any, ...]] = [
    (1, 16, 8, 8, 64, 3, 1, 1, 1, 1, "bn_relu"),             # 64 positions, 4 channel blocks
    (1, 8, 7, 7, 20, 3, 1, 1, 1, 1, "bias"),                 # 49: tiles of 7; a 4-channel block
    (1, 12, 13, 1, 32, 3, 1, 1, 1, 1, "bn_residual_relu"),   # 13: tiles of 7, the last one short (masked)
    (1, 16, 10, 2, 16, 3, 1, 1, 1, 1, "bias"),               # 20 positions: tiles of 4 (two threads: 10 each)
    (2, 6, 4, 4, 24, 3, 1, 1, 1, 1, "bn_residual_relu"),     # batched: 32 positions over two images
    (3, 4, 2, 2, 16, 3, 1, 1, 1, 1, "relu"),                 # batched: 12 positions in tiles of 4
    (5, 4, 2, 3, 16, 3, 1, 1, 1, 1, "bias_relu"),            # batched: 30 positions, tiles across images
    (1, 3, 32, 32, 64, 7, 2, 3, 1, 1, "bn_relu"),            # a ResNet stem (stride 2)
    (1, 8, 11, 13, 6, 3, (2, 1), (1, 2), (2, 1), 1, "none"),  # strided, dilated, fewer channels than lanes
    (2, 8, 9, 9, 32, 3, 1, 1, 1, 2, "bias_relu"),            # groups: one GEMM per image and group
    (1, 300, 5, 6, 32, 3, 1, 1, 1, 1, "bn_residual"),        # K = 2700, with a residual and no activation
    (4, 16, 10, 10, 16, 5, 1, 0, 1, 1, "bias_relu"),         # per-image slots, one channel block
]


class _Block(nn.Module):
    """conv, then the tail the spec names (batch-norm affine, bias, residual, relu)."""

    def __init__(self, spec: tuple[Any, ...]) -> None:
        super().__init__()
        _, cin, _, _, cout, k, stride, pad, dil, groups, tail = spec
        self.tail = tail
        self.conv = nn.Conv2d(cin, cout, k, stride=stride, padding=pad, dilation=dil, groups=groups,
                              bias="bias" in tail)
        self.bn = nn.BatchNorm2d(cout) if tail.startswith("bn") else None

    def forward(self, x: Any, r: Any) -> Any:
        y = self.conv(x)
        if self.bn is not None:
            y = self.bn(y)
        if "residual" in self.tail:
            y = y + r
        return ember.relu(y) if self.tail.endswith("relu") else y


def _reference(block: _Block, x: np.ndarray, r: np.ndarray) -> np.ndarray:
    c = block.conv
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a.detach().numpy() if hasattr(a, "detach") else a))  # noqa: E731
    y = F.conv2d(t(x), t(c.weight), None if c.bias is None else t(c.bias), c.stride, c.padding,
                 c.dilation, c.groups)
    if block.bn is not None:
        bn = block.bn
        y = F.batch_norm(y, t(bn.running_mean), t(bn.running_var), t(bn.weight), t(bn.bias), False, 0.0, bn.eps)
    if "residual" in block.tail:
        y = y + t(r)
    return (torch.relu(y) if block.tail.endswith("relu") else y).numpy()


@pytest.fixture(autouse=True)
def _direct_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(conv_direct, "direct_available", lambda: True)
    monkeypatch.setenv("EMBER_CACHE_DIR", "off")


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("k", range(len(SPECS)), ids=[f"{s[0]}x{s[1]}x{s[2]}x{s[3]}-{s[4]}k{s[5]}-{s[10]}"
                                                       for s in SPECS])
def test_direct_conv_matches_torch(k: int, threads: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMBER_NUM_THREADS", str(threads))
    spec = SPECS[k]
    ember.manual_seed(k)
    block = _Block(spec).eval()
    if block.bn is not None:  # running statistics away from the identity, so the affine matters
        block.bn.running_mean.copy_(ember.randn(spec[4]) * 0.1)
        block.bn.running_var.copy_(ember.rand(spec[4]) + 0.5)
        block.bn.weight.data.copy_(ember.rand(spec[4]) + 0.5)
        block.bn.bias.data.copy_(ember.randn(spec[4]))
    x = ember.randn(spec[0], spec[1], spec[2], spec[3])
    with ember.no_grad():
        r = ember.randn(*block(x, ember.zeros(1)).shape) if "residual" in spec[10] else ember.zeros(1)
        fast = ember.compile(block)
        got = fast(x, r).numpy()
        sources = fast.compiled_for(x, r).result.executable.sources["llvm"]
    assert "ember_conv_direct_" in sources  # the direct kernel ran, not the packed template
    np.testing.assert_allclose(got, _reference(block, x.numpy(), r.numpy()), rtol=1e-4, atol=1e-4)


def test_direct_available_needs_avx512(monkeypatch: pytest.MonkeyPatch) -> None:
    from ember.compiler.codegen.llvm import jit

    monkeypatch.undo()  # the real rule, not the fixture's
    monkeypatch.setattr(jit, "host_vector_lanes", lambda: 8)
    assert not conv_direct.direct_available()
    monkeypatch.setattr(jit, "host_vector_lanes", lambda: 16)
    assert conv_direct.direct_available()
    monkeypatch.setattr(conv_direct, "DIRECT_CONV", False)
    assert not conv_direct.direct_available()
    assert not conv_direct.direct_pays(transposed=False)
