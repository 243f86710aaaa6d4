"""Priors p(z) over the latent space of a VAE, and the small interface they share
(tomczak-dgm "DGM: Variational Auto-Encoder": the learnable prior p_lambda(z), VampPrior,
autoregressive prior; isachenko-l07 "Optimal VAE prior" and "Flows-based VAE prior";
ermon-song-cs236-l16 "Autoregressive flow": the prior can be autoregressive).

A prior is any object with

    latent_dim            L
    log_prob(z)           log p(z) SUMMED over the latent axis: z (..., L) -> (...), differentiable
                          in z and in the prior's own parameters
    sample(n, rng=None)   n draws as a Tensor (n, L) without a graph; rng a NumPy Generator
                          (None: the prior's or the default generator)

A prior that is a ``Module`` has its parameters trained with the VAE that holds it. With
``StandardNormalPrior`` the VAE uses the closed-form KL; with any other prior the KL is
estimated by Monte Carlo, KL(q || p) ~ 1/S sum_s [log q(z_s|x) - log p(z_s)], z_s ~ q(z|x).

    StandardNormalPrior(L)               N(0, I)
    MixtureOfGaussiansPrior(L, K)        sum_k pi_k N(z; m_k, diag(s_k^2)), every parameter learned
    VampPrior(encoder, K)                1/K sum_k q(z | u_k), K learned pseudo-inputs u_k
                                         ("VAE with a VampPrior", AISTATS 2018)
    FlowPrior(flow)                      log p(z) = log N(g(z); 0, I) + log |det dg/dz| (a RealNVP
                                         or MAF over z; isachenko-l07 "Flows-based VAE prior")
    AutoregressivePrior(L)               prod_l N(z_l; mu_l(z_<l), sigma_l(z_<l)^2), a Gaussian MADE
    AggregatedPosterior(encoder, x)      q_agg(z) = 1/n sum_i q(z | x_i): the optimal prior of the
                                         ELBO-surgery theorem (isachenko-l07 "Optimal VAE prior"),
                                         an exact mixture over a (small) data set, as a reference

VampPrior and the aggregated posterior are mixtures of the VAE's own encoder posteriors, so
they are built from the encoder that the VAE also gets (the same object: its parameters are
shared, and counted once in ``VAE.parameters()``):

    encoder = MLPEncoder(784, 40)
    vae = VAE(encoder, MLPDecoder(40, 784), prior=VampPrior(encoder, 500))
"""
from tinydgm import backend
from tinydgm.autodiff.core import Tensor, no_grad
from tinydgm.distributions import MixtureOfGaussians, StandardNormal
from tinydgm.models.autoregressive.made import MADE
from tinydgm.models.flows.base import Flow
from tinydgm.models.latent.encoders import positive_int
from tinydgm.nn import init
from tinydgm.nn.module import Module, Parameter

__all__ = ["Prior", "StandardNormalPrior", "MixtureOfGaussiansPrior", "VampPrior", "FlowPrior",
           "AutoregressivePrior", "AggregatedPosterior", "encoder_mixture", "encoder_mixture_log_prob"]


class Prior(Module):
    """Base of the priors: subclasses set ``latent_dim`` and implement ``log_prob`` and ``sample``."""

    def log_prob(self, z):
        raise NotImplementedError(f"{type(self).__name__}.log_prob")

    def sample(self, n, rng=None):
        raise NotImplementedError(f"{type(self).__name__}.sample")

    def _check(self, z, who):
        if z.ndim < 1 or z.shape[-1] != self.latent_dim:
            raise ValueError(f"{type(self).__name__}.{who}: z must have shape (..., {self.latent_dim}), "
                             f"got {tuple(z.shape)}")

    def _flat_log_prob(self, density, z):
        """A density of (M, L) rows applied to z (..., L): flatten the leading axes, restore them."""
        self._check(z, "log_prob")
        lead = tuple(z.shape[:-1])
        return density(z.reshape(-1, self.latent_dim)).reshape(lead)


