"""Priors p(z) over the latent space of a VAE, and the small interface they share
(tomczak-dgm "Variational Auto-Encoder": p_lambda(z); isachenko-l07 "VAE prior").

A prior is any object with

    latent_dim            L
    log_prob(z)           log p(z) SUMMED over the latent axis: z (..., L) -> (...), differentiable
                          in z and in the prior's own parameters
    sample(n, rng=None)   n draws as a Tensor (n, L) without a graph; rng a NumPy Generator
                          (None: the default generator)

A prior that is a ``Module`` (a mixture, a VampPrior, a flow over z) has its parameters
trained with the VAE that holds it. ``StandardNormalPrior`` is N(0, I): with it the VAE
uses the closed-form KL; with any other prior the KL is estimated by Monte Carlo,
KL(q || p) ~ 1/S sum_s [log q(z_s|x) - log p(z_s)], z_s ~ q(z|x).
"""
from tinydgm.distributions import StandardNormal
from tinydgm.models.latent.encoders import positive_int
from tinydgm.nn.module import Module

__all__ = ["Prior", "StandardNormalPrior"]


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
