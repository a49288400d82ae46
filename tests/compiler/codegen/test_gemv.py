"""The GEMM template's small-M (dot-product) path against torch, and a batch-1 Linear compiled end to end.

With ``trans_b`` and M <= SMALL_M the generated entry runs ``gemv.py``'s code: shapes cover partial
column tiles (N not a multiple of 8), K tails (K not a multiple of 8, K = 0), strided operands, every
epilogue operand, and the threaded split of the column tiles; M = SMALL_M + 1 checks the hand-over to
the multi-row dot path (SMALL_M < M <= GemmConfig.dot_max_m), which is checked the same way, plus both
sides of its limits against the packed GEMM and a compiled batch-64 MLP.
"""

from __future__ import annotations

import ember
import llvmlite.ir as ir
import numpy as np
import pytest
import torch
from ember.compiler.codegen.llvm.gemm import Epilogue, GemmConfig, emit_gemm, gemm_callable
from ember.compiler.codegen.llvm.gemv import DOT_MAX_A, PARALLEL_WORK, SMALL_M


def _rand(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed + 7 * sum(shape)).standard_normal(shape, dtype=np.float32)


def _linear(a: np.ndarray, w: np.ndarray) -> torch.Tensor:
    return torch.nn.functional.linear(torch.from_numpy(a).double(), torch.from_numpy(w).double())


def _close(got: np.ndarray, want: torch.Tensor, k: int) -> None:
    tol = 1e-5 * max(k, 1) ** 0.5
    np.testing.assert_allclose(got, want.numpy(), rtol=tol, atol=tol)


SHAPES = [(1, 1, 1), (1, 8, 8), (1, 9, 7), (1, 17, 33), (1, 5, 0), (1, 31, 100), (1, 10, 512), (1, 64, 9)]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_small_m_plain_matches_torch(shape: tuple[int, int, int], threads: int) -> None:
    m, n, k = shape
    a, w = _rand(m, k), _rand(n, k, seed=1)
    got = gemm_callable(trans_b=True, threads=threads)(a, w)
    _close(got, _linear(a, w), k)


def test_bias_relu_epilogue_and_threaded_split() -> None:
    """Large enough to fork (M*N*K >= PARALLEL_WORK); N = 1205 leaves a 5-column edge tile."""
    m, n, k = 1, 1205, 900
    assert m * n * k >= PARALLEL_WORK
    a, w, bias = _rand(m, k), _rand(n, k, seed=2), _rand(n, seed=3)
    f = gemm_callable(Epilogue(col_bias=True, activation="relu"), trans_b=True, threads=2)
    want = torch.relu(_linear(a, w) + torch.from_numpy(bias).double())
    _close(f(a, w, col_bias=bias), want, k)
    assert (f(a, w, col_bias=bias) == 0).any()  # the relu did clip something


def test_every_operand_on_strided_views() -> None:
    """Row strides larger than the widths (lda, ldb, ldc, ldr) and all five epilogue operands."""
    m, n, k = 1, 21, 45
    a = _rand(m, k + 3)[:, :k]
    w = _rand(n, k + 5, seed=4)[:, :k]
    cs, cb, rs, rb = _rand(n, seed=5), _rand(n, seed=6), _rand(m, seed=7), _rand(m, seed=8)
    res = _rand(m, n + 2, seed=9)[:, :n]
    out = np.full((m, n + 4), 7.0, dtype=np.float32)
    epi = Epilogue(col_scale=True, col_bias=True, row_scale=True, row_bias=True, residual=True,
                   activation="tanh")
    gemm_callable(epi, trans_b=True, threads=1)(a, w, col_scale=cs, col_bias=cb, row_scale=rs, row_bias=rb,
                                                 residual=res, out=out[:, :n])
    t = lambda x: torch.from_numpy(np.ascontiguousarray(x)).double()  # noqa: E731
    want = torch.tanh(_linear(np.ascontiguousarray(a), np.ascontiguousarray(w)) * t(cs) * t(rs)[:, None]
                      + t(cb) + t(rb)[:, None] + t(res))
    _close(out[:, :n], want, k)
    assert (out[:, n:] == 7.0).all()  # the padding past N is not written


