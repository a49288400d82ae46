"""Vectorized loops whose extent is not a multiple of 8 finish with one masked vector step, and loads
whose lanes lie 2-4 elements apart are one wide masked load plus a shuffle (``codegen/llvm/kernels.py``).

Checked here: results against numpy/torch for every tail length, strides 1-4 and gathers, integer
division in tail lanes (masked-off lanes must not divide by a zero that is not there), bool and float16
buffers, scattered stores; and, in a child process, that no load reads past the end of its buffer (the
input sits right before a page with no access rights, so one element too far is a segfault)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import ember.compiler.ops  # noqa: F401
import numpy as np
import pytest
import torch
from ember.compiler.codegen.llvm.program import compile_groups
from ember.compiler.dtypes import from_numpy
from ember.compiler.kernel.group import FusionGroup, GroupNode
from ember.compiler.ops.registry import REGISTRY, TensorType


def _t(a: np.ndarray | tuple[int, ...], dtype: np.dtype | None = None) -> TensorType:
    shape = a.shape if isinstance(a, np.ndarray) else a
    return TensorType(tuple(shape), from_numpy(np.dtype(dtype) if dtype is not None else a.dtype))


def _attrs(op: str, t: TensorType, **attrs: object) -> dict:
    o = REGISTRY[op]
    a = o.check_attrs(attrs)
    return o.normalize(a, t) if o.normalize else a


@pytest.mark.parametrize("width", [4, 5, 7, 9, 13, 14, 15, 17])
def test_integer_floordiv_over_every_tail_length(width: int) -> None:
    rng = np.random.default_rng(width)
    x = rng.integers(-50, 50, (3, width)).astype(np.int32)
    d = rng.integers(1, 7, (3, width)).astype(np.int32) * rng.choice([-1, 1], (3, width)).astype(np.int32)
    g = FusionGroup("g", [GroupNode("div", ("x", "d"), ("y",), {"rounding_mode": "floor"})],
                    {"x": _t(x), "d": _t(d), "y": _t(x)}, ["x", "d"], ["y"])
    (got,) = compile_groups(f"fdiv{width}", [g], ["x", "d"], ["y"])(x, d)
    np.testing.assert_array_equal(got, torch.div(torch.from_numpy(x), torch.from_numpy(d),
                                                 rounding_mode="floor").numpy())


@pytest.mark.parametrize("step", [2, 3, 4, 5])
@pytest.mark.parametrize("width", [9, 14, 28, 31])
def test_strided_reads_match_numpy(step: int, width: int) -> None:
    """``x[:, ::step] * 2 + 1``: stride 2-4 is a deinterleaving load, 5 a gather; the tail is masked."""
    x = np.random.default_rng(step * 100 + width).standard_normal((3, width)).astype(np.float32)
    view = _t(x[:, ::step])
    index = (("slice", None, None, 1), ("slice", None, None, step))
    g = FusionGroup("g", [GroupNode("getitem", ("x",), ("v",), {"index": index}),
                          GroupNode("mul", ("v", 2.0), ("m",)), GroupNode("add", ("m", 1.0), ("y",))],
                    {"x": _t(x), "v": view, "m": view, "y": view}, ["x"], ["y"])
    (got,) = compile_groups(f"strided{step}_{width}", [g], ["x"], ["y"])(x)
    np.testing.assert_allclose(got, x[:, ::step] * 2 + 1, rtol=1e-6)


@pytest.mark.parametrize("size,kernel,stride,pad", [(28, 2, 2, 0), (14, 2, 2, 0), (7, 3, 1, 1), (13, 3, 2, 1),
                                                    (15, 3, 3, 0), (9, 2, 2, 0)])
def test_pools_over_tails_match_torch(size: int, kernel: int, stride: int, pad: int) -> None:
    x = np.random.default_rng(size).standard_normal((2, 3, size, size)).astype(np.float32)
    tx = torch.from_numpy(x)
    want_max = torch.nn.functional.max_pool2d(tx, kernel, stride, pad).numpy()
    want_avg = torch.nn.functional.avg_pool2d(tx, kernel, stride, pad).numpy()
    groups = []
    for op, want in (("max_pool", want_max), ("avg_pool", want_avg)):
        attrs = _attrs(op, _t(x), kernel_size=(kernel, kernel), stride=(stride, stride), padding=(pad, pad))
        outs = (f"{op}_y", f"{op}_i") if op == "max_pool" else (f"{op}_y",)
        types = {"x": _t(x), f"{op}_y": _t(want)}
        if op == "max_pool":
            types[f"{op}_i"] = _t(want.shape, np.int64)
        groups.append(FusionGroup(op, [GroupNode(op, ("x",), outs, attrs)], types, ["x"], [f"{op}_y"]))
    got_max, got_avg = compile_groups(f"pools{size}_{kernel}_{stride}_{pad}", groups, ["x"],
                                      ["max_pool_y", "avg_pool_y"])(x)
    np.testing.assert_array_equal(got_max, want_max)
    np.testing.assert_allclose(got_avg, want_avg, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float16, np.bool_, np.float64, np.int64])
def test_tail_lanes_of_narrow_and_wide_types(dtype: type) -> None:
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((5, 11)) * 4).astype(dtype)
    y = (rng.standard_normal((5, 11)) * 4).astype(dtype)
    op = "logical_xor" if dtype is np.bool_ else "maximum"
    g = FusionGroup("g", [GroupNode(op, ("x", "y"), ("z",))], {"x": _t(x), "y": _t(y), "z": _t(x)},
                    ["x", "y"], ["z"])
    (got,) = compile_groups(f"narrow_{np.dtype(dtype).name}", [g], ["x", "y"], ["z"])(x, y)
    want = getattr(torch, op)(torch.from_numpy(x), torch.from_numpy(y)).numpy()
    np.testing.assert_array_equal(got, want)


def test_scattered_stores_in_the_tail_write_only_real_lanes() -> None:
    """A transposing copy stores lane by lane; the output is poisoned first, so an extra write shows."""
    x = np.arange(6 * 13, dtype=np.float32).reshape(6, 13)
    g = FusionGroup("g", [GroupNode("permute", ("x",), ("p",), {"dims": (1, 0)}),
                          GroupNode("neg", ("p",), ("y",))],
                    {"x": _t(x), "p": _t((13, 6), np.float32), "y": _t((13, 6), np.float32)}, ["x"], ["y"])
    exe = compile_groups("scatter_tail", [g], ["x"], ["y"])
    out = np.full((13, 6), np.nan, dtype=np.float32)
    exe(x, out=[out])
    np.testing.assert_array_equal(out, -x.T)


GUARD_SCRIPT = textwrap.dedent("""
    import ctypes, mmap, sys
    import numpy as np
    import ember.compiler.ops
    from ember.compiler.codegen.llvm.program import compile_groups
    from ember.compiler.dtypes import float32
    from ember.compiler.kernel.group import FusionGroup, GroupNode
    from ember.compiler.ops.registry import TensorType

    page = mmap.PAGESIZE
    mem = mmap.mmap(-1, 2 * page)
    libc = ctypes.CDLL(None)
    base = ctypes.addressof(ctypes.c_char.from_buffer(mem))
    assert libc.mprotect(ctypes.c_void_p(base + page), page, 0) == 0  # PROT_NONE after the first page
    for width in (9, 13, 14, 15, 29):
        n = 3 * width
        x = np.frombuffer(mem, dtype=np.float32, count=n, offset=page - 4 * n).reshape(3, width)
        x[...] = np.arange(n, dtype=np.float32).reshape(3, width)
        for step in (1, 2, 3, 4):
            cols = len(range(0, width, step))
            t_x, t_v = TensorType((3, width), float32), TensorType((3, cols), float32)
            g = FusionGroup("g", [GroupNode("getitem", ("x",), ("v",),
                                            {"index": (("slice", None, None, 1), ("slice", None, None, step))}),
                                  GroupNode("add", ("v", 1.0), ("y",))],
                            {"x": t_x, "v": t_v, "y": t_v}, ["x"], ["y"])
            (got,) = compile_groups(f"guard{width}_{step}", [g], ["x"], ["y"])(x)
            assert np.array_equal(got, x[:, ::step] + 1), (width, step)
    print("ok")
""")


@pytest.mark.slow
def test_no_load_reads_past_the_end_of_its_buffer() -> None:
    proc = subprocess.run([sys.executable, "-c", GUARD_SCRIPT], capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", (proc.returncode, proc.stderr[-2000:])
