"""Functional activations: thin adapters from PyTorch's signatures to registry ops; ``inplace=True``
writes the result back into the input (through the in-place machinery, so version checks hold)."""

from __future__ import annotations

from typing import Any

from ember.compiler.ops import REGISTRY
from ember.dispatch import apply
from ember.tensor import Tensor

_op = REGISTRY.__getitem__


def _run(name: str, x: Tensor, inplace: bool = False, **attrs: Any) -> Tensor:
    if inplace:
        from ember._inplace import inplace_apply

        return inplace_apply(x, _op(name), (), attrs)
    return apply(_op(name), (x,), attrs)


def relu(input: Tensor, inplace: bool = False) -> Tensor:
    """max(x, 0) elementwise."""
    return _run("relu", input, inplace)


def relu_(input: Tensor) -> Tensor:
    return relu(input, inplace=True)


def elu_(input: Tensor, alpha: float = 1.0) -> Tensor:
    return elu(input, alpha, inplace=True)


def selu_(input: Tensor) -> Tensor:
    return selu(input, inplace=True)


def celu_(input: Tensor, alpha: float = 1.0) -> Tensor:
    return celu(input, alpha, inplace=True)


def leaky_relu_(input: Tensor, negative_slope: float = 0.01) -> Tensor:
    return leaky_relu(input, negative_slope, inplace=True)


def hardtanh_(input: Tensor, min_val: float = -1.0, max_val: float = 1.0) -> Tensor:
    return hardtanh(input, min_val, max_val, inplace=True)


def threshold_(input: Tensor, threshold: float, value: float) -> Tensor:
    return _run("threshold", input, True, threshold=threshold, value=value)


def hardshrink(input: Tensor, lambd: float = 0.5) -> Tensor:
    """x where |x| > lambd, else 0."""
    return input.where((input > lambd) | (input < -lambd), 0.0)


def relu6(input: Tensor, inplace: bool = False) -> Tensor:
    """min(max(x, 0), 6): hardtanh on [0, 6]."""
    return _run("hardtanh", input, inplace, min_val=0.0, max_val=6.0)


def elu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    return _run("elu", input, inplace, alpha=alpha)


def selu(input: Tensor, inplace: bool = False) -> Tensor:
    return _run("elu", input, inplace, alpha=1.6732632423543772, scale=1.0507009873554805)


def celu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    return _run("elu", input, inplace, alpha=alpha, input_scale=1.0 / alpha)


def leaky_relu(input: Tensor, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:
    return _run("leaky_relu", input, inplace, negative_slope=negative_slope)


def prelu(input: Tensor, weight: Tensor) -> Tensor:
    """x if x > 0 else weight * x, with one weight per channel (dim 1) or one shared."""
    return apply(_op("prelu"), (input, weight), {})


def threshold(input: Tensor, threshold: float, value: float, inplace: bool = False) -> Tensor:
    return _run("threshold", input, inplace, threshold=threshold, value=value)


def hardtanh(input: Tensor, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False) -> Tensor:
    return _run("hardtanh", input, inplace, min_val=min_val, max_val=max_val)


def sigmoid(input: Tensor) -> Tensor:
    return apply(_op("sigmoid"), (input,), {})


def tanh(input: Tensor) -> Tensor:
    return apply(_op("tanh"), (input,), {})


def logsigmoid(input: Tensor) -> Tensor:
    return apply(_op("log_sigmoid"), (input,), {})


def softplus(input: Tensor, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    return apply(_op("softplus"), (input,), {"beta": beta, "threshold": threshold})


def softshrink(input: Tensor, lambd: float = 0.5) -> Tensor:
    return apply(_op("softshrink"), (input,), {"lambd": lambd})


def softsign(input: Tensor) -> Tensor:
    return apply(_op("softsign"), (input,), {})


def gelu(input: Tensor, approximate: str = "none") -> Tensor:
    return apply(_op("gelu"), (input,), {"approximate": approximate})


def silu(input: Tensor, inplace: bool = False) -> Tensor:
    return _run("silu", input, inplace)


def mish(input: Tensor, inplace: bool = False) -> Tensor:
    return input * tanh(softplus(input))


def hardsigmoid(input: Tensor, inplace: bool = False) -> Tensor:
    return _run("hardtanh", input / 6.0 + 0.5, False, min_val=0.0, max_val=1.0)


def hardswish(input: Tensor, inplace: bool = False) -> Tensor:
    return input * hardsigmoid(input)


def tanhshrink(input: Tensor) -> Tensor:
    return input - tanh(input)


def _softmax_dim(ndim: int, name: str) -> int:
    """PyTorch's legacy implicit dim: 0 for 0-d, 1-d and 3-d inputs, else 1 (with a warning there)."""
    import warnings

    warnings.warn(f"Implicit dimension choice for {name} has been deprecated. Change the call to include"
                  " dim=X as an argument.", UserWarning, stacklevel=3)
    return 0 if ndim in (0, 1, 3) else 1


def _softmax_family(op: str, input: Tensor, dim: int | None, dtype: Any, name: str) -> Tensor:
    if dim is None:
        dim = _softmax_dim(input.ndim, name)
    if dtype is not None:
        input = input.to(dtype)
    return apply(_op(op), (input,), {"dim": dim})


def softmax(input: Tensor, dim: int | None = None, _stacklevel: int = 3, dtype: Any = None) -> Tensor:
    """exp(x) / sum(exp(x)) along ``dim``, computed without overflow."""
    return _softmax_family("softmax", input, dim, dtype, "softmax")


def softmin(input: Tensor, dim: int | None = None, _stacklevel: int = 3, dtype: Any = None) -> Tensor:
    return _softmax_family("softmax", -input, dim, dtype, "softmin")


def log_softmax(input: Tensor, dim: int | None = None, _stacklevel: int = 3, dtype: Any = None) -> Tensor:
    return _softmax_family("log_softmax", input, dim, dtype, "log_softmax")


def glu(input: Tensor, dim: int = -1) -> Tensor:
    a, b = input.chunk(2, dim)
    return a * sigmoid(b)


def one_hot(tensor: Tensor, num_classes: int = -1) -> Tensor:
    """int64 one-hot encoding along a new last dim."""
    return apply(_op("one_hot"), (tensor,), {"num_classes": num_classes})


__all__ = ["relu", "relu_", "elu_", "selu_", "celu_", "leaky_relu_", "hardtanh_", "threshold_", "hardshrink",
           "relu6", "elu", "selu", "celu", "leaky_relu", "prelu", "threshold", "hardtanh",
           "sigmoid", "tanh", "logsigmoid", "softplus", "softshrink", "softsign", "gelu", "silu", "mish",
           "hardsigmoid", "hardswish", "tanhshrink", "softmax", "softmin", "log_softmax", "glu", "one_hot"]
