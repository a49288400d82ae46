"""The CPU back end's call fast path: cached input addresses and staged small outputs stay correct.

The runner remembers the last input array (its address is reused while it is the same object) and
writes small outputs into buffers it owns, then copies them out. These tests catch the ways that can
go wrong: a stale address, results of two calls sharing memory, read-only or converted inputs.
"""

from __future__ import annotations

import ember.compiler.ops  # noqa: F401
import numpy as np
import pytest
import torch
from ember.compiler.codegen.llvm.program import compile_program
from ember.compiler.dtypes import float32
from ember.compiler.kernel.group import FusionGroup, GroupNode
from ember.compiler.kernel.program import build_program
from ember.compiler.ops.registry import TensorType
from ember.runtime.cpu import _STAGED_BYTES, CpuExecutable
from ember.runtime.errors import DTypeError

ROWS, COLS = 8, 600  # y (19 KB) is allocated per call, s (32 bytes) goes through the staging buffer


@pytest.fixture(scope="module")
def runner() -> CpuExecutable:
    """s = sum(x * w, 1), y = x * w."""
    t, tw = TensorType((ROWS, COLS), float32), TensorType((COLS,), float32)
    g = FusionGroup("g", [GroupNode("mul", ("x", "w"), ("y",)),
                          GroupNode("sum", ("y",), ("s",), {"dim": (1,), "keepdim": False, "dtype": None})],
                    {"x": t, "w": tw, "y": t, "s": TensorType((ROWS,), float32)}, ["x", "w"], ["s", "y"])
    w = np.linspace(-1.0, 1.0, COLS, dtype=np.float32)
    exe = compile_program(build_program("hot", [g], ["x"], ["s", "y"], ["w"]), {"w": w})
    assert ROWS * 4 <= _STAGED_BYTES < ROWS * COLS * 4  # one output of each kind
    return CpuExecutable(exe)


def _want(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    w = torch.linspace(-1.0, 1.0, COLS, dtype=torch.float32)
    y = torch.from_numpy(x) * w
    return y.double().sum(1).numpy(), y.numpy()


def _check(got: tuple[np.ndarray, ...], x: np.ndarray) -> None:
    s, y = _want(x)
    np.testing.assert_allclose(got[0], s, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(got[1], y, rtol=1e-6, atol=1e-6)


def test_same_array_modified_in_place_is_read_again(runner: CpuExecutable) -> None:
    x = np.ones((ROWS, COLS), dtype=np.float32)
    first = runner(x)
    x *= 3.0
    second = runner(x)
    _check(first, np.ones_like(x))
    _check(second, x)


def test_results_of_consecutive_calls_do_not_share_memory(runner: CpuExecutable) -> None:
    a, b = np.full((ROWS, COLS), 2.0, np.float32), np.full((ROWS, COLS), -5.0, np.float32)
    ra, rb = runner(a), runner(b)
    for x, y in zip(ra, rb):
        assert not np.shares_memory(x, y)
    _check(ra, a)
    _check(rb, b)
    ra[0][:] = 0.0  # writing one result leaves the next call's alone
    _check(runner(a), a)


def test_readonly_converted_and_alternating_inputs(runner: CpuExecutable) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((ROWS, COLS)).astype(np.float32)
    ro = x.copy()
    ro.flags.writeable = False
    _check(runner(ro), x)
    _check(runner(np.asfortranarray(x)), x)  # not C-contiguous: copied, same numbers
    z = rng.standard_normal((ROWS, COLS)).astype(np.float32)
    for v in (x, z, x):  # the cached address must follow the array
        _check(runner(v), v)
    with pytest.raises(DTypeError, match="float32"):
        runner(x.astype(np.float64))


def test_out_arguments_are_written(runner: CpuExecutable) -> None:
    x = np.full((ROWS, COLS), 0.5, np.float32)
    out = [np.empty(ROWS, np.float32), np.empty((ROWS, COLS), np.float32)]
    got = runner(x, out=out)
    assert got[0] is out[0] and got[1] is out[1]
    _check(got, x)