def test_nan_propagates_through_relu() -> None:
    a, w = _rand(1, 16), _rand(12, 16, seed=10)
    a[0, 3] = np.nan
    got = gemm_callable(Epilogue(activation="relu"), trans_b=True, threads=1)(a, w)
    assert np.isnan(got).all()


@pytest.mark.parametrize("m", [SMALL_M, SMALL_M + 1])
def test_both_sides_of_the_cut(m: int) -> None:
    a, w = _rand(m, 40), _rand(50, 40, seed=11)
    _close(gemm_callable(trans_b=True, threads=1)(a, w), _linear(a, w), 40)


def test_batch1_mlp_compiled_matches_torch() -> None:
    """The compiled model's Linear kernels (M = 1, fused bias + ReLU) take the small-M path."""
    ember.manual_seed(0)
    nn = ember.nn
    model = nn.Sequential(nn.Linear(100, 37), nn.ReLU(), nn.Linear(37, 10)).eval()
    twin = torch.nn.Sequential(torch.nn.Linear(100, 37), torch.nn.ReLU(), torch.nn.Linear(37, 10))
    state = model.state_dict()
    twin.load_state_dict({k: torch.from_numpy(np.array(v.detach().numpy())) for k, v in state.items()})
    x = _rand(1, 100, seed=12)
    with ember.no_grad():
        got = ember.compile(model)(ember.tensor(x)).numpy()
    with torch.no_grad():
        want = twin(torch.from_numpy(x))
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------------
# The multi-row dot path (SMALL_M < M <= GemmConfig.dot_max_m, trans_b): DOT_ROWS x DOT_COLS tiles

