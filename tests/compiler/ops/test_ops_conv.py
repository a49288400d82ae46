"""Convolution, pooling and resampling primitives (compiler/ops/conv.py, pool.py, resample.py) called
through the dispatcher: values against torch 2.13, gradients against float64 finite differences, second
derivatives (the gradient rules are registry ops themselves), typed errors."""

from __future__ import annotations

import ember
import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from ember.compiler.ops import REGISTRY
from ember.dispatch import apply
from ember.runtime.errors import ArgumentError, DTypeError, ShapeError
from ember.testing import gradcheck, gradgradcheck

RNG = np.random.default_rng(7)


def t64(*shape: int, grad: bool = True) -> ember.Tensor:
    return ember.tensor(RNG.standard_normal(shape), requires_grad=grad)


def conv(x, w, stride=(1,), padding=(0,), dilation=(1,), groups=1):
    return apply(
        REGISTRY["conv"],
        (x, w),
        {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups},
    )


def conv_t(x, w, stride=(1,), padding=(0,), output_padding=(0,), dilation=(1,), groups=1):
    return apply(
        REGISTRY["conv_transpose"],
        (x, w),
        {
            "stride": stride,
            "padding": padding,
            "dilation": dilation,
            "groups": groups,
            "output_padding": output_padding,
        },
    )


# ---- conv family: values against torch -------------------------------------------------------------------

CONV_CASES = [  # (x shape, w shape, stride, padding, dilation, groups)
    ((2, 4, 9), (6, 4, 3), 1, 1, 1, 1),
    ((2, 4, 10), (6, 2, 4), 3, 2, 2, 2),
    ((2, 3, 8, 7), (6, 3, 3, 3), 2, 1, 1, 1),
    ((1, 4, 7, 9), (4, 1, 3, 2), (1, 2), (1, 0), (2, 1), 4),
    ((1, 2, 5, 6, 4), (3, 2, 2, 3, 2), (2, 1, 1), (1, 1, 0), 1, 1),
]


@pytest.mark.parametrize("xs, ws, stride, padding, dilation, groups", CONV_CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv_matches_torch(xs, ws, stride, padding, dilation, groups, dtype) -> None:
    x, w = RNG.standard_normal(xs).astype(dtype), RNG.standard_normal(ws).astype(dtype)
    nd = len(ws) - 2
    fn = getattr(TF, f"conv{nd}d")
    want = fn(
        torch.tensor(x), torch.tensor(w), stride=stride, padding=padding, dilation=dilation, groups=groups
    )
    st, pd, dl = (tuple(np.broadcast_to(v, nd)) for v in (stride, padding, dilation))
    got = conv(ember.tensor(x), ember.tensor(w), st, pd, dl, groups)
    assert got.dtype.name == str(want.dtype).replace("torch.", "")
    tol = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=tol, atol=tol)


@pytest.mark.parametrize(
    "xs, ws, stride, padding, output_padding, dilation, groups",
    [
        ((2, 4, 5), (4, 3, 3), 2, 1, 1, 1, 1),
        ((2, 4, 5, 4), (4, 2, 3, 2), (2, 3), (1, 0), (0, 2), (1, 2), 2),
        ((1, 2, 3, 3, 2), (2, 3, 2, 2, 2), 2, 0, 1, 1, 1),
    ],
)
def test_conv_transpose_matches_torch(xs, ws, stride, padding, output_padding, dilation, groups) -> None:
    x, w = RNG.standard_normal(xs), RNG.standard_normal(ws)
    nd = len(ws) - 2
    want = getattr(TF, f"conv_transpose{nd}d")(
        torch.tensor(x),
        torch.tensor(w),
        stride=stride,
        padding=padding,
        output_padding=output_padding,
        groups=groups,
        dilation=dilation,
    )
    st, pd, op, dl = (
        tuple(int(v) for v in np.broadcast_to(a, nd)) for a in (stride, padding, output_padding, dilation)
    )
    got = conv_t(ember.tensor(x), ember.tensor(w), st, pd, op, dl, groups)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-10, atol=1e-10)