class StandardNormalPrior(Prior):
    """p(z) = N(z; 0, I) in L dimensions:  log p(z) = -L/2 log(2 pi) - |z|^2 / 2."""

    def __init__(self, latent_dim):
        super().__init__()
        self.latent_dim = positive_int(latent_dim, "latent_dim", "StandardNormalPrior")

    def log_prob(self, z):
        """log N(z; 0, I), summed over the last axis: (..., L) -> (...)."""
        self._check(z, "log_prob")
        return StandardNormal((), dtype=z.dtype, device=z.device).log_prob(z).sum(axis=-1)

    def sample(self, n, rng=None, dtype=None, device=None):
        """z ~ N(0, I), a Tensor (n, L) in ``dtype`` (default: the default dtype) on ``device``."""
        positive_int(n, "n", "StandardNormalPrior.sample")
        return StandardNormal((), dtype=dtype, device=device).sample((n, self.latent_dim), rng=rng)

    def extra_repr(self):
        return f"latent_dim={self.latent_dim}"


# ----------------------------------------------------------------------------- a learnable mixture

class MixtureOfGaussiansPrior(Prior):
    """A learnable mixture of K diagonal Gaussians (tomczak-dgm "DGM: Variational Auto-Encoder":
    the prior p_lambda(z) with lambda = {pi, m, s} trained with the VAE):

        p(z) = sum_k pi_k N(z; m_k, diag(exp(2 log_s_k))),   pi = softmax(weights_logits)

    MixtureOfGaussiansPrior(latent_dim, n_components, init_std=1.0, rng=None, dtype=None, device=None):
    the means start as N(0, init_std^2) draws (spread, so that the components can separate),
    the scales at 1 and the weights equal.
    """

    def __init__(self, latent_dim, n_components, init_std=1.0, rng=None, dtype=None, device=None):
        super().__init__()
        who = "MixtureOfGaussiansPrior"
        self.latent_dim = positive_int(latent_dim, "latent_dim", who)
        self.n_components = positive_int(n_components, "n_components", who)
        self.rng = backend.default_generator() if rng is None else rng
        shape = (self.n_components, self.latent_dim)
        self.weights_logits = Parameter(init.zeros((self.n_components,), dtype, device))
        self.means = Parameter(init.normal(shape, init_std, self.rng, dtype, device))
        self.log_scales = Parameter(init.zeros(shape, dtype, device))

    def distribution(self):
        return MixtureOfGaussians(self.weights_logits, self.means, self.log_scales)

    def log_prob(self, z):
        """log sum_k pi_k N(z; m_k, s_k^2), (..., L) -> (...)."""
        self._check(z, "log_prob")
        return self.distribution().log_prob(z)

    def sample(self, n, rng=None):
        """k ~ Categorical(pi), z ~ N(m_k, s_k^2): a Tensor (n, L), no graph."""
        positive_int(n, "n", "MixtureOfGaussiansPrior.sample")
        return self.distribution().sample((n,), rng=self.rng if rng is None else rng)

    def extra_repr(self):
        return f"latent_dim={self.latent_dim}, n_components={self.n_components}"


# ----------------------------------------------------------------------------- mixtures of encoder posteriors

def encoder_mixture(mu, log_var):
    """1/K sum_k N(mu_k, diag(exp(log_var_k))) for components mu, log_var (K, L): the
    equal-weight mixture of K encoder posteriors q(z | u_k), as a MixtureOfGaussians."""
    weights_logits = Tensor(backend.xp_of(mu.data).zeros((mu.shape[0],), dtype=mu.dtype))   # pi_k = 1/K
    return MixtureOfGaussians(weights_logits, mu, 0.5 * log_var)                             # sigma = exp(log_var / 2)


def encoder_mixture_log_prob(mu, log_var, z):
    """log 1/K sum_k N(z; mu_k, diag(exp(log_var_k))), z (..., L) -> (...)."""
    return encoder_mixture(mu, log_var).log_prob(z)


