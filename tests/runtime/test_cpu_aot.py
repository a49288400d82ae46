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
    program = build_program("aot_model", [g], ["x"], ["y"])
    obj = tmp_path / "model.o"
    obj.write_bytes(emit_object(program))
    lib = tmp_path / "libmodel.so"
    subprocess.run(["cc", "-shared", "-o", str(lib), str(obj), "-lgomp", "-lm"], check=True)
    exe = Executable("aot_model", (TensorSpec("x", (64, 300), "float32"),),
                     (TensorSpec("y", (64,), "float32"),), entry_symbol=entry_symbol(program),
                     library_path=str(lib))
    x = np.random.default_rng(0).standard_normal((64, 300)).astype(np.float32)
    (y,) = CpuExecutable(exe)(x)
    np.testing.assert_allclose(y, (1 / (1 + np.exp(-x.astype(np.float64)))).sum(1), rtol=1e-5)
