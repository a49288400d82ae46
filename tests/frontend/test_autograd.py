"""Eager autograd semantics against PyTorch 2.13: backward, grad, higher order, leaves, grad mode, hooks,
version counters and custom Functions."""

from __future__ import annotations

import ember
import numpy as np
import pytest
import torch
from ember.runtime.errors import AutogradError


def pair(values, requires_grad=True, dtype=np.float64):
    """The same leaf in ember and torch."""
    arr = np.asarray(values, dtype=dtype)
    return ember.tensor(arr, requires_grad=requires_grad), torch.tensor(arr, requires_grad=requires_grad)


def close(e, t, tol=1e-10):
    assert e is not None and t is not None
    np.testing.assert_allclose(np.asarray(e.detach().numpy()), t.detach().numpy(), rtol=tol, atol=tol)


# ---- backward -----------------------------------------------------------------------------------------


def test_backward_scalar_matches_torch():
    (xe, xt), (ye, yt) = pair([1.0, -2.0, 3.0]), pair([0.5, 4.0, -1.5])
    ((xe * ye + xe.exp()).sum()).backward()
    ((xt * yt + xt.exp()).sum()).backward()
    close(xe.grad, xt.grad)
    close(ye.grad, yt.grad)


def test_backward_with_grad_tensors():
    xe, xt = pair([[1.0, 2.0], [3.0, 4.0]])
    ge, gt = pair([[0.1, -1.0], [2.0, 0.5]], requires_grad=False)
    (xe * xe).backward(ge)
    (xt * xt).backward(gt)
    close(xe.grad, xt.grad)


def test_backward_of_several_roots_with_grad_tensors():
    xe, xt = pair([1.0, 2.0])
    ember.autograd.backward([xe * 2.0, xe.tanh()], [ember.ones(2, dtype=ember.float64),
                                                    ember.tensor([3.0, -1.0], dtype=ember.float64)])
    torch.autograd.backward([xt * 2.0, xt.tanh()], [torch.ones(2, dtype=torch.float64),
                                                    torch.tensor([3.0, -1.0], dtype=torch.float64)])
    close(xe.grad, xt.grad)


def test_backward_non_scalar_without_gradient_raises():
    x = ember.ones(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="grad can be implicitly created only for scalar outputs"):
        (x * 2).backward()


def test_backward_on_tensor_without_grad_raises():
    x = ember.ones(3)
    with pytest.raises(RuntimeError, match="does not require grad and does not have a grad_fn"):
        x.sum().backward()


def test_grad_tensor_shape_mismatch_raises():
    x = ember.ones(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="Mismatch in shape"):
        (x * 2).backward(ember.ones(2))


def test_second_backward_raises_retain_graph_error():
    x = ember.tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    y.backward()
    with pytest.raises(AutogradError, match="Trying to backward through the graph a second time"):
        y.backward()


def test_retain_graph_allows_second_backward_and_grads_accumulate():
    xe, xt = pair([1.0, -2.0])
    ye, yt = (xe * xe * xe).sum(), (xt * xt * xt).sum()
    ye.backward(retain_graph=True)
    ye.backward()
    yt.backward(retain_graph=True)
    yt.backward()
    close(xe.grad, xt.grad)
    np.testing.assert_allclose(xe.grad.numpy(), 2 * 3 * np.array([1.0, 4.0]))


def test_grad_accumulates_over_two_graphs():
    xe, xt = pair([1.5, 2.0])
    (xe * 3.0).sum().backward()
    (xe * xe).sum().backward()
    (xt * 3.0).sum().backward()
    (xt * xt).sum().backward()
    close(xe.grad, xt.grad)


def test_backward_inputs_restricts_accumulation():
    (xe, xt), (ye, yt) = pair([1.0, 2.0]), pair([3.0, 4.0])
    (xe * ye).sum().backward(inputs=[xe])
    (xt * yt).sum().backward(inputs=[xt])
    close(xe.grad, xt.grad)
    assert ye.grad is None and yt.grad is None


# ---- autograd.grad and higher order ---------------------------------------------------------------------


def test_grad_returns_without_accumulating():
    xe, xt = pair([1.0, 2.0, 3.0])
    (ge,) = ember.autograd.grad((xe * xe).sum(), xe)
    (gt,) = torch.autograd.grad((xt * xt).sum(), xt)
    close(ge, gt)
    assert xe.grad is None
    assert not ge.requires_grad