class _EncoderMixture(Prior):
    """1/K sum_k q(z | u_k) for the inputs u_k that ``inputs()`` gives, with the VAE's encoder."""

    def __init__(self, encoder, who):
        super().__init__()
        if not callable(getattr(encoder, "forward", None)) or not hasattr(encoder, "latent_dim"):
            raise TypeError(f"{who}: encoder must be a GaussianEncoder (forward(x) -> (mu, log_var), latent_dim), "
                            f"got {type(encoder).__name__}")
        self.encoder = encoder
        self.latent_dim = encoder.latent_dim
        self.event_shape = tuple(encoder.event_shape)

    def inputs(self):
        raise NotImplementedError

    def components(self):
        """(mu, log_var) of the K components q(z | u_k), each (K, L)."""
        return self.encoder(self.inputs())

    def log_prob(self, z):
        """log 1/K sum_k q(z | u_k), (..., L) -> (...), differentiable in z, the inputs and the encoder."""
        self._check(z, "log_prob")
        mu, log_var = self.components()
        return encoder_mixture_log_prob(mu, log_var, z)

    def sample(self, n, rng=None):
        """k uniform in 1..K, then z ~ q(z | u_k): a Tensor (n, L), no graph."""
        positive_int(n, "n", f"{type(self).__name__}.sample")
        with no_grad():
            mixture = encoder_mixture(*self.components())
            return mixture.sample((n,), rng=backend.default_generator() if rng is None else rng)


def init_normal(shape, std, rng, like):
    """N(0, std^2) entries in ``like``'s dtype and on its device."""
    return init.normal(shape, std, rng, like.dtype, like.device)


class VampPrior(_EncoderMixture):
    """The variational mixture of posteriors prior ("VAE with a VampPrior", AISTATS 2018;
    tomczak-dgm "DGM: Variational Auto-Encoder", VampPrior):

        p_lambda(z) = 1/K sum_k q_phi(z | u_k),   lambda = {u_1, ..., u_K} learned pseudo-inputs

    with q_phi the VAE's own encoder, so the prior moves with the encoder and approximates
    the aggregated posterior (the optimal prior) with K << n components.

    VampPrior(encoder, n_pseudo_inputs, init=None, init_mean=0.0, init_std=0.1, rng=None):
    encoder: the GaussianEncoder the VAE also gets (the same object). init: the starting
    pseudo-inputs, an array (K, *event_shape) (e.g. K training examples, the paper's
    "data" initialisation), or None for N(init_mean, init_std^2) entries. The pseudo-inputs
    are unconstrained reals (the paper squashes them with a hard tanh for binary images; not
    done here). With a flow posterior (posteriors.py) the components are the encoder's
    Gaussian q_0(z | u_k), not the flowed q_K.
    """

    def __init__(self, encoder, n_pseudo_inputs, init=None, init_mean=0.0, init_std=0.1, rng=None):
        who = "VampPrior"
        super().__init__(encoder, who)
        self.n_pseudo_inputs = positive_int(n_pseudo_inputs, "n_pseudo_inputs", who)
        like = next(iter(encoder.parameters()))
        shape = (self.n_pseudo_inputs,) + self.event_shape
        if init is None:
            values = init_mean + init_normal(shape, init_std, rng, like)
        else:
            values = backend.as_array(init.data if isinstance(init, Tensor) else init, dtype=like.dtype,
                                      device=like.device)
            if tuple(values.shape) != shape:
                raise ValueError(f"{who}: init must have shape (K, *event_shape) = {shape}, "
                                 f"got {tuple(values.shape)}")
        self.pseudo_inputs = Parameter(values)

    def inputs(self):
        return self.pseudo_inputs

    def extra_repr(self):
        return f"latent_dim={self.latent_dim}, n_pseudo_inputs={self.n_pseudo_inputs}"


class AggregatedPosterior(_EncoderMixture):
    """The aggregated posterior of a data set x_1..x_n (Hoffman & Johnson 2016; isachenko-l07
    "ELBO surgery" and "Optimal VAE prior"):

        q_agg(z) = 1/n sum_i q(z | x_i)

    the prior that makes KL(q_agg || p) = 0, i.e. the optimal prior for that encoder and
    data (over-fitting and O(n) per evaluation, hence a reference on a small set, not a
    practical prior). Exact: the full mixture, differentiable in z and the encoder.

    AggregatedPosterior(encoder, x): x (n, *event_shape) is kept as a buffer (not trained).
    """

    def __init__(self, encoder, x):
        who = "AggregatedPosterior"
        super().__init__(encoder, who)
        like = next(iter(encoder.parameters()))
        data = backend.as_array(x.data if isinstance(x, Tensor) else x, dtype=like.dtype, device=like.device)
        if data.ndim != len(self.event_shape) + 1 or tuple(data.shape[1:]) != self.event_shape or data.shape[0] < 1:
            raise ValueError(f"{who}: x must have shape (n, {', '.join(map(str, self.event_shape))}) with n >= 1, "
                             f"got {tuple(data.shape)}")
        self.register_buffer("data", data)
        self.n = int(data.shape[0])

    def inputs(self):
        return Tensor(self.data)

    def extra_repr(self):
        return f"latent_dim={self.latent_dim}, n={self.n}"


