"""Recurrent layers: the LSTM (Hochreiter & Schmidhuber 1997, with the forget gate of Gers
et al. 2000) and the GRU (Cho et al. 2014), as cells (one step) and as sequence layers (a
loop over time). The autoregressive models of the intro lecture part III ("Recurrent neural
networks", "Pixel RNN") and the variational RNN of kuleshov-l12 ("Variational RNN") run on
them.

LSTM cell, gates in PyTorch's order (i, f, g, o) so that weights copy over unchanged:

    [a_i, a_f, a_g, a_o] = x W_ih + h W_hh + b          one matmul per input for all four gates
    i = sigmoid(a_i)   f = sigmoid(a_f)   g = tanh(a_g)   o = sigmoid(a_o)
    c' = f * c + i * g                                   the cell: a gated running sum
    h' = o * tanh(c')

GRU cell, gates in PyTorch's order (r, z, n):

    [a_r, a_z, a_n] = x W_ih + b_ih        [s_r, s_z, s_n] = h W_hh + b_hh
    r = sigmoid(a_r + s_r)   z = sigmoid(a_z + s_z)
    n = tanh(a_n + r * s_n)                              r gates the recurrent part only
    h' = (1 - z) * n + z * h

Weights are stored as in ``Linear``: W_ih (input_size, G H), W_hh (H, G H) with G = 4 (LSTM)
or 3 (GRU), so a row batch reads x W (PyTorch stores the transposes; ``from_torch`` in the
tests copies them). The LSTM keeps one bias b = b_ih + b_hh (two biases add up to one); the
GRU needs both, because r multiplies h W_hh + b_hh.

The sequence layers take batch-first sequences x (N, T, D) and compute x W_ih + b for all T
steps in one matmul before the loop, so each step is one (N, H) x (H, G H) matmul plus the
elementwise gates. Everything is made of engine ops: gradients of any order come for free.
Initialisation: every weight and bias U(-1/sqrt(H), 1/sqrt(H)), PyTorch's default.
"""
import math

from tinydgm import backend
from tinydgm.autodiff.core import Function, Tensor, grad, is_grad_enabled
from tinydgm.autodiff.elementwise import sigmoid, tanh
from tinydgm.autodiff.linalg import matmul
from tinydgm.autodiff.shape import concatenate, split, stack
from tinydgm.nn import init
from tinydgm.nn.module import Module, Parameter

__all__ = ["LSTMCell", "GRUCell", "LSTM", "GRU", "lstm_gates", "gru_gates", "lstm_gates_reference",
           "gru_gates_reference", "lstm_sequence", "lstm_sequence_reference"]


# ----------------------------------------------------------------------------- the gate arithmetic

def lstm_gates_reference(a, c):
    """(h', c') from the pre-activations a = x W_ih + h W_hh + b (..., 4 H) and the cell c
    (..., H), written out in engine ops: the readable version of ``lstm_gates``."""
    hidden = c.shape[-1]
    i = sigmoid(a[..., :hidden])                        # input gate
    f = sigmoid(a[..., hidden:2 * hidden])              # forget gate
    g = tanh(a[..., 2 * hidden:3 * hidden])             # candidate cell
    o = sigmoid(a[..., 3 * hidden:])                    # output gate
    c = f * c + i * g
    return o * tanh(c), c


def gru_gates_reference(x_proj, s, h):
    """h' from x_proj = x W_ih + b_ih (..., 3 H), s = h W_hh + b_hh (..., 3 H) and h (..., H),
    in engine ops: the readable version of ``gru_gates``."""
    hidden = h.shape[-1]
    r = sigmoid(x_proj[..., :hidden] + s[..., :hidden])                         # reset gate
    z = sigmoid(x_proj[..., hidden:2 * hidden] + s[..., hidden:2 * hidden])     # update gate
    n = tanh(x_proj[..., 2 * hidden:] + r * s[..., 2 * hidden:])                # candidate
    return (1 - z) * n + z * h


def _sigmoid_array(xp, x):
    return 0.5 * (1.0 + xp.tanh(0.5 * x))              # = 1 / (1 + exp(-x)), never overflows


def _sigmoid_inplace(xp, a):
    a *= 0.5
    xp.tanh(a, out=a)
    a += 1.0
    a *= 0.5


def _split_gates(xp, a, n_gates):
    return xp.split(a, n_gates, axis=-1)


