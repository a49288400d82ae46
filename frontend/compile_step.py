"""``ember.compile(step_fn)``: a whole training step (forward, loss, backward, optimizer update) as ONE
native executable that updates parameters, gradients and optimizer state in place.

>>> import ember, ember.nn as nn
>>> model = nn.Linear(4, 2)
>>> opt = ember.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
>>> crit = nn.MSELoss()
>>> def step(x, y):
...     opt.zero_grad()
...     loss = crit(model(x), y)
...     loss.backward()
...     opt.step()
...     return loss
>>> fast = ember.compile(step)          # a function that calls backward() compiles as a training step
>>> loss = fast(ember.randn(8, 4), ember.randn(8, 2))

How: the step function is traced once per input signature by ``StepTracer`` (a ``Tracer`` that also
understands ``loss.backward()`` and ``opt.step()``). Forward ops record as usual; ``backward()`` emits
the gradient nodes into the same graph with the ops' own rules (``compiler/autodiff/step.py``), and the
trace-time ``p.grad`` becomes the gradient value; ``opt.step()`` of SGD, Adam and AdamW emits the update
arithmetic (eager's operation order). The graph's inputs are the user's tensors, the parameters (bound
to the live arrays), the gradients and optimizer state the step reads, 0-d runtime scalars (learning
rate, Adam's bias corrections: a scheduler's change takes effect at the next call) and dropout seeds.
Its extra outputs are the new parameters, gradients, optimizer state and batch-norm running
statistics, which the runtime writes back after the call: parameters, state and buffers in place
(their arrays keep their identity, so modules, optimizers and views stay valid), fresh gradients by
handing over the executable's output arrays. Afterwards everything equals what an eager step leaves.

What the trace relied on is re-checked at every call (guards: module train/eval flags, optimizer
hyper-parameters other than the learning rate, which parameters require grad and hold a ``.grad``);
a change traces a new entry. Refused with a TraceError/CompileError naming the problem: data-dependent
Python control flow or reading values (``loss.item()``) inside the step, optimizers other than SGD,
Adam and AdamW, closures, ``create_graph``, inputs that require grad. The fix offered is
``ember.compile(model)`` with the loss, backward and optimizer left eager.
"""

from __future__ import annotations

import contextlib
import math
import types
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from ember._state import STATE
from ember.compiler.ir.graph import Value, flatten_tree, map_tree
from ember.compiler.ops.registry import TensorType
from ember.runtime.errors import ArgumentError, CompileError, TraceError
from ember.tensor import Tensor
from ember.tracing import Tracer, _traced, _TraceData

_FALLBACK = ("compile the model only, ember.compile(model), and run the loss, backward() and the"
             " optimizer eagerly")


def is_step_function(fn: Any) -> bool:
    """A plain function (not a module) whose code calls ``.backward``: ``ember.compile`` compiles it as a
    whole training step instead of as an inference function."""
    if hasattr(fn, "named_modules"):
        return False
    code = getattr(getattr(fn, "__func__", fn), "__code__", None)
    return code is not None and "backward" in _code_names(code)


def _code_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            names |= _code_names(c)
    return names


def _referenced_objects(fn: Any) -> list[tuple[str, Any]]:
    """(name, object) for what the function reaches by name: closure cells, globals, defaults."""
    fn = getattr(fn, "__func__", fn)
    code = fn.__code__
    out: list[tuple[str, Any]] = []
    for name, cell in zip(code.co_freevars, fn.__closure__ or ()):
        with contextlib.suppress(ValueError):
            out.append((name, cell.cell_contents))
    g = getattr(fn, "__globals__", {})
    out += [(n, g[n]) for n in sorted(_code_names(code)) if n in g]
    out += [(f"default{i}", d) for i, d in enumerate(fn.__defaults__ or ())]
    return out


# ---- trace-time optimizer methods -------------------------------------------------------------------


def _traced_step(self: Any, closure: Callable[[], Any] | None = None) -> Any:
    return _active().optimizer_step(self, closure)


def _traced_zero_grad(self: Any, set_to_none: bool = True) -> None:
    _active().zero_grad(self, set_to_none)


def _active() -> StepTracer:
    tracer = STATE.tracer
    if not isinstance(tracer, StepTracer):
        raise CompileError("an optimizer method patched by ember.compile(step) ran outside its trace")
    return tracer


def _all_subclasses(cls: type) -> list[type]:
    out = [cls]
    for sub in cls.__subclasses__():
        out += _all_subclasses(sub)
    return out


def _traced_detach(self: Any) -> Any:
    return _active().detach(self)


