"""Inline float32 math (exp, log, tanh, sigmoid) for scalar or vector LLVM values.

Written out as range reduction plus polynomials (Cephes' single-precision coefficients) instead of
calls to ``expf``/``logf`` so that vector loops stay vector (LLVM would otherwise scalarize every lane
into a libm call) and so that the code needs no libm symbol. Accuracy is within 2 ulp over the whole
range; infinities, NaN, zero and negative inputs give what IEEE/libm give (exp flushes results below
about 1.2e-38 to 0 instead of returning denormals).
"""

from __future__ import annotations

import llvmlite.ir as ir
from ember.compiler.codegen.llvm.irutil import I32, fop, intrinsic, splat_const

__all__ = ["exp_f32", "log_f32", "sigmoid_f32", "tanh_f32"]


def _int_type(ty: ir.Type) -> ir.Type:
    return ir.VectorType(I32, ty.count) if isinstance(ty, ir.VectorType) else I32


def _fma(b: ir.IRBuilder, x: ir.Value, y: ir.Value, z: ir.Value) -> ir.Value:
    return intrinsic(b, "llvm.fma", x.type, [x, y, z], 3)


def _poly(b: ir.IRBuilder, x: ir.Value, coefs: tuple[float, ...]) -> ir.Value:
    """Horner's rule, highest coefficient first."""
    c = lambda v: splat_const(x.type, v)  # noqa: E731
    p = c(coefs[0])
    for coef in coefs[1:]:
        p = _fma(b, p, x, c(coef))
    return p


def exp_f32(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """exp(x): x = n*ln2 + r with |r| <= ln2/2, exp(r) by a degree-6 polynomial, 2^n from the bits."""
    ty = x.type
    c = lambda v: splat_const(ty, v)  # noqa: E731
    hi, lo = 88.3762626647949, -87.3365478515625
    xc = b.select(b.fcmp_ordered(">", x, c(hi)), c(hi), x)
    xc = b.select(b.fcmp_ordered("<", xc, c(lo)), c(lo), xc)
    xc = b.select(b.fcmp_unordered("uno", x, x), c(0.0), xc)  # keep the integer path defined
    n = intrinsic(b, "llvm.floor", ty, [fop(b, "fadd", fop(b, "fmul", xc, c(1.44269504088896341)), c(0.5))])
    r = _fma(b, n, c(-0.693359375), xc)
    r = _fma(b, n, c(2.12194440e-4), r)
    p = _poly(b, r, (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2,
                     1.6666665459e-1, 5.0000001201e-1))
    p = _fma(b, p, fop(b, "fmul", r, r), fop(b, "fadd", r, c(1.0)))
    ity = _int_type(ty)
    bits = b.shl(b.add(b.fptosi(n, ity), splat_const(ity, 127)), splat_const(ity, 23))
    out = fop(b, "fmul", p, b.bitcast(bits, ty))
    out = b.select(b.fcmp_ordered(">", x, c(hi)), c(float("inf")), out)
    out = b.select(b.fcmp_ordered("<", x, c(lo)), c(0.0), out)
    return b.select(b.fcmp_unordered("uno", x, x), x, out)


def log_f32(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """log(x): x = m * 2^e with m in [sqrt(1/2), sqrt(2)), log(m) by a degree-9 polynomial in m - 1."""
    ty = x.type
    ity = _int_type(ty)
    c = lambda v: splat_const(ty, v)  # noqa: E731
    ci = lambda v: splat_const(ity, v)  # noqa: E731
    tiny = b.fcmp_ordered("<", x, c(1.17549435e-38))
    xs = b.select(tiny, fop(b, "fmul", x, c(8388608.0)), x)  # scale denormals up by 2^23
    bias = b.select(tiny, ci(126 + 23), ci(126))
    bits = b.bitcast(xs, ity)
    e = b.sitofp(b.sub(b.lshr(bits, ci(23)), bias), ty)
    m = b.bitcast(b.or_(b.and_(bits, ci(0x807FFFFF)), ci(0x3F000000)), ty)  # in [0.5, 1)
    small = b.fcmp_ordered("<", m, c(0.707106781186547524))
    e = b.select(small, fop(b, "fsub", e, c(1.0)), e)
    m = b.select(small, fop(b, "fsub", fop(b, "fadd", m, m), c(1.0)), fop(b, "fsub", m, c(1.0)))
    z = fop(b, "fmul", m, m)
    p = _poly(b, m, (7.0376836292e-2, -1.1514610310e-1, 1.1676998740e-1, -1.2420140846e-1,
                     1.4249322787e-1, -1.6668057665e-1, 2.0000714765e-1, -2.4999993993e-1,
                     3.3333331174e-1))
    y = fop(b, "fmul", fop(b, "fmul", p, m), z)
    y = _fma(b, e, c(-2.12194440e-4), y)
    y = _fma(b, z, c(-0.5), y)
    out = _fma(b, e, c(0.693359375), fop(b, "fadd", m, y))
    out = b.select(b.fcmp_ordered("==", x, c(float("inf"))), x, out)
    out = b.select(b.fcmp_ordered("==", x, c(0.0)), c(float("-inf")), out)
    out = b.select(b.fcmp_ordered("<", x, c(0.0)), c(float("nan")), out)
    return b.select(b.fcmp_unordered("uno", x, x), x, out)


def tanh_f32(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """tanh: an odd polynomial for |x| < 0.625, else 1 - 2 / (exp(2|x|) + 1) with the sign of x."""
    ty = x.type
    c = lambda v: splat_const(ty, v)  # noqa: E731
    ax = intrinsic(b, "llvm.fabs", ty, [x])
    e = exp_f32(b, fop(b, "fadd", ax, ax))
    big = fop(b, "fsub", c(1.0), fop(b, "fdiv", c(2.0), fop(b, "fadd", e, c(1.0))))
    big = intrinsic(b, "llvm.copysign", ty, [big, x], 2)
    z = fop(b, "fmul", x, x)
    p = _poly(b, z, (-5.70498872745e-3, 2.06390887954e-2, -5.37397155531e-2, 1.33314422036e-1,
                     -3.33332819422e-1))
    small = _fma(b, fop(b, "fmul", p, z), x, x)
    out = b.select(b.fcmp_ordered("<", ax, c(0.625)), small, big)
    return b.select(b.fcmp_unordered("uno", x, x), x, out)


def sigmoid_f32(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """1 / (1 + exp(-x)); saturates to exactly 0 and 1 at the ends."""
    one = splat_const(x.type, 1.0)
    return fop(b, "fdiv", one, fop(b, "fadd", one, exp_f32(b, b.fneg(x))))
