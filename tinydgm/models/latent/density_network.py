"""MacKay's density network (MacKay 1995; tomczak-dgm, "Density Network"; intro lecture
eqs. 12-13, "Learning deep latent variable models"): a latent-variable model whose
decoder is a neural network f,

    p(z) = N(0, I_K),    p(x | z) = p(x | f(z))    (Bernoulli logits or Gaussian means),
    p(x) = integral p(z) p(x | f(z)) dz,

trained by gradient ascent on the Monte Carlo estimate of log p(x) with S prior samples
(the slide's "MC approximation ... apply log-sum-exp trick"):

    log p(x) ~= log 1/S sum_s p(x | f(z_s)) = logsumexp_s log p(x | f(z_s)) - log S,   z_s ~ p(z)

The estimate of p(x) inside the log is unbiased, so by Jensen's inequality the estimate of
log p(x) is biased LOW: E[estimate] <= log p(x), with equality as S -> infinity (the bias is
about -rho(x) / (2 S) for large S, rho below). That is why it is ``log_prob_estimate``,
not log_prob.

Why it "fails in high dimensions" (the slide's CONS, and what motivates amortised
inference in the VAE): the prior rarely proposes a z where p(x | f(z)) is large. For the
linear-Gaussian case f(z) = W z + b, p(x|z) = N(f(z), sigma^2 I), everything is exact:
the relative variance of one weight w = p(x|z), z ~ p(z),

    rho(x) = Var[w] / p(x)^2 = (4 pi sigma^2)^{-D/2} N(x | b, W W^T + sigma^2/2 I) / p(x)^2 - 1

is the variance of (estimate of p(x)) / p(x) times S, and it grows exponentially with the
latent dimension (``prior_sampling_relative_variance``, ``variance_by_latent_dim``).

Implementation: the S prior draws are shared by the batch (f runs on S points, not N S);
each example's estimate is still a log-mean-exp over S independent draws. The S x N x D
likelihood terms are evaluated in chunks of draws, so memory stays bounded for large S.
"""
import math

from tinydgm import backend
from tinydgm.autodiff.core import Tensor, no_grad, tensor
from tinydgm.autodiff.functional import binary_cross_entropy_with_logits, logsumexp, sigmoid, stack
from tinydgm.distributions import Normal
from tinydgm.models.latent.linear_gaussian import linear_gaussian_log_prob
from tinydgm.models.protocol import as_batch
from tinydgm.nn.activations import Tanh
from tinydgm.nn.linear import Linear
from tinydgm.nn.module import Module, Parameter, Sequential

__all__ = ["DensityNetwork", "estimator_variance", "prior_sampling_relative_variance",
           "linear_density_network", "variance_by_latent_dim"]

_LIKELIHOODS = ("bernoulli", "gaussian")
_CHUNK_ELEMENTS = 2 ** 22       # S_chunk * N * D terms held at once in log_prob_estimate


