"""Runs generated CUDA C on the CPU, for tests on machines without a GPU.

The translation unit is compiled by the host C++ compiler behind a small shim: ``__shared__`` becomes
``static`` (blocks run one after another, so a static array is the block's shared memory), each of a
block's 256 threads is an OS thread (a pool started at the first launch) with its own
``threadIdx``/``blockIdx``, ``__syncthreads()`` is a
``std::barrier`` over them and ``__shfl_down_sync`` an exchange through a per-warp array between two
warp barriers. Launches then run exactly the generated code (grid-stride loops, block reductions, the
tiled GEMM) with the launch table's arguments on numpy buffers, so numbers can be compared with eager
mode. It is a test of the generated code's logic, not of a GPU's behaviour (no memory model, no
timing).
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

SHIM = r"""#include <math.h>
#include <string.h>
#include <stdint.h>
#include <barrier>
#include <thread>
#include <vector>
#include <memory>
#define EMBER_HOST_EMULATION 1
#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(n)
#define __shared__ static
struct emu_dim3 { unsigned x, y, z; };
static thread_local emu_dim3 threadIdx, blockIdx;
static emu_dim3 blockDim, gridDim;
static std::barrier<> *emu_block_bar;
static std::barrier<> *emu_warp_bar[32];
static inline void __syncthreads() { emu_block_bar->arrive_and_wait(); }
template <class T> static T __shfl_down_sync(unsigned, T v, int o) {
  static T slots[32][32];
  const unsigned lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  slots[warp][lane] = v;
  emu_warp_bar[warp]->arrive_and_wait();
  T r = lane + o < 32 ? slots[warp][lane + o] : v;
  emu_warp_bar[warp]->arrive_and_wait();
  return r;
}
static inline float __int_as_float(int i) { float f; memcpy(&f, &i, 4); return f; }
static inline double __longlong_as_double(long long i) { double d; memcpy(&d, &i, 8); return d; }
static inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
static inline double rsqrt(double x) { return 1.0 / sqrt(x); }
static inline float ember_emu_h2f(unsigned short h) { _Float16 x; memcpy(&x, &h, 2); return (float)x; }
static inline unsigned short ember_emu_f2h(float f) {
  _Float16 x = (_Float16)f; unsigned short h; memcpy(&h, &x, 2); return h; }
"""

LAUNCHER = r"""
typedef void (*emu_fn)(uint64_t, uint64_t, uint64_t, uint64_t, uint64_t, uint64_t, uint64_t, uint64_t,
                       uint64_t, uint64_t, uint64_t, uint64_t, uint64_t, uint64_t, uint64_t, uint64_t,
                       uint64_t, uint64_t, uint64_t, uint64_t, uint64_t, uint64_t, uint64_t, uint64_t,
                       uint64_t, uint64_t, uint64_t, uint64_t, uint64_t, uint64_t, uint64_t, uint64_t);
