"""Linear algebra against torch 2.13: mm, mv, bmm, dot, matmul, outer, cross, inverse, det, eig; gradients
against torch and float64 finite differences; typed errors."""

from __future__ import annotations

import warnings

import ember
import numpy as np
import pytest
import torch
from ember.runtime.errors import DTypeError, ShapeError

RNG = np.random.default_rng(1)


def rand(*shape: int, dtype: str = "float64") -> np.ndarray:
    if dtype.startswith("int"):
        return RNG.integers(-4, 4, shape).astype(dtype)
    return RNG.standard_normal(shape).astype(dtype)


def well_conditioned(*shape: int) -> np.ndarray:
    a = rand(*shape)
    return a + 3 * np.eye(shape[-1])


def _grads(lib, fn, arrays, up):
    ts = [lib.tensor(a, requires_grad=a.dtype.kind == "f") for a in arrays]
    out = fn(lib, *ts)
    (out * lib.tensor(up, dtype=out.dtype)).sum().backward()
    return out, [t.grad for t in ts]


def check(fn, *arrays: np.ndarray, rtol: float = 1e-6) -> None:
    e_out = fn(ember, *[ember.tensor(a) for a in arrays])
    t_out = fn(torch, *[torch.tensor(a) for a in arrays])
    assert tuple(e_out.shape) == tuple(t_out.shape)
    assert e_out.dtype.name == str(t_out.dtype).replace("torch.", "")
    np.testing.assert_allclose(e_out.numpy(), t_out.numpy(), rtol=rtol, atol=1e-5)
    if not all(a.dtype.kind == "f" for a in arrays):
        return
    up = RNG.standard_normal(tuple(t_out.shape))
    _, eg = _grads(ember, fn, arrays, up)
    _, tg = _grads(torch, fn, arrays, up)
    for a, b in zip(eg, tg):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-5)
    if all(a.dtype == np.float64 for a in arrays):
        _finite_differences(fn, arrays, up, eg)


