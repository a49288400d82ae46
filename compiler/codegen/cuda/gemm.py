"""The ``Gemm`` statement on the GPU: a shared-memory tiled fp32 GEMM with the fused epilogue.

``GEMM_TEMPLATE`` is one C++ template (emitted once per translation unit); each distinct
(``trans_b``, epilogue, image?) variant used by a program gets a small ``extern "C" __global__``
wrapper that instantiates it, so a ResNet compiles a handful of GEMM kernels, not one per convolution.
Sizes, leading dimensions and operand pointers are arguments (element offsets are folded into the
pointers by the launch table).

Implicit GEMM (``Gemm.b_image``, template flag ``IMG``): B is the im2col matrix of a padded image that
``B`` points at, never stored. The image wrappers take the ``Im2col`` geometry as twelve more arguments
(its fields in order: ``plane, wp, kh, kw, dh, dw, wout, sh, sw, positions, image_stride, transposed``,
so one wrapper serves every convolution shape; with ``positions`` the columns span several images, as in
the batched schedule) and the B tile loader computes ``B[c*plane + i*dh*wp + j*dw + oh*sh*wp + ow*sw]``
for ``k = (c, i, j)``, ``n = (oh, ow)``: a thread's column (and so its ``oh, ow`` part) is the same at
every K step, so that part is computed once, the ``k`` part per element with 32-bit division (the launch
table checks that ``N`` and ``K`` fit). ``transposed`` (``Im2col.transposed``, the weight gradient's
``B = im2col^T``) swaps the roles: the column is a tap ``(c, i, j)``, computed once, and ``k`` a position
``(image, oh, ow)``, decoded per element.

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

GEMM_TEMPLATE = r"""template <bool TB, bool IMG, bool CS, bool CB, bool RS, bool RB, bool RES, int ACT>
__device__ __forceinline__ void ember_gemm(long long M, long long N, long long K,
    const float *A, long long lda, const float *B, long long ldb, float *C, long long ldc,
    const float *cs, const float *cb, const float *rs, const float *rb, const float *R, long long ldr,
    float alpha, long long plane, long long wp, int kh, int kw, long long dh, long long dw, int wout,
    long long sh, long long sw, int positions, long long image_stride, bool transposed) {
  __shared__ float As[16][68];  /* As[k][m] */
  __shared__ float Bs[16][68];  /* Bs[k][n] */
  const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
  const long long m0 = (long long)blockIdx.y * 64, n0 = (long long)blockIdx.x * 64;
  /* IMG: this thread's B column n0 + (threadIdx.x & 63) is the same at every K step */
  long long img_col = 0;
  const int img_khw = kh * kw;
  if (IMG && n0 + (threadIdx.x & 63) < N) {
    int gn = (int)(n0 + (threadIdx.x & 63)), image = 0;
    if (transposed) {  /* the column is a tap (c, i, j) */
      const int ch = gn / img_khw, t = gn - ch * img_khw, i = t / kw, j = t - i * kw;
      img_col = (long long)ch * plane + (long long)i * dh * wp + (long long)j * dw;
    } else {  /* the column is a position (image, oh, ow) */
      if (positions > 0) { image = gn / positions; gn -= image * positions; }  /* images side by side */
      const int oh = gn / wout, ow = gn - oh * wout;
      img_col = (long long)image * image_stride + (long long)oh * sh * wp + (long long)ow * sw;
    }
  }
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
      if (IMG) {
        const int c = e >> 6, n = e & 63;
        const long long gn = n0 + n, gk = k0 + c;
        float v = 0.0f;
        if (gn < N && gk < K) {
          int k = (int)gk;
          if (transposed) {  /* row k is a position (image, oh, ow) */
            int image = 0;
            if (positions > 0) { image = k / positions; k -= image * positions; }
            const int oh = k / wout, ow = k - oh * wout;
            v = B[(long long)image * image_stride + (long long)oh * sh * wp + (long long)ow * sw + img_col];
          } else {  /* row k is a tap (c, i, j) */
            const int ch = k / img_khw, t = k - ch * img_khw, i = t / kw, j = t - i * kw;
            v = B[(long long)ch * plane + (long long)i * dh * wp + (long long)j * dw + img_col];
          }
        }
        Bs[c][n] = v;
      } else if (TB) {
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


def gemm_function(trans_b: bool, epilogue: Any, image: bool = False) -> str:
    """Name of the wrapper for one (``trans_b``, epilogue, image?) variant."""
    return f"ember_gemm_{'bi' if image else 'bt' if trans_b else 'bn'}_{epilogue.tag}"


def gemm_wrapper(trans_b: bool, epilogue: Any, image: bool = False) -> str:
    """The ``extern "C" __global__`` wrapper instantiating the template for one variant. Arguments:
    ``M, N, K, A, lda, B, ldb, C, ldc, col_scale, col_bias, row_scale, row_bias, R, ldr`` (unused
    operand pointers may be NULL), and with ``image`` the ``Im2col`` geometry
    ``plane, wp, kh, kw, dh, dw, wout, sh, sw, positions, image_stride, transposed`` after them (``ldb``
    is then unused)."""
    act = getattr(epilogue, "activation", "none")
    if act not in _ACT:
        raise CompileError(f"Gemm statement: no CUDA code generator for epilogue activation {act!r}")
    if image and trans_b:
        raise CompileError("Gemm statement: an im2col B operand (b_image) cannot be transposed")
    flags = [trans_b, image, *(getattr(epilogue, n) for n in OPERANDS)]
    targs = ", ".join([*("true" if f else "false" for f in flags), str(_ACT[act])])
    alpha = c_const(float(getattr(epilogue, "alpha", 0.01)), float32)
    name = gemm_function(trans_b, epilogue, image)
    geometry = ("    const float *rb, const float *R, long long ldr, long long plane, long long wp, long long kh,\n"
                "    long long kw, long long dh, long long dw, long long wout, long long sh, long long sw,\n"
                "    long long positions, long long image_stride, long long transposed) {\n"
                if image else "    const float *rb, const float *R, long long ldr) {\n")
    image_args = ("plane, wp, (int)kh, (int)kw, dh, dw, (int)wout, sh, sw, (int)positions, image_stride,\n"
                  "      transposed != 0" if image else "0LL, 0LL, 1, 1, 0LL, 0LL, 1, 0LL, 0LL, 0, 0LL, false")
    return (f'extern "C" __global__ void __launch_bounds__({GEMM_BLOCK}) {name}(\n'
            "    long long M, long long N, long long K, const float *A, long long lda, const float *B,\n"
            "    long long ldb, float *C, long long ldc, const float *cs, const float *cb, const float *rs,\n"
            f"{geometry}"
            f"  ember_gemm<{targs}>(M, N, K, A, lda, B, ldb, C, ldc, cs, cb, rs, rb, R, ldr, {alpha},\n"
            f"      {image_args});\n"
            "}")
