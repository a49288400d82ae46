"""Recurrent layers: RNN (tanh/relu), LSTM, GRU and their cells, with PyTorch's parameter names
(``weight_ih_l0``, ``bias_hh_l1_reverse``, ...), gate order, initialization and repr.

Every layer is a composition of registry ops: the input projection of a whole sequence is one matmul,
then a Python loop over time steps runs the cell (matmul, add, sigmoid, tanh, mul). Padded and packed
inputs share one path: a padded (T, B, I) batch is a packed sequence whose batch sizes are all B. At step
t only the first batch_sizes[t] rows are active; the others keep their state, so the final hidden state
of each sequence is the one after its last step, in both directions.

>>> import ember
>>> ember.nn.LSTM(10, 20, num_layers=2, batch_first=True)
LSTM(10, 20, num_layers=2, batch_first=True)
"""

from __future__ import annotations

import math
from typing import Any

from ember.nn.modules.conv import uniform_parameter
from ember.nn.modules.module import Module
from ember.nn.utils.rnn import PackedSequence
from ember.runtime.errors import ArgumentError, ShapeError
from ember.tensor import Tensor

__all__ = ["RNNBase", "RNN", "LSTM", "GRU", "RNNCellBase", "RNNCell", "LSTMCell", "GRUCell"]

_GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}


# ---- one time step (shared by the layers and the cells) ---------------------------------------------------


def cell_step(
    mode: str, xw: Tensor, state: Any, w_hh_t: Tensor, b_hh: Tensor | None, w_hr_t: Tensor | None = None
) -> Any:
    """One step of a cell. ``xw`` is the input already projected (x @ W_ih^T + b_ih, and + b_hh where
    the bias can be folded, in which case ``b_hh`` is None); ``state`` is h, or (h, c) for LSTM. Returns
    the new state in the same form. Activations run on contiguous gate blocks (one sigmoid over all of
    an LSTM's gates) because in eager mode each op costs more than the arithmetic it does."""
    h = state[0] if mode == "LSTM" else state
    hw = h @ w_hh_t
    if b_hh is not None:
        hw = hw + b_hh
    if mode == "LSTM":
        gates = xw + hw
        n = gates.shape[1] // 4
        sig = gates.sigmoid()
        c = sig[:, n : 2 * n] * state[1] + sig[:, :n] * gates[:, 2 * n : 3 * n].tanh()
        h_new = sig[:, 3 * n :] * c.tanh()
        return (h_new if w_hr_t is None else h_new @ w_hr_t), c
    if mode == "GRU":
        n = xw.shape[1] // 3
        rz = (xw[:, : 2 * n] + hw[:, : 2 * n]).sigmoid()
        new = (xw[:, 2 * n :] + rz[:, :n] * hw[:, 2 * n :]).tanh()
        return new + rz[:, n:] * (h - new)  # (1 - z) * n + z * h
    pre = xw + hw
    return pre.tanh() if mode == "RNN_TANH" else pre.relu()


def _rows(state: Any, stop: int) -> Any:
    """The first ``stop`` rows of a state (the sequences still running); no op when all are."""
    if isinstance(state, tuple):
        return state if state[0].shape[0] == stop else tuple(s[:stop] for s in state)
    return state if state.shape[0] == stop else state[:stop]


def _merge(new: Any, old: Any, bs: int) -> Any:
    """Active rows from ``new``, the rest of the batch from ``old`` (their sequences are not running)."""
    from ember import cat

    rows = old[0].shape[0] if isinstance(old, tuple) else old.shape[0]
    if rows == bs:
        return new
    if isinstance(new, tuple):
        return tuple(cat([n, o[bs:]], 0) for n, o in zip(new, old))
    return cat([new, old[bs:]], 0)


def run_direction(
    mode: str,
    xw: Tensor,
    sizes: list[int],
    state: Any,
    w_hh: Tensor,
    b_hh: Tensor | None,
    reverse: bool,
    w_hr: Tensor | None = None,
) -> tuple[Tensor, Any]:
    """Run one direction of one layer over packed, projected inputs ``xw`` (sum(sizes), G). Returns the
    packed outputs (sum(sizes), H) and the final state of every sequence."""
    from ember import cat

    w_hh_t = w_hh.t()
    w_hr_t = None if w_hr is None else w_hr.t()
    offsets = [0]
    for bs in sizes:
        offsets.append(offsets[-1] + bs)
    outs: list[Any] = [None] * len(sizes)
    steps = range(len(sizes) - 1, -1, -1) if reverse else range(len(sizes))
    for t in steps:
        bs = sizes[t]
        new = cell_step(mode, xw[offsets[t] : offsets[t + 1]], _rows(state, bs), w_hh_t, b_hh, w_hr_t)
        outs[t] = new[0] if isinstance(new, tuple) else new
        state = _merge(new, state, bs)
    return cat(outs, 0), state


