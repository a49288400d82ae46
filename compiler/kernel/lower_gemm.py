"""Lowering of GEMM groups: matmul (batched, 1-D operands lifted) plus an elementwise epilogue.

The epilogue nodes after the matmul are matched, in order, onto the GEMM template's fused epilogue
(``codegen.llvm.gemm.Epilogue``): multiplications by a per-column or per-row vector (scales), then
additions of such vectors (biases), then of a full [M, N] tensor (residual), then one activation
(relu, sigmoid, tanh). The first node that does not fit ends the fused part; it and everything after
run as an elementwise loop nest over the GEMM's result in the same kernel. Operands that are not
row-major views (a computed value, a transposed A) are first copied into contiguous scratch buffers;
a B that is a transposed view becomes the template's ``trans_b`` (a Linear weight costs no copy).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ember.compiler.kernel.builder import iadd, imul
from ember.compiler.kernel.group import FusionGroup, GroupNode
from ember.compiler.kernel.ir import Buffer, Const, Expr, Gemm, Stmt, Store
from ember.compiler.kernel.values import (
    ZERO,
    Index,
    Value,
    View,
    _reshape_strides,
    contiguous_strides,
    flat_index,
)
from ember.runtime.errors import CompileError

__all__ = ["lower_gemm_group", "lower_matmul_group"]

_ACTIVATIONS = {"relu": "relu", "sigmoid": "sigmoid", "tanh": "tanh"}
_STAGES = {"scale": 0, "bias": 1, "residual": 2, "activation": 3}


@dataclass
class _Epilogue:
    fields: dict[str, Any] = field(default_factory=dict)
    operands: list[tuple[str, str, Expr]] = field(default_factory=list)
    stage: int = -1
    ldr: int = 0
    residual_view: Any = None

    def build(self) -> Any:
        from ember.compiler.codegen.llvm.gemm import Epilogue

        return Epilogue(**self.fields)


def _vector_role(v: Value, m: int, n: int) -> str | None:
    """"col" for a [N] / [1, N] operand, "row" for [M, 1], "full" for [M, N] row-major views."""
    if not isinstance(v, View):
        return None
    shape = tuple(v.shape)
    while len(shape) > 2 and shape[0] == 1:
        shape = shape[1:]
    strides = v.strides[len(v.shape) - len(shape):]
    if shape in ((n,), (1, n)) and (n == 1 or strides[-1] == 1):
        return "col"
    if shape == (m, n) and (n == 1 or strides[-1] == 1):
        return "full"
    if shape == (m, 1) and (m == 1 or strides[0] == 1):
        return "row"
    return None


def _match_step(epi: _Epilogue, node: GroupNode, cur: str, values: dict[str, Value],
                role_of: Callable[[Value], str | None]) -> bool:
    """Fold ``node`` (which reads ``cur``) into ``epi``; False when it does not fit."""
    if node.op in _ACTIVATIONS and node.inputs == (cur,) and epi.stage < _STAGES["activation"]:
        epi.fields["activation"] = _ACTIVATIONS[node.op]
        epi.stage = _STAGES["activation"]
        return True
    if node.op not in ("add", "mul") or len(node.inputs) != 2 or cur not in node.inputs:
        return False
    other = node.inputs[1] if node.inputs[0] == cur else node.inputs[0]
    if not isinstance(other, str) or other == cur:
        return False
    v = values[other]
    role = role_of(v)
    if role is None or v.dtype.name != "float32":
        return False
    if node.op == "mul":
        name, stage = (f"{role}_scale", "scale") if role != "full" else (None, "")
    elif role == "full":
        name, stage = "residual", "residual"
    else:
        name, stage = f"{role}_bias", "bias"
    if name is None or name in epi.fields or _STAGES[stage] < epi.stage:
        return False
    epi.fields[name] = True
    epi.stage = _STAGES[stage]
    assert isinstance(v, View)
    epi.operands.append((name, v.buffer, Const(v.offset, ZERO.dtype)))
    if name == "residual":
        epi.ldr = v.strides[-2] if len(v.shape) >= 2 else 1
        epi.residual_view = v
    return True


def match_epilogue(group: FusionGroup, gi: int, values: dict[str, Value],
                   role_of: Callable[[Value], str | None], batched: bool) -> tuple[_Epilogue, str, int]:
    """Greedy match of the nodes after the matmul; returns (epilogue, last fused value, next node)."""
    epi = _Epilogue()
    cur = group.nodes[gi].output
    j = gi + 1
    while j < len(group.nodes) and not batched:
        node = group.nodes[j]
        users = [u for u in group.nodes if cur in u.inputs]
        if cur in group.outputs or users != [node] or not _match_step(epi, node, cur, values, role_of):
            break
        cur = node.output
        j += 1
    return epi, cur, j


def materialize(value: Value, name: str, names: Any, scratch: list[Buffer]) -> tuple[View, list[Stmt]]:
    """Copy ``value`` into a new contiguous scratch buffer; returns its view and the copy loops."""
    from ember.compiler.kernel.lower import _nest, schedule

    shape = tuple(value.shape)
    buf = Buffer(name, value.dtype, shape, contiguous_strides(shape))
    scratch.append(buf)

    def body(idx: Index) -> list[Stmt]:
        return [Store(name, flat_index(idx, shape), value.at(idx))]

    n = 1
    for s in shape:
        n *= s
    return View(name, shape, value.dtype, contiguous_strides(shape)), schedule(_nest(shape, names, body), n)


def _lift(v: View, first: bool) -> View:
    """A 1-D matmul operand as a matrix: [K] -> [1, K] (first) or [K, 1] (second)."""
    if len(v.shape) != 1:
        return v
    if first:
        return View(v.buffer, (1, v.shape[0]), v.dtype, (0, v.strides[0]), v.offset)
    return View(v.buffer, (v.shape[0], 1), v.dtype, (v.strides[0], 0), v.offset)


def _operand_layout(v: View, is_b: bool) -> tuple[bool, int] | None:
    """(transposed, leading dimension) of a matrix view the template can read, or None."""
    rows, cols = v.shape[-2], v.shape[-1]
    rs, cs = v.strides[-2], v.strides[-1]
    if cs == 1 or cols == 1:
        return False, max(rs if rows > 1 else cols, cols, 1)
    if is_b and (rs == 1 or rows == 1):
        return True, max(cs if cols > 1 else rows, rows, 1)
    return None


def lower_gemm_group(group: FusionGroup, ev: Any, names: Any) -> tuple[list[Stmt], list[Buffer]]:
    """Any template group (kept for callers of the earlier name): see ``lower.lower_template_group``."""
    from ember.compiler.kernel.lower import lower_template_group

    return lower_template_group(group, ev, names)


def lower_matmul_group(group: FusionGroup, gi: int, ev: Any, names: Any) -> tuple[list[Stmt], list[Buffer]]:
    """Statements of a matmul group's kernel (node ``gi`` is the matmul), and its scratch buffers."""
    from ember.compiler.kernel.lower import sanitize

    node = group.nodes[gi]
    for nd in group.nodes[:gi]:
        ev.node(nd)
    scratch: list[Buffer] = []
    stmts: list[Stmt] = []
    a, b = (ev.operand(x) for x in node.inputs)
    if not isinstance(a, Value) or not isinstance(b, Value):
        raise CompileError(f"cannot lower op '{node.op}': an operand is a Python scalar")
    for x in (a, b):
        if x.dtype.name != "float32":
            raise CompileError(f"cannot lower op '{node.op}': the GEMM template supports float32, "
                               f"got {x.dtype.name}")
    views = []
    for i, x in enumerate((a, b)):
        if not isinstance(x, View) or _operand_layout(_lift(x, i == 0), i == 1) is None:
            x, copy = materialize(x, f"{sanitize(node.output)}_op{i}", names, scratch)
            stmts += copy
        views.append(_lift(x, i == 0))
    av, bv = views
    out_t = group.type_of(node.output)
    m, k, n = av.shape[-2], av.shape[-1], bv.shape[-1]
    batch = tuple(out_t.shape[:-2]) if len(av.shape) > 2 or len(bv.shape) > 2 else ()
    if batch and len(bv.shape) == 2 and len(av.shape) > 2:
        # [*batch, M, K] @ [K, N] with A's rows evenly strided is one [batch*M, K] @ [K, N] product,
        # which keeps the fused epilogue (a Linear on a sequence)
        rows = m
        for s_ in batch:
            rows *= s_
        strides = _reshape_strides(av.shape, av.strides, (rows, k))
        if strides is not None:
            av, m, batch = View(av.buffer, (rows, k), av.dtype, strides, av.offset), rows, ()
    epi, cur, j = match_epilogue(group, gi, ev.values, lambda v: _vector_role(v, m, n), bool(batch))
    c_name = result_buffer(group, cur, scratch)
    stmts += _gemm_loops(av, bv, c_name, m, n, k, batch, epi, names)
    stmts += lower_rest(group, ev, names, cur, c_name, j)
    return stmts, scratch


