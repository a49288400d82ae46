"""The counter-based generator (compiler/ops/random_ops.py, compiler/kernel/lower_rng.py): Philox4x32-10
against the published Random123 known-answer vectors, the element layout, bit-exact agreement of the
numpy reference, the graph interpreter and the LLVM kernels, and the statistics of the streams."""

from __future__ import annotations

import math

import ember
import numpy as np
import pytest
from ember.compiler.dtypes import int64
from ember.compiler.kernel.ir import Const
from ember.compiler.kernel.lower_rng import philox4x32_exprs
from ember.compiler.ops import REGISTRY
from ember.compiler.ops.random_ops import keep_threshold, philox4x32, philox_bits_array
from ember.dispatch import apply
from ember.runtime.errors import ArgumentError, DTypeError

BITS, UNIFORM, KEEP = REGISTRY["philox_bits"], REGISTRY["philox_uniform"], REGISTRY["dropout_keep_mask"]

# Random123 kat_vectors, "philox4x32 10" lines: counter (4 words), key (2 words), expected (4 words)
KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


def _seed(s: int) -> ember.Tensor:
    return ember.tensor(s, dtype=ember.int64)


def _bits(seed: int, shape: tuple[int, ...], offset: int = 0) -> np.ndarray:
    return apply(BITS, (_seed(seed),), {"shape": shape, "offset": offset}).numpy()


@pytest.mark.parametrize("counter,key,want", KAT, ids=["zeros", "ones", "pi"])
def test_reference_matches_the_published_known_answers(counter, key, want) -> None:
    got = philox4x32(np, counter, key)
    assert [int(w) for w in got] == list(want)


def _eval_const(e):
    """Fold a constant kernel-IR expression (the lowering folds constant operands as it builds)."""
    assert isinstance(e, Const), e
    return e.value & 0xFFFFFFFF


@pytest.mark.parametrize("counter,key,want", KAT, ids=["zeros", "ones", "pi"])
def test_kernel_expressions_match_the_published_known_answers(counter, key, want) -> None:
    words = philox4x32_exprs(tuple(Const(c, int64) for c in counter), tuple(Const(k, int64) for k in key))
    assert [_eval_const(w) for w in words] == list(want)


def test_element_i_is_word_i_mod_4_of_counter_offset_plus_i_div_4() -> None:
    seed = -0x123456789ABCDEF  # the key is the seed's two's-complement bits
    got = _bits(seed, (3, 7), offset=11).reshape(-1)
    key_bits = seed & (2 ** 64 - 1)
    for i in range(21):
        block = 11 + i // 4
        words = philox4x32(np, (block & 0xFFFFFFFF, block >> 32, 0, 0), (key_bits & 0xFFFFFFFF, key_bits >> 32))
        assert got[i] == int(words[i % 4]), i
    # a counter beyond 32 bits carries into the second word
    big = 2 ** 32 + 5
    words = philox4x32(np, (5, 1, 0, 0), (7, 0))
    assert _bits(7, (4,), offset=big).tolist() == [int(w) for w in words]


def test_offsets_continue_the_stream_and_seeds_separate_it() -> None:
    whole = _bits(99, (64,))
    assert np.array_equal(_bits(99, (48,), offset=4), whole[16:])
    assert np.array_equal(_bits(99, (2, 4, 8)).reshape(-1), whole)
    assert not np.array_equal(_bits(100, (64,)), whole)
    assert whole.dtype == np.int64 and whole.min() >= 0 and whole.max() < 2 ** 32
    assert _bits(1, (0, 3)).shape == (0, 3) and _bits(1, ()).shape == ()


def _stream_fn(seed, seed2):
    """Several shapes and offsets in one graph: one compilation covers every case."""
    cases = [((1,), 0), ((5,), 3), ((3, 37), 5), ((2, 3, 4, 9), 2 ** 33 + 1), ((17, 129), 0), ((256, 160), 9)]
    outs = [apply(BITS, (seed,), {"shape": s, "offset": o}) for s, o in cases]
    outs.append(apply(UNIFORM, (seed2,), {"shape": (7, 11), "offset": 1}))
    outs.append(apply(KEEP, (seed2,), {"shape": (4, 33), "p": 0.3, "offset": 0}))
    return tuple(outs)


