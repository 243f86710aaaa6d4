"""An autoregressive model of sequences on an LSTM: the RNN baseline of the variational RNN
paper (Chung et al. 2015, "A recurrent latent variable model for sequential data", sec. 2.1:
"RNN-Gauss" and "RNN-GMM"; intro lecture part III, "Recurrent neural networks"):

    p(x_1, ..., x_T) = prod_t p(x_t | x_<t) = prod_t p(x_t | h_{t-1})
    h_t = LSTM(phi_x(x_t), h_{t-1}),   h_0 = 0                              the recurrence
    p(x_t | h_{t-1}) = output distribution with parameters g(h_{t-1})

Every step's distribution is a function of the state alone, so the only randomness in
x_t given the past is the output distribution's: with a single Gaussian it cannot put mass
on two separate continuations, which a mixture output (or a latent z_t, ``VRNN``) can.

Output distributions (``output``; the same heads serve the VRNN's decoder):

    "gaussian"    N(x_t; mu, diag(exp(log_var)))                       (n_components = 1)
                  sum_k pi_k N(x_t; mu_k, diag(sigma_k^2))             (n_components = K > 1)
    "bernoulli"   prod_d Bernoulli(x_td; sigmoid(logit_d)), binary x (MNIST rows)

The log-likelihood is exact: ``log_prob`` sums the T conditionals. The loop over the
observed sequence runs through ``tinydgm.nn.LSTM`` (one fused op for all T steps); sampling
runs the cell one step at a time.
"""
import numbers

from tinydgm import backend
from tinydgm.autodiff.core import Tensor, no_grad
from tinydgm.autodiff.shape import concatenate
from tinydgm.distributions import Bernoulli, MixtureOfGaussians, Normal
from tinydgm.evaluate.units import bits_per_dim as _bits_per_dim
from tinydgm.models.protocol import as_samples
from tinydgm.nn.activations import ReLU
from tinydgm.nn.linear import Linear
from tinydgm.nn.module import Module, Sequential
from tinydgm.nn.recurrent import LSTM

__all__ = ["AutoregressiveRNN", "OutputHead", "mlp"]


def mlp(sizes, rng=None, dtype=None, device=None, final_activation=False):
    """Linear layers of the given sizes with ReLU between them (and after the last when
    ``final_activation``): the feature extractors phi and the heads of the recurrent models."""
    layers = []
    for k, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(Linear(n_in, n_out, rng=rng, dtype=dtype, device=device))
        if final_activation or k < len(sizes) - 2:
            layers.append(ReLU())
    return Sequential(*layers)


def _positive_int(value, name, who, minimum=1):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{who}: {name} must be an int >= {minimum}, got {value!r}")
    return int(value)


class OutputHead(Module):
    """p(x_t | context): an MLP from the context (the state h_{t-1}, and phi(z_t) in the
    VRNN) to the parameters of the output distribution (module docstring)."""

    def __init__(self, context_size, x_dim, hidden, output="gaussian", n_components=1, rng=None, dtype=None,
                 device=None):
        super().__init__()
        who = "OutputHead"
        if output not in ("gaussian", "bernoulli"):
            raise ValueError(f'{who}: output must be "gaussian" or "bernoulli", got {output!r}')
        self.n_components = _positive_int(n_components, "n_components", who)
        if output == "bernoulli" and n_components != 1:
            raise ValueError(f'{who}: output="bernoulli" has one component, got n_components={n_components}')
        self.output, self.x_dim = output, x_dim
        k = self.n_components
        n_params = x_dim if output == "bernoulli" else (2 * x_dim if k == 1 else k * (1 + 2 * x_dim))
        self.net = mlp([context_size, hidden, n_params], rng, dtype, device)

    def extra_repr(self):
        mixture = f", n_components={self.n_components}" if self.n_components > 1 else ""
        return f"output={self.output!r}, x_dim={self.x_dim}{mixture}"

    def distribution(self, context):
        """The output distribution given the context (..., context_size)."""
        params = self.net(context)
        d, k = self.x_dim, self.n_components
        if self.output == "bernoulli":
            return Bernoulli(logits=params)
        if k == 1:
            return Normal(params[..., :d], log_var=params[..., d:])
        lead = params.shape[:-1]
        means = params[..., k:k + k * d].reshape(*lead, k, d)
        log_scales = params[..., k + k * d:].reshape(*lead, k, d)
        return MixtureOfGaussians(params[..., :k], means, log_scales)

    def log_prob(self, x, context):
        """log p(x | context), summed over the x_dim coordinates: shape x.shape[:-1]."""
        distribution = self.distribution(context)
        log_p = distribution.log_prob(x)
        return log_p if isinstance(distribution, MixtureOfGaussians) else log_p.sum(axis=-1)

    def sample(self, context, rng):
        return self.distribution(context).sample(rng=rng)