@contextlib.contextmanager
def _optimizers_traced() -> Iterator[None]:
    """While the step is traced, ``step`` and ``zero_grad`` of every optimizer class record graph nodes
    (or refuse) instead of updating tensors, and a traced tensor's ``detach`` marks a gradient stop; the
    class attributes are restored afterwards."""
    from ember.optim.optimizer import Optimizer
    from ember.tracing import TracedTensor

    saved = [(TracedTensor, "detach", TracedTensor.__dict__["detach"])]
    TracedTensor.detach = _traced_detach  # type: ignore[method-assign]
    for cls in _all_subclasses(Optimizer):
        for name, repl in (("step", _traced_step), ("zero_grad", _traced_zero_grad)):
            if name in cls.__dict__:
                saved.append((cls, name, cls.__dict__[name]))
                setattr(cls, name, repl)
    try:
        yield
    finally:
        for cls, name, fn in saved:
            setattr(cls, name, fn)


# ---- the tracer -------------------------------------------------------------------------------------


class StepTracer(Tracer):
    """A Tracer that also records ``backward()`` and optimizer steps, and keeps what the runtime needs:
    where each extra input comes from (``feeds``), what each extra output updates (``writes``) and the
    facts the graph assumed (``guards``)."""

    def __init__(self, fn: Any, name: str) -> None:
        super().__init__(fn, name, buffer_updates=True)
        self.feeds: dict[str, tuple[Any, ...]] = {}       # input name -> how to get its array per call
        self.known: dict[int, tuple[Tensor, Any]] = {}    # id(param) -> (param, its .grad before the trace)
        self.grad_inputs: dict[int, Value] = {}           # id(param) -> input holding its incoming .grad
        self.observed: set[int] = set()                   # params whose incoming .grad the trace read
        self.overwritten: set[int] = set()                # params whose .grad the trace replaced
        self.zeroed_in_place: set[int] = set()            # zero_grad(set_to_none=False): keep the object
        self.state_in: dict[tuple[int, int, str], Value] = {}
        self.state_now: dict[tuple[int, int, str], Value] = {}
        self.state_owner: dict[tuple[int, int, str], tuple[Any, Tensor, str]] = {}
        self.scalars: dict[tuple[Any, ...], Value] = {}
        self.steps: dict[tuple[int, int], tuple[Any, int, list[Tensor]]] = {}  # (opt, group) -> steps
        self.opt_guards: dict[int, tuple[Any, Any]] = {}
        self.modules_seen: dict[int, Any] = {}             # every module the step called (train/eval guard)
        self.stopped: set[int] = set()                     # ids of values made by .detach(): no gradient

    def detach(self, t: Any) -> Any:
        """``x.detach()`` while tracing a step: ``x * 1.0`` (exact; the passes fold it away) whose result
        is a gradient stop for ``trace_backward``, so gradients stop where eager's would."""
        from ember.compiler.autodiff.emit import GraphEmitter

        v = self.value_of(t)
        if not v.type.dtype.is_floating_point:
            return _traced(v, self)
        b = GraphEmitter()
        b.graph = self.builder
        v = b.mul(v, 1.0)
        self.stopped.add(id(v))
        return _traced(v, self)

    def module_scope(self, module: Any) -> Any:
        self.modules_seen[id(module)] = module
        return super().module_scope(module)

    # ---- inputs the step adds ---------------------------------------------------------------------

    def extra_input(self, want: str, ty: TensorType, feed: tuple[Any, ...]) -> Value:
        v = self.builder.add_input(self.fresh_name(want), ty, "input")
        self.feeds[v.name] = feed
        return v

    def seed_input(self) -> Any:
        t = super().seed_input()
        self.feeds[t._data.value.name] = ("seed",)
        return t

    def know_param(self, p: Tensor, name: str) -> None:
        """Remember ``p`` and its incoming ``.grad`` (which becomes a graph input if it has one)."""
        if id(p) in self.known:
            return
        if id(p._data) not in self.state_names:
            self.state_names[id(p._data)] = (name, "parameter", p)
            self.state_arrays.append((p._data, name, "parameter", p))
        self.known[id(p)] = (p, p.grad)
        if p.grad is not None:
            g = p.grad
            v = self.extra_input(f"{self.state_names[id(p._data)][0]}.grad", TensorType(tuple(g.shape), g.dtype),
                                 ("grad", p))
            self.grad_inputs[id(p)] = v
            p.grad = _traced(v, self)

    def _read_grad(self, p: Tensor) -> Any:
        if id(p) not in self.overwritten:
            self.observed.add(id(p))
        return p.grad

    def _set_grad(self, p: Tensor, v: Value | None) -> None:
        self.overwritten.add(id(p))
        p.grad = None if v is None else _traced(v, self)

    # ---- backward ------------------------------------------------------------------------------------

    def trace_backward(self, tensors: list[Any], grads: list[Any] | None, create_graph: bool,
                       inputs: list[Any] | None) -> None:
        """``loss.backward()`` inside the step: gradient nodes appended to this graph, ``.grad`` of the
        parameters rebound to them (accumulating onto an incoming ``.grad``, as eager does)."""
        from ember.compiler.autodiff.emit import GraphEmitter
        from ember.compiler.autodiff.step import emit_backward

        if create_graph:
            raise CompileError(f"ember.compile(step): backward(create_graph=True) is not supported in a compiled"
                               f" step\n  fix: {_FALLBACK}")
        b = GraphEmitter()
        b.graph = self.builder
        roots = []
        for i, t in enumerate(tensors):
            g = grads[i] if grads is not None and grads[i] is not None else None
            if g is None:
                if t.numel() != 1:
                    raise ArgumentError("grad can be implicitly created only for scalar outputs")
                seed = b.full(shape=tuple(t.shape), value=1.0, dtype=t.dtype)
            else:
                seed = self.value_of(g)
            roots.append((self.value_of(t), seed))
        params = self._differentiable_params(inputs)
        wrt = [self.lifted[id(p._data)][1] for p in params]
        for p, g in zip(params, emit_backward(b, self.builder.nodes, roots, wrt, self.stopped)):
            if g is None:
                continue
            cur = self._read_grad(p)
            if cur is not None:
                g = b.add(self.value_of(cur), g)
            self._set_grad(p, g)

    def _differentiable_params(self, inputs: list[Any] | None) -> list[Tensor]:
        """Parameters used by the graph so far that require grad (restricted to ``inputs`` if given)."""
        out = []
        for key in list(self.lifted):
            state = self.state_names.get(key)
            if state is None or state[1] != "parameter":
                continue
            p = state[2]
            if p.requires_grad and p.dtype.is_floating_point:
                self.know_param(p, state[0])
                out.append(p)
        if inputs is not None:
            wanted = {id(t) for t in inputs}
            out = [p for p in out if id(p) in wanted]
        return out

    # ---- optimizers ----------------------------------------------------------------------------------

    def zero_grad(self, opt: Any, set_to_none: bool) -> None:
        from ember.compiler.autodiff.emit import GraphEmitter

        self._adopt(opt)
        for group in opt.param_groups:
            for p in group["params"]:
                if set_to_none or p.grad is None:
                    self._set_grad(p, None)
                else:
                    b = GraphEmitter()
                    b.graph = self.builder
                    self._set_grad(p, b.full(shape=tuple(p.shape), value=0.0, dtype=p.dtype))
                    self.zeroed_in_place.add(id(p))

    def _adopt(self, opt: Any) -> None:
        """First sight of an optimizer: check it is supported, remember its parameters and the
        hyper-parameters the graph bakes in (guards)."""
        from ember.optim import SGD, Adam, AdamW

        if type(opt) not in (SGD, Adam, AdamW):
            raise CompileError(f"ember.compile(step): the optimizer {type(opt).__name__} cannot be compiled into"
                               f" a training step (supported: SGD, Adam, AdamW)\n  fix: {_FALLBACK}")
        if id(opt) not in self.opt_guards:
            self.opt_guards[id(opt)] = (opt, _opt_key(opt))
            for gi, group in enumerate(opt.param_groups):
                for k, p in enumerate(group["params"]):
                    self.know_param(p, f"optimizer.{gi}.{k}")

    def optimizer_step(self, opt: Any, closure: Any) -> None:
        """``opt.step()`` inside the step: the update of every parameter that has a gradient."""
        if closure is not None:
            raise CompileError(f"ember.compile(step): opt.step(closure) is not supported in a compiled step\n"
                               f"  fix: {_FALLBACK}")
        self._adopt(opt)
        from ember.compiler.autodiff.emit import GraphEmitter

        b = GraphEmitter()
        b.graph = self.builder
        for gi, group in enumerate(opt.param_groups):
            _, done, stepped = self.steps.get((id(opt), gi), (opt, 0, []))
            now = []
            for p in group["params"]:
                if self._read_grad(p) is None:
                    continue
                b.scope = f"optimizer.{type(opt).__name__}"
                self._update(b, opt, gi, group, done, p)
                now.append(p)
            if now:
                self.steps[(id(opt), gi)] = (opt, done + 1, stepped or now)
        b.scope = ""

    def _param_value(self, p: Tensor) -> Value:
        v = self.value_of(p)
        state = self.state_names.get(id(p._data))
        if state is None or state[1] != "parameter":
            raise CompileError("ember.compile(step): an optimizer parameter is not a parameter of the trace")
        return v

    def _update(self, b: Any, opt: Any, gi: int, group: dict[str, Any], done: int, p: Tensor) -> None:
        from ember.compiler.autodiff import step as rules
        from ember.optim import SGD

        pv, gv = self._param_value(p), self.value_of(p.grad)
        if gv.type.dtype is not pv.type.dtype:
            gv = b.cast(gv, dtype=pv.type.dtype)
        if isinstance(opt, SGD):
            c = rules.SGDConfig(group["momentum"], group["dampening"], group["weight_decay"], group["nesterov"],
                                group.get("maximize", False))
            buf = None
            if c.momentum != 0:
                buf = self._state(opt, p, "momentum_buffer", zero_ok=c.dampening == 0)
            new_p, new_buf = rules.sgd_update(b, pv, gv, buf, self._scalar(opt, gi, done, "neg_lr", p), c)
            if new_buf is not None:
                self._set_state(opt, p, "momentum_buffer", new_buf)
        else:
            beta1, beta2 = group["betas"]
            c = rules.AdamConfig(beta1, beta2, group["eps"], group["weight_decay"], group["amsgrad"],
                                 group.get("maximize", False), group.get("decoupled_weight_decay", False))
            m, v = self._state(opt, p, "exp_avg"), self._state(opt, p, "exp_avg_sq")
            vmax = self._state(opt, p, "max_exp_avg_sq") if c.amsgrad else None
            s = rules.AdamScalars(self._scalar(opt, gi, done, "decay", p) if c.decoupled else None,
                                  self._scalar(opt, gi, done, "bias2_sqrt", p),
                                  self._scalar(opt, gi, done, "neg_step", p))
            new_p, m, v, vmax = rules.adam_update(b, pv, gv, m, v, vmax, s, c)
            for key, val in (("exp_avg", m), ("exp_avg_sq", v), ("max_exp_avg_sq", vmax)):
                if val is not None:
                    self._set_state(opt, p, key, val)
        arr, _, box = self.lifted[id(p._data)]
        self.lifted[id(p._data)] = (arr, new_p, box)  # later reads of p in the step see the new value

    def _state(self, opt: Any, p: Tensor, key: str, zero_ok: bool = True) -> Value | None:
        """The current value of one optimizer-state tensor: an input the first time (fed with zeros when
        the optimizer has no state yet, which equals eager's first step), then the traced update."""
        k = (id(opt), id(p), key)
        if k in self.state_now:
            return self.state_now[k]
        have = key in opt.state.get(p, {})
        if not have and not zero_ok:
            return None  # SGD with dampening: the first step's graph differs (buffer = gradient)
        v = self.extra_input(f"{self.state_names[id(p._data)][0]}.{key}", TensorType(tuple(p.shape), p.dtype),
                             ("state", opt, p, key))
        self.state_in[k] = self.state_now[k] = v
        self.state_owner[k] = (opt, p, key)
        return v

    def _set_state(self, opt: Any, p: Tensor, key: str, v: Value) -> None:
        k = (id(opt), id(p), key)
        self.state_now[k] = v
        self.state_owner[k] = (opt, p, key)

    def _scalar(self, opt: Any, gi: int, done: int, what: str, p: Tensor) -> Value:
        """A 0-d runtime input holding a host-computed hyper-parameter scalar (see ``_scalar_value``)."""
        key = (id(opt), gi, done, what, p.dtype.name)
        v = self.scalars.get(key)
        if v is None:
            v = self.extra_input(f"optimizer.{gi}.{what}", TensorType((), p.dtype),
                                 ("scalar", opt, gi, done, what, p.dtype.np))
            self.scalars[key] = v
        return v


