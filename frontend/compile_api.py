"""``ember.compile``: trace a model on its first call, compile the graph to native code, run that.

>>> import ember, ember.nn as nn
>>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)).eval()
>>> fast = ember.compile(model)
>>> x = ember.randn(3, 4)
>>> with ember.no_grad():
...     ember.testing.assert_close(fast(x), model(x), rtol=1e-4, atol=1e-5)

One executable is cached per input signature (shapes, dtypes, Python-scalar arguments, train/eval); a
new signature traces and compiles again, logged at ``EMBER_DEBUG>=1``. Weights are live: each call checks
cheaply that every parameter is still the tensor and array it was bound to (see ``_Compiled``), so a
model trained after compiling runs with its current weights. Compilations go through the on-disk cache
(``ember.compiler.cache``), so a new process compiling the same model loads the machine code.

Training: when gradients are wanted (grad mode on and a parameter or an input requires grad), the call
compiles a pair instead (``compiler.autodiff``): a forward that also returns the activations the
backward needs, and a backward graph built from the ops' own gradient rules. The outputs carry a
``grad_fn`` (``_CompiledStep``) that runs the compiled backward, so ``loss.backward(); opt.step()``
works unchanged, ``.grad`` accumulates on parameters, and gradients flow on into uncompiled code that
produced the inputs. Train-mode batch norm uses batch statistics; the running statistics the graph
computes are written back into the module's buffers after each call. Train-mode dropout traces to
the counter-based ``dropout_keep_mask`` op with an int64 seed graph input, fed with a fresh seed from
ember's generator on every call (``ember.random``), so masks match eager mode under ``manual_seed``.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import numpy as np
from ember._state import STATE
from ember.autograd.function import Function
from ember.compiler import dtypes
from ember.runtime import settings
from ember.runtime.errors import ArgumentError, CompileError
from ember.tensor import Tensor

log = logging.getLogger("ember.compile")


def _signature(args: tuple[Any, ...], training: bool) -> tuple[Any, ...]:
    key: list[Any] = [training, dtypes.DEFAULT_FLOAT.name]  # Python floats trace to the default dtype
    for a in args:
        if isinstance(a, Tensor):  # the array's shape tuple: Tensor.shape would build a Size per call
            key.append(("T", a._data.shape, a._dtype.name, a._device.type))
        elif isinstance(a, (int, float, bool, str, type(None))):
            key.append(("S", type(a).__name__, a))
        else:
            raise ArgumentError(f"ember.compile: unsupported argument of type {type(a).__name__}; pass "
                                "tensors or Python scalars")
    return tuple(key)


def _contiguous(a: np.ndarray) -> np.ndarray:
    """C-contiguous without copying when it already is (np.ascontiguousarray turns 0-d into 1-d)."""
    return a if a.flags.c_contiguous else np.ascontiguousarray(a).reshape(a.shape)


def _sanitize(name: str) -> str:
    from ember.compiler.compile import sanitize

    return sanitize(name)


def _store_of(module: Any, attr: str) -> dict[str, Any]:
    """The dict that holds ``module.<attr>`` (its parameters, its buffers or its plain attributes)."""
    d = module.__dict__
    for name in ("_parameters", "_buffers"):
        store = d.get(name)
        if isinstance(store, dict) and attr in store:
            return store
    return d


def _output_wrapper(outputs: Any, specs: tuple[Any, ...]) -> Any:
    """A function from the executable's output arrays to what the model returns, decided once: a model
    returning one tensor costs one ``Tensor._make``; other trees go through ``map_tree``."""
    from ember.compiler.dtypes import from_numpy as dtype_of
    from ember.compiler.ir.graph import Value, map_tree
    from ember.device import CPU

    make = Tensor._make
    if isinstance(outputs, Value) and len(specs) == 1:
        dtype = dtype_of(np.dtype(specs[0].dtype))
        return lambda arrays: make(arrays[0], dtype, CPU)

    def wrap(arrays: tuple[np.ndarray, ...]) -> Any:
        it = iter(arrays)
        return map_tree(outputs, lambda v: make(a := next(it), dtype_of(a.dtype), CPU) if isinstance(v, Value)
                        else v)
    return wrap


class _Compiled:
    """One compiled signature: the compile result, its runner, and the live tensors behind its params.

    Weights are live: every call checks that each parameter is still the tensor bound last time, with
    the same array (``p.data = ...`` or a replaced parameter rebinds), and for a parameter that had to
    be copied to be contiguous, that its version counter did not move (in-place updates of a contiguous
    parameter need nothing: the native code reads its memory). Prepared weights (``result.prep``: the
    live taps of a conv kernel, see ``passes/hoist_parameters.py``) are recomputed on the same signal:
    a weight they read was rebound or its version counter moved (every in-place op, optimizer step and
    ``load_state_dict`` moves it; writes through a ``.numpy()`` view do not, as in PyTorch). The check
    is one dict lookup and two identity tests per parameter; no per-call dict of the live tensors is
    built."""

    num_seeds = 0  # seed inputs of train-mode dropout after the user's inputs (ember.random)

    def __init__(self, result: Any, paths: dict[str, tuple[Any, str]]) -> None:
        self.result = result
        self.paths = paths   # parameter name -> (owning module, attribute)
        self.bound: dict[str, Any] = {}
        self.runner: Any = None
        self._checks: list[tuple[dict[str, Any], str, Tensor, np.ndarray]] = []
        self._copied: list[tuple[list[int], int]] = []  # (version list, version at bind time)
        exe = result.executable
        self.wrap = _output_wrapper(result.graph.outputs, exe.outputs) if exe is not None else None

    @property
    def live(self) -> dict[str, Tensor]:
        return {n: getattr(mod, attr) for n, (mod, attr) in self.paths.items()}

    def param_arrays(self) -> dict[str, np.ndarray]:
        """The executable's parameter values as they are now: the live weights, then their prepared
        forms (``result.prep``), by name."""
        out = {n: t._data for n, t in self.live.items()}
        prep = self.result.prep
        if prep is not None:
            out.update(prep.run(out))
        return out

    def _still_bound(self) -> bool:
        for store, attr, t, data in self._checks:
            if store.get(attr) is not t or t._data is not data:
                return False
        for version, seen in self._copied:
            if version[0] != seen:
                return False
        return True

    def run(self, arrays: list[np.ndarray]) -> tuple[np.ndarray, ...]:
        exe = self.result.executable
        if exe is None:  # target "interpret"
            from ember.compiler.ir.graph import flatten_tree
            from ember.compiler.ir.interpreter import interpret

            params = {n: t._data for n, t in self.live.items()}
            out = interpret(self.result.graph, arrays, params)
            return tuple(np.asarray(x) for x in flatten_tree(out))
        if self.runner is None or not self._still_bound():
            self._bind(self.live)
        return self.runner.run(arrays)

    def _bind(self, live: dict[str, Tensor]) -> None:
        from ember.runtime.executable import make_runner

        exe = self.result.executable
        keys = getattr(self.result, "param_keys", None) or {}
        constants = dict(exe.constants)
        checks, copied = [], []
        for name, t in live.items():
            key = keys.get(name) or _sanitize(name)
            if key in constants:
                constants[key] = _contiguous(t._data)
                if constants[key] is not t._data:
                    copied.append((t._version, t._version[0]))
            mod, attr = self.paths[name]
            checks.append((_store_of(mod, attr), attr, t, t._data))
        prep = self.result.prep
        if prep is not None:  # weight preparation (hoist_parameter_work): rerun when a weight it reads moves
            for name, arr in prep.run({n: live[n]._data for n in prep.sources}).items():
                constants[keys.get(name) or _sanitize(name)] = arr
            copied += [(live[n]._version, live[n]._version[0]) for n in prep.sources]
        self.runner = make_runner(dataclasses.replace(exe, constants=constants))
        self.bound = {n: t._data for n, t in live.items()}
        self._checks, self._copied = checks, copied


class _Training:
    """One compiled training signature: the autodiff split, where each graph input comes from, and the
    forward (with its saved values as extra outputs) and backward executables."""

    def __init__(self, ad: Any, sources: list[Any], fwd: _Compiled, bwd: Any) -> None:
        from ember.compiler.ir.graph import Value, flatten_tree

        self.ad = ad
        self.sources = sources
        self.fwd = fwd
        self.bwd = bwd
        self.bwd_runner: Any = None
        self.num_seeds = 0   # seed inputs of train-mode dropout after the user's inputs (ember.random)
        outputs, updates = ad.forward.outputs[0]
        self.updates = [n for n, v in updates.items() if isinstance(v, Value)]
        leaves = flatten_tree(outputs)
        self.num_outputs = sum(isinstance(v, Value) for v in leaves)
        slot, k = {}, 0  # flat leaf position -> index among the output values
        for pos, v in enumerate(leaves):
            if isinstance(v, Value):
                slot[pos] = k
                k += 1
        self.grad_slots = [slot[pos] for pos in ad.grad_outputs]
        self.num_outputs += len(self.updates)  # update values follow the model's outputs

    def write_back(self, arrays: list[Tensor], buffers: dict[str, Tensor]) -> None:
        """Running statistics computed by the graph go into the live buffers (in place, as eager does)."""
        for name, new in zip(self.updates, arrays):
            t = buffers[name]
            t._data[...] = new._data
            t._version[0] += 1

    def tensor_of(self, v: Any, tensors: list[Tensor]) -> Tensor:
        kind, key = self.sources[self.ad.forward.inputs.index(v)]
        if kind == "arg":
            return tensors[key]
        if key not in self.fwd.paths:
            raise CompileError(f"ember.compile: cannot find the live tensor of parameter {key!r}")
        return self.fwd.live[key]

    def run_backward(self, arrays: list[np.ndarray]) -> tuple[np.ndarray, ...]:
        if self.bwd.executable is None:  # target "interpret"
            from ember.compiler.ir.graph import flatten_tree
            from ember.compiler.ir.interpreter import interpret

            return tuple(np.asarray(x) for x in flatten_tree(interpret(self.bwd.graph, arrays)))
        if self.bwd_runner is None:
            from ember.runtime.executable import make_runner

            self.bwd_runner = make_runner(self.bwd.executable)
        return self.bwd_runner.run(arrays)


class _StepCall:
    """The non-tensor argument of ``_CompiledStep.apply``: the entry and this call's input tensors."""

    def __init__(self, entry: _Training, tensors: list[Tensor]) -> None:
        self.entry = entry
        self.tensors = tensors