def test_asymmetric_padding_is_a_crop_of_symmetric_padding() -> None:
    x, w = t64(1, 2, 7, 6, grad=False), t64(3, 2, 2, 2, grad=False)
    lo_hi = conv(x, w, padding=(0, 1, 1, 0)).numpy()
    sym = conv(x, w, padding=(1, 1)).numpy()
    np.testing.assert_allclose(lo_hi, sym[:, :, 1:, :-1], rtol=1e-12)


# ---- gradients: finite differences and second order ----------------------------------------------------


@pytest.mark.parametrize(
    "stride, padding, dilation, groups",
    [
        ((1,), (1,), (1,), 1),
        ((2,), (0, 1, 1, 0), (1,), 2),
        ((2, 1), (1,), (1, 2), 1),
    ],
)
def test_conv_gradcheck(stride, padding, dilation, groups) -> None:
    x, w = t64(2, 4, 5, 5), t64(4, 4 // groups, 2, 3)
    assert gradcheck(lambda a, b: conv(a, b, stride, padding, dilation, groups), (x, w))


def test_conv_transpose_gradcheck_and_gradgradcheck() -> None:
    x, w = t64(1, 2, 3, 4), t64(2, 3, 2, 2)
    fn = lambda a, b: conv_t(a, b, (2,), (1,), (1,), (1,), 1)  # noqa: E731
    assert gradcheck(fn, (x, w))
    assert gradgradcheck(fn, (x, w))


def test_conv_gradgradcheck_1d_and_3d() -> None:
    assert gradgradcheck(lambda a, b: conv(a, b, (2,), (1,)), (t64(1, 2, 6), t64(2, 2, 3)))
    assert gradgradcheck(lambda a, b: conv(a, b), (t64(1, 1, 3, 3, 3), t64(2, 1, 2, 2, 2)))


def test_conv_weight_grad_gradcheck() -> None:
    op = REGISTRY["conv_weight_grad"]
    fn = lambda a, g: apply(
        op,
        (a, g),
        {
            "kernel_size": (2, 2),
            "stride": (2,),
            "padding": (1,),  # noqa: E731
            "dilation": (1,),
            "groups": 1,
        },
    )
    assert gradcheck(fn, (t64(1, 2, 4, 4), t64(1, 3, 3, 3)))


def test_conv_double_backward_matches_torch() -> None:
    x, w = RNG.standard_normal((2, 2, 5, 5)), RNG.standard_normal((3, 2, 3, 3))
    ex, ew = ember.tensor(x, requires_grad=True), ember.tensor(w, requires_grad=True)
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    (egx,) = ember.autograd.grad((conv(ex, ew, (2,), (1,)) ** 2).sum(), [ex], create_graph=True)
    (tgx,) = torch.autograd.grad((TF.conv2d(tx, tw, stride=2, padding=1) ** 2).sum(), [tx], create_graph=True)
    (egx * egx).sum().backward()
    (tgx * tgx).sum().backward()
    np.testing.assert_allclose(ew.grad.numpy(), tw.grad.numpy(), rtol=1e-9)
    np.testing.assert_allclose(ex.grad.numpy(), tx.grad.numpy(), rtol=1e-9, atol=1e-12)


# ---- conv errors -------------------------------------------------------------------------------------


def test_conv_errors_name_the_shapes() -> None:
    x, w = t64(1, 3, 8, 8, grad=False), t64(4, 2, 3, 3, grad=False)
    with pytest.raises(ShapeError, match=r"expected input\[1, 3, 8, 8\] to have 2 channels, but got 3"):
        conv(x, w)
    with pytest.raises(ShapeError, match="Kernel size can't be greater than actual input size"):
        conv(t64(1, 2, 2, 2, grad=False), w)
    with pytest.raises(ShapeError, match=r"Expected 4D \(batched\) input to conv2d"):
        conv(t64(2, 8, 8, grad=False), w)
    with pytest.raises(ShapeError, match="divisible by 3 at dimension 0"):
        conv(t64(1, 6, 8, 8, grad=False), w, groups=3)
    with pytest.raises(ArgumentError, match="non-positive stride"):
        conv(t64(1, 2, 8, 8, grad=False), w, stride=(0,))
    with pytest.raises(ArgumentError, match="negative padding"):
        conv(t64(1, 2, 8, 8, grad=False), w, padding=(-1,))
    with pytest.raises(DTypeError, match="should be the same"):
        conv(t64(1, 2, 8, 8, grad=False).float(), w)
    with pytest.raises(ArgumentError, match="output padding must be smaller"):
        conv_t(t64(1, 4, 3, 3, grad=False), t64(4, 2, 3, 3, grad=False), output_padding=(1,))


# ---- pooling primitives --------------------------------------------------------------------------------


def max_pool(x, k, s=None, p=(0,), d=(1,), ceil=False):
    return apply(
        REGISTRY["max_pool"],
        (x,),
        {"kernel_size": k, "stride": s, "padding": p, "dilation": d, "ceil_mode": ceil},
    )


def avg_pool(x, k, s=None, p=(0,), ceil=False, cip=True, div=None):
    return apply(
        REGISTRY["avg_pool"],
        (x,),
        {
            "kernel_size": k,
            "stride": s,
            "padding": p,
            "ceil_mode": ceil,
            "count_include_pad": cip,
            "divisor_override": div,
        },
    )


@pytest.mark.parametrize(
    "k, s, p, d, ceil",
    [((3, 3), (2,), (1,), (1,), False), ((2, 3), (2, 1), (1,), (2,), True), ((3, 2), (3,), (0,), (1,), True)],
)
def test_max_pool_values_indices_and_grads(k, s, p, d, ceil) -> None:
    x = RNG.standard_normal((2, 3, 9, 8))
    tv, ti = TF.max_pool2d(torch.tensor(x), k, s, p, d, ceil_mode=ceil, return_indices=True)
    ev, ei = max_pool(ember.tensor(x), k, s, p, d, ceil)
    np.testing.assert_array_equal(ev.numpy(), tv.numpy())
    np.testing.assert_array_equal(ei.numpy(), ti.numpy())
    assert gradcheck(lambda a: max_pool(a, k, s, p, d, ceil)[0], (t64(1, 2, 6, 5),))


def test_max_pool_overlapping_windows_accumulate_and_double_backward() -> None:
    x = ember.tensor(np.array([[[1.0, 5.0, 2.0, 0.0]]]), requires_grad=True)
    v, _ = max_pool(x, (3,), (1,))  # 5.0 wins both windows
    v.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[[0.0, 2.0, 0.0, 0.0]]])
    assert gradgradcheck(lambda a: max_pool(a, (2, 2), (1,))[0], (t64(1, 1, 4, 4),))


