"""Ahead-of-time export: a graph -> one self-contained shared library (an "ember package") + a C header.

The package holds the generated kernels and entry function (the LLVM object ``compile_graph`` produced,
emitted once more as a position-independent object), the weights as read-only data, the metadata as
JSON and a small C ABI (``ember_run``, ``ember_metadata``, ``ember_input_info``, ...), linked by the
system C compiler with libgomp and libm. A fixed trailer after the ELF image carries the format
version and SHA-256 checksums, so ``ember.runtime.load`` can refuse a damaged or foreign file before
the dynamic loader runs any of its code (see ``ember/runtime/aot.py`` for the layout).

Why the weights go in through an assembler ``.incbin`` rather than a C array literal: the assembler
copies 45 MB of ResNet-18 weights in a fraction of a second, while a C compiler parsing the same bytes
as a 45-million-element initializer takes minutes and gigabytes of memory.

Deterministic output: inputs are laid out in a fixed order, JSON keys are sorted, nothing records a
time, the build directory's name never reaches the file (every file is passed by a relative name),
and the linker is told not to add a random build id. Exporting the same model for the same inputs to
a file of the same name gives the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from typing import Any

import numpy as np
from ember.compiler.compile import CompileResult, compile_graph
from ember.compiler.ir.graph import Graph, Value, flatten_tree
from ember.runtime.aot import (
    ABI_VERSION,
    FORMAT_VERSION,
    META_SECTION,
    WEIGHTS_SECTION,
    Trailer,
    elf_sections,
    host_machine,
    package_digests,
)
from ember.runtime.errors import ArgumentError, CompileError
from ember.runtime.executable import TensorSpec

__all__ = ["ExportResult", "export_compiled", "export_graph", "find_c_compiler"]

_ALIGN = 64  # each parameter starts on a cache line, as the arena's buffers do

ABI_DECLARATIONS = """\
#ifndef EMBER_ABI_V1
#define EMBER_ABI_V1
#include <stdint.h>

/* One input or output of the model. */
typedef struct ember_tensor_info {
    const char *name;      /* the model's argument name; outputs are "output" or "output<i>" */
    const char *dtype;     /* numpy dtype name: "float32", "int64", ... (native byte order) */
    int32_t ndim;
    const int64_t *shape;  /* ndim sizes, C (row-major) order */
    int64_t numel;
    int64_t nbytes;
} ember_tensor_info;

uint32_t ember_abi_version(void);                 /* EMBER_ABI_VERSION of the library */
const char *ember_metadata(void);                 /* JSON: names, shapes, dtypes, version, arena, ... */
const char *ember_model_name(void);
int32_t ember_num_inputs(void);
int32_t ember_num_outputs(void);
const ember_tensor_info *ember_input_info(int32_t i);   /* NULL when i is out of range */
const ember_tensor_info *ember_output_info(int32_t i);
int64_t ember_arena_bytes(void);                  /* scratch memory one call needs */
int32_t ember_cpu_supported(void);                /* 0: this CPU lacks instructions the code uses */
int32_t ember_num_params(void);
void *const *ember_params(void);                  /* the embedded weights, in the entry's order */

/* Run the model: inputs[i] / outputs[i] point to C-contiguous buffers of ember_*_info(i)->nbytes.
   num_threads <= 0 means omp_get_max_threads(). Returns 0 on success, 1 when a kernel could not
   allocate working memory, 2 when the arena could not be allocated, 3 when this CPU lacks
   instructions the code was compiled for (see ember_cpu_supported). ember_run allocates and frees its
   own arena, so concurrent calls from several threads are safe; ember_run_with_arena uses the
   caller's (64-byte aligned, ember_arena_bytes() long; one arena per concurrent call). */
