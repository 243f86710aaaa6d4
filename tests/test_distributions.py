"""Distributions (tinydgm/distributions.py): log-densities against scipy.stats, first and
second derivatives against finite differences, reparameterised gradients and sample
moments against their exact values (Monte Carlo with a fixed seed, within a stated
number of standard errors), closed-form KLs against Monte Carlo and enumeration,
normalisation, entropies, stability at extreme parameters, errors."""
import math

import numpy as np
import pytest
import scipy.special
from hypothesis import given, settings
from hypothesis.extra.numpy import mutually_broadcastable_shapes
from scipy import stats

import tinydgm as td
from tinydgm import distributions as D

DTYPES = ["float64", "float32"]
RTOL = {"float64": 1e-10, "float32": 2e-5}
ATOL = {"float64": 1e-10, "float32": 2e-5}
N_SE = 4            # Monte Carlo checks: |estimate - exact| < N_SE standard errors


def t(array, device="cpu", dtype="float64", requires_grad=False):
    return td.tensor(np.asarray(array, dtype=np.float64), dtype=dtype, device=device,
                     requires_grad=requires_grad)


def leaf(array):
    return t(array, requires_grad=True)


def check_grads(fn, *inputs):
    assert td.gradcheck(fn, list(inputs))
    assert td.gradgradcheck(fn, list(inputs))


def close(actual, expected, dtype):
    np.testing.assert_allclose(actual, expected, rtol=RTOL[dtype], atol=ATOL[dtype])


def assert_mc(samples, exact, n_se=N_SE):
    """The sample mean over axis 0 is within n_se standard errors of ``exact``."""
    samples = np.asarray(samples, dtype=np.float64)
    se = samples.std(axis=0, ddof=1) / math.sqrt(samples.shape[0])
    error = np.abs(samples.mean(axis=0) - exact)
    assert np.all(error < n_se * se), (error / se, samples.mean(axis=0), exact)


def assert_frequencies(draws, probs):
    """Draws of class indices (n, *batch) follow ``probs`` (*batch, K): Pearson's chi-square
    test per distribution of the batch, classes expected fewer than 5 times pooled into one,
    passes at the 1e-3 level."""
    n, n_classes = draws.shape[0], probs.shape[-1]
    draws, probs = draws.reshape(n, -1), probs.reshape(-1, n_classes)
    for j in range(probs.shape[0]):
        counts = np.bincount(draws[:, j], minlength=n_classes)
        expected = n * probs[j]
        small = expected < 5
        observed, expected = counts[~small], expected[~small]
        if small.any():
            observed = np.append(observed, counts[small].sum())
            expected = np.append(expected, n * probs[j][small].sum())
        assert observed.size > 2
        p_value = stats.chisquare(observed, expected * n / expected.sum()).pvalue
        assert p_value > 1e-3, (j, p_value, observed, expected)


def bin_edges(n_bins, low=-1.0, high=1.0):
    h = (high - low) / (2 * (n_bins - 1))
    centres = low + 2 * h * np.arange(n_bins)
    return centres, h


def ref_discretized_log_mass(x, mu, s, n_bins=256, low=-1.0, high=1.0):
    """log P(x) of the discretised logistic from scipy's logistic logcdf/logsf in float64:
    log(F(b) - F(a)) by whichever tail keeps its digits."""
    x, mu, s = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (x, mu, s)))
    _, h = bin_edges(n_bins, low, high)
    a, b = (x - h - mu) / s, (x + h - mu) / s
    logistic = stats.logistic
    with np.errstate(divide="ignore"):
        left = logistic.logcdf(b) + np.log(-np.expm1(logistic.logcdf(a) - logistic.logcdf(b)))
        right = logistic.logsf(a) + np.log(-np.expm1(logistic.logsf(b) - logistic.logsf(a)))
    interior = np.where(a + b < 0, left, right)
    return np.where(x < low + h, logistic.logcdf(b), np.where(x > high - h, logistic.logsf(a), interior))


def pixelcnnpp_log_prob(x, mu, log_s):
    """A NumPy transcription of the PixelCNN++ code (Salimans et al. 2017), one component,
    256 levels on [-1, 1], with its mid-point fallback where the mass is below 1e-5."""
    def softplus(v):
        return np.logaddexp(0.0, v)

    centred, inv_s = x - mu, np.exp(-log_s)
    plus_in, min_in = inv_s * (centred + 1 / 255), inv_s * (centred - 1 / 255)
    cdf_delta = scipy.special.expit(plus_in) - scipy.special.expit(min_in)
    log_cdf_plus = plus_in - softplus(plus_in)
    log_one_minus_cdf_min = -softplus(min_in)
    mid_in = inv_s * centred
    log_pdf_mid = mid_in - log_s - 2 * softplus(mid_in)
    interior = np.where(cdf_delta > 1e-5, np.log(np.maximum(cdf_delta, 1e-12)), log_pdf_mid - np.log(127.5))
    return np.where(x < -0.999, log_cdf_plus, np.where(x > 0.999, log_one_minus_cdf_min, interior)), cdf_delta


# ----------------------------------------------------------------------------- log_prob against scipy

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["sigma", "log_var", "log_scale"])
def test_normal_log_prob_matches_scipy(device, dtype, kind):
    rng = np.random.default_rng(0)
    mu, x = rng.normal(size=(3, 1)), rng.normal(size=(2, 3, 4))       # broadcast to (2, 3, 4)
    sigma = rng.uniform(0.3, 2.0, size=(4,))
    scale = {"sigma": sigma, "log_var": 2 * np.log(sigma), "log_scale": np.log(sigma)}[kind]
    d = D.Normal(t(mu, device, dtype), **{kind: t(scale, device, dtype)})
    assert d.batch_shape == (3, 4)
    got = d.log_prob(t(x, device, dtype))
    assert got.dtype == np.dtype(dtype) and got.device == device
    close(got.numpy(), stats.norm.logpdf(x, mu, sigma), dtype)
    close(d.sigma.numpy(), sigma, dtype)
    close(d.variance.numpy(), np.broadcast_to(sigma ** 2, (3, 4)), dtype)
    close(d.mean.numpy(), np.broadcast_to(mu, (3, 4)), dtype)
    close(d.entropy().numpy(), np.broadcast_to(stats.norm.entropy(0, sigma), (3, 4)), dtype)


def test_normal_accepts_numbers_and_arrays_with_the_tensor_dtype():
    mu = t([0.0, 1.0], dtype="float32")
    d = D.Normal(mu, 2.0)
    assert d.sigma.dtype == np.float32
    assert D.Normal(0, 1).mu.dtype == td.get_default_dtype()        # integers become floating
    assert D.Normal(np.zeros(3), sigma=np.ones(3)).log_prob(np.zeros(3)).shape == (3,)
    np.testing.assert_allclose(D.Normal(1.0, sigma=2.0).log_prob(0.5).numpy(),
                               stats.norm.logpdf(0.5, 1.0, 2.0), rtol=1e-6)
    # integer data is cast to the parameters' dtype
    assert d.log_prob(td.tensor(np.array([0, 1]))).dtype == np.float32