def _finite_differences(fn, arrays, up, grads, eps: float = 1e-6) -> None:
    def loss(vals):
        return float((fn(ember, *[ember.tensor(v) for v in vals]).numpy() * up).sum())

    for k, a in enumerate(arrays):
        num = np.zeros(a.size)
        for i in range(a.size):
            for sign in (1, -1):
                vals = [x.copy() for x in arrays]
                vals[k].reshape(-1)[i] += sign * eps
                num[i] += sign * loss(vals) / (2 * eps)
        np.testing.assert_allclose(grads[k].numpy().reshape(-1), num, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("sa,sb", [((2, 3), (3, 4)), ((1, 1), (1, 5)), ((0, 3), (3, 2)), ((3, 0), (0, 2))])
def test_mm(sa, sb) -> None:
    check(lambda T, a, b: T.mm(a, b), rand(*sa), rand(*sb))


@pytest.mark.parametrize("dtype", ["float32", "int64", "int32"])
def test_mm_dtypes(dtype) -> None:
    check(lambda T, a, b: a.mm(b), rand(3, 2, dtype=dtype), rand(2, 3, dtype=dtype), rtol=1e-5)


def test_mv_bmm_dot_outer() -> None:
    check(lambda T, a, v: T.mv(a, v), rand(3, 4), rand(4))
    check(lambda T, a, b: T.bmm(a, b), rand(2, 3, 4), rand(2, 4, 5))
    check(lambda T, a, b: T.dot(a, b), rand(5), rand(5))
    check(lambda T, a, b: a.dot(b), rand(3, dtype="int64"), rand(3, dtype="int64"))
    check(lambda T, a, b: T.outer(a, b), rand(3), rand(4))
    check(lambda T, a, b: T.outer(a, b), rand(3, dtype="int32"), rand(2, dtype="float32"))


def test_addmm_addmv_baddbmm() -> None:
    check(lambda T, c, a, b: T.addmm(c, a, b), rand(3), rand(2, 4), rand(4, 3))
    check(lambda T, c, a, b: c.addmm(a, b, beta=0.5, alpha=-2), rand(2, 3), rand(2, 4), rand(4, 3))
    check(lambda T, c, a, v: T.addmv(c, a, v, alpha=3), rand(2), rand(2, 4), rand(4))
    check(lambda T, c, a, b: T.baddbmm(c, a, b, beta=2), rand(2, 1, 3), rand(2, 2, 4), rand(2, 4, 3))
    nan_input, a, b = np.full((2, 3), np.nan), rand(2, 4), rand(4, 3)  # beta=0 ignores even nan
    got = ember.addmm(ember.tensor(nan_input), ember.tensor(a), ember.tensor(b), beta=0)
    want = torch.addmm(torch.tensor(nan_input), torch.tensor(a), torch.tensor(b), beta=0)
    np.testing.assert_allclose(got.numpy(), want.numpy())


def test_matrix_power_zero_is_a_fresh_identity() -> None:
    a = well_conditioned(2, 3, 3)
    got, want = ember.matrix_power(ember.tensor(a), 0), torch.matrix_power(torch.tensor(a), 0)
    np.testing.assert_array_equal(got.numpy(), want.numpy())
    got.add_(1)  # writable, not a broadcast view
    assert got.dtype is ember.float64


@pytest.mark.parametrize("n", [1, 2, 3, 5, -1, -2])
def test_matrix_power(n) -> None:
    check(lambda T, a: T.matrix_power(a, n), well_conditioned(3, 3))
    check(lambda T, a: a.matrix_power(n), well_conditioned(2, 2, 2))
    check(lambda T, a, b: T.ger(a, b), rand(2), rand(3))


@pytest.mark.parametrize(
    "sa,sb",
    [
        ((3,), (3,)),
        ((2, 3), (3,)),
        ((3,), (3, 2)),
        ((2, 3), (3, 4)),
        ((5, 2, 3), (3, 4)),
        ((2, 1, 2, 3), (3, 3, 2)),
        ((4, 3), (2, 1, 3, 2)),
    ],
)
def test_matmul_broadcasting(sa, sb) -> None:
    check(lambda T, a, b: T.matmul(a, b), rand(*sa), rand(*sb))
    check(lambda T, a, b: a @ b, rand(*sa), rand(*sb))


@pytest.mark.parametrize(
    "shape,dim", [((3,), None), ((4, 3), -1), ((3, 5), 0), ((2, 3, 3), 1), ((3, 3), None)]
)
def test_cross(shape, dim) -> None:
    if dim is None:  # torch warns (once per process) that this legacy default is deprecated
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            check(lambda T, a, b: T.cross(a, b), rand(*shape), rand(*shape))
    else:
        check(lambda T, a, b: T.cross(a, b, dim=dim), rand(*shape), rand(*shape))
    check(lambda T, a, b: T.cross(a, b, -1), rand(2, 3), rand(1, 3))


@pytest.mark.parametrize("shape", [(1, 1), (3, 3), (2, 4, 4)])
def test_inverse_and_det(shape) -> None:
    check(lambda T, a: T.inverse(a), well_conditioned(*shape))
    check(lambda T, a: a.inverse(), well_conditioned(*shape).astype(np.float32), rtol=1e-5)
    check(lambda T, a: T.det(a), well_conditioned(*shape))


def test_inverse_det_second_order() -> None:
    a = well_conditioned(3, 3)
    results = []
    for lib in (ember, torch):
        x = lib.tensor(a, requires_grad=True)
        (g,) = lib.autograd.grad(lib.det(x), x, create_graph=True)
        (gg,) = lib.autograd.grad((g * lib.inverse(x)).sum(), x)
        results.append(gg.numpy())
    np.testing.assert_allclose(results[0], results[1], rtol=1e-6)


@pytest.mark.parametrize(
    "mat",
    [
        np.array([[2.0, 0.0], [0.0, 3.0]]),
        np.array([[0.0, -1.0], [1.0, 0.0]]),
        np.array([[4.0, 1.0, 0.0], [1.0, 3.0, 1.0], [0.0, 1.0, 2.0]]),
        np.array([[1.0, 2.0, 0.0], [-2.0, 1.0, 0.0], [0.0, 0.0, 5.0]]),
    ],
)
def test_eig_matches_linalg_eig(mat) -> None:
    vals, vecs = ember.eig(ember.tensor(mat), eigenvectors=True)
    want = torch.linalg.eigvals(torch.tensor(mat)).numpy()
    got = vals.numpy()[:, 0] + 1j * vals.numpy()[:, 1]
    np.testing.assert_allclose(np.sort_complex(got), np.sort_complex(want), atol=1e-10)
    # rebuild complex eigenvectors from the legacy layout and check A v = lambda v
    v = vecs.numpy().astype(complex)
    j = 0
    while j < len(got):
        if got[j].imag != 0:
            v[:, j], v[:, j + 1] = (
                v[:, j] + 1j * vecs.numpy()[:, j + 1],
                v[:, j] - 1j * vecs.numpy()[:, j + 1],
            )
            j += 2
        else:
            j += 1
    np.testing.assert_allclose(mat @ v, v * got, atol=1e-10)
    e_only, empty = ember.eig(ember.tensor(mat))
    assert tuple(empty.shape) == (0,) and tuple(e_only.shape) == (len(mat), 2)


def test_eig_and_inverse_are_eager_only() -> None:
    from ember.compiler.ops import REGISTRY

    for name in ("eig", "inverse", "det"):
        assert REGISTRY[name].lowering["template"] == "eager_only"
        assert REGISTRY[name].lowering["reason"]
    assert not REGISTRY["eig"].differentiable


@pytest.mark.parametrize(
    "fn,err,text",
    [
        (lambda T, a: T.mm(a, a), ShapeError, "cannot be multiplied"),
        (lambda T, a: T.mm(a[0], a), ShapeError, "matrix"),
        (lambda T, a: T.mv(a, a), ShapeError, "vector"),
        (lambda T, a: T.bmm(a, a), ShapeError, "3D"),
        (lambda T, a: T.dot(a[0], a[1, :2]), ShapeError, "inconsistent tensor size"),
        (lambda T, a: T.dot(a[0], a[0].double()), DTypeError, "same dtype"),
        (lambda T, a: T.mm(a, a.t().double()), DTypeError, "dtype"),
        (lambda T, a: T.inverse(a), ShapeError, "square"),
        (lambda T, a: T.inverse(a[:, :2].long()), DTypeError, "floating point"),
        (lambda T, a: T.inverse(T.zeros(2, 2)), ShapeError, "singular"),
        (lambda T, a: T.det(a), ShapeError, "square"),
        (lambda T, a: T.cross(a, a, dim=0), ShapeError, "length 3"),
    ],
)
def test_errors(fn, err, text) -> None:
    data = np.arange(6.0, dtype=np.float32).reshape(2, 3)
    e = ember.tensor(data, requires_grad=True)
    with pytest.raises(err) as info:
        fn(ember, e)
    assert text in str(info.value)
    with pytest.raises(RuntimeError):
        fn(torch, torch.tensor(data))
    np.testing.assert_array_equal(e.detach().numpy(), data)
    assert e.grad is None
