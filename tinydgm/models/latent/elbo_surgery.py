"""ELBO surgery and the information terms of a VAE (Hoffman & Johnson 2016, "ELBO surgery:
yet another way to carve up the variational evidence lower bound"; isachenko-l07 "ELBO
surgery", "ELBO revisiting" and "Optimal VAE prior"; kuleshov-l12 "beta-VAE").

On a data set x_1..x_n (the empirical distribution, uniform over the n points) the encoder
defines the joint q(x_i, z) = 1/n q(z|x_i), its marginal the aggregated posterior and the
mutual information of x and z under it:

    q_agg(z) = 1/n sum_i q(z|x_i)
    I_q[x, z] = 1/n sum_i KL(q(z|x_i) || q_agg(z))  in [0, log n]

The theorem (isachenko-l07 "ELBO surgery"): the average KL term of the ELBO splits as

    1/n sum_i KL(q(z|x_i) || p(z)) = KL(q_agg(z) || p(z)) + I_q[x, z]

so the average ELBO is  1/n sum_i E_q log p(x_i|z) - I_q[x, z] - KL(q_agg || p): the prior
enters only the last ("marginal KL") term, which the optimal prior p = q_agg sets to 0.

Estimation (``elbo_surgery``): q_agg is the exact mixture over the n points given (a subset
of the data, so O(n) per evaluation), and the outer expectations are Monte Carlo with S
draws z_is ~ q(z|x_i) per point, which are also stratified draws from q_agg:

    average KL   1/(nS) sum_is [log q(z_is|x_i) - log p(z_is)]
    marginal KL  1/(nS) sum_is [log q_agg(z_is) - log p(z_is)]
    I_q          1/(nS) sum_is [log q(z_is|x_i) - log q_agg(z_is)]

The three per-sample terms satisfy the identity exactly, sample by sample. Every term of
I_q is at most log n (q(z|x_i) <= n q_agg(z)), so the estimate never exceeds log n. The
standard errors are those of a stratified mean: se^2 = sum_i s_i^2 / (S n^2), with s_i^2
the sample variance of point i's S terms (the randomness is that of z only: the n points
are the fixed set the quantities are defined on).

beta-VAE (Higgins et al. 2017; kuleshov-l12 "beta-VAE"): the loss
-E_q(x,z)[log p(x|z)] + beta E_x KL(q(z|x) || p(z)) equals, with q(x|z) = q(x, z) / q_agg(z),

    (beta - 1) I_q[x, z] + beta KL(q_agg(z) || p(z)) + E_q_agg(z)[KL(q(x|z) || p(x|z))] + H(x)

where the slide's "up to constants" is the entropy of the empirical distribution,
H(x) = log n for n distinct points (``beta_vae_decomposition``). The proof: the reconstruction
term is E_q(z)[KL(q(x|z) || p(x|z))] + H_q(x|z) and H_q(x|z) = log n - I_q.

Posteriors: the VAE's diagonal Gaussian q(z|x) = N(mu(x), diag(exp(log_var(x)))) from
``model.encoder``; ``model.prior`` is any prior (priors.py) and ``model.decoder`` any decoder.
A VAE with a flow posterior (posteriors.py) is refused: q_agg would need log q_K(z|x_j) at
every draw z, i.e. the steps inverted for every pair, which the planar steps do not offer.
"""
import math
import numbers
from dataclasses import dataclass

from tinydgm import backend
from tinydgm.autodiff.core import Tensor, no_grad
from tinydgm.autodiff.elementwise import exp
from tinydgm.autodiff.reduce import logsumexp
from tinydgm.autodiff.shape import expand_dims
from tinydgm.distributions import Normal, StandardNormal
from tinydgm.models.latent.priors import encoder_mixture_log_prob
from tinydgm.models.latent.vae import reparameterize

DEFAULT_SAMPLES = 100          # draws per point when neither n_samples nor eps says

__all__ = ["ElboSurgery", "BetaVAEDecomposition", "elbo_surgery", "beta_vae_decomposition",
           "elbo_surgery_table", "format_elbo_surgery_table"]


