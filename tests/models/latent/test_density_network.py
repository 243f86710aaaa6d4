"""The density network's Monte Carlo estimate of log p(x) against exact values: the
linear-Gaussian case in closed form (the estimate is below log p on average and converges
as S grows; the estimate of p(x) is unbiased with the exact relative variance rho / S;
the variance grows with the latent dimension) and a non-linear Bernoulli network with
one latent dimension by Gauss-Hermite quadrature (estimate, samples, training); gradient
checks with the noise held fixed; bad input."""
import math

import numpy as np
import pytest
from contracts import all_binary, chi_square_pvalue
from scipy import stats

import tinydgm as td
from latent_helpers import with_parameter_values
from tinydgm.models.latent import density_network as dn
from tinydgm.models.latent.density_network import (DensityNetwork, estimator_variance, linear_density_network,
                                                   prior_sampling_relative_variance, variance_by_latent_dim)


def _t(a, requires_grad=False):
    return td.tensor(np.asarray(a, dtype=np.float64), dtype="float64", requires_grad=requires_grad)


def _linear_model(seed=0, n_latent=2, n_features=3, sigma=0.6):
    """A random linear-Gaussian density network: p(x) = N(b, W W^T + sigma^2 I)."""
    model = DensityNetwork(n_latent, n_features, hidden_sizes=(), likelihood="gaussian", sigma=sigma,
                           rng=td.rng(seed), dtype="float64")
    rng = np.random.default_rng(seed + 1)
    model.f[0].weight.data = rng.standard_normal((n_latent, n_features))
    model.f[0].bias.data = rng.standard_normal(n_features)
    return model


