"""Lowering of ``conv_transpose`` (the adjoint of conv in its input).

Geometries with a stride-1 convolution equivalent (every padding at most ``(k-1)*dilation``, which
includes every input gradient of a convolution) are lowered as that forward convolution
(``lower_conv_input_grad.py``). The rest take GEMM + col2im, per image and group::

    cols[Cog*k, P_in] = W_g^T[Cog*k, Cig] @ y[n, g][Cig, P_in]

then every column is added back to the output positions its taps cover (``o = i*s - p + t*d``; taps
outside the output add 0 to a clamped position). The col2im loops run serially on purpose: two lanes
of one vector could add into the same element. ``W^T`` is copied once per call (weights are small next
to activations). Elementwise nodes after it (bias, activation) run over the result in the same kernel.
"""

from __future__ import annotations

from typing import Any

from ember.compiler.dtypes import bool_
from ember.compiler.kernel.builder import iadd, imul
from ember.compiler.kernel.group import FusionGroup
from ember.compiler.kernel.ir import Binary, Buffer, Const, Expr, Gemm, Load, Loop, Select, Stmt, Store
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

    def body(idx: Index) -> list[Stmt]:
        g, ct, ci = idx
        src = (iadd(imul(g, cig), ci), *unflatten(ct, (cog, *ksize)))
        return [Store(name, flat_index(idx, shape), w.at(src))]

    return wt, schedule(_nest(shape, names, body, "w"), 0)


def _col2im(cols: str, c_name: str, out_base: Expr, attrs: dict[str, Any], ksize: tuple[int, ...],
            in_sp: tuple[int, ...], out_sp: tuple[int, ...], cog: int, dtype: Any, names: Any) -> list[Stmt]:
    from ember.compiler.kernel.lower import _nest

    nd = len(ksize)
    rows, p_in = cog * _prod(ksize), _prod(in_sp)

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
        col = flat_index((flat_index((co, *taps), (cog, *ksize)), flat_index(pos, in_sp)), (rows, p_in))
        add: Expr = Select(valid, Load(cols, col, dtype), Const(0.0, dtype), dtype)  # type: ignore[arg-type]
        return [Store(c_name, target, Binary("add", Load(c_name, target, dtype), add, dtype))]

    return _nest((cog, *ksize, *in_sp), names, body, "c")


def lower_conv_transpose_group(group: FusionGroup, gi: int, ev: Any,
                               names: Any) -> tuple[list[Stmt], list[Buffer]]:
    """Statements and scratch buffers of a ``conv_transpose`` group's kernel (module docstring)."""
    from ember.compiler.codegen.llvm.gemm import Epilogue
    from ember.compiler.kernel.lower import _nest, sanitize, schedule

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
    groups, out_shape = node.attrs["groups"], tuple(group.type_of(node.output).shape)
    cog, ksize = w.shape[1], tuple(w.shape[2:])
    cig, rows = w.shape[0] // groups, cog * _prod(ksize)
    in_sp, out_sp = tuple(y.shape[2:]), out_shape[2:]
    p_in, p_out = _prod(in_sp), _prod(out_sp)
    wt, copy = _transposed_weight(w, groups, f"{base}_wt", names, scratch)
    stmts += copy
    c_name = result_buffer(group, node.output, scratch)
    cols = Buffer(f"{base}_cols", y.dtype, (rows, p_in), (p_in, 1))
    scratch.append(cols)
    n, g = names.var("n"), names.var("g")
    out_base = iadd(imul(n, out_shape[1] * p_out), imul(g, cog * p_out))
    zero = schedule(_nest((cog * p_out,), names,
                          lambda idx: [Store(c_name, iadd(out_base, idx[0]), Const(0.0, y.dtype))], "z"), 0)
    gemm = Gemm(rows, p_in, cig, wt.name, imul(g, rows * cig), cig, y.buffer,
                iadd(y.offset, iadd(imul(n, y.strides[0]), imul(g, cig * p_in))), p_in, cols.name,
                Const(0, ZERO.dtype), p_in, False, Epilogue())
    scatter = _col2im(cols.name, c_name, out_base, node.attrs, ksize, in_sp, out_sp, cog, y.dtype, names)
    stmts.append(Loop(n.name, out_shape[0], (Loop(g.name, groups, (*zero, gemm, *scatter)),)))
    stmts += lower_rest(group, ev, names, node.output, c_name, gi + 1)
    return stmts, scratch
