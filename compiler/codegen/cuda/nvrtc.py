"""NVRTC through ctypes: CUDA C source -> cubin (and PTX), without a GPU or a driver.

Why not cupy: cupy's compile path needs a working driver, and CI has none. NVRTC itself is a plain
shared library (``libnvrtc.so.12`` from the ``nvidia-cuda-nvrtc-cu12`` wheel) whose
``nvrtcCreateProgram`` / ``nvrtcCompileProgram`` / ``nvrtcGetCUBIN`` run anywhere, so the generated
code of every kernel is compiled, register-allocated and checked for real in CI.

``compile_cuda(source)`` returns a ``CudaBinary`` (cubin bytes, PTX text when NVRTC keeps it, the log,
per-function register and static shared-memory use read from the cubin's ELF sections). A failed
compilation raises ``CompileError`` carrying NVRTC's log. Results are cached per process by source and
options, so compiling the same program twice costs nothing.
"""

from __future__ import annotations

import ctypes
import glob
import hashlib
import os
import struct
import sys
from dataclasses import dataclass, field
from typing import Any

from ember.runtime.errors import CompileError

__all__ = ["CudaBinary", "DEFAULT_ARCH", "compile_cuda", "cubin_resources", "find_libnvrtc", "nvrtc_available",
           "nvrtc_version"]

DEFAULT_ARCH = "sm_90"
INSTALL_HINT = "pip install nvidia-cuda-nvrtc-cu12"

_lib: Any = None
_cache: dict[str, CudaBinary] = {}


@dataclass
class CudaBinary:
    cubin: bytes
    ptx: str | None
    log: str
    arch: str
    resources: dict[str, dict[str, int]] = field(default_factory=dict)  # function -> registers, shared


def find_libnvrtc() -> str | None:
    """Path of libnvrtc.so.12: ``$EMBER_NVRTC`` if set, else the ``nvidia/cuda_nvrtc/lib`` folder of an
    installed ``nvidia-cuda-nvrtc-cu12`` wheel on ``sys.path``."""
    env = os.environ.get("EMBER_NVRTC")
    if env:
        return env if os.path.exists(env) else None
    for root in sys.path:
        hits = sorted(glob.glob(os.path.join(root or ".", "nvidia", "cuda_nvrtc", "lib", "libnvrtc.so.1*")))
        hits = [h for h in hits if ".alt." not in h and "builtins" not in h]
        if hits:
            return hits[0]
    return None


def _load() -> Any:
    global _lib
    if _lib is None:
        path = find_libnvrtc()
        if path is None:
            raise CompileError(f"NVRTC (libnvrtc.so.12) is not installed; {INSTALL_HINT}")
        lib = ctypes.CDLL(path)
        size_p = ctypes.POINTER(ctypes.c_size_t)
        for fn, args in (("nvrtcCreateProgram", [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int,
                                                 ctypes.c_void_p, ctypes.c_void_p]),
                         ("nvrtcCompileProgram", [ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(ctypes.c_char_p)]),
                         ("nvrtcGetProgramLogSize", [ctypes.c_void_p, size_p]),
                         ("nvrtcGetProgramLog", [ctypes.c_void_p, ctypes.c_char_p]),
                         ("nvrtcGetCUBINSize", [ctypes.c_void_p, size_p]),
                         ("nvrtcGetCUBIN", [ctypes.c_void_p, ctypes.c_char_p]),
                         ("nvrtcGetPTXSize", [ctypes.c_void_p, size_p]),
                         ("nvrtcGetPTX", [ctypes.c_void_p, ctypes.c_char_p]),
                         ("nvrtcDestroyProgram", [ctypes.c_void_p]),
                         ("nvrtcVersion", [ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int)])):
            getattr(lib, fn).argtypes = args
            getattr(lib, fn).restype = ctypes.c_int
        lib.nvrtcGetErrorString.argtypes = [ctypes.c_int]
        lib.nvrtcGetErrorString.restype = ctypes.c_char_p
        _lib = lib
    return _lib


def nvrtc_available() -> bool:
    try:
        _load()
    except (CompileError, OSError):
        return False
    return True


def nvrtc_version() -> tuple[int, int]:
    lib = _load()
    major, minor = ctypes.c_int(), ctypes.c_int()
    lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor))
    return major.value, minor.value


def _check(lib: Any, status: int, what: str) -> None:
    if status != 0:
        raise CompileError(f"NVRTC {what} failed: {lib.nvrtcGetErrorString(status).decode()}")


def _read(lib: Any, prog: ctypes.c_void_p, size_fn: str, get_fn: str) -> bytes | None:
    size = ctypes.c_size_t()
    if getattr(lib, size_fn)(prog, ctypes.byref(size)) != 0 or size.value == 0:
        return None
    buf = ctypes.create_string_buffer(size.value)
    if getattr(lib, get_fn)(prog, buf) != 0:
        return None
    return buf.raw


