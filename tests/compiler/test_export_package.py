"""ember.export writes a deterministic package and a C header: the C ABI, the header's macros, several
inputs and outputs, the CLI, and the errors for what cannot be exported."""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
from pathlib import Path

import ember
import numpy as np
import pytest
from ember import nn
from ember.cli import main as cli_main
from ember.runtime import load
from ember.runtime.aot import TRAILER, WEIGHTS_SECTION, elf_sections, inspect_package
from ember.runtime.errors import ArgumentError, CompileError


class Scale(nn.Module):
    """Elementwise with two parameters: quick to compile, real weights."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(ember.randn(3, 5))
        self.b = nn.Parameter(ember.randn(5))

    def forward(self, x: ember.Tensor) -> ember.Tensor:
        return (x * self.w - self.b).tanh()


def _scale_model(seed: int) -> Scale:
    ember.manual_seed(seed)
    return Scale().eval()


def test_same_model_and_inputs_give_the_same_bytes(tmp_path: Path) -> None:
    paths = []
    for folder in ("a", "b", "c"):
        (tmp_path / folder).mkdir()
        paths.append(tmp_path / folder / "scale.so")
        model = _scale_model(1 if folder != "c" else 2)
        ember.export(model, (ember.randn(3, 5),), str(paths[-1]))
    a, b, c = (p.read_bytes() for p in paths)
    assert a == b
    assert paths[0].with_suffix(".h").read_text() == paths[1].with_suffix(".h").read_text()
    assert a != c  # other weights: other bytes, but the very same code
    text_a, text_c = (elf_sections(d, len(d) - TRAILER.size)[".text"] for d in (a, c))
    assert a[text_a[0]:text_a[0] + text_a[1]] == c[text_c[0]:text_c[0] + text_c[1]]


def test_exporting_a_compiled_model_reuses_it_with_the_current_weights(tmp_path: Path) -> None:
    model = _scale_model(6)
    x = ember.randn(3, 5)
    fast = ember.compile(model)
    with ember.no_grad():
        fast(x)
        model.w.mul_(-1.0)  # "training" after compiling: the package must hold these weights
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    ember.export(fast, (x,), str(tmp_path / "a" / "m.so"))
    ember.export(model, (x,), str(tmp_path / "b" / "m.so"))
    assert (tmp_path / "a" / "m.so").read_bytes() == (tmp_path / "b" / "m.so").read_bytes()
    with ember.no_grad():
        np.testing.assert_allclose(load(tmp_path / "a" / "m.so")(x.numpy()), model(x).numpy(), rtol=1e-5,
                                   atol=1e-6)
    with pytest.raises(CompileError, match="target 'interpret'"):
        ember.export(ember.compile(model, target="interpret"), (x,), str(tmp_path / "i.so"))


_EXPORT_MLP = """
import sys, ember
from ember import nn
ember.manual_seed(0)
model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3), nn.Softmax(1)).eval()
ember.export(model, (ember.randn(2, 6),), sys.argv[1])
"""


@pytest.mark.slow
def test_exports_from_processes_with_different_hash_seeds_are_identical(tmp_path: Path) -> None:
    """Nothing in tracing, passes, fusion, code generation or linking depends on set/dict order of
    strings (randomized per process) or on the process: two interpreters write the same bytes."""
    procs = []
    for seed in ("1", "2"):
        (tmp_path / seed).mkdir()
        env = {**os.environ, "PYTHONHASHSEED": seed}
        procs.append(subprocess.Popen([sys.executable, "-c", _EXPORT_MLP, str(tmp_path / seed / "mlp.so")],
                                      env=env, stderr=subprocess.PIPE, text=True))
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    assert (tmp_path / "1" / "mlp.so").read_bytes() == (tmp_path / "2" / "mlp.so").read_bytes()
    assert (tmp_path / "1" / "mlp.h").read_text() == (tmp_path / "2" / "mlp.h").read_text()


@pytest.fixture(scope="module")
def scale_package(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Scale]:
    model = _scale_model(4)
    path = tmp_path_factory.mktemp("export") / "scale.so"
    ember.export(model, (ember.randn(3, 5),), str(path))
    return path, model


class _Info(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("dtype", ctypes.c_char_p), ("ndim", ctypes.c_int32),
                ("shape", ctypes.POINTER(ctypes.c_int64)), ("numel", ctypes.c_int64),
                ("nbytes", ctypes.c_int64)]


def test_c_abi_describes_and_runs_the_model(scale_package: tuple[Path, Scale]) -> None:
    path, model = scale_package
    load(path)  # validates it first
    lib = ctypes.CDLL(str(path))
    lib.ember_metadata.restype = ctypes.c_char_p
    lib.ember_input_info.restype = lib.ember_output_info.restype = ctypes.POINTER(_Info)
    lib.ember_params.restype = ctypes.POINTER(ctypes.c_void_p)
    lib.ember_arena_bytes.restype = ctypes.c_int64
    assert lib.ember_abi_version() == 1 and lib.ember_num_inputs() == 1 and lib.ember_num_outputs() == 1
    assert json.loads(lib.ember_metadata()) == inspect_package(path)
    info = lib.ember_input_info(0).contents
    assert (info.name, info.dtype, info.ndim, info.shape[0], info.shape[1], info.numel, info.nbytes) == (
        b"x", b"float32", 2, 3, 5, 15, 60)
    assert not lib.ember_input_info(1) and not lib.ember_output_info(-1)
    assert lib.ember_num_params() == 2 and lib.ember_arena_bytes() == inspect_package(path)["arena_bytes"]
    w = np.ctypeslib.as_array(ctypes.cast(lib.ember_params()[0], ctypes.POINTER(ctypes.c_float)), (3, 5))
    np.testing.assert_array_equal(w, model.w.detach().numpy())
    x = np.linspace(-2, 2, 15, dtype=np.float32).reshape(3, 5)
    y = np.empty((3, 5), np.float32)
    ins, outs = (ctypes.c_void_p * 1)(x.ctypes.data), (ctypes.c_void_p * 1)(y.ctypes.data)
    assert lib.ember_run(ins, outs, 0) == 0
    want = np.tanh(x.astype(np.float64) * model.w.detach().numpy() - model.b.detach().numpy())
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-6)


def test_header_compiles_and_carries_the_shapes(scale_package: tuple[Path, Scale], tmp_path: Path) -> None:
    path, _ = scale_package
    src = tmp_path / "check.c"
    src.write_text(f'#include "{path.with_suffix(".h")}"\n'
                   "static const int64_t shape[] = SCALE_INPUT0_SHAPE;\n"
                   '_Static_assert(sizeof shape / sizeof shape[0] == SCALE_INPUT0_NDIM, "ndim");\n'
                   '_Static_assert(SCALE_INPUT0_NUMEL == 15 && SCALE_OUTPUT0_NBYTES == 60, "sizes");\n'
                   '_Static_assert(SCALE_NUM_INPUTS == 1 && SCALE_ABI_VERSION == 1, "counts");\n'
                   "int main(void) { return ember_run(0, 0, 0) == 0 ? 0 : 1; }\n")
    subprocess.run(["cc", "-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic", "-fsyntax-only", str(src)],
                   check=True, capture_output=True)
    header = path.with_suffix(".h").read_text()
    assert '#define SCALE_INPUT0_NAME "x"' in header and '#define SCALE_OUTPUT0_DTYPE "float32"' in header


def test_several_inputs_and_outputs(tmp_path: Path) -> None:
    def pair(x: ember.Tensor, y: ember.Tensor) -> tuple[ember.Tensor, dict[str, ember.Tensor]]:
        return x + y, {"prod": (x * y).sum(1), "x": x}

    path = tmp_path / "pair.so"
    ember.export(pair, (ember.randn(2, 3), ember.randn(2, 3)), str(path))
    meta = inspect_package(path)
    assert [t["name"] for t in meta["inputs"]] == ["x", "y"] and meta["name"] == "pair"
    assert [(t["name"], t["shape"]) for t in meta["outputs"]] == [("output0", [2, 3]), ("output1", [2]),
                                                                 ("output2", [2, 3])]
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    y = np.full((2, 3), 0.5, np.float32)
    s, p, same = load(path)(x, y)
    np.testing.assert_allclose(s, x + y)
    np.testing.assert_allclose(p, (x * y).sum(1), rtol=1e-6)
    np.testing.assert_array_equal(same, x)


def test_export_refuses_what_it_cannot_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = _scale_model(0)
    with pytest.raises(ArgumentError, match="does not exist"):
        ember.export(model, (ember.randn(3, 5),), str(tmp_path / "no" / "such" / "m.so"))
    with pytest.raises(ArgumentError, match="at least one tensor"):
        ember.export(model, (), str(tmp_path / "m.so"))
    with pytest.raises(CompileError, match="must return a tensor"):
        ember.export(lambda x: (x * 2, 3), (ember.randn(2),), str(tmp_path / "m.so"))
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("CC", raising=False)
    with pytest.raises(CompileError, match="needs a C compiler.*install one.*or set CC"):
        ember.export(model, (ember.randn(3, 5),), str(tmp_path / "m.so"))
    assert os.listdir(tmp_path) == []


def test_cli_export_writes_a_package_that_loads(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    factory = tmp_path / "model.py"
    factory.write_text("import ember\nfrom ember import nn\n\n"
                       "def make():\n    ember.manual_seed(7)\n"
                       "    return nn.Sequential(nn.Tanh(), nn.Sigmoid())\n")
    out = tmp_path / "cli.so"
    assert cli_main(["export", f"{factory}:make", "--input", "2x4", "-o", str(out), "--name", "tiny"]) == 0
    assert f"exported {out}" in capsys.readouterr().out
    package = load(out)
    assert package.name == "tiny" and [s.shape for s in package.inputs] == [(2, 4)]
    x = np.linspace(-3, 3, 8, dtype=np.float32).reshape(2, 4)
    np.testing.assert_allclose(package(x), 1 / (1 + np.exp(-np.tanh(x.astype(np.float64)))), rtol=1e-5)
    assert cli_main(["export", f"{factory}:make", "-o", str(tmp_path / "x.so")]) == 2
    assert "--input" in capsys.readouterr().err
    assert not (tmp_path / "x.so").exists()


def test_weights_section_holds_the_parameters_in_order(scale_package: tuple[Path, Scale]) -> None:
    path, model = scale_package
    data = path.read_bytes()
    off, size = elf_sections(data, len(data) - TRAILER.size)[WEIGHTS_SECTION]
    meta = inspect_package(path)
    assert size == meta["weights_bytes"] == 128  # w at 0 (60 bytes), -b at 64 (20 bytes), padded
    w = np.frombuffer(data[off:off + 60], np.float32)
    np.testing.assert_array_equal(w, model.w.detach().numpy().ravel())
    # ``x * w - b`` is canonicalized to ``x * w + neg(b)``, and neg(b) reads a weight alone: weight
    # preparation (passes/hoist_parameters.py) computed it at export, so the package holds -b
    b = np.frombuffer(data[off + 64:off + 84], np.float32)
    np.testing.assert_array_equal(b, -model.b.detach().numpy())
