"""Golden CUDA C for one elementwise and one reduction kernel, and the schedule's dependence rules."""

from __future__ import annotations

import pytest
from ember.compiler.codegen.cuda.kernels import emit_nest
from ember.compiler.codegen.cuda.schedule import GemmLaunch, HostLoop, NestLaunch, parallel_safe, schedule_kernel
from ember.compiler.dtypes import float32, int64
from ember.compiler.kernel.group import FusionGroup, GroupNode
from ember.compiler.kernel.ir import Barrier, Binary, Buffer, Const, Kernel, Load, Loop, Reduce, Store, Var
from ember.compiler.kernel.lower import lower_group
from ember.compiler.ops.registry import TensorType
from ember.runtime.errors import CompileError

F = float32


def t(*shape: int) -> TensorType:
    return TensorType(shape, F)


ELEMENTWISE = '''extern "C" __global__ void __launch_bounds__(256) ew_p0(
    float *b_x,
    float *b_w,
    float *b_y) {
  for (long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x; t < 256LL;
       t += (long long)gridDim.x * blockDim.x) {
    const long long v_i1 = (t) % 64LL;
    const long long v_i0 = (t / 64LL) % 4LL;
    b_y[((v_i0 * 64LL) + v_i1)] = ember_fmax(((b_x[((v_i0 * 64LL) + v_i1)] * b_w[v_i1]) + 1.0f), 0.0f);
  }
}'''

REDUCTION = '''extern "C" __global__ void __launch_bounds__(256) rowsum_p0(
    float *b_x,
    float *b_s) {
  __shared__ float sh_s_acc[32];
  for (long long row = blockIdx.x; row < 16LL; row += gridDim.x) {
    const long long v_i0 = (row) % 16LL;
    float l_s_acc = 0.0f;
    {
      float p_s_acc = 0.0f;
      for (long long u = threadIdx.x; u < 256LL; u += blockDim.x) {
        const long long v_r1 = (u) % 256LL;
        p_s_acc = (p_s_acc + expf(b_x[((v_i0 * 256LL) + v_r1)]));
      }
      p_s_acc = ember_block_reduce<float>(p_s_acc, [](float a, float b) { return (a + b); }, sh_s_acc);
      l_s_acc = (l_s_acc + p_s_acc);
    }
    if (threadIdx.x == 0) b_s[v_i0] = l_s_acc;
    __syncthreads();
  }
}'''


def only_launch(kernel: Kernel) -> str:
    (step,) = schedule_kernel(kernel)
    assert isinstance(step, NestLaunch)
    return emit_nest(kernel, step)


def test_golden_elementwise_kernel_is_one_grid_stride_loop() -> None:
    g = FusionGroup("ew", [GroupNode("mul", ("x", "w"), ("t",)), GroupNode("add", ("t", 1.0), ("u",)),
                           GroupNode("relu", ("u",), ("y",))],
                    {"x": t(4, 64), "w": t(64), "t": t(4, 64), "u": t(4, 64), "y": t(4, 64)}, ["x", "w"], ["y"])
    assert only_launch(lower_group(g).kernel) == ELEMENTWISE


def test_golden_row_reduction_uses_a_block_per_row_and_warp_shuffles() -> None:
    g = FusionGroup("rowsum", [GroupNode("exp", ("x",), ("e",)),
                               GroupNode("sum", ("e",), ("s",), {"dim": (1,), "keepdim": False, "dtype": None})],
                    {"x": t(16, 256), "e": t(16, 256), "s": t(16)}, ["x"], ["s"])
    assert only_launch(lower_group(g).kernel) == REDUCTION


def test_short_reductions_stay_one_thread_per_row() -> None:
    g = FusionGroup("short", [GroupNode("sum", ("x",), ("s",), {"dim": (1,), "keepdim": False, "dtype": None})],
                    {"x": t(512, 8), "s": t(512)}, ["x"], ["s"])
    (step,) = schedule_kernel(lower_group(g).kernel)
    assert step.mode == "grid"


def v(name: str) -> Var:
    return Var(name)


def i(value: int) -> Const:
    return Const(value, int64)


def lin(*terms: tuple[int, str]) -> Binary | Var:
    out = None
    for c, name in terms:
        term = Binary("mul", v(name), i(c), int64) if c != 1 else v(name)
        out = term if out is None else Binary("add", out, term, int64)
    return out  # type: ignore[return-value]


def store(buf: str, index: object, value: object = None) -> Store:
    return Store(buf, index, value if value is not None else Const(1.0, F))  # type: ignore[arg-type]


