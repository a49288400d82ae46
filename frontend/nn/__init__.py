"""``ember.nn``: Parameter, the Module system and every layer, with ``functional``, ``init`` and
``utils`` as submodules, as in ``torch.nn``.

>>> import ember
>>> layer = ember.nn.Linear(3, 2)
>>> layer
Linear(in_features=3, out_features=2, bias=True)
"""

from __future__ import annotations

from ember.nn import functional, init, utils  # noqa: E402
from ember.nn import modules as _modules
from ember.nn.modules import *  # noqa: F401,F403  (every layer; the list is built by the package)
from ember.nn.parameter import Buffer, Parameter

__all__ = ["Parameter", "Buffer", "functional", "init", "utils", *_modules.__all__]
