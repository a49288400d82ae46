"""Loading ember packages: shared libraries written by ``ember.export``, run with numpy and ctypes only.

>>> from ember.runtime import load                    # doctest: +SKIP
>>> model = load("lenet5.so")                         # doctest: +SKIP
>>> logits = model(np.zeros((2, 1, 28, 28), np.float32))   # doctest: +SKIP

A package is one ELF shared library holding the generated kernels, the entry function, the weights (a
``.ember_weights`` section), the metadata as JSON (a ``.ember_meta`` section) and a small C ABI
(``ember_run``, ``ember_metadata``, ...; the header ``ember.export`` writes next to the library
documents it). After the last ELF byte comes a fixed 128-byte trailer::

    magic "EMBERPK\\0" | format version u32 | reserved u32 | body size u64 |
    sha256(metadata) | sha256(weights) | sha256(every other byte of the body) | "EMBEREND"

Why the checks run before ``dlopen``: loading a shared library runs its constructors, so a foreign or
damaged file must be refused by reading it, never by executing it. ``load`` parses the ELF header with
``struct`` (class, byte order, type, machine), reads the trailer, checks the format version and all three
checksums, parses the metadata, compares the CPU features the code was compiled for with this CPU's
(an instruction the CPU lacks would kill the process), and only then opens the library. Every refusal
is a ``PackageError`` saying what is wrong.

This module imports neither the compiler, the frontend nor llvmlite: a deployed model needs only numpy.

Threads: calls on one loaded package may run concurrently. Each call takes its own arena (the scratch
memory for intermediates) from a small pool, so calls never share memory; weights are read-only.
"""

from __future__ import annotations

import ctypes
import json
import mmap
import os
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
from ember.runtime import settings
from ember.runtime.cpu import _aligned_bytes, _check, _pointer_array
from ember.runtime.errors import ArgumentError, PackageError
from ember.runtime.executable import TensorSpec

__all__ = ["ABI_VERSION", "FORMAT_VERSION", "Package", "inspect_package", "load"]

FORMAT_VERSION = 1                  # layout of the file: sections, trailer, metadata keys
ABI_VERSION = 1                     # the exported C functions (ember_abi_version() returns it)
MAGIC = b"EMBERPK\x00"
END_MAGIC = b"EMBEREND"
TRAILER = struct.Struct("<8sIIQ32s32s32s8s")   # 128 bytes
META_SECTION = ".ember_meta"
WEIGHTS_SECTION = ".ember_weights"

_ELF_MACHINES = {3: "x86", 62: "x86_64", 40: "arm", 183: "aarch64", 21: "ppc64", 22: "s390x",
                 243: "riscv64", 8: "mips"}
_HOST_ALIASES = {"amd64": "x86_64", "arm64": "aarch64", "ppc64le": "ppc64"}
_ET_DYN = 3
_SHT_NOBITS = 8
# LLVM feature name -> /proc/cpuinfo flag, for the x86 features whose absence would raise SIGILL.
_X86_FLAGS = {
    "sse3": "pni", "ssse3": "ssse3", "sse4.1": "sse4_1", "sse4.2": "sse4_2", "popcnt": "popcnt",
    "avx": "avx", "avx2": "avx2", "fma": "fma", "f16c": "f16c", "bmi": "bmi1", "bmi2": "bmi2",
    "avx512f": "avx512f", "avx512bw": "avx512bw", "avx512cd": "avx512cd", "avx512dq": "avx512dq",
    "avx512vl": "avx512vl", "avx512vnni": "avx512_vnni", "avx512bf16": "avx512_bf16",
    "avx512fp16": "avx512_fp16", "avx512vbmi": "avx512vbmi", "avxvnni": "avx_vnni",
}


def host_machine() -> str:
    """This process's machine in ELF terms ("x86_64", "aarch64", ...)."""
    import platform  # here, not at import: `import ember` loads this module and should stay quick

    m = platform.machine().lower()
    return _HOST_ALIASES.get(m, m)


@dataclass(frozen=True)
class Trailer:
    version: int
    body_size: int
    meta_sha256: bytes
    weights_sha256: bytes
    rest_sha256: bytes

    def pack(self) -> bytes:
        return TRAILER.pack(MAGIC, self.version, 0, self.body_size, self.meta_sha256, self.weights_sha256,
                            self.rest_sha256, END_MAGIC)


# ---- reading the file without executing it ------------------------------------------------------


def _fail(path: str, what: str) -> PackageError:
    return PackageError(f"ember.runtime.load: {path}: {what}")


