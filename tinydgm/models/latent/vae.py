"""The variational autoencoder (Kingma & Welling 2014, "Auto-encoding variational Bayes";
intro lecture part II eq. 20-35; tomczak-dgm "Variational Auto-Encoder"; isachenko-l07
"ELBO"), with the beta-VAE objective (Higgins et al. 2017; kuleshov-l12 "beta-VAE").

    p(z) = N(0, I) (or any prior, see priors.py)          p_theta(x|z): the decoder       (eq. 20)
    q_phi(z|x) = N(z; mu_phi(x), diag(exp(log_var_phi(x)))): the encoder                    (eq. 21, 27)

The evidence lower bound (eq. 23, 28-29) and its gap (eq. 39; isachenko-l07):

    L(x) = E_q[log p(x|z)] - KL(q(z|x) || p(z)) = log p(x) - KL(q(z|x) || p(z|x)) <= log p(x)

estimated with S reparameterised samples per data point (eq. 32-35):

    z_s = mu + exp(log_var / 2) * eps_s,   eps_s ~ N(0, I)                              (eq. 33)
    L(x) ~ 1/S sum_s log p(x|z_s) - KL(q(z|x) || p(z))                                  (eq. 34-35)

For p(z) = N(0, I) the KL is in closed form, summed over the L latent dimensions:

    KL(N(mu, sigma^2) || N(0, I)) = -1/2 sum_l (1 + log sigma_l^2 - mu_l^2 - sigma_l^2)  (eq. 30)

(the slide prints eq. 30 without the squares on mu and sigma and without the sum over the
latent dimensions; this is the correct form, Kingma & Welling 2014 appendix B). For any
other prior the KL is estimated with the same samples, 1/S sum_s [log q(z_s|x) - log p(z_s)].

beta-VAE (Higgins et al. 2017): the training objective weights the KL by beta,
E_q[log p(x|z)] - beta KL(q(z|x) || p(z)); beta = 1 is the ELBO, beta > 1 presses q
towards the prior (disentanglement, at the price of a looser bound). ``elbo`` always
returns the true bound (beta = 1); ``objective`` and ``loss`` use beta.

Flow posteriors (posteriors.py; isachenko-l07 "Flows-based VAE posterior", Rezende & Mohamed
2015, Kingma et al. 2016): with ``posterior=`` the encoder's Gaussian is the base q_0(z_0|x)
and the posterior's steps map z_0 to z = z_K (x-dependent), so that

    log q_K(z_K|x) = log q_0(z_0|x) - sum_k log |det dz_k / dz_{k-1}|
    L(x) = E_{q_0}[log p(x|z_K) + log p(z_K) - log q_K(z_K|x)]

with the Monte Carlo KL 1/S sum_s [log q_K(z_s|x) - log p(z_s)] (no closed form for q_K).
The same z_K and log q_K serve the importance weights, so ``log_prob_estimate`` evaluates
these models too. Without a posterior the code path is the plain Gaussian one, unchanged.

Randomness: eps comes from ``eps=`` (to hold the noise fixed, e.g. for gradcheck) or from
``rng`` / ``self.rng`` (a NumPy Generator; ``train.fit`` lends its own to ``self.rng``).
Data are checked on entry (shape, finiteness, and what the decoder's observation model
can score): a bad batch raises ValueError before anything is computed.
"""
import numbers

from tinydgm import backend
from tinydgm.autodiff.core import Tensor, no_grad
from tinydgm.autodiff.elementwise import exp, square
from tinydgm.distributions import Normal, StandardNormal
from tinydgm.evaluate.importance import importance_log_likelihood
from tinydgm.evaluate.units import bits_per_dim as _bits_per_dim
from tinydgm.models.latent.encoders import event_size, positive_int
from tinydgm.models.latent.priors import StandardNormalPrior
from tinydgm.nn.module import Module

__all__ = ["VAE", "kl_standard_normal", "reparameterize"]


def reparameterize(mu, log_var, eps):
    """z = mu + sigma * eps with sigma = exp(log_var / 2) (eq. 33): a differentiable function
    of (mu, log_var) given parameter-free noise eps ~ N(0, I); eps broadcasts, e.g. (S, N, L)
    against mu (N, L)."""
    return mu + exp(0.5 * log_var) * eps


def kl_standard_normal(mu, log_var):
    """KL(N(mu, diag(exp(log_var))) || N(0, I)) = -1/2 sum_l (1 + log_var - mu^2 - exp(log_var)),
    summed over the last axis (eq. 30 with its squares and sum restored)."""
    return -0.5 * (1 + log_var - square(mu) - exp(log_var)).sum(axis=-1)


