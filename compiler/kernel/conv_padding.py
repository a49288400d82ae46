"""The border of a zero-padded image copy, as loops that write zeros there and nowhere else.

The convolution schedules copy images into a scratch buffer with a zero border so that the GEMM reads
the im2col matrix without bounds tests. The interior is overwritten by every call's copy; zeroing the
whole buffer first wrote it twice. ``zero_border`` covers the border exactly once with one box per
(spatial dim, side): for dim ``d``, the dims before ``d`` range over their interior, dim ``d`` over its
low or high padding band, the dims after ``d`` over their full padded extent.
"""

from __future__ import annotations

from typing import Any

from ember.compiler.kernel.builder import iadd
from ember.compiler.kernel.ir import Buffer, Const, Stmt, Store
from ember.compiler.kernel.values import Index, flat_index

__all__ = ["zero_border"]


def zero_border(buf: Buffer, pad: tuple[int, ...], names: Any) -> list[Stmt]:
    """Loops storing 0 into the padding of ``buf`` ([lead..., C, *padded spatial] with two leading dims,
    ``pad`` the (lo, hi) pairs of the spatial dims)."""
    from ember.compiler.kernel.lower import _nest, schedule

    shape = tuple(buf.shape)
    nd = len(pad) // 2
    lead = len(shape) - nd
    stmts: list[Stmt] = []
    for d in range(nd):
        for lo_side in (True, False):
            band = pad[2 * d] if lo_side else pad[2 * d + 1]
            if band == 0:
                continue
            starts, extents = [0] * lead, list(shape[:lead])
            for e in range(nd):
                full, lo, hi = shape[lead + e], pad[2 * e], pad[2 * e + 1]
                if e < d:
                    starts.append(lo)
                    extents.append(full - lo - hi)
                elif e == d:
                    starts.append(0 if lo_side else full - hi)
                    extents.append(band)
                else:
                    starts.append(0)
                    extents.append(full)
            if 0 in extents:
                continue

            def body(idx: Index, starts: list[int] = starts) -> list[Stmt]:
                at = tuple(iadd(i, s) if s else i for i, s in zip(idx, starts))
                return [Store(buf.name, flat_index(at, shape), Const(0.0, buf.dtype))]

            work = 1
            for n in extents:
                work *= n
            stmts += schedule(_nest(tuple(extents), names, body, "z"), work)
    return stmts
