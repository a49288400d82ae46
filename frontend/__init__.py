"""ember: PyTorch-style tensors, autograd and nn, with a graph compiler inside.

``import ember as torch`` works for the API in SEED_API.md. Importing ember loads neither llvmlite nor
cupy: the back ends import them when first used.

>>> import ember
>>> x = ember.ones(2, 2, requires_grad=True)
>>> (x * 3).sum().backward()
>>> x.grad
tensor([[3., 3.],
        [3., 3.]])
"""

from __future__ import annotations

# ruff: noqa: I001  -- the order matters: `from ember.creation import tensor` must come after
# `from ember.tensor import ...`, which binds the submodule `ember.tensor` as a package attribute.

from ember.compiler import dtypes as _dtypes
from ember.compiler.dtypes import DType as dtype  # noqa: N813  (PyTorch spells the type ember.dtype)
from ember.runtime.errors import (
    AutogradError,
    CompileError,
    DeviceError,
    DimError,
    DTypeError,
    EmberError,
    PackageError,
    ParseError,
    ShapeError,
    TraceError,
)
from ember.tensor import Size, Tensor
from ember.device import device
from ember import autograd
from ember.autograd import enable_grad, inference_mode, is_grad_enabled, no_grad, set_grad_enabled
from ember.creation import (
    arange, as_tensor, empty, empty_like, eye, from_numpy, full, full_like, linspace, logspace, normal,
    ones, ones_like, rand, rand_like, randint, randint_like, randn, randn_like, randperm, tensor, zeros,
    zeros_like,
)
from ember.random import get_rng_state, initial_seed, manual_seed, seed, set_rng_state
from ember import api as _api
from ember import _methods
from ember import cuda

__version__ = "0.1.0"

bool = _dtypes.bool_  # noqa: A001  (PyTorch's name)
uint8, int8, int16, int32, int64 = _dtypes.uint8, _dtypes.int8, _dtypes.int16, _dtypes.int32, _dtypes.int64
float16, float32, float64 = _dtypes.float16, _dtypes.float32, _dtypes.float64
half, float, double = float16, float32, float64  # noqa: A001
short, int, long = int16, int32, int64  # noqa: A001


def _bind_api() -> None:
    ns = globals()
    _api.load_all()
    for name, fn in _api.FUNCTIONS.items():
        ns.setdefault(name, fn)
    for name, fn in _api.METHODS.items():
        ns.setdefault(name, fn)
        if name not in Tensor.__dict__:
            setattr(Tensor, name, fn)
    _methods.bind(Tensor, ns)


_bind_api()

# Submodules and entry points loaded on first use, so `import ember` stays fast and never loads llvmlite.
_LAZY_MODULES = ("nn", "optim", "utils", "vision", "jit", "onnx", "testing", "distributions")
_LAZY_ATTRS = {
    "save": "ember.serialization", "load": "ember.serialization",
    "trace": "ember.tracing",
    "compile": "ember.compile_api", "export": "ember.compile_api",
}


def __getattr__(name: str) -> object:
    import importlib

    if name in _LAZY_MODULES:
        return importlib.import_module(f"ember.{name}")
    if name in _LAZY_ATTRS:
        return getattr(importlib.import_module(_LAZY_ATTRS[name]), name)
    raise AttributeError(f"module 'ember' has no attribute {name!r}")


def is_tensor(obj: object) -> object:
    return isinstance(obj, Tensor)


def get_default_dtype() -> dtype:
    return _dtypes.DEFAULT_FLOAT


def promote_types(a: dtype, b: dtype) -> dtype:
    return _dtypes.promote(a, b)


def result_type(a: object, b: object) -> dtype:
    return _dtypes.result_type(a, b)


_num_threads = 0


def set_num_threads(n: int) -> None:
    """Threads used by ember's generated code (and numpy's BLAS where threadpoolctl is installed)."""
    import os

    global _num_threads
    if n < 1:
        raise ValueError(f"set_num_threads expects a positive integer, got {n}")
    _num_threads = n
    os.environ["EMBER_NUM_THREADS"] = str(n)


def get_num_threads() -> int:
    from ember.runtime import settings

    return settings.num_threads()