def _opt_key(opt: Any) -> tuple[Any, ...]:
    """Everything about an optimizer a compiled step bakes in: hyper-parameters except the learning rate
    (a runtime input), and the identity of its parameters."""
    groups = []
    for g in opt.param_groups:
        items = tuple(sorted((k, repr(v)) for k, v in g.items() if k not in ("params", "lr")))
        groups.append((items, tuple(id(p) for p in g["params"])))
    return type(opt), tuple(groups)


def _scalar_value(opt: Any, gi: int, done: int, what: str, steps: int) -> float:
    """The Python scalar eager mode multiplies by (frontend/optim/sgd.py, adam.py), in double precision;
    ``steps``: the group's step count before this call, ``done``: steps the trace already took."""
    group = opt.param_groups[gi]
    lr = group["lr"]
    if what == "neg_lr":
        return -lr
    if what == "decay":
        return 1 - lr * group["weight_decay"]
    beta1, beta2 = group["betas"]
    t = steps + done + 1
    if what == "bias2_sqrt":
        return math.sqrt(1 - beta2 ** t)
    return -lr / (1 - beta1 ** t)


# ---- finishing the trace ------------------------------------------------------------------------------


class _Writes:
    """What the step's extra outputs update, and the host-side bookkeeping around the native call."""

    def __init__(self) -> None:
        self.targets: list[tuple[Any, ...]] = []   # per extra output: ("param"|"buffer", t), ("grad", p),
        self.values: list[Value] = []              # ("state", opt, p, key)
        self.drops: list[Tensor] = []              # params whose .grad the step discards before computing
        self.steps: list[tuple[Any, int, int, list[Tensor]]] = []  # (Adam, group, steps taken, params)

    def add(self, target: tuple[Any, ...], v: Value) -> None:
        self.targets.append(target)
        self.values.append(v)


