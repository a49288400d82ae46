"""The global random generator behind rand/randn/dropout/init, seeded by ``ember.manual_seed``.

ember draws from numpy's PCG64 generator; sequences are reproducible under a seed but differ from
PyTorch's (tests compare distributions, not draws).

Dropout draws no mask from this generator: it draws one 63-bit *seed* per call (``draw_seed``) and
computes the mask with the counter-based ``philox_bits`` op (``compiler/ops/random_ops.py``). Under
tracing, ``draw_seed`` returns a new int64 graph input instead (``Tracer.seed_input``), placed after the
user's inputs; the compiled runtime feeds it with ``draw_seeds`` on every call, in the order the trace
met the dropouts, which is the order eager mode draws them. So ``ember.manual_seed(s)`` followed by the
same calls gives the same masks eagerly, in the interpreter and in compiled code, and successive calls
of a compiled model get fresh masks.
"""

from __future__ import annotations

from typing import Any

import numpy as np

_generator = np.random.default_rng()
_seed: int | None = None


def manual_seed(seed: int) -> Any:
    """Seed every random draw ember makes (CPU and, when present, CUDA)."""
    global _generator, _seed
    _seed = int(seed)
    _generator = np.random.default_rng(_seed)
    return _generator


seed = manual_seed


def initial_seed() -> int:
    return -1 if _seed is None else _seed


def generator() -> np.random.Generator:
    return _generator


def get_rng_state() -> Any:
    from ember.creation import tensor

    return tensor(np.frombuffer(repr(_generator.bit_generator.state).encode(), dtype=np.uint8).copy())


def set_rng_state(state: Any) -> None:
    import ast

    text = bytes(np.asarray(state._data, dtype=np.uint8)).decode()
    _generator.bit_generator.state = ast.literal_eval(text)


SEED_INPUT_NAME = "rng_seed"


def _new_seed() -> int:
    return int(_generator.integers(0, 1 << 63, dtype=np.int64))


def draw_seed() -> Any:
    """A seed for one counter-based draw (an int64 tensor of shape []): from the generator eagerly, a
    fresh graph input (fed per call by the runtime) while tracing."""
    from ember._state import STATE

    if STATE.tracer is not None:
        return STATE.tracer.seed_input()
    from ember.creation import from_numpy

    return from_numpy(np.array(_new_seed(), dtype=np.int64))


def draw_seeds(count: int) -> list[Any]:
    """``count`` seeds for one call of a compiled graph with ``count`` seed inputs, drawn in input order."""
    from ember.creation import from_numpy

    return [from_numpy(np.array(_new_seed(), dtype=np.int64)) for _ in range(count)]


def seed_input_count(graph: Any, num_user_tensors: int) -> int:
    """How many of a traced graph's runtime inputs are seed inputs: they follow the user's tensors."""
    return len(graph.user_inputs) - num_user_tensors
