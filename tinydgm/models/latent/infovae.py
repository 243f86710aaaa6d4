"""InfoVAE (Zhao, Song et al. 2019, "InfoVAE: Balancing Learning and Inference in Variational
Autoencoders", AAAI; kuleshov-l12 "Information Preference"): a VAE objective that keeps the
code informative when the decoder is flexible enough to ignore it.

The ELBO is maximised by any q(x, z) = p(x, z), including those where z carries no
information about x (kuleshov-l12 "Information Preference"); ELBO surgery shows why
(elbo_surgery.py): the average KL contains +I_q[x, z], so the ELBO penalises information.
InfoVAE reweights the terms (the paper's objective, with alpha and lambda its weights):

    L_InfoVAE = E_pD(x) E_q(z|x)[log p(x|z)]
                - (1 - alpha) E_pD(x) KL(q(z|x) || p(z))
                - (alpha + lambda - 1) D(q(z) || p(z))

with q(z) the aggregated posterior and D a divergence between it and the prior; the paper
derives it from -lambda KL(q(z) || p(z)) - E_q(z)[KL(q(x|z) || p(x|z))] + alpha I_q[x, z]
and then replaces the marginal KL, which has no tractable estimate, by any strict
divergence: here the squared maximum mean discrepancy (Gretton et al. 2012; the paper's
MMD-VAE). alpha = 0, lambda = 1 is the ELBO; alpha = 1 drops the KL term (the paper's
MMD-VAE), lambda > 1 pulls the aggregated posterior towards the prior harder. Both weights
of a penalty must be >= 0: alpha <= 1 and alpha + lambda >= 1.

MMD^2 with a kernel k, from m draws z_i ~ q(z) and m' draws z'_j ~ p(z):

    MMD^2 = E k(z, z~) + E k(z', z'~) - 2 E k(z, z')                   (population)
    unbiased (U-statistic, Gretton et al. 2012, eq. 3):
        1/(m(m-1)) sum_{i != j} k(z_i, z_j) + 1/(m'(m'-1)) sum_{i != j} k(z'_i, z'_j)
        - 2/(m m') sum_{i,j} k(z_i, z'_j)

    rbf   k(a, b) = exp(-|a - b|^2 / (2 h^2))          bandwidth h (default sqrt(L))
    imq   k(a, b) = C / (C + |a - b|^2)               scale C (default 2L: Tolstikhin et al.
                                                       2018, WAE, for an N(0, I) prior)

The draws from q(z) are the batch's reparameterised posterior draws z_s,n = mu_n + sigma_n
eps_s,n (or their images z_K under a flow posterior; all S N of them; a minibatch stands for the data distribution), so the MMD trains
the encoder; the prior's draws carry no gradient (a learnable prior is trained by the KL
term only). ``mmd_samples=K`` draws K fresh codes per example for the MMD instead (K N
codes against K N prior draws; the decoder still sees its S draws): at an uninformative
encoder the estimate is pure noise, whose spread shrinks with the number of codes, and a
large lambda multiplies that noise. ``evaluate.mmd`` is the same quantity as a metric on arrays (the biased
V-statistic, no gradient); this module's estimator is made of engine ops.
"""
import math

from tinydgm import backend
from tinydgm.autodiff.core import Tensor
from tinydgm.autodiff.elementwise import exp, square
from tinydgm.autodiff.shape import expand_dims
from tinydgm.distributions import Normal, StandardNormal
from tinydgm.models.latent.vae import VAE, kl_standard_normal, reparameterize

__all__ = ["InfoVAE", "mmd_squared", "rbf_kernel", "imq_kernel", "KERNELS"]


def _squared_distances(a, b):
    """|a_i - b_j|^2 for a (m, L), b (m', L) -> (m, m'); differences, so the diagonal of
    _squared_distances(a, a) is exactly 0 (no cancellation as in |a|^2 + |b|^2 - 2 a.b)."""
    return square(expand_dims(a, 1) - expand_dims(b, 0)).sum(axis=-1)


def rbf_kernel(a, b, bandwidth):
    """k(a_i, b_j) = exp(-|a_i - b_j|^2 / (2 h^2)), (m, m')."""
    return exp(_squared_distances(a, b) * (-0.5 / bandwidth ** 2))


def imq_kernel(a, b, scale):
    """k(a_i, b_j) = C / (C + |a_i - b_j|^2), the inverse multiquadratic kernel, (m, m')."""
    return scale / (scale + _squared_distances(a, b))


KERNELS = {"rbf": rbf_kernel, "imq": imq_kernel}


def default_kernel_parameter(kernel, latent_dim):
    """h = sqrt(L) for the RBF kernel (N(0, I) draws lie sqrt(2L) apart on average), C = 2L
    for the inverse multiquadratic (WAE's choice for an N(0, I) prior)."""
    return math.sqrt(latent_dim) if kernel == "rbf" else 2.0 * latent_dim


