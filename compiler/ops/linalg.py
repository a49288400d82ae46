"""Linear algebra: matmul (out-fusable: takes bias/activation epilogues) and its relatives."""

from __future__ import annotations

from typing import Any

from ember.compiler.ops.registry import Pattern, TensorType, define_op
from ember.compiler.ops.rules import broadcast_shapes, shape_of
from ember.compiler.dtypes import result_type
from ember.runtime.errors import DTypeError, ShapeError


def _matmul_infer(a: Any, b: Any) -> TensorType:
    sa, sb = shape_of(a), shape_of(b)
    if a.dtype is not b.dtype:
        raise DTypeError(f"matmul: expected both operands to have the same dtype, but got {a.dtype} and {b.dtype}")
    if not sa or not sb:
        raise ShapeError(f"matmul: both arguments need at least 1 dimension, got shapes {list(sa)} and {list(sb)}")
    k_a = sa[-1]
    k_b = sb[0] if len(sb) == 1 else sb[-2]
    if k_a != k_b:
        ma = sa[-2] if len(sa) > 1 else 1
        nb = sb[-1] if len(sb) > 1 else 1
        raise ShapeError(f"mat1 and mat2 shapes cannot be multiplied ({ma}x{k_a} and {k_b}x{nb})")
    if len(sa) == 1 and len(sb) == 1:
        shape: tuple[int, ...] = ()
    elif len(sa) == 1:
        shape = sb[:-2] + sb[-1:]
    elif len(sb) == 1:
        shape = sa[:-1]
    else:
        batch = broadcast_shapes("matmul", sa[:-2], sb[:-2])
        shape = batch + (sa[-2], sb[-1])
    return TensorType(shape, result_type(a, b))


def _mT(b: Any, x: Any) -> Any:
    nd = len(x.shape)
    dims = tuple(range(nd - 2)) + (nd - 1, nd - 2)
    return b.permute(x, dims=dims)


def _matmul_vjp(b: Any, g: Any, out: Any, x: Any, y: Any) -> list[Any]:
    sx, sy = tuple(x.shape), tuple(y.shape)
    # lift 1-d operands to matrices, so one rule covers every case
    x2 = b.reshape(x, shape=(1,) + sx) if len(sx) == 1 else x
    y2 = b.reshape(y, shape=sy + (1,)) if len(sy) == 1 else y
    gshape = tuple(g.shape)
    if len(sx) == 1:
        gshape = gshape[:-1] + (1,) + gshape[-1:] if len(sy) > 1 else (1,) + gshape
    if len(sy) == 1:
        gshape = gshape + (1,)
    g2 = b.reshape(g, shape=gshape)
    gx = b.matmul(g2, _mT(b, y2))
    gy = b.matmul(_mT(b, x2), g2)
    gx = b.sum_to(gx, x2)
    gy = b.sum_to(gy, y2)
    return [b.reshape(gx, shape=sx), b.reshape(gy, shape=sy)]


matmul = define_op(
    "matmul", pattern=Pattern.OUT_FUSABLE, inputs=("input", "other"), infer=_matmul_infer,
    reference=lambda xp, a, b: xp.matmul(a, b), vjp=_matmul_vjp,
    lowering={"template": "gemm"},
)
