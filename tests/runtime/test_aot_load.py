"""ember.runtime.load: validation before dlopen (corrupted, truncated, foreign, wrong-architecture and
wrong-version files raise PackageError without crashing or running any of their code), runs without
llvmlite, concurrent calls, argument checks."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import threading
from pathlib import Path

import ember
import numpy as np
import pytest
from ember import nn
from ember.runtime import load
from ember.runtime.aot import (
    META_SECTION,
    TRAILER,
    WEIGHTS_SECTION,
    Trailer,
    elf_sections,
    inspect_package,
    package_digests,
)
from ember.runtime.errors import ArgumentError, DTypeError, PackageError, ShapeError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


class Tiny(nn.Module):
    """Elementwise only, so it compiles in a moment; two parameters make a real weights section."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(ember.randn(3, 5))
        self.b = nn.Parameter(ember.randn(5))

    def forward(self, x: ember.Tensor) -> ember.Tensor:
        return (x * self.w + self.b).sigmoid() * 2.0


def _reference(model: Tiny, x: np.ndarray) -> np.ndarray:
    w, b = model.w.detach().numpy().astype(np.float64), model.b.detach().numpy().astype(np.float64)
    return 2.0 / (1.0 + np.exp(-(x.astype(np.float64) * w + b)))


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Tiny]:
    ember.manual_seed(3)
    model = Tiny().eval()
    path = tmp_path_factory.mktemp("aot") / "tiny.so"
    assert ember.export(model, (ember.randn(3, 5),), str(path)) == str(path)
    return path, model


def test_load_runs_the_package(package: tuple[Path, Tiny]) -> None:
    path, model = package
    exported = load(path)
    x = np.random.default_rng(0).standard_normal((3, 5)).astype(np.float32)
    y = exported(x)
    assert isinstance(y, np.ndarray) and y.dtype == np.float32 and y.shape == (3, 5)
    np.testing.assert_allclose(y, _reference(model, x), rtol=1e-5, atol=1e-6)
    assert [str(s) for s in exported.inputs] == ["x: float32[3,5]"]
    assert [str(s) for s in exported.outputs] == ["output: float32[3,5]"]


def test_metadata_names_shapes_versions_and_checksums(package: tuple[Path, Tiny]) -> None:
    path, model = package
    meta = inspect_package(path)
    assert meta["name"] == "Tiny" and meta["ember_version"] == ember.__version__
    assert meta["format_version"] == 1 and meta["abi_version"] == 1 and meta["machine"] == "x86_64"
    assert meta["inputs"] == [{"name": "x", "shape": [3, 5], "dtype": "float32"}]
    assert [(p["name"], p["shape"], p["offset"] % 64) for p in meta["params"]] == [("w", [3, 5], 0),
                                                                                     ("b", [5], 0)]
    assert isinstance(meta["arena_bytes"], int) and len(meta["weights_sha256"]) == 64
    data = path.read_bytes()
    off, size = elf_sections(data, len(data) - TRAILER.size)[WEIGHTS_SECTION]
    blob = data[off:off + size]
    w = meta["params"][0]
    np.testing.assert_array_equal(np.frombuffer(blob[w["offset"]:w["offset"] + w["nbytes"]], np.float32),
                                  model.w.detach().numpy().ravel())


def test_wrong_arguments_raise_typed_errors(package: tuple[Path, Tiny]) -> None:
    exported = load(package[0])
    with pytest.raises(ShapeError, match=r"input 'x' must have shape \[3, 5\], got \[5, 3\]"):
        exported(np.zeros((5, 3), np.float32))
    with pytest.raises(DTypeError, match="must have dtype float32, got float64"):
        exported(np.zeros((3, 5)))
    with pytest.raises(ArgumentError, match=r"expected 1 inputs \(x\), got 2"):
        exported(np.zeros((3, 5), np.float32), np.zeros((3, 5), np.float32))


def test_concurrent_calls_from_threads_agree_with_serial_calls(package: tuple[Path, Tiny]) -> None:
    exported = load(package[0])
    rng = np.random.default_rng(1)
    xs = [rng.standard_normal((3, 5)).astype(np.float32) for _ in range(8)]
    want = [exported(x) for x in xs]
    got: dict[tuple[int, int], np.ndarray] = {}
    barrier = threading.Barrier(len(xs))

    def work(i: int) -> None:
        barrier.wait()
        for rep in range(25):
            got[i, rep] = exported(xs[i], num_threads=2)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 25 * len(xs)
    for (i, _), y in got.items():
        np.testing.assert_array_equal(y, want[i])


