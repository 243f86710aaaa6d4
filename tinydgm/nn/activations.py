"""Activation functions as modules, so they can sit in a ``Sequential``.

Each is a thin wrapper of the engine op of the same name (its stable forward and its
gradient live there):

    Sequential(Linear(2, 64), ReLU(), Linear(64, 64), Tanh(), Linear(64, 2))
"""
from tinydgm.autodiff.elementwise import elu, leaky_relu, relu, sigmoid, softplus, tanh
from tinydgm.nn.module import Module


class ReLU(Module):
    """relu(x) = max(x, 0)."""

    def forward(self, x):
        return relu(x)


class LeakyReLU(Module):
    """leaky_relu(x) = x for x > 0, negative_slope * x otherwise."""

    def __init__(self, negative_slope=0.01):
        super().__init__()
        self.negative_slope = negative_slope

    def forward(self, x):
        return leaky_relu(x, self.negative_slope)

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}"


class ELU(Module):
    """elu(x) = x for x > 0, alpha (exp(x) - 1) otherwise (Clevert et al. 2016)."""

    def __init__(self, alpha=1.0):
        super().__init__()
        self.alpha = alpha

    def forward(self, x):
        return elu(x, self.alpha)

    def extra_repr(self):
        return f"alpha={self.alpha}"


class Sigmoid(Module):
    """sigmoid(x) = 1 / (1 + exp(-x))."""

    def forward(self, x):
        return sigmoid(x)


class Tanh(Module):
    """tanh(x)."""

    def forward(self, x):
        return tanh(x)


class Softplus(Module):
    """softplus(x) = log(1 + exp(x)), a smooth relu (and a positive-valued output map)."""

    def forward(self, x):
        return softplus(x)


class Identity(Module):
    """x unchanged (a placeholder where a layer is optional)."""

    def forward(self, x):
        return x
