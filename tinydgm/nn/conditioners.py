"""Conditioner networks for affine coupling layers (Dinh et al. 2015 "NICE", 2017
"Density estimation using Real NVP"; intro lecture part II, "Change of variable formula for
invertible function" and eq. 40-41).

A coupling layer splits x into (x1, x2) and transforms x2 with parameters computed from
x1 only:

    y1 = x1,    y2 = x2 * exp(s(x1)) + t(x1),    ln |det dy/dx| = 1^T s(x1)

s and t may be any network: these are the networks. Each returns ``(shift, log_scale)``
= (t, s), the two halves of its last layer's output, and that last layer starts at ZERO
(weights and bias), so a new coupling is exactly the identity (t = 0, s = 0, log-det 0)
and a deep flow starts as the identity map and learns away from it (Kingma & Dhariwal
2018, Glow, sec. 3.3).

Stability: with ``tanh_scale=True`` (the default) the log-scale is bounded,

    s = scale * tanh(raw),    scale a learnable vector (one per output feature/channel), init 1

so one step cannot multiply x2 by more than exp(scale) (a common stabiliser in Real NVP
implementations: it keeps early training from blowing up). scale starts at 1, not 0: the raw output is 0 at
initialisation, and scale = 0 would leave both factors with zero gradient.
``tanh_scale=False`` gives s = raw (NICE's additive coupling simply ignores s).

Masking x1 (checkerboard, channel split) and the coupling itself belong to the flow
layers; these networks only map their input to (shift, log_scale).
"""
from tinydgm import backend
from tinydgm.autodiff.elementwise import elu, leaky_relu, relu, softplus, tanh
from tinydgm.autodiff.shape import split
from tinydgm.nn.conv import Conv2d
from tinydgm.nn.linear import Linear
from tinydgm.nn.module import Module, ModuleList, Parameter

__all__ = ["MLPConditioner", "CNNConditioner"]

ACTIVATIONS = {"relu": relu, "tanh": tanh, "elu": elu, "leaky_relu": leaky_relu, "softplus": softplus}


def _activation(name, who):
    if name not in ACTIVATIONS:
        raise ValueError(f"{who}: activation must be one of {sorted(ACTIVATIONS)}, got {name!r}")
    return ACTIVATIONS[name]


def _positive_int(value, name, who):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{who}: {name} must be a positive int, got {value!r}")
    return value


class _Conditioner(Module):
    """Shared tail: split the last layer's output into (shift, raw log-scale) along
    ``axis`` and bound the log-scale with scale * tanh(raw)."""

    def _init_scale(self, tanh_scale, shape, dtype, device):
        self.tanh_scale = tanh_scale
        if tanh_scale:
            xp = backend.module_for_device(device or "cpu")
            self.scale = Parameter(xp.ones(shape, dtype=self.last.weight.dtype))

    def _shift_and_log_scale(self, out, axis):
        shift, raw = split(out, 2, axis=axis)
        log_scale = self.scale * tanh(raw) if self.tanh_scale else raw
        return shift, log_scale

    def extra_repr(self):
        return f"activation={self.activation!r}, tanh_scale={self.tanh_scale}"


class MLPConditioner(_Conditioner):
    """(shift, log_scale) = split(W_L act(... act(W_1 x + b_1) ...) + b_L), each (N, out_features).

    x: (N, in_features) (or any leading dimensions). ``hidden`` gives the widths of the
    hidden Linear layers, ``activation`` one of "relu", "tanh", "elu", "leaky_relu",
    "softplus". The last Linear (hidden[-1] -> 2 out_features) is zero-initialised:
    shift = log_scale = 0 for every input at initialisation. Output columns
    [0, out_features) are the shift, [out_features, 2 out_features) the raw log-scale.
    """

    def __init__(self, in_features, out_features, hidden=(64, 64), activation="relu", tanh_scale=True, rng=None,
                 dtype=None, device=None):
        super().__init__()
        who = "MLPConditioner"
        in_features = _positive_int(in_features, "in_features", who)
        self.out_features = _positive_int(out_features, "out_features", who)
        hidden = tuple(_positive_int(h, "hidden sizes", who) for h in hidden)
        self.activation = activation
        self.act = _activation(activation, who)
        sizes = (in_features,) + hidden
        kw = dict(rng=rng, dtype=dtype, device=device)
        self.layers = ModuleList([Linear(a, b, **kw) for a, b in zip(sizes[:-1], sizes[1:])])
        self.last = Linear(sizes[-1], 2 * out_features, zero_init=True, **kw)     # identity at init
        self._init_scale(tanh_scale, (out_features,), dtype, device)

    def forward(self, x):
        h = x
        for layer in self.layers:
            h = self.act(layer(h))
        return self._shift_and_log_scale(self.last(h), axis=-1)


class CNNConditioner(_Conditioner):
    """(shift, log_scale), each (N, out_channels, H, W), from x (N, in_channels, H, W):

        h = conv_in(x)                                  k x k, in_channels -> hidden_channels
        h = h + conv_b2(act(conv_b1(act(h))))           n_blocks residual blocks (ResNet, as in Real NVP)
        out = conv_out(act(h))                          k x k, hidden -> 2 out_channels, ZERO init
        shift, log_scale = out[:, :C_out], scale * tanh(out[:, C_out:])

    All convolutions keep H and W ("same" padding, stride 1; k odd). Real NVP's batch
    normalisation and weight normalisation inside the blocks are left out (small, plain
    ResNet). Channels [0, out_channels) of the last layer are the shift.
    """

    def __init__(self, in_channels, out_channels, hidden_channels=64, n_blocks=2, kernel_size=3, activation="relu",
                 tanh_scale=True, rng=None, dtype=None, device=None):
        super().__init__()
        who = "CNNConditioner"
        in_channels = _positive_int(in_channels, "in_channels", who)
        self.out_channels = _positive_int(out_channels, "out_channels", who)
        hidden_channels = _positive_int(hidden_channels, "hidden_channels", who)
        if isinstance(n_blocks, bool) or not isinstance(n_blocks, int) or n_blocks < 0:
            raise ValueError(f"{who}: n_blocks must be a non-negative int, got {n_blocks!r}")
        if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"{who}: kernel_size must be an odd positive int (same padding), got {kernel_size!r}")
        self.activation = activation
        self.act = _activation(activation, who)
        kw = dict(padding=kernel_size // 2, rng=rng, dtype=dtype, device=device)
        self.conv_in = Conv2d(in_channels, hidden_channels, kernel_size, **kw)
        self.blocks = ModuleList([ModuleList([Conv2d(hidden_channels, hidden_channels, kernel_size, **kw),
                                              Conv2d(hidden_channels, hidden_channels, kernel_size, **kw)])
                                  for _ in range(n_blocks)])
        self.last = Conv2d(hidden_channels, 2 * out_channels, kernel_size, zero_init=True, **kw)
        self._init_scale(tanh_scale, (out_channels, 1, 1), dtype, device)

    def forward(self, x):
        h = self.conv_in(x)
        for conv_1, conv_2 in self.blocks:
            h = h + conv_2(self.act(conv_1(self.act(h))))
        return self._shift_and_log_scale(self.last(self.act(h)), axis=1)
