"""``ember.compile``: trace a model on its first call, compile the graph to native code, run that.

>>> import ember, ember.nn as nn
>>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)).eval()
>>> fast = ember.compile(model)
>>> x = ember.randn(3, 4)
>>> with ember.no_grad():
...     ember.testing.assert_close(fast(x), model(x), rtol=1e-4, atol=1e-5)

One executable is cached per input signature (shapes, dtypes, Python-scalar arguments, train/eval); a
new signature traces and compiles again, logged at ``EMBER_DEBUG>=1``. Weights are read at every call,
so a model trained after compiling runs with its current weights.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import numpy as np

from ember._state import STATE
from ember.runtime import settings
from ember.runtime.errors import ArgumentError, CompileError
from ember.tensor import Tensor

log = logging.getLogger("ember.compile")


def _signature(args: tuple[Any, ...], training: bool) -> tuple[Any, ...]:
    key: list[Any] = [training]
    for a in args:
        if isinstance(a, Tensor):
            key.append(("T", tuple(a.shape), a.dtype.name, a.device.type))
        elif isinstance(a, (int, float, bool, str, type(None))):
            key.append(("S", type(a).__name__, a))
        else:
            raise ArgumentError(f"ember.compile: unsupported argument of type {type(a).__name__}; pass tensors "
                                "or Python scalars")
    return tuple(key)


class _Compiled:
    """One compiled signature: the compile result, its runner, and the live tensors behind its params."""

    def __init__(self, result: Any, paths: dict[str, tuple[Any, str]]) -> None:
        self.result = result
        self.paths = paths   # parameter name -> (owning module, attribute): re-read at every call
        self.bound: dict[str, Any] = {}
        self.runner: Any = None

    @property
    def live(self) -> dict[str, Tensor]:
        return {n: getattr(mod, attr) for n, (mod, attr) in self.paths.items()}

    def run(self, arrays: list[np.ndarray]) -> tuple[np.ndarray, ...]:
        exe = self.result.executable
        if exe is None:  # target "interpret"
            from ember.compiler.ir.interpreter import interpret
            from ember.compiler.ir.graph import flatten_tree

            params = {n: t._data for n, t in self.live.items()}
            out = interpret(self.result.graph, arrays, params)
            return tuple(np.asarray(x) for x in flatten_tree(out))
        live = self.live
        if self.runner is None or any(self.bound.get(n) is not t._data for n, t in live.items()):
            self._bind(live)
        return self.runner(*arrays)

    def _bind(self, live: dict[str, Tensor]) -> None:
        from ember.compiler.kernel.lower import sanitize
        from ember.runtime.cpu import CpuExecutable

        exe = self.result.executable
        constants = dict(exe.constants)
        for name, t in live.items():
            key = sanitize(name)
            if key in constants:
                constants[key] = np.ascontiguousarray(t._data)
        self.runner = CpuExecutable(dataclasses.replace(exe, constants=constants))
        self.bound = {n: t._data for n, t in live.items()}


class CompiledModule:
    """A model or function whose forward pass runs as generated code. Call it like the original."""

    def __init__(self, model: Any, target: str = "llvm", check: str | None = None) -> None:
        if not callable(model):
            raise ArgumentError(f"ember.compile expects a module or a function, got {type(model).__name__}")
        if target not in ("llvm", "interpret"):
            raise CompileError(f"ember.compile: unknown target {target!r}; expected 'llvm' or 'interpret'"
                               + ("; the CUDA back end is not implemented yet" if target == "cuda" else ""))
        self.model = model
        self.target = target
        self.check = check
        self._cache: dict[tuple[Any, ...], _Compiled] = {}
        self._warned_training = False

    @property
    def _training(self) -> bool:
        return bool(getattr(self.model, "training", False))

    def _needs_grad(self, args: tuple[Any, ...]) -> bool:
        if not STATE.grad_enabled:
            return False
        params = self.model.parameters() if hasattr(self.model, "parameters") else []
        return any(p.requires_grad for p in params) or any(isinstance(a, Tensor) and a.requires_grad
                                                           for a in args)

    def compiled_for(self, *args: Any) -> _Compiled:
        """The compiled entry for these arguments, compiling it if it is new."""
        key = _signature(args, self._training)
        entry = self._cache.get(key)
        if entry is None:
            entry = self._compile(args)
            self._cache[key] = entry
        return entry

    def _compile(self, args: tuple[Any, ...]) -> _Compiled:
        from ember.compiler.compile import compile_graph
        from ember.tracing import trace

        if self._cache and settings.get("DEBUG") >= 1:
            print(f"ember.compile: new input signature for {type(self.model).__name__}; recompiling")
        graph = trace(self.model, *args)
        result = compile_graph(graph, self.target)
        paths: dict[str, tuple[Any, str]] = {}
        if hasattr(self.model, "named_modules"):
            modules = dict(self.model.named_modules())
            for n in result.param_names:
                owner, _, attr = n.rpartition(".")
                if owner in modules and isinstance(getattr(modules[owner], attr, None), Tensor):
                    paths[n] = (modules[owner], attr)
        return _Compiled(result, paths)

    def __call__(self, *args: Any) -> Any:
        if self._needs_grad(args):
            if not self._warned_training:
                import warnings

                warnings.warn("ember.compile: gradients through compiled code are not implemented yet; this "
                              "call runs eagerly (use ember.no_grad() or model.eval() for compiled inference)",
                              stacklevel=2)
                self._warned_training = True
            return self.model(*args)
        entry = self.compiled_for(*args)
        arrays = [np.ascontiguousarray(a._data) for a in args if isinstance(a, Tensor)]
        outs = iter(entry.run(arrays))
        from ember.compiler.ir.graph import Value, map_tree
        from ember.creation import from_numpy

        result = map_tree(entry.result.graph.outputs, lambda v: from_numpy(next(outs)) if isinstance(v, Value)
                          else v)
        return result

    # ---- inspection -----------------------------------------------------------------------------

    def graph(self, *args: Any) -> Any:
        """The optimized graph compiled for these arguments."""
        return self.compiled_for(*args).result.graph

    def kernels(self, *args: Any) -> dict[str, str]:
        """Generated source by kernel name (kernel IR, and the whole module's LLVM IR under "llvm")."""
        exe = self.compiled_for(*args).result.executable
        return dict(exe.sources) if exe is not None else {}

    def __repr__(self) -> str:
        return f"CompiledModule({type(self.model).__name__}, target={self.target!r}, {len(self._cache)} signatures)"


def compile(model: Any, target: str = "llvm", *, check: str | None = None, **_options: Any) -> CompiledModule:
    """Compile ``model`` (a module or a function over tensors) to native code for ``target``.

    ``target="llvm"`` generates CPU code; ``"interpret"`` runs the optimized graph with the reference
    implementations (useful to tell a compiler bug from a tracing problem).
    """
    return CompiledModule(model, target, check)


def export(model: Any, example_inputs: Any, path: str) -> str:
    """Ahead-of-time export is not implemented yet: it raises instead of writing a partial file."""
    raise CompileError("ember.export is not implemented yet (ahead-of-time packages are planned work); "
                       "nothing was written")
