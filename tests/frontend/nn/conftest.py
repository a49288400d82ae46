"""Shared helpers for nn tests: run an ember module and a torch module with identical weights (copied
through state_dict) and compare outputs, input gradients, parameter gradients and buffers."""

from __future__ import annotations

from typing import Any

import ember
import numpy as np
import pytest
import torch

DTYPES = ((ember.float32, torch.float32, np.float32), (ember.float64, torch.float64, np.float64))


def _flat(out: Any) -> list[Any]:
    """Tensors of a (nested) module output, in order."""
    if out is None:
        return []
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in _flat(o)]
    return [out]


def _is_float(a: np.ndarray) -> bool:
    return np.issubdtype(np.asarray(a).dtype, np.floating)


def _to_np(t: Any) -> np.ndarray:
    if isinstance(t, torch.Tensor):
        return t.detach().cpu().numpy()
    return np.asarray(t.detach().numpy())


def copy_state(ember_mod: ember.nn.Module, torch_mod: torch.nn.Module) -> None:
    """Load ember's state_dict (keys and shapes must match PyTorch's) into the torch module."""
    state = {k: torch.from_numpy(np.array(_to_np(v))) for k, v in ember_mod.state_dict().items()}
    torch_keys = set(torch_mod.state_dict())
    assert set(state) == torch_keys, f"state_dict keys: ember {sorted(state)} torch {sorted(torch_keys)}"
    torch_mod.load_state_dict(state)


def _assert_close(a: Any, b: Any, rtol: float, atol: float, what: str) -> None:
    a, b = _to_np(a), _to_np(b)
    assert a.shape == b.shape, f"{what}: shape {a.shape} vs torch {b.shape}"
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=what)


def compare_module(ember_mod: ember.nn.Module, torch_mod: torch.nn.Module, *inputs_np: np.ndarray,
                   rtol: float = 1e-5, atol: float = 1e-6, train: bool = True, rtol64: float = 1e-7,
                   atol64: float = 1e-9, grads: bool = True) -> None:
    """Compare ``ember_mod`` with ``torch_mod`` in float32 (rtol/atol) and float64 (rtol64/atol64):
    outputs, gradients of every floating-point input and of every parameter (through a fixed random
    upstream gradient), and buffers after the forward pass (running statistics). Integer inputs
    (indices, targets) pass through unchanged. The ember module is left in float32."""
    rng = np.random.default_rng(1234)
    for e_dt, t_dt, n_dt in DTYPES:
        tol = (rtol, atol) if e_dt is ember.float32 else (rtol64, atol64)
        ember_mod.to(e_dt)
        torch_mod.to(t_dt)
        copy_state(ember_mod, torch_mod)
        ember_mod.train(train)
        torch_mod.train(train)
        ember_mod.zero_grad()
        torch_mod.zero_grad()
        e_in, t_in = [], []
        for a in inputs_np:
            if _is_float(a):
                arr = np.asarray(a, dtype=n_dt)
                e_in.append(ember.tensor(arr, requires_grad=grads))
                t_in.append(torch.tensor(arr, requires_grad=grads))
            else:
                e_in.append(ember.tensor(np.asarray(a)))
                t_in.append(torch.tensor(np.asarray(a)))
        e_out, t_out = _flat(ember_mod(*e_in)), _flat(torch_mod(*t_in))
        assert len(e_out) == len(t_out), f"{len(e_out)} outputs vs torch {len(t_out)}"
        for i, (eo, to) in enumerate(zip(e_out, t_out)):
            _assert_close(eo, to, *tol, f"{e_dt.name} output {i}")
        for (name, eb), (_, tb) in zip(ember_mod.named_buffers(), torch_mod.named_buffers()):
            _assert_close(eb, tb, *tol, f"{e_dt.name} buffer {name} after forward")
        if not grads:
            continue
        pairs = [(eo, to) for eo, to in zip(e_out, t_out) if to.requires_grad]
        if not pairs:
            continue
        e_loss, t_loss = 0, 0
        for eo, to in pairs:
            g = rng.standard_normal(tuple(to.shape)).astype(n_dt)
            e_loss = e_loss + (eo * ember.tensor(g)).sum()
            t_loss = t_loss + (to * torch.tensor(g)).sum()
        e_loss.backward()
        t_loss.backward()
        for i, (ei, ti) in enumerate(zip(e_in, t_in)):
            if ti.requires_grad and ti.grad is not None:
                assert ei.grad is not None, f"{e_dt.name} input {i} got no gradient"
                _assert_close(ei.grad, ti.grad, *tol, f"{e_dt.name} grad of input {i}")
        t_params = dict(torch_mod.named_parameters())
        for name, p in ember_mod.named_parameters():
            tp = t_params[name]
            if tp.grad is None:
                assert p.grad is None or not np.any(_to_np(p.grad)), f"{name}: torch has no grad"
                continue
            assert p.grad is not None, f"{e_dt.name} parameter {name} got no gradient"
            _assert_close(p.grad, tp.grad, *tol, f"{e_dt.name} grad of parameter {name}")
    ember_mod.to(ember.float32)
    torch_mod.to(torch.float32)


@pytest.fixture
def compare() -> Any:
    """The ``compare_module`` helper as a fixture (also importable from this conftest)."""
    return compare_module
