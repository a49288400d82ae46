"""The template-lowered ops of the LLVM coverage table (tests/compiler/codegen/test_llvm_coverage.py: cat,
roll, index/gather/scatter, upsample, adaptive and region pooling, sort, select_k, ...), one single-node
kernel each, compiled for CUDA as one program and run by the host emulator against each op's
reference."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from cuda_host_emulator import EmulatedCuda, compiler_available
from ember.compiler.codegen.cuda.nvrtc import nvrtc_available
from ember.compiler.codegen.cuda.program import compile_program
from ember.compiler.kernel.lower import sanitize
from ember.compiler.kernel.program import build_program

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from test_llvm_coverage import CASES, SPECS  # noqa: E402

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not nvrtc_available(), reason="NVRTC missing: pip install nvidia-cuda-nvrtc-cu12"),
              pytest.mark.skipif(not compiler_available(), reason="the host emulator needs g++")]


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[np.ndarray, ...]]:
    groups = [c[0] for c in CASES]
    inputs = [i for g in groups for i in g.inputs]
    outputs = [o for g in groups for o in g.outputs]
    exe = compile_program(build_program("coverage", groups, inputs, outputs), {},
                          {sanitize(v): v for v in [*inputs, *outputs]})
    emu = EmulatedCuda(exe, tmp_path_factory.mktemp("cuda_templates"))
    flat = emu(*[a for spec in SPECS for a in spec[1]])
    emu.close()
    out, j = [], 0
    for g in groups:
        out.append(tuple(flat[j:j + len(g.outputs)]))
        j += len(g.outputs)
    return out


@pytest.mark.parametrize("k", range(len(SPECS)), ids=[f"{s[0]}_{k}" for k, s in enumerate(SPECS)])
def test_template_op_matches_reference(k: int, results: list[tuple[np.ndarray, ...]]) -> None:
    for got, want in zip(results[k], CASES[k][1], strict=True):
        assert got.dtype == want.dtype and got.shape == want.shape
        if want.dtype.kind == "f":
            tol = 2e-3 if want.dtype == np.float16 else 2e-5
            np.testing.assert_allclose(got, want, rtol=tol, atol=tol, equal_nan=True)
        else:
            np.testing.assert_array_equal(got, want)
