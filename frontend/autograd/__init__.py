"""ember.autograd: reverse-mode automatic differentiation on a tape of op nodes.

>>> import ember
>>> x = ember.tensor([1.0, 2.0], requires_grad=True)
>>> (y,) = ember.autograd.grad((x * x).sum(), x)
>>> y
tensor([2., 4.])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ember._state import STATE
from ember.autograd.engine import run_backward
from ember.autograd.function import Function, FunctionCtx
from ember.autograd.grad_mode import enable_grad, inference_mode, is_grad_enabled, no_grad, set_grad_enabled


def _seq(x: Any) -> list[Any]:
    if x is None:
        return []
    if isinstance(x, (list, tuple)):
        return list(x)
    return [x]


def _traced_backward(ts: list[Any], gs: list[Any] | None, create_graph: bool, inputs: Any) -> None:
    """``backward()`` while tracing: a step tracer (``ember.compile(step_fn)``) records the backward pass
    into its graph; any other trace cannot hold one."""
    handler = getattr(STATE.tracer, "trace_backward", None)
    if handler is None:
        from ember.runtime.errors import TraceError

        raise TraceError("backward() while tracing a model or function: a traced graph holds no gradients\n"
                         "  fix: to compile a whole training step, pass the step function itself to"
                         " ember.compile(step); else call backward() on the outputs of the compiled model")
    handler(ts, gs, create_graph, None if inputs is None else _seq(inputs))


def backward(
    tensors: Any,
    grad_tensors: Any = None,
    retain_graph: bool | None = None,
    create_graph: bool = False,
    inputs: Any = None,
) -> None:
    """Accumulate gradients of ``tensors`` into the ``.grad`` of the leaves they depend on."""
    ts = _seq(tensors)
    gs = _seq(grad_tensors) or None
    if STATE.tracer is not None:
        _traced_backward(ts, gs, create_graph, inputs)
        return
    retain = create_graph if retain_graph is None else retain_graph
    if inputs is not None:
        ins = _seq(inputs)
        got = run_backward(ts, gs, retain, create_graph, inputs=ins, accumulate=False)
        for t, g in zip(ins, got):
            if g is not None:
                from ember.autograd.engine import _accumulate_leaf

                _accumulate_leaf(t, g, create_graph)
        return
    run_backward(ts, gs, retain, create_graph)


def grad(
    outputs: Any,
    inputs: Any,
    grad_outputs: Any = None,
    retain_graph: bool | None = None,
    create_graph: bool = False,
    allow_unused: bool | None = None,
    materialize_grads: bool = False,
) -> tuple[Any, ...]:
    """Gradients of ``outputs`` with respect to ``inputs``, returned rather than accumulated."""
    outs = _seq(outputs)
    ins: Sequence[Any] = _seq(inputs)
    gos = _seq(grad_outputs) or None
    retain = create_graph if retain_graph is None else retain_graph
    got = run_backward(outs, gos, retain, create_graph, inputs=ins, accumulate=False)
    result = []
    for i, (t, g) in enumerate(zip(ins, got)):
        if g is None:
            if materialize_grads:
                from ember.creation import zeros

                g = zeros(tuple(t.shape), dtype=t.dtype, device=t.device)
            elif not allow_unused:
                from ember.runtime.errors import AutogradError

                raise AutogradError(
                    f"One of the differentiated Tensors (input {i}) appears to not have been used in the"
                    " graph. Set allow_unused=True if this is the desired behavior."
                )
        elif not create_graph:
            g = g.detach()
        result.append(g)
    return tuple(result)


def __getattr__(name: str) -> Any:
    """``gradcheck`` / ``gradgradcheck`` live in ember.testing (which imports autograd), so they are
    re-exported on first use rather than at import time."""
    if name in ("gradcheck", "gradgradcheck"):
        import ember.testing

        return getattr(ember.testing, name)
    raise AttributeError(f"module 'ember.autograd' has no attribute {name!r}")


__all__ = ["Function", "FunctionCtx", "backward", "enable_grad", "grad", "gradcheck", "gradgradcheck",
           "inference_mode", "is_grad_enabled", "no_grad", "set_grad_enabled"]
