"""The optimizer base class: parameter groups, per-parameter state, state_dict round trips and
``step(closure)``.

Updates run under ``ember.no_grad()`` with in-place tensor ops (``p.add_``, ``p.mul_``), so parameters keep
their identity (modules, optimizers and user code hold the same objects) and the tape records nothing.
The layout of ``state_dict()`` is PyTorch's: ``{"state": {index: {...}}, "param_groups": [{..., "params":
[index, ...]}]}``, so checkpoints map onto parameters by position, as in PyTorch.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

import ember
from ember.runtime.errors import ArgumentError


class _RequiredParameter:
    """Marks a default that has no value (SGD's ``lr`` in old PyTorch); the group must give one."""

    def __repr__(self) -> str:
        return "<required parameter>"


required = _RequiredParameter()


class Optimizer:
    """Base of every optimizer. Subclasses set ``defaults`` and implement ``step``.

    >>> w = ember.zeros(2, requires_grad=True)
    >>> opt = ember.optim.SGD([w], lr=0.1)
    >>> (w - 1).pow(2).sum().backward(); opt.step()
    """

    def __init__(self, params: Any, defaults: dict[str, Any]) -> None:
        self.defaults = dict(defaults)
        self.state: defaultdict[Any, dict[str, Any]] = defaultdict(dict)
        self.param_groups: list[dict[str, Any]] = []
        if isinstance(params, ember.Tensor):
            raise TypeError("params argument given to the optimizer should be an iterable of Tensors or"
                            " dicts, but got Tensor")
        groups = list(params)
        if not groups:
            raise ArgumentError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for key in sorted(k for k in group if k != "params"):
                lines.append(f"    {key}: {group[key]}")
        lines.append(")")
        return "\n".join(lines)

    def __getstate__(self) -> dict[str, Any]:
        return {"defaults": self.defaults, "state": self.state, "param_groups": self.param_groups}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group of parameters with its own options; missing options take the defaults."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, got {type(param_group).__name__}")
        group = dict(param_group)
        params = group["params"]
        if isinstance(params, (set, frozenset)):
            raise TypeError(
                "optimizer parameters need to be organized in ordered collections, but the ordering of"
                " tensors in sets will change between runs. Please use a list instead."
            )
        group["params"] = [params] if isinstance(params, ember.Tensor) else list(params)
        for p in group["params"]:
            if not isinstance(p, ember.Tensor):
                raise TypeError(
                    f"optimizer can only optimize Tensors, but one of the params is {type(p).__name__}")
            if not p.is_leaf:
                raise ArgumentError("can't optimize a non-leaf Tensor")
        for name, default in self.defaults.items():
            if default is required and name not in group:
                raise ArgumentError(f"parameter group didn't specify a value of required optimization"
                                    f" parameter {name}")
            group.setdefault(name, default)
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in seen for p in group["params"]):
            raise ArgumentError("some parameters appear in more than one parameter group")
        if len({id(p) for p in group["params"]}) != len(group["params"]):
            raise ArgumentError("optimizer parameters need to be unique; one appears twice in a group")
        self.param_groups.append(group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget the gradients: drop them (the default, as in PyTorch 2) or fill them with zeros."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                    continue
                if p.grad.grad_fn is not None:
                    p.grad.detach_()
                with ember.no_grad():
                    p.grad.zero_()  # in place, like PyTorch: references to the gradient see the zeros

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not implement step()")

    def _evaluate(self, closure: Callable[[], Any] | None) -> Any:
        """Run the closure (which recomputes the loss and its gradients) with grad mode on."""
        if closure is None:
            return None
        with ember.enable_grad():
            return closure()

    def _params_with_grad(self, group: dict[str, Any]) -> Iterable[Any]:
        return [p for p in group["params"] if p.grad is not None]

    # ---- checkpoints ---------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The optimizer's state with parameters replaced by their position across all groups."""
        index: dict[int, int] = {}
        groups = []
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k != "params"}
            packed["params"] = []
            for p in group["params"]:
                index.setdefault(id(p), len(index))
                packed["params"].append(index[id(p)])
            groups.append(packed)
        state = {index[id(p)]: s for p, s in self.state.items() if id(p) in index}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore options and per-parameter state saved by ``state_dict`` (tensors are copied)."""
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ArgumentError("loaded state dict has a different number of parameter groups")
        for mine, saved in zip(self.param_groups, saved_groups):
            if len(mine["params"]) != len(saved["params"]):
                raise ArgumentError("loaded state dict contains a parameter group that doesn't match the size"
                                    " of optimizer's group")
        by_index = {}
        for mine, saved in zip(self.param_groups, saved_groups):
            for p, i in zip(mine["params"], saved["params"]):
                by_index[i] = p
        self.state = defaultdict(dict)
        for i, entry in state_dict["state"].items():
            p = by_index.get(int(i))
            if p is not None:
                self.state[p] = {k: _copy_state_value(k, v, p) for k, v in entry.items()}
        for mine, saved in zip(self.param_groups, saved_groups):
            params = mine["params"]
            mine.clear()
            mine.update(copy.deepcopy({k: v for k, v in saved.items() if k != "params"}))
            mine["params"] = params


def _copy_state_value(key: str, value: Any, param: Any) -> Any:
    """Tensors are copied and, except step counters, cast to the parameter's floating dtype, as in PyTorch."""
    if isinstance(value, ember.Tensor):
        out = value.detach().clone()
        if key != "step" and value.dtype.is_floating_point and param.dtype.is_floating_point:
            out = out.to(param.dtype)
        return out
    return copy.deepcopy(value)
