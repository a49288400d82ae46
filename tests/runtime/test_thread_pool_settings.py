"""How libgomp's idle workers wait: a short bounded spin by default, the user's choice when made."""

from __future__ import annotations

import pytest
from ember.runtime import settings


@pytest.mark.parametrize("user", [{}, {"OMP_WAIT_POLICY": "PASSIVE"}, {"GOMP_SPINCOUNT": "7"},
                                  {"OMP_WAIT_POLICY": "ACTIVE", "GOMP_SPINCOUNT": "0"}])
def test_prepare_thread_pool_respects_the_users_choice(monkeypatch: pytest.MonkeyPatch,
                                                       user: dict[str, str]) -> None:
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    for k, v in user.items():
        monkeypatch.setenv(k, v)
    settings.prepare_thread_pool()
    import os

    if user:
        assert {k: os.environ.get(k) for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT") if k in os.environ} == user
    else:
        assert os.environ["GOMP_SPINCOUNT"] == settings.GOMP_SPIN
        assert "OMP_WAIT_POLICY" not in os.environ
