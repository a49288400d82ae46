"""Every sample of the math op table (tests/compiler/ops/opinfo_math.py: elementwise, reduce and sorting
ops, all dtypes and special values) compiled for CUDA as one graph, run by the host emulator, against
torch; on a GPU also run for real (runtime/cuda.py). One compilation serves all cases (a module
fixture), so the per-case tests only compare."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import ember
import numpy as np
import pytest
import torch
from cuda_host_emulator import EmulatedCuda, compiler_available
from ember.compiler.codegen.cuda.nvrtc import nvrtc_available
from ember.compiler.compile import compile_graph
from ember.tracing import trace

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "ops"))
import opinfo_math as O  # noqa: E402

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not nvrtc_available(), reason="NVRTC missing: pip install nvidia-cuda-nvrtc-cu12"),
              pytest.mark.skipif(not compiler_available(), reason="the host emulator needs g++")]

_SORTING = ("argsort", "sort", "topk", "median", "mode", "msort", "kthvalue", "nanmedian")
# 0-d inputs to sorting ops are eager-only (lowering refuses them with a CompileError naming the op)
CASES = [c for c in O.CASES
         if not (c.op in _SORTING and any(isinstance(a, np.ndarray) and a.ndim == 0 for a in c.args))]
# cases with a known lowering bug, marked as strict xfails (none at present)
KNOWN_BAD: set[str] = set()


def _call(lib: Any, case: O.Case, args: list[Any]) -> list[Any]:
    out = case.call(lib, *args, **O._kwargs(lib, case.kwargs)) if case.call is not None else \
        getattr(lib, case.api or case.op)(*args, **O._kwargs(lib, case.kwargs))
    return list(out) if isinstance(out, (tuple, list)) else [out]


def _all_cases(*tensors: ember.Tensor) -> tuple[ember.Tensor, ...]:
    it = iter(tensors)
    outs: list[ember.Tensor] = []
    for case in CASES:
        args = [next(it) if isinstance(a, np.ndarray) else a for a in case.args]
        outs += [o for o in _call(ember, case, args) if isinstance(o, ember.Tensor)]
    return tuple(outs)


@pytest.fixture(scope="module")
def compiled() -> tuple[Any, list[np.ndarray]]:
    """The executable of all cases and its input arrays."""
    arrays = [a for c in CASES for a in c.args if isinstance(a, np.ndarray)]
    tensors = [O._convert(ember, a, False, False) for a in arrays]
    exe = compile_graph(trace(_all_cases, *tensors), "cuda", cache=False).executable
    return exe, [np.ascontiguousarray(t.numpy()) for t in tensors]


def _per_case(flat_outputs: tuple[np.ndarray, ...]) -> list[list[np.ndarray]]:
    flat = iter(flat_outputs)
    per_case = []
    for case in CASES:
        n = sum(isinstance(o, ember.Tensor) for o in _call(ember, case, [O._convert(ember, a, False, False)
                                                                          for a in case.args]))
        per_case.append([next(flat) for _ in range(n)])
    return per_case


@pytest.fixture(scope="module")
def emulated(compiled: tuple[Any, list[np.ndarray]], tmp_path_factory: pytest.TempPathFactory) -> list[list[Any]]:
    exe, inputs = compiled
    emu = EmulatedCuda(exe, tmp_path_factory.mktemp("cuda_ops"))
    outs = emu(*inputs)
    emu.close()
    return _per_case(outs)


@pytest.fixture(scope="module")
def on_gpu(compiled: tuple[Any, list[np.ndarray]]) -> list[list[Any]]:
    if not ember.cuda.is_available():
        pytest.skip("no usable CUDA GPU (ember.cuda.is_available() is False)")
    from ember.runtime.cuda import CudaExecutable

    exe, inputs = compiled
    return _per_case(CudaExecutable(exe)(*inputs))


_BUG = pytest.mark.xfail(strict=True, reason="known lowering bug (the LLVM target gives the same wrong value)")


@pytest.mark.parametrize("k", [pytest.param(k, id=str(c), marks=[_BUG] if str(c) in KNOWN_BAD else [])
                               for k, c in enumerate(CASES)])
@pytest.mark.parametrize("where", ["emulated", "on_gpu"])
def test_case_matches_torch(k: int, where: str, request: pytest.FixtureRequest) -> None:
    case = CASES[k]
    got = request.getfixturevalue(where)[k]
    expected = [e for e in _call(torch, case, [O._convert(torch, a, False, False) for a in case.args])
                if isinstance(e, torch.Tensor)]
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        e = e.numpy()
        assert g.dtype == e.dtype and g.shape == e.shape, f"{case}: {g.dtype}{g.shape} vs {e.dtype}{e.shape}"
        if e.dtype.kind == "f":
            rtol, atol = O._tolerance(case, str(e.dtype))
            np.testing.assert_allclose(g.astype(np.float64), e.astype(np.float64), rtol=rtol or 1e-5,
                                       atol=atol or 1e-6, equal_nan=True)
        else:
            np.testing.assert_array_equal(g, e)
