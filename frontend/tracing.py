"""``ember.trace(module_or_fn, *example_inputs) -> Graph``: runs the forward pass once on tensors that hold
no data, recording every op the dispatcher sees.

How it works: example inputs are replaced by ``TracedTensor`` objects whose array is a shape-only
stand-in (``_TraceData``) pointing at an IR value. ``ember.dispatch.apply`` hands every op to
``Tracer.record`` while a trace is active; composites arrive already decomposed and attributes already
checked. Python control flow and nested module calls simply run, so they are unrolled; module calls push
their qualified name (``layer1.0.conv1``) as the scope of the nodes they record, and every node keeps the
user's file and line.

What a static graph cannot capture is refused with a ``TraceError`` that names the user's line and the
fix, never recorded as a silently wrong graph: reading data (``.item()``, ``.numpy()``, ``.tolist()``,
``if x.sum() > 0``), mutating graph inputs, parameters, buffers or tensors captured from outside, and using
a view after the tensor it views was changed in place.
"""

from __future__ import annotations

import contextlib
import gc
import inspect
import os
import sys
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import ember
import ember.compiler
import ember.runtime
import numpy as np
from ember._state import STATE
from ember.compiler.ir.graph import Graph, GraphBuilder, Value, map_tree
from ember.compiler.ops import REGISTRY
from ember.compiler.ops.registry import OpDef, TensorType
from ember.runtime.errors import ShapeError, TraceError
from ember.tensor import Tensor, check_dtype_cast

# ---- where the user's code is --------------------------------------------------------------------

_FRONTEND = os.path.dirname(os.path.abspath(ember.__file__))
_INTERNAL = tuple(os.path.join(d, "") for d in (
    _FRONTEND,
    os.path.dirname(os.path.abspath(ember.compiler.__file__)),
    os.path.dirname(os.path.abspath(ember.runtime.__file__)),
))
# model code shipped with ember (the vision zoo) is "user code" for locations: that is where a layer is
_MODEL_CODE = (os.path.join(_FRONTEND, "vision", ""),)
# stdlib wrappers (contextlib, functools) between ember and the user are not the user's line either
_STDLIB = os.path.dirname(os.path.abspath(contextlib.__file__))


def _is_internal(path: str) -> bool:
    path = os.path.abspath(path)
    if path.startswith(_MODEL_CODE):
        return False
    return path.startswith(_INTERNAL) or os.path.dirname(path) == _STDLIB


def user_location() -> tuple[str, int] | None:
    """File and line of the innermost frame outside ember's own code."""
    frame = sys._getframe(1)
    while frame is not None:
        if not _is_internal(frame.f_code.co_filename):
            return frame.f_code.co_filename, frame.f_lineno
        frame = frame.f_back  # type: ignore[assignment]
    return None


def trace_error(what: str, fix: str) -> TraceError:
    """A TraceError that starts with the user's file:line and ends with the fix."""
    loc = user_location()
    where = f"{loc[0]}:{loc[1]}: " if loc else ""
    return TraceError(f"{where}{what}\n  fix: {fix}")


_READ_FIX = ("keep the computation in tensor ops (for example ember.where(cond, a, b) instead of an if on a"
             " tensor), or pass the number in as a plain Python argument so it is fixed at trace time")


# ---- the data stand-in and the traced tensor -------------------------------------------------------


class _Flags:
    c_contiguous = True
    f_contiguous = False
    writeable = True


class _TraceData:
    """Where a traced tensor's array would be: shape and dtype only. Anything that reads data raises."""

    __slots__ = ("shape", "dtype", "value", "tracer", "box", "seen", "origin")
    flags = _Flags()

    def __init__(self, value: Value, tracer: Tracer, box: list[int], origin: str) -> None:
        self.shape = tuple(value.type.shape)
        self.dtype = value.type.dtype.np
        self.value = value
        self.tracer = tracer
        self.box = box          # version counter shared by a tensor and its views
        self.seen = box[0]      # the version this tensor's value reflects
        self.origin = origin    # "input" for graph inputs and their views, else "graph"

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def itemsize(self) -> int:
        return self.dtype.itemsize

    @property
    def strides(self) -> tuple[int, ...]:
        out, step = [], self.dtype.itemsize
        for s in reversed(self.shape):
            out.append(step)
            step *= max(s, 1)
        return tuple(reversed(out))

    def __getattr__(self, name: str) -> Any:
        raise trace_error(f"reading the data of a traced tensor (array attribute {name!r}) while tracing",
                          _READ_FIX)

    def __array__(self, *args: Any, **kwargs: Any) -> Any:
        raise trace_error("converting a traced tensor to a numpy array while tracing", _READ_FIX)

    def _refuse(self, *args: Any) -> Any:
        raise trace_error("using the data of a traced tensor in Python while tracing", _READ_FIX)

    __bool__ = __float__ = __int__ = __index__ = __iter__ = __getitem__ = __setitem__ = _refuse
    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = __truediv__ = __rtruediv__ = _refuse
    __lt__ = __le__ = __gt__ = __ge__ = __eq__ = __ne__ = __neg__ = __abs__ = __pow__ = _refuse
    __hash__ = object.__hash__