@pytest.mark.parametrize(
    "k, s, p, ceil, cip, div",
    [
        ((3, 3), (2,), (1,), False, True, None),
        ((3, 2), (2,), (1,), True, False, None),
        ((2, 2), (1,), (0,), False, True, 3),
    ],
)
def test_avg_pool_values_and_grads(k, s, p, ceil, cip, div) -> None:
    x = RNG.standard_normal((2, 3, 7, 8))
    want = TF.avg_pool2d(torch.tensor(x), k, s, p, ceil, cip, div)
    np.testing.assert_allclose(
        avg_pool(ember.tensor(x), k, s, p, ceil, cip, div).numpy(), want.numpy(), rtol=1e-12
    )
    assert gradcheck(lambda a: avg_pool(a, k, s, p, ceil, cip, div), (t64(1, 1, 5, 6),))
    assert gradgradcheck(lambda a: avg_pool(a, k, s, p, ceil, cip, div), (t64(1, 1, 4, 5),))


def test_region_max_pool_and_unpool_gradients() -> None:
    regions = (((0, 2), (1, 4), (3, 5)), ((0, 3), (2, 4)))
    fn = lambda a: apply(REGISTRY["region_max_pool"], (a,), {"regions": regions})[0]  # noqa: E731
    assert gradcheck(fn, (t64(2, 5, 4),))
    x = t64(1, 2, 6, 6, grad=False)
    v, i = max_pool(x, (2, 2))
    unpool = lambda a: apply(REGISTRY["max_unpool"], (a, i), {"output_size": (6, 6)})  # noqa: E731
    assert gradcheck(unpool, (t64(1, 2, 3, 3),))
    assert gradgradcheck(unpool, (t64(1, 2, 3, 3),))