@pytest.mark.parametrize("order", [1, 2, 3])
def test_higher_order_of_cube_through_mul(order):
    xe, xt = pair([0.5, -1.5, 2.0])
    ye, yt = xe * xe * xe, xt * xt * xt
    for _ in range(order):
        (ye,) = ember.autograd.grad(ye.sum(), xe, create_graph=True)
        (yt,) = torch.autograd.grad(yt.sum(), xt, create_graph=True)
    close(ye, yt)
    expected = {1: 3 * xt.detach() ** 2, 2: 6 * xt.detach(), 3: torch.full((3,), 6.0, dtype=torch.float64)}
    close(ye, expected[order])


def test_second_order_through_ops_that_save_their_output():
    xe, xt = pair([0.3, -0.7, 1.2])
    for fe, ft in ((lambda x: x.exp(), lambda x: x.exp()), (lambda x: x.tanh(), lambda x: x.tanh()),
                   (lambda x: x.sigmoid(), lambda x: x.sigmoid())):
        (g1e,) = ember.autograd.grad(fe(xe).sum(), xe, create_graph=True)
        (g1t,) = torch.autograd.grad(ft(xt).sum(), xt, create_graph=True)
        (g2e,) = ember.autograd.grad(g1e.sum(), xe)
        (g2t,) = torch.autograd.grad(g1t.sum(), xt)
        close(g2e, g2t)


def test_grad_outputs_and_several_inputs():
    (xe, xt), (ye, yt) = pair([1.0, 2.0]), pair([-1.0, 0.5])
    goe, got = pair([2.0, -3.0], requires_grad=False)
    ge = ember.autograd.grad(xe * ye + xe, [xe, ye], grad_outputs=goe)
    gt = torch.autograd.grad(xt * yt + xt, [xt, yt], grad_outputs=got)
    for a, b in zip(ge, gt):
        close(a, b)


def test_grad_allow_unused():
    (xe, _), (ye, _) = pair([1.0]), pair([2.0])
    out = (xe * 2.0).sum()
    with pytest.raises(AutogradError, match="appears to not have been used in the graph"):
        ember.autograd.grad(out, [xe, ye], retain_graph=True)
    gx, gy = ember.autograd.grad(out, [xe, ye], allow_unused=True)
    np.testing.assert_allclose(gx.numpy(), [2.0])
    assert gy is None


def test_grad_of_intermediate_tensor():
    xe, xt = pair([1.0, 3.0])
    he, ht = xe * 2.0, xt * 2.0
    (ge,) = ember.autograd.grad((he * he).sum(), he)
    (gt,) = torch.autograd.grad((ht * ht).sum(), ht)
    close(ge, gt)


def test_mixed_second_derivative():
    (xe, xt), (ye, yt) = pair([1.0, 2.0]), pair([3.0, -1.0])
    (gxe,) = ember.autograd.grad((xe * xe * ye).sum(), xe, create_graph=True)
    (gxt,) = torch.autograd.grad((xt * xt * yt).sum(), xt, create_graph=True)
    (gye,) = ember.autograd.grad(gxe.sum(), ye)
    (gyt,) = torch.autograd.grad(gxt.sum(), yt)
    close(gye, gyt)


# ---- graph shapes ---------------------------------------------------------------------------------------


def test_same_tensor_feeds_one_op_twice():
    xe, xt = pair([1.0, -2.0, 0.5])
    (xe * xe).sum().backward()
    (xt * xt).sum().backward()
    close(xe.grad, xt.grad)


def test_diamond_graph():
    xe, xt = pair([0.2, 1.0, -0.4])

    def f(x):
        a = x.exp()
        b, c = a * 2.0, a.tanh()
        return (b * c + a).sum()

    f(xe).backward()
    f(xt).backward()
    close(xe.grad, xt.grad)


def test_broadcast_gradients_reduce_to_input_shapes():
    (ae, at), (be, bt) = pair(np.arange(6.0).reshape(2, 3)), pair([[1.0, -1.0, 2.0]])
    ((ae * be + be) / 2.0).sum().backward()
    ((at * bt + bt) / 2.0).sum().backward()
    close(ae.grad, at.grad)
    close(be.grad, bt.grad)