@pytest.fixture(scope="module")
def compiled_streams():
    return ember.compile(_stream_fn), ember.compile(_stream_fn, target="interpret")


@pytest.mark.parametrize("s1,s2", [(0, 1), (123456789012345, -7), (2 ** 63 - 1, -(2 ** 63)), (-1, 42)])
def test_eager_interpreter_and_llvm_give_identical_bits(compiled_streams, s1: int, s2: int) -> None:
    llvm, interp = compiled_streams
    eager = _stream_fn(_seed(s1), _seed(s2))
    for name, runner in (("llvm", llvm), ("interpret", interp)):
        got = runner(_seed(s1), _seed(s2))
        assert len(got) == len(eager)
        for k, (g, e) in enumerate(zip(got, eager)):
            assert g.dtype == e.dtype and g.shape == e.shape, (name, k)
            assert np.array_equal(g.numpy(), e.numpy()), (name, k)


def test_seed_must_be_an_int64_scalar_tensor() -> None:
    with pytest.raises(DTypeError, match="philox_bits: expected the seed as an int64 tensor of shape"):
        apply(BITS, (ember.tensor([1, 2]),), {"shape": (3,)})
    with pytest.raises(DTypeError, match="int64"):
        apply(BITS, (ember.tensor(1.0),), {"shape": (3,)})
    with pytest.raises(ArgumentError, match="offset"):
        apply(BITS, (_seed(1),), {"shape": (3,), "offset": -1})


# ---- statistics ----------------------------------------------------------------------------------------


def test_uniform_stream_passes_a_kolmogorov_smirnov_test() -> None:
    n = 200_000
    u = np.sort(apply(UNIFORM, (_seed(2024),), {"shape": (n,)}).numpy().astype(np.float64))
    assert u.dtype == np.float64 and 0.0 <= u[0] and u[-1] < 1.0
    ecdf_hi = np.arange(1, n + 1) / n
    ecdf_lo = np.arange(0, n) / n
    d = max(np.max(ecdf_hi - u), np.max(u - ecdf_lo))
    assert d < 1.95 / math.sqrt(n)  # the 0.1% critical value of the KS statistic
    # steps of 2**-24 exactly: the float32 values are k / 2**24
    k = u * 2.0 ** 24
    assert np.array_equal(k, np.round(k))


def test_words_are_uniform_over_bytes_and_uncorrelated_between_neighbours() -> None:
    bits = _bits(77, (100_000,))
    counts = np.bincount(bits & 0xFF, minlength=256)
    expected = bits.size / 256
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 350  # 255 degrees of freedom: the 0.01% tail starts near 345
    u = bits / 2.0 ** 32
    r = np.corrcoef(u[:-1], u[1:])[0, 1]
    assert abs(r) < 4.5 / math.sqrt(bits.size)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_keep_mask_rate_is_within_a_binomial_bound(p: float) -> None:
    n = 100_000
    keep = apply(KEEP, (_seed(5),), {"shape": (n,), "p": p}).numpy()
    assert keep.dtype == np.bool_
    sd = math.sqrt(n * p * (1 - p))
    assert abs(int(keep.sum()) - n * (1 - p)) < 5 * sd


def test_keep_threshold_edges() -> None:
    assert keep_threshold(0.0) == 0  # everything kept
    assert keep_threshold(1.0) == 2 ** 32  # nothing kept: bits < 2**32
    assert keep_threshold(0.5) == 2 ** 31
    assert keep_threshold(1e-12) == 1  # rounds up: keep iff bits / 2**32 >= p
    with pytest.raises(ArgumentError, match="between 0 and 1"):
        keep_threshold(1.5)
    assert apply(KEEP, (_seed(3),), {"shape": (1000,), "p": 0.0}).numpy().all()
    assert not apply(KEEP, (_seed(3),), {"shape": (1000,), "p": 1.0}).numpy().any()


def test_reference_array_function_matches_the_op() -> None:
    assert np.array_equal(philox_bits_array(np, 31, (2, 5), 7), _bits(31, (2, 5), 7))
