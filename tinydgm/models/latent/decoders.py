"""Decoders p_theta(x|z): a network from the latent z to the parameters of the observation
distribution (Kingma & Welling 2014; intro lecture part II eq. 20, tomczak-dgm
"Variational Auto-Encoder"). Three observation models, each a head on the network output:

    likelihood="bernoulli"             binary pixels:  p(x|z) = prod_d Bernoulli(x_d; sigmoid(logits_d))
    likelihood="gaussian", sigma=s     real data:      p(x|z) = N(x; mu(z), s^2 I)          fixed variance
    likelihood="gaussian", sigma="learned"             p(x|z) = N(x; mu(z), diag(exp(log_var(z))))
    likelihood="discretized_logistic"  8-bit images on n_bins levels of [low, high] (default 256 levels
                                       in [-1, 1]): P(x_d|z) = DiscretizedLogistic(x_d; mu_d(z), log_scale_d(z))
                                       (Salimans et al. 2017 eq. 2; a mass, so log p is a log-probability)

The network's output holds n_params blocks (1 for Bernoulli and the fixed-variance Gaussian,
2 for the others: [mu | log_var] or [mu | log_scale]), each of one example's shape.

    decoder.distribution(z) -> the Distribution over x, batch shape z.shape[:-1] + event_shape
    decoder.log_prob(x, z)  -> log p(x|z) summed over the event axes: z (..., N, L), x (N, *event) -> (..., N)
    decoder.mean(z)         -> E[x|z] (Bernoulli probabilities, the Gaussian mean, the exact
                               mean over the logistic's levels: it holds n_bins values per pixel)
    decoder.check_data(x, who) raises ValueError for data the observation model cannot score
                               (non-binary x for Bernoulli, off-level or out-of-range x for the
                               discretised logistic)

    MLPDecoder   z -> [Linear, act] x len(hidden) -> Linear(n_params D) -> blocks reshaped to event_shape
    ConvDecoder  z -> [Linear, act] x len(hidden) -> Linear(c_0 H' W') -> act -> reshape (c_0, H', W')
                   -> [ConvTranspose2d 4x4 stride 2 pad 1, act] ... -> ConvTranspose2d(n_params C)

Any leading axes of z (e.g. S samples per example, (S, N, L)) are flattened for the network
and restored afterwards. Limitation: the log-scales and log-variances are not clamped.
"""
from tinydgm import backend
from tinydgm.autodiff.bernoulli_ops import bernoulli_log_likelihood
from tinydgm.autodiff.shape import split
from tinydgm.distributions import Bernoulli, DiscretizedLogistic, Normal
from tinydgm.models.latent.encoders import (activation_layer, as_event_shape, event_size, mlp,
                                            positive_int)
from tinydgm.nn.conv import ConvTranspose2d
from tinydgm.nn.module import Module, Sequential

__all__ = ["Decoder", "MLPDecoder", "ConvDecoder", "LIKELIHOODS"]


def _broadcasts_to(shape, target):
    try:
        return tuple(backend.broadcast_shapes(shape, target)) == tuple(target)
    except ValueError:
        return False

LIKELIHOODS = ("bernoulli", "gaussian", "discretized_logistic")


