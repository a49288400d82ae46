"""Counter-based random numbers (Philox4x32-10) as registry ops, so random draws can live in graphs.

Why counter-based: a graph cannot hold a stateful generator, but it can hold a pure function of
``(key, counter)``. Element ``i`` of ``philox_bits(seed, shape, offset)`` is word ``i % 4`` of
``Philox4x32-10(counter = offset + i // 4, key = seed)``, so eager numpy, the graph interpreter, the
LLVM kernels and (later) CUDA all produce the same bits for the same ``(seed, offset, element)``, and a
backward pass can recompute a dropout mask from the seed instead of storing it.

Layout of the 128-bit counter and 64-bit key: ``counter = (c0, c1, c2, c3)`` with ``c0, c1`` the low
and high 32 bits of ``offset + i // 4`` and ``c2 = c3 = 0``; ``key = (k0, k1)`` the low and high 32 bits
of the int64 seed (its two's-complement bits, so a negative seed is as good as any).

The generator itself (``philox4x32``) is written once over an array module ``xp`` with uint64 arithmetic
(32-bit words, products of two words fit in 64 bits); the kernel lowering (``compiler/kernel/lower_rng.py``)
writes the same rounds as int64 kernel-IR expressions, taking the multiply-high from a wrapping 64-bit
multiply. Known-answer tests check both against the published Random123 vectors.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from ember.compiler.dtypes import float32, int64
from ember.compiler.ops.registry import FLOAT, INT, INTS, Pattern, TensorType, define_composite, define_op
from ember.compiler.ops.rules import shape_of
from ember.runtime.errors import ArgumentError, DTypeError, ShapeError

# Philox4x32 constants (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011)
PHILOX_M0 = 0xD2511F53
PHILOX_M1 = 0xCD9E8D57
PHILOX_W0 = 0x9E3779B9  # golden ratio
PHILOX_W1 = 0xBB67AE85  # sqrt(3) - 1
PHILOX_ROUNDS = 10
MASK32 = 0xFFFFFFFF
UNIFORM_BITS = 24  # float32 uniforms use the top 24 bits: k / 2**24 is exact in float32

__all__ = ["MASK32", "PHILOX_M0", "PHILOX_M1", "PHILOX_ROUNDS", "PHILOX_W0", "PHILOX_W1", "keep_threshold",
           "philox4x32", "philox_bits_array"]


def philox4x32(xp: Any, counter: tuple[Any, Any, Any, Any], key: tuple[Any, Any],
               rounds: int = PHILOX_ROUNDS) -> tuple[Any, Any, Any, Any]:
    """Philox4x32-``rounds`` on arrays of 32-bit words held in uint64 (broadcasting like numpy).

    Each round: ``(hi0, lo0) = M0 * c0``, ``(hi1, lo1) = M1 * c2`` (full 64-bit products), then
    ``c = (hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0)``; the key is bumped before every round but the first.
    """
    u64 = np.uint64
    c0, c1, c2, c3 = (xp.asarray(c, dtype=u64) for c in counter)
    k0, k1 = (xp.asarray(k, dtype=u64) for k in key)
    mask, shift = u64(MASK32), u64(32)
    for r in range(rounds):
        if r:
            k0 = (k0 + u64(PHILOX_W0)) & mask
            k1 = (k1 + u64(PHILOX_W1)) & mask
        p0 = c0 * u64(PHILOX_M0)
        p1 = c2 * u64(PHILOX_M1)
        n0 = (p1 >> shift) ^ c1  # fresh arrays: the xors with the key and the masks below run in place
        n0 ^= k0
        n2 = (p0 >> shift) ^ c3
        n2 ^= k1
        p1 &= mask
        p0 &= mask
        c0, c1, c2, c3 = n0, p1, n2, p0
    return c0, c1, c2, c3


def philox_bits_array(xp: Any, seed: Any, shape: tuple[int, ...], offset: int) -> Any:
    """The uint32 stream of ``philox_bits`` as an int64 array of ``shape`` (see the module docstring).
    ``seed`` is a Python int or a 0-d int64 array of ``xp``; it is never read back to the host, so the
    same code runs on a GPU array module."""
    n = 1
    for s in shape:
        n *= s
    blocks = (n + 3) // 4
    ctr = xp.arange(blocks, dtype=np.uint64) + np.uint64(offset)
    if isinstance(seed, int):
        seed = (seed + (1 << 63)) % (1 << 64) - (1 << 63)  # the int64 with the same 64 bits
    key_bits = xp.asarray(seed, dtype=np.int64).reshape(()).view(np.uint64)
    key = (key_bits & np.uint64(MASK32), key_bits >> np.uint64(32))
    zero = np.uint64(0)
    words = philox4x32(xp, (ctr & np.uint64(MASK32), ctr >> np.uint64(32), zero, zero), key)
    out = xp.empty((blocks, 4), dtype=np.int64)  # one write per word, no stacked uint64 copy
    for k, w in enumerate(words):
        out[:, k] = w
    return out.reshape(-1)[:n].reshape(shape)


def keep_threshold(p: float) -> int:
    """The integer ``t`` with ``bits >= t`` exactly when ``bits / 2**32 >= p``: a dropout keep test done on
    32-bit integers, so every back end decides each element identically (no float rounding involved)."""
    if not 0.0 <= p <= 1.0:
        raise ArgumentError(f"dropout probability has to be between 0 and 1, but got {p}")
    scaled = p * 2.0 ** 32  # exact: a power-of-two scale of a double
    t = int(scaled)
    return t if t == scaled else t + 1


# ---- the ops ------------------------------------------------------------------------------------------


def _check_seed(op: str, seed: Any) -> None:
    if not hasattr(seed, "dtype"):
        raise DTypeError(f"{op}: expected the seed as an int64 tensor of shape [], got a {type(seed).__name__}")
    if seed.dtype is not int64 or tuple(shape_of(seed)) != ():
        raise DTypeError(f"{op}: expected the seed as an int64 tensor of shape [], got {seed.dtype} of shape"
                         f" {list(shape_of(seed))}")


def _bits_infer(seed: Any, shape: tuple[int, ...], offset: int) -> TensorType:
    _check_seed("philox_bits", seed)
    if any(s < 0 for s in shape):
        raise ShapeError(f"philox_bits: negative dimension in shape {list(shape)}")
    if not 0 <= offset < 1 << 62:
        raise ArgumentError(f"philox_bits: offset must be in [0, 2**62), got {offset}")
    return TensorType(tuple(shape), int64)


def _bits_ref(xp: Any, seed: Any, shape: tuple[int, ...], offset: int) -> Any:
    return philox_bits_array(xp, seed, tuple(shape), offset)


philox_bits = define_op(
    "philox_bits", pattern=Pattern.BROADCAST, inputs=("seed",),
    attrs={"shape": INTS, "offset": (INT, 0)},
    infer=_bits_infer, reference=_bits_ref, vjp=None, differentiable=False,
    lowering={"index": "lower_rng:philox_bits"}, method=False, function=False,
    doc="Uniform 32-bit random words (as int64 in [0, 2**32)) for every element of ``shape``: element i"
        " is word i % 4 of Philox4x32-10 at counter ``offset + i // 4`` under key ``seed``. Pure in its"
        " inputs, so graphs may hold it and a backward pass may recompute it.",
)


def _uniform(b: Any, seed: Any, shape: tuple[int, ...], offset: int) -> Any:
    """The top 24 bits over 2**24: uniform on [0, 1) in steps of 2**-24, exact in float32."""
    bits = b.philox_bits(seed, shape=shape, offset=offset)
    top = b.div(bits, 1 << (32 - UNIFORM_BITS), rounding_mode="floor")
    return b.mul(b.cast(top, dtype=float32), 2.0 ** -UNIFORM_BITS)


philox_uniform = define_composite(
    "philox_uniform", inputs=("seed",), attrs={"shape": INTS, "offset": (INT, 0)}, decompose=_uniform,
    method=False, function=False,
    doc="float32 uniforms on [0, 1) from ``philox_bits`` (same stream on every back end).",
)


def _bernoulli_keep(b: Any, seed: Any, shape: tuple[int, ...], p: float, offset: int) -> Any:
    return b.ge(b.philox_bits(seed, shape=shape, offset=offset), keep_threshold(p))


dropout_keep_mask = define_composite(
    "dropout_keep_mask", inputs=("seed",), attrs={"shape": INTS, "p": (FLOAT, 0.5), "offset": (INT, 0)},
    decompose=_bernoulli_keep, method=False, function=False,
    doc="The keep-mask of dropout: True with probability 1 - p (to 2**-32), decided on 32-bit integers.",
)
