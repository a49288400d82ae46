"""The ``Gemm`` statement on the GPU: a shared-memory tiled fp32 GEMM with the fused epilogue.

``GEMM_TEMPLATE`` is one C++ template (emitted once per translation unit); each distinct
(``trans_b``, epilogue) pair used by a program gets a small ``extern "C" __global__`` wrapper that
instantiates it, so a ResNet compiles a handful of GEMM kernels, not one per convolution. Sizes,
leading dimensions and operand pointers are arguments (element offsets are folded into the pointers
by the launch table).

Tiling: a 256-thread block computes a 64 x 64 tile of C. Each K step of 16 stages a 64 x 16 slice of A
and a 16 x 64 slice of B in shared memory (loads coalesced along each operand's contiguous dim, zero
outside the matrix, so any M, N, K works), then each thread accumulates a 4 x 4 register tile whose
rows and columns are 16 apart (neighbouring threads read neighbouring shared words and write
neighbouring C elements). The epilogue runs on the registers before the one store of C, in the CPU
template's order: ``act(acc * col_scale[n] * row_scale[m] + col_bias[n] + row_bias[m] + R[m, n])``.
"""

from __future__ import annotations

from typing import Any

from ember.compiler.codegen.cuda.exprs import c_const
from ember.compiler.dtypes import float32
from ember.runtime.errors import CompileError

__all__ = ["GEMM_BLOCK", "GEMM_SHARED_BYTES", "GEMM_TEMPLATE", "GEMM_TILE", "gemm_function", "gemm_wrapper"]

GEMM_TILE = 64            # rows and columns of C per block
GEMM_BLOCK = 256          # threads per block
GEMM_SHARED_BYTES = 2 * 16 * (GEMM_TILE + 4) * 4  # the two staged slices (static shared memory)

_ACT = {"none": 0, "relu": 1, "relu6": 2, "leaky_relu": 3, "sigmoid": 4, "tanh": 5, "silu": 6}

GEMM_TEMPLATE = r"""template <bool TB, bool CS, bool CB, bool RS, bool RB, bool RES, int ACT>
__device__ __forceinline__ void ember_gemm(long long M, long long N, long long K,
    const float *A, long long lda, const float *B, long long ldb, float *C, long long ldc,
    const float *cs, const float *cb, const float *rs, const float *rb, const float *R, long long ldr,
    float alpha) {
  __shared__ float As[16][68];  /* As[k][m] */
  __shared__ float Bs[16][68];  /* Bs[k][n] */
  const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
  const long long m0 = (long long)blockIdx.y * 64, n0 = (long long)blockIdx.x * 64;
  float acc[4][4];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) acc[i][j] = 0.0f;
  for (long long k0 = 0; k0 < K; k0 += 16) {
    for (int e = threadIdx.x; e < 1024; e += 256) {
      const int r = e >> 4, c = e & 15;
      const long long gm = m0 + r, gk = k0 + c;
      As[c][r] = (gm < M && gk < K) ? A[gm * lda + gk] : 0.0f;
    }
    for (int e = threadIdx.x; e < 1024; e += 256) {
      if (TB) {
        const int n = e >> 4, c = e & 15;
        const long long gn = n0 + n, gk = k0 + c;
        Bs[c][n] = (gn < N && gk < K) ? B[gn * ldb + gk] : 0.0f;
      } else {
        const int c = e >> 6, n = e & 63;
        const long long gn = n0 + n, gk = k0 + c;
        Bs[c][n] = (gn < N && gk < K) ? B[gk * ldb + gn] : 0.0f;
      }
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < 16; ++kk) {
      float a[4], b[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) a[i] = As[kk][ty + 16 * i];
#pragma unroll
      for (int j = 0; j < 4; ++j) b[j] = Bs[kk][tx + 16 * j];
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const long long m = m0 + ty + 16 * i;
    if (m >= M) continue;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const long long n = n0 + tx + 16 * j;
      if (n >= N) continue;
      float v = acc[i][j];
      if (CS) v *= cs[n];
      if (RS) v *= rs[m];
      if (CB) v += cb[n];
      if (RB) v += rb[m];
      if (RES) v += R[m * ldr + n];
      if (ACT == 1) v = v != v ? v : (v > 0.0f ? v : 0.0f);
      if (ACT == 2) v = v != v ? v : fminf(fmaxf(v, 0.0f), 6.0f);
      if (ACT == 3) v = v > 0.0f ? v : v * alpha;
      if (ACT == 4) v = 1.0f / (1.0f + expf(-v));
      if (ACT == 5) v = tanhf(v);
      if (ACT == 6) v = v / (1.0f + expf(-v));
      C[m * ldc + n] = v;
    }
  }
}
"""

OPERANDS = ("col_scale", "col_bias", "row_scale", "row_bias", "residual")


def gemm_function(trans_b: bool, epilogue: Any) -> str:
    """Name of the wrapper for one (``trans_b``, epilogue) variant."""
    return f"ember_gemm_{'bt' if trans_b else 'bn'}_{epilogue.tag}"


def gemm_wrapper(trans_b: bool, epilogue: Any) -> str:
    """The ``extern "C" __global__`` wrapper instantiating the template for one variant. Arguments:
    ``M, N, K, A, lda, B, ldb, C, ldc, col_scale, col_bias, row_scale, row_bias, R, ldr`` (unused
    operand pointers may be NULL)."""
    act = getattr(epilogue, "activation", "none")
    if act not in _ACT:
        raise CompileError(f"Gemm statement: no CUDA code generator for epilogue activation {act!r}")
    flags = [getattr(epilogue, n) for n in ("col_scale", "col_bias", "row_scale", "row_bias", "residual")]
    targs = ", ".join(["true" if trans_b else "false", *("true" if f else "false" for f in flags), str(_ACT[act])])
    alpha = c_const(float(getattr(epilogue, "alpha", 0.01)), float32)
    name = gemm_function(trans_b, epilogue)
    return (f'extern "C" __global__ void __launch_bounds__({GEMM_BLOCK}) {name}(\n'
            "    long long M, long long N, long long K, const float *A, long long lda, const float *B,\n"
            "    long long ldb, float *C, long long ldc, const float *cs, const float *cb, const float *rs,\n"
            "    const float *rb, const float *R, long long ldr) {\n"
            f"  ember_gemm<{targs}>(M, N, K, A, lda, B, ldb, C, ldc, cs, cb, rs, rb, R, ldr, {alpha});\n"
            "}")
