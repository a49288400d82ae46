"""``repr`` of tensors in PyTorch's format: ``tensor([[1., 2.]], requires_grad=True)``.

The rules follow PyTorch's printer so output can be compared character for character: one formatter per
tensor decides integer mode (every finite value is whole: ``1.``), scientific mode (range over 1000,
values over 1e8 or under 1e-4) and a common width from the non-zero finite values; tensors over
``threshold`` elements show ``edgeitems`` per side with ``...``; suffixes wrap at ``linewidth``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from ember.compiler import dtypes as _dt


@dataclass
class PrintOptions:
    precision: int = 4
    threshold: float = 1000
    edgeitems: int = 3
    linewidth: int = 80
    sci_mode: bool | None = None


OPTIONS = PrintOptions()
_PROFILES = {
    "default": PrintOptions(),
    "short": PrintOptions(precision=2, threshold=1000, edgeitems=2, linewidth=80),
    "full": PrintOptions(precision=4, threshold=math.inf, edgeitems=3, linewidth=80),
}


def set_printoptions(
    precision: int | None = None,
    threshold: float | None = None,
    edgeitems: int | None = None,
    linewidth: int | None = None,
    profile: str | None = None,
    sci_mode: bool | None = None,
) -> None:
    """Set how tensors print (PyTorch's options; ``profile`` is 'default', 'short' or 'full').

    >>> import ember
    >>> ember.set_printoptions(precision=2)
    >>> ember.tensor([1.2345])
    tensor([1.23])
    >>> ember.set_printoptions(profile="default")
    """
    if profile is not None:
        base = _PROFILES[profile]
        OPTIONS.precision, OPTIONS.threshold = base.precision, base.threshold
        OPTIONS.edgeitems, OPTIONS.linewidth = base.edgeitems, base.linewidth
    if precision is not None:
        OPTIONS.precision = precision
    if threshold is not None:
        OPTIONS.threshold = threshold
    if edgeitems is not None:
        OPTIONS.edgeitems = edgeitems
    if linewidth is not None:
        OPTIONS.linewidth = linewidth
    OPTIONS.sci_mode = sci_mode


class _Formatter:
    """Chooses one format for every element of a tensor, as PyTorch's printer does."""

    def __init__(self, values: np.ndarray, dtype: Any) -> None:
        self.floating = dtype.is_floating_point
        self.is_bool = dtype is _dt.bool_
        self.int_mode = True
        self.sci = False
        self.width = 1
        flat = values.reshape(-1)
        if not self.floating:
            self.width = max((len(self._plain(v)) for v in flat), default=1)
            return
        vals = flat.astype(np.float64)
        finite = vals[np.isfinite(vals) & (vals != 0)]
        if finite.size:  # with no non-zero finite value PyTorch keeps integer mode, even if sci is forced
            self._choose(finite)

    def _choose(self, finite: np.ndarray) -> None:
        p = OPTIONS.precision
        mags = np.abs(finite)
        hi, lo = mags.max(), mags.min()
        self.int_mode = bool(np.all(finite == np.ceil(finite)))
        natural = bool(hi / lo > 1000.0 or hi > 1.0e8 or lo < 1.0e-4)
        self.sci = natural if OPTIONS.sci_mode is None else OPTIONS.sci_mode
        if self.sci:
            strs = [f"{v:.{p}e}" for v in finite]
        else:
            strs = [f"{v:.0f}." if self.int_mode else f"{v:.{p}f}" for v in finite]
        self.width = max(len(s) for s in strs)

    def _plain(self, v: Any) -> str:
        return str(bool(v)) if self.is_bool else str(int(v))

    def __call__(self, v: Any) -> str:
        if not self.floating:
            text = self._plain(v)
        else:
            v = float(v)
            p = OPTIONS.precision
            if self.sci:
                text = f"{v:.{p}e}"
            elif self.int_mode:
                text = f"{v:.0f}" + ("" if math.isinf(v) or math.isnan(v) else ".")
            else:
                text = f"{v:.{p}f}"
        return text.rjust(self.width)


def _edges(n: int, summarize: bool) -> tuple[list[int], list[int]]:
    e = OPTIONS.edgeitems
    if summarize and n > 2 * e:
        return list(range(e)), list(range(n - e, n))
    return list(range(n)), []


def _summarized(a: np.ndarray, summarize: bool) -> np.ndarray:
    """The elements a print shows (edge items along every dim), for the formatter to size."""
    if a.ndim == 0:
        return a.reshape(1)
    head, tail = _edges(a.shape[0], summarize)
    if a.ndim == 1:
        return a[head + tail]
    parts = [_summarized(a[i], summarize) for i in head + tail]
    return np.concatenate(parts) if parts else np.zeros(0, a.dtype)


def _vector(a: np.ndarray, fmt: _Formatter, indent: int, summarize: bool) -> str:
    head, tail = _edges(a.shape[0], summarize)
    items = [fmt(a[i]) for i in head] + ([" ..."] if tail else []) + [fmt(a[i]) for i in tail]
    per_line = max(1, int(math.floor((OPTIONS.linewidth - indent) / (fmt.width + 2))))
    lines = [", ".join(items[i : i + per_line]) for i in range(0, len(items), per_line)]
    return "[" + (",\n" + " " * (indent + 1)).join(lines) + "]"


def _body(a: np.ndarray, fmt: _Formatter, indent: int, summarize: bool) -> str:
    if a.ndim == 0:
        return fmt(a.item())
    if a.ndim == 1:
        return _vector(a, fmt, indent, summarize)
    head, tail = _edges(a.shape[0], summarize)
    rows = [_body(a[i], fmt, indent + 1, summarize) for i in head]
    if tail:
        rows += ["..."] + [_body(a[i], fmt, indent + 1, summarize) for i in tail]
    return "[" + ("," + "\n" * (a.ndim - 1) + " " * (indent + 1)).join(rows) + "]"


def format_array(a: np.ndarray, dtype: Any, indent: int) -> str:
    """The bracketed body of a tensor's repr (no ``tensor(`` prefix, no suffixes)."""
    if a.size == 0:
        return "[]"
    summarize = a.size > OPTIONS.threshold
    fmt = _Formatter(_summarized(a, summarize), dtype)
    return _body(a, fmt, indent, summarize)


def _with_suffixes(text: str, suffixes: list[str], indent: int) -> str:
    out = [text]
    last = len(text) - text.rfind("\n") + 1
    for s in suffixes:
        if last + len(s) + 2 > OPTIONS.linewidth:
            out.append(",\n" + " " * indent + s)
            last = indent + len(s)
        else:
            out.append(", " + s)
            last += len(s) + 2
    return "".join(out) + ")"


def tensor_repr(t: Any) -> str:
    prefix = "tensor("
    arr = t._host()
    suffixes = []
    if t.device.type != "cpu":
        suffixes.append(f"device='{t.device}'")
    if arr.size == 0:
        if arr.ndim != 1:
            suffixes.append(f"size={tuple(arr.shape)}")
        if t.dtype is not _dt.DEFAULT_FLOAT:
            suffixes.append(f"dtype={t.dtype!r}")
    elif t.dtype not in (_dt.DEFAULT_FLOAT, _dt.int64, _dt.bool_):
        suffixes.append(f"dtype={t.dtype!r}")
    body = format_array(arr, t.dtype, len(prefix))
    if t.grad_fn is not None:
        suffixes.append(f"grad_fn=<{t.grad_fn.name()}>")
    elif t.requires_grad:
        suffixes.append("requires_grad=True")
    return _with_suffixes(prefix + body, suffixes, len(prefix))
