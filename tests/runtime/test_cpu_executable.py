"""The runtime's Executable (plain data) and the CPU back end: one native call per run, arena-held
intermediates, parameters bound as constants, argument checks, threads, and layering."""

from __future__ import annotations

import ast
import pathlib

import ember.compiler.ops  # noqa: F401
import numpy as np
import pytest
from ember.compiler.codegen.llvm.program import compile_program
from ember.compiler.dtypes import bool_, float32, int64
from ember.compiler.kernel.group import FusionGroup, GroupNode
from ember.compiler.kernel.program import build_program
from ember.compiler.ops.registry import TensorType
from ember.runtime import settings
from ember.runtime.cpu import CpuExecutable
from ember.runtime.errors import ArgumentError, DTypeError, ShapeError
from ember.runtime.executable import Executable, TensorSpec

ROWS, COLS = 300, 257  # 77k elements: the elementwise kernel runs on several threads


def _program() -> tuple[object, dict[str, np.ndarray]]:
    """Two groups: h = tanh(x * w + 1) (kept in the arena), then s = sum(h, 1) and y = h * 2."""
    t, tw = TensorType((ROWS, COLS), float32), TensorType((COLS,), float32)
    g1 = FusionGroup("first", [GroupNode("mul", ("x", "w"), ("a",)), GroupNode("add", ("a", 1.0), ("b",)),
                               GroupNode("tanh", ("b",), ("h",))],
                     {"x": t, "w": tw, "a": t, "b": t, "h": t}, ["x", "w"], ["h"])
    sum_attrs = {"dim": (1,), "keepdim": False, "dtype": None}
    g2 = FusionGroup("second", [GroupNode("sum", ("h",), ("s",), sum_attrs),
                                GroupNode("mul", ("h", 2.0), ("y",))],
                     {"h": t, "s": TensorType((ROWS,), float32), "y": t}, ["h"], ["s", "y"])
    w = np.random.default_rng(1).standard_normal(COLS).astype(np.float32)
    return build_program("two_groups", [g1, g2], ["x"], ["s", "y"], ["w"]), {"w": w}


@pytest.fixture(scope="module")
def exe() -> Executable:
    program, params = _program()
    return compile_program(program, params)


def _expected(x: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h = np.tanh(x.astype(np.float64) * w + 1)
    return h.sum(1), h * 2


def test_executable_is_data_with_signature_and_memory_plan(exe: Executable) -> None:
    assert [s.name for s in exe.inputs] == ["x"] and [s.name for s in exe.outputs] == ["s", "y"]
    assert exe.inputs[0] == TensorSpec("x", (ROWS, COLS), "float32")
    assert exe.params[0].name == "w" and exe.constants["w"].shape == (COLS,)
    assert exe.call_order == ("first", "second")
    offset, nbytes = exe.memory_plan["h"]  # the intermediate lives in the arena, aligned
    assert offset % 64 == 0 and nbytes >= ROWS * COLS * 4 and exe.arena_bytes >= offset + ROWS * COLS * 4
    assert exe.entry_address and "define" in exe.sources["llvm"]
    assert "call   first" in exe.describe()


@pytest.mark.parametrize("threads", [1, 2])
def test_cpu_run_matches_numpy(exe: Executable, threads: int) -> None:
    x = np.random.default_rng(2).standard_normal((ROWS, COLS)).astype(np.float32)
    with settings.override(NUM_THREADS=threads):
        s, y = CpuExecutable(exe)(x)
    want_s, want_y = _expected(x, exe.constants["w"])
    np.testing.assert_allclose(s, want_s, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(y, want_y, rtol=1e-5, atol=1e-6)


def test_outputs_are_fresh_and_inputs_may_be_non_contiguous(exe: Executable) -> None:
    run = CpuExecutable(exe)
    big = np.random.default_rng(3).standard_normal((ROWS, 2 * COLS)).astype(np.float32)
    x = big[:, ::2]
    s1, y1 = run(x)
    s2, y2 = run(np.ascontiguousarray(x))
    assert not np.shares_memory(y1, y2)
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_array_equal(s1, s2)


def test_argument_checks(exe: Executable) -> None:
    run = CpuExecutable(exe)
    with pytest.raises(ArgumentError, match="expected 1 inputs"):
        run()
    with pytest.raises(ShapeError, match=r"must have shape \[300, 257\], got \[3, 257\]"):
        run(np.zeros((3, COLS), np.float32))
    with pytest.raises(DTypeError, match="float32, got float64"):
        run(np.zeros((ROWS, COLS)))


def test_missing_parameter_and_missing_code_are_errors(exe: Executable) -> None:
    bare = Executable(exe.name, exe.inputs, exe.outputs, exe.params, {}, exe.arena_bytes,
                      entry_address=exe.entry_address, owner=exe.owner)
    with pytest.raises(ArgumentError, match="no value for parameter 'w'"):
        CpuExecutable(bare)
    with pytest.raises(ArgumentError, match="address"):
        Executable("x", (), ())


def test_integer_and_bool_buffers() -> None:
    ti, tb = TensorType((50,), int64), TensorType((50,), bool_)
    g = FusionGroup("ints", [GroupNode("remainder", ("a", 7), ("r",)), GroupNode("gt", ("r", 3), ("m",)),
                             GroupNode("where", ("m", "a", 0), ("o",))],
                    {"a": ti, "r": ti, "m": tb, "o": ti}, ["a"], ["o", "m"])
    run = CpuExecutable(compile_program(build_program("ints", [g], ["a"], ["o", "m"])))
    a = np.arange(-25, 25, dtype=np.int64)
    o, m = run(a)
    np.testing.assert_array_equal(m, np.remainder(a, 7) > 3)
    np.testing.assert_array_equal(o, np.where(np.remainder(a, 7) > 3, a, 0))


def test_runtime_imports_neither_compiler_nor_llvmlite() -> None:
    root = pathlib.Path(__file__).resolve().parents[2] / "runtime"
    for name in ("executable.py", "cpu.py"):
        tree = ast.parse((root / name).read_text())
        imported = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        imported += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        bad = [m for m in imported if m.startswith(("ember.compiler", "llvmlite")) or m == "ember"]
        assert not bad, f"runtime/{name} imports {bad}"