# ---- layers -------------------------------------------------------------------------------------------


class RNNBase(Module):
    """Shared body of RNN, LSTM and GRU: parameters, argument checks, the layer/direction loop."""

    def __init__(
        self,
        mode: str,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        _check_sizes(input_size, hidden_size, num_layers, dropout)
        if proj_size < 0 or (proj_size and mode != "LSTM") or proj_size >= hidden_size:
            raise ArgumentError(
                "proj_size argument is only supported for LSTM, not RNN or GRU"
                if proj_size and mode != "LSTM"
                else "proj_size has to be a positive integer smaller than hidden_size"
                if proj_size
                else f"proj_size should be a non-negative integer, got {proj_size}"
            )
        self.mode = mode
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, float(dropout)
        self.bidirectional, self.proj_size = bidirectional, proj_size
        directions = 2 if bidirectional else 1
        gate = _GATES[mode] * hidden_size
        bound = 1.0 / math.sqrt(hidden_size) if hidden_size > 0 else 0.0
        self._flat_weights_names: list[str] = []
        for layer in range(num_layers):
            layer_in = input_size if layer == 0 else (proj_size or hidden_size) * directions
            for d in range(directions):
                sfx = f"_l{layer}" + ("_reverse" if d else "")
                shapes = [("weight_ih", (gate, layer_in)), ("weight_hh", (gate, proj_size or hidden_size))]
                if bias:
                    shapes += [("bias_ih", (gate,)), ("bias_hh", (gate,))]
                if proj_size:
                    shapes.append(("weight_hr", (proj_size, hidden_size)))
                for name, shape in shapes:
                    setattr(self, name + sfx, uniform_parameter(shape, bound, dtype, device))
                    self._flat_weights_names.append(name + sfx)

    @property
    def all_weights(self) -> list[list[Tensor]]:
        per = (4 if self.bias else 2) + (1 if self.proj_size else 0)
        names = self._flat_weights_names
        return [[getattr(self, n) for n in names[i : i + per]] for i in range(0, len(names), per)]

    def flatten_parameters(self) -> None:
        """PyTorch compacts cuDNN weights here; ember's weights need nothing."""

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.proj_size != 0:
            s += f", proj_size={self.proj_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if self.batch_first is not False:
            s += f", batch_first={self.batch_first}"
        if self.dropout != 0:
            s += f", dropout={self.dropout}"
        if self.bidirectional is not False:
            s += f", bidirectional={self.bidirectional}"
        return s

    def forward(self, input: Any, hx: Any = None) -> tuple[Any, Any]:
        packed = isinstance(input, PackedSequence)
        data, sizes, batch, unbatched = self._as_packed(input)
        states = self._initial_states(hx, batch, unbatched, data, input if packed else None)
        finals: list[Any] = []
        directions = 2 if self.bidirectional else 1
        for layer in range(self.num_layers):
            if layer > 0 and self.dropout > 0 and self.training:
                from ember.nn.functional.dropout import dropout

                data = dropout(data, self.dropout, True)
            outs = []
            for d in range(directions):
                idx = layer * directions + d
                out, final = self._run(layer, d, data, sizes, states[idx])
                outs.append(out)
                finals.append(final)
            if directions == 1:
                data = outs[0]
            else:
                from ember import cat

                data = cat(outs, 1)
        return self._outputs(input, data, sizes, finals, unbatched)

    def _run(self, layer: int, d: int, data: Tensor, sizes: list[int], state: Any) -> tuple[Tensor, Any]:
        sfx = f"_l{layer}" + ("_reverse" if d else "")
        w_ih = getattr(self, "weight_ih" + sfx)
        xw = data @ w_ih.t()
        b_hh = None
        if self.bias:
            xw = xw + getattr(self, "bias_ih" + sfx)
            b_hh = getattr(self, "bias_hh" + sfx)
            if self.mode != "GRU":  # GRU's b_hn sits inside r * (...): it cannot be folded
                xw = xw + b_hh
                b_hh = None
        w_hr = getattr(self, "weight_hr" + sfx) if self.proj_size else None
        w_hh = getattr(self, "weight_hh" + sfx)
        return run_direction(self.mode, xw, sizes, state, w_hh, b_hh, d == 1, w_hr)

    def _as_packed(self, input: Any) -> tuple[Tensor, list[int], int, bool]:
        """(data (sum(sizes), I), batch sizes per step, batch, unbatched?) for any accepted input."""
        if isinstance(input, PackedSequence):
            sizes = [int(b) for b in input.batch_sizes.tolist()]
            data, batch, unbatched = input.data, (sizes[0] if sizes else 0), False
        else:
            name = type(self).__name__
            if input.dim() not in (2, 3):
                raise ShapeError(f"{name}: Expected input to be 2D or 3D, got {input.dim()}D tensor instead")
            unbatched = input.dim() == 2
            x = input.unsqueeze(1) if unbatched else (input.transpose(0, 1) if self.batch_first else input)
            steps, batch = x.shape[0], x.shape[1]
            sizes = [batch] * steps
            data = x.reshape(steps * batch, x.shape[2])
        if data.shape[-1] != self.input_size:
            raise ShapeError(
                f"input.size(-1) must be equal to input_size. Expected {self.input_size}, got"
                f" {data.shape[-1]}"
            )
        return data, sizes, batch, unbatched

    def _initial_states(
        self, hx: Any, batch: int, unbatched: bool, data: Tensor, packed: PackedSequence | None
    ) -> list[Any]:
        from ember import zeros

        count = self.num_layers * (2 if self.bidirectional else 1)
        shape = (count, batch, self.proj_size or self.hidden_size)
        c_shape = (count, batch, self.hidden_size)  # LSTM's cell state is never projected
        if hx is None:
            z = zeros(*shape, dtype=data.dtype, device=data.device)
            hs = (z, zeros(*c_shape, dtype=data.dtype, device=data.device)) if self.mode == "LSTM" else z
        elif self.mode == "LSTM":
            hs = (
                self._check_hidden(hx[0], shape, unbatched, packed),
                self._check_hidden(hx[1], c_shape, unbatched, packed),
            )
        else:
            hs = self._check_hidden(hx, shape, unbatched, packed)
        if self.mode == "LSTM":
            return [(hs[0][i], hs[1][i]) for i in range(count)]
        return [hs[i] for i in range(count)]

    def _check_hidden(
        self, h: Tensor, shape: tuple[int, ...], unbatched: bool, packed: PackedSequence | None
    ) -> Tensor:
        if unbatched:
            if h.dim() != 2:
                raise ShapeError(f"For unbatched 2-D input, hx should also be 2-D but got {h.dim()}-D tensor")
            h = h.unsqueeze(1)
        elif h.dim() != 3:
            raise ShapeError(f"For batched 3-D input, hx should also be 3-D but got {h.dim()}-D tensor")
        if tuple(h.shape) != shape:
            raise ShapeError(f"Expected hidden size {shape}, got {list(h.shape)}")
        if packed is not None and packed.sorted_indices is not None:
            h = h.index_select(1, packed.sorted_indices)
        return h

    def _outputs(
        self, input: Any, data: Tensor, sizes: list[int], finals: list[Any], unbatched: bool
    ) -> tuple[Any, Any]:
        from ember import stack

        def hidden(parts: list[Tensor]) -> Tensor:
            h = stack(parts, 0)
            if isinstance(input, PackedSequence) and input.unsorted_indices is not None:
                h = h.index_select(1, input.unsorted_indices)
            return h.squeeze(1) if unbatched else h

        if self.mode == "LSTM":
            h_n: Any = (hidden([f[0] for f in finals]), hidden([f[1] for f in finals]))
        else:
            h_n = hidden(finals)
        if isinstance(input, PackedSequence):
            return input._replace(data=data), h_n
        out = data.reshape(len(sizes), sizes[0] if sizes else 0, data.shape[-1])
        if unbatched:
            out = out.squeeze(1)
        elif self.batch_first:
            out = out.transpose(0, 1)
        return out, h_n


def _check_sizes(input_size: int, hidden_size: int, num_layers: int, dropout: float) -> None:
    if not isinstance(hidden_size, int) or hidden_size <= 0:
        raise ArgumentError(f"hidden_size must be an integer greater than zero, got {hidden_size!r}")
    if not isinstance(num_layers, int) or num_layers <= 0:
        raise ArgumentError(f"num_layers must be an integer greater than zero, got {num_layers!r}")
    if not 0 <= dropout <= 1 or isinstance(dropout, bool):
        raise ArgumentError(
            "dropout should be a number in range [0, 1] representing the probability of an"
            " element being zeroed"
        )


class RNN(RNNBase):
    """Elman RNN: h_t = tanh(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh) (or relu)."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ArgumentError(f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or 'relu'.")
        super().__init__(
            "RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU",
            input_size,
            hidden_size,
            num_layers,
            bias,
            batch_first,
            dropout,
            bidirectional,
            0,
            device,
            dtype,
        )
        self.nonlinearity = nonlinearity


class LSTM(RNNBase):
    """Long short-term memory; gates in PyTorch's order (input, forget, cell, output)."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__(
            "LSTM",
            input_size,
            hidden_size,
            num_layers,
            bias,
            batch_first,
            dropout,
            bidirectional,
            proj_size,
            device,
            dtype,
        )


