"""Hand-written API adapters, for PyTorch signatures that are more than "tensor inputs, then attributes":
varargs sizes (``x.view(2, 3)``), ``alpha=`` scalings, ``x.max()`` vs ``x.max(dim)``, aliases.

Every module in this package is imported here (no list to keep in step); functions decorated with
``@method`` become both ``ember.<name>`` and ``Tensor.<name>``, and win over the generic bindings that
``ember._methods`` makes from the registry.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import Any

METHODS: dict[str, Callable[..., Any]] = {}   # ember.<name> and Tensor.<name>
FUNCTIONS: dict[str, Callable[..., Any]] = {}  # ember.<name> only


def method(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Expose ``fn`` as ``ember.<name>`` and as the Tensor method ``<name>``."""
    METHODS[fn.__name__] = fn
    return fn


def function(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Expose ``fn`` as ``ember.<name>`` only."""
    FUNCTIONS[fn.__name__] = fn
    return fn


def alias(name: str, fn: Callable[..., Any], *, as_method: bool = True) -> None:
    (METHODS if as_method else FUNCTIONS)[name] = fn


def load_all() -> None:
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")
