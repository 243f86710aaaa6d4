"""Gaussian encoders q_phi(z|x) = N(z; mu_phi(x), diag(exp(log_var_phi(x)))): the inference
network of a VAE (Kingma & Welling 2014; intro lecture part II eq. 21 and 27, tomczak-dgm
"Variational Auto-Encoder": the encoder outputs the parameters of the variational posterior).

Every encoder maps a batch x of shape (N, *event_shape) to two (N, L) tensors,

    forward(x) -> (mu, log_var)             log_var = log sigma^2, so sigma = exp(log_var / 2)
    distribution(x) -> Normal(mu, log_var=log_var)     (elementwise: sum over L yourself)

    MLPEncoder   x -> flatten -> [Linear, act] x len(hidden) -> Linear(2L) -> split (mu | log_var)
    ConvEncoder  x -> [Conv2d 4x4 stride 2 pad 1, act] per channel width -> flatten
                   -> [Linear, act] x len(hidden) -> Linear(2L) -> split (mu | log_var)

The last layer outputs mu and log_var together (one matmul) and the split puts the first
L columns in mu. log_var is not clamped: a very confident encoder can overflow exp(log_var)
in float32, which the VAE reports as a non-finite loss. ``hidden=()`` gives a linear
(affine) encoder, the amortised posterior of a linear-Gaussian model.
"""
from tinydgm.autodiff.shape import split
from tinydgm.distributions import Normal
from tinydgm.nn.activations import ELU, LeakyReLU, ReLU, Softplus, Tanh
from tinydgm.nn.conv import Conv2d
from tinydgm.nn.linear import Linear
from tinydgm.nn.module import Module, Sequential

__all__ = ["GaussianEncoder", "MLPEncoder", "ConvEncoder", "ACTIVATIONS", "event_size"]

ACTIVATIONS = {"relu": ReLU, "tanh": Tanh, "softplus": Softplus, "elu": ELU, "leaky_relu": LeakyReLU}


def activation_layer(name, who):
    """A fresh activation module by name (see ACTIVATIONS), or an error naming the choices."""
    if name not in ACTIVATIONS:
        raise ValueError(f"{who}: activation must be one of {sorted(ACTIVATIONS)}, got {name!r}")
    return ACTIVATIONS[name]()


def positive_int(value, name, who):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{who}: {name} must be a positive int, got {value!r}")
    return value


def as_event_shape(shape, who):
    """An int D or a tuple of positive ints, as a tuple."""
    shape = (shape,) if isinstance(shape, int) and not isinstance(shape, bool) else tuple(shape)
    for s in shape:
        positive_int(s, "every entry of the event shape", who)
    if not shape:
        raise ValueError(f"{who}: the event shape must have at least one dimension, got ()")
    return shape


def event_size(event_shape):
    """D = the number of entries of one example."""
    d = 1
    for s in event_shape:
        d *= s
    return d


def mlp(sizes, activation, who, rng, dtype, device):
    """Linear layers between consecutive ``sizes``, the activation after every one but the last."""
    layers = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(Linear(n_in, n_out, rng=rng, dtype=dtype, device=device))
        if i < len(sizes) - 2:
            layers.append(activation_layer(activation, who))
    return Sequential(*layers)


class GaussianEncoder(Module):
    """Base of the encoders: subclasses set ``event_shape``, ``latent_dim`` and implement
    ``forward(x) -> (mu, log_var)``; this class adds the distribution q(z|x)."""

    def distribution(self, x):
        """q(z|x) = N(mu(x), diag(exp(log_var(x)))), batch shape (N, L)."""
        mu, log_var = self(x)
        return Normal(mu, log_var=log_var)

    def _check_input(self, x):
        if tuple(x.shape[1:]) != self.event_shape or x.ndim != len(self.event_shape) + 1:
            raise ValueError(f"{type(self).__name__}: x must have shape (N, {', '.join(map(str, self.event_shape))}), "
                             f"got {tuple(x.shape)}")

    def _mu_and_log_var(self, h):
        mu, log_var = split(h, 2, axis=-1)          # first L columns mu, last L log sigma^2
        return mu, log_var