class GRU(RNNBase):
    """Gated recurrent unit; gates in PyTorch's order (reset, update, new)."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__(
            "GRU",
            input_size,
            hidden_size,
            num_layers,
            bias,
            batch_first,
            dropout,
            bidirectional,
            0,
            device,
            dtype,
        )


# ---- cells --------------------------------------------------------------------------------------------


class RNNCellBase(Module):
    """One time step as a module: parameters weight_ih, weight_hh, bias_ih, bias_hh."""

    _mode = "RNN_TANH"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool,
        num_chunks: int,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        _check_sizes(input_size, hidden_size, 1, 0.0)
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        bound = 1.0 / math.sqrt(hidden_size)
        self.weight_ih = uniform_parameter((num_chunks * hidden_size, input_size), bound, dtype, device)
        self.weight_hh = uniform_parameter((num_chunks * hidden_size, hidden_size), bound, dtype, device)
        if bias:
            self.bias_ih = uniform_parameter((num_chunks * hidden_size,), bound, dtype, device)
            self.bias_hh = uniform_parameter((num_chunks * hidden_size,), bound, dtype, device)
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        nonlinearity = getattr(self, "nonlinearity", "tanh")
        if nonlinearity != "tanh":
            s += f", nonlinearity={nonlinearity}"
        return s

    def _prepare(self, input: Tensor, hx: Any) -> tuple[Tensor, Any, bool]:
        name = type(self).__name__
        if input.dim() not in (1, 2):
            raise ShapeError(f"{name}: Expected input to be 1D or 2D, got {input.dim()}D instead")
        if input.shape[-1] != self.input_size:
            raise ShapeError(
                f"input has inconsistent input_size: got {input.shape[-1]} expected {self.input_size}"
            )
        unbatched = input.dim() == 1
        x = input.unsqueeze(0) if unbatched else input
        if hx is None:
            from ember import zeros

            z = zeros(x.shape[0], self.hidden_size, dtype=x.dtype, device=x.device)
            return x, ((z, z) if self._mode == "LSTM" else z), unbatched
        parts = hx if isinstance(hx, tuple) else (hx,)
        fixed = []
        for h in parts:
            h = h.unsqueeze(0) if unbatched else h
            if tuple(h.shape) != (x.shape[0], self.hidden_size):
                raise ShapeError(
                    f"hidden has inconsistent shape: got {list(h.shape)}, expected"
                    f" {[x.shape[0], self.hidden_size]}"
                )
            fixed.append(h)
        return x, (tuple(fixed) if self._mode == "LSTM" else fixed[0]), unbatched

    def forward(self, input: Tensor, hx: Any = None) -> Any:
        x, state, unbatched = self._prepare(input, hx)
        xw = x @ self.weight_ih.t()
        if self.bias_ih is not None:
            xw = xw + self.bias_ih
        new = cell_step(self._mode, xw, state, self.weight_hh.t(), self.bias_hh)
        if unbatched:
            return tuple(n.squeeze(0) for n in new) if isinstance(new, tuple) else new.squeeze(0)
        return new


class RNNCell(RNNCellBase):
    """h' = tanh(x W_ih^T + b_ih + h W_hh^T + b_hh) (or relu)."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        nonlinearity: str = "tanh",
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ArgumentError(f"Unknown nonlinearity: {nonlinearity}")
        super().__init__(input_size, hidden_size, bias, 1, device, dtype)
        self.nonlinearity = nonlinearity
        self._mode = "RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU"


class LSTMCell(RNNCellBase):
    """One LSTM step: returns (h', c')."""

    _mode = "LSTM"

    def __init__(
        self, input_size: int, hidden_size: int, bias: bool = True, device: Any = None, dtype: Any = None
    ) -> None:
        super().__init__(input_size, hidden_size, bias, 4, device, dtype)


class GRUCell(RNNCellBase):
    """One GRU step: returns h'."""

    _mode = "GRU"

    def __init__(
        self, input_size: int, hidden_size: int, bias: bool = True, device: Any = None, dtype: Any = None
    ) -> None:
        super().__init__(input_size, hidden_size, bias, 3, device, dtype)
