"""The content-hashed on-disk compile cache: a second process compiling the same graph loads its machine
code instead of generating it again (ResNet-18 at 224: seconds of LLVM work become a file read).

Key: SHA-256 of everything that decides the generated code, and nothing else:

* the traced graph's text without source locations (ops, attributes, shapes, dtypes, names, outputs)
  and the bytes of its constants; parameter values only with ``freeze=True`` (live weights are read at
  run time, so retraining never invalidates an entry);
* the target, the program name, the freeze flag;
* the host: LLVM's CPU name and feature string, llvmlite's and LLVM's versions, the entry format;
* a digest of the compiler's own source (every ``.py`` under ``ember.compiler`` and ``ember.runtime``),
  so an edited compiler never loads code an older one made.

Value, one file per key (``<dir>/v1/<key>.bin``)::

    magic "EMBERCC1" | u64 meta length | u64 object length | u64 sources length | sha256(rest) | meta |
    object | sources

``meta`` is JSON (the executable as data: signatures, arena size, memory plan, call order, entry symbol,
the external functions the object calls, the graph's input/output/parameter names), ``object`` the ELF
object MCJIT generated, ``sources`` the zlib-compressed JSON of the kernel IR and LLVM IR texts (for
``kernels()``, reports and export). Nothing is unpickled and nothing from the file runs except the
object code, and only after the checksum, the magic, the lengths and the key recorded inside all match.
A file that fails any check (truncated, corrupt, another version) is logged as a warning, counted in
``STATS["rejected"]`` and ignored: the caller compiles again and overwrites it. Writes go to a temporary
file in the same folder and are renamed over the entry (``os.replace``), so a reader never sees half an
entry and concurrent writers of the same key are harmless.

``EMBER_CACHE_DIR`` chooses the folder (``off`` or ``0`` disables the cache); see
``ember.runtime.settings.cache_dir``. The folder is never pruned: delete it to reclaim the space.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import struct
import tempfile
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
from ember.runtime import settings

__all__ = ["STATS", "CacheEntry", "compiler_digest", "entry_path", "graph_key", "load", "store"]

log = logging.getLogger("ember.cache")

FORMAT = 1
MAGIC = b"EMBERCC1"
_HEADER = struct.Struct("<QQQ32s")
_ROOTS = ("compiler", "runtime")  # ember.compiler and ember.runtime: the code that decides the code

STATS: dict[str, int] = {"hits": 0, "misses": 0, "writes": 0, "rejected": 0, "write_errors": 0}


@dataclass
class CacheEntry:
    """One loaded entry: the executable's metadata, the object code and the (decompressed) sources."""

    meta: dict[str, Any]
    object_code: bytes
    sources: dict[str, str]


@functools.lru_cache(maxsize=1)
def compiler_digest() -> str:
    """SHA-256 over the paths and contents of every Python file of ember.compiler and ember.runtime."""
    import ember.compiler
    import ember.runtime

    h = hashlib.sha256()
    for package in (ember.compiler, ember.runtime):
        root = os.path.dirname(os.path.abspath(package.__file__ or ""))
        for folder, dirs, files in os.walk(root):
            dirs.sort()
            for file in sorted(files):
                if file.endswith(".py"):
                    path = os.path.join(folder, file)
                    h.update(os.path.relpath(path, root).encode() + b"\0")
                    with open(path, "rb") as f:
                        h.update(hashlib.sha256(f.read()).digest())
    return h.hexdigest()


@functools.lru_cache(maxsize=1)
def host_identity() -> str:
    """What the machine code depends on besides the graph: CPU, code generator versions, entry format."""
    import llvmlite
    import llvmlite.binding as llvm
    from ember.compiler.codegen.llvm.jit import host_target_machine

    host_target_machine()  # initializes LLVM's native target, needed to ask for the CPU
    return json.dumps({"cpu": llvm.get_host_cpu_name(), "features": llvm.get_host_cpu_features().flatten(),
                       "llvmlite": llvmlite.__version__, "llvm": list(llvm.llvm_version_info),
                       "format": FORMAT}, sort_keys=True)