@given(mutually_broadcastable_shapes(num_shapes=3, max_dims=3, max_side=3))
@settings(max_examples=25, deadline=None)
def test_normal_log_prob_broadcasts_like_numpy(shapes):
    mu_shape, scale_shape, x_shape = shapes.input_shapes
    rng = np.random.default_rng(1)
    mu, log_scale, x = rng.normal(size=mu_shape), rng.normal(size=scale_shape), rng.normal(size=x_shape)
    got = D.Normal(t(mu), log_scale=t(log_scale)).log_prob(t(x)).numpy()
    expected = stats.norm.logpdf(x, mu, np.exp(log_scale))
    assert got.shape == expected.shape == shapes.result_shape
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
def test_standard_normal_matches_scipy(device, dtype):
    x = np.random.default_rng(2).normal(size=(5, 3)) * 3
    d = D.StandardNormal((3,), dtype=dtype, device=device)
    assert d.batch_shape == (3,) and d.mu.dtype == np.dtype(dtype)
    close(d.log_prob(t(x, device, dtype)).numpy(), stats.norm.logpdf(x), dtype)
    close(d.entropy().numpy(), np.full(3, stats.norm.entropy()), dtype)
    close(D.Normal(np.zeros(3), sigma=np.ones(3)).log_prob(x).numpy(), stats.norm.logpdf(x), "float64")