def test_reexport_to_a_loaded_path_loads_the_new_contents(tmp_path: Path) -> None:
    ember.manual_seed(5)
    model = Tiny().eval()
    path = tmp_path / "again.so"
    ember.export(model, (ember.randn(3, 5),), str(path))
    x = np.ones((3, 5), np.float32)
    first = load(path)
    before = _reference(model, x)
    np.testing.assert_allclose(first(x), before, rtol=1e-5)
    with ember.no_grad():
        model.b.add_(1.0)
    ember.export(model, (ember.randn(3, 5),), str(path))
    np.testing.assert_allclose(load(path)(x), _reference(model, x), rtol=1e-5)
    np.testing.assert_allclose(first(x), before, rtol=1e-5)  # the first package keeps its own weights
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again.h", "again.so"]  # no temporary files left


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(where=st.floats(0.0, 1.0, exclude_max=True), bit=st.integers(0, 7), cut=st.booleans())
def test_any_flipped_bit_or_cut_is_refused_by_reading_alone(package: tuple[Path, Tiny], tmp_path: Path,
                                                            where: float, bit: int, cut: bool) -> None:
    """Every byte of a package is covered by a check (ELF header, trailer fields, three checksums):
    one flipped bit anywhere, or a cut anywhere, is a PackageError from inspect_package, which never
    opens the library, and never any other exception."""
    data = bytearray(package[0].read_bytes())
    pos = int(where * len(data))
    if cut:
        del data[pos:]
    else:
        data[pos] ^= 1 << bit
    damaged = tmp_path / "damaged.so"
    damaged.write_bytes(bytes(data))
    with pytest.raises(PackageError):
        inspect_package(damaged)


# ---- damaged and foreign files, checked in a subprocess ------------------------------------------


_PROBE = r"""
import json, os, sys
sys.modules["llvmlite"] = None          # the loader must not need it
from ember.runtime import PackageError, load
results = {}
for name, path in json.loads(sys.argv[1]).items():
    try:
        load(path)
        results[name] = "loaded"
    except PackageError as e:
        results[name] = "PackageError: " + str(e)
    except Exception as e:  # noqa: BLE001
        results[name] = f"{type(e).__name__}: {e}"
maps = open("/proc/self/maps").read()
opened = [n for n, p in json.loads(sys.argv[1]).items() if os.path.realpath(p) in maps]
print(json.dumps({"results": results, "mapped": opened}))
"""


def _retrailer(data: bytearray, **changes: object) -> None:
    """Recompute the checksums (and apply ``changes``) so only the intended defect remains."""
    body = len(data) - TRAILER.size
    sections = elf_sections(data, body)
    meta, weights, rest = package_digests(bytes(data), body, sections[WEIGHTS_SECTION],
                                          sections[META_SECTION])
    fields = {"version": 1, "body_size": body, "meta_sha256": meta, "weights_sha256": weights,
              "rest_sha256": rest, **changes}
    data[body:] = Trailer(**fields).pack()  # type: ignore[arg-type]


def _flip(data: bytearray, section: str, where: float = 0.5) -> None:
    off, size = elf_sections(data, len(data) - TRAILER.size)[section]
    data[off + int(size * where)] ^= 0x10


def _foreign_library(folder: Path, marker: Path) -> Path:
    """A genuine shared library whose constructor would leave a marker file if it ever ran."""
    src = folder / "foreign.c"
    src.write_text('#include <stdio.h>\n__attribute__((constructor)) static void ran(void) {\n'
                   f'    FILE *f = fopen("{marker}", "w"); if (f) {{ fputs("ran", f); fclose(f); }}\n}}\n'
                   "int ember_abi_version(void) { return 1; }\n")
    lib = folder / "foreign.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(lib), str(src)], check=True)
    return lib


