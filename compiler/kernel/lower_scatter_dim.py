"""Lowering of the index-driven scatters: ``scatter`` / ``scatter_add`` along a dim, ``index_put`` (the
adjoint of getitem, basic or advanced), the adjoint of ``take_along_dim`` (``take_along_dim_backward``,
the "scatter_add" template) and ``embedding_backward`` (the "scatter_add_rows" template).

Two loop nests: the result is first initialized (the input's copy, or zeros) by a parallel,
vectorized loop; then one loop over the index tensor's positions writes (or adds) each source
element at the position its index names. That loop is serial on purpose: repeated indices send
several elements to one position, and two vector lanes adding into the same element would lose an
update (and for plain ``scatter`` the last write must win, as in the reference). When the scattered dim
is not the outermost, positions differing in the outermost dim never collide, so that loop runs in
parallel. Index values wrap when negative and are clamped into range (eager mode reports bad ones),
so no store leaves the buffer. Elementwise nodes after the scatter run over its result in the same
kernel.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ember.compiler.dtypes import bool_, int64
from ember.compiler.kernel.builder import cast
from ember.compiler.kernel.group import FusionGroup, GroupNode
from ember.compiler.kernel.ir import Binary, Buffer, Const, Expr, Load, Loop, LoopKind, Select, Stmt, Store
from ember.compiler.kernel.values import Index, Value, _row, broadcast_to, flat_index
from ember.runtime.errors import CompileError

__all__ = ["lower_embedding_backward_group", "lower_index_put_group", "lower_scatter_dim_group",
           "lower_take_backward_group"]


@dataclass
class _Scatter:
    """What one scatter kernel needs: the result's initial value, the index domain, and per position
    of the domain the target position in the result and the value stored there."""

    init: Callable[[Index], Expr]
    domain: tuple[int, ...]
    target: Callable[[Index], Index]
    value: Callable[[Index], Expr]
    accumulate: bool
    parallel_outer: bool


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def _emit(group: FusionGroup, gi: int, ev: Any, names: Any, sc: _Scatter) -> tuple[list[Stmt], list[Buffer]]:
    from ember.compiler.kernel.lower import PARALLEL_MIN_ELEMENTS, _nest, schedule
    from ember.compiler.kernel.lower_gemm import lower_rest, result_buffer

    node = group.nodes[gi]
    out_t = group.type_of(node.output)
    out_shape = tuple(out_t.shape)
    scratch: list[Buffer] = []
    c_name = result_buffer(group, node.output, scratch)

    def init(idx: Index) -> list[Stmt]:
        return [Store(c_name, flat_index(idx, out_shape), cast(sc.init(idx), out_t.dtype))]

    def put(idx: Index) -> list[Stmt]:
        where = flat_index(sc.target(idx), out_shape)
        value = cast(sc.value(idx), out_t.dtype)
        if sc.accumulate:
            value = Binary("add", Load(c_name, where, out_t.dtype), value, out_t.dtype)
        return [Store(c_name, where, value)]

    stmts = schedule(_nest(out_shape, names, init, "z"), _numel(out_shape))
    body = _nest(sc.domain, names, put, "s")
    if sc.parallel_outer and sc.domain[0] > 1 and _numel(sc.domain) >= PARALLEL_MIN_ELEMENTS and body:
        first = body[0]
        assert isinstance(first, Loop)
        body = [Loop(first.var, first.extent, first.body, LoopKind.PARALLEL)]
    stmts += body
    stmts += lower_rest(group, ev, names, node.output, c_name, gi + 1)
    return stmts, scratch


def _operands(group: FusionGroup, gi: int, ev: Any) -> tuple[GroupNode, list[Any]]:
    node = group.nodes[gi]
    for nd_ in group.nodes[:gi]:
        ev.node(nd_)
    out_shape = tuple(group.type_of(node.output).shape)
    if not out_shape:
        raise CompileError(f"cannot lower op '{node.op}' on a 0-d tensor")
    return node, [ev.operand(v) for v in node.inputs]


def _along(dim: int, index: Value, n: int) -> Callable[[Index], Index]:
    def target(idx: Index) -> Index:
        moved = list(idx)
        moved[dim] = _row(index.at(idx), n)
        return tuple(moved)

    return target


def lower_scatter_dim_group(group: FusionGroup, gi: int, ev: Any,
                            names: Any) -> tuple[list[Stmt], list[Buffer]]:
    """``scatter`` / ``scatter_add``: out = input; out[.., index[j], ..] (+)= src[j] along dim."""
    node, (x, index, src) = _operands(group, gi, ev)
    if not isinstance(x, Value) or not isinstance(index, Value) or len(index.shape) != len(x.shape):
        raise CompileError(f"cannot lower op '{node.op}': expected input and index of the same rank")
    dim = node.attrs["dim"]
    src_at = src.at if isinstance(src, Value) else (lambda idx: src)
    return _emit(group, gi, ev, names, _Scatter(
        init=x.at, domain=tuple(index.shape), target=_along(dim, index, x.shape[dim]), value=src_at,
        accumulate=node.op == "scatter_add", parallel_outer=dim != 0))


def lower_take_backward_group(group: FusionGroup, gi: int, ev: Any,
                              names: Any) -> tuple[list[Stmt], list[Buffer]]:
    """``take_along_dim_backward``: zeros, then out[.., indices[j], ..] += grad[j] along dim."""
    node, (g, index) = _operands(group, gi, ev)
    if not isinstance(g, Value) or not isinstance(index, Value):
        raise CompileError(f"cannot lower op '{node.op}': expected tensor operands")
    dim, shape = node.attrs["dim"], tuple(node.attrs["shape"])
    zero = Const(0.0, g.dtype) if g.dtype.name.startswith("float") else Const(0, g.dtype)
    grad = broadcast_to(g, tuple(index.shape))
    return _emit(group, gi, ev, names, _Scatter(
        init=lambda idx: zero, domain=tuple(index.shape), target=_along(dim, index, shape[dim]),
        value=grad.at, accumulate=True, parallel_outer=dim != 0))


def lower_embedding_backward_group(group: FusionGroup, gi: int, ev: Any,
                                   names: Any) -> tuple[list[Stmt], list[Buffer]]:
    """``embedding_backward``: zeros, then row indices[j] += grad[j] (padding_idx rows get nothing)."""
    node, (g, index) = _operands(group, gi, ev)
    if not isinstance(g, Value) or not isinstance(index, Value):
        raise CompileError(f"cannot lower op '{node.op}': expected tensor operands")
    k, rows = len(index.shape), node.attrs["num_weights"]
    pad = node.attrs["padding_idx"]
    zero = Const(0.0, g.dtype)

    def value(idx: Index) -> Expr:
        v = g.at(idx)
        if pad is None:
            return v
        hit = Binary("eq", cast(index.at(idx[:k]), int64), Const(pad, int64), bool_)
        return Select(hit, zero, v, g.dtype)

    return _emit(group, gi, ev, names, _Scatter(
        init=lambda idx: zero, domain=tuple(g.shape),
        target=lambda idx: (_row(index.at(idx[:k]), rows), *idx[k:]), value=value, accumulate=True,
        parallel_outer=False))


def lower_index_put_group(group: FusionGroup, gi: int, ev: Any,
                          names: Any) -> tuple[list[Stmt], list[Buffer]]:
    """``index_put``: out = input; out[index] (+)= values, over the positions ``input[index]`` selects."""
    from ember.compiler.kernel.lower_index import getitem_source
    from ember.compiler.ops.registry import REGISTRY, TensorType

    node, (x, values, *tensors) = _operands(group, gi, ev)
    if not isinstance(x, Value) or not all(isinstance(t, Value) for t in tensors):
        raise CompileError(f"cannot lower op '{node.op}': expected tensor input and index tensors")
    index = node.attrs["index"]
    types = [TensorType(tuple(t.shape), t.dtype) for t in (x, *tensors)]
    domain = tuple(REGISTRY["getitem"].infer(*types, index=index).shape)
    if not domain:
        raise CompileError(f"cannot lower op '{node.op}': a single indexed element (0-d target)")
    source = getitem_source(tuple(x.shape), tensors, index, domain)
    vals = broadcast_to(values, domain) if isinstance(values, Value) else None
    return _emit(group, gi, ev, names, _Scatter(
        init=x.at, domain=domain, target=source, value=vals.at if vals else (lambda idx: values),
        accumulate=bool(node.attrs["accumulate"]), parallel_outer=False))
