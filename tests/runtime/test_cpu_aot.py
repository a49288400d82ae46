"""The CPU back end runs an executable from a shared library (the AOT path): the program's object
code, linked with the system C compiler, loaded by path with ctypes only."""

from __future__ import annotations

import subprocess

import ember.compiler.ops  # noqa: F401
import numpy as np
from ember.compiler.codegen.llvm.program import emit_object, entry_symbol
from ember.compiler.dtypes import float32
from ember.compiler.kernel.group import FusionGroup, GroupNode
from ember.compiler.kernel.program import build_program
from ember.compiler.ops.registry import TensorType
from ember.runtime.cpu import CpuExecutable
from ember.runtime.executable import Executable, TensorSpec


def test_shared_library_executable_matches_numpy(tmp_path) -> None:  # noqa: ANN001
    t = TensorType((64, 300), float32)
    g = FusionGroup("aot", [GroupNode("sigmoid", ("x",), ("s",)),
                            GroupNode("sum", ("s",), ("y",), {"dim": (1,), "keepdim": False, "dtype": None})],
                    {"x": t, "s": t, "y": TensorType((64,), float32)}, ["x"], ["y"])
    # a GEMM too: the library must link the template's libgomp fork and aligned_alloc
    mm = FusionGroup("mm", [GroupNode("matmul", ("x", "w"), ("z",)), GroupNode("relu", ("z",), ("r",))],
                     {"x": t, "w": TensorType((300, 40), float32), "z": TensorType((64, 40), float32),
                      "r": TensorType((64, 40), float32)}, ["x", "w"], ["r"])
    program = build_program("aot_model", [g, mm], ["x", "w"], ["y", "r"])
    obj = tmp_path / "model.o"
    obj.write_bytes(emit_object(program))
    lib = tmp_path / "libmodel.so"
    subprocess.run(["cc", "-shared", "-o", str(lib), str(obj), "-lgomp", "-lm"], check=True)
    inputs = (TensorSpec("x", (64, 300), "float32"), TensorSpec("w", (300, 40), "float32"))
    outputs = (TensorSpec("y", (64,), "float32"), TensorSpec("r", (64, 40), "float32"))
    exe = Executable("aot_model", inputs, outputs, entry_symbol=entry_symbol(program), library_path=str(lib))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 300)).astype(np.float32)
    w = rng.standard_normal((300, 40)).astype(np.float32)
    y, r = CpuExecutable(exe)(x, w)
    np.testing.assert_allclose(y, (1 / (1 + np.exp(-x.astype(np.float64)))).sum(1), rtol=1e-5)
    np.testing.assert_allclose(r, np.maximum(x.astype(np.float64) @ w, 0), rtol=1e-4, atol=1e-4)