def test_pool_errors() -> None:
    x = t64(1, 2, 4, 4, grad=False)
    with pytest.raises(ArgumentError, match="pad should be at most half of effective kernel size"):
        max_pool(x, (2, 2), p=(2,))
    with pytest.raises(ShapeError, match="Output size is too small"):
        max_pool(t64(1, 1, 2, 2, grad=False), (3, 3), d=(2,), p=(1,))
    with pytest.raises(ArgumentError, match="stride must be greater than zero"):
        avg_pool(x, (2, 2), s=(0,))
    with pytest.raises(ArgumentError, match="divisor must be not zero"):
        avg_pool(x, (2, 2), div=0)
    v, i = max_pool(x, (2, 2))
    with pytest.raises(ShapeError, match="Found an invalid max index"):
        apply(REGISTRY["max_unpool"], (v, i), {"output_size": (1, 2)})
    with pytest.raises(DTypeError, match="int64"):
        apply(REGISTRY["max_unpool"], (v, i.int()), {"output_size": (4, 4)})


# ---- resampling primitives -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "mode, align",
    [
        ("nearest", False),
        ("nearest-exact", False),
        ("linear", False),
        ("linear", True),
        ("cubic", False),
        ("cubic", True),
    ],
)
def test_upsample_gradcheck_and_gradgradcheck(mode, align) -> None:
    fn = lambda a: apply(
        REGISTRY["upsample"],
        (a,),
        {
            "size": (5, 3),
            "mode": mode,  # noqa: E731
            "align_corners": align,
        },
    )
    assert gradcheck(fn, (t64(1, 2, 3, 4),))
    assert gradgradcheck(fn, (t64(1, 1, 3, 2),))


def test_upsample_errors() -> None:
    with pytest.raises(ShapeError, match="should be greater than 0"):
        apply(REGISTRY["upsample"], (t64(1, 1, 3, 3, grad=False),), {"size": (0, 3), "mode": "nearest"})
    with pytest.raises(ArgumentError, match="mode"):
        apply(REGISTRY["upsample"], (t64(1, 1, 3, 3, grad=False),), {"size": (2, 3), "mode": "area"})


def test_pixel_shuffle_round_trip_and_errors() -> None:
    x = t64(2, 8, 3, 5, grad=False)
    y = ember.pixel_shuffle(x, 2)
    np.testing.assert_array_equal(y.numpy(), TF.pixel_shuffle(torch.tensor(x.numpy()), 2).numpy())
    np.testing.assert_array_equal(ember.pixel_unshuffle(y, 2).numpy(), x.numpy())
    with pytest.raises(ShapeError, match="divisible by 4"):
        ember.pixel_shuffle(t64(1, 6, 2, 2, grad=False), 2)


@pytest.mark.parametrize("mode, torch_mode", [("nearest", "nearest"), ("linear", "linear")])
def test_upsample_backward_large_sizes_use_segment_sums(mode, torch_mode) -> None:
    """Beyond the dense-matrix limit (n_in * n_out > 2**18) the adjoint sums segments instead."""
    x = RNG.standard_normal((1, 2, 600))
    ex, tx = ember.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    ey = apply(REGISTRY["upsample"], (ex,), {"size": (1300,), "mode": mode})
    ty = TF.interpolate(tx, size=1300, mode=torch_mode)
    g = RNG.standard_normal(tuple(ty.shape))
    ey.backward(ember.tensor(g))
    ty.backward(torch.tensor(g))
    np.testing.assert_allclose(ex.grad.numpy(), tx.grad.numpy(), rtol=1e-10, atol=1e-12)