def test_matmul_chain_against_finite_differences():
    rng = np.random.default_rng(0)
    a0, b0 = rng.standard_normal((3, 4)), rng.standard_normal((4, 2))

    def f(a, b):
        return float((np.tanh(a @ b) * (a @ b)).sum())

    ae, be = ember.tensor(a0, requires_grad=True), ember.tensor(b0, requires_grad=True)
    ((ae @ be).tanh() * (ae @ be)).sum().backward()
    eps = 1e-6
    num = np.zeros_like(a0)
    for i in np.ndindex(a0.shape):
        d = np.zeros_like(a0)
        d[i] = eps
        num[i] = (f(a0 + d, b0) - f(a0 - d, b0)) / (2 * eps)
    np.testing.assert_allclose(ae.grad.numpy(), num, rtol=1e-6, atol=1e-8)


# ---- leaves, requires_grad propagation, detach ----------------------------------------------------------


def test_leaf_and_non_leaf():
    x = ember.ones(2, requires_grad=True)
    y = x * 2
    assert x.is_leaf and not y.is_leaf and y.grad_fn is not None
    assert ember.ones(2).is_leaf
    y.sum().backward()
    assert y.grad is None
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 2.0])


def test_retain_grad_on_non_leaf():
    xe, xt = pair([1.0, 2.0])
    ye, yt = xe * 3.0, xt * 3.0
    ye.retain_grad()
    yt.retain_grad()
    assert ye.retains_grad
    (ye * ye).sum().backward()
    (yt * yt).sum().backward()
    close(ye.grad, yt.grad)
    close(xe.grad, xt.grad)


def test_requires_grad_propagation():
    x = ember.ones(2, requires_grad=True)
    c = ember.ones(2)
    assert (x + c).requires_grad
    assert not (c + c).requires_grad
    assert not (x > 0).requires_grad  # comparisons are not differentiable
    assert (x > 0).dtype is ember.bool
    assert not (x.detach() * 2).requires_grad
    assert (x.sum() * 1).requires_grad


def test_integer_outputs_never_require_grad():
    x = ember.tensor([1.5, 2.5], requires_grad=True)
    i = x.to(ember.int64)
    assert not i.requires_grad and i.grad_fn is None
    with pytest.raises(RuntimeError, match="only Tensors of floating point dtype can require gradients"):
        ember.tensor([1, 2]).requires_grad_()


def test_requires_grad_on_non_leaf_raises():
    y = ember.ones(2, requires_grad=True) * 2
    with pytest.raises(RuntimeError, match="you can only change requires_grad flags of leaf variables"):
        y.requires_grad_(False)


def test_detach_shares_memory_and_version():
    x = ember.tensor([1.0, 2.0], requires_grad=True)
    d = x.detach()
    assert not d.requires_grad and d.grad_fn is None and d.is_leaf
    d.add_(1.0)
    np.testing.assert_allclose(x.detach().numpy(), [2.0, 3.0])
    assert x._version_number == d._version_number == 1


# ---- grad mode ------------------------------------------------------------------------------------------


def test_no_grad_context_and_decorator():
    x = ember.ones(2, requires_grad=True)
    with ember.no_grad():
        y = x * 2
        assert not ember.is_grad_enabled()
    assert ember.is_grad_enabled()
    assert not y.requires_grad and y.grad_fn is None

    @ember.no_grad()
    def f(t):
        return t * 2

    assert not f(x).requires_grad
    assert ember.is_grad_enabled()


def test_enable_grad_inside_no_grad():
    x = ember.ones(2, requires_grad=True)
    with ember.no_grad():
        with ember.enable_grad():
            assert (x * 2).requires_grad
        assert not (x * 2).requires_grad

        @ember.enable_grad()
        def g(t):
            return t * 2

        assert g(x).requires_grad


def test_set_grad_enabled_context_and_call():
    x = ember.ones(2, requires_grad=True)
    with ember.set_grad_enabled(False):
        assert not (x * 2).requires_grad
    assert ember.is_grad_enabled()
    ember.set_grad_enabled(False)
    try:
        assert not (x * 2).requires_grad
    finally:
        ember.set_grad_enabled(True)
    assert (x * 2).requires_grad


def test_grad_mode_restored_after_exception():
    with pytest.raises(ValueError):
        with ember.no_grad():
            raise ValueError("boom")
    assert ember.is_grad_enabled()


# ---- in place and version counters ----------------------------------------------------------------------


