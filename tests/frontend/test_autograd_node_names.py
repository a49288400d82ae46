"""grad_fn names: a composite op's node is named after the op the user called (``MeanBackward0``), not the
primitive its expansion ends with; primitives keep theirs. Compared with torch 2.13's names."""

from __future__ import annotations

import ember
import numpy as np
import pytest
import torch

X = np.random.default_rng(0).standard_normal((3, 4))

SAME_AS_TORCH = {
    "mean": lambda m, x: x.mean(),
    "transpose": lambda m, x: x.transpose(0, 1),
    "squeeze": lambda m, x: x.unsqueeze(0).squeeze(),
    "unsqueeze": lambda m, x: x.unsqueeze(0),
    "std": lambda m, x: x.std(),
    "var": lambda m, x: x.var(1),
    "sub": lambda m, x: x - 1,
    "norm": lambda m, x: x.norm(),
    "max_dim": lambda m, x: x.max(1).values,
    "min_dim": lambda m, x: x.min(1).values,
    "split": lambda m, x: x.split(2, 1)[0],
    "chunk": lambda m, x: x.chunk(2)[0],
    "unbind": lambda m, x: x.unbind()[0],
    "stack": lambda m, x: m.stack([x, x]),
    "logsumexp": lambda m, x: x.logsumexp(1),
    "narrow": lambda m, x: x.narrow(0, 0, 1),
    "select": lambda m, x: x.select(0, 1),
    "flip": lambda m, x: x.flip(0),
    "movedim": lambda m, x: x.movedim(0, 1),
    "addcmul": lambda m, x: x.addcmul(x, x),
    "lerp": lambda m, x: x.lerp(x * 2, 0.5),
    "index_select": lambda m, x: x.index_select(0, m.tensor([0])),
    "masked_fill": lambda m, x: x.masked_fill(x > 0, 1.0),
    "repeat": lambda m, x: x.repeat(2, 1),
    "dist": lambda m, x: m.dist(x, x * 2),
    "scatter_reduce": lambda m, x: x.scatter_reduce(0, m.tensor([[0, 1, 2, 0]]), x[:1] * 2, "amax"),
    "sum (primitive)": lambda m, x: x.sum(),
    "mul (primitive)": lambda m, x: x * x,
    "exp (primitive)": lambda m, x: x.exp(),
}


@pytest.mark.parametrize("name", list(SAME_AS_TORCH))
def test_grad_fn_name_matches_torch(name: str) -> None:
    fn = SAME_AS_TORCH[name]
    got = fn(ember, ember.tensor(X, requires_grad=True)).grad_fn.name()
    want = fn(torch, torch.tensor(X, requires_grad=True)).grad_fn.name()
    assert got == want
    assert repr(fn(ember, ember.tensor(X, requires_grad=True))).endswith(f"grad_fn=<{want}>)")


def test_composite_name_differs_from_its_last_primitive() -> None:
    x = ember.tensor(X, requires_grad=True)
    y = x.mean()
    assert y.grad_fn.name() == "MeanBackward0" and y.grad_fn.op.name == "div"  # expansion ends in div
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), np.full(X.shape, 1 / X.size))


def test_passthrough_keeps_the_inputs_node() -> None:
    """A composite whose expansion returns an input unchanged must not rename that input's node."""
    from ember.autograd.node import name_composite_outputs
    from ember.compiler.ops import REGISTRY

    y = ember.tensor(X, requires_grad=True) * 2
    name_composite_outputs(REGISTRY["squeeze"], (y,), y)
    assert y.grad_fn.name() == "MulBackward0"
    z = y.squeeze()  # a new tensor (a reshape node), named after the call
    assert z is not y and z.grad_fn.name() == "SqueezeBackward0" and y.grad_fn.name() == "MulBackward0"


def test_no_names_without_grad() -> None:
    with ember.no_grad():
        assert ember.tensor(X, requires_grad=True).mean().grad_fn is None
