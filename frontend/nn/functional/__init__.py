"""``ember.nn.functional``: the functional twin of every layer. Each module file in this package is
imported here and its ``__all__`` re-exported, so a new family is a new file and nothing else."""

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