class _CompiledStep(Function):
    """The autograd node of one compiled forward call: its backward runs the compiled backward graph.

    Inputs are the tensors gradients flow to (parameters and user inputs requiring grad), so the eager
    engine accumulates ``.grad`` on leaves and carries gradients on into uncompiled producers. Saved
    activations and the forward inputs the backward reads are kept with ``save_for_backward``: released
    after a backward without ``retain_graph``, and version-checked (an optimizer step between forward
    and backward raises as in eager mode).
    """

    @staticmethod
    def forward(ctx: Any, call: _StepCall, *wrt: Tensor) -> tuple[Tensor, ...]:
        from ember.creation import from_numpy

        entry = call.entry
        arrays = [_contiguous(t._data) for t in call.tensors]
        flat = entry.fwd.run(arrays)
        outs = tuple(from_numpy(a) for a in flat[:entry.num_outputs])
        saved = [from_numpy(a) for a in flat[entry.num_outputs:]]
        reads = [entry.tensor_of(entry.ad.forward.inputs[i], call.tensors) for i in entry.ad.reads_inputs]
        ctx.entry = entry
        ctx.num_reads = len(reads)
        ctx.save_for_backward(*reads, *saved)
        return outs

    @staticmethod
    def backward(ctx: Any, *grads: Tensor) -> tuple[Any, ...]:
        from ember.creation import from_numpy

        entry = ctx.entry
        held = ctx.saved_tensors
        arrays = [_contiguous(t._data) for t in held]
        arrays += [_contiguous(grads[k]._data) for k in entry.grad_slots]
        results = entry.run_backward(arrays)
        # the executable allocates its outputs per call: they are the gradients' own memory
        return (None, *(from_numpy(r) for r in results))


