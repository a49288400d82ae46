"""Lowering: one fusion group -> one kernel, from the ops' compute descriptions.

The group's values are evaluated symbolically (``values.py``): each op's ``lowering`` says how an
output element is computed from operand elements (``"scalar"``), where it comes from (``"index"``:
movement ops fold into index expressions), that it accumulates (``"reduce"``), or which template it
uses (``"template"``: GEMM, see ``lower_gemm.py``). Three group shapes are handled:

* elementwise/broadcast/injective: one loop nest per output shape, storing each output element as
  the composition of the ops' scalar expressions;
* reduction: outer loops over the kept dims; inside, one accumulator loop per reduction (in order, so
  softmax's max, then sum of exp(x - max), then the division all run in one pass over a row), then the
  stores of reduced-shape outputs and an inner loop for full-shape outputs;
* GEMM (matmul + epilogue): the GEMM template.

The schedule is chosen here by simple rules: the outermost loop runs in parallel when the kernel does
enough work, the innermost loop is vectorized when its accesses are unit-stride or invariant.
An op without a lowering is a ``CompileError`` naming it: there is no silent fallback.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ember.compiler.dtypes import BOOL, FLOATING, DType, bool_
from ember.compiler.kernel.builder import ExprBuilder, cast, const
from ember.compiler.kernel.group import FusionGroup, GroupNode, expand_composites
from ember.compiler.kernel.ir import (
    Assign,
    Binary,
    Buffer,
    Declare,
    Expr,
    Kernel,
    Local,
    Loop,
    LoopKind,
    Reduce,
    Select,
    Stmt,
    Store,
    Unary,
    Var,
    linear_coeff,
)
from ember.compiler.kernel.values import (
    ZERO,
    Acc,
    Index,
    Lazy,
    Value,
    View,
    broadcast_to,
    contiguous_strides,
    flat_index,
    gather,
    movement,
    unflatten,
)
from ember.compiler.ops.registry import REGISTRY, TensorType
from ember.runtime.errors import CompileError

__all__ = ["LoweredGroup", "PARALLEL_MIN_ELEMENTS", "lower_group", "op_lowering_kind", "sanitize"]

PARALLEL_MIN_ELEMENTS = 1 << 15  # below this, forking threads costs more than the loop
GATHER_TEMPLATES = ("gather",)  # templates that are data-dependent movement, fused like index ops


@dataclass
class LoweredGroup:
    """The kernel of a group, and scratch buffers it needs beyond its inputs and outputs."""

    kernel: Kernel
    scratch: list[Buffer] = field(default_factory=list)


def sanitize(name: str) -> str:
    """An identifier-safe form of a value or group name (for printing and symbol names)."""
    s = re.sub(r"[^0-9A-Za-z_]", "_", str(name))
    return s if s and not s[0].isdigit() else "v" + s


def op_lowering_kind(op_name: str) -> str:
    """Which lowering an op has: "scalar", "index", "reduce" or "template"; CompileError if none."""
    op = REGISTRY.get(op_name)
    if op is None:
        raise CompileError(f"cannot lower op '{op_name}': no such op in the registry")
    if op.lowering.get("template") in GATHER_TEMPLATES:
        return "index"
    for kind in ("scalar", "index", "reduce", "template"):
        if kind in op.lowering:
            return kind
    why = "it is a composite op that should have been decomposed" if op.composite else "it has no lowering"
    raise CompileError(f"op '{op_name}' has no kernel for the LLVM back end: {why}")


def buffer_for(name: str, t: TensorType) -> Buffer:
    return Buffer(sanitize(name), t.dtype, tuple(t.shape), contiguous_strides(t.shape))


# --------------------------------------------------------------------------------------------------
# symbolic evaluation of a group's nodes


class _Evaluator:
    """Maps value names to symbolic values, node by node."""

    def __init__(self, group: FusionGroup) -> None:
        self.group = group
        self.values: dict[str, Value] = {}
        for name in group.inputs:
            t = group.type_of(name)
            self.values[name] = View(sanitize(name), tuple(t.shape), t.dtype, contiguous_strides(t.shape))

    def operand(self, x: Any) -> Value | Expr:
        if isinstance(x, str):
            return self.values[x]
        return const(x)

    def node(self, node: GroupNode, on_reduce: Callable[[GroupNode], Value] | None = None) -> None:
        kind = op_lowering_kind(node.op)
        op = REGISTRY[node.op]
        if op.num_outputs != 1:
            raise CompileError(f"cannot lower op '{node.op}': ops with several outputs need a template")
        out_t = self.group.type_of(node.output)
        if kind == "scalar":
            self.values[node.output] = self._elementwise(node, op.lowering["scalar"], out_t)
        elif kind == "index":
            args = [self.operand(x) for x in node.inputs]
            if not all(isinstance(a, Value) for a in args):
                raise CompileError(f"cannot lower op '{node.op}' on a Python scalar")
            how = op.lowering.get("index") or op.lowering["template"]
            if how in ("gather_rows", "gather"):
                self.values[node.output] = gather(how, args[0], args[1], node.attrs, tuple(out_t.shape))
            else:
                self.values[node.output] = movement(how, args[0], node.attrs, tuple(out_t.shape), args[1:],
                                                    out_t.dtype)
        elif kind == "reduce" and on_reduce is not None:
            self.values[node.output] = on_reduce(node)
        else:
            raise CompileError(f"cannot lower op '{node.op}' ({kind}) inside a fusion group of this kind")

    def _elementwise(self, node: GroupNode, fn: Callable[..., Expr], out_t: TensorType) -> Value:
        shape, dtype = tuple(out_t.shape), out_t.dtype
        operands = [self.operand(x) for x in node.inputs]
        for x in operands:
            if isinstance(x, Value) and len(x.shape) > len(shape):
                raise CompileError(f"cannot lower op '{node.op}': operand shape {list(x.shape)} is larger "
                                   f"than the result shape {list(shape)}")
        operands = [broadcast_to(x, shape) if isinstance(x, Value) else x for x in operands]
        builder = ExprBuilder(node.op)
        attrs = dict(node.attrs)

        def at(idx: Index) -> Expr:
            args = [x.at(idx) if isinstance(x, Value) else x for x in operands]
            return cast(fn(builder, *args, **attrs), dtype)

        return Lazy(shape, dtype, at)


# --------------------------------------------------------------------------------------------------
# loop nests and schedules


class _Names:
    def __init__(self) -> None:
        self.count = 0

    def var(self, prefix: str = "i") -> Var:
        self.count += 1
        return Var(f"{prefix}{self.count - 1}")


def _nest(shape: tuple[int, ...], names: _Names, body: Callable[[Index], list[Stmt]],
          prefix: str = "i") -> list[Stmt]:
    """Loops over every dim of extent > 1 (extent-1 dims index as 0) around ``body(index)``."""
    loops: list[tuple[Var, int]] = []
    idx: list[Expr] = []
    for n in shape:
        if n == 1:
            idx.append(ZERO)
        else:
            v = names.var(prefix)
            loops.append((v, n))
            idx.append(v)
    if 0 in shape:
        return []
    stmts = body(tuple(idx))
    for v, n in reversed(loops):
        stmts = [Loop(v.name, n, tuple(stmts))]
    return stmts


def _vectorizable(stmts: tuple[Stmt, ...], var: str) -> bool:
    """Worth vectorizing: every store is unit-stride in ``var`` (loads may gather)."""
    for s in stmts:
        if isinstance(s, Store) and linear_coeff(s.index, var) != 1:
            return False
        if isinstance(s, Loop):
            return False
    return True


def schedule(stmts: list[Stmt], work: int, vectorize_reductions: bool = True) -> list[Stmt]:
    """Mark the outermost loop parallel (enough work) and innermost loops vectorized (unit stride)."""

    def inner(s: Stmt, depth: int) -> Stmt:
        if not isinstance(s, Loop):
            return s
        body = tuple(inner(b, depth + 1) for b in s.body)
        kind = s.kind
        has_reduce = any(isinstance(b, (Reduce, Assign)) for b in body)
        if kind is LoopKind.SERIAL and s.extent >= 4 and _vectorizable(body, s.var) \
                and (vectorize_reductions or not has_reduce):
            kind = LoopKind.VECTORIZED
        if depth == 0 and work >= PARALLEL_MIN_ELEMENTS and s.extent >= 2 and kind is LoopKind.SERIAL \
                and not has_reduce:
            kind = LoopKind.PARALLEL
        return Loop(s.var, s.extent, body, kind)

    return [inner(s, 0) for s in stmts]


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


# --------------------------------------------------------------------------------------------------
# elementwise groups


def _lower_elementwise(group: FusionGroup, ev: _Evaluator, names: _Names) -> list[Stmt]:
    for node in group.nodes:
        ev.node(node)
    by_shape: dict[tuple[int, ...], list[str]] = {}
    for out in group.outputs:
        by_shape.setdefault(tuple(group.type_of(out).shape), []).append(out)
    stmts: list[Stmt] = []
    for shape, outs in by_shape.items():
        def body(idx: Index, outs: list[str] = outs, shape: tuple[int, ...] = shape) -> list[Stmt]:
            flat = flat_index(idx, shape)
            return [Store(sanitize(o), flat, cast(ev.values[o].at(idx), group.type_of(o).dtype))
                    for o in outs]

        stmts += schedule(_nest(shape, names, body), _numel(shape))
    return stmts


def _flatten(group: FusionGroup) -> FusionGroup:
    """A purely elementwise group over one shape (values of that shape or single elements only, no
    movement ops) runs over the flat element range: one long vectorizable loop instead of a nest whose
    innermost dim may be shorter than a vector."""
    shapes = {tuple(t.shape) for t in group.types.values() if t.numel != 1}
    if len(shapes) != 1 or any(op_lowering_kind(n.op) != "scalar" for n in group.nodes):
        return group
    (shape,) = shapes
    inner, split = 1, len(shape)
    while split > 0 and inner < 64:  # trailing dims merge into one vector loop of 8+ vectors ...
        split -= 1
        inner *= shape[split]
    outer = _numel(shape[:split])       # ... the leading ones into one loop that can run in parallel
    new_shape = (outer, inner) if outer > 1 else (inner,)
    if len(new_shape) >= len(shape):
        return group
    types = {k: TensorType(new_shape if t.numel != 1 else (1,) * len(new_shape), t.dtype)
             for k, t in group.types.items()}
    return FusionGroup(group.name, group.nodes, types, group.inputs, group.outputs)


# --------------------------------------------------------------------------------------------------
# reduction groups

_ARG_OPS = ("argmax", "argmin")
_REDUCE_OPS = {"add": "add", "sum": "add", "mul": "mul", "prod": "mul", "max": "max", "min": "min",
               "and": "and", "all": "and", "or": "or", "any": "or"}


def reduce_identity(op: str, dtype: DType) -> Expr:
    """The neutral element of a reduction (-inf for max over floats, the smallest int for ints...)."""
    if op == "add" or op == "or":
        return const(0, dtype)
    if op == "mul" or op == "and":
        return const(1, dtype)
    if dtype.category == FLOATING:
        return const(float("-inf") if op == "max" else float("inf"), dtype)
    if dtype.category == BOOL:
        return const(op == "min", dtype)
    import numpy as np

    info = np.iinfo(dtype.np)
    return const(info.min if op == "max" else info.max, dtype)


@dataclass
class _ReduceDomain:
    full: tuple[int, ...]
    dims: tuple[int, ...]

    @property
    def kept(self) -> tuple[int, ...]:
        return tuple(n for d, n in enumerate(self.full) if d not in self.dims)

    def merge(self, kept_idx: Index, red_idx: Index) -> Index:
        ki, ri = iter(kept_idx), iter(red_idx)
        return tuple(next(ri) if d in self.dims else next(ki) for d in range(len(self.full)))


def _domain(group: FusionGroup) -> _ReduceDomain:
    dom: _ReduceDomain | None = None
    for node in group.nodes:
        if op_lowering_kind(node.op) != "reduce":
            continue
        combine = REGISTRY[node.op].lowering["reduce"]
        if combine not in _REDUCE_OPS and combine not in _ARG_OPS:
            raise CompileError(f"op '{node.op}' has no kernel for the LLVM back end: reduction "
                               f"{combine!r} is not supported")
        full = tuple(group.type_of(node.inputs[0]).shape)
        dims = node.attrs.get("dim")
        dims = (dims,) if isinstance(dims, int) else dims
        dims = tuple(range(len(full))) if dims is None else tuple(sorted(d % max(len(full), 1) for d in dims))
        if dom is None:
            dom = _ReduceDomain(full, dims)
        elif (dom.full, dom.dims) != (full, dims):
            raise CompileError(
                f"fusion group {group.name!r}: reductions over different domains ({list(dom.full)} dims "
                f"{list(dom.dims)} and {list(full)} dims {list(dims)}) cannot share one kernel"
            )
    assert dom is not None
    return dom


def _index_in(shape: tuple[int, ...], like: tuple[int, ...], idx: Index) -> Index:
    """An index for a value of ``shape`` at the position ``idx`` of ``like`` (same element count)."""
    if shape == like:
        return idx
    if [n for n in shape if n != 1] == [n for n in like if n != 1]:
        it = iter(i for n, i in zip(like, idx) if n != 1)
        return tuple(ZERO if n == 1 else next(it) for n in shape)
    return unflatten(flat_index(idx, like), shape)


class _ReduceBody:
    """The statements inside the outer (kept-dim) loops of a reduction group, at position ``kept``."""

    def __init__(self, group: FusionGroup, ev: _Evaluator, names: _Names, dom: _ReduceDomain,
                 kept: Index) -> None:
        self.group, self.ev, self.names, self.dom, self.kept = group, ev, names, dom, kept
        self.red_shape = tuple(dom.full[d] for d in dom.dims)
        self.stmts: list[Stmt] = []

    def build(self) -> list[Stmt]:
        for node in self.group.nodes:
            self.ev.node(node, self.on_reduce)
        self.stores()
        return self.stmts

    def on_reduce(self, node: GroupNode) -> Value:
        combine = REGISTRY[node.op].lowering["reduce"]
        if combine in _ARG_OPS:
            return self.arg_reduce(node, combine)
        op = _REDUCE_OPS.get(combine)
        if op is None:
            raise CompileError(f"cannot lower op '{node.op}': unknown reduction {combine!r}")
        t = self.group.type_of(node.output)
        acc = sanitize(node.output) + "_acc"
        src = self.ev.values[node.inputs[0]]
        self.stmts.append(Declare(acc, t.dtype, reduce_identity(op, t.dtype)))

        def red_body(red_idx: Index) -> list[Stmt]:
            v = src.at(self.dom.merge(self.kept, red_idx))
            if op in ("and", "or"):  # truth values, not bits: any(uint8 [1, 2]) is 1, not 1 | 2
                v = cast(v, bool_)
            return [Reduce(acc, op, cast(v, t.dtype))]

        innermost = bool(self.dom.dims) and self.dom.dims[-1] == len(self.dom.full) - 1
        self.stmts.extend(schedule(_nest(self.red_shape, self.names, red_body, "r"), 0,
                                   vectorize_reductions=innermost))
        return Acc(tuple(t.shape), t.dtype, acc)

    def arg_reduce(self, node: GroupNode, kind: str) -> Value:
        """argmax/argmin: a value and an index local; strict comparison keeps the first extreme,
        NaN counts as the largest and smallest (as PyTorch's)."""
        t = self.group.type_of(node.output)
        src = self.ev.values[node.inputs[0]]
        val, idx = sanitize(node.output) + "_val", sanitize(node.output) + "_idx"
        start = reduce_identity("max" if kind == "argmax" else "min", src.dtype)
        self.stmts += [Declare(val, src.dtype, start), Declare(idx, t.dtype, const(0, t.dtype))]

        def red_body(red_idx: Index) -> list[Stmt]:
            v = src.at(self.dom.merge(self.kept, red_idx))
            cur = Local(val, src.dtype)
            better = Binary("gt" if kind == "argmax" else "lt", v, cur, bool_)
            if src.dtype.category == FLOATING:
                cur_ok = Unary("not", Unary("isnan", cur, bool_), bool_)
                better = Binary("or", better, Binary("and", Unary("isnan", v, bool_), cur_ok, bool_), bool_)
            pos = cast(flat_index(red_idx, self.red_shape), t.dtype)
            return [Assign(idx, Select(better, pos, Local(idx, t.dtype), t.dtype)),
                    Assign(val, Select(better, v, cur, src.dtype))]

        self.stmts.extend(schedule(_nest(self.red_shape, self.names, red_body, "r"), 0,
                                   vectorize_reductions=False))
        return Acc(tuple(t.shape), t.dtype, idx)

    def stores(self) -> None:
        """Reduced-shape outputs at the kept position; full-shape outputs in one more inner loop."""
        group, dom, full_numel = self.group, self.dom, _numel(self.dom.full)
        all_reduced = _numel(dom.kept) == full_numel
        reduced = [o for o in group.outputs
                   if all_reduced or _numel(tuple(group.type_of(o).shape)) != full_numel]
        full = [o for o in group.outputs if o not in reduced]
        flat = flat_index(self.kept, dom.kept)
        for o in reduced:
            value = self.ev.values[o].at(_index_in(tuple(group.type_of(o).shape), dom.kept, self.kept))
            self.stmts.append(Store(sanitize(o), flat, cast(value, group.type_of(o).dtype)))
        if not full:
            return

        def full_body(red_idx: Index) -> list[Stmt]:
            idx = dom.merge(self.kept, red_idx)
            return [Store(sanitize(o), flat_index(idx, dom.full),
                          cast(self.ev.values[o].at(_index_in(tuple(group.type_of(o).shape), dom.full, idx)),
                               group.type_of(o).dtype)) for o in full]

        self.stmts.extend(schedule(_nest(self.red_shape, self.names, full_body, "j"), 0))


def _lower_reduce(group: FusionGroup, ev: _Evaluator, names: _Names) -> list[Stmt]:
    dom = _domain(group)
    full_numel = _numel(dom.full)
    outer = _nest(dom.kept, names, lambda kept: _ReduceBody(group, ev, names, dom, kept).build())
    if not dom.kept or all(n == 1 for n in dom.kept):
        return outer
    if dom.dims and dom.dims[-1] != len(dom.full) - 1 and dom.full[-1] >= 8:
        # the innermost dim is kept: run 8 of its positions at once, each lane with its own
        # accumulator, so the reduction loops load contiguous vectors instead of striding
        return _vectorize_innermost(outer, full_numel)
    # the outer loop nest: parallel outermost; the inner loops keep the schedule chosen above
    return [Loop(s.var, s.extent, s.body, LoopKind.PARALLEL)
            if isinstance(s, Loop) and full_numel >= PARALLEL_MIN_ELEMENTS and s.extent >= 2 else s
            for s in outer]


def _vectorize_innermost(stmts: list[Stmt], work: int) -> list[Stmt]:
    """In a perfect outer loop nest, mark the innermost loop vectorized and, when it is a different
    loop, the outermost one parallel (given enough work)."""

    def mark(s: Stmt, depth: int) -> Stmt:
        assert isinstance(s, Loop)
        if len(s.body) == 1 and isinstance(s.body[0], Loop):
            kind = LoopKind.PARALLEL if depth == 0 and work >= PARALLEL_MIN_ELEMENTS else LoopKind.SERIAL
            return Loop(s.var, s.extent, (mark(s.body[0], depth + 1),), kind)
        return Loop(s.var, s.extent, s.body, LoopKind.VECTORIZED)

    return [mark(s, 0) for s in stmts]


# --------------------------------------------------------------------------------------------------
# template groups: one table from the ops' ``lowering["template"]`` names to their lowerings

TEMPLATE_LOWERINGS: dict[str, str] = {
    "gemm": "lower_gemm:lower_matmul_group",
    "conv": "lower_conv:lower_conv_group",
    "conv_transpose": "lower_conv_transpose:lower_conv_transpose_group",
    "conv_weight_grad": "lower_conv_grad:lower_conv_weight_grad_group",
    "pool": "lower_pool:lower_pool_group",
    "pool_backward": "lower_pool_backward:lower_pool_backward_group",
    "scan": "lower_scan:lower_scan_group",
    "scatter": "lower_scatter:lower_scatter_group",
    "pool/region_max_pool": "lower_region_pool:lower_region_pool_group",  # "template/op": one op's own
    "scatter/scatter": "lower_scatter_dim:lower_scatter_dim_group",
    "scatter/scatter_add": "lower_scatter_dim:lower_scatter_dim_group",
    "scatter/index_put": "lower_scatter_dim:lower_index_put_group",
    "scatter_add": "lower_scatter_dim:lower_take_backward_group",
    "scatter_add_rows": "lower_scatter_dim:lower_embedding_backward_group",
    "sort": "lower_sort:lower_sort_group",
    "select_k": "lower_sort:lower_select_k_group",
    "mode": "lower_sort:lower_mode_group",
    "upsample": "lower_upsample:lower_upsample_group",
    "upsample_backward": "lower_upsample:lower_upsample_backward_group",
}


def lower_template_group(group: FusionGroup, ev: _Evaluator,
                         names: _Names) -> tuple[list[Stmt], list[Buffer]]:
    """A group around one template op: its lowering (from ``TEMPLATE_LOWERINGS``) emits the template
    and the elementwise code around it."""
    import importlib

    gis = [i for i, nd in enumerate(group.nodes) if op_lowering_kind(nd.op) == "template"]
    if len(gis) != 1:
        found = ", ".join(group.nodes[i].op for i in gis)
        raise CompileError(f"fusion group {group.name!r} holds several template ops ({found}); a kernel "
                           "takes one template plus elementwise code")
    group, gi = _independent_first(group, gis[0])
    node = group.nodes[gi]
    template = REGISTRY[node.op].lowering["template"]
    target = TEMPLATE_LOWERINGS.get(f"{template}/{node.op}", TEMPLATE_LOWERINGS.get(template))
    if target is None:
        raise CompileError(f"op '{node.op}' has no kernel for the LLVM back end: its template "
                           f"{template!r} is not implemented")
    module, fn = target.split(":")
    lower = getattr(importlib.import_module(f"ember.compiler.kernel.{module}"), fn)
    return lower(group, gi, ev, names)


def _independent_first(group: FusionGroup, gi: int) -> tuple[FusionGroup, int]:
    """The group with every node that does not read the template's result (even indirectly) moved in
    front of the template node, relative order kept; and the template's new index.

    Tracing emits a conv's bias reshape (``reshape(b) -> [C, 1, 1]``) after the conv, so it sat between
    the conv and the ``add`` that uses it, and the epilogue matcher, which walks the template's readers
    in order, stopped there: LeNet-5's convolutions ran plain GEMMs and then a separate bias + ReLU pass.
    """
    template = group.nodes[gi]
    tainted = set(template.outputs)
    before, after = list(group.nodes[:gi]), []
    for node in group.nodes[gi + 1:]:
        if any(isinstance(x, str) and x in tainted for x in node.inputs):
            tainted.update(node.outputs)
            after.append(node)
        else:
            before.append(node)
    if len(before) == gi:
        return group, gi
    return FusionGroup(group.name, [*before, template, *after], group.types, group.inputs, group.outputs), \
        len(before)


# --------------------------------------------------------------------------------------------------
# entry point


def group_kind(group: FusionGroup) -> str:
    """"gemm", "reduce" or "elementwise", from the ops' lowering kinds."""
    kinds = {op_lowering_kind(n.op) for n in group.nodes}
    if "template" in kinds:
        return "gemm"
    return "reduce" if "reduce" in kinds else "elementwise"


def lower_group(group: FusionGroup, name: str | None = None) -> LoweredGroup:
    """Lower ``group`` into one kernel whose parameters are the group's inputs then outputs."""
    group = expand_composites(group)
    kind = group_kind(group)
    names = _Names()
    kname = sanitize(name or group.name)
    seen: set[str] = set()
    params = []
    for v in [*group.inputs, *group.outputs]:
        if v not in seen:
            seen.add(v)
            params.append(buffer_for(v, group.type_of(v)))
    if kind == "gemm":
        body, scratch = lower_template_group(group, _Evaluator(group), names)
        return LoweredGroup(Kernel(kname, tuple(params) + tuple(scratch), tuple(body), {"kind": kind}),
                            scratch)
    if kind == "elementwise":
        group = _flatten(group)
    ev = _Evaluator(group)
    body = _lower_reduce(group, ev, names) if kind == "reduce" else _lower_elementwise(group, ev, names)
    return LoweredGroup(Kernel(kname, tuple(params), tuple(body), {"kind": kind}))
