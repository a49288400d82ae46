"""Kernel lowering of the counter-based generator (``philox_bits``, ``compiler/ops/random_ops.py``).

``philox_bits`` is an index map: the element at a position is a pure function of the seed (one int64
load, loop-invariant) and the element's flat index, so it is a ``Lazy`` value that fuses into its
consumers like a movement op (a dropout mask is computed in registers inside the multiply that uses it,
and the fusion pass inlines it into every kernel that reads it, as it does for movement ops on graph
inputs). Nothing is stored and no state is carried between elements or calls.

Bit-exactness with the numpy reference: the 32-bit words live in int64 expressions. ``M * c`` of two
32-bit values is a full 64-bit product; as a wrapping int64 multiply it has the same bits as the uint64
product, the low word is ``p & 0xFFFFFFFF`` and the high word ``(p >> 32) & 0xFFFFFFFF`` (the arithmetic
shift's sign copies are masked off). Every other step is xor, and, add of values below 2**33.
"""

from __future__ import annotations

from typing import Any

from ember.compiler.dtypes import bool_, int64
from ember.compiler.kernel.builder import iadd
from ember.compiler.kernel.ir import Binary, Const, Expr, Select
from ember.compiler.kernel.values import Index, Lazy, Value, flat_index
from ember.compiler.ops.random_ops import (
    MASK32,
    PHILOX_M0,
    PHILOX_M1,
    PHILOX_ROUNDS,
    PHILOX_W0,
    PHILOX_W1,
)
from ember.runtime.errors import CompileError

__all__ = ["philox4x32_exprs", "philox_bits"]


def _c(v: int) -> Const:
    return Const(v, int64)


def _op(op: str, a: Expr, b: Expr) -> Expr:
    """int64 ``a op b``, folded when both are constants (zero counter words make whole lanes constant)."""
    if isinstance(a, Const) and isinstance(b, Const):
        x, y = a.value, b.value
        folded = {"and": x & y, "xor": x ^ y, "add": x + y, "mul": x * y, "shr": x >> y}[op]
        return _c(_wrap64(folded))
    if op == "xor" and isinstance(a, Const) and a.value == 0:
        return b
    if op == "xor" and isinstance(b, Const) and b.value == 0:
        return a
    return Binary(op, a, b, int64)


def _wrap64(v: int) -> int:
    """A Python int as the int64 with the same low 64 bits."""
    v &= (1 << 64) - 1
    return v - (1 << 64) if v >= 1 << 63 else v


def _mulhilo(m: int, c: Expr) -> tuple[Expr, Expr]:
    """(high word, low word) of the 64-bit product ``m * c`` of two 32-bit values."""
    p = _op("mul", c, _c(m))
    return _op("and", _op("shr", p, _c(32)), _c(MASK32)), _op("and", p, _c(MASK32))


def philox4x32_exprs(counter: tuple[Expr, Expr, Expr, Expr], key: tuple[Expr, Expr],
                     rounds: int = PHILOX_ROUNDS) -> tuple[Expr, Expr, Expr, Expr]:
    """The four output words of Philox4x32-``rounds`` as int64 expressions (values in [0, 2**32))."""
    c0, c1, c2, c3 = counter
    k0, k1 = key
    for r in range(rounds):
        rk0 = _op("and", _op("add", k0, _c(r * PHILOX_W0 & MASK32)), _c(MASK32)) if r else k0
        rk1 = _op("and", _op("add", k1, _c(r * PHILOX_W1 & MASK32)), _c(MASK32)) if r else k1
        hi0, lo0 = _mulhilo(PHILOX_M0, c0)
        hi1, lo1 = _mulhilo(PHILOX_M1, c2)
        c0, c1, c2, c3 = _op("xor", _op("xor", hi1, c1), rk0), lo1, _op("xor", _op("xor", hi0, c3), rk1), lo0
    return c0, c1, c2, c3


def _seed_key(seed: Expr) -> tuple[Expr, Expr]:
    """The key words: low and high 32 bits of the int64 seed."""
    return _op("and", seed, _c(MASK32)), _op("and", _op("shr", seed, _c(32)), _c(MASK32))


def philox_bits(seed: Value, extra: list[Value], attrs: dict[str, Any], out_shape: tuple[int, ...],
                dtype: Any) -> Value:
    """``philox_bits(seed, shape, offset)`` as a lazy value: element at flat index i is word i % 4 of
    Philox4x32-10 at counter offset + i // 4 (the reference's layout)."""
    if extra or tuple(seed.shape) != () or seed.dtype is not int64:
        raise CompileError(f"cannot lower op 'philox_bits': expected one int64 seed of shape [], got "
                           f"{seed.dtype.name}{list(seed.shape)} and {len(extra)} more operands")
    offset = int(attrs.get("offset", 0))
    shape = tuple(out_shape)

    def at(idx: Index) -> Expr:
        flat = flat_index(idx, shape)
        block = iadd(_op("shr", flat, _c(2)), offset)
        lane = _op("and", flat, _c(3))
        zero = _c(0)
        words = philox4x32_exprs((_op("and", block, _c(MASK32)), _op("shr", block, _c(32)), zero, zero),
                                 _seed_key(seed.at(())))
        out = words[3]
        for k in (2, 1, 0):
            out = Select(Binary("eq", lane, _c(k), bool_), words[k], out, int64)
        return out

    return Lazy(shape, int64, at)
