"""The GEMM template's fused epilogue: what it does (``Epilogue``, a hashable cache key) and the IR
that applies it to an output tile in registers (``apply_epilogue``), shared by ``gemm.py``'s tile stores
and ``gemv.py``'s dot-product paths, on vectors and on scalars alike.

The order is fixed: ``act((acc * col_scale[n] * row_scale[m]) + col_bias[n] + row_bias[m] + R[m, n])``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import llvmlite.ir as ir
from ember.compiler.codegen.llvm.irutil import fop as _fop
from ember.compiler.codegen.llvm.irutil import intrinsic as _intrinsic
from ember.compiler.codegen.llvm.irutil import splat_const as _splat_const
from ember.runtime.errors import ArgumentError, CompileError

__all__ = ["ACTIVATIONS", "Epilogue", "apply_epilogue", "fma"]

ACTIVATIONS = ("none", "relu", "relu6", "leaky_relu", "sigmoid", "tanh", "silu")
_I32 = ir.IntType(32)


def fma(b: ir.IRBuilder, x: ir.Value, y: ir.Value, z: ir.Value) -> ir.Value:
    """``x * y + z`` rounded once (``llvm.fma`` on scalars or vectors)."""
    return _intrinsic(b, "llvm.fma", x.type, [x, y, z], 3)


@dataclass(frozen=True)
class Epilogue:
    """What to do with each output element after the matrix product (a hashable cache key).

    The order is fixed: scales, then biases, then the residual, then the activation, which is the order
    a folded batch norm (scale + shift), a bias, a ResNet shortcut and a ReLU compose in.
    ``alpha`` is the negative slope of ``leaky_relu`` and is baked into the code.
    """

    col_scale: bool = False
    col_bias: bool = False
    row_scale: bool = False
    row_bias: bool = False
    residual: bool = False
    activation: str = "none"
    alpha: float = 0.01

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATIONS:
            choices = ", ".join(ACTIVATIONS)
            raise ArgumentError(f"unknown GEMM epilogue activation {self.activation!r}; "
                                f"choose one of {choices}")
        if not math.isfinite(self.alpha):
            raise ArgumentError(f"leaky_relu slope must be finite, got {self.alpha!r}")

    @property
    def tag(self) -> str:
        """A short identifier-safe summary, used in generated function names."""
        names = ("col_scale", "col_bias", "row_scale", "row_bias", "residual")
        parts = [n for n in names if getattr(self, n)]
        if self.activation != "none":
            parts.append(self.activation)
        if self.activation == "leaky_relu":
            parts.append(f"{self.alpha:g}".replace(".", "p").replace("-", "m").replace("+", ""))
        return "_".join(parts) or "plain"

    @property
    def is_identity(self) -> bool:
        """True when the epilogue leaves the product unchanged."""
        return self.tag == "plain"


def _exp(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """exp(x) by range reduction to [-ln2/2, ln2/2] and a degree-6 polynomial (about 2 ulp).

    Written out instead of calling ``expf`` so it vectorizes and needs no libm symbol; the input is
    clamped so 2^n stays a normal float (exp saturates at ~1.6e38 and ~1.2e-38).
    """
    ty = x.type
    c = lambda v: _splat_const(ty, v)  # noqa: E731
    x = _intrinsic(b, "llvm.minnum", ty, [x, c(88.0)], 2)
    x = _intrinsic(b, "llvm.maxnum", ty, [x, c(-87.0)], 2)
    n = _intrinsic(b, "llvm.floor", ty, [_fop(b, "fadd", _fop(b, "fmul", x, c(1.44269504088896341)), c(0.5))])
    r = fma(b, n, c(-0.693359375), x)
    r = fma(b, n, c(2.12194440e-4), r)
    p = c(1.9875691500e-4)
    for coef in (1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1):
        p = fma(b, p, r, c(coef))
    p = fma(b, p, _fop(b, "fmul", r, r), _fop(b, "fadd", r, c(1.0)))
    ity = ir.VectorType(_I32, ty.count) if isinstance(ty, ir.VectorType) else _I32
    bits = b.shl(b.add(b.fptosi(n, ity), _splat_const(ity, 127)), _splat_const(ity, 23))
    return _fop(b, "fmul", p, b.bitcast(bits, ty))


def _sigmoid(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    one = _splat_const(x.type, 1.0)
    return _fop(b, "fdiv", one, _fop(b, "fadd", one, _exp(b, b.fneg(x))))


def _activation(b: ir.IRBuilder, epi: Epilogue, x: ir.Value) -> ir.Value:
    """Apply ``epi.activation``; NaN propagates through relu/relu6/leaky_relu like in PyTorch."""
    ty = x.type
    zero = _splat_const(ty, 0.0)
    act = epi.activation
    if act == "none":
        return x
    if act in ("relu", "relu6"):
        x = b.select(b.fcmp_ordered("<", x, zero), zero, x)
        if act == "relu6":
            six = _splat_const(ty, 6.0)
            x = b.select(b.fcmp_ordered(">", x, six), six, x)
        return x
    if act == "leaky_relu":
        return b.select(b.fcmp_ordered("<", x, zero), _fop(b, "fmul", x, _splat_const(ty, epi.alpha)), x)
    if act == "sigmoid":
        return _sigmoid(b, x)
    if act == "silu":
        return _fop(b, "fmul", x, _sigmoid(b, x))
    if act == "tanh":  # 1 - 2 / (exp(2x) + 1): saturates cleanly at both ends
        one = _splat_const(ty, 1.0)
        e = _exp(b, _fop(b, "fadd", x, x))
        return _fop(b, "fsub", one, _fop(b, "fdiv", _splat_const(ty, 2.0), _fop(b, "fadd", e, one)))
    raise CompileError(f"GEMM epilogue: activation {act!r} has no code generator")  # pragma: no cover


def apply_epilogue(b: ir.IRBuilder, epi: Epilogue, x: ir.Value, ops: dict[str, ir.Value]) -> ir.Value:
    """``ops`` maps the epilogue's operand names to values of ``x``'s type (see ``_epi_operands``)."""
    for name in ("col_scale", "row_scale"):
        if name in ops:
            x = _fop(b, "fmul", x, ops[name])
    for name in ("col_bias", "row_bias", "residual"):
        if name in ops:
            x = _fop(b, "fadd", x, ops[name])
    return _activation(b, epi, x)
