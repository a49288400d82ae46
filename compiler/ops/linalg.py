"""Linear algebra: matmul (out-fusable: takes bias/activation epilogues) and its relatives."""

from __future__ import annotations

from typing import Any

from ember.compiler.dtypes import result_type
from ember.compiler.ops.registry import BOOL, INT, Pattern, TensorType, define_composite, define_op, optional
from ember.compiler.ops.rules import broadcast_shapes, norm_dim, shape_of
from ember.runtime.errors import DTypeError, ShapeError


def _matmul_infer(a: Any, b: Any) -> TensorType:
    sa, sb = shape_of(a), shape_of(b)
    if a.dtype is not b.dtype:
        raise DTypeError(
            f"matmul: expected both operands to have the same dtype, but got {a.dtype} and {b.dtype}"
        )
    if not sa or not sb:
        raise ShapeError(
            f"matmul: both arguments need at least 1 dimension, got shapes {list(sa)} and {list(sb)}"
        )
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
    "matmul",
    pattern=Pattern.OUT_FUSABLE,
    inputs=("input", "other"),
    infer=_matmul_infer,
    reference=lambda xp, a, b: xp.matmul(a, b),
    vjp=_matmul_vjp,
    saves=(0, 1),
    lowering={"template": "gemm"},
)

# ---- matrix products with PyTorch's stricter shape contracts: composites of matmul ---------------------


def _same_dtype(op: str, a: Any, b: Any) -> None:
    if a.dtype is not b.dtype:
        raise DTypeError(
            f"{op}: expected both operands to have the same dtype, but got {a.dtype} and {b.dtype}"
        )


def _mm(b: Any, x: Any, y: Any) -> Any:
    if len(x.shape) != 2:
        raise ShapeError(f"mm: self must be a matrix, got a tensor of shape {list(x.shape)}")
    if len(y.shape) != 2:
        raise ShapeError(f"mm: mat2 must be a matrix, got a tensor of shape {list(y.shape)}")
    _same_dtype("mm", x, y)
    return b.matmul(x, y)


mm = define_composite("mm", decompose=_mm, inputs=("input", "mat2"))


def _mv(b: Any, x: Any, v: Any) -> Any:
    if len(x.shape) != 2 or len(v.shape) != 1:
        raise ShapeError(f"vector + matrix @ vector expected, got {len(x.shape)}, {len(v.shape)}")
    if x.shape[1] != v.shape[0]:
        raise ShapeError(
            f"size mismatch, got input ({x.shape[0]}), mat ({x.shape[0]}x{x.shape[1]}), vec ({v.shape[0]})"
        )
    _same_dtype("mv", x, v)
    return b.matmul(x, v)


mv = define_composite("mv", decompose=_mv, inputs=("input", "vec"))


def _bmm(b: Any, x: Any, y: Any) -> Any:
    if len(x.shape) != 3:
        raise ShapeError(f"batch1 must be a 3D tensor, got shape {list(x.shape)}")
    if len(y.shape) != 3:
        raise ShapeError(f"batch2 must be a 3D tensor, got shape {list(y.shape)}")
    want = [x.shape[0], x.shape[2]]
    if list(y.shape[:2]) != want:
        raise ShapeError(
            f"Expected size for first two dimensions of batch2 tensor to be: {want} but got:"
            f" {list(y.shape[:2])}."
        )
    _same_dtype("bmm", x, y)
    return b.matmul(x, y)


bmm = define_composite("bmm", decompose=_bmm, inputs=("input", "mat2"))


def _dot(b: Any, x: Any, y: Any) -> Any:
    if len(x.shape) != 1 or len(y.shape) != 1:
        raise ShapeError(f"1D tensors expected, but got {len(x.shape)}D and {len(y.shape)}D tensors")
    if x.shape[0] != y.shape[0]:
        raise ShapeError(
            f"inconsistent tensor size, expected tensor [{x.shape[0]}] and src [{y.shape[0]}] to"
            f" have the same number of elements, but got {x.shape[0]} and {y.shape[0]} elements"
            " respectively"
        )
    if x.dtype is not y.dtype:
        raise DTypeError(f"dot : expected both vectors to have same dtype, but found {x.dtype} and {y.dtype}")
    return b.matmul(x, y)


dot = define_composite("dot", decompose=_dot, inputs=("input", "other"))


def _outer(b: Any, x: Any, y: Any) -> Any:
    if len(x.shape) != 1 or len(y.shape) != 1:
        raise ShapeError(f"outer: expected 1-D vectors, got shapes {list(x.shape)} and {list(y.shape)}")
    return b.mul(b.reshape(x, shape=(x.shape[0], 1)), y)


outer = define_composite("outer", decompose=_outer, inputs=("input", "vec2"))


