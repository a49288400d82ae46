"""``ember.nn.utils``: gradient clipping, parameter/vector conversion, and (from their own files) the
packed-sequence helpers. Each module here is imported and its ``__all__`` re-exported; submodules stay
reachable by name too (``ember.nn.utils.rnn``)."""

from __future__ import annotations

import importlib
import pkgutil

__all__: list[str] = []


def _load_all() -> None:
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        mod = importlib.import_module(f"{__name__}.{info.name}")
        for name in getattr(mod, "__all__", ()):
            globals()[name] = getattr(mod, name)
            if name not in __all__:
                __all__.append(name)


_load_all()