class LSTMGates(Function):
    """The LSTM cell's elementwise part as one op (``lstm_gates_reference`` is the same math):
    a sequence loop of T steps records T ops instead of about 12 T.

    Backward: with ``create_graph`` (gradients of gradients) it is written in engine ops on
    the inputs, so it can be differentiated again; otherwise it runs on the arrays, reusing
    the gates that forward kept (they are read only by that first-order path)."""

    def forward(self, a, c):
        xp = backend.xp_of(a)
        a_i, a_f, a_g, a_o = _split_gates(xp, a, 4)
        i, f, o = _sigmoid_array(xp, a_i), _sigmoid_array(xp, a_f), _sigmoid_array(xp, a_o)
        g = xp.tanh(a_g)
        c_new = f * c + i * g
        tanh_c = xp.tanh(c_new)
        self.gates = (i, f, g, o, tanh_c)
        return o * tanh_c, c_new

    def backward(self, gh, gc):
        a, c = self.inputs
        if is_grad_enabled():
            return self._backward_ops(a, c, gh, gc)
        i, f, g, o, tanh_c = self.gates
        xp = backend.xp_of(gh.data)
        gh, gc = gh.data, gc.data
        gc_new = gc + gh * o * (1 - tanh_c * tanh_c)          # c' reaches the loss directly and through h'
        ga = xp.concatenate([gc_new * g * i * (1 - i),         # d/da_i
                             gc_new * c.data * f * (1 - f),    # d/da_f
                             gc_new * i * (1 - g * g),         # d/da_g
                             gh * tanh_c * o * (1 - o)], axis=-1)   # d/da_o
        return Tensor(ga), Tensor(gc_new * f)

    @staticmethod
    def _backward_ops(a, c, gh, gc):
        hidden = c.shape[-1]
        i, f = sigmoid(a[..., :hidden]), sigmoid(a[..., hidden:2 * hidden])
        g, o = tanh(a[..., 2 * hidden:3 * hidden]), sigmoid(a[..., 3 * hidden:])
        tanh_c = tanh(f * c + i * g)
        gc_new = gc + gh * o * (1 - tanh_c * tanh_c)
        ga = concatenate([gc_new * g * i * (1 - i), gc_new * c * f * (1 - f), gc_new * i * (1 - g * g),
                          gh * tanh_c * o * (1 - o)], axis=-1)
        return ga, gc_new * f


class GRUGates(Function):
    """The GRU cell's elementwise part as one op (``gru_gates_reference`` is the same math);
    backward as in ``LSTMGates``."""

    def forward(self, x_proj, s, h):
        xp = backend.xp_of(x_proj)
        x_r, x_z, x_n = _split_gates(xp, x_proj, 3)
        s_r, s_z, s_n = _split_gates(xp, s, 3)
        r, z = _sigmoid_array(xp, x_r + s_r), _sigmoid_array(xp, x_z + s_z)
        n = xp.tanh(x_n + r * s_n)
        self.gates = (r, z, n, s_n)
        return (1 - z) * n + z * h

    def backward(self, gy):
        x_proj, s, h = self.inputs
        if is_grad_enabled():
            return self._backward_ops(x_proj, s, h, gy)
        r, z, n, s_n = self.gates
        xp = backend.xp_of(gy.data)
        gy = gy.data
        ga_n = gy * (1 - z) * (1 - n * n)                     # through n = tanh(a_n)
        ga_r = ga_n * s_n * r * (1 - r)                       # r enters as r * s_n
        ga_z = gy * (h.data - n) * z * (1 - z)
        gx = xp.concatenate([ga_r, ga_z, ga_n], axis=-1)
        gs = xp.concatenate([ga_r, ga_z, ga_n * r], axis=-1)
        return Tensor(gx), Tensor(gs), Tensor(gy * z)

    @staticmethod
    def _backward_ops(x_proj, s, h, gy):
        hidden = h.shape[-1]
        r = sigmoid(x_proj[..., :hidden] + s[..., :hidden])
        z = sigmoid(x_proj[..., hidden:2 * hidden] + s[..., hidden:2 * hidden])
        s_n = s[..., 2 * hidden:]
        n = tanh(x_proj[..., 2 * hidden:] + r * s_n)
        ga_n = gy * (1 - z) * (1 - n * n)
        ga_r = ga_n * s_n * r * (1 - r)
        ga_z = gy * (h - n) * z * (1 - z)
        return (concatenate([ga_r, ga_z, ga_n], axis=-1), concatenate([ga_r, ga_z, ga_n * r], axis=-1), gy * z)