def _collect_writes(tracer: StepTracer) -> _Writes:
    """Called at the end of the trace, before ``.grad`` and the state are restored."""
    from ember.optim import Adam

    w = _Writes()
    param_inputs = {v.name: v for v in tracer.builder.inputs if v.kind == "parameter"}
    for key, (_, v, _) in tracer.lifted.items():
        state = tracer.state_names.get(key)
        if state is not None and state[1] == "parameter" and v is not param_inputs.get(state[0]):
            w.add(("param", state[2]), v)
    for k, v in tracer.state_now.items():
        if v is not tracer.state_in.get(k):
            w.add(("state", *tracer.state_owner[k]), v)
    for pid, (p, _) in tracer.known.items():
        g = p.grad
        if isinstance(g, Tensor) and isinstance(g._data, _TraceData):
            if g._data.value is not tracer.grad_inputs.get(pid):
                w.add(("grad", p), g._data.value)
        if pid in tracer.overwritten and pid not in tracer.observed | tracer.zeroed_in_place:
            # the step discards whatever .grad comes in (zero_grad): free it before the call, as eager
            # does, also on later calls whose .grad exists where the traced call had none
            w.drops.append(p)
    for (_, gi), (opt, n, params) in tracer.steps.items():
        if isinstance(opt, Adam):
            w.steps.append((opt, gi, n, params))
    return w