@dataclass
class ElboSurgery:
    """The terms of the ELBO surgery on n points, in nats, each with its Monte Carlo
    standard error (``*_se``): ``elbo`` the average ELBO (reconstruction - average KL),
    ``reconstruction`` 1/n sum_i E_q log p(x_i|z), ``average_kl`` 1/n sum_i KL(q(z|x_i) || p(z)),
    ``marginal_kl`` KL(q_agg || p), ``mutual_info`` I_q[x, z]; n points, S = ``n_samples``
    draws per point."""
    elbo: float
    elbo_se: float
    reconstruction: float
    reconstruction_se: float
    average_kl: float
    average_kl_se: float
    marginal_kl: float
    marginal_kl_se: float
    mutual_info: float
    mutual_info_se: float
    n: int
    n_samples: int

    @property
    def log_n(self):
        """The upper bound of I_q."""
        return math.log(self.n)


@dataclass
class BetaVAEDecomposition:
    """kuleshov-l12 "beta-VAE" on n points, in nats, with standard errors (``*_se``):
    ``loss`` = -reconstruction + beta * average KL, and its parts ``mutual_info`` I_q,
    ``marginal_kl`` KL(q_agg || p), ``decoder_kl`` E_q_agg(z)[KL(q(x|z) || p(x|z))] and the
    constant ``data_entropy`` log n; ``loss`` equals ``total`` in expectation."""
    beta: float
    loss: float
    loss_se: float
    mutual_info: float
    mutual_info_se: float
    marginal_kl: float
    marginal_kl_se: float
    decoder_kl: float
    decoder_kl_se: float
    data_entropy: float

    @property
    def total(self):
        """(beta - 1) I_q + beta KL(q_agg || p) + E_q(z) KL(q(x|z) || p(x|z)) + H(x)."""
        return ((self.beta - 1) * self.mutual_info + self.beta * self.marginal_kl + self.decoder_kl
                + self.data_entropy)


# ----------------------------------------------------------------------------- sampling and per-sample terms

def _posterior_draws(model, x, n_samples, eps, rng, who):
    """x checked, q's parameters (n, L) and z_is = mu_i + sigma_i eps_is, (S, n, L); no graph.
    S = n_samples, else eps.shape[0], else DEFAULT_SAMPLES."""
    if n_samples is None:
        n_samples = DEFAULT_SAMPLES if eps is None else eps.shape[0]
    if isinstance(n_samples, bool) or not isinstance(n_samples, numbers.Integral) or n_samples < 2:
        raise ValueError(f"{who}: n_samples must be an int >= 2 (a standard error needs two draws), "
                         f"got {n_samples!r}")
    if getattr(model, "posterior", None) is not None:
        raise ValueError(f"{who}: the aggregated posterior is evaluated as a mixture of the encoder's Gaussians "
                         f"q(z|x_j) at every draw; a flow posterior ({type(model.posterior).__name__}) has no "
                         "density at an arbitrary z here (its steps are not inverted): use a VAE without one")
    x = model._as_data(x, who)
    with no_grad():
        mu, log_var = model.encoder(x)
        shape = (int(n_samples),) + tuple(mu.shape)
        if eps is None:
            rng = getattr(model, "rng", None) if rng is None else rng
            eps = StandardNormal((), dtype=mu.dtype, device=mu.device).sample(shape, rng=rng)
        else:
            eps = eps if isinstance(eps, Tensor) else Tensor(backend.as_array(eps, dtype=mu.dtype, device=mu.device))
            if tuple(eps.shape) != shape:
                raise ValueError(f"{who}: eps must have shape (S, n, L) = {shape}, got {tuple(eps.shape)}")
        return x, mu, log_var, reparameterize(mu, log_var, eps)