class LSTMSequence(Function):
    """A whole LSTM loop as one op: (x_proj (N, T, 4 H), h_0, c_0, W_hh) -> (h_1..T (N, T, H), c_T),
    with h_t, c_t = lstm_gates(x_proj[:, t] + h_{t-1} W_hh, c_{t-1}); ``lstm_sequence_reference``
    is the same loop in engine ops.

    First-order backward is backpropagation through time on the arrays: one (N, 4 H) x (4 H, H)
    matmul per step for dh_{t-1}, and dW_hh = sum_t h_{t-1}^T da_t as one matmul over all steps.
    With ``create_graph`` the backward differentiates the reference loop instead, so gradients
    of any order stay exact."""

    def forward(self, x_proj, h0, c0, weight_hh):
        xp = backend.xp_of(x_proj)
        n, n_steps, width = x_proj.shape
        hidden = width // 4
        hs = xp.empty((n, n_steps, hidden), dtype=x_proj.dtype)
        gates = xp.empty((n_steps, n, width), dtype=x_proj.dtype)          # i, f, g, o of every step
        cs = xp.empty((n_steps + 1, n, hidden), dtype=x_proj.dtype)        # c_0 .. c_T
        tanh_cs = xp.empty((n_steps, n, hidden), dtype=x_proj.dtype)
        h, cs[0] = h0, c0
        for t in range(n_steps):
            act = gates[t]
            xp.matmul(h, weight_hh, out=act)
            act += x_proj[:, t]
            a_g = act[:, 2 * hidden:3 * hidden].copy()
            _sigmoid_inplace(xp, act)                     # i, f, o (and g, overwritten next)
            xp.tanh(a_g, out=act[:, 2 * hidden:3 * hidden])
            i, f, g, o = act[:, :hidden], act[:, hidden:2 * hidden], act[:, 2 * hidden:3 * hidden], act[:, 3 * hidden:]
            xp.multiply(f, cs[t], out=cs[t + 1])
            cs[t + 1] += i * g
            xp.tanh(cs[t + 1], out=tanh_cs[t])
            h = hs[:, t]
            xp.multiply(o, tanh_cs[t], out=h)
        self.saved = (hs, gates, cs, tanh_cs)             # read only by the first-order backward
        return hs, cs[n_steps].copy()

    def backward(self, g_hs, g_c):
        if is_grad_enabled():
            return self._backward_by_reference(g_hs, g_c)
        x_proj, h0, c0, weight_hh = self.inputs
        hs, gates, cs, tanh_cs = self.saved
        xp = backend.xp_of(g_hs.data)
        g_hs, weight_t = g_hs.data, weight_hh.data.T
        gc = g_c.data.copy()
        n, n_steps, hidden = g_hs.shape
        ga = xp.empty((n, n_steps, 4 * hidden), dtype=g_hs.dtype)
        gh = xp.zeros((n, hidden), dtype=g_hs.dtype)
        for t in range(n_steps - 1, -1, -1):
            act, tanh_c, d = gates[t], tanh_cs[t], ga[:, t]
            i, f, g, o = act[:, :hidden], act[:, hidden:2 * hidden], act[:, 2 * hidden:3 * hidden], act[:, 3 * hidden:]
            gh += g_hs[:, t]
            gc += gh * o * (1 - tanh_c * tanh_c)          # c_t reaches the loss directly and through h_t
            xp.multiply(act, 1 - act, out=d)              # sigmoid' = s (1 - s) for i, f, o
            d[:, 2 * hidden:3 * hidden] = 1 - g * g       # tanh' for g
            d[:, :hidden] *= gc * g                       # d/da_i
            d[:, hidden:2 * hidden] *= gc * cs[t]         # d/da_f
            d[:, 2 * hidden:3 * hidden] *= gc * i         # d/da_g
            d[:, 3 * hidden:] *= gh * tanh_c              # d/da_o
            gc *= f                                       # dc_{t-1}
            gh = d @ weight_t                             # dh_{t-1}
        h_prev = xp.concatenate([h0.data[:, None], hs[:, :-1]], axis=1)                  # h_0 .. h_{T-1}
        g_weight = h_prev.reshape(-1, hidden).T @ ga.reshape(-1, 4 * hidden)           # sum_t h_{t-1}^T da_t
        return Tensor(ga), Tensor(gh), Tensor(gc), Tensor(g_weight)

    def _backward_by_reference(self, g_hs, g_c):
        inputs = self.inputs
        wanted = [k for k, need in enumerate(self.needs_input_grad) if need]
        hs, c = lstm_sequence_reference(*inputs)
        found = grad([hs, c], [inputs[k] for k in wanted], [g_hs, g_c], create_graph=True, allow_unused=True)
        out = [None] * len(inputs)
        for k, g in zip(wanted, found):
            out[k] = g
        return tuple(out)