def compile_cuda(source: str, name: str = "ember.cu", arch: str = DEFAULT_ARCH,
                 options: tuple[str, ...] = ()) -> CudaBinary:
    """Compile one CUDA C translation unit for ``arch`` (``-arch=sm_XX``: SASS in a cubin)."""
    opts = (f"-arch={arch}", "-std=c++17", "-default-device", *options)
    key = hashlib.sha256("\0".join((source, name, *opts)).encode()).hexdigest()
    if key in _cache:
        return _cache[key]
    lib = _load()
    prog = ctypes.c_void_p()
    _check(lib, lib.nvrtcCreateProgram(ctypes.byref(prog), source.encode(), name.encode(), 0, None, None),
           "nvrtcCreateProgram")
    try:
        argv = (ctypes.c_char_p * len(opts))(*[o.encode() for o in opts])
        status = lib.nvrtcCompileProgram(prog, len(opts), argv)
        log = (_read(lib, prog, "nvrtcGetProgramLogSize", "nvrtcGetProgramLog") or b"").rstrip(b"\0").decode(
            errors="replace")
        if status != 0:
            raise CompileError(f"NVRTC could not compile {name} for {arch} "
                               f"({lib.nvrtcGetErrorString(status).decode()}):\n{log}")
        cubin = _read(lib, prog, "nvrtcGetCUBINSize", "nvrtcGetCUBIN")
        if cubin is None:
            raise CompileError(f"NVRTC produced no cubin for {name} (is {arch!r} a real architecture?)")
        ptx = _read(lib, prog, "nvrtcGetPTXSize", "nvrtcGetPTX")
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(prog))
    result = CudaBinary(cubin, ptx.rstrip(b"\0").decode() if ptx else None, log, arch, cubin_resources(cubin))
    _cache[key] = result
    return result


# --------------------------------------------------------------------------------------------------
# cubin (ELF64) inspection

_EIATTR_REGCOUNT = 0x2F
_EIFMT_SVAL = 0x04


def _sections(elf: bytes) -> list[tuple[str, int, int, int, int]]:
    """``(name, type, offset, size, info)`` of every section of a little-endian ELF64 image."""
    if elf[:4] != b"\x7fELF" or elf[4] != 2:
        raise CompileError("not an ELF64 cubin")
    shoff, = struct.unpack_from("<Q", elf, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", elf, 0x3A)
    raw = [struct.unpack_from("<IIQQQQIIQQ", elf, shoff + i * shentsize) for i in range(shnum)]
    strtab_off = raw[shstrndx][4]

    def name(off: int) -> str:
        end = elf.index(b"\0", strtab_off + off)
        return elf[strtab_off + off:end].decode()

    return [(name(r[0]), r[1], r[4], r[5], r[7]) for r in raw]


def _symbols(elf: bytes, sections: list[tuple[str, int, int, int, int]]) -> list[str]:
    """Symbol names by symbol-table index."""
    symtab = next((s for s in sections if s[1] == 2), None)  # SHT_SYMTAB
    if symtab is None:
        return []
    strtab = next(s for s in sections if s[0] == ".strtab")
    names = []
    for i in range(symtab[3] // 24):
        st_name, = struct.unpack_from("<I", elf, symtab[2] + i * 24)
        end = elf.index(b"\0", strtab[2] + st_name)
        names.append(elf[strtab[2] + st_name:end].decode())
    return names


def cubin_resources(cubin: bytes) -> dict[str, dict[str, int]]:
    """Registers per thread (``EIATTR_REGCOUNT`` in ``.nv.info``) and static shared bytes (size of
    ``.nv.shared.<function>``) of every function in a cubin; empty when the image cannot be read."""
    try:
        sections = _sections(cubin)
        symbols = _symbols(cubin, sections)
    except (CompileError, ValueError, struct.error, StopIteration, IndexError):
        return {}
    out: dict[str, dict[str, int]] = {}
    for name, *_rest in sections:
        if name.startswith(".text."):
            out.setdefault(name[len(".text."):], {"registers": 0, "shared_bytes": 0})
    for name, _type, offset, size, _info in sections:
        if name.startswith(".nv.shared.") and name[len(".nv.shared."):] in out:
            out[name[len(".nv.shared."):]]["shared_bytes"] = size
        if name != ".nv.info":
            continue
        pos = offset
        while pos + 4 <= offset + size:
            fmt, attr, length = struct.unpack_from("<BBH", cubin, pos)
            pos += 4
            if fmt != _EIFMT_SVAL:
                continue
            if attr == _EIATTR_REGCOUNT and length >= 8:
                sym, regs = struct.unpack_from("<II", cubin, pos)
                if sym < len(symbols) and symbols[sym] in out:
                    out[symbols[sym]]["registers"] = regs
            pos += length
    return out
