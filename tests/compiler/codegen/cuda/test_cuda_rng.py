"""The counter-based generator in generated CUDA C (run by the host emulator): the same bits as eager mode,
so CPU and CUDA back ends give the same dropout masks for the same seed."""

from __future__ import annotations

from pathlib import Path

import ember
import numpy as np
import pytest
from cuda_host_emulator import EmulatedCuda, compiler_available
from ember.compiler.codegen.cuda.nvrtc import nvrtc_available
from ember.compiler.compile import compile_graph
from ember.compiler.ops import REGISTRY
from ember.dispatch import apply
from ember.tracing import trace

pytestmark = [pytest.mark.skipif(not nvrtc_available(), reason="NVRTC missing: pip install nvidia-cuda-nvrtc-cu12"),
              pytest.mark.skipif(not compiler_available(), reason="the host emulator needs g++")]


def streams(seed: ember.Tensor) -> tuple[ember.Tensor, ...]:
    return (apply(REGISTRY["philox_bits"], (seed,), {"shape": (37, 41), "offset": 2 ** 33 + 3}),
            apply(REGISTRY["philox_uniform"], (seed,), {"shape": (5, 7), "offset": 0}),
            apply(REGISTRY["dropout_keep_mask"], (seed,), {"shape": (300,), "p": 0.3, "offset": 1}))


@pytest.mark.slow
def test_generated_cuda_gives_the_eager_bits(tmp_path: Path) -> None:
    exe = compile_graph(trace(streams, ember.tensor(0, dtype=ember.int64)), "cuda", cache=False).executable
    run = EmulatedCuda(exe, tmp_path)
    for s in (-123456789, 2 ** 63 - 1, 7):
        seed = ember.tensor(s, dtype=ember.int64)
        got = run(seed.numpy())
        want = streams(seed)
        assert len(got) == len(want)
        for g, w in zip(got, want):
            assert g.dtype == w.numpy().dtype and g.shape == tuple(w.shape)
            np.testing.assert_array_equal(g, w.numpy())