def _cross(b: Any, x: Any, y: Any, dim: int | None) -> Any:
    shape = broadcast_shapes("cross", tuple(x.shape), tuple(y.shape))
    if dim is None:  # PyTorch's legacy default: the first dimension of size 3
        dim = next((i for i, s in enumerate(shape) if s == 3), None)
        if dim is None:
            raise ShapeError(f"no dimension of size 3 in input (shape {list(shape)})")
    d = norm_dim("cross", dim, len(shape))
    if tuple(x.shape) != shape:
        x = b.expand(x, shape=shape)
    if tuple(y.shape) != shape:
        y = b.expand(y, shape=shape)
    if shape[d] != 3:
        raise ShapeError(
            f"linalg.cross: inputs dimension {dim} must have length 3. Got {x.shape[d]} and {y.shape[d]}"
        )

    def part(t: Any, i: int) -> Any:
        return b.narrow(t, dim=d, start=i, length=1)

    xs, ys = [part(x, i) for i in range(3)], [part(y, i) for i in range(3)]
    comps = [
        b.sub(b.mul(xs[(i + 1) % 3], ys[(i + 2) % 3]), b.mul(xs[(i + 2) % 3], ys[(i + 1) % 3]))
        for i in range(3)
    ]
    return b.cat(*comps, dim=d)


cross = define_composite(
    "cross", decompose=_cross, inputs=("input", "other"), attrs={"dim": (optional(INT), None)}
)

# ---- factorizations: eager-only (LAPACK through the array module; no kernel template yet) ---------------

_EAGER_ONLY = {
    "template": "eager_only",
    "reason": "LAPACK-backed (pivoting, iteration): runs eagerly through the array module's linalg",
}


def _square_float(op: str, x: Any) -> None:
    s = shape_of(x)
    if len(s) < 2 or s[-1] != s[-2]:
        dims = f"{s[-2]} by {s[-1]}" if len(s) >= 2 else f"{len(s)}-D"
        raise ShapeError(f"{op}: A must be batches of square matrices, but they are {dims} matrices")
    if not x.dtype.is_floating_point:
        raise DTypeError(f"{op}: Expected a floating point or complex tensor as input. Got {x.dtype}")


def _inverse_infer(x: Any) -> TensorType:
    _square_float("linalg.inv", x)
    return TensorType(shape_of(x), x.dtype)


def _inverse_ref(xp: Any, x: Any) -> Any:
    try:
        return xp.linalg.inv(x)
    except xp.linalg.LinAlgError:
        raise ShapeError(
            "linalg.inv: The inversion could not be completed because the input matrix is"
            f" singular (shape {list(x.shape)})."
        ) from None


def _inverse_vjp(b: Any, g: Any, out: Any, x: Any) -> list[Any]:
    # d(A^-1) = -A^-1 dA A^-1, so dL/dA = -A^-T g A^-T
    inv_t = _mT(b, out)
    return [b.neg(b.matmul(b.matmul(inv_t, g), inv_t))]


inverse = define_op(
    "inverse",
    pattern=Pattern.OPAQUE,
    infer=_inverse_infer,
    reference=_inverse_ref,
    vjp=_inverse_vjp,
    saves=("out",),
    lowering=_EAGER_ONLY,
)


def _det_infer(x: Any) -> TensorType:
    _square_float("linalg.det", x)
    return TensorType(shape_of(x)[:-2], x.dtype)


def _det_vjp(b: Any, g: Any, out: Any, x: Any) -> list[Any]:
    # d det(A) = det(A) tr(A^-1 dA), so dL/dA = g det(A) A^-T (A must be invertible)
    scale = b.reshape(b.mul(g, out), shape=tuple(out.shape) + (1, 1))
    return [b.mul(scale, _mT(b, b.inverse(x)))]


det = define_op(
    "det",
    pattern=Pattern.OPAQUE,
    infer=_det_infer,
    reference=lambda xp, x: xp.asarray(xp.linalg.det(x)),
    vjp=_det_vjp,
    saves=(0, "out"),
    lowering=_EAGER_ONLY,
)


def _eig_infer(x: Any, eigenvectors: bool) -> tuple[TensorType, TensorType]:
    _square_float("eig", x)
    s = shape_of(x)
    if len(s) != 2:
        raise ShapeError(f"eig: expected a single square matrix, got shape {list(s)}")
    return TensorType((s[0], 2), x.dtype), TensorType(s if eigenvectors else (0,), x.dtype)


def _eig_ref(xp: Any, x: Any, eigenvectors: bool) -> tuple[Any, Any]:
    """Legacy ``torch.eig`` layout: eigenvalues as (n, 2) [real, imag] rows; for a complex pair the
    eigenvectors hold the real part in column j and the imaginary part in column j + 1."""
    w, v = xp.linalg.eig(x)
    vals = xp.stack([w.real, w.imag], axis=1).astype(x.dtype)
    if not eigenvectors:
        return vals, xp.zeros((0,), dtype=x.dtype)
    vecs = v.real.astype(x.dtype).copy()
    j = 0
    while j < len(w):
        if w[j].imag != 0 and j + 1 < len(w):
            vecs[:, j + 1] = v[:, j].imag
            j += 2
        else:
            j += 1
    return vals, vecs


eig = define_op(
    "eig",
    pattern=Pattern.OPAQUE,
    attrs={"eigenvectors": (BOOL, False)},
    infer=_eig_infer,
    reference=_eig_ref,
    vjp=None,
    differentiable=False,
    num_outputs=2,
    lowering=_EAGER_ONLY,
)