def elf_machine(data: Any, path: str = "<bytes>") -> str:
    """Check the ELF identification of ``data`` (a 64-bit little-endian shared library) and return its
    machine name; raise ``PackageError`` for anything else."""
    if len(data) < 64 or bytes(data[:4]) != b"\x7fELF":
        raise _fail(path, "not an ember package: not an ELF shared library (no ELF magic)")
    if data[4] != 2 or data[5] != 1:
        raise _fail(path, "not an ember package: not a 64-bit little-endian ELF file")
    e_type, e_machine = struct.unpack_from("<HH", data, 16)
    if e_type != _ET_DYN:
        raise _fail(path, f"not an ember package: ELF type {e_type} is not a shared library")
    return _ELF_MACHINES.get(e_machine, f"ELF machine {e_machine}")


def elf_sections(data: Any, body_size: int, path: str = "<bytes>") -> dict[str, tuple[int, int]]:
    """Named sections of the ELF image ``data[:body_size]`` as ``{name: (file offset, size)}``. Every
    offset is bounds-checked, so a damaged table raises ``PackageError`` instead of reading garbage."""
    shoff, = struct.unpack_from("<Q", data, 40)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 58)
    if shentsize != 64 or shnum == 0 or shstrndx >= shnum or shoff + shnum * 64 > body_size:
        raise _fail(path, "corrupted: the ELF section table lies outside the file")
    headers = [struct.unpack_from("<IIQQQQ", data, shoff + 64 * i) for i in range(shnum)]
    _, str_type, _, _, str_off, str_size = headers[shstrndx]
    if str_type == _SHT_NOBITS or str_off + str_size > body_size:
        raise _fail(path, "corrupted: the ELF section name table lies outside the file")
    names = bytes(data[str_off:str_off + str_size])
    out: dict[str, tuple[int, int]] = {}
    for name_off, sh_type, _, _, off, size in headers:
        if name_off >= len(names):
            raise _fail(path, "corrupted: an ELF section name lies outside the name table")
        name = names[name_off:names.index(b"\0", name_off) if b"\0" in names[name_off:] else None]
        if sh_type != _SHT_NOBITS:
            if off + size > body_size:
                raise _fail(path, f"corrupted: section {name.decode(errors='replace')} lies outside the file")
            out[name.decode("ascii", errors="replace")] = (off, size)
    return out


def package_digests(data: Any, body_size: int, weights: tuple[int, int],
                    meta: tuple[int, int]) -> tuple[bytes, bytes, bytes]:
    """SHA-256 of the metadata section, of the weights section, and of every other body byte."""
    import hashlib  # here, not at import (loading OpenSSL costs ~20 ms)

    view = memoryview(data)
    w_off, w_size = weights
    m_off, m_size = meta
    rest = hashlib.sha256(view[:w_off])
    rest.update(view[w_off + w_size:body_size])
    return (hashlib.sha256(view[m_off:m_off + m_size]).digest(),
            hashlib.sha256(view[w_off:w_off + w_size]).digest(), rest.digest())


def _read_trailer(data: Any, path: str) -> Trailer:
    if len(data) < 64 + TRAILER.size:
        raise _fail(path, "no ember package trailer: the file is truncated or was not written by "
                          "ember.export")
    fields = TRAILER.unpack_from(data, len(data) - TRAILER.size)
    magic, version, flags, body, meta, weights, rest, end = fields
    if magic != MAGIC or end != END_MAGIC:
        raise _fail(path, "no ember package trailer at the end of the file: the file is truncated or was not "
                          "written by ember.export")
    if version != FORMAT_VERSION:
        raise _fail(path, f"package format version {version}; this runtime reads version {FORMAT_VERSION}: "
                          "export the model again with this version of ember")
    if flags != 0:
        raise _fail(path, f"corrupted: unknown trailer flags {flags:#x}")
    if body != len(data) - TRAILER.size:
        raise _fail(path, f"truncated or extended: the trailer records {body} bytes of library, the file "
                          f"holds {len(data) - TRAILER.size}")
    return Trailer(version, body, meta, weights, rest)


