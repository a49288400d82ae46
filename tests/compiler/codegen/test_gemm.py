"""The generated GEMM against a float64 numpy reference, and the JIT layer's checks.

Shapes cover the edges of both register tiles (6x16 with 8-lane vectors, 8x16 with 16-lane ones; both
are generated and run here whatever the host has, LLVM splitting 16-lane vectors on an AVX2 machine) and
of every cache block: with the tiny blocking configs (``_TINY``) small problems cross several MC / KC /
NC blocks, so the multi-block paths run in milliseconds; the default config is exercised with K > KC and
M > MC as well.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import numpy as np
import pytest

if importlib.util.find_spec("ember") is None:  # before `pip install -e .`: map the package folders by hand
    _root = Path(__file__).resolve().parents[3]
    _folders = {"ember": "frontend", "ember.compiler": "compiler", "ember.runtime": "runtime"}
    for _name, _folder in _folders.items():
        _mod = types.ModuleType(_name)
        _mod.__path__ = [str(_root / _folder)]
        sys.modules[_name] = _mod

import llvmlite.ir as ir  # noqa: E402
from ember.compiler.codegen.llvm import jit  # noqa: E402
from ember.compiler.codegen.llvm.gemm import Epilogue, GemmConfig, emit_gemm, gemm_callable  # noqa: E402
from ember.runtime.errors import ArgumentError, CompileError, ShapeError  # noqa: E402

_TINY = GemmConfig(mc=24, kc=24, nc=48, serial_work=0, dot_max_m=0)  # packed path for every M
LANES = [8, 16]


def _rand(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed + sum(shape)).standard_normal(shape, dtype=np.float32)


def _check(got: np.ndarray, want: np.ndarray, k: int) -> None:
    tol = 2e-6 * max(k, 1) ** 0.5 * 4
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


def _product(a: np.ndarray, b: np.ndarray, trans_b: bool) -> np.ndarray:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    return a64 @ (b64.T if trans_b else b64)


SHAPES = [
    (1, 1, 1), (7, 13, 5), (6, 16, 8), (12, 32, 16), (5, 17, 9), (97, 131, 61),
    (1, 300, 50), (300, 1, 50), (13, 37, 400), (250, 33, 20), (130, 40, 900),
]


@pytest.mark.parametrize("lanes", LANES)
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_plain_gemm_matches_numpy(shape: tuple[int, int, int], trans_b: bool, threads: int, lanes: int) -> None:
    m, n, k = shape
    a, b = _rand(m, k), _rand(*((n, k) if trans_b else (k, n)), seed=1)
    got = gemm_callable(trans_b=trans_b, config=GemmConfig(lanes=lanes, dot_max_m=0), threads=threads)(a, b)
    _check(got, _product(a, b, trans_b), k)


@pytest.mark.parametrize("lanes", LANES)
@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("shape", [(1, 1, 1), (7, 13, 5), (29, 53, 71), (61, 100, 24), (6, 200, 49),
                                   (8, 200, 49), (200, 6, 49)], ids=lambda s: "x".join(map(str, s)))
def test_multi_block_paths_with_tiny_blocking(shape: tuple[int, int, int], threads: int, lanes: int) -> None:
    m, n, k = shape
    config = GemmConfig(mc=24, kc=24, nc=48, serial_work=0, dot_max_m=0, lanes=lanes)
    for trans_b in (False, True):
        a, b = _rand(m, k), _rand(*((n, k) if trans_b else (k, n)), seed=2)
        got = gemm_callable(trans_b=trans_b, config=config, threads=threads)(a, b)
        _check(got, _product(a, b, trans_b), k)


def test_register_tile_follows_the_vector_width() -> None:
    from ember.compiler.codegen.llvm.gemm import register_tile

    assert (register_tile(8).mr, register_tile(8).per_row) == (6, 2)
    assert (register_tile(16).mr, register_tile(16).per_row) == (8, 1)
    host = register_tile()
    assert host.lanes == jit.host_vector_lanes() and host.lanes in LANES
    module = ir.Module(name="lanes")
    emit_gemm(module, "g16", config=GemmConfig(lanes=16))
    emit_gemm(module, "g8", config=GemmConfig(lanes=8))
    text = str(module)
    assert "<16 x float>" in text.split('define internal void @"g8.ukernel"')[0]  # g16's micro-kernel
    assert "llvm.fma.v16f32" in text and "llvm.fma.v8f32" in text


@pytest.mark.parametrize("kc", [20, 24])
def test_balanced_k_blocks_apply_the_epilogue_once(kc: int) -> None:
    """K is cut into equal blocks (rounded up to 8, at most kc; kc = 20 is not a multiple of 8): every K
    around the block edges must give the product with the bias and ReLU applied after the last block."""
    epi = Epilogue(col_bias=True, activation="relu")
    config = GemmConfig(mc=24, kc=kc, nc=48, serial_work=0, dot_max_m=0)
    for k in (1, 7, 19, 20, 21, 33, 41, 97):
        for trans_b in (False, True):
            a, b = _rand(13, k, seed=k), _rand(*((22, k) if trans_b else (k, 22)), seed=k + 1)
            bias = _rand(22, seed=k + 2)
            got = gemm_callable(epi, trans_b=trans_b, config=config, threads=1)(a, b, col_bias=bias)
            _check(got, np.maximum(_product(a, b, trans_b) + bias, 0), k)


def _epilogue_reference(acc: np.ndarray, epi: Epilogue, ops: dict[str, np.ndarray]) -> np.ndarray:
    y = acc.copy()
    if epi.col_scale:
        y *= ops["col_scale"][None, :]
    if epi.row_scale:
        y *= ops["row_scale"][:, None]
    if epi.col_bias:
        y += ops["col_bias"][None, :]
    if epi.row_bias:
        y += ops["row_bias"][:, None]
    if epi.residual:
        y += ops["residual"]
    act = {
        "none": lambda v: v,
        "relu": lambda v: np.maximum(v, 0),
        "relu6": lambda v: np.clip(v, 0, 6),
        "leaky_relu": lambda v: np.where(v < 0, v * epi.alpha, v),
        "sigmoid": lambda v: 1 / (1 + np.exp(-v)),
        "tanh": np.tanh,
        "silu": lambda v: v / (1 + np.exp(-v)),
    }[epi.activation]
    return act(y)


def _operands(epi: Epilogue, m: int, n: int) -> dict[str, np.ndarray]:
    ops = {}
    for name, size in (("col_scale", n), ("col_bias", n), ("row_scale", m), ("row_bias", m)):
        if getattr(epi, name):
            ops[name] = _rand(size, seed=len(name)) * 2
    if epi.residual:
        wide = _rand(m, n + 5, seed=7) * 3
        ops["residual"] = wide[:, 2:n + 2]  # a strided view: ldr != n
    return ops


EPILOGUES = [
    Epilogue(col_bias=True), Epilogue(row_bias=True), Epilogue(col_scale=True), Epilogue(row_scale=True),
    Epilogue(residual=True), Epilogue(activation="relu"), Epilogue(activation="relu6"),
    Epilogue(activation="leaky_relu", alpha=0.2), Epilogue(activation="sigmoid"), Epilogue(activation="tanh"),
    Epilogue(activation="silu"),
    Epilogue(col_scale=True, col_bias=True, residual=True, activation="relu"),
]


@pytest.mark.parametrize("lanes", LANES)
@pytest.mark.parametrize("epi", EPILOGUES, ids=lambda e: e.tag)
def test_each_epilogue(epi: Epilogue, lanes: int) -> None:
    for (m, n, k), threads in (((97, 131, 61), 1), ((13, 37, 400), 2)):  # one and several K blocks
        a, b = _rand(m, k), _rand(k, n, seed=3)
        ops = _operands(epi, m, n)
        got = gemm_callable(epi, config=GemmConfig(lanes=lanes), threads=threads)(a, b, **ops)
        _check(got, _epilogue_reference(_product(a, b, False), epi, ops), k)


def test_everything_at_once_transposed_strided_multithreaded() -> None:
    epi = Epilogue(col_scale=True, col_bias=True, row_scale=True, row_bias=True, residual=True,
                   activation="leaky_relu", alpha=0.1)
    m, n, k = 67, 45, 58
    a = _rand(m, k + 3)[:, :k]  # lda > k
    w = _rand(n, k + 9, seed=4)[:, 4:k + 4]  # a Linear weight view, ldb > k
    out = np.full((m, n + 7), np.nan, dtype=np.float32)[:, :n]  # ldc > n
    ops = _operands(epi, m, n)
    for config in (_TINY, GemmConfig(), GemmConfig(lanes=8), GemmConfig(lanes=16, dot_max_m=0)):
        got = gemm_callable(epi, trans_b=True, config=config, threads=2)(a, w, out=out, **ops)
        assert got is out
        _check(out, _epilogue_reference(_product(a, w, True), epi, ops), k)


def test_zero_sized_problems() -> None:
    mm = gemm_callable(Epilogue(col_bias=True, activation="relu"), threads=1)
    bias = np.array([-1.0, 2.0, 0.5], dtype=np.float32)
    got = mm(np.zeros((4, 0), np.float32), np.zeros((0, 3), np.float32), col_bias=bias)
    np.testing.assert_array_equal(got, np.tile(np.maximum(bias, 0), (4, 1)))
    assert mm(np.zeros((0, 5), np.float32), _rand(5, 3), col_bias=bias).shape == (0, 3)


def test_relu_propagates_nan_like_pytorch() -> None:
    a = np.array([[np.nan, 1.0]], dtype=np.float32)
    b = np.array([[1.0], [-2.0]], dtype=np.float32)
    got = gemm_callable(Epilogue(activation="relu"), threads=1)(a, b)
    assert np.isnan(got[0, 0])


def test_activations_saturate_without_overflow() -> None:
    a = np.array([[1.0], [-1.0]], dtype=np.float32) * np.float32(1e4)
    b = np.ones((1, 16), dtype=np.float32)
    for act, hi, lo in (("sigmoid", 1.0, 0.0), ("tanh", 1.0, -1.0), ("silu", 1e4, 0.0)):
        got = gemm_callable(Epilogue(activation=act), threads=1)(a, b)
        np.testing.assert_allclose(got[0], hi, rtol=1e-6)
        np.testing.assert_allclose(got[1], lo, atol=1e-6)


def test_bad_arguments_raise_typed_errors() -> None:
    mm = gemm_callable(threads=1)
    with pytest.raises(ShapeError, match="inner dimensions"):
        mm(_rand(3, 4), _rand(5, 2))
    with pytest.raises(ArgumentError, match="float32"):
        mm(_rand(3, 4).astype(np.float64), _rand(4, 2))
    with pytest.raises(ArgumentError, match="row-major"):
        mm(_rand(4, 3).T, _rand(4, 2))
    with pytest.raises(ArgumentError, match="does not use"):
        mm(_rand(3, 4), _rand(4, 2), col_bias=_rand(2))
    with pytest.raises(ArgumentError, match="needs col_bias"):
        gemm_callable(Epilogue(col_bias=True), threads=1)(_rand(3, 4), _rand(4, 2))
    with pytest.raises(ArgumentError, match="unknown GEMM epilogue activation"):
        Epilogue(activation="gelu_typo")
    with pytest.raises(ArgumentError, match="multiple of 24"):
        GemmConfig(mc=100)
    with pytest.raises(ArgumentError, match="lanes"):
        GemmConfig(lanes=4)


def test_module_compiles_to_a_pic_object_file() -> None:
    module = ir.Module(name="aot")
    emit_gemm(module, "my_gemm", Epilogue(col_bias=True, activation="relu"), trans_b=True)
    jm = jit.JitModule(module, name="aot")
    obj = jm.emit_object()
    assert obj[:4] == b"\x7fELF"
    assert "define i32 @my_gemm(" in jm.llvm_ir and "@llvm.fma.v8f32" in jm.llvm_ir
    with pytest.raises(CompileError, match="duplicate|already defines"):
        emit_gemm(module, "my_gemm")


def test_unresolved_external_is_reported_by_name() -> None:
    module = ir.Module(name="broken")
    missing = ir.Function(module, ir.FunctionType(ir.IntType(32), []), "ember_no_such_symbol_xyz")
    fn = ir.Function(module, ir.FunctionType(ir.IntType(32), []), "calls_missing")
    builder = ir.IRBuilder(fn.append_basic_block())
    builder.ret(builder.call(missing, []))
    jm = jit.JitModule(module, name="broken")
    with pytest.raises(CompileError, match="ember_no_such_symbol_xyz"):
        jm.address("calls_missing")
    with pytest.raises(CompileError, match="ember_no_such_symbol_xyz"):
        jm.emit_object()


def test_jit_reports_unknown_function_and_invalid_ir() -> None:
    module = ir.Module(name="ok")
    fn = ir.Function(module, ir.FunctionType(ir.IntType(32), []), "forty_two")
    ir.IRBuilder(fn.append_basic_block()).ret(ir.Constant(ir.IntType(32), 42))
    jm = jit.JitModule(module, name="ok")
    import ctypes

    assert jm.cfunc("forty_two", ctypes.c_int32)() == 42
    with pytest.raises(CompileError, match="forty_two"):
        jm.address("forty_three")
    with pytest.raises(CompileError, match="rejected"):
        jit.JitModule("define i32 @f() { ret i64 0 }", name="bad")


def test_jit_modules_can_be_dropped_and_recreated() -> None:
    """An MCJIT engine owns (and destroys) its target machine, so each engine needs its own."""
    import ctypes
    import gc

    for value in range(3):
        module = ir.Module(name=f"m{value}")
        fn = ir.Function(module, ir.FunctionType(ir.IntType(32), []), "value")
        ir.IRBuilder(fn.append_basic_block()).ret(ir.Constant(ir.IntType(32), value))
        jm = jit.JitModule(module, name=f"m{value}")
        assert jm.cfunc("value", ctypes.c_int32)() == value
        del jm, fn
        gc.collect()