class CompiledModule:
    """A model or function whose forward pass runs as generated code. Call it like the original."""

    def __init__(self, model: Any, target: str = "llvm", check: str | None = None) -> None:
        if not callable(model):
            raise ArgumentError(f"ember.compile expects a module or a function, got {type(model).__name__}")
        if target not in ("llvm", "interpret", "cuda"):
            raise CompileError(f"ember.compile: unknown target {target!r}; expected 'llvm', 'interpret' or 'cuda'")
        self.model = model
        self.target = target
        self._cupy = __import__("ember.runtime.cuda", fromlist=["_"]).require_gpu() if target == "cuda" else None
        if check not in (None, "bisect"):
            raise ArgumentError(f"ember.compile: unknown check {check!r}; expected None or 'bisect'")
        self.check = check
        self._cache: dict[tuple[Any, ...], _Compiled] = {}
        self._train_cache: dict[tuple[Any, ...], _Training] = {}

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
            if self.check == "bisect":  # every kernel against the float64 interpreter (issue 11)
                self._raise_if_bad(self._bisect_entry(entry, args))
            self._cache[key] = entry
        return entry

    def _compile(self, args: tuple[Any, ...]) -> _Compiled:
        from ember.compiler.compile import compile_graph
        from ember.tracing import trace

        if self._cache and settings.get("DEBUG") >= 1:
            print(f"ember.compile: new input signature for {type(self.model).__name__}; recompiling")
        from ember.random import seed_input_count

        graph = trace(self.model, *args)
        num_seeds = seed_input_count(graph, sum(isinstance(a, Tensor) for a in args))
        # weight preparation is split off (and rerun when a weight moves) only when every weight it
        # reads can be watched: a module's parameters and buffers
        result = compile_graph(graph, self.target, hoist=hasattr(self.model, "named_modules"))
        paths = self._paths([*result.param_names, *(result.prep.sources if result.prep is not None else ())])
        if result.prep is not None and not all(n in paths for n in result.prep.sources):
            result = compile_graph(graph, self.target)
            paths = self._paths(result.param_names)
        entry = _Compiled(result, paths)
        entry.num_seeds = num_seeds
        return entry

    def _paths(self, names: list[str]) -> dict[str, tuple[Any, str]]:
        """Parameter name -> (owning module, attribute), for the names that are a module's tensors."""
        paths: dict[str, tuple[Any, str]] = {}
        if hasattr(self.model, "named_modules"):
            modules = dict(self.model.named_modules())
            for n in names:
                owner, _, attr = n.rpartition(".")
                if owner in modules and isinstance(getattr(modules[owner], attr, None), Tensor):
                    paths[n] = (modules[owner], attr)
        return paths

    def __call__(self, *args: Any) -> Any:
        if STATE.grad_enabled and self._needs_grad(args):
            return self._train_call(args)
        entry = self._cache.get(_signature(args, self._training))
        if entry is None:
            entry = self.compiled_for(*args)
        arrays = [a._data for a in args if isinstance(a, Tensor)]
        if entry.num_seeds:  # train-mode dropout: fresh seeds per call, as eager draws them (ember.random)
            from ember.random import draw_seeds

            arrays += [t._data for t in draw_seeds(entry.num_seeds)]
        outs = entry.run(arrays)
        if entry.wrap is not None:
            return entry.wrap(outs)
        from ember.compiler.ir.graph import Value, map_tree
        from ember.creation import from_numpy

        it = iter(outs)
        return map_tree(entry.result.graph.outputs, lambda v: from_numpy(next(it)) if isinstance(v, Value) else v)

    # ---- training ---------------------------------------------------------------------------------

    def training_for(self, *args: Any) -> _Training:
        """The compiled forward/backward pair for these arguments (which of them require grad is part of
        the signature), compiling it if it is new."""
        flags = tuple(bool(isinstance(a, Tensor) and a.requires_grad) for a in args)
        params = self.model.parameters() if hasattr(self.model, "parameters") else []
        frozen = tuple(not p.requires_grad for p in params)
        key = (*_signature(args, self._training), ("grad", flags, frozen))
        entry = self._train_cache.get(key)
        if entry is None:
            entry = self._compile_training(args)
            self._train_cache[key] = entry
        return entry

    def _compile_training(self, args: tuple[Any, ...]) -> _Training:
        from ember.compiler.autodiff import differentiate
        from ember.compiler.compile import compile_graph
        from ember.compiler.ir.graph import flatten_tree
        from ember.tracing import trace

        graph = trace(self.model, *args, buffer_updates=True)  # outputs: (model outputs, buffer updates)
        tensors = [a for a in args if isinstance(a, Tensor)]
        named = dict(self.model.named_parameters()) if hasattr(self.model, "named_parameters") else {}
        sources: list[Any] = []   # per graph input: ("arg", i) or ("param", name)
        user = 0
        for v in graph.inputs:
            if v.kind == "input":
                sources.append(("arg", user))
                user += 1
            else:
                sources.append(("param", v.name))
        wrt = []
        for v, src in zip(graph.inputs, sources):
            if src[0] == "arg" and src[1] >= len(tensors):
                continue  # a dropout seed input: int64, never differentiated
            t = tensors[src[1]] if src[0] == "arg" else named.get(src[1])
            if t is not None and t.requires_grad and t.dtype.is_floating_point:
                wrt.append(v)
        ad = differentiate(graph, wrt, grad_leaves=len(flatten_tree(graph.outputs[0])))
        fwd = _Compiled(compile_graph(ad.forward, self.target), self._param_paths(ad.forward))
        bwd = compile_graph(ad.backward, self.target)
        entry = _Training(ad, sources, fwd, bwd)
        entry.num_seeds = user - len(tensors)  # seed inputs follow the user's tensors ("arg" sources)
        return entry

    def _param_paths(self, graph: Any) -> dict[str, tuple[Any, str]]:
        paths: dict[str, tuple[Any, str]] = {}
        if hasattr(self.model, "named_modules"):
            modules = dict(self.model.named_modules())
            for v in graph.inputs:
                owner, _, attr = v.name.rpartition(".")
                if v.kind != "input" and owner in modules and isinstance(getattr(modules[owner], attr, None),
                                                                          Tensor):
                    paths[v.name] = (modules[owner], attr)
        return paths

    def _train_call(self, args: tuple[Any, ...]) -> Any:
        from ember.compiler.ir.graph import Value, map_tree

        entry = self.training_for(*args)
        tensors = [a for a in args if isinstance(a, Tensor)]
        if entry.num_seeds:  # train-mode dropout: fresh seeds per call, as eager draws them
            from ember.random import draw_seeds

            tensors += draw_seeds(entry.num_seeds)
        wrt_tensors = [entry.tensor_of(v, tensors) for v in entry.ad.wrt]
        outs = iter(_CompiledStep.apply(_StepCall(entry, tensors), *wrt_tensors))
        result = map_tree(entry.ad.forward.outputs[0][0], lambda v: next(outs) if isinstance(v, Value) else v)
        entry.write_back(list(outs), self.fwd_buffers(entry))
        return result

    def fwd_buffers(self, entry: _Training) -> dict[str, Tensor]:
        return {n: entry.fwd.live[n] for n in entry.updates}

    # ---- inspection -----------------------------------------------------------------------------

    def graph(self, *args: Any) -> Any:
        """The optimized graph compiled for these arguments."""
        return self.compiled_for(*args).result.graph

    def kernels(self, *args: Any) -> dict[str, str]:
        """Generated source by kernel name (kernel IR, and the whole module's LLVM IR under "llvm")."""
        exe = self.compiled_for(*args).result.executable
        return dict(exe.sources) if exe is not None else {}

    def __repr__(self) -> str:
        return (f"CompiledModule({type(self.model).__name__}, target={self.target!r}, "
                f"{len(self._cache) + len(self._train_cache)} signatures)")

    # ---- compile report and numerics bisector (issue 11) ------------------------------------------

    def _entry_unchecked(self, args: tuple[Any, ...]) -> _Compiled:
        """The compiled entry for ``args`` without the ``check="bisect"`` gate (reports show bad kernels)."""
        key = _signature(args, self._training)
        entry = self._cache.get(key)
        if entry is None:
            entry = self._compile(args)
            if self.check != "bisect":  # under the gate, only a checked entry may serve calls
                self._cache[key] = entry
        return entry

    def _bisect_entry(self, entry: _Compiled, args: tuple[Any, ...]) -> Any:
        from ember.compiler.bisect import bisect
        from ember.random import draw_seeds

        arrays = [a._data for a in args if isinstance(a, Tensor)]
        arrays += [t._data for t in draw_seeds(entry.num_seeds)]  # train-mode dropout seeds
        return bisect(entry.result, arrays, entry.param_arrays())

    @staticmethod
    def _raise_if_bad(report: Any) -> None:
        if not report.ok:
            error = CompileError(f"ember.compile(check='bisect'): {report.summary()}\n{report}")
            error.report = report  # type: ignore[attr-defined]
            raise error

    def bisect(self, *args: Any) -> Any:
        """Run every kernel compiled for ``args`` alone against the float64 interpreter; returns the
        ``ember.compiler.bisect.BisectReport`` (its ``first_bad`` names the first kernel over tolerance)."""
        return self._bisect_entry(self._entry_unchecked(args), args)

    def report(self, path: str, *example_inputs: Any, profile: bool = True, check: bool = True) -> str:
        """Write the compile report for ``example_inputs`` to ``path``: one self-contained HTML page (graph,
        passes with IR diffs, fusion decisions, kernels, memory plan, timings, numerics). Returns ``path``."""
        from ember.compiler.report import write_report
        from ember.tracing import trace

        if self.target != "llvm":
            raise CompileError("CompiledModule.report needs target 'llvm' (the report shows native kernels)")
        entry = self._entry_unchecked(example_inputs)
        from ember.random import draw_seeds

        arrays = [a._data for a in example_inputs if isinstance(a, Tensor)]
        arrays += [t._data for t in draw_seeds(entry.num_seeds)]  # train-mode dropout seeds
        params = entry.param_arrays()
        title = f"ember compile report: {type(self.model).__name__}"
        return write_report(path, entry.result, arrays, params, trace(self.model, *example_inputs),
                            profile=profile, check=check, title=title)


