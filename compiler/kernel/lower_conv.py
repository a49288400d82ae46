"""Lowering of convolution groups: N-d ``conv`` as im2col + GEMM with the template's fused epilogue.

For each image ``n`` and group ``g`` the kernel computes

    out[n, g*Cog:(g+1)*Cog, P] = W_g[Cog, Cg*k] @ cols[Cg*k, P]

with ``P`` the output positions and ``cols`` the im2col matrix of the image's channels of group ``g``,
built by a loop nest into a scratch buffer (padding reads 0 through a bounds test on a clamped index,
so nothing outside the input is touched). A 1x1 convolution with stride 1 and no padding needs no
``cols``: the image itself is the [Cg, P] right operand. The output is NC* contiguous, so the GEMM's
rows are output channels: a per-channel bias (shape [Co, 1, ...]) is the epilogue's ``row_bias``, a
folded batch norm's per-channel scale its ``row_scale``, an [N, Co, *out] tensor its ``residual``, then
relu/sigmoid/tanh. Depthwise convolutions run through the same path with one GEMM per channel (correct,
not yet fast: a direct vectorized loop is the planned replacement).
"""

from __future__ import annotations

from typing import Any

from ember.compiler.dtypes import bool_
from ember.compiler.kernel.builder import iadd, imul
from ember.compiler.kernel.group import FusionGroup
from ember.compiler.kernel.ir import Binary, Buffer, Const, Expr, Gemm, Load, Loop, Select, Stmt, Store
from ember.compiler.kernel.lower_gemm import lower_rest, match_epilogue, materialize, result_buffer
from ember.compiler.kernel.values import ZERO, Index, Value, View, contiguous_strides, flat_index
from ember.runtime.errors import CompileError

__all__ = ["lower_conv_group"]


def _channel_role(v: Value, out_shape: tuple[int, ...]) -> str | None:
    """"row" for a per-output-channel vector ([Co, 1, ...] or [1, Co, 1, ...]), "full" for a
    contiguous tensor of the output's shape."""
    if not isinstance(v, View):
        return None
    co = out_shape[1]
    shape, strides = tuple(v.shape), tuple(v.strides)
    if shape == out_shape and strides == contiguous_strides(out_shape):
        return "full"
    lead = len(out_shape) - len(shape)
    if lead < 0:
        return None
    full = (1,) * lead + shape
    fstrides = (0,) * lead + strides
    if full[1] == co and all(s == 1 for i, s in enumerate(full) if i != 1) and (co == 1 or fstrides[1] == 1):
        return "row"
    return None


def _im2col(x: View, n: Expr, c0: Expr, cg: int, ksize: tuple[int, ...], out: tuple[int, ...],
            attrs: dict[str, Any], cols: str, names: Any) -> list[Stmt]:
    """Loops filling cols[(c, taps), positions] from image ``n``, channels ``c0 .. c0 + cg``."""
    from ember.compiler.kernel.lower import _nest, schedule

    nd = len(ksize)
    spatial = tuple(x.shape[2:])
    stride, dil, pad = attrs["stride"], attrs["dilation"], attrs["padding"]
    shape = (cg, *ksize, *out)

    def body(idx: Index) -> list[Stmt]:
        c, taps, pos = idx[0], idx[1:1 + nd], idx[1 + nd:]
        where: list[Expr] = [n, iadd(c0, c)]
        valid: Expr | None = None
        for i in range(nd):
            at = iadd(iadd(imul(pos[i], stride[i]), imul(taps[i], dil[i])), -pad[2 * i])
            if pad[2 * i] or pad[2 * i + 1]:
                ok = Binary("and", Binary("ge", at, ZERO, bool_),
                            Binary("lt", at, Const(spatial[i], ZERO.dtype), bool_), bool_)
                valid = ok if valid is None else Binary("and", valid, ok, bool_)
                at = Binary("max", Binary("min", at, Const(spatial[i] - 1, ZERO.dtype), ZERO.dtype), ZERO,
                            ZERO.dtype)
            where.append(at)
        value = x.at(tuple(where))
        if valid is not None:
            value = Select(valid, value, Const(0.0, x.dtype), x.dtype)
        return [Store(cols, flat_index(idx, shape), value)]

    n_el = 1
    for s in shape:
        n_el *= s
    return schedule(_nest(shape, names, body, "c"), n_el)