def _drop_unused_inputs(tracer: StepTracer, graph_outputs: Any) -> None:
    """Extra inputs the finished graph never reads (an incoming ``.grad`` that ``zero_grad`` discarded)
    leave the calling convention; the user's inputs and seeds stay."""
    used = {id(x) for n in tracer.builder.nodes for x in n.value_inputs}
    used |= {id(v) for v in flatten_tree(graph_outputs) if isinstance(v, Value)}
    keep = []
    for v in tracer.builder.inputs:
        feed = tracer.feeds.get(v.name)
        if feed is not None and feed[0] != "seed" and id(v) not in used:
            del tracer.feeds[v.name]
            continue
        keep.append(v)
    tracer.builder.inputs = keep


def trace_step(fn: Any, args: tuple[Any, ...]) -> tuple[Any, StepTracer, _Writes]:
    """Trace one call of the step function into a graph with outputs ``(fn's result, new values)``."""
    from ember.optim.optimizer import Optimizer
    from ember.tracing import _arg_names, _output_leaf, _random_draw_error, _rng_state, _trace_inputs

    tracer = StepTracer(fn, getattr(fn, "__name__", "step").strip("<>"))
    refs = _referenced_objects(fn)
    for name, obj in refs:
        if hasattr(obj, "named_modules") and id(obj) not in tracer.module_names:
            tracer._index_module(obj, name)
            for pname, p in obj.named_parameters():
                tracer.know_param(p, f"{name}.{pname}")
    for _, obj in refs:
        if isinstance(obj, Optimizer) and type(obj).__name__ in ("SGD", "Adam", "AdamW"):
            tracer._adopt(obj)
    rng_before = _rng_state()
    prev_tracer, prev_grad = STATE.tracer, STATE.grad_enabled
    STATE.tracer, STATE.grad_enabled = tracer, False
    try:
        with _optimizers_traced():
            targs = _trace_inputs(tracer, _arg_names(fn, len(args)), args)
            user = [v for v in tracer.builder.inputs if v.kind == "input" and v.name not in tracer.feeds]
            for k, v in enumerate(user):  # the user's tensors, in argument order
                tracer.feeds[v.name] = ("arg", k)
            result = fn(*targs)
            outputs = map_tree(result, lambda leaf: _output_leaf(tracer, leaf))
            writes = _collect_writes(tracer)
    except TraceError as e:
        raise TraceError(f"{e}\n  or: {_FALLBACK}") from None
    finally:
        STATE.tracer, STATE.grad_enabled = prev_tracer, prev_grad
        tracer.active = False
        for p, before in tracer.known.values():
            p.grad = before
        tracer.restore_state()
    if _rng_state() != rng_before:
        raise _random_draw_error(fn)
    for name, v in tracer.updates.items():  # batch-norm running statistics (buffer_updates)
        writes.add(("buffer", _state_tensor(tracer, name)), v)
    graph_outputs = (outputs, tuple(writes.values))
    _drop_unused_inputs(tracer, graph_outputs)
    kept = {v.name for v in tracer.builder.inputs}
    writes.drops = [p for p in writes.drops
                    if id(p) not in tracer.grad_inputs or tracer.grad_inputs[id(p)].name not in kept]
    return tracer.builder.finish(graph_outputs), tracer, writes