@pytest.mark.parametrize("dtype", DTYPES)
def test_bernoulli_log_prob_matches_scipy(device, dtype):
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(4, 5)) * 3
    x = rng.integers(0, 2, size=(2, 4, 5))
    p = scipy.special.expit(logits)
    expected = stats.bernoulli.logpmf(x, p)
    close(D.Bernoulli(logits=t(logits, device, dtype)).log_prob(t(x, device, dtype)).numpy(), expected, dtype)
    # from probs: against the probabilities as rounded to the dtype (near 1 that rounding
    # alone moves log(1 - p) by more than float32's tolerance)
    p_rounded = p.astype(dtype).astype(np.float64)
    close(D.Bernoulli(probs=t(p, device, dtype)).log_prob(t(x, device, dtype)).numpy(),
          stats.bernoulli.logpmf(x, p_rounded), dtype)
    b = D.Bernoulli(logits=t(logits, device, dtype))
    close(b.mean.numpy(), p, dtype)
    close(b.variance.numpy(), p * (1 - p), dtype)
    close(b.entropy().numpy(), stats.bernoulli.entropy(p), dtype)
    # integer and boolean data are accepted as they are
    close(b.log_prob(td.tensor(x[0].astype(bool), device=device)).numpy(), expected[0], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_categorical_log_prob_is_log_softmax_gathered(device, dtype):
    rng = np.random.default_rng(4)
    logits = rng.normal(size=(3, 6)) * 2
    k = rng.integers(0, 6, size=(5, 3))                  # batch (3,), five values each
    log_p = logits - scipy.special.logsumexp(logits, axis=-1, keepdims=True)
    expected = np.take_along_axis(np.broadcast_to(log_p, (5, 3, 6)), k[..., None], -1)[..., 0]
    c = D.Categorical(t(logits, device, dtype))
    got = c.log_prob(td.tensor(k, device=device))
    assert got.shape == (5, 3) and got.dtype == np.dtype(dtype)
    close(got.numpy(), expected, dtype)
    # the same value from scipy's multinomial with one trial
    onehot = np.eye(6)[k[0]]
    close(got.numpy()[0], stats.multinomial.logpmf(onehot, 1, np.exp(log_p)), dtype)
    close(c.entropy().numpy(), stats.entropy(np.exp(log_p), axis=-1), dtype)
    close(c.probs.numpy().sum(axis=-1), np.ones(3), dtype)
    classes = np.arange(6)
    mean = (np.exp(log_p) * classes).sum(-1)
    close(c.mean.numpy(), mean, dtype)
    close(c.variance.numpy(), (np.exp(log_p) * classes ** 2).sum(-1) - mean ** 2, "float32")


def test_categorical_log_prob_any_batch_shape():
    logits = np.random.default_rng(5).normal(size=(2, 1, 4))
    c = D.Categorical(t(logits))
    assert c.batch_shape == (2, 1)
    got = c.log_prob(np.array([[0, 3, 2]])).numpy()             # (1, 3) with (2, 1) -> (2, 3)
    log_p = scipy.special.log_softmax(logits, axis=-1)
    np.testing.assert_allclose(got, log_p[:, 0, [0, 3, 2]], rtol=1e-12)
    assert c.log_prob(np.zeros((0, 2, 1), dtype=np.int64)).shape == (0, 2, 1)
    assert c.log_prob(2).shape == (2, 1)


@pytest.mark.parametrize("dtype", DTYPES)
def test_mixture_of_gaussians_matches_scipy(device, dtype):
    rng = np.random.default_rng(6)
    weights_logits, means = rng.normal(size=3), rng.normal(size=(3, 2))
    log_scales = rng.uniform(-1, 0.5, size=(3, 2))
    x = rng.normal(size=(7, 2)) * 2
    m = D.MixtureOfGaussians(t(weights_logits, device, dtype), t(means, device, dtype),
                             t(log_scales, device, dtype))
    assert m.batch_shape == () and m.event_shape == (2,)
    log_pi = scipy.special.log_softmax(weights_logits)
    per_component = np.stack([stats.multivariate_normal.logpdf(x, means[k], np.diag(np.exp(2 * log_scales[k])))
                              for k in range(3)], axis=-1)
    got = m.log_prob(t(x, device, dtype))
    assert got.shape == (7,)
    close(got.numpy(), scipy.special.logsumexp(log_pi + per_component, axis=-1), dtype)
    pi = np.exp(log_pi)
    mean = (pi[:, None] * means).sum(0)
    close(m.mean.numpy(), mean, dtype)
    close(m.variance.numpy(), (pi[:, None] * (np.exp(2 * log_scales) + means ** 2)).sum(0) - mean ** 2, dtype)


def test_mixture_of_gaussians_isotropic_and_batched():
    rng = np.random.default_rng(7)
    weights_logits = rng.normal(size=(4, 3))             # batch of 4 mixtures
    means, log_scales = rng.normal(size=(3, 2)), rng.normal(size=(3, 1)) * 0.3   # shared, isotropic
    m = D.MixtureOfGaussians(t(weights_logits), t(means), t(log_scales))
    assert m.batch_shape == (4,) and m.event_shape == (2,)
    x = rng.normal(size=(5, 4, 2))
    sigma = np.exp(log_scales)
    log_px_k = stats.norm.logpdf(x[..., None, :], means, sigma).sum(-1)
    expected = scipy.special.logsumexp(scipy.special.log_softmax(weights_logits, -1) + log_px_k, axis=-1)
    np.testing.assert_allclose(m.log_prob(t(x)).numpy(), expected, rtol=1e-10)
    assert m.sample((6,), rng=np.random.default_rng(0)).shape == (6, 4, 2)


@pytest.mark.parametrize("dtype", DTYPES)
def test_discretized_logistic_matches_logistic_cdf(device, dtype):
    rng = np.random.default_rng(8)
    centres, h = bin_edges(256)
    x = rng.choice(centres, size=(6, 50))
    x[:, :3] = [-1.0, 1.0, centres[1]]                   # both edge bins and a neighbour
    mu = rng.uniform(-1.2, 1.2, size=(6, 1))
    log_scale = rng.uniform(-4, 0, size=(6, 1))
    s = np.exp(log_scale)
    cdf_plus, cdf_minus = stats.logistic.cdf((x + h - mu) / s), stats.logistic.cdf((x - h - mu) / s)
    expected = np.where(x < -0.999, cdf_plus, np.where(x > 0.999, 1 - cdf_minus, cdf_plus - cdf_minus))
    d = D.DiscretizedLogistic(t(mu, device, dtype), t(log_scale, device, dtype))
    got = d.log_prob(t(x, device, dtype)).numpy()
    assert got.shape == (6, 50)
    tolerance = 1e-9 if dtype == "float64" else 1e-4
    np.testing.assert_allclose(np.exp(got), expected, rtol=2 * tolerance, atol=1e-12)
    np.testing.assert_allclose(got, ref_discretized_log_mass(x, mu, s), rtol=tolerance, atol=tolerance)


def test_discretized_logistic_other_ranges_and_bins():
    centres, h = bin_edges(5, low=0.0, high=4.0)
    assert h == 0.5 and np.allclose(centres, [0, 1, 2, 3, 4])
    mu, log_scale = np.array([0.3, 2.2]), np.array([-0.5, 0.4])
    d = D.DiscretizedLogistic(t(mu), t(log_scale), n_bins=5, low=0, high=4)
    x = centres[:, None]
    np.testing.assert_allclose(d.log_prob(t(x)).numpy(),
                               ref_discretized_log_mass(x, mu, np.exp(log_scale), 5, 0.0, 4.0), rtol=1e-10)


def test_discretized_logistic_against_the_pixelcnnpp_formula():
    """Where the paper's code evaluates the mass exactly (mass > 1e-5 and the edge bins) the
    values are equal; in its mid-point fallback region ours is the exact mass (scipy) and the
    paper's approximation is within 2e-2 nats of it for these scales."""
    rng = np.random.default_rng(9)
    centres, _ = bin_edges(256)
    x = np.broadcast_to(centres, (40, 256))
    mu = rng.uniform(-1, 1, size=(40, 1))
    log_s = rng.uniform(-3, -1, size=(40, 1))
    ours = D.DiscretizedLogistic(t(mu), t(log_s)).log_prob(t(x)).numpy()
    paper, cdf_delta = pixelcnnpp_log_prob(x, mu, log_s)
    exact_region = (cdf_delta > 1e-5) | (x < -0.999) | (x > 0.999)
    assert exact_region.sum() > 1000 and (~exact_region).sum() > 1000
    np.testing.assert_allclose(ours[exact_region], paper[exact_region], rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(ours, ref_discretized_log_mass(x, mu, np.exp(log_s)), rtol=1e-9)
    np.testing.assert_allclose(ours[~exact_region], paper[~exact_region], atol=2e-2)


@pytest.mark.parametrize("dtype", DTYPES)
def test_discretized_logistic_mixture_matches_components(device, dtype):
    rng = np.random.default_rng(10)
    centres, _ = bin_edges(256)
    logit_probs, means = rng.normal(size=(2, 3, 5)), rng.uniform(-1, 1, size=(2, 3, 5))
    log_scales = rng.uniform(-5, -1, size=(2, 3, 5))
    x = rng.choice(centres, size=(2, 3))
    x[0, 0], x[1, 2] = -1.0, 1.0
    d = D.DiscretizedLogisticMixture(t(logit_probs, device, dtype), t(means, device, dtype),
                                     t(log_scales, device, dtype))
    assert d.batch_shape == (2, 3)
    log_components = ref_discretized_log_mass(x[..., None], means, np.exp(log_scales))
    expected = scipy.special.logsumexp(scipy.special.log_softmax(logit_probs, -1) + log_components, axis=-1)
    tolerance = 1e-9 if dtype == "float64" else 1e-4
    np.testing.assert_allclose(d.log_prob(t(x, device, dtype)).numpy(), expected, rtol=tolerance, atol=tolerance)


# ----------------------------------------------------------------------------- gradients

@pytest.mark.parametrize("kind", ["sigma", "log_var", "log_scale"])
def test_normal_log_prob_gradients(kind):
    rng = np.random.default_rng(11)
    mu, x = leaf(rng.normal(size=(3, 1))), leaf(rng.normal(size=(2, 3, 4)))
    scale = rng.uniform(0.5, 2.0, size=(4,)) if kind == "sigma" else rng.normal(size=(4,))
    check_grads(lambda mu, s, x: D.Normal(mu, **{kind: s}).log_prob(x), mu, leaf(scale), x)


def test_normal_entropy_mean_variance_and_standard_normal_gradients():
    rng = np.random.default_rng(12)
    mu, log_var = leaf(rng.normal(size=(3,))), leaf(rng.normal(size=(3,)))
    check_grads(lambda mu, lv: D.Normal(mu, log_var=lv).entropy(), mu, log_var)
    check_grads(lambda mu, lv: D.Normal(mu, log_var=lv).variance * D.Normal(mu, log_var=lv).mean, mu, log_var)
    check_grads(lambda x: D.StandardNormal(3).log_prob(x), leaf(rng.normal(size=(2, 3))))


def test_bernoulli_gradients():
    rng = np.random.default_rng(13)
    logits = leaf(rng.normal(size=(3, 4)) * 2)
    x = leaf(rng.uniform(0, 1, size=(2, 3, 4)))          # grey-level targets are differentiable too
    check_grads(lambda l, x: D.Bernoulli(logits=l).log_prob(x), logits, x)
    check_grads(lambda p: D.Bernoulli(probs=p).log_prob(np.array([0.0, 1.0, 1.0])),
                leaf(rng.uniform(0.1, 0.9, size=3)))
    check_grads(lambda l: D.Bernoulli(logits=l).entropy(), logits)


def test_categorical_gradients():
    rng = np.random.default_rng(14)
    logits = leaf(rng.normal(size=(3, 5)))
    k = td.tensor(rng.integers(0, 5, size=(4, 3)))       # repeated indices: the backward scatter-adds
    check_grads(lambda l: D.Categorical(l).log_prob(k), logits)
    check_grads(lambda l: D.Categorical(l).entropy(), logits)
    check_grads(lambda l: D.Categorical(l).mean, logits)


def test_mixture_of_gaussians_gradients():
    rng = np.random.default_rng(15)
    args = leaf(rng.normal(size=(2, 3))), leaf(rng.normal(size=(3, 2))), leaf(rng.normal(size=(3, 2)) * 0.3)
    x = leaf(rng.normal(size=(4, 2, 2)))                 # 4 points for each of a batch of 2 mixtures
    check_grads(lambda w, m, s, x: D.MixtureOfGaussians(w, m, s).log_prob(x), *args, x)
    check_grads(lambda w, m, s: D.MixtureOfGaussians(w, m, s).variance, *args)


def mixture_log_prob_direct(weights_logits, means, log_scales, x):
    """The mixture's log-density through the (..., K, D) array, in float64 NumPy."""
    sigma = np.exp(log_scales)
    log_px_k = stats.norm.logpdf(x[..., None, :], means, sigma).sum(-1)
    return scipy.special.logsumexp(scipy.special.log_softmax(weights_logits) + log_px_k, axis=-1)


def spread_mixture(rng, n_components, dim, spread, scale, offset=0.0):
    """Means N(offset, spread^2), scales about ``scale``, and points drawn from the components
    (so each point sits near one mean: the case where the expanded square cancels most)."""
    weights_logits = rng.normal(size=n_components)
    means = offset + spread * rng.normal(size=(n_components, dim))
    log_scales = math.log(scale) + 0.3 * rng.normal(size=(n_components, dim))
    k = rng.integers(0, n_components, size=200)
    x = means[k] + np.exp(log_scales[k]) * rng.normal(size=(200, dim))
    return weights_logits, means, log_scales, x


@pytest.mark.parametrize("spread, scale, offset", [(1.0, 1.0, 0.0), (3.0, 0.1, 0.0), (0.5, 0.01, 10.0),
                                                    (10.0, 0.01, 0.0)])
def test_mixture_gemm_form_equals_direct_form(spread, scale, offset):
    """Unbatched parameters take the GEMM form; in float64 it equals the (N, K, D) form to
    rounding, also at points ~10 away from the origin with scales ~0.01 (log p up to ~130).
    Rounding here: the expansion cancels terms of size D (spread / scale)^2 = 8e6 at worst,
    leaving ~1e-16 of that (3e-10 relative measured), hence rtol 1e-8 rather than 1e-10."""
    rng = np.random.default_rng(40)
    weights_logits, means, log_scales, x = spread_mixture(rng, 30, 8, spread, scale, offset)
    m = D.MixtureOfGaussians(t(weights_logits), t(means), t(log_scales))
    expected = mixture_log_prob_direct(weights_logits, means, log_scales, x)
    np.testing.assert_allclose(m.log_prob(t(x)).numpy(), expected, rtol=1e-8, atol=1e-9)
    far = 10 * rng.normal(size=(3, 5, 8))                  # far from every mean, extra leading axes
    expected_far = mixture_log_prob_direct(weights_logits, means, log_scales, far)
    np.testing.assert_allclose(m.log_prob(t(far)).numpy(), expected_far, rtol=1e-10)


@pytest.mark.parametrize("spread, scale, offset", [(3.0, 0.1, 0.0), (0.5, 0.01, 10.0), (3.0, 0.01, 0.0),
                                                    (10.0, 0.01, 0.0)])
def test_mixture_gemm_form_float32_as_accurate_as_direct_form(spread, scale, offset):
    """In float32 the expanded square would cancel catastrophically (about 22 nats off for means
    spread 10 with scales 0.01, L = 40); centring and the float64 expansion keep the error
    within twice the direct float32 form's (which only rounds the inputs and the sums)."""
    rng = np.random.default_rng(41)
    weights_logits, means, log_scales, x = spread_mixture(rng, 100, 40, spread, scale, offset)
    expected = mixture_log_prob_direct(weights_logits, means, log_scales, x)
    m = D.MixtureOfGaussians(t(weights_logits, dtype="float32"), t(means, dtype="float32"),
                             t(log_scales, dtype="float32"))
    x32 = t(x, dtype="float32")
    got = m.log_prob(x32)
    assert got.dtype == np.float32
    direct = td.autodiff.functional.logsumexp(m._log_weights() + m._component_log_probs_direct(x32), axis=-1)
    error, direct_error = np.abs(got.numpy() - expected).max(), np.abs(direct.numpy() - expected).max()
    assert error <= 2 * direct_error + 1e-4, (error, direct_error)


def test_mixture_gemm_form_gradients():
    """First and second derivatives of the GEMM form (unbatched parameters) in the weights,
    means, per-dimension and isotropic (K, 1) log-scales, and x with two leading axes."""
    rng = np.random.default_rng(42)
    args = leaf(rng.normal(size=3)), leaf(rng.normal(size=(3, 2))), leaf(rng.normal(size=(3, 2)) * 0.3)
    x = leaf(rng.normal(size=(2, 4, 2)) * 2)
    assert D.MixtureOfGaussians(*args).batch_shape == ()
    check_grads(lambda w, m, s, x: D.MixtureOfGaussians(w, m, s).log_prob(x), *args, x)
    isotropic = leaf(rng.normal(size=(3, 1)) * 0.3)
    check_grads(lambda w, m, s, x: D.MixtureOfGaussians(w, m, s).log_prob(x), args[0], args[1], isotropic, x)


def test_mixture_tiny_scales_fall_back_to_the_direct_form():
    """Where 1 / sigma^2 overflows (float32, log sigma = -50) the GEMM form cannot be used;
    the direct form gives the finite, exact log-density."""
    means = np.array([[0.0, 0.0], [1.0, 1.0]])
    log_scales = np.array([[-50.0, -50.0], [0.0, 0.0]])
    m = D.MixtureOfGaussians(t([0.0, 0.0], dtype="float32"), t(means, dtype="float32"),
                             t(log_scales, dtype="float32"))
    x = np.array([[1.0, 1.0], [2.0, 0.5]])
    got = m.log_prob(t(x, dtype="float32")).numpy()
    expected = np.log(0.5) + stats.norm.logpdf(x, 1.0, 1.0).sum(-1)    # the tiny component adds exp(-huge)
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_discretized_logistic_gradients():
    rng = np.random.default_rng(16)
    centres, _ = bin_edges(256)
    x = rng.choice(centres, size=(3, 8))
    x[:, 0], x[:, 1] = -1.0, 1.0                         # edge bins
    mu, log_scale = leaf(rng.uniform(-1, 1, size=(3, 8))), leaf(rng.uniform(-5, 0, size=(3, 1)))
    check_grads(lambda mu, s: D.DiscretizedLogistic(mu, s).log_prob(x), mu, log_scale)
    check_grads(lambda mu, s: D.DiscretizedLogistic(mu, s, n_bins=8).entropy(), mu, log_scale)
    check_grads(lambda mu, s: D.DiscretizedLogistic(mu, s, n_bins=8).mean, mu, log_scale)


def test_discretized_logistic_mixture_gradients():
    rng = np.random.default_rng(17)
    centres, _ = bin_edges(256)
    x = rng.choice(centres, size=(2, 4))
    x[0, 0], x[1, 0] = -1.0, 1.0
    args = (leaf(rng.normal(size=(2, 4, 3))), leaf(rng.uniform(-1, 1, size=(2, 4, 3))),
            leaf(rng.uniform(-4, -1, size=(2, 4, 3))))
    check_grads(lambda w, m, s: D.DiscretizedLogisticMixture(w, m, s).log_prob(x), *args)


def test_kl_gradients():
    rng = np.random.default_rng(18)
    a, b, c, d = (leaf(rng.normal(size=(3,))) for _ in range(4))
    check_grads(lambda a, b, c, d: D.kl_divergence(D.Normal(a, log_var=b), D.Normal(c, log_scale=d)),
                a, b, c, d)
    check_grads(lambda a, b: D.kl_divergence(D.Bernoulli(logits=a), D.Bernoulli(logits=b)), a, b)
    p, q = leaf(rng.normal(size=(2, 4))), leaf(rng.normal(size=(2, 4)))
    check_grads(lambda p, q: D.kl_divergence(D.Categorical(p), D.Categorical(q)), p, q)


@pytest.mark.parametrize("kind", ["sigma", "log_var", "log_scale"])
def test_rsample_gradient_matches_analytic(kind):
    """d/dtheta E[z^2] for z = mu + sigma eps: E[z^2] = mu^2 + sigma^2, so d/dmu = 2 mu and
    d/d(scale parameter) = 2 sigma dsigma/dtheta; the Monte Carlo gradient of mean(z^2) is
    within 4 standard errors of both."""
    n = 20000
    mu_value, sigma_value = np.array([0.5, -1.0]), np.array([0.7, 1.6])
    scale_value = {"sigma": sigma_value, "log_var": 2 * np.log(sigma_value),
                   "log_scale": np.log(sigma_value)}[kind]
    dsigma = {"sigma": 1.0, "log_var": sigma_value / 2, "log_scale": sigma_value}[kind]
    mu, scale = leaf(mu_value), leaf(scale_value)
    z = D.Normal(mu, **{kind: scale}).rsample((n,), rng=np.random.default_rng(19))
    assert z.shape == (n, 2) and z.requires_grad
    (z ** 2).mean(axis=0).sum().backward()
    zs = z.numpy()
    eps = (zs - mu_value) / sigma_value
    for grad, exact, per_sample in ((mu.grad.numpy(), 2 * mu_value, 2 * zs),
                                    (scale.grad.numpy(), 2 * sigma_value * dsigma, 2 * zs * eps * dsigma)):
        np.testing.assert_allclose(grad, per_sample.mean(axis=0), rtol=1e-10)    # the engine's gradient
        assert_mc(per_sample, exact)


# ----------------------------------------------------------------------------- sampling

def test_normal_sample_moments(device):
    n = 40000
    mu, sigma = np.array([[0.5], [-2.0]]), np.array([0.3, 1.0, 3.0])
    d = D.Normal(t(mu, device), sigma=t(sigma, device))
    z = d.sample((n,), rng=np.random.default_rng(20))
    assert z.shape == (n, 2, 3) and not z.requires_grad and z.device == device
    z = z.numpy()
    assert_mc(z, np.broadcast_to(mu, (2, 3)))
    # the sample variance has standard error ~ sigma^2 sqrt(2 / n)
    assert np.all(np.abs(z.var(axis=0, ddof=1) - sigma ** 2) < N_SE * sigma ** 2 * math.sqrt(2 / n))


def test_sampling_is_seeded_and_shaped():
    d = D.Normal(t([0.0, 1.0], dtype="float32"), log_var=t([0.0, 0.0], dtype="float32"))
    a = d.sample((3, 4), rng=np.random.default_rng(5))
    b = d.sample((3, 4), rng=np.random.default_rng(5))
    assert a.shape == (3, 4, 2) and a.dtype == np.float32
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    td.seed(7)
    c = d.sample(5)
    td.seed(7)
    np.testing.assert_array_equal(c.numpy(), d.sample(5).numpy())        # rng=None: td.seed's generator
    assert d.sample().shape == (2,)
    s = D.StandardNormal((2, 3)).rsample(4, rng=np.random.default_rng(0))
    assert s.shape == (4, 2, 3)
    assert D.Normal.has_rsample and D.StandardNormal.has_rsample
    for cls in (D.Bernoulli, D.Categorical, D.MixtureOfGaussians, D.DiscretizedLogistic,
                D.DiscretizedLogisticMixture):
        assert not cls.has_rsample and not hasattr(cls, "rsample")


SCALAR_DISTRIBUTIONS = {
    "Normal": lambda: D.Normal(0.0, sigma=2.0),
    "StandardNormal": lambda: D.StandardNormal(),
    "Bernoulli": lambda: D.Bernoulli(logits=0.3),
    "Categorical": lambda: D.Categorical(t([0.0, 1.0, -1.0])),
    "MixtureOfGaussians": lambda: D.MixtureOfGaussians(t([0.0, 1.0]), t([[0.0], [2.0]]), t([[0.0], [-1.0]])),
    "DiscretizedLogistic": lambda: D.DiscretizedLogistic(0.2, -2.0),
    "DiscretizedLogisticMixture": lambda: D.DiscretizedLogisticMixture(t([0.0, 1.0]), t([-0.5, 0.5]),
                                                                       t([-2.0, -3.0])),
}


@pytest.mark.parametrize("name", SCALAR_DISTRIBUTIONS)
def test_single_draws_have_the_event_shape(name):
    """sample() with no shape from a distribution with an empty batch: shape event_shape
    (NumPy's 0-d results are scalars, which must come back as 0-d arrays)."""
    d = SCALAR_DISTRIBUTIONS[name]()
    x = d.sample(rng=np.random.default_rng(0))
    assert x.shape == d.batch_shape + d.event_shape == ((1,) if name == "MixtureOfGaussians" else ())
    assert d.sample((2, 3), rng=np.random.default_rng(0)).shape == (2, 3) + d.event_shape
    log_p = d.log_prob(x)
    assert log_p.shape == () and np.isfinite(log_p.item())


class ExtremeGenerator:
    """A stand-in Generator whose uniforms are all ``u`` (the extremes of Generator.random)."""

    def __init__(self, u):
        self.u = u

    def random(self, size=None):
        return np.full(size, self.u)

    def standard_normal(self, size=None):
        return np.zeros(size)


@pytest.mark.filterwarnings("error")             # a log(0) warns: make it fail
@pytest.mark.parametrize("u", [0.0, 1 - 2.0 ** -53])
def test_samplers_survive_the_extreme_uniform_draws(u):
    """u = 0 (which Generator.random can return) gives no log(0), and u = 1 - 2^-53 rounds to
    1.0 in float32 but must not turn a certain Bernoulli event into a 0."""
    rng = ExtremeGenerator(u)
    certain = D.Bernoulli(logits=t([1000.0, -1000.0], dtype="float32"))
    np.testing.assert_array_equal(certain.sample(3, rng=rng).numpy(), [[1.0, 0.0]] * 3)
    level = D.DiscretizedLogistic(t([0.0], dtype="float32"), t([0.0], dtype="float32")).sample(rng=rng).numpy()
    assert level[0] == (-1.0 if u == 0 else 1.0)                     # the far tails land in the edge bins
    k = D.Categorical(t([0.0, 1.0, 2.0])).sample(2, rng=rng).numpy()
    assert k.shape == (2,) and np.all((0 <= k) & (k < 3))
    x = D.MixtureOfGaussians(t([0.0, 1.0]), t([[0.0], [5.0]]), t([[0.0], [0.0]])).sample(rng=rng).numpy()
    assert np.all(np.isfinite(x))


def test_bernoulli_and_categorical_sample_frequencies(device):
    n = 40000
    rng = np.random.default_rng(21)
    logits = np.array([-2.0, 0.0, 1.5])
    x = D.Bernoulli(logits=t(logits, device)).sample((n,), rng=rng)
    assert x.shape == (n, 3) and x.device == device and set(np.unique(x.numpy())) <= {0.0, 1.0}
    p = scipy.special.expit(logits)
    assert_mc(x.numpy(), p)

    logits = rng.normal(size=(2, 5))
    k = D.Categorical(t(logits, device)).sample((n,), rng=rng)
    assert k.shape == (n, 2) and k.dtype == np.int64
    assert_frequencies(k.numpy(), scipy.special.softmax(logits, axis=-1))


def test_mixture_of_gaussians_sample_moments(device):
    n = 40000
    weights_logits, means = np.array([0.0, 1.0, -0.5]), np.array([[-2.0, 0.0], [1.0, 1.0], [0.0, -3.0]])
    log_scales = np.log([[0.5, 1.0], [0.3, 0.3], [1.0, 0.5]])
    m = D.MixtureOfGaussians(t(weights_logits, device), t(means, device), t(log_scales, device))
    x = m.sample((n,), rng=np.random.default_rng(22)).numpy()
    assert x.shape == (n, 2)
    assert_mc(x, m.mean.numpy())
    # variance: standard error of the sample variance from the sample's fourth central moment
    centred = x - x.mean(axis=0)
    assert_mc(centred ** 2, m.variance.numpy())


@pytest.mark.parametrize("n_bins", [8, 256])
def test_discretized_logistic_sample_frequencies(device, n_bins):
    n = 40000
    mu, log_scale = np.array([-0.9, 0.2]), np.array([-1.0, -2.0])
    d = D.DiscretizedLogistic(t(mu, device), t(log_scale, device), n_bins=n_bins)
    x = d.sample((n,), rng=np.random.default_rng(23)).numpy()
    centres, h = bin_edges(n_bins)
    assert x.shape == (n, 2)
    level = np.rint((x + 1) / (2 * h)).astype(int)
    np.testing.assert_allclose(x, centres[level], atol=1e-12)            # every draw is a level
    assert_frequencies(level, np.exp(d.bin_log_probs().numpy()))
    assert_mc(x, d.mean.numpy())


def test_discretized_logistic_mixture_sample_frequencies(device):
    n = 40000
    d = D.DiscretizedLogisticMixture(t([[0.0, 0.5, -1.0]], device), t([[-0.8, 0.1, 0.9]], device),
                                     t([[-1.5, -2.5, -1.0]], device), n_bins=8)
    x = d.sample((n,), rng=np.random.default_rng(24)).numpy()
    _, h = bin_edges(8)
    level = np.rint((x + 1) / (2 * h)).astype(int)
    assert x.shape == (n, 1)
    assert_frequencies(level, np.exp(d.bin_log_probs().numpy()))
    assert_mc(x, d.mean.numpy())


# ----------------------------------------------------------------------------- normalisation

def test_categorical_probabilities_sum_to_one():
    logits = np.random.default_rng(25).normal(size=(4, 7)) * 5
    c = D.Categorical(t(logits))
    total = scipy.special.logsumexp(c.log_prob(np.arange(7)[:, None]).numpy(), axis=0)
    np.testing.assert_allclose(total, 0, atol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
def test_discretized_logistic_probabilities_sum_to_one(device, dtype):
    mu = np.array([-1.5, -1.0, 0.0, 0.37, 1.0, 3.0, 0.0, 0.5])          # inside, on the edges, outside
    log_scale = np.array([-1.0, -3.0, -8.0, -20.0, 0.0, -2.0, 3.0, -30.0])  # from very tiny to very wide
    tolerance = 1e-12 if dtype == "float64" else 1e-6
    for n_bins in (2, 16, 256):
        d = D.DiscretizedLogistic(t(mu, device, dtype), t(log_scale, device, dtype), n_bins=n_bins)
        log_p = d.bin_log_probs()
        assert log_p.shape == (8, n_bins)
        np.testing.assert_allclose(td.logsumexp(log_p, axis=-1).numpy(), 0, atol=tolerance)
    rng = np.random.default_rng(26)
    m = D.DiscretizedLogisticMixture(t(rng.normal(size=(3, 4)), device, dtype),
                                     t(rng.normal(size=(3, 4)), device, dtype),
                                     t(rng.uniform(-6, 1, size=(3, 4)), device, dtype))
    np.testing.assert_allclose(td.logsumexp(m.bin_log_probs(), axis=-1).numpy(), 0, atol=tolerance)


def test_mixture_of_gaussians_integrates_to_one():
    rng = np.random.default_rng(27)
    m = D.MixtureOfGaussians(t(rng.normal(size=3)), t(rng.uniform(-1.5, 1.5, size=(3, 2))),
                             t(rng.uniform(-0.7, -0.2, size=(3, 2))))
    step = 0.05
    axis = np.arange(-7, 7 + step / 2, step)
    grid = np.stack(np.meshgrid(axis, axis, indexing="ij"), axis=-1)     # (281, 281, 2)
    density = np.exp(m.log_prob(t(grid)).numpy())
    assert abs(density.sum() * step ** 2 - 1) < 1e-3


# ----------------------------------------------------------------------------- entropy

def test_discretized_entropy_is_the_sum_over_levels():
    centres, _ = bin_edges(16)
    mu, log_scale = np.array([0.1, -0.95]), np.array([-1.0, -3.0])
    p = np.exp(ref_discretized_log_mass(centres, mu[:, None], np.exp(log_scale)[:, None], n_bins=16))
    d = D.DiscretizedLogistic(t(mu), t(log_scale), n_bins=16)
    np.testing.assert_allclose(d.entropy().numpy(), stats.entropy(p, axis=-1), rtol=1e-10)
    np.testing.assert_allclose(d.mean.numpy(), (p * centres).sum(-1), rtol=1e-10)
    variance = (p * centres ** 2).sum(-1) - (p * centres).sum(-1) ** 2
    np.testing.assert_allclose(d.variance.numpy(), variance, rtol=1e-9)
    # the mean of a logistic well inside the range is its location (the tails are symmetric)
    assert abs(D.DiscretizedLogistic(t([0.0]), t([-3.0])).mean.numpy()[0]) < 1e-12


def test_mixture_of_gaussians_has_no_closed_form_entropy():
    m = D.MixtureOfGaussians(t([0.0, 0.0]), t([[0.0], [1.0]]), t([[0.0], [0.0]]))
    with pytest.raises(NotImplementedError, match="no closed-form entropy"):
        m.entropy()


# ----------------------------------------------------------------------------- KL divergence

def test_kl_normal_normal_against_monte_carlo_and_formula(device):
    n = 40000
    mp, sp = np.array([0.0, 1.0, -0.5]), np.array([1.0, 0.5, 2.0])
    mq, sq = np.array([0.5, -1.0, -0.5]), np.array([1.5, 1.0, 1.0])
    p = D.Normal(t(mp, device), log_var=t(2 * np.log(sp), device))
    q = D.Normal(t(mq, device), sigma=t(sq, device))
    kl = D.kl_divergence(p, q).numpy()
    formula = np.log(sq / sp) + (sp ** 2 + (mp - mq) ** 2) / (2 * sq ** 2) - 0.5
    np.testing.assert_allclose(kl, formula, rtol=1e-12)
    z = p.sample((n,), rng=np.random.default_rng(28))
    assert_mc((p.log_prob(z) - q.log_prob(z)).numpy(), kl)
    np.testing.assert_allclose(D.kl_divergence(p, p).numpy(), 0, atol=1e-14)
    # against the prior: the VAE's 1/2 (mu^2 + sigma^2 - 1 - log sigma^2)
    prior = D.StandardNormal(3, dtype="float64", device=device)
    np.testing.assert_allclose(D.kl_divergence(p, prior).numpy(),
                               0.5 * (mp ** 2 + sp ** 2 - 1 - np.log(sp ** 2)), rtol=1e-12)


def test_kl_bernoulli_against_enumeration_and_monte_carlo(device):
    n = 40000
    lp, lq = np.array([-1.0, 0.3, 2.0, 0.0]), np.array([0.5, 0.3, -1.0, 4.0])
    p, q = D.Bernoulli(logits=t(lp, device)), D.Bernoulli(logits=t(lq, device))
    kl = D.kl_divergence(p, q).numpy()
    pp, pq = scipy.special.expit(lp), scipy.special.expit(lq)
    exact = stats.entropy(np.stack([pp, 1 - pp]), np.stack([pq, 1 - pq]), axis=0)
    np.testing.assert_allclose(kl, exact, rtol=1e-10, atol=1e-15)
    assert kl[1] == 0
    x = p.sample((n,), rng=np.random.default_rng(29))
    samples = (p.log_prob(x) - q.log_prob(x)).numpy()
    assert_mc(samples[:, [0, 2, 3]], kl[[0, 2, 3]])


def test_kl_categorical_against_enumeration_and_monte_carlo(device):
    n = 40000
    rng = np.random.default_rng(30)
    lp, lq = rng.normal(size=(2, 4)), rng.normal(size=(2, 4))
    p, q = D.Categorical(t(lp, device)), D.Categorical(t(lq, device))
    kl = D.kl_divergence(p, q).numpy()
    exact = stats.entropy(scipy.special.softmax(lp, -1), scipy.special.softmax(lq, -1), axis=-1)
    np.testing.assert_allclose(kl, exact, rtol=1e-10)
    k = p.sample((n,), rng=rng)
    assert_mc((p.log_prob(k) - q.log_prob(k)).numpy(), kl)
    np.testing.assert_allclose(D.kl_divergence(p, p).numpy(), 0, atol=1e-14)


def test_kl_unsupported_pairs_name_the_pair():
    n, b = D.Normal(0.0, 1.0), D.Bernoulli(logits=0.0)
    with pytest.raises(NotImplementedError, match=r"\(Normal, Bernoulli\)"):
        D.kl_divergence(n, b)
    m = D.MixtureOfGaussians(t([0.0]), t([[0.0]]), t([[0.0]]))
    with pytest.raises(NotImplementedError, match=r"\(MixtureOfGaussians, Normal\).*Monte Carlo"):
        D.kl_divergence(m, n)
    with pytest.raises(ValueError, match="3 and 4 classes"):
        D.kl_divergence(D.Categorical(t(np.zeros(3))), D.Categorical(t(np.zeros(4))))
    with pytest.raises(ValueError, match="kl_divergence: shapes do not broadcast"):
        D.kl_divergence(D.Normal(t(np.zeros(2)), 1.0), D.Normal(t(np.zeros(3)), 1.0))


# ----------------------------------------------------------------------------- stability

@pytest.mark.parametrize("dtype", DTYPES)
def test_bernoulli_is_stable_at_extreme_logits(dtype):
    logits = t([1000.0, -1000.0, 1000.0, -1000.0], dtype=dtype, requires_grad=True)
    b = D.Bernoulli(logits=logits)
    log_p = b.log_prob(t([1.0, 0.0, 0.0, 1.0], dtype=dtype))
    np.testing.assert_array_equal(log_p.numpy(), [0.0, 0.0, -1000.0, -1000.0])
    log_p.sum().backward()
    np.testing.assert_array_equal(logits.grad.numpy(), [0.0, 0.0, -1.0, 1.0])      # x - sigmoid(l)
    np.testing.assert_array_equal(b.entropy().numpy(), 0.0)
    np.testing.assert_array_equal(b.mean.numpy(), [1.0, 0.0, 1.0, 0.0])
    np.testing.assert_array_equal(b.variance.numpy(), 0.0)
    flipped = D.Bernoulli(logits=t([-1000.0, 1000.0, 0.0, 0.0], dtype=dtype))
    # KL(1 || sigmoid(-1000)) = 1000 and KL(1 || 1/2) = log 2, without cancellation in float32
    np.testing.assert_allclose(D.kl_divergence(b, flipped).numpy(), [1000.0, 1000.0, math.log(2), math.log(2)],
                               rtol=1e-6)
    np.testing.assert_array_equal(b.sample(5, rng=np.random.default_rng(0)).numpy()[:, :2], [[1.0, 0.0]] * 5)


@pytest.mark.parametrize("dtype", DTYPES)
def test_discretized_logistic_is_stable_at_tiny_scales(dtype):
    """Scales down to e^-30: every mass is finite, the bin holding the location has mass 1,
    and far bins match the exact log mass; gradients are finite."""
    centres, h = bin_edges(256)
    mu = centres[100] + 0.3 * h                            # inside bin 100, off its centre
    x = centres[[0, 99, 100, 101, 140, 255]]
    for log_scale in (-7.0, -15.0, -30.0):
        mu_t = t([mu], dtype=dtype, requires_grad=True)
        ls_t = t([log_scale], dtype=dtype, requires_grad=True)
        log_p = D.DiscretizedLogistic(mu_t, ls_t).log_prob(t(x, dtype=dtype))
        values = log_p.numpy()
        assert np.all(np.isfinite(values)) and np.all(values <= 0)
        if log_scale <= -15:
            assert values[2] > -1e-6                       # all the mass in the location's bin
        reference = ref_discretized_log_mass(x, float(np.float32(mu)) if dtype == "float32" else mu,
                                             math.exp(log_scale))
        np.testing.assert_allclose(values, reference, rtol=1e-9 if dtype == "float64" else 1e-5, atol=1e-6)
        log_p.sum().backward()
        assert np.all(np.isfinite(mu_t.grad.numpy())) and np.all(np.isfinite(ls_t.grad.numpy()))


def test_discretized_logistic_is_stable_at_wide_scales():
    d = D.DiscretizedLogistic(t([0.0]), t([12.0]))         # nearly uniform over the real line
    centres, _ = bin_edges(256)
    values = d.log_prob(t(centres[:, None])).numpy()[:, 0]
    np.testing.assert_allclose(values, ref_discretized_log_mass(centres, 0.0, math.exp(12.0)), rtol=1e-9)
    np.testing.assert_allclose(values[[0, -1]], math.log(0.5), rtol=1e-5)   # nearly the two half-lines


# ----------------------------------------------------------------------------- errors

def test_normal_errors():
    with pytest.raises(ValueError, match=r"exactly one of sigma, log_var, log_scale \(got log_var, sigma\)"):
        D.Normal(0.0, sigma=1.0, log_var=0.0)
    with pytest.raises(ValueError, match=r"exactly one of sigma, log_var, log_scale \(got none\)"):
        D.Normal(0.0)
    with pytest.raises(ValueError, match="sigma must be positive, got a minimum of -0.5"):
        D.Normal(t([0.0, 0.0]), sigma=t([1.0, -0.5]))
    with pytest.raises(ValueError, match=r"Normal: shapes do not broadcast: mu \(3,\), sigma \(4,\)"):
        D.Normal(t(np.zeros(3)), sigma=t(np.ones(4)))
    with pytest.raises(ValueError, match=r"Normal.log_prob: shapes do not broadcast: x \(5,\), "
                                         r"batch_shape \(3,\)"):
        D.Normal(t(np.zeros(3)), log_scale=0.0).log_prob(np.zeros(5))
    with pytest.raises(TypeError, match="Normal: mu must be a floating tensor, got dtype int64"):
        D.Normal(td.tensor(np.arange(3)), sigma=1.0)


def test_categorical_errors():
    c = D.Categorical(t(np.zeros((2, 3))))
    with pytest.raises(TypeError, match="values must be integer class indices, got dtype float64"):
        c.log_prob(t([0.0, 1.0]))
    with pytest.raises(TypeError, match="values must be integer class indices"):
        c.log_prob([0.5, 1.0])
    with pytest.raises(ValueError, match=r"class indices must lie in \[0, 3\), got values in \[0, 3\]"):
        c.log_prob(np.array([0, 3]))
    with pytest.raises(ValueError, match=r"Categorical.log_prob: shapes do not broadcast: x \(3,\), "
                                         r"batch_shape \(2,\)"):
        c.log_prob(np.array([0, 1, 2]))
    with pytest.raises(ValueError, match=r"logits must have shape \(..., K\) with K >= 1, got \(\)"):
        D.Categorical(0.0)


def test_other_errors():
    with pytest.raises(ValueError, match="exactly one of logits, probs"):
        D.Bernoulli(logits=0.0, probs=0.5)
    with pytest.raises(ValueError, match="exactly one of logits, probs"):
        D.Bernoulli()
    with pytest.raises(ValueError, match="probs must lie strictly between 0 and 1"):
        D.Bernoulli(probs=t([0.5, 1.0]))
    with pytest.raises(ValueError, match="weights_logits has 2 components .* means/log_scales have 3"):
        D.MixtureOfGaussians(t(np.zeros(2)), t(np.zeros((3, 2))), t(np.zeros((3, 2))))
    with pytest.raises(ValueError, match=r"means and log_scales must have shape \(..., K, D\)"):
        D.MixtureOfGaussians(t(np.zeros(3)), t(np.zeros(3)), t(np.zeros(3)))
    m = D.MixtureOfGaussians(t(np.zeros(3)), t(np.zeros((3, 2))), t(np.zeros((3, 2))))
    with pytest.raises(ValueError, match=r"x must have shape \(..., 2\), got \(4, 3\)"):
        m.log_prob(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="n_bins must be an integer >= 2, got 1"):
        D.DiscretizedLogistic(0.0, 0.0, n_bins=1)
    with pytest.raises(ValueError, match="need finite low < high, got low=1, high=-1"):
        D.DiscretizedLogistic(0.0, 0.0, low=1, high=-1)
    with pytest.raises(ValueError, match="DiscretizedLogisticMixture: shapes do not broadcast"):
        D.DiscretizedLogisticMixture(t(np.zeros(3)), t(np.zeros(2)), t(np.zeros(3)))
