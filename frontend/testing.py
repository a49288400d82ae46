"""Checks for numerics and gradients, for ember's own tests and for users writing ops or Functions.

* ``assert_close(actual, expected)`` compares ember tensors, torch tensors, numpy arrays and numbers with
  PyTorch's per-dtype default tolerances.
* ``gradcheck(fn, inputs)`` compares the Jacobian autograd computes with central finite differences in
  float64; ``gradgradcheck`` does the same for the gradient itself (second order), by gradchecking the
  function ``(inputs, grad_outputs) -> grad`` that ``autograd.grad(create_graph=True)`` builds.

Finite differences perturb the inputs' storage directly (and restore it): a test utility may touch
memory that ops may not, and doing so records nothing on the tape.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

# (rtol, atol) by dtype name, as torch.testing.assert_close uses
_TOLERANCES = {"float16": (1e-3, 1e-5), "bfloat16": (1.6e-2, 1e-5), "float32": (1.3e-6, 1e-5),
               "float64": (1e-7, 1e-7)}


def _to_numpy(x: Any) -> np.ndarray:
    """An array from an ember tensor, a torch tensor, a numpy array or a (nested list of) number(s)."""
    from ember.tensor import Tensor

    if isinstance(x, Tensor):
        return np.asarray(x._host())
    if hasattr(x, "detach") and hasattr(x, "cpu") and hasattr(x, "numpy"):  # a torch tensor
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _dtype_name(x: Any, arr: np.ndarray) -> str:
    dt = getattr(x, "dtype", None)
    if dt is None:
        return arr.dtype.name
    return str(getattr(dt, "name", dt)).replace("torch.", "")


def assert_close(actual: Any, expected: Any, rtol: float | None = None, atol: float | None = None, *,
                 equal_nan: bool = True, check_dtype: bool = True, msg: str = "") -> None:
    """Raise AssertionError unless ``|actual - expected| <= atol + rtol * |expected|`` elementwise, with
    equal shapes (and dtypes when ``check_dtype``). Integers and bools must match exactly.

    >>> import ember
    >>> assert_close(ember.tensor([1.0, 2.0]), [1.0, 2.0 + 1e-7], check_dtype=False)
    """
    a, e = _to_numpy(actual), _to_numpy(expected)
    prefix = f"{msg}: " if msg else ""
    if a.shape != e.shape:
        raise AssertionError(f"{prefix}shapes differ: {list(a.shape)} vs expected {list(e.shape)}")
    da, de = _dtype_name(actual, a), _dtype_name(expected, e)
    if check_dtype and da != de:
        raise AssertionError(f"{prefix}dtypes differ: {da} vs expected {de}")
    default = _TOLERANCES.get(da if da in _TOLERANCES else de, (0.0, 0.0))
    rtol = default[0] if rtol is None else rtol
    atol = default[1] if atol is None else atol
    if a.dtype.kind in "biu" and e.dtype.kind in "biu":
        bad = a != e
    else:
        a64, e64 = a.astype(np.float64), e.astype(np.float64)
        with np.errstate(invalid="ignore", over="ignore"):
            ok = np.abs(a64 - e64) <= atol + rtol * np.abs(e64)
        ok |= a64 == e64  # equal infinities
        if equal_nan:
            ok |= np.isnan(a64) & np.isnan(e64)
        bad = ~ok
    if np.any(bad):
        _report_mismatch(prefix, a, e, bad, rtol, atol)


def _report_mismatch(prefix: str, a: np.ndarray, e: np.ndarray, bad: np.ndarray, rtol: float,
                     atol: float) -> None:
    first = tuple(int(i) for i in np.argwhere(bad)[0]) if a.ndim else ()
    a64, e64 = a.astype(np.float64), e.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        diff = np.abs(a64 - e64)
        rel = diff / np.abs(e64)
    diff_max = np.nanmax(np.where(bad, diff, 0.0)) if diff.size else 0.0
    rel_max = np.nanmax(np.where(bad, rel, 0.0)) if rel.size else 0.0
    raise AssertionError(
        f"{prefix}tensors are not close: {int(np.sum(bad))} / {bad.size} elements mismatch"
        f" (rtol={rtol}, atol={atol}); greatest absolute difference {diff_max}, greatest relative"
        f" difference {rel_max}; first at index {list(first)}: {a[first]!r} vs expected {e[first]!r}"
    )


# ---- gradient checks ------------------------------------------------------------------------------


def _outputs(fn: Callable[..., Any], inputs: Sequence[Any]) -> list[Any]:
    from ember.tensor import Tensor

    out = fn(*inputs)
    outs = list(out) if isinstance(out, (tuple, list)) else [out]
    return [o for o in outs if isinstance(o, Tensor) and o.dtype.is_floating_point]


def _diff_inputs(inputs: Sequence[Any]) -> list[int]:
    from ember.tensor import Tensor

    return [i for i, x in enumerate(inputs) if isinstance(x, Tensor) and x.requires_grad]


def _numeric_jacobian(fn: Callable[..., Any], inputs: Sequence[Any], i: int, eps: float) -> list[np.ndarray]:
    """d outputs / d inputs[i] by central differences: one (n_out, n_in) matrix per output."""
    x = inputs[i]
    data = x._data
    cols: list[list[np.ndarray]] = []
    for flat in range(data.size):
        idx = np.unravel_index(flat, data.shape) if data.ndim else ()
        old = data[idx].copy()
        # grad mode stays on: fn may itself differentiate (gradgradcheck's first derivative does)
        data[idx] = old + eps
        plus = [o._host().astype(np.float64).ravel() for o in _outputs(fn, inputs)]
        data[idx] = old - eps
        minus = [o._host().astype(np.float64).ravel() for o in _outputs(fn, inputs)]
        data[idx] = old
        cols.append([(p - m) / (2 * eps) for p, m in zip(plus, minus)])
    n_out = len(_outputs(fn, inputs))
    return [np.stack([c[k] for c in cols], axis=1) if cols else np.zeros((0, 0)) for k in range(n_out)]


def _analytic_jacobian(fn: Callable[..., Any], inputs: Sequence[Any],
                       wrt: list[int]) -> list[list[np.ndarray]]:
    """jac[k][j]: d output k / d inputs[wrt[j]], one backward pass per output element."""
    from ember import autograd
    from ember.creation import zeros_like

    outs = _outputs(fn, inputs)
    jac = [[np.zeros((o.numel(), inputs[i].numel())) for i in wrt] for o in outs]
    targets = [inputs[i] for i in wrt]
    for k, o in enumerate(outs):
        if not o.requires_grad:
            continue
        for r in range(o.numel()):
            seed = zeros_like(o)
            seed._data.reshape(-1)[r] = 1.0  # zeros_like is contiguous: reshape is a view
            grads = autograd.grad(o, targets, grad_outputs=seed, retain_graph=True, allow_unused=True)
            for j, g in enumerate(grads):
                if g is not None:
                    jac[k][j][r] = g._host().astype(np.float64).ravel()
    return jac


def gradcheck(fn: Callable[..., Any], inputs: Any, eps: float = 1e-6, atol: float = 1e-5, rtol: float = 1e-3,
              raise_exception: bool = True) -> bool:
    """Compare autograd's Jacobian of ``fn`` with central finite differences, for every input that
    requires grad (give them as float64: float32 differences are too coarse).

    >>> import ember
    >>> x = ember.tensor([0.5, 1.5], dtype=ember.float64, requires_grad=True)
    >>> gradcheck(lambda t: (t * t).sin(), (x,))
    True
    """
    inputs = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    wrt = _diff_inputs(inputs)
    if not wrt:
        raise ValueError("gradcheck: no input requires grad (set requires_grad=True on float64 inputs)")
    analytic = _analytic_jacobian(fn, inputs, wrt)
    for j, i in enumerate(wrt):
        numeric = _numeric_jacobian(fn, inputs, i, eps)
        for k, num in enumerate(numeric):
            ana = analytic[k][j]
            if not np.allclose(ana, num, rtol=rtol, atol=atol, equal_nan=True):
                if not raise_exception:
                    return False
                worst = np.unravel_index(np.nanargmax(np.abs(ana - num)), ana.shape)
                raise AssertionError(
                    f"gradcheck: Jacobian mismatch for output {k} with respect to input {i}:\n"
                    f"numerical:\n{num}\nanalytical:\n{ana}\nworst at (output element, input element)"
                    f" {tuple(int(w) for w in worst)}"
                )
    return True


def gradgradcheck(fn: Callable[..., Any], inputs: Any, grad_outputs: Any = None, eps: float = 1e-6,
                  atol: float = 1e-5, rtol: float = 1e-3, raise_exception: bool = True) -> bool:
    """gradcheck the first derivative: (inputs, v) -> v^T J, built with create_graph=True, so every
    gradient rule used must itself be differentiable."""
    from ember import autograd
    from ember.creation import randn_like

    inputs = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    wrt = _diff_inputs(inputs)
    outs = _outputs(fn, inputs)
    if grad_outputs is None:
        grad_outputs = tuple(randn_like(o).requires_grad_() for o in outs)
    grad_outputs = tuple(grad_outputs) if isinstance(grad_outputs, (tuple, list)) else (grad_outputs,)
    n = len(inputs)

    def first_derivative(*args: Any) -> tuple[Any, ...]:
        outs = _outputs(fn, args[:n])
        targets = [args[i] for i in wrt]
        return autograd.grad(outs, targets, grad_outputs=list(args[n:]), create_graph=True, allow_unused=True,
                             materialize_grads=True)

    return gradcheck(first_derivative, inputs + grad_outputs, eps=eps, atol=atol, rtol=rtol,
                     raise_exception=raise_exception)


__all__ = ["assert_close", "gradcheck", "gradgradcheck"]