def compile(model: Any, target: str = "llvm", *, check: str | None = None, **_options: Any) -> CompiledModule:
    """Compile ``model`` (a module or a function over tensors) to native code for ``target``.

    ``target="llvm"`` generates CPU code; ``"interpret"`` runs the optimized graph with the reference
    implementations (useful to tell a compiler bug from a tracing problem). A function that calls
    ``.backward()`` compiles as a whole training step (frontend/compile_step.py).
    """
    from ember.compile_step import CompiledStepFunction, is_step_function

    if is_step_function(model):
        return CompiledStepFunction(model, target)  # type: ignore[return-value]
    return CompiledModule(model, target, check)


def export(model: Any, example_inputs: Any, path: str, *, name: str | None = None) -> str:
    """Compile ``model`` for ``example_inputs`` and write one self-contained shared library to ``path``
    (kernels, entry function, weights, metadata, a small C ABI) plus a C header beside it (``.h``).

    The package is fixed to the example inputs' shapes and dtypes and to the model's weights and mode
    now (call ``model.eval()`` first for inference). ``model`` may also be what ``ember.compile``
    returned: its compilation for these inputs is reused (with the current weights), not repeated.
    Run the package with ``ember.runtime.load(path)`` (numpy and ctypes only) or link it from C
    (examples/deploy_c). Returns ``path``. Needs a C compiler (``$CC`` or ``cc``) to link. The same
    model and inputs give the same bytes.

    >>> import ember, ember.nn as nn, tempfile, os
    >>> model = nn.Sequential(nn.Linear(4, 3), nn.ReLU()).eval()
    >>> path = ember.export(model, (ember.randn(2, 4),), os.path.join(tempfile.mkdtemp(), "mlp.so"))
    >>> ember.runtime.load(path)(ember.ones(2, 4).numpy()).shape
    (2, 3)
    """
    import os

    from ember.autograd import no_grad
    from ember.compiler.aot import export_compiled, export_graph
    from ember.creation import from_numpy
    from ember.tracing import trace

    if not callable(model):
        raise ArgumentError(f"ember.export expects a module or a function, got {type(model).__name__}")
    args = tuple(example_inputs) if isinstance(example_inputs, (tuple, list)) else (example_inputs,)
    args = tuple(from_numpy(np.ascontiguousarray(a)) if isinstance(a, np.ndarray) else a for a in args)
    if not any(isinstance(a, Tensor) for a in args):
        raise ArgumentError("ember.export: example_inputs must hold at least one tensor (a tensor or a tuple "
                            "of tensors); their shapes and dtypes become the package's signature")
    _signature(args, False)  # the same argument check as ember.compile
    with no_grad():
        if isinstance(model, CompiledModule):
            entry = model.compiled_for(*args)
            if entry.result.executable is None:
                raise CompileError("ember.export: this model was compiled with target 'interpret', which "
                                   "makes no native code; use ember.compile(model) (target 'llvm')")
            entry._bind(entry.live)  # the executable with the weights as they are now
            result = dataclasses.replace(entry.result, executable=entry.runner.exe)
            export_compiled(result, path, name=name)
        else:
            export_graph(trace(model, *args), path, name=name)
    return os.fspath(path)