class TracedTensor(Tensor):
    """A tensor under tracing: metadata works, data access raises a TraceError naming the user's line."""

    def numpy(self, *, force: bool = False) -> np.ndarray:
        raise trace_error(".numpy() on a traced tensor: it has no data while tracing", _READ_FIX)

    def item(self) -> Any:
        raise trace_error(".item() on a traced tensor: its value is not known while tracing", _READ_FIX)

    def tolist(self) -> Any:
        raise trace_error(".tolist() on a traced tensor: its values are not known while tracing", _READ_FIX)

    def _host(self) -> np.ndarray:
        raise trace_error("reading the data of a traced tensor while tracing", _READ_FIX)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        raise trace_error("converting a traced tensor to a numpy array while tracing", _READ_FIX)

    def __bool__(self) -> bool:
        raise trace_error(
            "data-dependent control flow: the truth value of a traced tensor (as in `if x.sum() > 0:`)"
            " is not known while tracing, and a graph records one branch only",
            "select with ember.where(cond, a, b) so both branches are in the graph, or make the decision"
            " a Python argument of forward (fixed at trace time)")

    def __float__(self) -> float:
        raise trace_error("float() of a traced tensor: its value is not known while tracing", _READ_FIX)

    def __int__(self) -> int:
        raise trace_error("int() of a traced tensor: its value is not known while tracing", _READ_FIX)

    def __index__(self) -> int:
        raise trace_error("using a traced tensor as a Python index or size: its value is not known while"
                          " tracing", _READ_FIX)

    def __format__(self, spec: str) -> str:
        return repr(self) if not spec else self.__float__().__format__(spec)

    def __repr__(self) -> str:
        return f"TracedTensor(shape={list(self.shape)}, dtype={self.dtype})"

    def __deepcopy__(self, memo: dict[int, Any]) -> Tensor:
        raise trace_error("deep-copying a traced tensor while tracing", "copy with .clone() instead")

    def __reduce_ex__(self, protocol: int) -> Any:
        raise trace_error("pickling a traced tensor while tracing", "save tensors outside the traced code")

    def detach(self) -> Tensor:
        return _traced(self._data.value, self._data.tracer, self._data.box, self._data.origin)

    @property
    def data(self) -> Tensor:  # type: ignore[override]
        return self.detach()

    @data.setter
    def data(self, value: Tensor) -> None:
        raise trace_error("assigning .data of a traced tensor while tracing",
                          "bind the new tensor to a Python name instead (x = new_value)")


def _traced(value: Value, tracer: Tracer, box: list[int] | None = None,
            origin: str = "graph") -> TracedTensor:
    t = object.__new__(TracedTensor)
    t._init_from(_TraceData(value, tracer, box if box is not None else [0], origin), value.type.dtype, None)
    from ember.device import CPU

    t._device = CPU
    return t


# ---- the tracer ---------------------------------------------------------------------------------------


