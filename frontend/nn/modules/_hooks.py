"""Forward and backward hooks of ``Module.__call__``, kept apart from the fast path (no hooks).

Backward hooks follow PyTorch's full-backward-hook design: the module's tensor inputs and outputs pass
through identity autograd functions; the one on the outputs records ``grad_output``, the one on the
inputs sees ``grad_input`` and calls the hooks, whose result may replace it.
"""

from __future__ import annotations

from typing import Any

from ember.autograd.function import Function
from ember.tensor import Tensor


class _HookState:
    def __init__(self, module: Any) -> None:
        self.module = module
        self.grad_output: tuple[Any, ...] | None = None
        self.n_inputs = 0

    def call_hooks(self, grad_input: tuple[Any, ...]) -> tuple[Any, ...]:
        for hook in list(self.module._backward_hooks.values()):
            res = hook(self.module, grad_input, self.grad_output)
            if res is not None:
                res = res if isinstance(res, tuple) else (res,)
                if len(res) != len(grad_input):
                    raise RuntimeError(
                        f"Backward hook returned an invalid number of grad_input, got {len(res)}, but"
                        f" expected {len(grad_input)}"
                    )
                grad_input = res
        return grad_input


class _InputsHook(Function):
    @staticmethod
    def forward(ctx: Any, state: _HookState, *xs: Tensor) -> tuple[Tensor, ...]:
        ctx.state = state
        return tuple(xs)

    @staticmethod
    def backward(ctx: Any, *grads: Any) -> tuple[Any, ...]:
        return (None, *ctx.state.call_hooks(tuple(grads)))


class _OutputsHook(Function):
    @staticmethod
    def forward(ctx: Any, state: _HookState, *xs: Tensor) -> tuple[Tensor, ...]:
        ctx.state = state
        return tuple(xs)

    @staticmethod
    def backward(ctx: Any, *grads: Any) -> tuple[Any, ...]:
        state = ctx.state
        state.grad_output = tuple(grads)
        if state.n_inputs == 0:  # no input needs a gradient: the hooks run now, with grad_input None
            state.call_hooks((None,))
        return (None, *grads)


def _wrap(fn: type, state: _HookState, values: Any) -> tuple[Any, int]:
    """Pass the grad-requiring tensors of ``values`` (a tensor or a tuple/list) through ``fn``."""
    single = isinstance(values, Tensor)
    items = [values] if single else list(values) if isinstance(values, (tuple, list)) else None
    if items is None:
        return values, 0
    pos = [i for i, v in enumerate(items) if isinstance(v, Tensor) and v.requires_grad]
    if not pos:
        return values, 0
    wrapped = fn.apply(state, *(items[i] for i in pos))
    for i, w in zip(pos, wrapped):
        items[i] = w
    if single:
        return items[0], len(pos)
    return type(values)(items) if isinstance(values, tuple) else items, len(pos)


def _run_pre_hooks(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any]:
    for hid, hook in list(module._forward_pre_hooks.items()):
        if hid in module._forward_pre_hooks_with_kwargs:
            res = hook(module, args, kwargs)
            if res is not None:
                args, kwargs = res
        else:
            res = hook(module, args)
            if res is not None:
                args = res if isinstance(res, tuple) else (res,)
    return args, kwargs


def call_with_hooks(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``module.forward`` with its pre-hooks, forward hooks and backward hooks."""
    from ember._state import STATE

    args, kwargs = _run_pre_hooks(module, args, kwargs)
    state = None
    if module._backward_hooks and STATE.grad_enabled and STATE.tracer is None:
        state = _HookState(module)
        args, state.n_inputs = _wrap(_InputsHook, state, args)
    out = module.forward(*args, **kwargs)
    for hid, hook in list(module._forward_hooks.items()):
        if hid in module._forward_hooks_with_kwargs:
            res = hook(module, args, kwargs, out)
        else:
            res = hook(module, args, out)
        if res is not None:
            out = res
    if state is not None:
        out, _ = _wrap(_OutputsHook, state, out)
    return out