class SequenceModel(Module):
    """What the sequence models share: the data check, bits/dim and the sampling length.
    ``event_shape`` is (length, x_dim) for the default sampling length."""

    def _setup(self, x_dim, length, who):
        self.x_dim = _positive_int(x_dim, "x_dim", who)
        self.length = _positive_int(length, "length", who)
        self.event_shape = (self.length, self.x_dim)

    @property
    def dtype(self):
        return self.phi_x[0].weight.dtype        # (gradcheck may swap the Parameters for plain Tensors)

    @property
    def device(self):
        return self.phi_x[0].weight.device

    def _sequences(self, x, who):
        """x as a Tensor (N, T, x_dim) in the model's dtype, checked."""
        if not isinstance(x, Tensor):
            x = Tensor(backend.as_array(x, dtype=self.dtype, device=self.device))
        elif x.dtype != self.dtype:
            x = Tensor(x.data.astype(self.dtype))
        if x.ndim != 3 or x.shape[2] != self.x_dim or x.shape[1] < 1:
            raise ValueError(f"{type(self).__name__}.{who}: x must have shape (N, T, x_dim) = (N, T, {self.x_dim}) "
                             f"with T >= 1, got {tuple(x.shape)}")
        xp = backend.xp_of(x.data)
        if not bool(xp.isfinite(x.data).all()):
            raise ValueError(f"{type(self).__name__}.{who}: x contains NaN or inf")
        if self.decoder.output == "bernoulli" and not bool(((x.data == 0) | (x.data == 1)).all()):
            raise ValueError(f"{type(self).__name__}.{who}: a Bernoulli output needs binary x (0 or 1), got values "
                             f"in [{float(x.data.min())}, {float(x.data.max())}]")
        return x

    def _length(self, length):
        return self.length if length is None else _positive_int(length, "length", f"{type(self).__name__}.sample")

    def _zeros(self, n, width):
        xp = backend.module_for_device(self.device)
        return Tensor(xp.zeros((n, width), dtype=self.dtype))


class AutoregressiveRNN(SequenceModel):
    """AutoregressiveRNN(x_dim, hidden_size=64, phi_size=64, output="gaussian", n_components=1, length=20).

    x_dim: size of one step x_t; phi_size: width of the feature extractor phi_x and of the
    output head's hidden layer; hidden_size: the LSTM state; output / n_components: the output
    distribution (module docstring); length: T for ``sample`` and ``event_shape`` (log_prob
    takes any T).
    """

    def __init__(self, x_dim, hidden_size=64, phi_size=64, output="gaussian", n_components=1, length=20, rng=None,
                 dtype=None, device=None):
        super().__init__()
        self._setup(x_dim, length, "AutoregressiveRNN")
        self.hidden_size, self.phi_size = hidden_size, phi_size
        make = dict(rng=rng, dtype=dtype, device=device)
        self.phi_x = mlp([x_dim, phi_size], final_activation=True, **make)
        self.rnn = LSTM(phi_size, hidden_size, **make)
        self.decoder = OutputHead(hidden_size, x_dim, phi_size, output, n_components, **make)

    def extra_repr(self):
        return f"x_dim={self.x_dim}, hidden_size={self.hidden_size}, phi_size={self.phi_size}, length={self.length}"

    def states(self, x):
        """h_0, ..., h_{T-1} (N, T, hidden_size): the state each conditional reads."""
        n, length, _ = x.shape
        h0 = self._zeros(n, self.hidden_size)
        if length == 1:
            return h0.reshape(n, 1, -1)
        hs, _ = self.rnn(self.phi_x(x[:, :-1]), (h0, h0))       # h_1 .. h_{T-1}; x_T feeds no prediction
        return concatenate([h0.reshape(n, 1, -1), hs], axis=1)

    def log_prob_steps(self, x):
        """log p(x_t | x_<t) for every step, (N, T) in nats."""
        x = self._sequences(x, "log_prob_steps")
        return self.decoder.log_prob(x, self.states(x))

    def log_prob(self, x):
        """log p(x) = sum_t log p(x_t | h_{t-1}), exact, (N,) in nats."""
        return self.log_prob_steps(x).sum(axis=1)

    def bits_per_dim(self, x):
        """-log p(x) / (T x_dim ln 2), (N,)."""
        x = self._sequences(x, "bits_per_dim")
        return _bits_per_dim(-self.log_prob(x), x.shape[1] * x.shape[2])

    def loss(self, x):
        """The mean negative log-likelihood in nats per sequence."""
        return -self.log_prob(x).mean()

    def sample(self, n, rng=None, length=None):
        """n sequences (n, T, x_dim), T = ``length`` or the model's, drawn step by step:
        x_t ~ p(x_t | h_{t-1}), h_t = LSTM(phi_x(x_t), h_{t-1}). No graph."""
        n = _positive_int(n, "n", "AutoregressiveRNN.sample")
        rng = backend.default_generator() if rng is None else rng
        xs = []
        with no_grad():
            h = c = self._zeros(n, self.hidden_size)
            for t in range(self._length(length)):
                x_t = self.decoder.sample(h, rng)
                xs.append(x_t)
                h, c = self.rnn.cell(self.phi_x(x_t), (h, c))
            return as_samples(concatenate([x_t.reshape(n, 1, -1) for x_t in xs], axis=1))