def _verify(data: Any, path: str) -> tuple[dict[str, Any], Trailer]:
    """Every check that can be made by reading ``data``; returns the parsed metadata and the trailer."""
    machine = elf_machine(data, path)
    if machine != host_machine():
        raise _fail(path, f"wrong architecture: the library was built for {machine}, this process runs on "
                          f"{host_machine()}")
    trailer = _read_trailer(data, path)
    sections = elf_sections(data, trailer.body_size, path)
    for name in (META_SECTION, WEIGHTS_SECTION):
        if name not in sections:
            raise _fail(path, f"not an ember package: no {name} section")
    meta_sha, weights_sha, rest_sha = package_digests(data, trailer.body_size, sections[WEIGHTS_SECTION],
                                                      sections[META_SECTION])
    for what, got, want in (("metadata", meta_sha, trailer.meta_sha256),
                            ("weights", weights_sha, trailer.weights_sha256),
                            ("code and headers", rest_sha, trailer.rest_sha256)):
        if got != want:
            raise _fail(path, f"corrupted: the {what} checksum does not match (sha256 {got.hex()[:16]}..., "
                              f"recorded {want.hex()[:16]}...)")
    off, size = sections[META_SECTION]
    meta = _parse_metadata(bytes(data[off:off + size]), path)
    try:
        _check_metadata(meta, sections[WEIGHTS_SECTION][1], path)
    except (AttributeError, KeyError, TypeError, ValueError) as e:  # well-formed JSON of the wrong shape
        raise _fail(path, f"corrupted: unexpected metadata layout ({e!r})") from None
    if meta.get("weights_sha256") != trailer.weights_sha256.hex():
        raise _fail(path, "corrupted: the metadata and the trailer record different weights checksums")
    return meta, trailer