class Tracer:
    """Records ops into a GraphBuilder while installed as ``STATE.tracer``."""

    def __init__(self, root: Any, name: str, buffer_updates: bool = False) -> None:
        self.builder = GraphBuilder(name)
        self.buffer_updates = buffer_updates  # in-place writes to buffers become outputs (training)
        self.updates: dict[str, Value] = {}
        self.scopes: list[str] = [""]
        self.module_names: dict[int, str] = {}
        self.state_names: dict[int, tuple[str, str, Any]] = {}  # id(array) -> (name, kind, tensor)
        self.state_arrays: list[tuple[Any, str, str, Any]] = []  # (array, name, kind, tensor), to restore
        self.lifted: dict[int, tuple[Any, Value, list[int]]] = {}  # id(array) -> (array, value, box)
        self.constant_count = 0
        self.active = True
        self.preexisting: dict[int, Any] = _snapshot_arrays()
        if hasattr(root, "named_modules"):
            self._index_module(root)

    def fresh_name(self, want: str) -> str:
        """``want``, or ``want_1``, ``want_2``...: graph names are unique, and parameters and buffers keep
        their state_dict keys, so user inputs and constants give way."""
        taken = {v.name for v in self.builder.inputs + self.builder.constants}
        taken.update(name for name, _, _ in self.state_names.values())
        name, k = want, 0
        while name in taken:
            k += 1
            name = f"{want}_{k}"
        return name

    def _index_module(self, root: Any, prefix: str = "") -> None:
        """Learn the qualified names of a module's submodules, parameters and buffers (``prefix`` for a
        module met inside a traced function rather than passed to trace)."""
        dot = prefix + "." if prefix else ""
        for name, mod in root.named_modules():
            self.module_names.setdefault(id(mod), dot + name if name else prefix)
        for kind, items in (("parameter", root.named_parameters()), ("buffer", root.named_buffers())):
            for name, t in items:
                name = dot + name
                if t is not None:
                    if id(t._data) not in self.state_names:
                        self.state_arrays.append((t._data, name, kind, t))
                    self.state_names.setdefault(id(t._data), (name, kind, t))

    # ---- scopes -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def module_scope(self, module: Any) -> Iterator[None]:
        """Nodes recorded inside are scoped by the module's qualified name in the traced root."""
        name = self.module_names.get(id(module))
        if name is None:  # a module called by a traced function: its state becomes parameters too
            parent = self.scopes[-1]
            name = base = f"{parent}.{type(module).__name__}" if parent else type(module).__name__
            taken, k = set(self.module_names.values()), 0
            while name in taken:  # a second module of that class: its own parameter names
                k += 1
                name = f"{base}_{k}"
            if hasattr(module, "named_modules"):
                self._index_module(module, name)
        self.scopes.append(name)
        try:
            yield
        finally:
            self.scopes.pop()

    # ---- operands -----------------------------------------------------------------------------

    def value_of(self, t: Tensor) -> Value:
        data = t._data
        if isinstance(data, _TraceData):
            if data.tracer is not self or not self.active:
                raise trace_error("a traced tensor from another (or a finished) trace is used here",
                                  "do not keep traced tensors outside the traced function")
            if data.seen != data.box[0]:
                raise trace_error(
                    "this tensor is a view of a tensor that was modified in place after the view was"
                    " taken (or the view itself was modified): the graph cannot share memory between"
                    " them", "take the view after the in-place update, or use out-of-place ops")
            return data.value
        _, value, box = self._lift(t)
        if box[0]:  # another tensor sharing this array was changed in place (and rebound) earlier
            raise trace_error(
                "this tensor shares memory with a tensor that was modified in place earlier in the trace;"
                " the graph cannot share memory between them",
                "use the modified tensor itself, or clone before modifying")
        return value

    def _lift(self, t: Tensor) -> tuple[Any, Value, list[int]]:
        """A real tensor met while tracing: a parameter or buffer of the root, else a named constant."""
        key = id(t._data)
        hit = self.lifted.get(key)
        if hit is not None:
            return hit
        ty = TensorType(tuple(t.shape), t.dtype)
        state = self.state_names.get(key)
        if state is not None:
            name, kind, _ = state
            v = self.builder.add_input(name, ty, kind)
            self.builder.bindings[name] = t._data
        else:
            name = self.fresh_name(f"const{self.constant_count}")
            self.constant_count += 1
            v = self.builder.add_constant(name, ty, np.array(t._host(), copy=True))
        entry = (t._data, v, [0])
        self.lifted[key] = entry
        return entry

    def _operand(self, a: Any) -> Any:
        if isinstance(a, Tensor):
            return self.value_of(a)
        if isinstance(a, (bool, int, float)):
            return a
        if isinstance(a, np.generic) and a.shape == ():
            return a.item()
        raise trace_error(f"an operand of type {type(a).__name__} cannot be recorded in a graph",
                          "pass tensors or Python numbers to ops")

    def seed_input(self) -> TracedTensor:
        """A new int64 graph input of shape [] that seeds one counter-based draw (train-mode dropout).
        Seed inputs follow the user's inputs (those are all added before the traced code runs); the
        compiled runtime feeds them with ``ember.random.draw_seeds`` on every call."""
        from ember.compiler.dtypes import int64
        from ember.random import SEED_INPUT_NAME

        v = self.builder.add_input(self.fresh_name(SEED_INPUT_NAME), TensorType((), int64), "input")
        return _traced(v, self, origin="input")

    def _box_of(self, t: Any) -> tuple[list[int], str]:
        if isinstance(t, Tensor) and isinstance(t._data, _TraceData):
            return t._data.box, t._data.origin
        if isinstance(t, Tensor):
            return self._lift(t)[2], "graph"
        return [0], "graph"

    # ---- recording ----------------------------------------------------------------------------

    def record(self, op: OpDef, args: tuple[Any, ...], attrs: dict[str, Any]) -> Any:
        """Called by the dispatcher for every primitive op while tracing."""
        operands = tuple(self._operand(a) for a in args)
        in_types = tuple(x.type if isinstance(x, Value) else x for x in operands)
        inferred = op.infer(*in_types, **attrs)
        types = (inferred,) if op.num_outputs == 1 else tuple(inferred)
        node = self.builder.add_node(op, operands, attrs, types, self.scopes[-1], user_location())
        outs = []
        for v in node.outputs:
            if op.view and args:
                box, origin = self._box_of(args[0])
                outs.append(_traced(v, self, box, origin))
            else:
                outs.append(_traced(v, self))
        return outs[0] if op.num_outputs == 1 else tuple(outs)

    def record_inplace(self, target: Tensor, op: OpDef, rest: tuple[Any, ...],
                       attrs: dict[str, Any]) -> Tensor:
        """``target.op_(*rest)``: record the out-of-place op and rebind ``target`` to its result."""
        self._check_mutable(target, op)
        from ember.dispatch import apply

        result = apply(op, (target, *rest), attrs)
        if tuple(result.shape) != tuple(target.shape):
            raise ShapeError(f"{op.name}_: output with shape {list(target.shape)} doesn't match the broadcast"
                             f" shape {list(result.shape)}")
        check_dtype_cast(op.name + "_", result.dtype, target.dtype)
        if result.dtype is not target.dtype:
            result = apply(REGISTRY["cast"], (result,), {"dtype": target.dtype})
        box, origin = self._box_of(target)
        box[0] += 1
        if not isinstance(target, TracedTensor):
            target.__class__ = TracedTensor  # a tensor created inside the trace: from now on it is traced
        target._data = _TraceData(result._data.value, self, box, origin)
        return target

    def restore_state(self) -> None:
        """``param.data = traced`` would leave the model holding a stand-in: put the array back, refuse."""
        broken = []
        for array, name, kind, t in self.state_arrays:
            if kind == "buffer" and self.buffer_updates and isinstance(t._data, _TraceData):
                self.updates[name] = t._data.value
                t.__class__, t._data = Tensor, array
                continue
            if t._data is not array:
                t._data = array
                broken.append(f"{kind} {name!r}")
        if broken:
            raise TraceError(f"the traced code replaced the data of {', '.join(broken)} (as `p.data = ...`"
                             " does); a graph never changes its parameters or buffers (the originals were"
                             " restored)")

    def _check_mutable(self, target: Tensor, op: OpDef) -> None:
        data = target._data
        fix = f"use the out-of-place form (y = x.{op.name}(...)) or write into a .clone() of the tensor"
        if isinstance(data, _TraceData):
            if data.origin == "input":
                raise trace_error(f"in-place {op.name}_ on a graph input (or a view of one): a compiled"
                                  " graph never changes its inputs", fix)
            return
        state = self.state_names.get(id(data))
        if state is not None and state[1] == "buffer" and self.buffer_updates:
            return
        if state is not None:
            raise trace_error(f"in-place {op.name}_ on {state[1]} {state[0]!r} while tracing: a compiled"
                              " graph never changes its parameters or buffers",
                              fix + "; for batch norm, call model.eval() before tracing")
        ref = self.preexisting.get(id(data))
        if (ref is not None and ref() is data) or not data.flags.owndata:
            # a view (from_numpy of an outside array, a slice made before the trace) may alias outside
            # memory, which eager mode would change and the graph would not
            raise trace_error(f"in-place {op.name}_ on a tensor captured from outside the traced code (or"
                              " sharing its memory): the graph would bake in its current value and never"
                              " update it", fix)


