"""Lowering of ``upsample`` (the "upsample" template) and its adjoint ``upsample_backward``.

Every mode is separable: along each resized dim, output position j reads a few source positions (one
for nearest, two for linear, four for cubic) with weights that are functions of j alone. The kernel
computes them in place from j, in the input's precision (float32 for float32 and half), with the
same operation order as the reference, so nearest's ``floor`` picks the same source element; linear and
cubic are continuous in the source coordinate, so a last-bit difference there moves the result by
an ulp at most.

* ``upsample``: a symbolic value (sum over tap combinations of weight products times input
  elements) that elementwise producers and consumers fuse around: one loop nest, no scratch.
* ``upsample_backward``: the output is zeroed, then every gradient element adds its weighted share into
  the source positions its taps read. Planes (the leading dims) are disjoint and run in parallel;
  within a plane the loop is serial on purpose, since several output positions read the same source
  position and two vector lanes adding into one element would lose an update.
"""

from __future__ import annotations

import itertools
from typing import Any

from ember.compiler.dtypes import float32, float64, int64
from ember.compiler.kernel.builder import cast, iadd
from ember.compiler.kernel.group import FusionGroup
from ember.compiler.kernel.ir import Binary, Buffer, Const, Expr, Load, Loop, LoopKind, Stmt, Store, Unary
from ember.compiler.kernel.values import Index, Lazy, Value, flat_index
from ember.runtime.errors import CompileError

__all__ = ["lower_upsample_backward_group", "lower_upsample_group", "upsample_value"]

_CUBIC_A = -0.75
Tap = tuple[Expr, Expr | None]  # (source index, weight or None for nearest)