def _chunks(n_samples, cost_per_draw, work):
    """Slices of the S axis of about ``work / cost_per_draw`` draws each, so that one chunk
    holds about ``work`` numbers (memory)."""
    step = max(1, work // max(1, cost_per_draw))
    return [slice(s, min(s + step, n_samples)) for s in range(0, n_samples, step)]


def _event_size(model):
    size = 1
    for s in model.decoder.event_shape:
        size *= s
    return size


def _stratified(terms):
    """(mean, standard error) of a stratified Monte Carlo mean over terms (S, n): S draws
    for each of n strata of equal weight; se^2 = sum_i s_i^2 / (S n^2)."""
    xp = backend.xp_of(terms)
    terms = terms.astype(xp.float64)
    n_samples, n = terms.shape
    within = terms.var(axis=0, ddof=1)                                  # s_i^2
    return float(terms.mean()), float(xp.sqrt(within.sum() / n_samples) / n)


def _surgery_terms(model, x, mu, log_var, z, work):
    """Per-sample arrays (S, n): log p(x_i|z_is), log q(z_is|x_i), log p(z_is), log q_agg(z_is)."""
    parts = {"log_px_z": [], "log_q": [], "log_p": [], "log_q_agg": []}
    with no_grad():
        n, latent_dim = x.shape[0], z.shape[-1]
        for chunk in _chunks(z.shape[0], n * (n * latent_dim + _event_size(model)), work):
            zc = z[chunk]
            parts["log_px_z"].append(model.decoder.log_prob(x, zc).data)
            parts["log_q"].append(Normal(mu, log_var=log_var).log_prob(zc).sum(axis=-1).data)
            parts["log_p"].append(model.prior.log_prob(zc).data)
            parts["log_q_agg"].append(encoder_mixture_log_prob(mu, log_var, zc).data)
    xp = backend.xp_of(mu.data)
    return {name: xp.concatenate(arrays, axis=0) for name, arrays in parts.items()}


# ----------------------------------------------------------------------------- the surgery

def elbo_surgery(model, x, n_samples=None, eps=None, rng=None, work=4_000_000):
    """The ELBO surgery of a VAE on the n points x (n, *event_shape): an ``ElboSurgery``
    with the average KL, KL(q_agg || p) and I_q[x, z] (and the reconstruction term), by
    S = ``n_samples`` >= 2 draws per point (default 100, or eps.shape[0]) and the exact
    mixture q_agg over x.

    eps: optional noise (S, n, L) for the draws (else from ``rng``, a NumPy Generator;
    default ``model.rng``).
    work: about how many (point, component) pairs one chunk evaluates (memory).
    Cost: n^2 S evaluations of a Gaussian density, n S of the decoder and the prior.
    """
    x, mu, log_var, z = _posterior_draws(model, x, n_samples, eps, rng, "elbo_surgery")
    t = _surgery_terms(model, x, mu, log_var, z, work)
    kl = t["log_q"] - t["log_p"]                               # log q(z|x_i) - log p(z)
    elbo = _stratified(t["log_px_z"] - kl)
    reconstruction = _stratified(t["log_px_z"])
    average_kl = _stratified(kl)
    marginal_kl = _stratified(t["log_q_agg"] - t["log_p"])        # log q_agg(z) - log p(z)
    mutual_info = _stratified(t["log_q"] - t["log_q_agg"])        # log q(z|x_i) - log q_agg(z)
    return ElboSurgery(*elbo, *reconstruction, *average_kl, *marginal_kl, *mutual_info, n=int(x.shape[0]),
                       n_samples=int(z.shape[0]))


def _decoder_kl(model, x, mu, log_var, z, work):
    """Per-sample KL(q(x|z_is) || p(x|z_is)), (S, n), over the n points:
    q(x_j|z) = q(z|x_j) / sum_k q(z|x_k) (the posterior over the data set of the
    aggregated-posterior joint), so KL = sum_j q(x_j|z) [log q(x_j|z) - log p(x_j|z)]."""
    n, latent_dim = x.shape[0], z.shape[-1]
    out = []
    with no_grad():
        for chunk in _chunks(z.shape[0], n * n * (_event_size(model) + latent_dim), work):
            zc = expand_dims(z[chunk].reshape(-1, latent_dim), -2)                     # (M, 1, L)
            log_q_zx = Normal(mu, log_var=log_var).log_prob(zc).sum(axis=-1)          # (M, n): log q(z|x_j)
            log_q_xz = log_q_zx - logsumexp(log_q_zx, axis=-1, keepdims=True)          # log q(x_j|z)
            log_p_xz = model.decoder.log_prob(x, zc)                                   # (M, n): log p(x_j|z)
            kl = (exp(log_q_xz) * (log_q_xz - log_p_xz)).sum(axis=-1)
            out.append(kl.data.reshape(z[chunk].shape[:2]))
    return backend.xp_of(mu.data).concatenate(out, axis=0)


def beta_vae_decomposition(model, x, beta=None, n_samples=None, eps=None, rng=None, work=4_000_000):
    """kuleshov-l12 "beta-VAE": the beta-VAE loss on the n points x and its decomposition
    (beta - 1) I_q + beta KL(q_agg || p) + E_q(z)[KL(q(x|z) || p(x|z))] + log n, each term by
    Monte Carlo with standard errors (a ``BetaVAEDecomposition``; beta defaults to
    ``model.beta``). The decoder KL is a true KL (>= 0) when p(x|z) is a probability mass
    (Bernoulli, discretised logistic) and the n rows are distinct; for a density decoder the
    same formula mixes a mass with a density and the identity still holds, with H(x) = log n
    counting the rows as distinct atoms.

    Cost: n^2 S decoder evaluations (each draw is scored against every point).
    """
    beta = model.beta if beta is None else beta
    if isinstance(beta, bool) or not isinstance(beta, numbers.Real) or not beta >= 0:
        raise ValueError(f"beta_vae_decomposition: beta must be a number >= 0, got {beta!r}")
    x, mu, log_var, z = _posterior_draws(model, x, n_samples, eps, rng, "beta_vae_decomposition")
    t = _surgery_terms(model, x, mu, log_var, z, work)
    loss = _stratified(-t["log_px_z"] + beta * (t["log_q"] - t["log_p"]))
    mutual_info = _stratified(t["log_q"] - t["log_q_agg"])
    marginal_kl = _stratified(t["log_q_agg"] - t["log_p"])
    decoder_kl = _stratified(_decoder_kl(model, x, mu, log_var, z, work))
    return BetaVAEDecomposition(float(beta), *loss, *mutual_info, *marginal_kl, *decoder_kl,
                                data_entropy=math.log(x.shape[0]))


# ----------------------------------------------------------------------------- the table

def elbo_surgery_table(models, x, names=None, n_samples=None, rng=None, work=4_000_000):
    """One row per trained VAE (e.g. one per prior) of the ELBO surgery on the same points x:
    a list of dicts {"model", "prior", "elbo", "reconstruction", "average_kl", "marginal_kl",
    "mutual_info", "log_n"} and the standard errors ("<term>_se"), in nats. names: one label
    per model (default: the prior's class name). The lecture's point shows in the
    "marginal_kl" column: a better prior removes it (0 for the aggregated posterior)."""
    models = list(models)
    names = [type(m.prior).__name__ for m in models] if names is None else list(names)
    if len(names) != len(models):
        raise ValueError(f"elbo_surgery_table: {len(models)} models but {len(names)} names")
    rows = []
    for name, model in zip(names, models):
        s = elbo_surgery(model, x, n_samples=n_samples, rng=rng, work=work)
        rows.append({"model": name, "prior": type(model.prior).__name__, "elbo": s.elbo, "elbo_se": s.elbo_se,
                     "reconstruction": s.reconstruction, "reconstruction_se": s.reconstruction_se,
                     "average_kl": s.average_kl, "average_kl_se": s.average_kl_se,
                     "marginal_kl": s.marginal_kl, "marginal_kl_se": s.marginal_kl_se,
                     "mutual_info": s.mutual_info, "mutual_info_se": s.mutual_info_se, "log_n": s.log_n})
    return rows


def format_elbo_surgery_table(rows):
    """The rows of ``elbo_surgery_table`` as a Markdown table (value +- standard error, nats)."""
    columns = [("ELBO", "elbo"), ("E log p(x|z)", "reconstruction"), ("avg KL(q(z|x) || p)", "average_kl"),
               ("KL(q_agg || p)", "marginal_kl"), ("I_q[x, z]", "mutual_info")]
    lines = ["| model | " + " | ".join(title for title, _ in columns) + " | log n |",
             "|---|" + "---:|" * (len(columns) + 1)]
    for r in rows:
        cells = [f"{r[key]:.3f} +- {r[key + '_se']:.3f}" for _, key in columns]
        lines.append(f"| {r['model']} | " + " | ".join(cells) + f" | {r['log_n']:.3f} |")
    return "\n".join(lines)
