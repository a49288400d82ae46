"""``linear`` and ``bilinear``: matrix products written with registry ops (matmul, add), so the GEMM
back end sees a matmul with an epilogue."""

from __future__ import annotations

from ember.runtime.errors import ShapeError
from ember.tensor import Tensor


def linear(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``input @ weight.T + bias``; input is (*, in_features), weight (out_features, in_features)."""
    if weight.ndim == 2 and input.ndim >= 1 and input.shape[-1] != weight.shape[1]:
        rows = input.numel() // max(input.shape[-1], 1) if input.ndim > 1 else 1
        raise ShapeError(
            f"linear: mat1 and mat2 shapes cannot be multiplied ({rows}x{input.shape[-1]} and"
            f" {weight.shape[1]}x{weight.shape[0]})"
        )
    out = input.matmul(weight.t())
    if bias is not None:
        out = out + bias
    return out


def bilinear(input1: Tensor, input2: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``y[..., o] = sum_ij x1[..., i] W[o, i, j] x2[..., j] + b[o]``."""
    out_f, in1, in2 = weight.shape
    if input1.shape[-1] != in1 or input2.shape[-1] != in2:
        raise ShapeError(
            f"bilinear: input1 size {list(input1.shape)} and input2 size {list(input2.shape)} do not match"
            f" weight {list(weight.shape)} (expected last dims {in1} and {in2})"
        )
    lead = tuple(input1.shape[:-1])
    w = weight.permute(1, 0, 2).reshape(in1, out_f * in2)
    t = input1.reshape(-1, in1).matmul(w).reshape(-1, out_f, in2)
    out = (t * input2.reshape(-1, 1, in2)).sum(-1).reshape(*lead, out_f)
    if bias is not None:
        out = out + bias
    return out


__all__ = ["linear", "bilinear"]
