"""The global random generator behind rand/randn/dropout/init, seeded by ``ember.manual_seed``.

ember draws from numpy's PCG64 generator; sequences are reproducible under a seed but differ from
PyTorch's (tests compare distributions, not draws).
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