class Decoder(Module):
    """Base of the decoders: the observation model on top of ``net_output(z)``.

    Subclasses set ``event_shape`` and ``latent_dim``, call ``_init_likelihood`` and
    implement ``net_output(z2)`` for z2 of shape (M, L), returning the blocks (a tuple of
    n_params tensors of shape (M, *event_shape)).
    """

    def _init_likelihood(self, likelihood, sigma, n_bins, low, high, who):
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"{who}: likelihood must be one of {list(LIKELIHOODS)}, got {likelihood!r}")
        self.likelihood = likelihood
        self.sigma = None
        if likelihood == "gaussian":
            if sigma == "learned":
                self.sigma = "learned"
            elif isinstance(sigma, (int, float)) and not isinstance(sigma, bool) and sigma > 0:
                self.sigma = float(sigma)
            else:
                raise ValueError(f'{who}: a Gaussian decoder needs sigma > 0 (fixed) or sigma="learned", '
                                 f"got {sigma!r}")
        elif sigma is not None:
            raise ValueError(f"{who}: sigma applies only to likelihood='gaussian', got sigma={sigma!r} "
                             f"with likelihood={likelihood!r}")
        self.n_bins, self.low, self.high = n_bins, float(low), float(high)
        fixed_gaussian = likelihood == "gaussian" and self.sigma != "learned"
        self.n_params = 1 if likelihood == "bernoulli" or fixed_gaussian else 2
        if likelihood == "discretized_logistic":
            DiscretizedLogistic(0.0, 0.0, n_bins, low, high)        # checks n_bins, low, high

    def net_output(self, z2):
        raise NotImplementedError(f"{type(self).__name__}.net_output")

    def _check_latent(self, z):
        if z.ndim < 2 or z.shape[-1] != self.latent_dim:
            raise ValueError(f"{type(self).__name__}: z must have shape (..., N, {self.latent_dim}), "
                             f"got {tuple(z.shape)}")

    def distribution(self, z):
        """p(x|z) with batch shape z.shape[:-1] + event_shape (log_prob elementwise)."""
        self._check_latent(z)
        lead = tuple(z.shape[:-1])
        blocks = self.net_output(z.reshape(-1, self.latent_dim))
        blocks = [b.reshape(lead + self.event_shape) for b in blocks]
        if self.likelihood == "bernoulli":
            logits, = blocks
            return Bernoulli(logits=logits)
        if self.likelihood == "gaussian":
            if self.sigma == "learned":
                mu, log_var = blocks
                return Normal(mu, log_var=log_var)
            mu, = blocks
            return Normal(mu, sigma=self.sigma)
        mu, log_scale = blocks
        return DiscretizedLogistic(mu, log_scale, self.n_bins, self.low, self.high)

    def log_prob(self, x, z):
        """log p(x|z) = sum over the event axes of the elementwise log-densities, shape z.shape[:-1]
        (for Bernoulli pixels one fused op, ``bernoulli_log_likelihood``, when x broadcasts to
        the logits' shape, as in training)."""
        dist = self.distribution(z)
        n_event = len(self.event_shape)
        if self.likelihood == "bernoulli" and _broadcasts_to(x.shape, dist.logits.shape):
            return bernoulli_log_likelihood(dist.logits, x, n_event)
        log_px = dist.log_prob(x)
        return log_px.sum(axis=tuple(range(log_px.ndim - n_event, log_px.ndim)))

    def mean(self, z):
        """E[x|z], shape z.shape[:-1] + event_shape."""
        return self.distribution(z).mean

    def check_data(self, x, who):
        """ValueError if the observation model cannot score ``x`` (a backend array)."""
        xp = backend.get_array_module(x)
        if self.likelihood == "bernoulli":
            binary = (x == 0) | (x == 1)
            if not bool(binary.all()):
                bad = x[~binary]
                raise ValueError(f"{who}: a Bernoulli decoder needs binary data (0 or 1), got "
                                 f"{bad.size} other values, e.g. {float(bad[0])!r}; binarise the data "
                                 "first (tinydgm.data.transforms)")
        elif self.likelihood == "discretized_logistic":
            half = (self.high - self.low) / (2 * (self.n_bins - 1))
            level = (x - self.low) / (2 * half)
            on_grid = (xp.abs(level - xp.rint(level)) < 1e-3) & (x >= self.low - 1e-6) & (x <= self.high + 1e-6)
            if not bool(on_grid.all()):
                bad = x[~on_grid]
                raise ValueError(f"{who}: a discretized-logistic decoder needs data on its {self.n_bins} levels "
                                 f"in [{self.low}, {self.high}], got {bad.size} other values, e.g. "
                                 f"{float(bad[0])!r}")

    def _likelihood_repr(self):
        text = f"likelihood={self.likelihood!r}"
        if self.likelihood == "gaussian":
            text += f", sigma={self.sigma!r}"
        if self.likelihood == "discretized_logistic":
            text += f", n_bins={self.n_bins}, low={self.low}, high={self.high}"
        return text