def _state_tensor(tracer: StepTracer, name: str) -> Tensor:
    for n, _, t in tracer.state_names.values():
        if n == name:
            return t
    raise CompileError(f"ember.compile(step): no live tensor for {name!r}")


# ---- the compiled step ------------------------------------------------------------------------------


class _Guards:
    """What a traced step assumed about the world outside its inputs; checked before every call."""

    def __init__(self, tracer: StepTracer, modules: list[Any]) -> None:
        seen = {id(m): m for root in modules for m in root.modules()}
        seen.update(tracer.modules_seen)
        self.modules = [(m, m.training) for m in seen.values() if hasattr(m, "training")]
        self.opts = list(tracer.opt_guards.values())
        self.requires = [(p, p.requires_grad) for p, _ in tracer.known.values()]
        read = set(tracer.observed) | {pid for pid, v in tracer.grad_inputs.items() if v.name in tracer.feeds}
        self.grads = [(p, before is not None) for pid, (p, before) in tracer.known.items() if pid in read]
        self.first_step = [(opt, p, key) for k, (opt, p, key) in tracer.state_owner.items()
                           if k not in tracer.state_in]  # SGD with dampening: buffer created in-graph

    def hold(self) -> bool:
        return (all(m.training == t for m, t in self.modules)
                and all(_opt_key(o) == k for o, k in self.opts)
                and all(p.requires_grad == r for p, r in self.requires)
                and all((p.grad is not None) == g for p, g in self.grads)
                and not any(key in opt.state.get(p, {}) for opt, p, key in self.first_step))


