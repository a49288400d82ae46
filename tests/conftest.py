"""Suite-wide fixtures.

Every test gets its own empty compile cache folder (``EMBER_CACHE_DIR``), inherited by the subprocesses
it starts: CI never writes into the home directory, and no test can load machine code another test
compiled (tests that wrap compiler functions, like the bisector's injected bugs, would otherwise get
the clean code from the cache).
"""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _ember_cache_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> str:
    folder = str(tmp_path_factory.mktemp("ember-cache"))
    monkeypatch.setenv("EMBER_CACHE_DIR", folder)
    return folder