def lstm_sequence_reference(x_proj, h0, c0, weight_hh):
    """The LSTM loop in engine ops (the readable version of ``LSTMSequence``):
    h_t, c_t = lstm_gates(x_proj[:, t] + h_{t-1} W_hh, c_{t-1}); returns (h_1..T (N, T, H), c_T)."""
    n, n_steps, _ = x_proj.shape
    h, c, hs = h0, c0, []
    for x_t in split(x_proj, n_steps, axis=1):
        h, c = lstm_gates(x_t.reshape(n, -1) + matmul(h, weight_hh), c)
        hs.append(h)
    return stack(hs, axis=1), c


def lstm_sequence(x_proj, h0, c0, weight_hh):
    """(h_1..T (N, T, H), c_T): the LSTM loop over x_proj = x W_ih + b (N, T, 4 H) from the
    state (h_0, c_0), one op (``lstm_sequence_reference`` is the readable version)."""
    if x_proj.ndim != 3 or x_proj.shape[-1] != 4 * h0.shape[-1]:
        raise ValueError(f"lstm_sequence: x_proj must have shape (N, T, 4 H) = (N, T, {4 * h0.shape[-1]}), "
                         f"got {x_proj.shape}")
    return LSTMSequence()(x_proj, h0, c0, weight_hh)


def _check_gates(pre, state, n_gates, who):
    if pre.shape[-1] != n_gates * state.shape[-1] or pre.shape[:-1] != state.shape[:-1]:
        raise ValueError(f"{who}: pre-activations must have shape (..., {n_gates} H) for a state (..., H) = "
                         f"{state.shape}, got {pre.shape}")


def lstm_gates(a, c):
    """(h', c') = LSTM gates of the pre-activations a (..., 4 H) and the cell c (..., H), one
    op (module docstring; ``lstm_gates_reference`` is the readable version)."""
    _check_gates(a, c, 4, "lstm_gates")
    return LSTMGates()(a, c)


def gru_gates(x_proj, s, h):
    """h' = GRU gates of x_proj = x W_ih + b_ih, s = h W_hh + b_hh (both (..., 3 H)) and h
    (..., H), one op (``gru_gates_reference`` is the readable version)."""
    _check_gates(x_proj, h, 3, "gru_gates")
    _check_gates(s, h, 3, "gru_gates")
    return GRUGates()(x_proj, s, h)


def _positive_int(value, name, who):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{who}: {name} must be a positive int, got {value!r}")
    return value


class _RecurrentCell(Module):
    """What the LSTM and GRU cells share: the gate weights, their initialisation, the input
    projection x W_ih + b_ih and the checks. ``n_gates`` is G."""

    n_gates = None

    def __init__(self, input_size, hidden_size, rng=None, dtype=None, device=None):
        super().__init__()
        who = type(self).__name__
        self.input_size = _positive_int(input_size, "input_size", who)
        self.hidden_size = _positive_int(hidden_size, "hidden_size", who)
        bound = 1.0 / math.sqrt(hidden_size)
        width = self.n_gates * hidden_size

        def uniform(*shape):
            return Parameter(init.uniform(shape, -bound, bound, rng, dtype, device))
        self.weight_ih = uniform(input_size, width)
        self.weight_hh = uniform(hidden_size, width)
        self.bias_ih = uniform(width)

    def extra_repr(self):
        return f"{self.input_size}, {self.hidden_size}"

    def project_input(self, x):
        """x W_ih + b_ih for x (..., input_size): the part of every gate that does not
        depend on the state (a sequence layer computes it for all steps at once)."""
        if x.shape[-1] != self.input_size:
            raise ValueError(f"{type(self).__name__}: input has {x.shape[-1]} features (shape {x.shape}) but "
                             f"the cell expects input_size={self.input_size}")
        return matmul(x, self.weight_ih) + self.bias_ih

    def _zeros(self, n):
        xp = backend.get_array_module(self.weight_hh.data)
        return Tensor(xp.zeros((n, self.hidden_size), dtype=self.weight_hh.dtype))

    def _check_state(self, h, n, name):
        if h.shape != (n, self.hidden_size):
            raise ValueError(f"{type(self).__name__}: {name} must have shape (N, hidden_size) = "
                             f"({n}, {self.hidden_size}), got {h.shape}")
        return h


