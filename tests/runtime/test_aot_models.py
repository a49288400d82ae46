"""Exported LeNet-5 and ResNet-18 give ember.compile's outputs: loaded in this process, loaded where
llvmlite cannot be imported, and run by the C program of examples/deploy_c built with the system
compiler."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import ember
import numpy as np
import pytest
from ember.runtime import load
from ember.vision.models import lenet5, resnet18
from test_aot_load import run_without_llvmlite

DEPLOY_C = Path(__file__).resolve().parents[2] / "examples" / "deploy_c"


def run_c_program(package: Path, inputs: list[np.ndarray], folder: Path) -> list[np.ndarray]:
    """Build examples/deploy_c against ``package`` with its Makefile, run it on raw input files and
    parse what it prints back into arrays (one per output)."""
    exe = folder / "run_model"
    subprocess.run(["make", "-s", "-C", str(DEPLOY_C), f"MODEL={package}", f"OUT={exe}"], check=True,
                   capture_output=True, timeout=120)
    files = []
    for i, x in enumerate(inputs):
        files.append(folder / f"input{i}.bin")
        x.tofile(files[-1])
    proc = subprocess.run([str(exe), *map(str, files)], capture_output=True, text=True, timeout=120,
                          check=True)
    lines = proc.stdout.splitlines()
    outs = []
    while lines:
        _name, dtype, dims = lines[0].split()
        shape = tuple(int(d) for d in dims.split("x"))
        n = int(np.prod(shape))
        outs.append(np.array(lines[1:1 + n], dtype=np.float64).astype(dtype).reshape(shape))
        lines = lines[1 + n:]
    return outs


def check_export(model: Any, x: ember.Tensor, folder: Path, rtol: float, reuse: bool) -> None:
    """``reuse``: export what ember.compile compiled (no second compilation) instead of the model."""
    model.eval()
    fast = ember.compile(model)
    with ember.no_grad():
        want = fast(x).numpy()
        eager = model(x).numpy()
    path = folder / f"{type(model).__name__.lower()}.so"
    ember.export(fast if reuse else model, (x,), str(path))
    got = load(path)(x.numpy())
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(got, eager, rtol=10 * rtol, atol=10 * rtol)
    np.testing.assert_array_equal(run_without_llvmlite(path, x.numpy(), folder), got)
    (from_c,) = run_c_program(path, [x.numpy()], folder)
    np.testing.assert_array_equal(from_c, got)
    header = path.with_suffix(".h").read_text()
    assert f"#define {path.stem.upper()}_INPUT0_SHAPE {{{', '.join(map(str, x.shape))}}}" in header
    assert f"#define {path.stem.upper()}_OUTPUT0_SHAPE {{{', '.join(map(str, want.shape))}}}" in header


def test_exported_lenet5_matches_compile_in_python_without_llvmlite_and_in_c(tmp_path: Path) -> None:
    ember.manual_seed(0)
    check_export(lenet5(), ember.randn(2, 1, 28, 28), tmp_path, rtol=1e-5, reuse=False)


@pytest.mark.slow
def test_exported_resnet18_matches_compile_in_python_without_llvmlite_and_in_c(tmp_path: Path) -> None:
    ember.manual_seed(0)
    check_export(resnet18(), ember.randn(1, 3, 64, 64), tmp_path, rtol=1e-4, reuse=True)