def test_inplace_on_leaf_requiring_grad_raises():
    x = ember.ones(2, requires_grad=True)
    with pytest.raises(RuntimeError, match="a leaf Variable that requires grad is being used in an in-place"):
        x.add_(1.0)
    with ember.no_grad():
        x.add_(1.0)  # allowed without grad recording, as in PyTorch
    np.testing.assert_allclose(x.detach().numpy(), [2.0, 2.0])


def test_saved_tensor_modified_inplace_raises_at_backward():
    x = ember.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2
    z = (y * y).sum()  # mul saves y
    y.add_(1.0)
    with pytest.raises(RuntimeError, match="one of the variables needed for gradient computation has been "
                                           "modified by an inplace operation"):
        z.backward()


def test_saved_output_modified_inplace_raises_at_backward():
    x = ember.tensor([1.0, 2.0], requires_grad=True)
    y = x.exp()  # exp's rule reads its output
    y.mul_(2.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


def test_inplace_on_unsaved_tensor_is_fine_and_matches_torch():
    xe, xt = pair([1.0, 2.0])
    ye, yt = xe * 2.0, xt * 2.0
    ze, zt = ye.sum() * 3.0, yt.sum() * 3.0  # sum's rule reads only the shape of its input
    ye.add_(5.0)
    yt.add_(5.0)
    ze.backward()
    zt.backward()
    close(xe.grad, xt.grad)


def test_inplace_on_non_leaf_records_and_differentiates():
    xe, xt = pair([1.0, -2.0])
    ye, yt = xe * xe, xt * xt
    ye.mul_(3.0)
    yt.mul_(3.0)
    ye.exp_()
    yt.exp_()
    ye.sum().backward()
    yt.sum().backward()
    close(xe.grad, xt.grad)


# ---- hooks ----------------------------------------------------------------------------------------------


def test_register_hook_on_leaf_modifies_grad():
    xe, xt = pair([1.0, 2.0])
    seen = []
    he = xe.register_hook(lambda g: seen.append(g.numpy().copy()) or g * 10.0)
    xt.register_hook(lambda g: g * 10.0)
    (xe * xe).sum().backward()
    (xt * xt).sum().backward()
    close(xe.grad, xt.grad)
    np.testing.assert_allclose(seen[0], [2.0, 4.0])
    he.remove()
    xe.grad = None
    (xe * xe).sum().backward()
    np.testing.assert_allclose(xe.grad.numpy(), [2.0, 4.0])


def test_register_hook_on_non_leaf_changes_upstream_grad():
    xe, xt = pair([1.0, 2.0])
    ye, yt = xe * xe, xt * xt
    ye.register_hook(lambda g: g * 0.5 + 1.0)
    yt.register_hook(lambda g: g * 0.5 + 1.0)
    (ye * 3.0).sum().backward()
    (yt * 3.0).sum().backward()
    close(xe.grad, xt.grad)


def test_register_hook_requires_grad():
    with pytest.raises(RuntimeError, match="cannot register a hook on a tensor that doesn.t require"):
        ember.ones(2).register_hook(lambda g: g)


# ---- custom Functions -----------------------------------------------------------------------------------


class _EmberCube(ember.autograd.Function):
    @staticmethod
    def forward(ctx, x, scale):
        ctx.save_for_backward(x)
        ctx.scale = scale
        return x * x * x * scale

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * 3.0 * x * x * ctx.scale, None


class _TorchCube(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, scale):
        ctx.save_for_backward(x)
        ctx.scale = scale
        return x * x * x * scale

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * 3.0 * x * x * ctx.scale, None


def test_function_save_for_backward_and_used_twice():
    xe, xt = pair([1.0, -0.5, 2.0])
    ye = _EmberCube.apply(xe, 2.0) + _EmberCube.apply(xe * 2.0, 0.5)
    yt = _TorchCube.apply(xt, 2.0) + _TorchCube.apply(xt * 2.0, 0.5)
    close(ye, yt)
    ye.sum().backward()
    yt.sum().backward()
    close(xe.grad, xt.grad)
    assert type(ye.grad_fn).__name__ or ye.grad_fn.name()


def test_function_needs_input_grad_and_multiple_outputs():
    seen = {}

    class SplitScale(ember.autograd.Function):
        @staticmethod
        def forward(ctx, x, y):
            seen["needs"] = ctx.needs_input_grad
            ctx.save_for_backward(x, y)
            return x * y, x + y

        @staticmethod
        def backward(ctx, ga, gb):
            x, y = ctx.saved_tensors
            return ga * y + gb, (ga * x + gb) if ctx.needs_input_grad[1] else None

    x = ember.tensor([1.0, 2.0], requires_grad=True)
    y = ember.tensor([3.0, 4.0])
    a, b = SplitScale.apply(x, y)
    assert seen["needs"] == (True, False)
    assert a.requires_grad and b.requires_grad
    (a.sum() + (b * b).sum()).backward()
    np.testing.assert_allclose(x.grad.numpy(), [3.0 + 2 * 4.0, 4.0 + 2 * 6.0])
    assert y.grad is None


def test_function_one_output_unused_gets_zero_grad():
    class Two(ember.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2.0, x * 3.0

        @staticmethod
        def backward(ctx, ga, gb):
            assert gb is not None  # materialized as zeros
            return ga * 2.0 + gb * 3.0

    x = ember.ones(2, requires_grad=True)
    a, _ = Two.apply(x)
    a.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 2.0])