def mmd_squared(x, y, kernel="rbf", parameter=None, unbiased=True):
    """The squared MMD between the samples x (m, L) and y (m', L) as a 0-d Tensor,
    differentiable in both: the unbiased U-statistic (``unbiased=True``, needs m, m' >= 2;
    it can be negative) or the biased V-statistic (every pair, i = j included; >= 0).

    kernel: "rbf" or "imq"; parameter: the bandwidth h or the scale C (default from the
    latent dimension, ``default_kernel_parameter``). Both kernels have k(a, a) = 1, so the
    U-statistic removes the diagonal by subtracting m from each within-sample sum.
    """
    for name, t in (("x", x), ("y", y)):
        if not isinstance(t, Tensor) or t.ndim != 2:
            raise ValueError(f"mmd_squared: {name} must be a Tensor of shape (m, L), got "
                             f"{tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__}")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"mmd_squared: x and y must have the same L, got {tuple(x.shape)} and {tuple(y.shape)}")
    if kernel not in KERNELS:
        raise ValueError(f"mmd_squared: kernel must be one of {sorted(KERNELS)}, got {kernel!r}")
    parameter = default_kernel_parameter(kernel, x.shape[1]) if parameter is None else parameter
    if isinstance(parameter, bool) or not isinstance(parameter, (int, float)) or not parameter > 0:
        raise ValueError(f"mmd_squared: the kernel's bandwidth/scale must be a number > 0, got {parameter!r}")
    k = KERNELS[kernel]
    m, m2 = x.shape[0], y.shape[0]
    if not unbiased:
        return k(x, x, parameter).mean() + k(y, y, parameter).mean() - 2 * k(x, y, parameter).mean()
    if m < 2 or m2 < 2:
        raise ValueError(f"mmd_squared: the unbiased estimator needs at least 2 draws from each side, got {m} and {m2}")
    within_x = (k(x, x, parameter).sum() - m) / (m * (m - 1))          # sum over i != j (k(a, a) = 1)
    within_y = (k(y, y, parameter).sum() - m2) / (m2 * (m2 - 1))
    return within_x + within_y - 2 * k(x, y, parameter).mean()