int32_t ember_run(void *const *inputs, void *const *outputs, int32_t num_threads);
int32_t ember_run_with_arena(void *const *inputs, void *const *outputs, void *arena, int32_t num_threads);
#endif /* EMBER_ABI_V1 */
"""


@dataclass
class ExportResult:
    """What ``export_graph`` wrote and how: the package, its header, its metadata, the compilation."""

    path: str
    header_path: str
    metadata: dict[str, Any]
    compiled: CompileResult


def find_c_compiler() -> str:
    """The C compiler ``ember.export`` links with: ``$CC``, else ``cc``, ``gcc`` or ``clang`` on PATH."""
    for cand in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if cand and shutil.which(cand.split()[0]):
            return cand
    raise CompileError("ember.export needs a C compiler to link the package (none of $CC, cc, gcc, clang was "
                       "found on PATH): install one (e.g. apt-get install gcc) or set CC")


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("ember")
    except Exception:  # noqa: BLE001 - running from a source tree without installed metadata
        return "unknown"


def _host_cpu() -> tuple[str, list[str]]:
    import llvmlite.binding as llvm
    from ember.compiler.codegen.llvm.jit import host_target_machine

    host_target_machine()  # initializes LLVM's native target
    features = llvm.get_host_cpu_features()
    return llvm.get_host_cpu_name(), sorted(k for k, on in features.items() if on)


def _weights(exe: Any) -> tuple[bytes, list[dict[str, Any]]]:
    """The parameters in the entry function's order, each 64-byte aligned, as one little-endian blob
    padded to a whole number (at least one) of 64-byte lines."""
    blob = bytearray()
    table = []
    for spec in exe.params:
        arr = np.asarray(exe.constants[spec.name])
        if tuple(arr.shape) != tuple(spec.shape):
            raise CompileError(f"ember.export: parameter '{spec.name}' has shape {list(arr.shape)}, the "
                               f"program expects {list(spec.shape)}")
        data = np.ascontiguousarray(arr, dtype=np.dtype(spec.dtype).newbyteorder("<")).tobytes()
        blob += bytes(-len(blob) % _ALIGN)
        table.append({"name": spec.name, "shape": list(spec.shape), "dtype": spec.dtype,
                      "offset": len(blob), "nbytes": len(data)})
        blob += data
    blob += bytes(-len(blob) % _ALIGN or (0 if blob else _ALIGN))  # an empty section would be dropped
    return bytes(blob), table


def _tensor(spec: TensorSpec, name: str) -> dict[str, Any]:
    return {"name": name, "shape": list(spec.shape), "dtype": spec.dtype}


def _metadata(result: CompileResult, name: str, single: bool, table: list[dict[str, Any]],
              weights: bytes) -> dict[str, Any]:
    exe = result.executable
    outs = exe.outputs
    out_names = ["output"] if single else [f"output{i}" for i in range(len(outs))]
    cpu, features = _host_cpu()
    return {
        "format": "ember-package", "format_version": FORMAT_VERSION, "abi_version": ABI_VERSION,
        "ember_version": _version(), "name": name, "entry": exe.entry_symbol,
        "machine": host_machine(), "cpu": cpu, "cpu_features": features,
        "inputs": [_tensor(s, s.name) for s in exe.inputs],
        "outputs": [_tensor(s, n) for s, n in zip(outs, out_names)],
        "single_output": single, "arena_bytes": int(exe.arena_bytes), "params": table,
        "weights_bytes": len(weights), "weights_sha256": hashlib.sha256(weights).hexdigest(),
        "kernels": list(exe.call_order),
    }


def _c_string(text: str) -> str:
    return json.dumps(text)  # a JSON string literal is a valid C string literal for printable ASCII


def _info_table(kind: str, tensors: list[dict[str, Any]]) -> str:
    lines = []
    for i, t in enumerate(tensors):
        shape = ", ".join(str(d) for d in t["shape"]) or "0"
        lines.append(f"static const int64_t {kind}_shape{i}[] = {{{shape}}};")
    rows = []
    for i, t in enumerate(tensors):
        numel = int(np.prod(t["shape"], dtype=np.int64))
        nbytes = numel * np.dtype(t["dtype"]).itemsize
        rows.append(f"    {{{_c_string(t['name'])}, {_c_string(t['dtype'])}, {len(t['shape'])}, "
                    f"{kind}_shape{i}, {numel}, {nbytes}}},")
    lines.append(f"static const ember_tensor_info {kind}_info[] = {{\n" + "\n".join(rows or ["    {0}"])
                 + "\n};")
    return "\n".join(lines)


# CPU features the generated code may use that GCC's and Clang's __builtin_cpu_supports both know.
_BUILTIN_CPU_FEATURES = ("sse3", "ssse3", "sse4.1", "sse4.2", "popcnt", "avx", "avx2", "fma", "bmi", "bmi2",
                         "avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl")


def _cpu_check(meta: dict[str, Any]) -> str:
    """A C expression that is true when this CPU has the instruction sets the code was compiled for, so
    a C caller gets an error status instead of an illegal-instruction crash on an older CPU."""
    if meta["machine"] != "x86_64":
        return "1"
    needed = [f for f in _BUILTIN_CPU_FEATURES if f in meta["cpu_features"]]
    return " && ".join(f'__builtin_cpu_supports("{f}")' for f in needed) or "1"


# The weights and the metadata (NUL-terminated) as sections of their own, copied in by the assembler.
_ASM_SECTIONS = "\n".join(
    f'    ".pushsection {sec},\\"a\\",%progbits\\n.balign {_ALIGN}\\n.globl {sym}\\n.hidden {sym}\\n'
    f'{sym}:\\n.incbin \\"{src}\\"\\n{extra}.popsection\\n"'
    for sec, sym, src, extra in ((WEIGHTS_SECTION, "ember_weights_blob", "weights.bin", ""),
                                 (META_SECTION, "ember_meta_blob", "meta.json", ".byte 0\\n")))

_C_RUN = f"""
int32_t ember_run(void *const *inputs, void *const *outputs, int32_t num_threads) {{
    void *arena = 0;
    if (ember_arena_bytes() > 0 && posix_memalign(&arena, {_ALIGN}, (size_t)ember_arena_bytes()) != 0)
        return 2;
    int32_t status = ember_run_with_arena(inputs, outputs, arena, num_threads);
    free(arena);
    return status;
}}
"""


def _abi_source(meta: dict[str, Any]) -> str:
    """The C half of the package: the embedded sections and the ABI functions around the entry."""
    entry, n_in, n_out = meta["entry"], len(meta["inputs"]), len(meta["outputs"])
    params = ",\n".join(f"    (void *)(ember_weights_blob + {t['offset']})" for t in meta["params"])
    return f"""/* Generated by ember.export for {meta['name']}: the package's C ABI. Do not edit. */