def _pad_image(x: View, n: Expr, pad: tuple[int, ...], name: str, names: Any,
               scratch: list[Buffer]) -> tuple[View, list[Stmt], list[Stmt]]:
    """A zero-padded copy of one image: the border is zeroed once, the interior copied per image with
    unit-stride loads and stores, so im2col then reads without bounds tests."""
    from ember.compiler.kernel.lower import _nest, schedule

    nd = len(x.shape) - 2
    shape = (x.shape[1], *(x.shape[2 + i] + pad[2 * i] + pad[2 * i + 1] for i in range(nd)))
    buf = Buffer(name, x.dtype, shape, contiguous_strides(shape))
    scratch.append(buf)
    numel = 1
    for s_ in shape:
        numel *= s_

    def zero(idx: Index) -> list[Stmt]:
        return [Store(name, flat_index(idx, shape), Const(0.0, x.dtype))]

    def copy(idx: Index) -> list[Stmt]:
        dst = (idx[0], *(iadd(idx[1 + i], pad[2 * i]) for i in range(nd)))
        return [Store(name, flat_index(dst, shape), x.at((n, *idx)))]

    view = View(name, (1, *shape), x.dtype, (0, *contiguous_strides(shape)))
    zero_loops = schedule(_nest(shape, names, zero, "z"), numel)
    return view, zero_loops, schedule(_nest(x.shape[1:], names, copy, "q"), 0)


def _operand_offsets(epi: Any, g: Expr, n: Expr, cog: int, out_shape: tuple[int, ...]) -> None:
    """Move the epilogue operands to image ``n``, group ``g`` (row vectors by channel, the residual by
    image and channel block)."""
    p = 1
    for s in out_shape[2:]:
        p *= s
    moved = []
    for name, buf, off in epi.operands:
        if name.startswith("row_"):
            off = iadd(off, imul(g, cog))
        elif name == "residual":
            off = iadd(off, iadd(imul(n, out_shape[1] * p), imul(g, cog * p)))
            epi.ldr = p
        moved.append((name, buf, off))
    epi.operands = moved


