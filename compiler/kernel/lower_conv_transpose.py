"""Lowering of ``conv_transpose`` (the adjoint of conv in its input).

Geometries with a stride-1 convolution equivalent (every padding at most ``(k-1)*dilation``, which
includes every input gradient of a convolution) are lowered as that forward convolution
(``lower_conv_input_grad.py``) when its cost estimate says so. The rest (few output channels, strided
input gradients, negative equivalent padding) take GEMM + col2im, per chunk of images and group::

    cols[Cog*k, chunk*P_in] = W_g^T[Cog*k, Cig] @ y_chunk[Cig, chunk*P_in]

(the chunk's images side by side in a channel-major copy, about ``TARGET_COLUMNS`` columns, so the
weights are packed once per chunk, not once per image), then every column is added back to the
output positions its taps cover (``o = i*s - p + t*d``; taps outside the output add 0 to a clamped
position). The col2im loops over one image run serially on purpose (two lanes of one vector could add
into the same element); the images of a chunk run in parallel, each owning its output. ``W^T`` is
copied once per call. Elementwise nodes after it (bias, activation) run over the result in the same
kernel.
"""

from __future__ import annotations

from typing import Any

from ember.compiler.dtypes import bool_
from ember.compiler.kernel.builder import iadd, imul
from ember.compiler.kernel.group import FusionGroup
from ember.compiler.kernel.ir import Binary, Buffer, Const, Expr, Gemm, Load, Loop, LoopKind, Select, Stmt, Store
from ember.compiler.kernel.lower_conv import bounded
from ember.compiler.kernel.lower_conv_input_grad import as_forward_conv
from ember.compiler.kernel.lower_gemm import lower_rest, materialize, result_buffer
from ember.compiler.kernel.values import ZERO, Index, Value, View, contiguous_strides, flat_index, unflatten
from ember.runtime.errors import CompileError

__all__ = ["lower_conv_transpose_group"]


