"""``nn.DataParallel`` lives in ``ember.nn.parallel`` (as in ``torch.nn.parallel``); this module puts it in
``ember.nn`` with the other layers."""

from __future__ import annotations

from ember.cuda._transfer import ToDevice as _ToDevice  # noqa: F401  (the differentiable device copy)
from ember.nn.parallel import DataParallel
from ember.nn.parallel.replicate import _replica
from ember.nn.parallel.scatter_gather import gather, scatter, to_device  # noqa: F401


def replicate(module, device):  # noqa: ANN001,ANN201  (one replica, the signature this module had)
    return _replica(module, device)


__all__ = ["DataParallel"]