def _parse_metadata(raw: bytes, path: str) -> dict[str, Any]:
    try:
        meta = json.loads(raw.rstrip(b"\0").decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise _fail(path, f"corrupted: the metadata is not valid JSON ({e})") from None
    if not isinstance(meta, dict):
        raise _fail(path, "corrupted: the metadata is not a JSON object")
    return meta


def _specs(meta: dict[str, Any], key: str, path: str) -> tuple[TensorSpec, ...]:
    try:
        return tuple(TensorSpec(str(t["name"]), tuple(int(d) for d in t["shape"]), np.dtype(t["dtype"]).name)
                     for t in meta[key])
    except (KeyError, TypeError, ValueError) as e:
        raise _fail(path, f"corrupted: bad '{key}' entry in the metadata ({e!r})") from None


def _check_metadata(meta: dict[str, Any], weights_size: int, path: str) -> None:
    if meta.get("format_version") != FORMAT_VERSION or meta.get("abi_version") != ABI_VERSION:
        raise _fail(path, f"package format {meta.get('format_version')} / ABI {meta.get('abi_version')}; "
                          f"this runtime reads format {FORMAT_VERSION} / ABI {ABI_VERSION}")
    if meta.get("machine") != host_machine():
        raise _fail(path, f"wrong architecture: compiled for {meta.get('machine')}, this is {host_machine()}")
    for t in meta.get("params", []):
        off, nbytes = t.get("offset"), t.get("nbytes")
        if not (isinstance(off, int) and isinstance(nbytes, int) and 0 <= off and 0 <= nbytes
                and off + nbytes <= weights_size):
            raise _fail(path, f"corrupted: parameter {t.get('name')!r} lies outside the weights section")
    _specs(meta, "inputs", path)
    _specs(meta, "outputs", path)
    missing = missing_cpu_features(meta.get("cpu_features", []))
    if missing:
        raise _fail(path, f"compiled for a CPU with {', '.join(missing)}, which this CPU lacks "
                          f"(built for {meta.get('cpu', '?')}): export the model again on this machine")


def missing_cpu_features(features: list[str]) -> list[str]:
    """The LLVM CPU features in ``features`` that this x86 CPU's /proc/cpuinfo does not list."""
    if host_machine() != "x86_64":
        return []
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            line = next((ln for ln in f if ln.startswith("flags")), "")
    except OSError:
        return []
    flags = set(line.partition(":")[2].split())
    if not flags:
        return []
    return sorted(f for f in features if f in _X86_FLAGS and _X86_FLAGS[f] not in flags)


@contextmanager
def _mapped(path: str) -> Iterator[Any]:
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as e:
        raise _fail(path, f"cannot open: {e.strerror}") from None
    with f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            raise _fail(path, "empty file: not an ember package")
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            yield m


def inspect_package(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Validate the package at ``path`` without loading it and return its metadata (names, shapes,
    dtypes, ember version, arena size, checksums). Raises ``PackageError`` if anything is wrong."""
    path = os.fspath(path)
    with _mapped(path) as data:
        return _verify(data, path)[0]


# ---- running a validated package ---------------------------------------------------------------


class Package:
    """A loaded package: ``outputs = package(*inputs)`` on numpy arrays. A model with one output returns
    one array, otherwise a tuple in the order of ``outputs``."""

    def __init__(self, path: str, meta: dict[str, Any], library: str | None = None) -> None:
        self.path = path
        self.metadata = meta
        self.name: str = meta.get("name", "model")
        self.inputs = _specs(meta, "inputs", path)
        self.outputs = _specs(meta, "outputs", path)
        self.arena_bytes = int(meta.get("arena_bytes", 0))
        settings.prepare_thread_pool()  # how idle libgomp workers wait (read once, at load)
        try:
            self._lib = ctypes.CDLL(library or os.path.abspath(path))
        except OSError as e:
            raise _fail(path, f"the dynamic loader refused it: {e}") from None
        self._check_abi(meta)
        fn = self._lib.ember_run_with_arena
        fn.restype = ctypes.c_int32
        fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int32]
        self._run = fn
        self._arenas: list[np.ndarray] = []
        self._lock = threading.Lock()

    def _check_abi(self, meta: dict[str, Any]) -> None:
        lib = self._lib
        lib.ember_abi_version.restype = ctypes.c_uint32
        if lib.ember_abi_version() != ABI_VERSION:
            raise _fail(self.path, f"C ABI version {lib.ember_abi_version()}, expected {ABI_VERSION}")
        lib.ember_metadata.restype = ctypes.c_char_p
        if json.loads(lib.ember_metadata()) != meta:
            raise _fail(self.path, "the library the dynamic loader returned is not the one validated (was it "
                                   "replaced while loading, or opened here by other means than load?)")
        lib.ember_cpu_supported.restype = ctypes.c_int32
        if not lib.ember_cpu_supported():
            raise _fail(self.path, "this CPU lacks instructions the package was compiled for: export the "
                                   "model again on this machine")

    @contextmanager
    def _arena(self) -> Iterator[np.ndarray]:
        with self._lock:
            arena = self._arenas.pop() if self._arenas else None
        if arena is None:
            arena = _aligned_bytes(self.arena_bytes)
        try:
            yield arena
        finally:
            with self._lock:
                self._arenas.append(arena)

    def __call__(self, *inputs: Any, num_threads: int | None = None) -> Any:
        if len(inputs) != len(self.inputs):
            raise ArgumentError(f"{self.name}: expected {len(self.inputs)} inputs "
                                f"({', '.join(s.name for s in self.inputs)}), got {len(inputs)}")
        args = [_check(spec, np.asarray(x), "input", self.name) for spec, x in zip(self.inputs, inputs)]
        outs = [np.empty(s.shape, dtype=s.dtype) for s in self.outputs]
        in_ptrs, out_ptrs = _pointer_array(args), _pointer_array(outs)
        threads = settings.num_threads() if num_threads is None else int(num_threads)
        with self._arena() as arena:
            status = self._run(ctypes.addressof(in_ptrs), ctypes.addressof(out_ptrs), arena.ctypes.data,
                               threads)
        if status == 3:
            raise PackageError(f"{self.name}: this CPU lacks instructions the package was compiled for")
        if status:
            raise MemoryError(f"{self.name}: a kernel could not allocate its working memory")
        if self.metadata.get("single_output", False):
            return outs[0]
        return tuple(outs)

    def __repr__(self) -> str:
        sig = ", ".join(map(str, self.inputs))
        return f"<ember package {self.name}({sig}) -> {', '.join(map(str, self.outputs))} from {self.path}>"


_loaded: dict[str, bytes] = {}   # library path dlopen-ed by this process -> digest of its contents
_loaded_lock = threading.Lock()


def _private_copy(data: Any, path: str) -> str:
    """Write the validated bytes to a fresh file: the dynamic loader would hand back the library it
    already loaded from ``path`` (it matches by name) even though the file has been re-exported since."""
    import tempfile

    folder = tempfile.mkdtemp(prefix="ember-package-")
    copy = os.path.join(folder, os.path.basename(path))
    with open(copy, "wb") as f:
        f.write(data)
    return copy


def load(path: str | os.PathLike[str]) -> Package:
    """Validate the ember package at ``path`` (by reading it, before any of its code can run), load it,
    and return a callable over numpy arrays. Raises ``PackageError`` for a truncated, corrupted,
    foreign, wrong-architecture or wrong-version file.

    Loading a package that was re-exported to a path this process already loaded from works: the
    new contents are loaded from a private copy, since the dynamic loader would reuse the old library.
    """
    path = os.fspath(path)
    library = os.path.abspath(path)
    copy = None
    with _mapped(path) as data:
        meta, trailer = _verify(data, path)
        digest = trailer.meta_sha256 + trailer.weights_sha256 + trailer.rest_sha256
        with _loaded_lock:
            if _loaded.setdefault(library, digest) != digest:
                copy = _private_copy(data, path)
    try:
        return Package(path, meta, copy or library)
    finally:
        if copy is not None:  # the mapping outlives the file; nothing is left behind in /tmp
            os.remove(copy)
            os.rmdir(os.path.dirname(copy))