def test_function_mark_non_differentiable():
    class ValueAndMask(ember.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            mask = x > 0
            out = x * 1.0
            scale = x * 0.0
            ctx.mark_non_differentiable(scale)
            ctx.save_for_backward(mask)
            return out, scale

        @staticmethod
        def backward(ctx, g, g_scale):
            (mask,) = ctx.saved_tensors
            return ember.where(mask, g, 0.0)

    x = ember.tensor([-1.0, 2.0], requires_grad=True)
    out, scale = ValueAndMask.apply(x)
    assert out.requires_grad and not scale.requires_grad
    out.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [0.0, 1.0])


def test_function_saved_tensor_modified_inplace_raises():
    x = ember.tensor([1.0, 2.0], requires_grad=True)
    h = x * 1.0
    y = _EmberCube.apply(h, 1.0)
    h.add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


def test_function_second_backward_raises():
    x = ember.tensor([1.0, 2.0], requires_grad=True)
    y = _EmberCube.apply(x, 1.0).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        y.backward()


def test_function_not_recorded_under_no_grad():
    x = ember.tensor([1.0, 2.0], requires_grad=True)
    with ember.no_grad():
        y = _EmberCube.apply(x, 1.0)
    assert not y.requires_grad and y.grad_fn is None


def test_function_backward_with_create_graph():
    class Square(ember.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return 2.0 * x * g

    x = ember.tensor([1.5, -2.0], requires_grad=True)
    (g1,) = ember.autograd.grad(Square.apply(x).sum(), x, create_graph=True)
    (g2,) = ember.autograd.grad(g1.sum(), x)
    np.testing.assert_allclose(g1.detach().numpy(), [3.0, -4.0])
    np.testing.assert_allclose(g2.numpy(), [2.0, 2.0])


def test_function_gradient_of_wrong_shape_raises_and_expandable_one_is_summed():
    class Bad(ember.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2.0

        @staticmethod
        def backward(ctx, g):
            return ember.ones(5)

    class Broadcasting(ember.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2.0

        @staticmethod
        def backward(ctx, g):
            return ember.ones(4, 3)  # the input (3,) expands to (4, 3): summed back, as in PyTorch

    x = ember.ones(3, requires_grad=True)
    with pytest.raises(RuntimeError, match=r"returned an invalid gradient at index 0 - got \[5\] but expected"
                                           r" shape compatible with \[3\]"):
        Bad.apply(x).sum().backward()
    Broadcasting.apply(x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [4.0, 4.0, 4.0])


def test_save_for_backward_rejects_non_tensors():
    class SavesInt(ember.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x, 3)
            return x

    with pytest.raises(TypeError, match="save_for_backward can only save variables, but argument 1"):
        SavesInt.apply(ember.ones(1, requires_grad=True))


def test_second_backward_without_saved_tensors_works_like_torch():
    xe, xt = pair([1.0, 2.0])
    ye, yt = (xe + 1.0).sum(), (xt + 1.0).sum()  # add and sum save nothing
    ye.backward()
    ye.backward()
    yt.backward()
    yt.backward()
    close(xe.grad, xt.grad)


def test_gradcheck_is_reexported():
    from ember.testing import gradcheck, gradgradcheck

    assert ember.autograd.gradcheck is gradcheck and ember.autograd.gradgradcheck is gradgradcheck
    x = ember.tensor([0.3, -0.2], dtype=ember.float64, requires_grad=True)
    assert ember.autograd.gradcheck(lambda t: (t * t).tanh(), (x,))