#define _POSIX_C_SOURCE 200112L
#include <stdlib.h>
{ABI_DECLARATIONS}
extern int omp_get_max_threads(void);
extern int32_t {entry}(void **inputs, void **outputs, void **params, void *arena, int32_t num_threads);
extern const unsigned char ember_weights_blob[] __attribute__((visibility("hidden")));
extern const char ember_meta_blob[] __attribute__((visibility("hidden")));
__asm__(
{_ASM_SECTIONS}
);

{_info_table("input", meta["inputs"])}
{_info_table("output", meta["outputs"])}
static void *const params[] = {{
{params or "    0"}
}};

uint32_t ember_abi_version(void) {{ return {ABI_VERSION}u; }}
const char *ember_metadata(void) {{ return ember_meta_blob; }}
const char *ember_model_name(void) {{ return {_c_string(meta['name'])}; }}
int32_t ember_num_inputs(void) {{ return {n_in}; }}
int32_t ember_num_outputs(void) {{ return {n_out}; }}
const ember_tensor_info *ember_input_info(int32_t i) {{
    return i >= 0 && i < {n_in} ? &input_info[i] : 0;
}}
const ember_tensor_info *ember_output_info(int32_t i) {{
    return i >= 0 && i < {n_out} ? &output_info[i] : 0;
}}
int64_t ember_arena_bytes(void) {{ return {meta['arena_bytes']}; }}
int32_t ember_num_params(void) {{ return {len(meta['params'])}; }}
void *const *ember_params(void) {{ return params; }}

int32_t ember_cpu_supported(void) {{
    return {_cpu_check(meta)};
}}