def _scale(n_in: int, n_out: int, align_corners: bool, scale: float | None) -> float:
    """Source step per output step, as PyTorch computes it (an explicit scale factor wins)."""
    if align_corners:
        return (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
    return 1.0 / scale if scale is not None and scale > 0 else n_in / n_out


def _f(op: str, a: Expr, b: Expr | float) -> Expr:
    b_ = b if isinstance(b, Expr) else Const(float(b), a.dtype)
    return Binary(op, a, b_, a.dtype)


def _cubic(t: Expr) -> list[Expr]:
    """Keys' cubic convolution weights (A = -0.75) for offsets -1, 0, 1, 2 at fraction t."""
    a = _CUBIC_A

    def near(x: Expr) -> Expr:  # ((a + 2) x - (a + 3)) x x + 1
        return _f("add", _f("mul", _f("mul", _f("sub", _f("mul", x, a + 2), a + 3), x), x), 1.0)

    def far(x: Expr) -> Expr:   # ((a x - 5a) x + 8a) x - 4a
        inner = _f("add", _f("mul", _f("sub", _f("mul", x, a), 5 * a), x), 8 * a)
        return _f("sub", _f("mul", inner, x), 4 * a)

    one = Const(1.0, t.dtype)
    return [far(_f("add", t, 1.0)), near(t), near(_f("sub", one, t)), far(_f("sub", Const(2.0, t.dtype), t))]


def _taps(j: Expr, n_in: int, n_out: int, attrs: dict[str, Any], k: int, ft: Any) -> list[Tap]:
    """The (index, weight) pairs output position ``j`` reads along the k-th resized dim."""
    mode, ac = attrs["mode"], attrs["align_corners"]
    scale = attrs["scales"][k] if attrs["scales"] else None
    s = Const(float(_scale(n_in, n_out, ac and mode in ("linear", "cubic"), scale)), ft)
    dst = cast(j, ft)
    last = Const(n_in - 1, int64)
    if mode in ("nearest", "nearest-exact"):
        src = Binary("mul", _f("add", dst, 0.5) if mode == "nearest-exact" else dst, s, ft)
        return [(Binary("min", cast(Unary("floor", src, ft), int64), last, int64), None)]
    src = Binary("mul", dst, s, ft) if ac else _f("sub", Binary("mul", _f("add", dst, 0.5), s, ft), 0.5)
    if mode == "linear" and not ac:
        src = _f("max", src, 0.0)
    base = Unary("floor", src, ft)
    i0 = cast(base, int64)
    frac = Binary("sub", src, base, ft)
    if mode == "linear":
        return [(i0, _f("sub", Const(1.0, ft), frac)),
                (Binary("min", iadd(i0, 1), last, int64), frac)]
    if mode != "cubic":
        raise CompileError(f"cannot lower op 'upsample': unknown mode {mode!r}")
    zero = Const(0, int64)
    return [(Binary("max", Binary("min", iadd(i0, off), last, int64), zero, int64), w)
            for off, w in zip((-1, 0, 1, 2), _cubic(frac))]


def _combos(pos: Index, in_sizes: tuple[int, ...], out_sizes: tuple[int, ...], attrs: dict[str, Any],
            dtype: Any) -> list[tuple[Index, Expr | None]]:
    """Every tap combination at output position ``pos``: (source position, product of weights)."""
    ft = float64 if dtype is float64 else float32
    per_dim = [_taps(j, n_in, n_out, attrs, k, ft)
               for k, (j, n_in, n_out) in enumerate(zip(pos, in_sizes, out_sizes))]
    out = []
    for combo in itertools.product(*per_dim):
        weight: Expr | None = None
        for _, w in combo:
            if w is not None:
                weight = w if weight is None else Binary("mul", weight, w, ft)
        out.append((tuple(i for i, _ in combo), None if weight is None else cast(weight, dtype)))
    return out


def upsample_value(x: Value, attrs: dict[str, Any], out_shape: tuple[int, ...]) -> Value:
    """``upsample`` of ``x`` as a symbolic value."""
    nd = len(attrs["size"])
    in_sizes, out_sizes = tuple(x.shape[-nd:]), tuple(out_shape[-nd:])

    def at(idx: Index) -> Expr:
        lead = idx[:-nd]
        total: Expr | None = None
        for src, w in _combos(idx[-nd:], in_sizes, out_sizes, attrs, x.dtype):
            term = x.at((*lead, *src))
            term = term if w is None else Binary("mul", w, term, x.dtype)
            total = term if total is None else Binary("add", total, term, x.dtype)
        assert total is not None
        return total

    return Lazy(out_shape, x.dtype, at)


def _float_input(node: Any, ev: Any) -> Value:
    x = ev.operand(node.inputs[0])
    if not isinstance(x, Value) or x.dtype.name not in ("float16", "float32", "float64"):
        raise CompileError(f"cannot lower op '{node.op}': expected a float tensor input")
    return x


def lower_upsample_group(group: FusionGroup, gi: int, ev: Any, names: Any) -> tuple[list[Stmt], list[Buffer]]:
    """One elementwise loop nest over the group: producers, the resampled value, consumers."""
    from ember.compiler.kernel.lower import _lower_elementwise

    node = group.nodes[gi]
    for nd_ in group.nodes[:gi]:
        ev.node(nd_)
    x = _float_input(node, ev)
    ev.values[node.output] = upsample_value(x, node.attrs, tuple(group.type_of(node.output).shape))
    defined = [*group.inputs, *(o for n in group.nodes[:gi + 1] for o in n.outputs)]
    rest = FusionGroup(group.name, group.nodes[gi + 1:], group.types, defined, group.outputs)
    return _lower_elementwise(rest, ev, names), []


def lower_upsample_backward_group(group: FusionGroup, gi: int, ev: Any,
                                  names: Any) -> tuple[list[Stmt], list[Buffer]]:
    """Zero the result, then scatter-add each gradient element's weighted shares (see the docstring)."""
    from ember.compiler.kernel.lower import PARALLEL_MIN_ELEMENTS, _nest, schedule
    from ember.compiler.kernel.lower_gemm import lower_rest, result_buffer

    node = group.nodes[gi]
    for nd_ in group.nodes[:gi]:
        ev.node(nd_)
    g = _float_input(node, ev)
    scratch: list[Buffer] = []
    out_shape = tuple(group.type_of(node.output).shape)
    nd = len(node.attrs["size"])
    in_sizes, out_sizes = tuple(out_shape[-nd:]), tuple(g.shape[-nd:])
    c_name = result_buffer(group, node.output, scratch)
    zero = Const(0.0, g.dtype)

    def clear(idx: Index) -> list[Stmt]:
        return [Store(c_name, flat_index(idx, out_shape), zero)]

    def add_shares(idx: Index) -> list[Stmt]:
        lead, value = idx[:-nd], g.at(idx)
        stmts: list[Stmt] = []
        for src, w in _combos(idx[-nd:], in_sizes, out_sizes, node.attrs, g.dtype):
            target = flat_index((*lead, *src), out_shape)
            share = value if w is None else Binary("mul", w, value, g.dtype)
            stmts.append(Store(c_name, target, Binary("add", Load(c_name, target, g.dtype), share, g.dtype)))
        return stmts

    n_out = 1
    for s in out_shape:
        n_out *= s
    stmts = schedule(_nest(out_shape, names, clear, "z"), n_out)
    body = _nest(tuple(g.shape), names, add_shares, "s")
    lead_n = g.shape[0] if len(g.shape) > nd else 1
    work = n_out * len(_combos(tuple(Const(0, int64) for _ in range(nd)), in_sizes, out_sizes, node.attrs,
                               g.dtype))
    if lead_n > 1 and work >= PARALLEL_MIN_ELEMENTS and body and isinstance(body[0], Loop):
        body = [Loop(body[0].var, body[0].extent, body[0].body, LoopKind.PARALLEL)]
    stmts += body
    stmts += lower_rest(group, ev, names, node.output, c_name, gi + 1)
    return stmts, scratch

