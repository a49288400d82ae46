"""Every environment-backed setting of ember, in one place.

Settings are read when used, never at import time, so tests and users can change them at any point.
``settings.override(DEBUG=2)`` changes them for a scope:

>>> from ember.runtime import settings
>>> with settings.override(DEBUG=3):
...     settings.get("DEBUG")
3

| name            | type | meaning                                                             |
|-----------------|------|---------------------------------------------------------------------|
| EMBER_DEBUG     | int  | 1 kernel count, compile time, cache hits; 2 per-kernel timing; 3 IR per pass; 4 code |
| EMBER_DUMP_IR   | str  | folder: one numbered IR file per pass                               |
| EMBER_CHECKS    | bool | verify the graph after every pass                                   |
| EMBER_CACHE_DIR | str  | compile cache folder ($XDG_CACHE_HOME/ember, ~/.cache/ember); off or 0: none |
| EMBER_NUM_THREADS | int | threads used by generated code (default: all cores)                |
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

_DEFAULTS: dict[str, Any] = {
    "DEBUG": 0,
    "DUMP_IR": "",
    "CHECKS": False,
    "CACHE_DIR": "",
    "NUM_THREADS": 0,
}
_overrides: list[dict[str, Any]] = []


def _convert(name: str, raw: str) -> Any:
    default = _DEFAULTS[name]
    if isinstance(default, bool):
        return raw.strip().lower() not in ("", "0", "false", "no", "off")
    if isinstance(default, int):
        try:
            return int(raw)
        except ValueError:
            raise ValueError(f"EMBER_{name}={raw!r} is not an integer") from None
    return raw


def get(name: str) -> Any:
    """The current value of setting ``name`` (without the ``EMBER_`` prefix)."""
    if name not in _DEFAULTS:
        raise KeyError(f"unknown ember setting {name!r}; known: {', '.join(sorted(_DEFAULTS))}")
    for scope in reversed(_overrides):
        if name in scope:
            return scope[name]
    raw = os.environ.get("EMBER_" + name)
    return _DEFAULTS[name] if raw is None else _convert(name, raw)


@contextlib.contextmanager
def override(**values: Any) -> Iterator[None]:
    """Set settings for the duration of a ``with`` block."""
    for name in values:
        if name not in _DEFAULTS:
            raise KeyError(f"unknown ember setting {name!r}; known: {', '.join(sorted(_DEFAULTS))}")
    _overrides.append(values)
    try:
        yield
    finally:
        _overrides.pop()


def num_threads() -> int:
    """Threads for generated code: EMBER_NUM_THREADS, else what ember.set_num_threads chose, else all cores."""
    n = get("NUM_THREADS")
    return n if n > 0 else (os.cpu_count() or 1)


_CACHE_OFF = ("off", "0", "false", "no", "none")


def cache_dir() -> str | None:
    """The compile cache's folder, or None when EMBER_CACHE_DIR disables it (``off`` or ``0``).

    Unset (or empty): ``$XDG_CACHE_HOME/ember``, else ``~/.cache/ember`` (the XDG base directory rule, read
    at every use like every other setting)."""
    value = str(get("CACHE_DIR")).strip()
    if value.lower() in _CACHE_OFF:
        return None
    if value:
        return os.path.expanduser(value)
    base = os.environ.get("XDG_CACHE_HOME", "").strip()
    if not os.path.isabs(base):  # the spec says a relative XDG_CACHE_HOME is invalid and is ignored
        base = os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "ember")


GOMP_SPIN = "50000"  # idle-worker spin iterations before sleeping (0.7-2.6 ms of CPU on the Zen 4 VM)


def prepare_thread_pool() -> None:
    """Set how libgomp's idle workers wait, before libgomp is loaded (it reads the environment once).

    Unless the user chose (``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT``), a worker spins briefly after a
    parallel region and then sleeps. Sleeping at once (``PASSIVE``) made every region wait for a woken
    vCPU: MLP at batch 64 on 2 threads took 1.1-1.5 ms instead of 0.55 once the process had paused
    for 50 ms. Spinning without bound (libgomp's ``ACTIVE``) is worse the other way: on a loaded 2-core
    machine an idle spinner steals the core the caller needs (a 0.7 ms kernel took 32 ms). A spin
    of 50,000 iterations keeps back-to-back regions warm and gives the core up within a few ms (measured:
    0.7-2.6 ms of process CPU during a sleep right after a 2-thread MLP call, median about 1.8 ms)."""
    if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
        os.environ["GOMP_SPINCOUNT"] = GOMP_SPIN