int32_t ember_run_with_arena(void *const *inputs, void *const *outputs, void *arena, int32_t num_threads) {{
    if (!ember_cpu_supported()) return 3;
    if (num_threads <= 0) num_threads = omp_get_max_threads();
    return {entry}((void **)inputs, (void **)outputs, (void **)params, arena, num_threads);
}}
{_C_RUN}"""


def header_text(meta: dict[str, Any], prefix: str) -> str:
    """The C header written next to the package: the ABI prototypes plus the model's shapes as macros
    (``<PREFIX>_INPUT0_SHAPE`` etc.), so C code can size its buffers at compile time."""
    lines = [f"/* Generated by ember.export: C interface of the package for {meta['name']}"
             f" (ember {meta['ember_version']}, format {meta['format_version']}). */",
             ABI_DECLARATIONS, f"#ifndef {prefix}_H", f"#define {prefix}_H",
             f"#define {prefix}_ABI_VERSION {meta['abi_version']}",
             f"#define {prefix}_ARENA_BYTES {meta['arena_bytes']}LL",
             f"#define {prefix}_NUM_INPUTS {len(meta['inputs'])}",
             f"#define {prefix}_NUM_OUTPUTS {len(meta['outputs'])}"]
    for kind, tensors in (("INPUT", meta["inputs"]), ("OUTPUT", meta["outputs"])):
        for i, t in enumerate(tensors):
            p = f"{prefix}_{kind}{i}"
            numel = int(np.prod(t["shape"], dtype=np.int64))
            lines += [f"#define {p}_NAME {_c_string(t['name'])}",
                      f"#define {p}_DTYPE {_c_string(t['dtype'])}",
                      f"#define {p}_NDIM {len(t['shape'])}",
                      f"#define {p}_SHAPE {{{', '.join(map(str, t['shape'])) or '0'}}}",
                      f"#define {p}_NUMEL {numel}LL",
                      f"#define {p}_NBYTES {numel * np.dtype(t['dtype']).itemsize}LL"]
    lines += [f"#endif /* {prefix}_H */", ""]
    return "\n".join(lines)


def _link(cc: str, workdir: str, soname: str) -> bytes:
    cmd = [*cc.split(), "-shared", "-fPIC", "-O2", "-o", "package.so", "abi.c", "model.o", "-lgomp", "-lm",
           "-Wl,--build-id=none", f"-Wl,-soname,{soname}", "-Wl,-Bsymbolic", "-Wl,-z,noexecstack"]
    try:
        proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=600)
    except OSError as e:
        raise CompileError(f"ember.export: cannot run the C compiler {cc!r}: {e}") from None
    if proc.returncode != 0:
        hint = " (is libgomp installed? it ships with gcc)" if "gomp" in proc.stderr else ""
        raise CompileError(f"ember.export: linking the package failed{hint}:\n  {' '.join(cmd)}\n"
                           f"{proc.stderr.strip()}")
    with open(os.path.join(workdir, "package.so"), "rb") as f:
        return f.read()


def _seal(lib: bytes) -> bytes:
    """Append the trailer: format version and the checksums the loader verifies before dlopen."""
    sections = elf_sections(lib, len(lib))
    meta_sha, weights_sha, rest_sha = package_digests(lib, len(lib), sections[WEIGHTS_SECTION],
                                                      sections[META_SECTION])
    return lib + Trailer(FORMAT_VERSION, len(lib), meta_sha, weights_sha, rest_sha).pack()


def _write_atomic(path: str, data: bytes) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _object_code(result: CompileResult) -> bytes:
    from ember.compiler.codegen.llvm.jit import JitModule

    ir = result.executable.sources.get("llvm")
    if not ir:
        raise CompileError("ember.export: the compilation kept no LLVM IR to emit an object file from")
    return JitModule(ir, name=result.executable.name, optimize=False).emit_object()


def _check_target(path: str | os.PathLike[str], outputs: Any) -> str:
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ArgumentError(f"ember.export: the folder {folder} does not exist")
    leaves = flatten_tree(outputs)
    if not leaves or not all(isinstance(v, Value) for v in leaves):
        raise CompileError("ember.export: the model must return a tensor or a tuple/list/dict of tensors; "
                           f"got outputs {outputs!r}")
    return path


def export_graph(graph: Graph, path: str | os.PathLike[str], name: str | None = None) -> ExportResult:
    """Compile ``graph`` and write it as a package to ``path`` and a C header beside it (``.h``)."""
    _check_target(path, graph.outputs)
    find_c_compiler()  # before the compilation, which takes a while
    return export_compiled(compile_graph(graph, "llvm", name=name, hoist=True), path, name)


def export_compiled(result: CompileResult, path: str | os.PathLike[str],
                    name: str | None = None) -> ExportResult:
    """Write an existing compilation as a package (no second compilation: the object code comes from
    the LLVM IR the compilation kept). The weights are ``result.executable.constants``."""
    path = _check_target(path, result.graph.outputs)
    cc = find_c_compiler()
    if result.executable is None:
        raise CompileError("ember.export: this compilation has no native code (target 'interpret'); compile "
                           "with target 'llvm' to export")
    weights, table = _weights(result.executable)
    single = isinstance(result.graph.outputs, Value)
    meta = _metadata(result, name or result.graph.name or "model", single, table, weights)
    meta_json = json.dumps(meta, sort_keys=True, separators=(",", ":")).encode()
    with tempfile.TemporaryDirectory(prefix="ember-export-") as work:
        for file, data in (("model.o", _object_code(result)), ("weights.bin", weights),
                           ("meta.json", meta_json), ("abi.c", _abi_source(meta).encode())):
            with open(os.path.join(work, file), "wb") as f:
                f.write(data)
        lib = _link(cc, work, os.path.basename(path))
    _write_atomic(path, _seal(lib))
    stem = os.path.splitext(path)[0]
    prefix = re.sub(r"\W", "_", os.path.basename(stem)).upper().lstrip("_") or "MODEL"
    if prefix[0].isdigit():
        prefix = "M" + prefix
    header = stem + ".h"
    _write_atomic(header, header_text(meta, prefix).encode())
    return ExportResult(path, header, meta, result)
