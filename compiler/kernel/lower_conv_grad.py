"""Lowering of ``conv_weight_grad`` (the "conv_weight_grad" template): a convolution's weight gradient.

For each image ``n`` and group ``g``:

    dW_g[Cog, Cg*k] += dY[n, g][Cog, P] @ cols[Cg*k, P]^T

with ``cols`` the im2col matrix of the image's input channels of group ``g`` (the forward conv's own
im2col loops, so padding, stride and dilation mean the same thing). The GEMM writes a per-image scratch
product that a vectorized loop adds into the result: the product could use the GEMM's residual epilogue
instead, but reading and writing the same buffer inside the template is not something it promises.
"""

from __future__ import annotations

from typing import Any

from ember.compiler.kernel.builder import iadd, imul
from ember.compiler.kernel.group import FusionGroup
from ember.compiler.kernel.ir import Binary, Buffer, Const, Gemm, Load, Loop, Stmt, Store
from ember.compiler.kernel.lower_conv import _im2col
from ember.compiler.kernel.lower_gemm import lower_rest, materialize, result_buffer
from ember.compiler.kernel.values import ZERO, Index, Value, View, contiguous_strides, flat_index
from ember.runtime.errors import CompileError

__all__ = ["lower_conv_weight_grad_group"]


def _prod(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def lower_conv_weight_grad_group(group: FusionGroup, gi: int, ev: Any,
                                 names: Any) -> tuple[list[Stmt], list[Buffer]]:
    """Statements and scratch buffers of a ``conv_weight_grad`` group (see the module docstring)."""
    from ember.compiler.codegen.llvm.gemm import Epilogue
    from ember.compiler.kernel.lower import _nest, sanitize, schedule

    node = group.nodes[gi]
    for nd_ in group.nodes[:gi]:
        ev.node(nd_)
    x, y = (ev.operand(v) for v in node.inputs)
    if not isinstance(x, Value) or not isinstance(y, Value) or x.dtype.name != "float32" \
            or y.dtype.name != "float32":
        raise CompileError(f"cannot lower op '{node.op}': the convolution template supports float32 tensors")
    scratch: list[Buffer] = []
    stmts: list[Stmt] = []
    tag = sanitize(node.output)
    if not isinstance(x, View):
        x, copy = materialize(x, f"{tag}_x", names, scratch)
        stmts += copy
    if not isinstance(y, View) or y.strides != contiguous_strides(y.shape):
        y, copy = materialize(y, f"{tag}_dy", names, scratch)
        stmts += copy
    attrs = node.attrs
    w_shape = tuple(group.type_of(node.output).shape)
    groups, ksize, out = attrs["groups"], tuple(attrs["kernel_size"]), tuple(y.shape[2:])
    co, cg = w_shape[0], w_shape[1]
    cog, kdim, p = co // groups, cg * _prod(ksize), _prod(out)
    c_name = result_buffer(group, node.output, scratch)
    cols = Buffer(f"{tag}_cols", x.dtype, (kdim, p), (p, 1))
    prod_buf = Buffer(f"{tag}_prod", x.dtype, (cog, kdim), (kdim, 1))
    scratch += [cols, prod_buf]

    def clear(idx: Index) -> list[Stmt]:
        return [Store(c_name, flat_index(idx, w_shape), Const(0.0, x.dtype))]

    n, g = names.var("n"), names.var("g")

    def add(idx: Index) -> list[Stmt]:
        at = iadd(imul(g, cog * kdim), flat_index(idx, (cog, kdim)))
        part = Load(prod_buf.name, flat_index(idx, (cog, kdim)), x.dtype)
        return [Store(c_name, at, Binary("add", Load(c_name, at, x.dtype), part, x.dtype))]

    stmts += schedule(_nest(w_shape, names, clear, "z"), _prod(w_shape))
    inner: list[Stmt] = list(_im2col(x, n, imul(g, cg), cg, ksize, out, attrs, cols.name, names))
    dy_off = iadd(y.offset, iadd(imul(n, y.strides[0]), imul(g, cog * p)))
    zero = Const(0, ZERO.dtype)
    inner.append(Gemm(cog, kdim, p, y.buffer, dy_off, p, cols.name, zero, p, prod_buf.name, zero, kdim, True,
                      Epilogue()))
    inner += schedule(_nest((cog, kdim), names, add, "a"), 0)
    stmts.append(Loop(n.name, y.shape[0], (Loop(g.name, groups, tuple(inner)),)))
    stmts += lower_rest(group, ev, names, node.output, c_name, gi + 1)
    return stmts, scratch