def _prod(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def _transposed_weight(w: View, groups: int, name: str, names: Any,
                       scratch: list[Buffer]) -> tuple[Buffer, list[Stmt]]:
    """wt[g, (co, t), ci] = w[g*cig + ci, co, t]: each group's weight as a row-major [Cog*k, Cig]."""
    from ember.compiler.kernel.lower import _nest, schedule

    cog, ksize = w.shape[1], tuple(w.shape[2:])
    cig = w.shape[0] // groups
    shape = (groups, cog * _prod(ksize), cig)
    wt = Buffer(name, w.dtype, shape, contiguous_strides(shape))
    scratch.append(wt)

    # loop over (g, co, ci, taps): no division in the index, each input channel's k contiguous floats
    # read in turn, and the Cig cache lines one output channel touches are reused by the next one
    # (a loop over wt's layout divided per element and missed a page per read: 6 ms on 9 MB weights)
    loop_shape = (groups, cog, cig, *ksize)

    def body(idx: Index) -> list[Stmt]:
        g, co, ci, taps = idx[0], idx[1], idx[2], idx[3:]
        ct = flat_index((co, *taps), (cog, *ksize))
        return [Store(name, flat_index((g, ct, ci), shape), w.at((iadd(imul(g, cig), ci), co, *taps)))]

    return wt, schedule(_nest(loop_shape, names, body, "w"), _prod(shape))


def _col2im(cols: str, col_base: Expr, ldc: int, c_name: str, out_base: Expr, attrs: dict[str, Any],
            ksize: tuple[int, ...], in_sp: tuple[int, ...], out_sp: tuple[int, ...], cog: int, dtype: Any,
            names: Any) -> list[Stmt]:
    """Serial loops adding ``cols[(co, taps), col_base + pos]`` (row stride ``ldc``) into the output
    positions ``pos*stride - pad + taps*dilation`` of the ``cog`` channels at ``out_base``."""
    from ember.compiler.kernel.lower import _nest

    nd = len(ksize)

    def body(idx: Index) -> list[Stmt]:
        co, taps, pos = idx[0], idx[1:1 + nd], idx[1 + nd:]
        where: list[Expr] = [co]
        valid: Expr | None = None
        for i in range(nd):
            at = iadd(iadd(imul(pos[i], attrs["stride"][i]), imul(taps[i], attrs["dilation"][i])),
                      -attrs["padding"][2 * i])
            at, ok = bounded(at, out_sp[i])
            valid = ok if valid is None else Binary("and", valid, ok, bool_)
            where.append(at)
        target = iadd(out_base, flat_index(tuple(where), (cog, *out_sp)))
        col = iadd(iadd(imul(flat_index((co, *taps), (cog, *ksize)), ldc), col_base), flat_index(pos, in_sp))
        add: Expr = Select(valid, Load(cols, col, dtype), Const(0.0, dtype), dtype)  # type: ignore[arg-type]
        return [Store(c_name, target, Binary("add", Load(c_name, target, dtype), add, dtype))]

    return _nest((cog, *ksize, *in_sp), names, body, "c")


def lower_conv_transpose_group(group: FusionGroup, gi: int, ev: Any,
                               names: Any) -> tuple[list[Stmt], list[Buffer]]:
    """Statements and scratch buffers of a ``conv_transpose`` group's kernel (module docstring)."""
    from ember.compiler.kernel.lower import sanitize

    node = group.nodes[gi]
    for nd_ in group.nodes[:gi]:
        ev.node(nd_)
    y, w = (ev.operand(v) for v in node.inputs)
    if not all(isinstance(v, Value) and v.dtype.name == "float32" for v in (y, w)):
        raise CompileError(f"cannot lower op '{node.op}': the convolution template supports float32 tensors")
    scratch: list[Buffer] = []
    stmts: list[Stmt] = []
    base = sanitize(node.output)
    if not isinstance(y, View) or y.strides != contiguous_strides(y.shape):
        y, copy = materialize(y, f"{base}_in", names, scratch)
        stmts += copy
    if not isinstance(w, View):
        w, copy = materialize(w, f"{base}_w", names, scratch)
        stmts += copy
    forward = as_forward_conv(group, gi, ev, names, y, w, stmts, scratch)
    if forward is not None:
        return forward
    return _lower_col2im(group, gi, ev, names, y, w, stmts, scratch)


def _lower_col2im(group: FusionGroup, gi: int, ev: Any, names: Any, y: View, w: View, stmts: list[Stmt],
                  scratch: list[Buffer]) -> tuple[list[Stmt], list[Buffer]]:
    """Finish the group by GEMM + col2im over chunks of images (module docstring)."""
    from ember.compiler.codegen.llvm.gemm import Epilogue
    from ember.compiler.kernel.lower import sanitize

    node = group.nodes[gi]
    base = sanitize(node.output)
    groups, out_shape = node.attrs["groups"], tuple(group.type_of(node.output).shape)
    cog, ksize = w.shape[1], tuple(w.shape[2:])
    cig, rows = w.shape[0] // groups, cog * _prod(ksize)
    in_sp, out_sp = tuple(y.shape[2:]), out_shape[2:]
    p_in, p_out = _prod(in_sp), _prod(out_sp)
    wt, copy = _transposed_weight(w, groups, f"{base}_wt", names, scratch)
    stmts += copy
    c_name = result_buffer(group, node.output, scratch)
    chunk = col2im_chunk(out_shape[0], p_in)
    cols = Buffer(f"{base}_cols", y.dtype, (rows, chunk * p_in), (chunk * p_in, 1))
    scratch.append(cols)
    yt = None
    if chunk > 1:  # the chunk's images side by side: yt[c, b*P_in + pos] = y[n0 + b, c, pos]
        yt = Buffer(f"{base}_yt", y.dtype, (y.shape[1], chunk * p_in), (chunk * p_in, 1))
        scratch.append(yt)
    geo = (node.attrs, ksize, in_sp, out_sp, cog, rows, cig, groups, p_in, p_out, out_shape[1])

    def chunk_stmts(n0: Expr, count: int) -> list[Stmt]:
        return _chunk(y, yt, wt.name, cols.name, c_name, n0, count, geo, names, Epilogue())

    full, rem = divmod(out_shape[0], chunk)
    if full > 1:
        t = names.var("t")
        stmts.append(Loop(t.name, full, tuple(chunk_stmts(imul(t, chunk), chunk))))
    elif full == 1:
        stmts += chunk_stmts(Const(0, ZERO.dtype), chunk)
    if rem:
        stmts += chunk_stmts(Const(full * chunk, ZERO.dtype), rem)
    stmts += lower_rest(group, ev, names, node.output, c_name, gi + 1)
    return stmts, scratch


def col2im_chunk(batch: int, p_in: int) -> int:
    """Images per GEMM of the col2im form: about ``TARGET_COLUMNS`` columns, as the forward conv's
    batched schedule, so the ``Cog*k x Cig`` weights are packed once per chunk, not once per image."""
    from ember.compiler.kernel.lower_conv_batched import TARGET_COLUMNS

    return max(1, min(batch, TARGET_COLUMNS // max(p_in, 1)))


def _chunk(y: View, yt: Buffer | None, wt: str, cols: str, c_name: str, n0: Expr, count: int, geo: tuple,
           names: Any, epilogue: Any) -> list[Stmt]:
    """One chunk of images: (copy them side by side,) one GEMM per group, then per image zero its output
    block and add the columns back (a parallel loop over the images when it is top-level: each image
    owns its output)."""
    from ember.compiler.kernel.lower import _nest, schedule

    attrs, ksize, in_sp, out_sp, cog, rows, cig, groups, p_in, p_out, c_out = geo
    width = count * p_in
    stmts: list[Stmt] = []
    if yt is not None and count > 1:
        def move(idx: Index) -> list[Stmt]:
            b, c, pos = idx
            return [Store(yt.name, iadd(imul(c, width), iadd(imul(b, p_in), pos)),
                          y.at((iadd(n0, b), c, *unflatten(pos, in_sp))))]

        stmts += schedule(_nest((count, y.shape[1], p_in), names, move, "m"), count * y.shape[1] * p_in)
        b_buf, b_off, ldb = yt.name, None, width
    else:
        b_buf, b_off, ldb = y.buffer, iadd(y.offset, imul(n0, y.strides[0])), p_in
    g: Expr = names.var("g") if groups > 1 else ZERO
    b_at = imul(g, cig * width) if b_off is None else iadd(b_off, imul(g, cig * p_in))
    gemm = Gemm(rows, width, cig, wt, imul(g, rows * cig), cig, b_buf, b_at, ldb, cols, Const(0, ZERO.dtype),
                width, False, epilogue)
    b = names.var("b") if count > 1 else ZERO
    out_base = iadd(imul(iadd(n0, b), c_out * p_out), imul(g, cog * p_out))
    zero = _nest((cog * p_out,), names, lambda idx: [Store(c_name, iadd(out_base, idx[0]),
                                                           Const(0.0, y.dtype))], "z")
    scatter = _col2im(cols, imul(b, p_in), width, c_name, out_base, attrs, ksize, in_sp, out_sp, cog,
                      y.dtype, names)
    per_image = [*zero, *scatter]
    if count > 1:
        kind = LoopKind.PARALLEL if groups == 1 else LoopKind.SERIAL
        per_image = [Loop(b.name, count, tuple(per_image), kind)]
    body = [gemm, *per_image]
    return [*stmts, *([Loop(g.name, groups, tuple(body))] if groups > 1 else body)]