DOT_SHAPES = [(2, 17, 33), (3, 5, 0), (4, 31, 100), (5, 1, 1), (5, 7, 9), (7, 13, 17), (8, 6, 8),
              (9, 25, 100), (6, 5, 0), (33, 10, 512), (64, 50, 41), (64, 17, 1024)]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("shape", DOT_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_dot_path_plain_matches_torch(shape: tuple[int, int, int], threads: int) -> None:
    """Odd M (a clamped last row pair), N not a multiple of DOT_COLS, K tails of every length, K = 0."""
    m, n, k = shape
    assert SMALL_M < m <= GemmConfig().dot_max_m and m * k <= DOT_MAX_A
    a, w = _rand(m, k, seed=20), _rand(n, k, seed=21)
    got = gemm_callable(trans_b=True, threads=threads)(a, w)
    _close(got, _linear(a, w), k)


def test_dot_path_bias_relu_threaded_split() -> None:
    """The MLP's fused Linear + bias + ReLU at batch 64, forked (work >= PARALLEL_WORK), odd N."""
    m, n, k = 64, 301, 100
    assert m * n * k >= PARALLEL_WORK
    a, w, bias = _rand(m, k, seed=22), _rand(n, k, seed=23), _rand(n, seed=24)
    want = torch.relu(_linear(a, w) + torch.from_numpy(bias).double())
    for threads in (1, 2, 3):  # 3: the claimed pieces do not divide evenly between the threads
        f = gemm_callable(Epilogue(col_bias=True, activation="relu"), trans_b=True, threads=threads)
        got = f(a, w, col_bias=bias, out=np.full((m, n), np.nan, dtype=np.float32))
        _close(got, want, k)  # every column tile was claimed (NaN where none wrote)
    assert (got == 0).any() and (got > 0).any()


def test_dot_path_every_operand_on_strided_views() -> None:
    m, n, k = 7, 23, 45
    a = _rand(m, k + 3, seed=25)[:, :k]
    w = _rand(n, k + 5, seed=26)[:, 2:k + 2]
    cs, cb, rs, rb = _rand(n, seed=27), _rand(n, seed=28), _rand(m, seed=29), _rand(m, seed=30)
    res = _rand(m, n + 2, seed=31)[:, 1:n + 1]
    out = np.full((m, n + 4), 7.0, dtype=np.float32)
    epi = Epilogue(col_scale=True, col_bias=True, row_scale=True, row_bias=True, residual=True,
                   activation="sigmoid")
    gemm_callable(epi, trans_b=True, threads=2)(a, w, col_scale=cs, col_bias=cb, row_scale=rs, row_bias=rb,
                                                 residual=res, out=out[:, :n])
    t = lambda x: torch.from_numpy(np.ascontiguousarray(x)).double()  # noqa: E731
    want = torch.sigmoid(_linear(np.ascontiguousarray(a), np.ascontiguousarray(w)) * t(cs) * t(rs)[:, None]
                         + t(cb) + t(rb)[:, None] + t(res))
    _close(out[:, :n], want, k)
    assert (out[:, n:] == 7.0).all()  # nothing written past N


@pytest.mark.parametrize("m, k", [(64, 64), (65, 64), (64, 1024), (64, 1025)])
def test_dot_path_limits_agree_with_the_packed_path(m: int, k: int) -> None:
    """Both sides of dot_max_m and of DOT_MAX_A give the product; dot_max_m=0 forces the packed path."""
    a, w = _rand(m, k, seed=32), _rand(19, k, seed=33)
    want = _linear(a, w)
    for config in (GemmConfig(), GemmConfig(dot_max_m=0)):
        _close(gemm_callable(trans_b=True, config=config, threads=1)(a, w), want, k)


def test_dot_path_is_emitted_only_when_enabled() -> None:
    for dot_max_m, present in ((GemmConfig().dot_max_m, True), (0, False)):
        module = ir.Module(name="t")
        emit_gemm(module, "g", trans_b=True, config=GemmConfig(dot_max_m=dot_max_m))
        assert ("g.dot_tile" in module.globals) is present
    module = ir.Module(name="t")
    emit_gemm(module, "g", trans_b=False)
    assert "g.dot_tile" not in module.globals


def test_dot_path_leaky_relu_with_row_scale_on_edge_tiles() -> None:
    """The vector epilogue with masked operand loads: N = 13 leaves a 1-column tile, M = 5 a 1-row pair."""
    m, n, k = 5, 13, 24
    a, w = _rand(m, k, seed=37), _rand(n, k, seed=38)
    cb, rs = _rand(n, seed=39), _rand(m, seed=40)
    f = gemm_callable(Epilogue(col_bias=True, row_scale=True, activation="leaky_relu", alpha=0.2), trans_b=True,
                      threads=1)
    got = f(a, w, col_bias=cb, row_scale=rs)
    t = lambda x: torch.from_numpy(x).double()  # noqa: E731
    want = torch.nn.functional.leaky_relu(_linear(a, w) * t(rs)[:, None] + t(cb), 0.2)
    _close(got, want, k)
    assert (got < 0).any()


def test_dot_path_nan_propagates_through_relu() -> None:
    a, w = _rand(9, 16, seed=34), _rand(12, 16, seed=35)
    a[4, 3] = np.nan
    got = gemm_callable(Epilogue(activation="relu"), trans_b=True, threads=1)(a, w)
    assert np.isnan(got[4]).all() and not np.isnan(np.delete(got, 4, axis=0)).any()


def test_batch64_mlp_compiled_matches_torch() -> None:
    """A compiled MLP at batch 64 (fused bias + ReLU on the multi-row path) against torch, 2 threads."""
    ember.manual_seed(1)
    nn = ember.nn
    model = nn.Sequential(nn.Linear(200, 130), nn.ReLU(), nn.Linear(130, 10)).eval()
    twin = torch.nn.Sequential(torch.nn.Linear(200, 130), torch.nn.ReLU(), torch.nn.Linear(130, 10))
    state = model.state_dict()
    twin.load_state_dict({k: torch.from_numpy(np.array(v.detach().numpy())) for k, v in state.items()})
    x = _rand(64, 200, seed=36)
    with ember.no_grad():
        got = ember.compile(model)(ember.tensor(x)).numpy()
    with torch.no_grad():
        want = twin(torch.from_numpy(x))
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-5, atol=1e-5)