/* a pool of EMU_THREADS workers started once; each launch is two rounds of a barrier with the caller */
#define EMU_THREADS 256
static std::barrier<> *emu_go, *emu_done;
static emu_fn emu_f;
static const uint64_t *emu_a;
static bool emu_quit;
static std::vector<std::thread> *emu_pool;
static void emu_worker(unsigned t) {
  threadIdx = {t, 0, 0};
  for (;;) {
    emu_go->arrive_and_wait();
    if (emu_quit) return;
    const uint64_t *a = emu_a;
    for (unsigned by = 0; by < gridDim.y; ++by)
      for (unsigned bx = 0; bx < gridDim.x; ++bx) {
        blockIdx = {bx, by, 0};
        emu_f(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11], a[12], a[13], a[14], a[15],
              a[16], a[17], a[18], a[19], a[20], a[21], a[22], a[23], a[24], a[25], a[26], a[27], a[28], a[29],
              a[30], a[31]);
        emu_block_bar->arrive_and_wait();
      }
    emu_done->arrive_and_wait();
  }
}
extern "C" void emu_launch(void *fn, int gx, int gy, int nthreads, const uint64_t *a) {
  if (nthreads != EMU_THREADS) abort();
  if (emu_pool == nullptr) {
    emu_go = new std::barrier<>(EMU_THREADS + 1);
    emu_done = new std::barrier<>(EMU_THREADS + 1);
    emu_block_bar = new std::barrier<>(EMU_THREADS);
    for (int w = 0; w < EMU_THREADS / 32; ++w) emu_warp_bar[w] = new std::barrier<>(32);
    blockDim = {EMU_THREADS, 1, 1};
    emu_pool = new std::vector<std::thread>();
    for (unsigned t = 0; t < EMU_THREADS; ++t) emu_pool->emplace_back(emu_worker, t);
  }
  emu_f = (emu_fn)fn;
  emu_a = a;
  gridDim = {(unsigned)gx, (unsigned)gy, 1};
  emu_go->arrive_and_wait();
  emu_done->arrive_and_wait();
}
extern "C" void emu_shutdown(void) {
  if (emu_pool == nullptr) return;
  emu_quit = true;
  emu_go->arrive_and_wait();
  for (auto &th : *emu_pool) th.join();
  delete emu_pool;
  emu_pool = nullptr;
}
"""

MAX_ARGS = 32


def compiler_available() -> bool:
    return shutil.which("g++") is not None


class EmulatedCuda:
    """``EmulatedCuda(exe, folder)(*inputs)`` runs a CUDA ``Executable`` on the CPU and returns its outputs.

    Grid-stride launches run with at most ``grid_cap`` blocks (their result does not depend on the grid
    size; 2 blocks still exercise the stride), GEMM launches with their full grid."""

    def __init__(self, exe: Any, folder: Path, grid_cap: int = 2) -> None:
        image = exe.owner
        src = folder / f"{exe.name}_emu.cpp"
        lib = folder / f"{exe.name}_emu.so"
        src.write_text(SHIM + image.source + LAUNCHER)
        subprocess.run(["g++", "-std=c++20", "-O1", "-w", "-shared", "-fPIC", "-pthread", str(src), "-o", str(lib)],
                       check=True, capture_output=True, timeout=300)
        self.lib = ctypes.CDLL(str(lib))
        self.lib.emu_launch.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_void_p]
        self.exe, self.image, self.grid_cap = exe, image, grid_cap
        self.params = [np.ascontiguousarray(exe.constants[s.name]) for s in exe.params]

    def __call__(self, *inputs: np.ndarray) -> tuple[np.ndarray, ...]:
        exe = self.exe
        ins = [np.ascontiguousarray(x) for x in inputs]
        outs = [np.full(s.shape, np.nan if np.dtype(s.dtype).kind == "f" else 0x7F, dtype=s.dtype)
                for s in exe.outputs]
        arena = np.full(max(exe.arena_bytes, 1), 0xFF, dtype=np.uint8)  # garbage, as a fresh GPU allocation
        lists = {"input": ins, "output": outs, "param": self.params}
        for ln in self.image.launches:
            args = np.zeros(MAX_ARGS, dtype=np.uint64)
            assert len(ln.args) <= MAX_ARGS, ln
            for i, a in enumerate(ln.args):
                if a[0] == "ptr":
                    base = arena if a[1] == "arena" else lists[a[1]][a[2]]
                    args[i] = base.ctypes.data + a[3]
                elif a[0] == "i64":
                    args[i] = np.int64(a[1]).view(np.uint64)
            gx, gy = ln.grid[0], ln.grid[1]
            if not ln.function.startswith("ember_gemm_"):
                gx = min(gx, self.grid_cap)
            fn = ctypes.cast(getattr(self.lib, ln.function), ctypes.c_void_p).value
            self.lib.emu_launch(fn, gx, gy, ln.block[0], args.ctypes.data)
        return tuple(outs)

    def close(self) -> None:
        """Stop the emulator's worker threads (they would otherwise wait for the next launch forever)."""
        self.lib.emu_shutdown()

    def __del__(self) -> None:
        try:
            self.close()
        except (AttributeError, OSError):
            pass