def lower_conv_group(group: FusionGroup, gi: int, ev: Any, names: Any) -> tuple[list[Stmt], list[Buffer]]:
    """Statements and scratch buffers of a conv group's kernel (see the module docstring)."""
    from ember.compiler.kernel.lower import sanitize

    node = group.nodes[gi]
    for nd in group.nodes[:gi]:
        ev.node(nd)
    x, w = (ev.operand(v) for v in node.inputs)
    if not isinstance(x, Value) or not isinstance(w, Value) or x.dtype.name != "float32" \
            or w.dtype.name != "float32":
        raise CompileError(f"cannot lower op '{node.op}': the convolution template supports float32 tensors")
    scratch: list[Buffer] = []
    stmts: list[Stmt] = []
    if not isinstance(x, View):
        x, copy = materialize(x, f"{sanitize(node.output)}_x", names, scratch)
        stmts += copy
    if not isinstance(w, View) or w.strides != contiguous_strides(w.shape):
        w, copy = materialize(w, f"{sanitize(node.output)}_w", names, scratch)
        stmts += copy
    attrs = node.attrs
    out_t = group.type_of(node.output)
    out_shape = tuple(out_t.shape)
    groups = attrs["groups"]
    batch, co, ksize, out = out_shape[0], out_shape[1], tuple(w.shape[2:]), out_shape[2:]
    cg, cog = w.shape[1], co // groups
    kdim = cg
    for s in ksize:
        kdim *= s
    p = 1
    for s in out:
        p *= s
    epi, cur, j = match_epilogue(group, gi, ev.values, lambda v: _channel_role(v, out_shape), False)
    c_name = result_buffer(group, cur, scratch)
    pointwise = all(s == 1 for s in ksize) and all(s == 1 for s in attrs["stride"]) \
        and not any(attrs["padding"]) and x.strides == contiguous_strides(x.shape)
    n, g = names.var("n"), names.var("g")
    inner: list[Stmt] = []
    per_image: list[Stmt] = []
    if pointwise:
        b_buf, b_off, ldb = x.buffer, iadd(x.offset, iadd(imul(n, x.strides[0]), imul(g, cg * p))), p
    else:
        src, geo = x, attrs
        if any(attrs["padding"]):
            pad_name = f"{sanitize(node.output)}_pad"
            src, zero, copy = _pad_image(x, n, attrs["padding"], pad_name, names, scratch)
            stmts += zero
            per_image += copy
            geo = {**attrs, "padding": (0,) * len(attrs["padding"])}
        cols = Buffer(f"{sanitize(node.output)}_cols", x.dtype, (kdim, p), (p, 1))
        scratch.append(cols)
        inner += _im2col(src, n, imul(g, cg), cg, ksize, out, geo, cols.name, names)
        b_buf, b_off, ldb = cols.name, Const(0, ZERO.dtype), p
    _operand_offsets(epi, g, n, cog, out_shape)
    inner.append(Gemm(cog, p, kdim, w.buffer, iadd(w.offset, imul(g, cog * kdim)), kdim, b_buf, b_off, ldb,
                      c_name, iadd(imul(n, co * p), imul(g, cog * p)), p, False, epi.build(),
                      tuple(epi.operands), epi.ldr))
    stmts.append(Loop(n.name, batch, (*per_image, Loop(g.name, groups, tuple(inner)))))
    stmts += lower_rest(group, ev, names, cur, c_name, j)
    return stmts, scratch


