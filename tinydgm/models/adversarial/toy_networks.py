"""MLP generator and discriminator for 2-D toy densities (8 Gaussians, a grid of Gaussians,
two moons): the GAN of the intro lecture (part I) at a size whose decision surface can be drawn.

    MLPGenerator:      z (N, latent_dim) -> x (N, data_dim)   Linear-ReLU stack, linear output
    MLPDiscriminator:  x (N, data_dim) -> one logit/score (N,) Linear-LeakyReLU stack

The discriminator's output is a logit for a GAN (D = sigmoid(logit), applied inside the
loss) and the critic's score for a WGAN: the same network serves both. LeakyReLU keeps
the critic's input gradient non-zero everywhere, which the WGAN-GP penalty differentiates.
"""
from tinydgm.autodiff.elementwise import leaky_relu, relu
from tinydgm.nn.linear import Linear
from tinydgm.nn.module import Module, ModuleList

__all__ = ["MLPGenerator", "MLPDiscriminator"]


def _check_sizes(who, **sizes):
    for name, value in sizes.items():
        values = value if isinstance(value, (tuple, list)) else (value,)
        for v in values:
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{who}: {name} must be positive ints, got {value!r}")


def _dense_stack(sizes, rng, dtype, device):
    return ModuleList(Linear(a, b, rng=rng, dtype=dtype, device=device) for a, b in zip(sizes[:-1], sizes[1:]))


class MLPGenerator(Module):
    """x = G(z): Linear -> ReLU for each hidden layer, then a linear output layer."""

    def __init__(self, latent_dim=2, data_dim=2, hidden=(128, 128), rng=None, dtype=None, device=None):
        super().__init__()
        hidden = tuple(hidden)
        _check_sizes("MLPGenerator", latent_dim=latent_dim, data_dim=data_dim, hidden=hidden)
        self.latent_dim, self.data_dim, self.hidden = latent_dim, data_dim, hidden
        self.layers = _dense_stack((latent_dim,) + hidden + (data_dim,), rng, dtype, device)

    def forward(self, z):
        h = z
        for layer in self.layers[:-1]:
            h = relu(layer(h))
        return self.layers[-1](h)

    def extra_repr(self):
        return f"{self.latent_dim} -> {list(self.hidden)} -> {self.data_dim}"

    def __repr__(self):
        return f"MLPGenerator({self.extra_repr()})"


class MLPDiscriminator(Module):
    """l = D(x): Linear -> LeakyReLU(negative_slope) for each hidden layer, then a linear
    layer to one output per example, returned with shape (N,)."""

    def __init__(self, data_dim=2, hidden=(128, 128), negative_slope=0.2, rng=None, dtype=None, device=None):
        super().__init__()
        hidden = tuple(hidden)
        _check_sizes("MLPDiscriminator", data_dim=data_dim, hidden=hidden)
        self.data_dim, self.hidden, self.negative_slope = data_dim, hidden, float(negative_slope)
        self.layers = _dense_stack((data_dim,) + hidden + (1,), rng, dtype, device)

    def forward(self, x):
        h = x
        for layer in self.layers[:-1]:
            h = leaky_relu(layer(h), self.negative_slope)
        return self.layers[-1](h).reshape(-1)

    def extra_repr(self):
        return f"{self.data_dim} -> {list(self.hidden)} -> 1, negative_slope={self.negative_slope}"

    def __repr__(self):
        return f"MLPDiscriminator({self.extra_repr()})"