def _snapshot_arrays() -> dict[int, Any]:
    """Arrays of every tensor alive before the trace: writes into them are writes to captured state."""
    out: dict[int, Any] = {}
    for obj in gc.get_objects():
        # type(), not isinstance(): isinstance reads __class__, which some proxies in gc answer with warnings
        if issubclass(type(obj), Tensor) and type(getattr(obj, "_data", None)) is np.ndarray:
            out[id(obj._data)] = weakref.ref(obj._data)
    return out


# ---- entry point ------------------------------------------------------------------------------------


def _arg_names(fn: Any, n: int) -> list[str]:
    target = fn.forward if hasattr(fn, "forward") and hasattr(fn, "named_modules") else fn
    names: list[str] = []
    try:
        params = list(inspect.signature(target).parameters.values())
    except (TypeError, ValueError):
        params = []
    for p in params:
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            names.append(p.name)
        elif p.kind == p.VAR_POSITIONAL:
            names += [f"{p.name}{i}" for i in range(n - len(names))]
    return (names + [f"input{i}" for i in range(len(names), n)])[:n]


def _trace_inputs(tracer: Tracer, names: list[str], args: tuple[Any, ...]) -> list[Any]:
    def walk(x: Any, path: str) -> Any:
        if isinstance(x, Tensor):
            ty = TensorType(tuple(x.shape), x.dtype)
            v = tracer.builder.add_input(tracer.fresh_name(path), ty, "input")
            return _traced(v, tracer, origin="input")
        if isinstance(x, (tuple, list)):
            out = [walk(y, f"{path}.{i}") for i, y in enumerate(x)]
            return type(x)(out) if type(x) in (tuple, list) else tuple(out)
        if isinstance(x, dict):
            return {k: walk(y, f"{path}.{k}") for k, y in x.items()}
        return x  # Python values are fixed at trace time

    return [walk(a, name) for a, name in zip(args, names)]