def lower_conv_transpose_group(group: FusionGroup, gi: int, ev: Any,
                               names: Any) -> tuple[list[Stmt], list[Buffer]]:
    """``conv_transpose`` (the adjoint of conv in its input) as GEMM + col2im, per image and group:

        cols[Cog*k, P_in] = W_g^T[Cog*k, Cig] @ y[n, g][Cig, P_in]

    then every column is added back to the output positions its taps cover (``o = i*s - p + t*d``,
    taps outside the output add 0 to a clamped position, serially, so no update is lost). ``W^T`` is
    copied once per call (weights are small next to activations). Elementwise nodes after it (bias,
    activation) run over the result in the same kernel.
    """
    from ember.compiler.kernel.lower import _nest, sanitize, schedule

    node = group.nodes[gi]
    for nd_ in group.nodes[:gi]:
        ev.node(nd_)
    y, w = (ev.operand(v) for v in node.inputs)
    if not isinstance(y, Value) or not isinstance(w, Value) or y.dtype.name != "float32" \
            or w.dtype.name != "float32":
        raise CompileError(f"cannot lower op '{node.op}': the convolution template supports float32 tensors")
    scratch: list[Buffer] = []
    stmts: list[Stmt] = []
    if not isinstance(y, View) or y.strides != contiguous_strides(y.shape):
        y, copy = materialize(y, f"{sanitize(node.output)}_in", names, scratch)
        stmts += copy
    attrs, groups = node.attrs, node.attrs["groups"]
    out_shape = tuple(group.type_of(node.output).shape)
    nd = len(out_shape) - 2
    cin, cog, ksize = w.shape[0], w.shape[1], tuple(w.shape[2:])
    cig = cin // groups
    kk = 1
    for s_ in ksize:
        kk *= s_
    in_sp, out_sp = tuple(y.shape[2:]), out_shape[2:]
    p_in = p_out = 1
    for s_ in in_sp:
        p_in *= s_
    for s_ in out_sp:
        p_out *= s_
    # W^T per group: wt[g, (co, t), ci] = w[g*cig + ci, co, t]
    wt_shape = (groups, cog * kk, cig)
    wt = Buffer(f"{sanitize(node.output)}_wt", w.dtype, wt_shape, contiguous_strides(wt_shape))
    scratch.append(wt)

    def transpose(idx: Index) -> list[Stmt]:
        g_, ct, ci = idx
        src = (iadd(imul(g_, cig), ci), *_split(ct, (cog, *ksize)))
        return [Store(wt.name, flat_index(idx, wt_shape), w.at(src))]

    stmts += schedule(_nest(wt_shape, names, transpose, "w"), 0)
    c_name = result_buffer(group, node.output, scratch)
    cols = Buffer(f"{sanitize(node.output)}_cols", y.dtype, (cog * kk, p_in), (p_in, 1))
    scratch.append(cols)
    n, g = names.var("n"), names.var("g")
    gemm = Gemm(cog * kk, p_in, cig, wt.name, imul(g, cog * kk * cig), cig, y.buffer,
                iadd(y.offset, iadd(imul(n, y.strides[0]), imul(g, cig * p_in))), p_in, cols.name,
                Const(0, ZERO.dtype), p_in, False, _plain_epilogue())
    out_base = iadd(imul(n, out_shape[1] * p_out), imul(g, cog * p_out))

    def zero(idx: Index) -> list[Stmt]:
        return [Store(c_name, iadd(out_base, flat_index(idx, (cog, *out_sp))), Const(0.0, y.dtype))]

    def col2im(idx: Index) -> list[Stmt]:
        co, taps, pos = idx[0], idx[1:1 + nd], idx[1 + nd:]
        where: list[Expr] = [co]
        valid: Expr | None = None
        for i in range(nd):
            at = iadd(iadd(imul(pos[i], attrs["stride"][i]), imul(taps[i], attrs["dilation"][i])),
                      -attrs["padding"][2 * i])
            inside = Binary("lt", at, Const(out_sp[i], ZERO.dtype), bool_)
            ok = Binary("and", Binary("ge", at, ZERO, bool_), inside, bool_)
            valid = ok if valid is None else Binary("and", valid, ok, bool_)
            where.append(Binary("max", Binary("min", at, Const(out_sp[i] - 1, ZERO.dtype), ZERO.dtype), ZERO,
                                ZERO.dtype))
        target = iadd(out_base, flat_index(tuple(where), (cog, *out_sp)))
        col = flat_index((flat_index((co, *taps), (cog, *ksize)), flat_index(pos, in_sp)), (cog * kk, p_in))
        add: Expr = Load(cols.name, col, y.dtype)
        if valid is not None:
            add = Select(valid, add, Const(0.0, y.dtype), y.dtype)
        return [Store(c_name, target, Binary("add", Load(c_name, target, y.dtype), add, y.dtype))]

    per_group = [*schedule(_nest((cog, *out_sp), names, zero, "z"), 0), gemm,
                 # serial on purpose: two lanes of one vector could add into the same element
                 *_nest((cog, *ksize, *in_sp), names, col2im, "c")]
    stmts.append(Loop(n.name, out_shape[0], (Loop(g.name, groups, tuple(per_group)),)))
    stmts += lower_rest(group, ev, names, node.output, c_name, gi + 1)
    return stmts, scratch


def _split(flat: Expr, shape: tuple[int, ...]) -> tuple[Expr, ...]:
    from ember.compiler.kernel.values import unflatten

    return unflatten(flat, shape)


def _plain_epilogue() -> Any:
    from ember.compiler.codegen.llvm.gemm import Epilogue

    return Epilogue()