def _quadrature_log_prob(model, x, n_nodes=80):
    """log p(x) = log E_{z ~ N(0,1)}[p(x | f(z))] by Gauss-Hermite quadrature (K = 1)."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(n_nodes)
    with td.no_grad():
        log_px_z = model.log_px_z(_t(x), _t(nodes[:, None])).numpy()          # (n_nodes, N)
    log_w = np.log(weights / math.sqrt(2 * math.pi))[:, None]
    return np.logaddexp.reduce(log_w + log_px_z, axis=0)


def _bernoulli_model(seed=0, n_features=3):
    return DensityNetwork(1, n_features, hidden_sizes=(6,), likelihood="bernoulli", rng=td.rng(seed),
                          dtype="float64")


# ----------------------------------------------------------------------------- against exact values

def test_linear_gaussian_exact_log_prob_is_the_dense_marginal():
    model = _linear_model()
    x = np.random.default_rng(0).standard_normal((5, 3))
    W, b = model.f[0].weight.numpy().T, model.f[0].bias.numpy()
    expected = stats.multivariate_normal(b, W @ W.T + 0.36 * np.eye(3)).logpdf(x)
    np.testing.assert_allclose(model.exact_log_prob(x).numpy(), expected, rtol=1e-10)


def test_estimate_is_below_log_p_on_average_and_converges_as_s_grows():
    model = _linear_model(seed=2)
    x = model.sample(3, rng=td.rng(3))                                   # typical points of the model
    exact = model.exact_log_prob(x).numpy()
    errors, ses = [], []
    for S in (1, 10, 100, 1000):
        variance, mean = estimator_variance(model, x, S, n_repeats=200, rng=td.rng(S))
        errors.append(mean - exact)
        ses.append(np.sqrt(variance / 200))
    errors, ses = np.array(errors), np.array(ses)
    # below log p(x) (Jensen), by more than the Monte Carlo error at small S
    assert (errors[:2] + 3 * ses[:2] < 0).all(), errors
    assert (errors < 3 * ses).all()
    # the bias shrinks as S grows, and at S = 1000 the estimate is close to log p(x)
    assert (np.abs(errors[1:]) < np.abs(errors[:-1]) + 3 * ses[1:]).all()
    assert (np.abs(errors[-1]) < 0.05).all() and (np.abs(errors[0]) > 0.3).all()


def test_estimate_of_p_is_unbiased_with_the_exact_relative_variance():
    # p^(x) / p(x) = mean of S weights / p(x): mean 1, variance rho / S, rho in closed form
    model = _linear_model(seed=4, n_latent=2, n_features=2, sigma=0.8)
    x = _t([[0.5, -1.0]])
    S, repeats = 10, 20000
    z = _t(np.random.default_rng(5).standard_normal((S * repeats, 2)))
    with td.no_grad():
        log_w = model.log_px_z(x, z).numpy()[:, 0].reshape(repeats, S)
    ratio = np.exp(np.logaddexp.reduce(log_w, axis=1) - math.log(S) - model.exact_log_prob(x).numpy()[0])
    layer = model.f[0]
    rho = prior_sampling_relative_variance(layer.weight.T, layer.bias, 0.8, x)[0]
    assert abs(ratio.mean() - 1) < 4 * math.sqrt(rho / S / repeats)
    assert ratio.var() == pytest.approx(rho / S, rel=0.1)


def test_log_prob_estimate_is_the_log_mean_exp_of_the_prior_draws():
    model = _bernoulli_model(seed=6)
    x = _t(all_binary(3))
    z = _t(td.rng(9).standard_normal((50, 1)))                 # the draws log_prob_estimate makes
    with td.no_grad():
        expected = np.logaddexp.reduce(model.log_px_z(x, z).numpy(), axis=0) - math.log(50)
        np.testing.assert_allclose(model.log_prob_estimate(x, 50, rng=td.rng(9)).numpy(), expected, rtol=1e-12)


def test_chunked_evaluation_equals_one_pass(monkeypatch):
    model = _bernoulli_model(seed=7)
    x = _t(all_binary(3))
    whole = model.log_prob_estimate(x, 100, rng=td.rng(1)).numpy()
    monkeypatch.setattr(dn, "_CHUNK_ELEMENTS", 8 * 3 * 7)             # 7 draws per chunk
    np.testing.assert_allclose(model.log_prob_estimate(x, 100, rng=td.rng(1)).numpy(), whole, rtol=1e-12)


def test_nonlinear_bernoulli_estimate_matches_quadrature():
    model = _bernoulli_model(seed=8)
    x = all_binary(3)
    exact = _quadrature_log_prob(model, x)
    assert np.exp(exact).sum() == pytest.approx(1.0, abs=1e-10)       # the quadrature is a distribution
    S = 20000
    z = _t(td.rng(3).standard_normal((S, 1)))
    with td.no_grad():
        w = np.exp(model.log_px_z(_t(x), z).numpy() - exact)            # weights / p(x)
        estimate = model.log_prob_estimate(x, S, rng=td.rng(3)).numpy()
    se = w.std(axis=0) / math.sqrt(S)                                   # sd of p^ / p
    assert (np.abs(estimate - exact) < 4 * se + 1e-12).all()


# ----------------------------------------------------------------------------- the variance study

def test_estimator_variance_grows_with_the_latent_dimension_as_the_exact_rho_says():
    rows = variance_by_latent_dim(dims=(1, 2, 3), n_samples=200, n_repeats=400, seed=0)
    variances = np.array([r["variance"] for r in rows])
    rhos = np.array([r["rho"] for r in rows])
    # rho(x) = r^K - 1 at a point that is the same in every coordinate
    r = rhos[0] + 1
    np.testing.assert_allclose(rhos, r ** np.array([1, 2, 3]) - 1, rtol=1e-10)
    assert (np.diff(variances) > 0).all() and (variances[1:] / variances[:-1] > 2).all(), variances
    # delta method: Var[log p^] ~ rho / S while rho / S is small
    np.testing.assert_allclose(variances, rhos / 200, rtol=0.3)
    for row in rows:
        assert row["exact_log_prob"] == pytest.approx(
            stats.multivariate_normal(np.zeros(row["dim"]), 1.25 * np.eye(row["dim"])).logpdf(
                np.full(row["dim"], math.sqrt(1.25))), rel=1e-12)


def test_linear_density_network_is_the_stated_model():
    model = linear_density_network(3, weight_scale=2.0, sigma=0.5)
    x = np.random.default_rng(0).standard_normal((4, 3))
    np.testing.assert_allclose(model.exact_log_prob(x).numpy(),
                               stats.multivariate_normal(np.zeros(3), 4.25 * np.eye(3)).logpdf(x), rtol=1e-12)


# ----------------------------------------------------------------------------- samples and training

def test_bernoulli_samples_follow_the_exact_marginal():
    model = _bernoulli_model(seed=10)
    samples = model.sample(4000, rng=td.rng(0))
    assert isinstance(samples, td.Tensor) and samples.shape == (4000, 3) and not samples.requires_grad
    assert set(np.unique(samples.numpy())) <= {0.0, 1.0}
    assert chi_square_pvalue(samples.numpy(), _quadrature_log_prob(model, all_binary(3))) > 1e-3


def test_gaussian_samples_have_the_linear_model_moments():
    model = _linear_model(seed=11)
    n = 40000
    x = model.sample(n, rng=td.rng(0)).numpy()
    W, b = model.f[0].weight.numpy().T, model.f[0].bias.numpy()
    C = W @ W.T + 0.36 * np.eye(3)
    assert (np.abs(x.mean(axis=0) - b) < 5 * np.sqrt(np.diag(C) / n)).all()
    assert (np.abs(np.cov(x.T) - C) < 5 * np.sqrt((C ** 2 + np.outer(np.diag(C), np.diag(C))) / n)).all()


def test_training_on_the_estimate_raises_the_exact_log_likelihood():
    rng = np.random.default_rng(12)
    # two prototypes with flipped bits: a one-dimensional latent explains them
    prototypes = np.array([[1, 1, 0, 0], [0, 0, 1, 1]], dtype=float)
    x = prototypes[rng.integers(0, 2, 64)]
    x = np.abs(x - (rng.random(x.shape) < 0.1))
    model = DensityNetwork(1, 4, hidden_sizes=(8,), likelihood="bernoulli", n_samples=32, rng=td.rng(0),
                           dtype="float64")
    before = _quadrature_log_prob(model, x).mean()
    td.train.fit(model, x, td.optim.Adam(model.parameters(), lr=0.03), epochs=40, batch_size=32, seed=0,
                 progress=False)
    after = _quadrature_log_prob(model, x).mean()
    assert after > before + 0.5, (before, after)


# ----------------------------------------------------------------------------- gradients

@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_gradcheck_estimate_and_loss_with_the_noise_held_fixed(likelihood):
    model = DensityNetwork(2, 3, hidden_sizes=(4,), likelihood=likelihood, n_samples=5, rng=td.rng(1),
                           dtype="float64")
    data = all_binary(3)[:4] if likelihood == "bernoulli" else np.random.default_rng(2).standard_normal((4, 3))
    x = _t(data)
    params = [_t(p.numpy(), requires_grad=True) for p in model.parameters()]
    assert len(params) == (5 if likelihood == "gaussian" else 4)          # the learned log_sigma too

    def estimate(*ps):
        return with_parameter_values(model, ps, lambda: model.log_prob_estimate(x, 5, rng=td.rng(0)))

    def loss(*ps):
        model.rng = td.rng(0)                                           # the same draws every call
        return with_parameter_values(model, ps, lambda: model.loss(x))

    for fn in (estimate, loss):
        td.gradcheck(fn, params)
        td.gradgradcheck(fn, params)


def test_gradcheck_estimate_wrt_gaussian_data():
    model = _linear_model(seed=13)
    x = _t(np.random.default_rng(0).standard_normal((2, 3)), requires_grad=True)
    td.gradcheck(lambda x: model.log_prob_estimate(x, 6, rng=td.rng(0)), [x])
    td.gradgradcheck(lambda x: model.log_prob_estimate(x, 6, rng=td.rng(0)), [x])


# ----------------------------------------------------------------------------- bad input

def test_bad_input_is_rejected_and_changes_nothing():
    model = _bernoulli_model(seed=14)
    before = model.state_dict()
    x = all_binary(3)
    with pytest.raises(ValueError, match=r"shape \(N, D\) = \(N, 3\), got \(8, 4\)"):
        model.log_prob_estimate(np.zeros((8, 4)))
    with pytest.raises(ValueError, match="binary data"):
        model.log_prob_estimate(x * 0.5)
    with pytest.raises(ValueError, match="binary data"):
        model.loss(x + 1)
    nan_batch = x.copy()
    nan_batch[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        model.loss(nan_batch)
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="n_samples must be a positive int"):
            model.log_prob_estimate(x, bad)
    with pytest.raises(ValueError, match="non-negative int"):
        model.sample(-1)
    with pytest.raises(ValueError, match="linear Gaussian"):
        model.exact_log_prob(x)
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[name])
    with pytest.raises(ValueError, match='"bernoulli" or "gaussian"'):
        DensityNetwork(1, 3, likelihood="poisson")
    with pytest.raises(ValueError, match="sigma"):
        DensityNetwork(1, 3, likelihood="bernoulli", sigma=1.0)
    with pytest.raises(ValueError, match="sigma"):
        DensityNetwork(1, 3, likelihood="gaussian", sigma=-1.0)
    with pytest.raises(ValueError, match="n_latent must be a positive int"):
        DensityNetwork(0, 3)
    with pytest.raises(ValueError, match="n_repeats"):
        estimator_variance(model, x, 5, n_repeats=0)