class DensityNetwork(Module):
    """DensityNetwork(n_latent, n_features, hidden_sizes=(64,), likelihood="bernoulli",
    sigma=None, n_samples=64, rng=None, dtype=None, device=None).

    f: an MLP K -> hidden_sizes (tanh) -> D; ``hidden_sizes=()`` makes f linear,
    f(z) = z W + b (then a Gaussian density network is a linear-Gaussian model with an
    exact log p(x): ``exact_log_prob``).
    likelihood: "bernoulli" (f gives logits; binary data) or "gaussian" (f gives the means;
    sigma: a fixed noise standard deviation, or None for a learned log_sigma per dimension).
    n_samples: S, the prior draws of ``loss`` and the default of ``log_prob_estimate``.
    rng: Generator for the initialisation and the default draws (``train.fit`` lends its own).
    """

    def __init__(self, n_latent, n_features, hidden_sizes=(64,), likelihood="bernoulli", sigma=None,
                 n_samples=64, rng=None, dtype=None, device=None):
        super().__init__()
        for arg, value in (("n_latent", n_latent), ("n_features", n_features), ("n_samples", n_samples)):
            _check_count("DensityNetwork", arg, value)
        if likelihood not in _LIKELIHOODS:
            raise ValueError(f'DensityNetwork: likelihood must be "bernoulli" or "gaussian", got {likelihood!r}')
        if sigma is not None and (likelihood != "gaussian" or not sigma > 0):
            raise ValueError(f"DensityNetwork: sigma (a fixed noise standard deviation) must be positive and "
                             f"needs likelihood='gaussian', got sigma={sigma!r}, likelihood={likelihood!r}")
        self.rng = backend.default_generator() if rng is None else rng
        self.n_latent, self.n_features, self.likelihood = n_latent, n_features, likelihood
        self.hidden_sizes, self.n_samples = tuple(hidden_sizes), n_samples
        sizes = [n_latent] + list(hidden_sizes) + [n_features]
        layers = []
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(Linear(n_in, n_out, rng=self.rng, dtype=dtype, device=device))
            if i < len(sizes) - 2:
                layers.append(Tanh())
        self.f = Sequential(*layers)
        param_dtype = self.f[0].weight.dtype
        if likelihood == "gaussian" and sigma is None:
            self.log_sigma = Parameter(backend.module_for_device(device).zeros((n_features,), dtype=param_dtype))
        elif likelihood == "gaussian":
            self.register_buffer("log_sigma", backend.module_for_device(device).full(
                (n_features,), math.log(sigma), dtype=param_dtype))

    # ----------------------------------------------------------------------------- the estimate

    def log_px_z(self, x, z):
        """log p(x_n | f(z_s)) summed over the D dimensions, (S, N), for z (S, K), x (N, D)."""
        out = self.f(z).reshape(z.shape[0], 1, self.n_features)           # (S, 1, D)
        if self.likelihood == "bernoulli":
            return -binary_cross_entropy_with_logits(out, x).sum(axis=-1)   # x log sigma(l) + (1-x) log(1-sigma(l))
        log_sigma = self.log_sigma if isinstance(self.log_sigma, Tensor) else Tensor(self.log_sigma)
        return Normal(out, log_scale=log_sigma).log_prob(x).sum(axis=-1)

    def log_prob_estimate(self, x, n_samples=None, rng=None):
        """The Monte Carlo estimate of log p(x) with S = n_samples prior draws (default
        ``self.n_samples``), (N,) in nats, differentiable in the parameters:

            logsumexp_s log p(x | f(z_s)) - log S,     z_s ~ N(0, I),  s = 1..S

        Below log p(x) in expectation (Jensen), converging to it as S grows. rng: the
        Generator of the draws (default ``self.rng``); the same seed gives the same estimate.
        """
        x = self._as_batch(x, "log_prob_estimate")
        S = self.n_samples if n_samples is None else n_samples
        _check_count("DensityNetwork.log_prob_estimate", "n_samples", S)
        z = self._standard_normal(self.rng if rng is None else rng, (S, self.n_latent))
        chunk = max(1, _CHUNK_ELEMENTS // max(1, x.shape[0] * self.n_features))
        # logsumexp over all S draws = logsumexp over the chunks of each chunk's logsumexp
        partial = [logsumexp(self.log_px_z(x, z[start:start + chunk]), axis=0) for start in range(0, S, chunk)]
        log_sum = partial[0] if len(partial) == 1 else logsumexp(stack(partial, axis=0), axis=0)
        return log_sum - math.log(S)

    def loss(self, x):
        """Minus the mean estimate with ``self.n_samples`` fresh prior draws from ``self.rng``:
        gradient ascent on the estimate (the slide's training rule)."""
        return -self.log_prob_estimate(x, self.n_samples, rng=self.rng).mean()

    def exact_log_prob(self, x):
        """The exact log p(x) = log N(x | b, W W^T + sigma^2 I) of a LINEAR Gaussian density
        network (hidden_sizes=()), (N,): the oracle its estimate is tested against."""
        if self.hidden_sizes or self.likelihood != "gaussian":
            raise ValueError("DensityNetwork.exact_log_prob: only a linear Gaussian density network "
                             "(hidden_sizes=(), likelihood='gaussian') has a closed-form log p(x)")
        x = self._as_batch(x, "exact_log_prob")
        layer = self.f[0]
        log_sigma = self.log_sigma if isinstance(self.log_sigma, Tensor) else Tensor(self.log_sigma)
        return linear_gaussian_log_prob(x, layer.weight.T, layer.bias, (2 * log_sigma).exp())

    # ----------------------------------------------------------------------------- sampling

    def sample(self, n, rng=None):
        """n ancestral draws z ~ N(0, I), x ~ p(x | f(z)), a Tensor (n, D) without a graph
        (0/1 values for Bernoulli). rng: a Generator (default ``self.rng``)."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"DensityNetwork.sample: n must be a non-negative int, got {n!r}")
        rng = self.rng if rng is None else rng
        with no_grad():
            out = self.f(self._standard_normal(rng, (n, self.n_latent)))
            if self.likelihood == "bernoulli":
                u = self._uniform(rng, (n, self.n_features))
                return Tensor((u.data < sigmoid(out).data).astype(out.dtype))
            log_sigma = self.log_sigma.data if isinstance(self.log_sigma, Tensor) else self.log_sigma
            return out + Tensor(backend.xp_of(log_sigma).exp(log_sigma)) * \
                self._standard_normal(rng, (n, self.n_features))

    # ----------------------------------------------------------------------------- helpers

    def _standard_normal(self, rng, shape):
        weight = self.f[0].weight
        return Tensor(backend.to_device(rng.standard_normal(shape), weight.device).astype(weight.dtype))

    def _uniform(self, rng, shape):
        weight = self.f[0].weight
        return Tensor(backend.to_device(rng.random(shape), weight.device).astype(weight.dtype))

    def _as_batch(self, x, who):
        """x as a Tensor (N, D) in the model's dtype and device; clear errors otherwise."""
        name = f"DensityNetwork.{who}"
        x = as_batch(x, self.f[0].weight, self.n_features, name)
        if self.likelihood == "bernoulli" and not bool(((x.data == 0) | (x.data == 1)).all()):
            bad = x.data[(x.data != 0) & (x.data != 1)]
            raise ValueError(f"{name}: a Bernoulli density network needs binary data (0 or 1), got values "
                             f"such as {float(bad[0])!r}; binarize first (tinydgm.data) or use likelihood='gaussian'")
        return x

    def extra_repr(self):
        return (f"n_latent={self.n_latent}, n_features={self.n_features}, hidden_sizes={self.hidden_sizes}, "
                f"likelihood={self.likelihood!r}, n_samples={self.n_samples}")


def _check_count(owner, arg, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{owner}: {arg} must be a positive int, got {value!r}")


# ----------------------------------------------------------------------------- the variance study

def estimator_variance(model, x, n_samples, n_repeats=100, rng=None):
    """The empirical variance of ``model.log_prob_estimate(x, n_samples)`` over n_repeats
    independent draws (the model held fixed), per example: an array (N,). Also returns the
    mean estimate per example: (variance, mean)."""
    _check_count("estimator_variance", "n_repeats", n_repeats)
    rng = backend.rng(0) if rng is None else rng
    with no_grad():
        draws = stack([model.log_prob_estimate(x, n_samples, rng=rng) for _ in range(n_repeats)], axis=0).data
    return draws.var(axis=0, ddof=1), draws.mean(axis=0)


def prior_sampling_relative_variance(W, b, sigma, x):
    """rho(x) = Var_{p(z)}[p(x|z)] / p(x)^2 for the linear-Gaussian p(x|z) = N(W z + b,
    sigma^2 I), p(z) = N(0, I): exact, from

        E[p(x|z)^2] = (4 pi sigma^2)^{-D/2} N(x | b, W W^T + sigma^2/2 I),   p(x) = N(x | b, W W^T + sigma^2 I)

    (a squared Gaussian density is a Gaussian with half the variance). The S-sample
    estimate p^(x) of p(x) has Var[p^ / p] = rho / S exactly; for large S the log-estimate
    has variance ~ rho / S and bias ~ -rho / (2 S) (delta method). Tensors W (D, K),
    b (D,), x (N, D); sigma a float. Returns an array (N,).
    """
    D = W.shape[0]
    xp = backend.xp_of(W.data)
    psi = Tensor(xp.full((D,), sigma ** 2, dtype=W.dtype))
    with no_grad():
        log_second_moment = -0.5 * D * math.log(4 * math.pi * sigma ** 2) + linear_gaussian_log_prob(x, W, b, psi * 0.5)
        log_p = linear_gaussian_log_prob(x, W, b, psi)
    return xp.expm1((log_second_moment - 2 * log_p).data)


def linear_density_network(n_latent, weight_scale=1.0, sigma=0.5, n_samples=100, dtype="float64", device=None):
    """A fixed linear-Gaussian density network with K = D = n_latent: f(z) = weight_scale z,
    p(x|z) = N(f(z), sigma^2 I), so p(x) = N(0, (weight_scale^2 + sigma^2) I) exactly."""
    model = DensityNetwork(n_latent, n_latent, hidden_sizes=(), likelihood="gaussian", sigma=sigma,
                           n_samples=n_samples, rng=backend.rng(0), dtype=dtype, device=device)
    xp = backend.module_for_device(device)
    model.f[0].weight.data = weight_scale * xp.eye(n_latent, dtype=model.f[0].weight.dtype)
    model.f[0].bias.data = xp.zeros((n_latent,), dtype=model.f[0].bias.dtype)
    return model


def variance_by_latent_dim(dims=(1, 2, 4, 8), n_samples=100, n_repeats=200, weight_scale=1.0, sigma=0.5, seed=0):
    """How the density network's estimator degrades with the latent dimension, on the
    linear-Gaussian case where everything is known (``linear_density_network``). For each
    K in dims, at the point x whose every coordinate is one marginal standard deviation
    sqrt(weight_scale^2 + sigma^2) from the mean (a typical point):

        "variance"    empirical variance of the log-estimate over n_repeats draws of S = n_samples
        "bias"        mean estimate minus the exact log p(x) (negative: Jensen)
        "rho"         the exact relative variance of one weight, rho(x) (grows like r^K - 1)
        "exact_log_prob"

    Returns a list of dicts, one per dimension (the data of a demo panel).
    """
    rng = backend.rng(seed)
    rows = []
    for dim in dims:
        model = linear_density_network(dim, weight_scale, sigma, n_samples)
        x = tensor([[math.sqrt(weight_scale ** 2 + sigma ** 2)] * dim], dtype=model.f[0].weight.dtype)
        variance, mean = estimator_variance(model, x, n_samples, n_repeats, rng)
        exact = float(model.exact_log_prob(x).data[0])
        layer = model.f[0]
        rho = float(prior_sampling_relative_variance(layer.weight.T, layer.bias, sigma, x)[0])
        rows.append({"dim": dim, "variance": float(variance[0]), "bias": float(mean[0]) - exact, "rho": rho,
                     "exact_log_prob": exact})
    return rows