def _feed_arrays(h: Any, tag: bytes, arrays: dict[str, Any]) -> None:
    for name in sorted(arrays):
        data = arrays[name]
        if data is None:
            continue
        a = np.ascontiguousarray(getattr(data, "_data", data))
        h.update(tag + name.encode() + b"\0" + a.dtype.str.encode() + repr(a.shape).encode())
        h.update(a.tobytes())


def graph_key(graph: Any, target: str, name: str | None, freeze: bool, variant: str = "") -> str | None:
    """The cache key of compiling ``graph`` (before any pass runs), or None when the cache is off.
    ``variant`` names a compile option that changes the code (``"hoist"``: weight preparation split off)."""
    if settings.cache_dir() is None:
        return None
    from ember.compiler.ir.printer import print_graph

    h = hashlib.sha256()
    for part in (host_identity(), compiler_digest(), target, repr(name), repr(freeze), variant):
        h.update(part.encode() + b"\0")
    h.update(print_graph(graph, locations="none").encode())
    _feed_arrays(h, b"constant:", graph.constant_data)
    if freeze:  # the weights become constants of the generated code
        _feed_arrays(h, b"binding:", graph.bindings)
    return h.hexdigest()


def entry_path(key: str) -> str | None:
    """Where the entry of ``key`` lives (None when the cache is off)."""
    folder = settings.cache_dir()
    return None if folder is None else os.path.join(folder, f"v{FORMAT}", f"{key}.bin")


def _reject(path: str, why: str) -> None:
    STATS["rejected"] += 1
    log.warning("ember compile cache: ignoring %s (%s); compiling again", path, why)


def _parse(blob: bytes, key: str) -> CacheEntry | str:
    """The entry in ``blob`` or the reason it is not a valid entry for ``key``."""
    start = len(MAGIC) + _HEADER.size
    if len(blob) < start or blob[:len(MAGIC)] != MAGIC:
        return "not an ember cache entry of this format"
    meta_len, obj_len, src_len, digest = _HEADER.unpack_from(blob, len(MAGIC))
    if start + meta_len + obj_len + src_len != len(blob):
        return "truncated or padded"
    if hashlib.sha256(memoryview(blob)[start:]).digest() != digest:
        return "checksum mismatch"
    try:
        meta = json.loads(blob[start:start + meta_len])
        sources = json.loads(zlib.decompress(blob[start + meta_len + obj_len:]))
    except (ValueError, zlib.error) as e:
        return f"unreadable metadata: {e}"
    if not isinstance(meta, dict) or meta.get("key") != key or meta.get("format") != FORMAT:
        return "written for another key or format"
    return CacheEntry(meta, bytes(blob[start + meta_len:start + meta_len + obj_len]), sources)


def load(key: str) -> CacheEntry | None:
    """The verified entry of ``key``, or None (missing, unreadable or invalid: logged and counted)."""
    path = entry_path(key)
    if path is None:
        return None
    try:
        with open(path, "rb") as f:
            blob = f.read()
    except FileNotFoundError:
        STATS["misses"] += 1
        return None
    except OSError as e:
        _reject(path, f"cannot read: {e}")
        return None
    entry = _parse(blob, key)
    if isinstance(entry, str):
        _reject(path, entry)
        return None
    STATS["hits"] += 1
    return entry


def store(key: str, meta: dict[str, Any], object_code: bytes, sources: dict[str, str]) -> str | None:
    """Write the entry of ``key`` atomically; returns its path (None when the cache is off or the write
    failed, which is logged and counted but never an error: the compilation itself succeeded)."""
    path = entry_path(key)
    if path is None:
        return None
    meta_b = json.dumps({**meta, "key": key, "format": FORMAT}, sort_keys=True).encode()
    src_b = zlib.compress(json.dumps(sources).encode(), 1)
    body = meta_b + object_code + src_b
    header = MAGIC + _HEADER.pack(len(meta_b), len(object_code), len(src_b), hashlib.sha256(body).digest())
    folder = os.path.dirname(path)
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{key[:16]}.", suffix=".tmp", dir=folder)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(header)
                f.write(body)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError as e:
        STATS["write_errors"] += 1
        log.warning("ember compile cache: cannot write %s: %s", path, e)
        return None
    STATS["writes"] += 1
    return path