class VAE(Module):
    """VAE(encoder, decoder, prior=None, beta=1.0, n_samples=1, kl=None, rng=None, posterior=None).

    encoder: a GaussianEncoder (``forward(x) -> (mu, log_var)``, ``latent_dim``, ``event_shape``).
    decoder: a Decoder (``log_prob(x, z)``, ``distribution(z)``, ``check_data``, same shapes).
    prior: None for N(0, I), or any object of the prior interface (priors.py).
    beta: the KL weight of the training objective (beta-VAE); >= 0.
    n_samples: S, samples per data point in the ELBO (eq. 32).
    kl: "closed_form" (eq. 30; only for the N(0, I) prior) or "monte_carlo"; None picks
        the closed form when the prior allows it.
    rng: NumPy Generator for eps (None: the default generator).
    posterior: None for the diagonal Gaussian q(z|x) of the encoder, or a flow posterior
        (posteriors.py: ``transform(z_0, x) -> (z_K, log_det)``, ``latent_dim``, ``event_shape``);
        it needs kl="monte_carlo" (the default then).
    """

    def __init__(self, encoder, decoder, prior=None, beta=1.0, n_samples=1, kl=None, rng=None, posterior=None):
        super().__init__()
        who = type(self).__name__
        if encoder.latent_dim != decoder.latent_dim:
            raise ValueError(f"{who}: the encoder's latent_dim {encoder.latent_dim} differs from the decoder's "
                             f"{decoder.latent_dim}")
        if tuple(encoder.event_shape) != tuple(decoder.event_shape):
            raise ValueError(f"{who}: the encoder reads examples of shape {tuple(encoder.event_shape)} but the "
                             f"decoder writes {tuple(decoder.event_shape)}")
        self.encoder, self.decoder = encoder, decoder
        self.latent_dim, self.event_shape = encoder.latent_dim, tuple(encoder.event_shape)
        self.prior = StandardNormalPrior(self.latent_dim) if prior is None else prior
        self._check_prior(who)
        self.posterior = posterior
        self._check_posterior(who)
        if kl is None:
            kl = "closed_form" if isinstance(self.prior, StandardNormalPrior) and posterior is None else "monte_carlo"
        if kl not in ("closed_form", "monte_carlo"):
            raise ValueError(f'{who}: kl must be "closed_form", "monte_carlo" or None, got {kl!r}')
        if kl == "closed_form" and not isinstance(self.prior, StandardNormalPrior):
            raise ValueError(f'{who}: kl="closed_form" needs the N(0, I) prior; the prior '
                             f'{type(self.prior).__name__} needs kl="monte_carlo"')
        if kl == "closed_form" and posterior is not None:
            raise ValueError(f'{who}: kl="closed_form" applies to the Gaussian posterior only; the flow posterior '
                             f'{type(posterior).__name__} needs kl="monte_carlo"')
        self.kl = kl
        if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not beta >= 0:
            raise ValueError(f"{who}: beta must be a number >= 0, got {beta!r}")
        self.beta = float(beta)
        self.n_samples = positive_int(n_samples, "n_samples", who)
        self.rng = backend.default_generator() if rng is None else rng

    def _check_prior(self, who):
        for name in ("log_prob", "sample"):
            if not callable(getattr(self.prior, name, None)):
                raise TypeError(f"{who}: the prior must have log_prob(z) and sample(n, rng); "
                                f"{type(self.prior).__name__} has no {name}")
        if getattr(self.prior, "latent_dim", self.latent_dim) != self.latent_dim:
            raise ValueError(f"{who}: the prior's latent_dim {self.prior.latent_dim} differs from the "
                             f"encoder's {self.latent_dim}")

    def _check_posterior(self, who):
        if self.posterior is None:
            return
        if not callable(getattr(self.posterior, "transform", None)):
            raise TypeError(f"{who}: the posterior must have transform(z_0, x) -> (z_K, log_det); "
                            f"{type(self.posterior).__name__} has none")
        if self.posterior.latent_dim != self.latent_dim:
            raise ValueError(f"{who}: the posterior's latent_dim {self.posterior.latent_dim} differs from the "
                             f"encoder's {self.latent_dim}")
        if tuple(self.posterior.event_shape) != self.event_shape:
            raise ValueError(f"{who}: the posterior reads examples of shape {tuple(self.posterior.event_shape)} "
                             f"but the encoder reads {self.event_shape}")

    # ----------------------------------------------------------------------------- inference

    def encode(self, x):
        """(mu, log_var) of q(z|x), each (N, L)."""
        return self.encoder(self._as_data(x, "encode"))

    def _sample_latents(self, x, n_samples, eps, rng, who):
        """q's parameters and z_s = mu + sigma * eps_s (eq. 33), z of shape (S, N, L)."""
        mu, log_var = self.encoder(x)
        shape = (n_samples,) + tuple(mu.shape)
        if eps is None:
            rng = self.rng if rng is None else rng
            eps = StandardNormal((), dtype=mu.dtype, device=mu.device).sample(shape, rng=rng)     # eps ~ N(0, I)
        else:
            eps = eps if isinstance(eps, Tensor) else Tensor(backend.as_array(eps, dtype=mu.dtype, device=mu.device))
            if tuple(eps.shape) != shape:
                raise ValueError(f"{type(self).__name__}.{who}: eps must have shape (S, N, L) = {shape}, "
                                 f"got {tuple(eps.shape)}")
        return mu, log_var, reparameterize(mu, log_var, eps)

    def _sample_flow_posterior(self, x, n_samples, eps, rng, who):
        """z_K = g(z_0; x) and log q_K(z_K|x) = log q_0(z_0|x) - log |det dz_K/dz_0|, (S, N, L) and (S, N)."""
        mu, log_var, z0 = self._sample_latents(x, n_samples, eps, rng, who)
        log_q0 = Normal(mu, log_var=log_var).log_prob(z0).sum(axis=-1)          # log q_0(z_0|x)
        z, log_det = self.posterior.transform(z0, x)
        return z, log_q0 - log_det

    # ----------------------------------------------------------------------------- bounds

    def elbo_terms(self, x, n_samples=None, eps=None, rng=None):
        """(E_q[log p(x|z)], KL(q(z|x) || p(z))), each (N,), from S samples (eq. 32-35).

        The first is 1/S sum_s log p(x|z_s); the KL is in closed form (eq. 30) or, for
        kl="monte_carlo", 1/S sum_s [log q(z_s|x) - log p(z_s)] with the same z_s.
        eps: optional noise of shape (S, N, L) (then S = eps.shape[0] unless n_samples says otherwise).
        """
        x = self._as_data(x, "elbo")
        if n_samples is None:
            n_samples = self.n_samples if eps is None else eps.shape[0]
        n_samples = self._count(n_samples, "n_samples", "elbo")
        if self.posterior is not None:                                          # q_K: Monte Carlo KL only
            z, log_qz = self._sample_flow_posterior(x, n_samples, eps, rng, "elbo")
            log_px_z = self.decoder.log_prob(x, z).mean(axis=0)
            return log_px_z, (log_qz - self.prior.log_prob(z)).mean(axis=0)
        mu, log_var, z = self._sample_latents(x, n_samples, eps, rng, "elbo")
        log_px_z = self.decoder.log_prob(x, z).mean(axis=0)                     # 1/S sum_s log p(x|z_s)
        if self.kl == "closed_form":
            kl = kl_standard_normal(mu, log_var)                                 # eq. 30
        else:
            log_qz = Normal(mu, log_var=log_var).log_prob(z).sum(axis=-1)        # log q(z_s|x), (S, N)
            kl = (log_qz - self.prior.log_prob(z)).mean(axis=0)
        return log_px_z, kl

    def elbo(self, x, n_samples=None, eps=None, rng=None):
        """L(x) = E_q[log p(x|z)] - KL(q(z|x) || p(z)) <= log p(x), (N,) in nats (eq. 28-35)."""
        log_px_z, kl = self.elbo_terms(x, n_samples, eps, rng)
        return log_px_z - kl

    def objective(self, x, n_samples=None, eps=None, rng=None):
        """The per-example training objective E_q[log p(x|z)] - beta KL(q(z|x) || p(z)), (N,)
        (beta-VAE, Higgins et al. 2017; kuleshov-l12; beta = 1: the ELBO)."""
        log_px_z, kl = self.elbo_terms(x, n_samples, eps, rng)
        return log_px_z - self.beta * kl

    def loss(self, x):
        """-1/N sum_n objective(x_n): the mean negative (beta-weighted) ELBO that ``train.fit`` minimises."""
        return -self.objective(x).mean()

    def log_importance_weights(self, x, k, eps=None, rng=None):
        """log w_i = log p(x|z_i) + log p(z_i) - log q(z_i|x), z_i ~ q(z|x), shape (k, N)
        (Burda et al. 2016; intro lecture part II, "Importance weighted autoencoders").
        The interface of tinydgm.evaluate.importance and of the IWAE bound; differentiable."""
        x = self._as_data(x, "log_importance_weights")
        k = self._count(k, "k", "log_importance_weights")
        if self.posterior is not None:
            z, log_qz = self._sample_flow_posterior(x, k, eps, rng, "log_importance_weights")
            return self.decoder.log_prob(x, z) + self.prior.log_prob(z) - log_qz
        mu, log_var, z = self._sample_latents(x, k, eps, rng, "log_importance_weights")
        log_qz = Normal(mu, log_var=log_var).log_prob(z).sum(axis=-1)
        return self.decoder.log_prob(x, z) + self.prior.log_prob(z) - log_qz

    # ----------------------------------------------------------------------------- evaluation

    def log_prob_estimate(self, x, k=5000, batch_size=100, chunk_size=100, rng=None):
        """log p(x) ~ log 1/k sum_i w_i, the importance-sampled estimate (= a draw of the
        IWAE bound F_k), (N,) in nats, without a graph; see
        tinydgm.evaluate.importance.importance_log_likelihood for the standard errors."""
        return importance_log_likelihood(self, x, k, batch_size, chunk_size, rng).log_px

    def bits_per_dim(self, x, k=5000, batch_size=100, chunk_size=100, rng=None):
        """-log p(x) / (D ln 2) from the k-sample estimate, (N,) (D = entries of one example;
        for 8-bit images under the discretised logistic this is the usual bits/dim)."""
        nll = -self.log_prob_estimate(x, k, batch_size, chunk_size, rng)
        return _bits_per_dim(nll, event_size(self.event_shape))

    # ----------------------------------------------------------------------------- generation

    def sample(self, n, rng=None, mean=False):
        """x ~ p(x) = p(z) p(x|z): z ~ p(z), then a draw from p(x|z) (``mean=False``, a sample
        of the model) or the decoder's mean E[x|z] (``mean=True``, what figures usually show).
        A Tensor (n, *event_shape) without a graph."""
        n = positive_int(n, "n", f"{type(self).__name__}.sample")
        rng = self.rng if rng is None else rng
        like = self._parameter()
        with no_grad():
            z = self.prior.sample(n, rng=rng)
            z = Tensor(backend.to_device(z.data, like.device).astype(like.dtype, copy=False))
            p_x_z = self.decoder.distribution(z)
            return p_x_z.mean if mean else p_x_z.sample(rng=rng)

    def reconstruct(self, x, rng=None, sample_latent=False):
        """E[x|z] at z = mu(x) (``sample_latent=False``) or at z ~ q(z|x); (N, *event_shape), no graph.
        With a flow posterior, z_0 = mu(x) (or a draw of q_0) goes through its steps first."""
        with no_grad():
            x = self._as_data(x, "reconstruct")
            mu, log_var = self.encoder(x)
            z = mu
            if sample_latent:
                eps = StandardNormal((), dtype=mu.dtype, device=mu.device).sample(mu.shape, rng=self.rng if rng is None else rng)
                z = reparameterize(mu, log_var, eps)
            if self.posterior is not None:
                z, _ = self.posterior.transform(z, x)
            return self.decoder.mean(z)

    # ----------------------------------------------------------------------------- inputs

    def _parameter(self):
        return first_weight(self, f"{type(self).__name__}: the encoder and decoder have no parameters")

    def _as_data(self, x, who):
        return as_data(x, self._parameter(), self.event_shape, self.decoder, f"{type(self).__name__}.{who}")

    def _count(self, value, name, who):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"{type(self).__name__}.{who}: {name} must be an int >= 1, got {value!r}")
        return int(value)

    def extra_repr(self):
        prior = type(self.prior).__name__
        posterior = "" if self.posterior is None else f"posterior={type(self.posterior).__name__}, "
        return (f"latent_dim={self.latent_dim}, event_shape={self.event_shape}, prior={prior}, {posterior}kl={self.kl!r}, "
                f"beta={self.beta}, n_samples={self.n_samples}")



