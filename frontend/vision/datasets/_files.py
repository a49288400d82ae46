"""Shared helpers of the on-disk datasets: finding a file in the folders torchvision uses, reading it
(gzip transparently) and reporting bad files as ``PackageError`` with the path in the message."""

from __future__ import annotations

import gzip
import os
from collections.abc import Sequence

from ember.runtime.errors import PackageError


def find_file(root: str, names: Sequence[str], subdirs: Sequence[str]) -> str:
    """The first existing ``root/<subdir>/<name>`` (``<name>`` or ``<name>.gz``); a FileNotFoundError
    listing the places looked at, since nothing is ever downloaded."""
    tried = []
    for sub in subdirs:
        for name in names:
            for candidate in (name, name + ".gz"):
                path = os.path.join(root, sub, candidate)
                tried.append(path)
                if os.path.isfile(path):
                    return path
    raise FileNotFoundError(
        f"dataset file {names[0]!r} not found; ember never downloads data sets, put the files in one of: "
        + ", ".join(tried)
    )


def read_bytes(path: str) -> bytes:
    """The file's contents, decompressed when it is gzip (by name or by magic bytes)."""
    with open(path, "rb") as f:
        raw = f.read()
    if path.endswith(".gz") or raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise PackageError(f"{path}: not a valid gzip file ({e}); the file may be truncated") from None
    return raw
