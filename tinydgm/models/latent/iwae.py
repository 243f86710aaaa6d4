"""Importance weighted autoencoder (Burda, Grosse & Salakhutdinov 2016; intro lecture part
II, "Importance weighted autoencoders").

With importance weights w(x, z) = p(x, z) / q(z|x) the k-sample bound is

    F_k(x) = E_{z_1..z_k ~ q(z|x)} [ log 1/k sum_i w(x, z_i) ]  <=  log E_q[w(x, z)] = log p(x)

computed in log space, F_k ~ logsumexp_i(log w_i) - log k (log-mean-exp: no w_i is ever
exponentiated on its own). F_1 is the ELBO (with a Monte Carlo KL), F_k <= F_{k+1} <= log p(x),
and F_k -> log p(x) as k -> infinity when the weights are bounded (Burda et al. theorem 1).

The gradient is the importance-weighted one: with reparameterised z_i = mu + sigma * eps_i,

    grad F_k = E[ sum_i w~_i grad log w(x, z_i) ],   w~_i = w_i / sum_j w_j   (normalised weights)

which is exactly what the engine's backward through logsumexp gives (d logsumexp / d log w_i
= softmax_i = w~_i); nothing is stopped, since the estimator stops nothing. (The
"doubly reparameterised" variant of Tucker et al. 2019, which drops the score term of
log q, is a different estimator and is not what this is.)

``IWAE`` is a VAE whose training objective is F_k; every other method (elbo, sampling,
the importance-sampled log-likelihood for evaluation) is the VAE's.
"""
import math

from tinydgm.autodiff.reduce import logsumexp
from tinydgm.models.latent.vae import VAE

__all__ = ["IWAE", "log_mean_exp"]


def log_mean_exp(log_w, axis=0):
    """log 1/k sum_i exp(log_w_i) over ``axis`` (k = its length), stably; differentiable."""
    return logsumexp(log_w, axis=axis) - math.log(log_w.shape[axis])


class IWAE(VAE):
    """IWAE(encoder, decoder, prior=None, k=5, rng=None, posterior=None): the VAE trained on F_k.

    k: importance samples per data point in the training objective (k = 1: the ELBO with
    a Monte Carlo KL). Any prior of the prior interface works (the bound needs log p(z) only),
    and any flow posterior (posteriors.py: the weights use log q_K).
    """

    def __init__(self, encoder, decoder, prior=None, k=5, rng=None, posterior=None):
        super().__init__(encoder, decoder, prior=prior, rng=rng, posterior=posterior)
        self.k = self._count(k, "k", "__init__")

    def iwae_bound(self, x, k=None, eps=None, rng=None):
        """F_k(x) = log 1/k sum_i p(x, z_i) / q(z_i|x), one draw per example, (N,) in nats.
        eps: optional noise (k, N, L) to hold the draw fixed."""
        if k is None:
            k = eps.shape[0] if eps is not None else self.k
        return log_mean_exp(self.log_importance_weights(x, k, eps, rng), axis=0)

    def objective(self, x, n_samples=None, eps=None, rng=None):
        """F_k(x) with k = ``n_samples`` or ``self.k``: the per-example training objective, (N,)."""
        return self.iwae_bound(x, n_samples, eps, rng)

    def extra_repr(self):
        return (f"latent_dim={self.latent_dim}, event_shape={self.event_shape}, "
                f"prior={type(self.prior).__name__}, k={self.k}")