class _StepEntry:
    """One compiled signature of a step function: the executable, how to feed it, what to write back."""

    def __init__(self, result: Any, tracer: StepTracer, writes: _Writes, guards: _Guards) -> None:
        self.result = result
        self.feeds = [tracer.feeds[n] for n in result.input_names]
        self.writes = writes
        self.guards = guards
        by_name = {n: t for n, _, t in tracer.state_names.values()}
        self.bound = [(n, by_name[n]) for n in result.param_names if n in by_name]
        self.bound_arrays: list[Any] = []
        self.runner: Any = None
        self.group_steps = {(id(o), gi): ps for o, gi, _, ps in writes.steps}
        user_tree = result.graph.outputs[0]
        self.num_user = sum(isinstance(v, Value) for v in flatten_tree(user_tree))
        names = {id(t): n for n, t in self.bound}
        self.aliased = _alias_plan(result, self.feeds, writes, self.num_user, names)

    def _input(self, feed: tuple[Any, ...], tensors: list[Tensor], seeds: Iterator[Any]) -> np.ndarray:
        kind = feed[0]
        if kind == "arg":
            return _contiguous(tensors[feed[1]]._data)
        if kind == "seed":
            return next(seeds)._data
        if kind == "grad":
            return _contiguous(feed[1].grad._data)
        if kind == "state":
            _, opt, p, key = feed
            t = opt.state.get(p, {}).get(key)
            return _contiguous(t._data) if t is not None else np.zeros(p.shape, p.dtype.np)
        _, opt, gi, done, what, dtype = feed
        return np.array(_scalar_value(opt, gi, done, what, self._steps_of(opt, gi)), dtype=dtype)

    def _steps_of(self, opt: Any, gi: int) -> int:
        counts = {int(opt.state.get(p, {}).get("step", 0)) for p in self.group_steps.get((id(opt), gi), [])}
        if len(counts) > 1:
            raise CompileError(f"ember.compile(step): the parameters of {type(opt).__name__} group {gi} have "
                               f"taken different numbers of steps ({sorted(counts)}); a compiled step uses one "
                               f"step count per group\n  fix: {_FALLBACK}")
        return counts.pop() if counts else 0

    def run(self, tensors: list[Tensor]) -> Any:
        from ember.creation import from_numpy

        seeds: Iterator[Any] = iter(())
        num_seeds = sum(f[0] == "seed" for f in self.feeds)
        if num_seeds:
            from ember.random import draw_seeds

            seeds = iter(draw_seeds(num_seeds))
        arrays = [self._input(f, tensors, seeds) for f in self.feeds]
        for p in self.writes.drops:  # eager's zero_grad frees them before the forward
            p.grad = None
        flat, in_place = self._execute(arrays)
        del arrays
        n = self.num_user
        user_tree = self.result.graph.outputs[0]
        outs = iter(flat[:n])
        result = map_tree(user_tree, lambda v: from_numpy(next(outs)) if isinstance(v, Value) else v)
        self._write_back(flat[n:], in_place)
        return result

    def _execute(self, arrays: list[np.ndarray]) -> tuple[tuple[np.ndarray, ...], set[int]]:
        """Outputs, and the write indices the executable already wrote into the live arrays."""
        if self.result.executable is None:  # target "interpret"
            from ember.compiler.ir.interpreter import interpret

            params = {n: t._data for n, t in self.bound}
            flat = interpret(self.result.graph, arrays, params)
            return tuple(np.asarray(x) for x in flatten_tree(flat)), set()
        if self.runner is None or any(a is not t._data for a, (_, t) in zip(self.bound_arrays, self.bound)):
            self._bind()
        if not self.aliased:
            return self.runner(*arrays), set()
        out, in_place = self._output_arrays(arrays)
        return self.runner(*arrays, out=out), in_place

    def _output_arrays(self, arrays: list[np.ndarray]) -> tuple[list[np.ndarray], set[int]]:
        """Fresh arrays for the outputs, except that a new parameter or optimizer state whose update the
        plan proved hazard-free (``_alias_plan``) is written straight into the array it replaces."""
        out, in_place = [], set()
        for k, spec in enumerate(self.runner.exe.outputs):
            j = k - self.num_user
            target = self.aliased.get(j)
            live = self._live_array(target, arrays) if target is not None else None
            if live is not None:
                out.append(live)
                in_place.add(j)
            else:
                out.append(np.empty(tuple(spec.shape), np.dtype(spec.dtype)))
        return out, in_place

    def _live_array(self, target: tuple[Any, int | None], arrays: list[np.ndarray]) -> np.ndarray | None:
        """The live array an aliased output may be written into: the very array the executable reads."""
        (kind, *rest), pos = target
        if kind == "state":
            return arrays[pos] if pos is not None and self._state_exists(*rest) else None
        t = rest[0]
        a = t._data
        return a if a.flags.c_contiguous and a.flags.writeable else None

    @staticmethod
    def _state_exists(opt: Any, p: Tensor, key: str) -> bool:
        t = opt.state.get(p, {}).get(key)
        return t is not None and t._data.flags.c_contiguous

    def _bind(self) -> None:
        """Parameters and buffers are read from the live arrays (written in place, so bound once)."""
        import dataclasses

        from ember.compiler.kernel.lower import sanitize
        from ember.runtime.cpu import CpuExecutable

        exe = self.result.executable
        constants = dict(exe.constants)
        for name, t in self.bound:
            constants[sanitize(name)] = _contiguous(t._data)
        self.runner = CpuExecutable(dataclasses.replace(exe, constants=constants))
        self.bound_arrays = [t._data for _, t in self.bound]

    def _write_back(self, arrays: tuple[np.ndarray, ...], in_place: set[int]) -> None:
        from ember.creation import from_numpy

        for j, (target, new) in enumerate(zip(self.writes.targets, arrays)):
            kind = target[0]
            if j in in_place:  # already written by the executable: only the version moves
                t = target[1] if kind != "state" else target[1].state[target[2]][target[3]]
                t._version[0] += 1
            elif kind in ("param", "buffer"):
                _copy_into(target[1], new)
            elif kind == "grad":
                p = target[1]
                if p.grad is None:
                    p.grad = from_numpy(new)  # the executable's fresh output: the gradient's own memory
                else:
                    _copy_into(p.grad, new)
            else:
                _, opt, p, key = target
                state = opt.state[p]
                if key in state:
                    _copy_into(state[key], new)
                else:
                    state[key] = from_numpy(new)
        for opt, _, n, params in self.writes.steps:
            for p in params:
                st = opt.state[p]
                st["step"] = int(st.get("step", 0)) + n