def test_disjoint_slices_are_parallel_and_overlaps_are_not() -> None:
    rows = Loop("i", 4, (Loop("j", 8, (store("y", lin((8, "i"), (1, "j"))),)),))
    assert parallel_safe(rows)
    overlap = Loop("i", 4, (Loop("j", 8, (store("y", lin((4, "i"), (1, "j"))),)),))  # col2im-like
    assert not parallel_safe(overlap)
    same_spot = Loop("i", 4, (store("y", i(0)),))
    assert not parallel_safe(same_spot)
    scatter = Loop("i", 4, (store("y", Load("idx", v("i"), int64)),))
    assert not parallel_safe(scatter)
    outer_acc = Loop("i", 4, (Reduce("acc", "add", Load("x", v("i"), F)),))
    assert not parallel_safe(outer_acc)
    reads_neighbour = Loop("i", 4, (store("y", v("i"), Load("y", Binary("add", v("i"), i(1), int64), F)),))
    assert not parallel_safe(reads_neighbour)


def test_interleaved_but_injective_accesses_are_parallel() -> None:
    transpose = Loop("i", 10, (Loop("j", 2, (store("y", lin((1, "i"), (10, "j"))),)),))
    assert parallel_safe(transpose)  # each i writes y[i], y[i + 10]: interleaved, never shared
    folded = Loop("i", 4, (Loop("j", 4, (store("y", lin((1, "i"), (1, "j"))),)),))
    assert not parallel_safe(folded)  # y[i + j]: i=1,j=0 and i=0,j=1 collide
    read_other_form = Loop("i", 10, (Loop("j", 2, (store("y", lin((1, "i"), (10, "j")),
                                                         Load("y", lin((10, "j"),), F)),)),))
    assert not parallel_safe(read_other_form)


def clamp(e: object, hi: int) -> Binary:
    return Binary("max", Binary("min", e, i(hi), int64), i(0), int64)  # type: ignore[arg-type]


def test_clamped_positions_inside_a_slice_are_bounded_by_interval_arithmetic() -> None:
    pos = Binary("add", Binary("mul", v("k"), i(2), int64), i(-1), int64)  # a tap position, maybe outside
    inside = Loop("c", 5, (Loop("k", 9, (store("y", Binary("add", Binary("mul", v("c"), i(16), int64),
                                                            clamp(pos, 15), int64)),)),))
    assert parallel_safe(inside)  # col2im over channels: each channel adds into its own 16 elements
    spills = Loop("c", 5, (Loop("k", 10, (store("y", Binary("add", Binary("mul", v("c"), i(16), int64),
                                                             clamp(pos, 16), int64)),)),))
    assert not parallel_safe(spills)  # position 16 is the next channel's first element


def test_unsafe_loops_run_on_one_thread() -> None:
    k = Kernel("serial", (Buffer("y", F, (64,)),),
               (Loop("i", 4, (Loop("j", 8, (store("y", lin((4, "i"), (1, "j"))),)),)),))
    (step,) = schedule_kernel(k)
    assert step.mode == "single"
    assert "if (blockIdx.x != 0 || threadIdx.x != 0) return;" in emit_nest(k, step)


def test_gemm_inside_a_loop_becomes_a_host_loop() -> None:
    from ember.compiler.codegen.llvm.gemm import Epilogue
    from ember.compiler.kernel.ir import Gemm

    gemm = Gemm(2, 2, 2, "a", Binary("mul", v("n"), i(4), int64), 2, "b", i(0), 2, "c", i(0), 2, False, Epilogue())
    k = Kernel("batched", tuple(Buffer(n, F, (8,)) for n in "abc"),
               (Loop("n", 2, (store("a", v("n")), gemm)),))
    (step,) = schedule_kernel(k)
    assert isinstance(step, HostLoop) and step.extent == 2
    assert isinstance(step.body[0], NestLaunch) and step.body[0].host_vars == ("n",)
    assert isinstance(step.body[1], GemmLaunch)


def test_a_statement_without_cuda_code_is_a_compile_error_naming_it() -> None:
    k = Kernel("odd", (Buffer("y", F, (4,)),), (Loop("i", 4, (Barrier(), store("y", v("i")))),))
    (step,) = schedule_kernel(k)
    with pytest.raises(CompileError, match="odd.*Barrier"):
        emit_nest(k, step)


def test_int64_products_wrap_except_loop_index_times_small_stride() -> None:
    """Signed overflow is undefined in C, while the LLVM back end's mul wraps: Philox's 32x32-bit products
    pass 2^63, so any int64 product that could overflow goes through unsigned arithmetic."""
    from ember.compiler.codegen.cuda.exprs import ExprEmitter
    from ember.compiler.dtypes import int64
    from ember.compiler.kernel.ir import Binary, Const, Load, Var

    em = ExprEmitter({"s": ("b_s", int64)}, "k")
    assert em.emit(Binary("mul", Var("i0"), Const(64, int64), int64)) == "(v_i0 * 64LL)"
    wrapped = em.emit(Binary("mul", Load("s", Var("i0"), int64), Const(0xD2511F53, int64), int64))
    assert wrapped.startswith("ember_mul64(") and "3528531795LL" in wrapped
    assert em.emit(Binary("mul", Var("i0"), Const(2**40, int64), int64)).startswith("ember_mul64(")
