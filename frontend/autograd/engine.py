"""The backward engine: runs tape nodes in dependency order and accumulates gradients."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
from ember._state import STATE
from ember.autograd.node import AccumulateGrad, Node
from ember.runtime.errors import AutogradError, InternalError, ShapeError


def _root_edges(tensors: Sequence[Any]) -> list[Any]:
    from ember.dispatch import edge_of

    edges = []
    for i, t in enumerate(tensors):
        if not t.requires_grad:
            raise AutogradError(f"element {i} of tensors does not require grad and does not have a grad_fn")
        edges.append(edge_of(t))
    return edges


def _default_grads(tensors: Sequence[Any], grads: Sequence[Any] | None) -> list[Any]:
    from ember.tensor import Tensor

    out = []
    for i, t in enumerate(tensors):
        g = None if grads is None else grads[i]
        if g is None:
            if t.numel() != 1:
                raise AutogradError("grad can be implicitly created only for scalar outputs")
            from ember.creation import ones

            g = ones(tuple(t.shape), dtype=t.dtype, device=t.device)
        elif not isinstance(g, Tensor):
            from ember.creation import tensor as make

            g = make(g, dtype=t.dtype)
        elif tuple(g.shape) != tuple(t.shape):
            raise ShapeError(
                f"Mismatch in shape: grad_output[{i}] has a shape of {list(g.shape)} and output[{i}] has a"
                f" shape of {list(t.shape)}."
            )
        out.append(g)
    return out


def _dependencies(roots: list[Any]) -> dict[Node, int]:
    deps: dict[Node, int] = {}
    seen: set[int] = set()
    stack = [e[0] for e in roots if e is not None]
    for n in stack:
        deps.setdefault(n, 0)
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        for e in node.next_edges:
            if e is None:
                continue
            child = e[0]
            deps[child] = deps.get(child, 0) + 1
            if id(child) not in seen:
                stack.append(child)
    return deps


def _accumulate(buffer: list[Any], index: int, g: Any) -> None:
    if g is None:
        return
    prev = buffer[index]
    buffer[index] = g if prev is None else prev + g


def _run_hooks(node: Node, index: int, g: Any) -> Any:
    hooks = node._pre_hooks.get(index) if node._pre_hooks else None
    if hooks:
        for hook in hooks:
            new = hook(g)
            if new is not None:
                g = new
    return g


def _apply_node(node: Node, buf: list[Any], buffers: dict[Node, list[Any]], create_graph: bool) -> None:
    """Run one node's gradient rule and route the input gradients into the producers' buffers."""
    in_grads = node.apply(buf, create_graph)
    if len(in_grads) != len(node.next_edges):
        raise InternalError(f"{node.name()} returned {len(in_grads)} gradients for {len(node.next_edges)} inputs")
    for e, g in zip(node.next_edges, in_grads):
        if e is not None and g is not None:
            child_buf = buffers.setdefault(e[0], [None] * e[0].num_outputs)
            _accumulate(child_buf, e[1], g)


def run_backward(
    tensors: Sequence[Any],
    grad_tensors: Sequence[Any] | None,
    retain_graph: bool,
    create_graph: bool,
    inputs: Sequence[Any] | None = None,
    accumulate: bool = True,
) -> list[Any]:
    """Propagate gradients from ``tensors``. With ``inputs``, returns their gradients (autograd.grad)."""
    roots = _root_edges(tensors)
    grads = _default_grads(tensors, grad_tensors)
    deps = _dependencies(roots)
    buffers: dict[Node, list[Any]] = {}
    for e, g in zip(roots, grads):
        buf = buffers.setdefault(e[0], [None] * e[0].num_outputs)
        _accumulate(buf, e[1], g)

    from ember.dispatch import edge_of

    wanted: dict[tuple[int, int], int] = {}  # (id(node), index) -> position in inputs
    if inputs is not None:
        for pos, t in enumerate(inputs):
            if not t.requires_grad:
                raise AutogradError(f"One of the differentiated Tensors (input {pos}) does not require grad")
            e = edge_of(t)
            wanted[(id(e[0]), e[1])] = pos
    captured: list[Any] = [None] * (len(inputs) if inputs is not None else 0)

    ready = [n for n, d in deps.items() if d == 0]
    visited: list[Node] = []
    prev_mode = STATE.grad_enabled
    STATE.grad_enabled = create_graph
    try:
        while ready:
            node = ready.pop()
            visited.append(node)
            buf = buffers.pop(node, None) or [None] * node.num_outputs
            for i in range(node.num_outputs):
                if buf[i] is not None:
                    buf[i] = _run_hooks(node, i, buf[i])
                    pos = wanted.get((id(node), i))
                    if pos is not None:
                        captured[pos] = buf[i]
            if isinstance(node, AccumulateGrad):
                if accumulate and buf[0] is not None:
                    g, buf[0] = buf[0], None  # this frame's `g` is then the engine's only reference
                    owned = _sole_owner(g)
                    _accumulate_leaf(node.variable, g, create_graph, owned)
                    del g
            elif any(x is not None for x in buf):
                _apply_node(node, buf, buffers, create_graph)
            buf = None  # (no reference to a gradient may outlive its use: see _sole_owner)
            for e in node.next_edges:
                if e is None:
                    continue
                deps[e[0]] -= 1
                if deps[e[0]] == 0:
                    ready.append(e[0])
    finally:
        STATE.grad_enabled = prev_mode
        if not retain_graph:
            for node in visited:
                node.release()
    return captured


# references while ``_sole_owner`` runs, when nothing else holds them: to the gradient tensor,
# run_backward's local, the parameter and getrefcount's argument; to its array (or the array's base), the
# tensor's ``_data`` (the view's ``.base``), the local name and getrefcount's argument
_TENSOR_REFS = 3
_ARRAY_REFS = 3


def _sole_owner(g: Any) -> bool:
    """Whether ``g``'s memory is reachable from nothing but ``g``, so ``.grad`` may take it without a copy.

    The test is the one PyTorch's AccumulateGrad makes (a use count of one), on CPython reference
    counts: the same gradient routed to two leaves (``add`` passes it through), a user's ``gradient=``
    seed, a tensor a hook kept, a gradient ``autograd.grad`` returns, any other tensor or view sharing
    the array: each adds a reference, and the first ``.grad`` is then a copy, so a later in-place
    update of ``.grad`` (accumulation, ``zero_grad(set_to_none=False)``, ``p.grad.mul_``) cannot leak
    into another tensor. A contiguous view covering all of its base counts when the base is held by
    that view alone (a reshaped or transposed-back matmul result)."""
    arr = getattr(g, "_data", None)
    if type(arr) is not np.ndarray or sys.getrefcount(g) > _TENSOR_REFS or not arr.flags.writeable:
        return False
    if sys.getrefcount(arr) > _ARRAY_REFS:
        return False
    base = arr.base
    if base is None:
        return True
    return (type(base) is np.ndarray and base.base is None and arr.flags.c_contiguous
            and arr.size == base.size and sys.getrefcount(base) <= _ARRAY_REFS)


def _accumulate_leaf(var: Any, g: Any, create_graph: bool, owned: bool = False) -> None:
    """Add ``g`` into ``var.grad``. ``owned``: nothing else holds ``g``'s memory (``_sole_owner``), so a
    first gradient becomes ``.grad`` as it is instead of as a copy."""
    if tuple(g.shape) != tuple(var.shape):
        raise InternalError(f"gradient of shape {list(g.shape)} for a leaf of shape {list(var.shape)}")
    if not create_graph:
        g = g.detach()
    if g.dtype is not var.dtype:
        g, owned = g.to(var.dtype), True
    if var.grad is None:
        # a copy unless owned: the same gradient may flow to several leaves (add passes g through)
        var.grad = g if create_graph or owned else g.clone()
    elif create_graph:
        var.grad = var.grad + g
    else:
        var.grad._data += g._data
        var.grad._version[0] += 1