def _alias_plan(result: Any, feeds: list[tuple[Any, ...]], writes: _Writes, num_user: int,
                names: dict[int, str]) -> dict[int, tuple[tuple[Any, ...], int | None]]:
    """Which new parameters, buffers and optimizer states the executable may write straight into the
    array they replace: write index -> (target, position of the state's input array or None).

    Safe when, in the kernel order, no kernel after the one writing the new value reads the old one,
    and that kernel reads the old value (if at all) only elementwise at the same index: every op in it
    has a scalar lowering and old and new have the same type. Otherwise the value goes to a fresh
    output and is copied back after the call."""
    from ember.compiler.ops.registry import REGISTRY

    groups = result.groups
    if result.executable is None or not groups:
        return {}
    writer = {o: k for k, g in enumerate(groups) for o in g.outputs}
    last_read: dict[str, int] = {}
    for k, g in enumerate(groups):
        for x in g.inputs:
            last_read[x] = k
    out_names = result.output_names
    state_pos = {f[1:]: i for i, f in enumerate(feeds) if f[0] == "state"}
    plan: dict[int, tuple[tuple[Any, ...], int | None]] = {}
    for j, target in enumerate(writes.targets):
        if target[0] == "grad":
            continue
        pos = state_pos.get(target[1:]) if target[0] == "state" else None
        old = result.input_names[pos] if pos is not None else names.get(id(target[1]))
        new = out_names[num_user + j]
        k = writer.get(new)
        if old is None or k is None or out_names.count(new) != 1 or last_read.get(old, -1) > k:
            continue
        g = groups[k]
        if old in g.inputs and not (all("scalar" in REGISTRY[n.op].lowering for n in g.nodes)
                                    and g.type_of(old) == g.type_of(new)):
            continue
        plan[j] = (target, pos)
    return plan


def _copy_into(t: Tensor, new: np.ndarray) -> None:
    t._data[...] = new
    t._version[0] += 1


def _contiguous(a: np.ndarray) -> np.ndarray:
    return a if a.flags.c_contiguous else np.ascontiguousarray(a).reshape(a.shape)


class CompiledStepFunction:
    """What ``ember.compile(step_fn)`` returns for a training-step function. Call it like the original."""

    def __init__(self, fn: Any, target: str = "llvm") -> None:
        if target not in ("llvm", "interpret"):
            raise CompileError(f"ember.compile: unknown target {target!r}; expected 'llvm' or 'interpret'")
        self.fn = fn
        self.target = target
        self._cache: dict[tuple[Any, ...], list[_StepEntry]] = {}

    def entry_for(self, *args: Any) -> _StepEntry:
        """The compiled entry for these arguments and the present state, compiling it if it is new."""
        from ember.compile_api import _signature

        key = _signature(args, False)
        for entry in self._cache.get(key, ()):
            if entry.guards.hold():
                return entry
        entry = self._compile(args)
        self._cache.setdefault(key, []).append(entry)
        return entry

    def _compile(self, args: tuple[Any, ...]) -> _StepEntry:
        from ember.compiler.compile import compile_graph

        graph, tracer, writes = trace_step(self.fn, args)
        modules = [obj for _, obj in _referenced_objects(self.fn) if hasattr(obj, "named_modules")]
        guards = _Guards(tracer, modules)
        return _StepEntry(compile_graph(graph, self.target), tracer, writes, guards)

    def __call__(self, *args: Any) -> Any:
        tensors = [a for a in args if isinstance(a, Tensor)]
        if any(t.requires_grad for t in tensors):
            raise CompileError(f"ember.compile(step): an input of the step requires grad; a compiled step "
                               f"computes parameter gradients only\n  fix: {_FALLBACK}")
        return self.entry_for(*args).run(tensors)

    def graph(self, *args: Any) -> Any:
        """The optimized whole-step graph compiled for these arguments."""
        return self.entry_for(*args).result.graph

    @property
    def memory_plans(self) -> list[Any]:
        """The arena plans (``MemoryPlan``) of the compiled entries: one arena for forward and backward."""
        return [e.result.memory for es in self._cache.values() for e in es]

    def __repr__(self) -> str:
        n = sum(len(v) for v in self._cache.values())
        return f"CompiledStepFunction({getattr(self.fn, '__name__', 'step')}, target={self.target!r}, {n} entries)"