class LSTMCell(_RecurrentCell):
    """One LSTM step (module docstring): ``cell(x, (h, c)) -> (h', c')``, x (N, input_size),
    h and c (N, hidden_size); a missing state starts at zeros."""

    n_gates = 4

    def forward(self, x, state=None):
        h, c = self._state(state, x.shape[0])
        return self.step(self.project_input(x), h, c)

    def _state(self, state, n):
        if state is None:
            return self._zeros(n), self._zeros(n)
        h, c = state
        return self._check_state(h, n, "h"), self._check_state(c, n, "c")

    def step(self, x_proj, h, c):
        """(h', c') from the projected input x_proj = x W_ih + b (N, 4 H) and the state."""
        a = x_proj + matmul(h, self.weight_hh)          # all four gates in one matmul
        return lstm_gates(a, c)


class GRUCell(_RecurrentCell):
    """One GRU step (module docstring): ``cell(x, h) -> h'``, x (N, input_size), h (N,
    hidden_size); a missing state starts at zeros."""

    n_gates = 3

    def __init__(self, input_size, hidden_size, rng=None, dtype=None, device=None):
        super().__init__(input_size, hidden_size, rng, dtype, device)
        bound = 1.0 / math.sqrt(hidden_size)
        self.bias_hh = Parameter(init.uniform((3 * hidden_size,), -bound, bound, rng, dtype, device))

    def forward(self, x, h=None):
        h = self._zeros(x.shape[0]) if h is None else self._check_state(h, x.shape[0], "h")
        return self.step(self.project_input(x), h)

    def step(self, x_proj, h):
        """h' from the projected input x_proj = x W_ih + b_ih (N, 3 H) and h."""
        s = matmul(h, self.weight_hh) + self.bias_hh     # all three recurrent parts in one matmul
        return gru_gates(x_proj, s, h)


class _Sequence(Module):
    """A cell run over a batch-first sequence x (N, T, input_size)."""

    cell_type = None

    def __init__(self, input_size, hidden_size, rng=None, dtype=None, device=None):
        super().__init__()
        self.cell = self.cell_type(input_size, hidden_size, rng=rng, dtype=dtype, device=device)
        self.input_size, self.hidden_size = input_size, hidden_size

    def extra_repr(self):
        return f"{self.input_size}, {self.hidden_size}"

    def _projected_steps(self, x):
        if x.ndim != 3:
            raise ValueError(f"{type(self).__name__}: x must be a batch-first sequence (N, T, input_size), "
                             f"got shape {x.shape}")
        n, n_steps, _ = x.shape
        x_proj = self.cell.project_input(x)                 # (N, T, G H): one matmul for every step
        # one split, not T slices: the gradient of a slice is a full (N, T, G H) array
        return [part.reshape(n, -1) for part in split(x_proj, n_steps, axis=1)]


class LSTM(_Sequence):
    """``lstm(x, (h0, c0)) -> (outputs, (h_T, c_T))``: outputs (N, T, hidden_size) stacks
    h_1 .. h_T; the state starts at zeros when not given."""

    cell_type = LSTMCell

    def forward(self, x, state=None):
        if x.ndim != 3:
            raise ValueError(f"LSTM: x must be a batch-first sequence (N, T, input_size), got shape {x.shape}")
        h0, c0 = self.cell._state(state, x.shape[0])
        x_proj = self.cell.project_input(x)                  # (N, T, 4 H): one matmul for every step
        hs, c = lstm_sequence(x_proj, h0, c0, self.cell.weight_hh)
        return hs, (hs[:, -1], c)


class GRU(_Sequence):
    """``gru(x, h0) -> (outputs, h_T)``: outputs (N, T, hidden_size) stacks h_1 .. h_T; the
    state starts at zeros when not given."""

    cell_type = GRUCell

    def forward(self, x, h=None):
        steps = self._projected_steps(x)
        h = self.cell._zeros(x.shape[0]) if h is None else self.cell._check_state(h, x.shape[0], "h")
        outputs = []
        for x_proj in steps:
            h = self.cell.step(x_proj, h)
            outputs.append(h)
        return stack(outputs, axis=1), h