def _output_leaf(tracer: Tracer, leaf: Any) -> Any:
    if isinstance(leaf, Tensor):
        return tracer.value_of(leaf)
    if leaf is None or isinstance(leaf, (bool, int, float, str)):
        return leaf
    raise trace_error(f"the traced code returned a {type(leaf).__name__}; a graph returns tensors (and"
                      " tuples, lists and dicts of them)", "return tensors only")


def trace(module_or_fn: Callable[..., Any], *example_inputs: Any, buffer_updates: bool = False) -> Graph:
    """Trace a module or function on example inputs into a ``Graph``.

    ``buffer_updates=True`` (compiled training) records in-place updates of buffers (batch norm's running
    statistics in train mode) instead of refusing them: the graph then returns ``(outputs, {buffer name:
    new value})`` and the caller writes the new values back after each run.

    >>> import ember
    >>> g = ember.trace(lambda x: (x * 2).relu(), ember.ones(2, 3))
    >>> [n.op.name for n in g.nodes]
    ['mul', 'relu']
    """
    if not callable(module_or_fn):
        raise TypeError(f"trace() expects a module or a function, got {type(module_or_fn).__name__}")
    is_module = hasattr(module_or_fn, "named_modules")
    name = type(module_or_fn).__name__ if is_module else getattr(module_or_fn, "__name__", "graph")
    tracer = Tracer(module_or_fn, "graph" if name == "<lambda>" else name, buffer_updates)
    rng_before = _rng_state()
    prev_tracer, prev_grad = STATE.tracer, STATE.grad_enabled
    STATE.tracer, STATE.grad_enabled = tracer, False
    try:
        args = _trace_inputs(tracer, _arg_names(module_or_fn, len(example_inputs)), example_inputs)
        result = module_or_fn(*args)
        outputs = map_tree(result, lambda leaf: _output_leaf(tracer, leaf))
    finally:
        STATE.tracer, STATE.grad_enabled = prev_tracer, prev_grad
        tracer.active = False
        tracer.restore_state()
    if _rng_state() != rng_before:
        raise _random_draw_error(module_or_fn)
    if buffer_updates:
        outputs = (outputs, dict(tracer.updates))
    return tracer.builder.finish(outputs)


def _rng_state() -> Any:
    from ember import random as _random

    return id(_random.generator()), repr(_random.generator().bit_generator.state)


def _random_draw_error(fn: Any) -> TraceError:
    """The traced code drew random numbers: a graph would freeze that one draw as a constant."""
    target = fn.forward if hasattr(fn, "named_modules") else fn
    try:
        where = f"{inspect.getsourcefile(target)}:{inspect.getsourcelines(target)[1]}: "
    except (TypeError, OSError):
        where = ""
    return TraceError(f"{where}the traced code drew random numbers (rand/randn/normal_ ...); a graph would"
                      " freeze that one draw into a constant (dropout is fine: it traces to a seed input)\n"
                      "  fix: pass the random tensor in as an input, or call model.eval() before tracing")