class InfoVAE(VAE):
    """InfoVAE(encoder, decoder, prior=None, alpha=0.0, lambda_=1.0, kernel="rbf", kernel_parameter=None,
    n_samples=1, kl=None, rng=None, posterior=None, mmd_samples=None).

    The VAE with the InfoVAE objective (module docstring): ``objective(x)`` is, per example,
    E_q[log p(x|z)] - (1 - alpha) KL(q(z|x) || p(z)) - (alpha + lambda - 1) MMD^2(q(z), p(z)),
    the MMD shared by the batch (it is a property of the aggregated posterior, not of one
    example); ``loss`` its negative mean. ``elbo`` stays the ELBO, so the model is evaluated
    like any VAE (``log_prob_estimate``, ``bits_per_dim``). ``beta`` (the KL weight of the
    parent class) is 1 - alpha.

    alpha: the information weight, <= 1. lambda_: the divergence weight, alpha + lambda_ >= 1.
    kernel: "rbf" or "imq"; kernel_parameter: its bandwidth h or scale C (default from L).
    mmd_samples: None (the MMD uses the decoder's S N draws) or K >= 1 fresh draws per example for
    the MMD only (K N codes per estimate; with a flow posterior the flow runs on them too).
    prior, n_samples, kl, rng, posterior: as for the VAE (a flow posterior's z_K are the q(z) draws).
    """

    def __init__(self, encoder, decoder, prior=None, alpha=0.0, lambda_=1.0, kernel="rbf", kernel_parameter=None,
                 n_samples=1, kl=None, rng=None, posterior=None, mmd_samples=None):
        who = "InfoVAE"
        for name, value in (("alpha", alpha), ("lambda_", lambda_)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{who}: {name} must be a finite number, got {value!r}")
        if alpha > 1:
            raise ValueError(f"{who}: alpha must be <= 1 (the KL weight 1 - alpha >= 0), got {alpha!r}")
        if alpha + lambda_ < 1:
            raise ValueError(f"{who}: alpha + lambda_ must be >= 1 (the MMD weight alpha + lambda - 1 >= 0), got "
                             f"alpha={alpha!r}, lambda_={lambda_!r}")
        if kernel not in KERNELS:
            raise ValueError(f"{who}: kernel must be one of {sorted(KERNELS)}, got {kernel!r}")
        super().__init__(encoder, decoder, prior=prior, beta=1.0 - alpha, n_samples=n_samples, kl=kl, rng=rng,
                         posterior=posterior)
        self.alpha, self.lambda_ = float(alpha), float(lambda_)
        self.kernel = kernel
        if kernel_parameter is None:
            kernel_parameter = default_kernel_parameter(kernel, self.latent_dim)
        if isinstance(kernel_parameter, bool) or not isinstance(kernel_parameter, (int, float)) \
                or not kernel_parameter > 0:
            raise ValueError(f"{who}: kernel_parameter (the bandwidth or scale) must be a number > 0, "
                             f"got {kernel_parameter!r}")
        self.kernel_parameter = float(kernel_parameter)
        self.mmd_samples = None if mmd_samples is None else self._count(mmd_samples, "mmd_samples", "__init__")

    @property
    def mmd_weight(self):
        """alpha + lambda - 1."""
        return self.alpha + self.lambda_ - 1.0

    def objective_terms(self, x, n_samples=None, eps=None, rng=None, z_prior=None, eps_mmd=None):
        """(E_q[log p(x|z)] (N,), KL(q(z|x) || p(z)) (N,), MMD^2(q(z), p(z)) 0-d) from S
        reparameterised draws per example (all S N of them are the q(z) sample, or the K N
        draws of ``mmd_samples = K``) and as many prior draws. eps (S, N, L), eps_mmd (K, N, L)
        and z_prior (S N or K N, L) hold the noise fixed (e.g. for gradcheck).
        With a flow posterior the draws are its z_K and the KL is the Monte Carlo one."""
        x = self._as_data(x, "objective")
        if n_samples is None:
            n_samples = self.n_samples if eps is None else eps.shape[0]
        n_samples = self._count(n_samples, "n_samples", "objective")
        rng = self.rng if rng is None else rng
        if self.posterior is not None:
            z, log_qz = self._sample_flow_posterior(x, n_samples, eps, rng, "objective")
            kl = (log_qz - self.prior.log_prob(z)).mean(axis=0)
            mu = log_var = None
        else:
            mu, log_var, z = self._sample_latents(x, n_samples, eps, rng, "objective")     # (S, N, L)
            if self.kl == "closed_form":
                kl = kl_standard_normal(mu, log_var)
            else:
                kl = (Normal(mu, log_var=log_var).log_prob(z).sum(axis=-1) - self.prior.log_prob(z)).mean(axis=0)
        log_px_z = self.decoder.log_prob(x, z).mean(axis=0)
        if self.mmd_samples is not None:
            z = self._mmd_draws(x, mu, log_var, eps_mmd, rng)                  # (K, N, L)
        elif eps_mmd is not None:
            raise ValueError("InfoVAE.objective: eps_mmd needs mmd_samples (the MMD draws its own codes only then)")
        z_q = z.reshape(-1, self.latent_dim)                                    # draws from q(z)
        mmd = mmd_squared(z_q, self._prior_draws(z_q, z_prior, rng), self.kernel, self.kernel_parameter)
        return log_px_z, kl, mmd

    def _mmd_draws(self, x, mu, log_var, eps_mmd, rng):
        """K = mmd_samples fresh draws per example from q(z|x), (K, N, L): mu + sigma eps, or a flow's z_K."""
        if self.posterior is not None:
            return self._sample_flow_posterior(x, self.mmd_samples, eps_mmd, rng, "objective")[0]
        shape = (self.mmd_samples,) + tuple(mu.shape)
        if eps_mmd is None:
            eps_mmd = StandardNormal((), dtype=mu.dtype, device=mu.device).sample(shape, rng=rng)
        else:
            data = eps_mmd.data if isinstance(eps_mmd, Tensor) else eps_mmd
            eps_mmd = Tensor(backend.to_device(backend.as_array(data), mu.device).astype(mu.dtype, copy=False))
            if tuple(eps_mmd.shape) != shape:
                raise ValueError(f"InfoVAE.objective: eps_mmd must have shape (K, N, L) = {shape}, "
                                 f"got {tuple(eps_mmd.shape)}")
        return reparameterize(mu, log_var, eps_mmd)

    def _prior_draws(self, z_q, z_prior, rng):
        if z_prior is None:
            z_prior = self.prior.sample(z_q.shape[0], rng=rng)
        data = z_prior.data if isinstance(z_prior, Tensor) else z_prior
        data = backend.to_device(backend.as_array(data), z_q.device).astype(z_q.dtype, copy=False)
        if tuple(data.shape) != tuple(z_q.shape):
            draws = "S" if self.mmd_samples is None else "K"
            raise ValueError(f"InfoVAE.objective: z_prior must have shape ({draws} N, L) = {tuple(z_q.shape)}, "
                             f"got {tuple(data.shape)}")
        return Tensor(data)

    def objective(self, x, n_samples=None, eps=None, rng=None, z_prior=None, eps_mmd=None):
        """E_q[log p(x|z)] - (1 - alpha) KL(q(z|x) || p(z)) - (alpha + lambda - 1) MMD^2, (N,)."""
        log_px_z, kl, mmd = self.objective_terms(x, n_samples, eps, rng, z_prior, eps_mmd)
        return log_px_z - (1.0 - self.alpha) * kl - self.mmd_weight * mmd

    def extra_repr(self):
        return (f"{super().extra_repr()}, alpha={self.alpha}, lambda_={self.lambda_}, kernel={self.kernel!r}, "
                f"kernel_parameter={self.kernel_parameter}"
                + ("" if self.mmd_samples is None else f", mmd_samples={self.mmd_samples}"))