# ----------------------------------------------------------------------------- flows and autoregressive priors

class FlowPrior(Prior):
    """A normalizing flow over z as the prior (isachenko-l07 "Flows-based VAE prior";
    Chen et al. 2017, "Variational Lossy Autoencoder"):

        log p(z | lambda) = log N(g(z, lambda); 0, I) + log |det J_g|,   z = g^{-1}(z*), z* ~ N(0, I)

    with g a tinydgm Flow's transform (data direction z -> base z*). A RealNVP
    (``toy_realnvp(L, ...)``) or a MAF (``build_maf(L, ...)``) suits: both evaluate g in one
    pass, which the KL term needs at every training step; a MAF samples sequentially, which
    only generation needs (an IAF would be the other way round: isachenko-l07 asks why it is
    not a good prior).

    FlowPrior(flow): flow is a tinydgm.models.flows.Flow with event_shape (L,) and an
    N(0, I) base.
    """

    def __init__(self, flow):
        super().__init__()
        if not isinstance(flow, Flow):
            raise TypeError(f"FlowPrior: flow must be a tinydgm.models.flows.Flow, got {type(flow).__name__}")
        if len(flow.event_shape) != 1:
            raise ValueError(f"FlowPrior: the flow must act on vectors z of shape (L,), got event_shape "
                             f"{flow.event_shape}")
        self.flow = flow
        self.latent_dim = flow.event_shape[0]

    def log_prob(self, z):
        """log N(g(z)) + log |det dg/dz|, (..., L) -> (...) (Flow.log_prob on the flattened rows)."""
        return self._flat_log_prob(self.flow.log_prob, z)

    def sample(self, n, rng=None):
        """z = g^{-1}(z*), z* ~ N(0, I): a Tensor (n, L), no graph."""
        positive_int(n, "n", "FlowPrior.sample")
        return self.flow.sample(n, rng=backend.default_generator() if rng is None else rng)

    def extra_repr(self):
        return f"latent_dim={self.latent_dim}"


class AutoregressivePrior(Prior):
    """An autoregressive prior (tomczak-dgm "DGM: Variational Auto-Encoder", auto-regressive
    prior; ermon-song-cs236-l16 "Autoregressive flow": p_Z(z) = prod_i p(z_i | z_1..z_i-1)):
    a Gaussian MADE over z (Germain et al. 2015),

        log p(z) = sum_l log N(z_l; mu_l(z_<l), exp(log_scale_l(z_<l))^2)

    one pass to evaluate, L passes to sample. (It is one MAF layer with an N(0, I) base: the
    "autoregressive models are flows" of ermon-song-cs236-l16.)

    AutoregressivePrior(latent_dim, hidden_sizes=(64,), rng=None, dtype=None): the MADE's
    hidden widths (ReLU) and natural ordering and connectivity (every width >= L - 1).
    """

    def __init__(self, latent_dim, hidden_sizes=(64,), rng=None, dtype=None):
        super().__init__()
        self.latent_dim = positive_int(latent_dim, "latent_dim", "AutoregressivePrior")
        self.made = MADE(self.latent_dim, list(hidden_sizes), output="gaussian", ordering="natural",
                         connectivity="natural", rng=rng, dtype=dtype)

    def log_prob(self, z):
        """sum_l log N(z_l; mu_l(z_<l), sigma_l(z_<l)^2), (..., L) -> (...)."""
        return self._flat_log_prob(self.made.log_prob, z)

    def sample(self, n, rng=None):
        """z_l = mu_l(z_<l) + sigma_l(z_<l) eps_l in order: a Tensor (n, L), no graph."""
        positive_int(n, "n", "AutoregressivePrior.sample")
        return self.made.sample(n, rng=rng)

    def extra_repr(self):
        return f"latent_dim={self.latent_dim}, hidden_sizes={self.made.hidden_sizes}"