def _damaged_files(good: bytes, folder: Path, marker: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, a phrase the PackageError must contain)."""
    cases: dict[str, tuple[bytes, str]] = {}
    cases["truncated_half"] = (good[: len(good) // 2], "truncated")
    cases["truncated_trailer"] = (good[:-1], "truncated")
    cases["extended"] = (good + b"\0" * 16, "truncated")
    for name, section, phrase in (("weights_bitflip", WEIGHTS_SECTION, "weights checksum"),
                                  ("metadata_bitflip", META_SECTION, "metadata checksum"),
                                  ("code_bitflip", ".text", "code and headers checksum"),
                                  ("symbols_bitflip", ".dynsym", "code and headers checksum")):
        data = bytearray(good)
        _flip(data, section)
        cases[name] = (bytes(data), phrase)
    data = bytearray(good)
    data[18:20] = struct.pack("<H", 183)          # e_machine: aarch64
    cases["wrong_architecture"] = (bytes(data), "built for aarch64, this process runs on x86_64")
    data = bytearray(good)
    _retrailer(data, version=2)
    cases["wrong_format_version"] = (bytes(data), "package format version 2; this runtime reads version 1")
    data = bytearray(good)
    off, size = elf_sections(data, len(data) - TRAILER.size)[META_SECTION]
    meta = bytes(data[off:off + size]).replace(b'"format_version":1', b'"format_version":7')
    data[off:off + size] = meta
    _retrailer(data)
    cases["wrong_metadata_version"] = (bytes(data), "package format 7 / ABI 1; this runtime reads format 1")
    foreign = _foreign_library(folder, marker).read_bytes()
    cases["foreign_elf"] = (foreign, "no ember package trailer")
    fake = bytearray(foreign) + Trailer(1, len(foreign), b"\0" * 32, b"\0" * 32, b"\0" * 32).pack()
    cases["foreign_elf_with_trailer"] = (bytes(fake), "no .ember_meta section")
    cases["text_file"] = (b"this is not a shared library\n" * 40, "not an ELF shared library")
    cases["empty"] = (b"", "empty file")
    cases["elf_header_only"] = (good[:64], "truncated")
    out = {}
    for name, (data, phrase) in cases.items():
        p = folder / f"{name}.so"
        p.write_bytes(data)
        out[name] = (p, phrase)
    out["missing"] = (folder / "missing.so", "cannot open")
    return out


def test_damaged_and_foreign_files_raise_package_error_without_running_code(
        package: tuple[Path, Tiny], tmp_path: Path) -> None:
    marker = tmp_path / "constructor_ran"
    files = _damaged_files(package[0].read_bytes(), tmp_path, marker)
    paths = {name: str(p) for name, (p, _) in files.items()}
    proc = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(paths)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr          # no crash, whatever the file
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    for name, (_, phrase) in files.items():
        assert report["results"][name].startswith("PackageError: "), (name, report["results"][name])
        assert phrase in report["results"][name], (name, report["results"][name])
    assert report["mapped"] == []                     # none was handed to the dynamic loader
    assert not marker.exists()                        # so no constructor ran


def test_the_foreign_library_constructor_would_run_if_loaded(tmp_path: Path) -> None:
    """The marker check above means something: dlopen of the same library does run its constructor."""
    marker = tmp_path / "constructor_ran"
    lib = _foreign_library(tmp_path, marker)
    subprocess.run([sys.executable, "-c", f"import ctypes; ctypes.CDLL({str(lib)!r})"], check=True,
                   timeout=60)
    assert marker.read_text() == "ran"


_BLOCKED = r"""
import importlib.abc, json, sys
import numpy as np

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "llvmlite" or name.startswith("llvmlite."):
            raise ImportError(f"{name} is blocked in this test")
        return None

sys.meta_path.insert(0, Block())
from ember.runtime import load
package = load(sys.argv[1])
y = package(np.load(sys.argv[2]))
np.save(sys.argv[3], y)
compiler_parts = ("llvmlite", "ember.compiler.codegen", "ember.compiler.aot")
loaded = sorted(m for m in sys.modules if m.startswith(compiler_parts))
print(json.dumps(loaded))
"""


def run_without_llvmlite(package_path: Path, x: np.ndarray, folder: Path) -> np.ndarray:
    """Run a package in a fresh interpreter where importing llvmlite raises; returns its output."""
    np.save(folder / "x.npy", x)
    proc = subprocess.run([sys.executable, "-c", _BLOCKED, str(package_path), str(folder / "x.npy"),
                           str(folder / "y.npy")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []
    return np.load(folder / "y.npy")


def test_load_works_where_llvmlite_cannot_be_imported(package: tuple[Path, Tiny], tmp_path: Path) -> None:
    path, model = package
    x = np.random.default_rng(2).standard_normal((3, 5)).astype(np.float32)
    np.testing.assert_array_equal(run_without_llvmlite(path, x, tmp_path), load(path)(x))
    np.testing.assert_allclose(run_without_llvmlite(path, x, tmp_path), _reference(model, x), rtol=1e-5)