def result_buffer(group: FusionGroup, cur: str, scratch: list[Buffer]) -> str:
    """Where the template writes ``cur``: its output buffer, or a new scratch buffer."""
    from ember.compiler.kernel.lower import sanitize

    if cur in group.outputs:
        return sanitize(cur)
    t = group.type_of(cur)
    shape = tuple(t.shape)
    buf = Buffer(f"{sanitize(cur)}_tmpl", t.dtype, shape, contiguous_strides(shape))
    scratch.append(buf)
    return buf.name


def lower_rest(group: FusionGroup, ev: Any, names: Any, cur: str, c_name: str, j: int,
               done: tuple[str, ...] = ()) -> list[Stmt]:
    """The unfused tail of a template group (nodes ``j:``) as loops over the template's result;
    ``done`` names outputs the template already wrote."""
    from ember.compiler.kernel.lower import _lower_elementwise

    t = group.type_of(cur)
    ev.values[cur] = View(c_name, tuple(t.shape), t.dtype, contiguous_strides(t.shape))
    defined = [*group.inputs, *(o for nd in group.nodes[:j] for o in nd.outputs)]
    rest = FusionGroup(group.name + "_epilogue", group.nodes[j:], group.types, defined,
                       [o for o in group.outputs if o != cur and o not in done])
    return _lower_elementwise(rest, ev, names) if rest.outputs else []


def _gemm_loops(av: View, bv: View, c: str, m: int, n: int, k: int, batch: tuple[int, ...],
                epi: _Epilogue, names: Any) -> list[Stmt]:
    from ember.compiler.kernel.lower import _nest

    ta, lda = _operand_layout(av, False)  # type: ignore[misc]
    tb, ldb = _operand_layout(bv, True)  # type: ignore[misc]
    assert not ta

    def batch_offset(v: View, idx: Index) -> Expr:
        off: Expr = Const(v.offset, ZERO.dtype)
        lead = len(batch) - (len(v.shape) - 2)
        for d, (size, st) in enumerate(zip(v.shape[:-2], v.strides[:-2])):
            if size != 1:
                off = iadd(off, imul(idx[lead + d], st))
        return off

    def body(idx: Index) -> list[Stmt]:
        c_off = flat_index(idx, batch) if batch else Const(0, ZERO.dtype)
        return [Gemm(m, n, k, av.buffer, batch_offset(av, idx), lda, bv.buffer, batch_offset(bv, idx), ldb,
                     c, imul(c_off, m * n), n, tb, epi.build(), tuple(epi.operands), epi.ldr)]

    if not batch:
        return body(())
    return _nest(batch, names, body, "b")