class MLPDecoder(Decoder):
    """MLPDecoder(latent_dim, event_shape, hidden=(400,), activation="relu", likelihood="bernoulli",
    sigma=None, n_bins=256, low=-1.0, high=1.0, rng=None, dtype=None, device=None).

    latent_dim: L. event_shape: D or the shape of one example (the output is reshaped to it).
    hidden: widths of the hidden layers (() for an affine decoder: mu = z W + b).
    sigma: for likelihood="gaussian", a fixed standard deviation or "learned".
    n_bins, low, high: the discretised logistic's levels.
    """

    def __init__(self, latent_dim, event_shape, hidden=(400,), activation="relu", likelihood="bernoulli",
                 sigma=None, n_bins=256, low=-1.0, high=1.0, rng=None, dtype=None, device=None):
        super().__init__()
        who = "MLPDecoder"
        self.latent_dim = positive_int(latent_dim, "latent_dim", who)
        self.event_shape = as_event_shape(event_shape, who)
        self.hidden = tuple(positive_int(h, "hidden sizes", who) for h in hidden)
        self.activation = activation
        self._init_likelihood(likelihood, sigma, n_bins, low, high, who)
        sizes = (self.latent_dim,) + self.hidden + (self.n_params * event_size(self.event_shape),)
        self.net = mlp(sizes, activation, who, rng, dtype, device)

    def net_output(self, z2):
        return split(self.net(z2), self.n_params, axis=-1)

    def extra_repr(self):
        return (f"latent_dim={self.latent_dim}, event_shape={self.event_shape}, hidden={self.hidden}, "
                f"activation={self.activation!r}, {self._likelihood_repr()}")


class ConvDecoder(Decoder):
    """ConvDecoder(latent_dim, image_shape, channels=(64, 32), hidden=(256,), activation="relu",
    likelihood="bernoulli", sigma=None, n_bins=256, low=-1.0, high=1.0, rng=None, dtype=None, device=None).

    image_shape: (C, H, W) with H and W divisible by 2^len(channels). The dense layers
    produce channels[0] maps of size (H, W) / 2^len(channels); each ConvTranspose2d (4x4,
    stride 2, padding 1) doubles them, the last one to n_params * C output channels
    (channel blocks [0, C) are the first parameter: logits or mu).
    """

    def __init__(self, latent_dim, image_shape, channels=(64, 32), hidden=(256,), activation="relu",
                 likelihood="bernoulli", sigma=None, n_bins=256, low=-1.0, high=1.0, rng=None, dtype=None,
                 device=None):
        super().__init__()
        who = "ConvDecoder"
        self.latent_dim = positive_int(latent_dim, "latent_dim", who)
        self.event_shape = as_event_shape(image_shape, who)
        if len(self.event_shape) != 3:
            raise ValueError(f"{who}: image_shape must be (C, H, W), got {self.event_shape}")
        self.channels = tuple(positive_int(c, "channels", who) for c in channels)
        if not self.channels:
            raise ValueError(f"{who}: channels must name at least one transposed convolution, got ()")
        self.hidden = tuple(positive_int(h, "hidden sizes", who) for h in hidden)
        self.activation = activation
        self._init_likelihood(likelihood, sigma, n_bins, low, high, who)
        c, h, w = self.event_shape
        factor = 2 ** len(self.channels)
        if h % factor or w % factor:
            raise ValueError(f"{who}: H={h} and W={w} must be divisible by 2^len(channels) = {factor}")
        self.base_shape = (self.channels[0], h // factor, w // factor)
        kw = dict(rng=rng, dtype=dtype, device=device)
        sizes = (self.latent_dim,) + self.hidden + (event_size(self.base_shape),)
        self.dense = Sequential(mlp(sizes, activation, who, rng, dtype, device), activation_layer(activation, who))
        widths = self.channels + (self.n_params * c,)
        layers = []
        for i, (c_in, c_out) in enumerate(zip(widths[:-1], widths[1:])):
            layers.append(ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1, **kw))
            if i < len(widths) - 2:
                layers.append(activation_layer(activation, who))
        self.deconv = Sequential(*layers)

    def net_output(self, z2):
        h = self.dense(z2).reshape((z2.shape[0],) + self.base_shape)
        return split(self.deconv(h), self.n_params, axis=1)

    def extra_repr(self):
        return (f"latent_dim={self.latent_dim}, image_shape={self.event_shape}, channels={self.channels}, "
                f"hidden={self.hidden}, activation={self.activation!r}, {self._likelihood_repr()}")