# ----------------------------------------------------------------------------- inputs (shared with M2)

def first_weight(model, error):
    """A weight of the model, for its dtype and device (any Tensor attribute: gradcheck
    swaps the Parameters for plain Tensors); ValueError(error) when there is none."""
    for module in model.modules():
        for value in module.__dict__.values():
            if isinstance(value, Tensor):
                return value
    raise ValueError(error)


def as_data(x, like, event_shape, decoder, owner):
    """x as a Tensor in like's dtype and device, checked: shape (N, *event_shape), every
    entry finite, values the decoder's observation model can score. Errors name ``owner``."""
    if not isinstance(x, Tensor):
        x = Tensor(backend.as_array(x, dtype=like.dtype, device=like.device))
    elif x.dtype != like.dtype:
        x = Tensor(x.data.astype(like.dtype))
    if x.ndim != len(event_shape) + 1 or tuple(x.shape[1:]) != event_shape:
        raise ValueError(f"{owner}: x must have shape (N, {', '.join(map(str, event_shape))}), "
                         f"got {tuple(x.shape)}")
    xp = backend.get_array_module(x.data)
    finite = xp.isfinite(x.data)
    if not bool(finite.all()):
        bad = int(x.shape[0] - finite.reshape(x.shape[0], -1).all(axis=1).sum())
        raise ValueError(f"{owner}: x has non-finite entries (NaN or inf) in {bad} of its {x.shape[0]} examples")
    decoder.check_data(x.data, owner)
    return x
