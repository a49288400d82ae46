"""``repr`` of tensors in PyTorch's format: ``tensor([[1., 2.]], requires_grad=True)``."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ember.compiler import dtypes as _dt

THRESHOLD = 1000
EDGE = 3
LINEWIDTH = 80


class _Formatter:
    def __init__(self, values: np.ndarray, dtype: Any) -> None:
        self.floating = dtype.is_floating_point
        self.is_bool = dtype is _dt.bool_
        self.int_mode = True
        self.sci = False
        finite = values[np.isfinite(values)] if self.floating and values.size else values
        if self.floating and finite.size:
            nonzero = np.abs(finite[finite != 0]).astype(np.float64)
            self.int_mode = bool(np.all(finite == np.ceil(finite)))
            if nonzero.size:
                hi, lo = nonzero.max(), nonzero.min()
                if self.int_mode:
                    self.sci = hi > 1e8
                else:
                    self.sci = hi / lo > 1000.0 or hi > 1e8 or lo < 1e-4
        self.width = max((len(self.raw(v)) for v in values.reshape(-1)), default=1)

    def raw(self, v: Any) -> str:
        if self.is_bool:
            return str(bool(v))
        if not self.floating:
            return str(int(v))
        v = float(v)
        if math.isnan(v) or math.isinf(v):
            return str(v).replace("inf", "inf")
        if self.sci:
            return f"{v:.4e}"
        if self.int_mode:
            return f"{v:.0f}."
        return f"{v:.4f}"

    def __call__(self, v: Any) -> str:
        return self.raw(v).rjust(self.width)


def _summarize(a: np.ndarray) -> np.ndarray:
    """The elements a summarized print shows (the first and last EDGE along every dim), flattened."""
    if a.ndim == 0:
        return a.reshape(1)
    n = a.shape[0]
    idx = list(range(EDGE)) + list(range(n - EDGE, n)) if n > 2 * EDGE else list(range(n))
    if a.ndim == 1:
        return a[idx]
    return np.concatenate([_summarize(a[i]) for i in idx])


def _body(a: np.ndarray, fmt: _Formatter, indent: int, summarize: bool) -> str:
    if a.ndim == 0:
        return fmt(a.item())
    if a.ndim == 1:
        items = [fmt(v) for v in a] if not (summarize and a.shape[0] > 2 * EDGE) else \
            [fmt(v) for v in a[:EDGE]] + ["..."] + [fmt(v) for v in a[-EDGE:]]
        per_line = max(1, (LINEWIDTH - indent) // (fmt.width + 2))
        lines = [", ".join(items[i:i + per_line]) for i in range(0, len(items), per_line)]
        return "[" + (",\n" + " " * (indent + 1)).join(lines) + "]"
    if summarize and a.shape[0] > 2 * EDGE:
        rows = [_body(r, fmt, indent + 1, summarize) for r in a[:EDGE]] + ["..."] + \
               [_body(r, fmt, indent + 1, summarize) for r in a[-EDGE:]]
    else:
        rows = [_body(r, fmt, indent + 1, summarize) for r in a]
    sep = "," + "\n" * (a.ndim - 1) + " " * (indent + 1)
    return "[" + sep.join(rows) + "]"


def format_array(a: np.ndarray, dtype: Any, indent: int) -> str:
    summarize = a.size > THRESHOLD
    shown = _summarize(a) if summarize else a
    fmt = _Formatter(np.asarray(shown), dtype)
    return _body(a, fmt, indent, summarize)


def tensor_repr(t: Any) -> str:
    prefix = "tensor("
    arr = t._host()
    suffix = []
    if arr.size == 0:
        body = "[]"
        if arr.ndim > 1:
            suffix.append(f"size={tuple(arr.shape)}")
    else:
        body = format_array(arr, t.dtype, len(prefix))
    if t.device.type != "cpu":
        suffix.append(f"device='{t.device}'")
    default_int = t.dtype is _dt.int64
    if not (t.dtype is _dt.DEFAULT_FLOAT or (default_int and arr.size) or t.dtype is _dt.bool_):
        suffix.append(f"dtype={t.dtype!r}")
    if t.grad_fn is not None:
        suffix.append(f"grad_fn=<{t.grad_fn.name()}>")
    elif t.requires_grad:
        suffix.append("requires_grad=True")
    return prefix + body + "".join(", " + s for s in suffix) + ")"