class MLPEncoder(GaussianEncoder):
    """MLPEncoder(event_shape, latent_dim, hidden=(400,), activation="relu", rng=None, dtype=None, device=None).

    event_shape: D or the shape of one example (flattened on entry, e.g. (1, 28, 28)).
    latent_dim: L. hidden: widths of the hidden layers (() for an affine encoder).
    activation: one of "relu", "tanh", "softplus", "elu", "leaky_relu".
    """

    def __init__(self, event_shape, latent_dim, hidden=(400,), activation="relu", rng=None, dtype=None,
                 device=None):
        super().__init__()
        who = "MLPEncoder"
        self.event_shape = as_event_shape(event_shape, who)
        self.latent_dim = positive_int(latent_dim, "latent_dim", who)
        self.hidden = tuple(positive_int(h, "hidden sizes", who) for h in hidden)
        self.activation = activation
        sizes = (event_size(self.event_shape),) + self.hidden + (2 * self.latent_dim,)
        self.net = mlp(sizes, activation, who, rng, dtype, device)

    def forward(self, x):
        """(mu, log_var), each (N, L)."""
        self._check_input(x)
        return self._mu_and_log_var(self.net(x.reshape(x.shape[0], -1)))

    def extra_repr(self):
        return (f"event_shape={self.event_shape}, latent_dim={self.latent_dim}, hidden={self.hidden}, "
                f"activation={self.activation!r}")


class ConvEncoder(GaussianEncoder):
    """ConvEncoder(image_shape, latent_dim, channels=(32, 64), hidden=(256,), activation="relu",
    rng=None, dtype=None, device=None).

    image_shape: (C, H, W) with H and W divisible by 2^len(channels): each Conv2d (4x4,
    stride 2, padding 1) halves them. channels: output widths of the convolutions.
    hidden: widths of the dense layers after flattening (may be ()).
    """

    def __init__(self, image_shape, latent_dim, channels=(32, 64), hidden=(256,), activation="relu", rng=None,
                 dtype=None, device=None):
        super().__init__()
        who = "ConvEncoder"
        self.event_shape = as_event_shape(image_shape, who)
        if len(self.event_shape) != 3:
            raise ValueError(f"{who}: image_shape must be (C, H, W), got {self.event_shape}")
        self.latent_dim = positive_int(latent_dim, "latent_dim", who)
        self.channels = tuple(positive_int(c, "channels", who) for c in channels)
        self.hidden = tuple(positive_int(h, "hidden sizes", who) for h in hidden)
        self.activation = activation
        c, h, w = self.event_shape
        factor = 2 ** len(self.channels)
        if h % factor or w % factor:
            raise ValueError(f"{who}: H={h} and W={w} must be divisible by 2^len(channels) = {factor}")
        kw = dict(rng=rng, dtype=dtype, device=device)
        layers = []
        for c_in, c_out in zip((c,) + self.channels[:-1], self.channels):
            layers += [Conv2d(c_in, c_out, 4, stride=2, padding=1, **kw), activation_layer(activation, who)]
        self.conv = Sequential(*layers)
        flat = (self.channels[-1] if self.channels else c) * (h // factor) * (w // factor)
        sizes = (flat,) + self.hidden + (2 * self.latent_dim,)
        self.dense = mlp(sizes, activation, who, rng, dtype, device)

    def forward(self, x):
        """(mu, log_var), each (N, L)."""
        self._check_input(x)
        h = self.conv(x)
        return self._mu_and_log_var(self.dense(h.reshape(h.shape[0], -1)))

    def extra_repr(self):
        return (f"image_shape={self.event_shape}, latent_dim={self.latent_dim}, channels={self.channels}, "
                f"hidden={self.hidden}, activation={self.activation!r}")
