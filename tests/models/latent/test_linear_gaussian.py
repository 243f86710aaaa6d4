"""Factor analysis and PPCA: the Woodbury log-density against the dense Gaussian marginal,
the closed-form PPCA solution as a stationary point that EM reaches, FA against
scikit-learn, the exact posterior against Bayes' rule, samples against the model's
moments, gradient checks, and bad input."""
import functools
import math

import numpy as np
import pytest
from scipy import stats

import tinydgm as td
from latent_helpers import with_parameter_values
from tinydgm.models.latent.linear_gaussian import FactorAnalysis, PPCA, fit_toy_3d, linear_gaussian_log_prob


def _t(a, requires_grad=False):
    return td.tensor(np.asarray(a, dtype=np.float64), dtype="float64", requires_grad=requires_grad)


def _dense_log_prob(x, W, b, psi):
    """log N(x | b, W W^T + diag(psi)) from the dense D x D covariance (scipy)."""
    return stats.multivariate_normal(b, W @ W.T + np.diag(psi)).logpdf(x)


def _low_rank_data(n, d, k, noise, seed):
    """x = z A + c + noise: a k-dimensional signal with a well-separated spectrum."""
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((k, d)) * np.linspace(3.0, 1.5, k)[:, None]
    return rng.standard_normal((n, k)) @ A + rng.standard_normal(d) + noise * rng.standard_normal((n, d))


def _random_model(cls, d, k, seed):
    model = cls(d, k, rng=np.random.default_rng(seed), dtype="float64")
    rng = np.random.default_rng(seed + 100)
    model.b.data = rng.standard_normal(d)
    if cls is FactorAnalysis:
        model.log_psi.data = rng.normal(-0.5, 0.5, d)
    else:
        model.log_sigma2.data = np.array([-0.7])
    return model


# ----------------------------------------------------------------------------- the log-density

@pytest.mark.parametrize("d,k", [(5, 1), (5, 3), (4, 7)])
def test_woodbury_log_prob_equals_the_dense_gaussian_marginal(d, k):
    rng = np.random.default_rng(d * 10 + k)
    W, b, psi = rng.standard_normal((d, k)), rng.standard_normal(d), rng.uniform(0.1, 2.0, d)
    x = 2 * rng.standard_normal((20, d))
    log_p = linear_gaussian_log_prob(_t(x), _t(W), _t(b), _t(psi)).numpy()
    np.testing.assert_allclose(log_p, _dense_log_prob(x, W, b, psi), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("cls", [FactorAnalysis, PPCA])
def test_model_log_prob_and_bits_per_dim_equal_the_dense_marginal(cls):
    model = _random_model(cls, 6, 2, seed=3)
    x = np.random.default_rng(0).standard_normal((15, 6))
    expected = _dense_log_prob(x, model.W.numpy(), model.b.numpy(), model.psi.numpy())
    np.testing.assert_allclose(model.log_prob(x).numpy(), expected, rtol=1e-10)
    np.testing.assert_allclose(model.bits_per_dim(x).numpy(), -expected / (6 * math.log(2)), rtol=1e-10)
    np.testing.assert_allclose(model.loss(x).item(), -expected.mean(), rtol=1e-10)
    np.testing.assert_allclose(model.marginal_covariance(),
                               model.W.numpy() @ model.W.numpy().T + np.diag(model.psi.numpy()))


def test_ppca_psi_is_isotropic():
    model = _random_model(PPCA, 4, 2, seed=0)
    np.testing.assert_allclose(model.psi.numpy(), np.full(4, np.exp(-0.7)))


# ----------------------------------------------------------------------------- PPCA fits

def test_ppca_closed_form_is_the_eigendecomposition_and_a_stationary_point():
    x = _low_rank_data(400, 6, 2, 0.5, seed=1)
    model = PPCA(6, 2, dtype="float64").fit(x)
    S = np.cov(x.T, bias=True)
    lam = np.linalg.eigvalsh(S)[::-1]
    sigma2 = lam[2:].mean()
    np.testing.assert_allclose(model.sigma2.numpy(), [sigma2], rtol=1e-10)
    np.testing.assert_allclose(model.b.numpy(), x.mean(axis=0), rtol=1e-10)
    # W W^T + sigma^2 I shares S's top-2 eigenvectors and eigenvalues (Tipping & Bishop eq. 7-8)
    C = model.marginal_covariance()
    np.testing.assert_allclose(np.linalg.eigvalsh(C)[::-1], np.r_[lam[:2], np.full(4, sigma2)], rtol=1e-9)
    # maximum likelihood: the gradient of the mean log-likelihood vanishes there
    model.loss(x).backward()
    for name, p in model.named_parameters():
        assert np.abs(p.grad.numpy()).max() < 1e-8, name
    # and its value is the closed-form log-likelihood -1/2 (D log 2 pi + log|C| + tr(C^-1 S))
    expected = -0.5 * (6 * math.log(2 * math.pi) + np.linalg.slogdet(C)[1] + np.trace(np.linalg.solve(C, S)))
    assert model.log_likelihood_history == pytest.approx([expected], rel=1e-12)
    assert model.log_prob(x).numpy().mean() == pytest.approx(expected, rel=1e-12)


def test_ppca_em_is_monotone_and_reaches_the_closed_form_log_likelihood():
    x = _low_rank_data(300, 5, 2, 1.0, seed=2)      # EM is slow when sigma^2 << the kept eigenvalues
    closed = PPCA(5, 2, dtype="float64").fit(x)
    em = PPCA(5, 2, rng=np.random.default_rng(7), dtype="float64").fit(x, method="em", tol=1e-13)
    history = np.array(em.log_likelihood_history)
    assert len(history) > 5
    assert (np.diff(history) >= -1e-12).all(), "EM decreased the log-likelihood"
    assert history[0] < closed.log_likelihood_history[0] - 0.1
    assert history[-1] == pytest.approx(closed.log_likelihood_history[0], abs=1e-9)
    # the same model up to the rotation R: equal marginal covariances
    np.testing.assert_allclose(em.marginal_covariance(), closed.marginal_covariance(), atol=1e-3)


def test_ppca_closed_form_needs_fewer_latents_than_features():
    model = PPCA(3, 3, dtype="float64")
    before = model.state_dict()
    with pytest.raises(ValueError, match="n_latent < n_features"):
        model.fit(np.random.default_rng(0).standard_normal((10, 3)))
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[name])


# ----------------------------------------------------------------------------- factor analysis fits

@functools.lru_cache(maxsize=1)
def _fitted_factor_analysis():
    """FA fitted by EM to data with a different noise level per variable (shared by tests)."""
    x = _low_rank_data(300, 5, 2, 0.3, seed=4) * np.array([1.0, 3.0, 0.5, 1.0, 2.0])
    return x, FactorAnalysis(5, 2, rng=np.random.default_rng(0), dtype="float64").fit(x, n_iter=3000, tol=1e-12)


def test_factor_analysis_em_is_monotone_and_stationary():
    x, model = _fitted_factor_analysis()
    history = np.array(model.log_likelihood_history)
    assert (np.diff(history) >= -1e-12).all(), "EM decreased the log-likelihood"
    assert history[-1] > history[0] + 1.0
    model.loss(x).backward()
    for name, p in model.named_parameters():
        assert np.abs(p.grad.numpy()).max() < 1e-4, name


def test_factor_analysis_matches_scikit_learn():
    decomposition = pytest.importorskip("sklearn.decomposition")
    x, model = _fitted_factor_analysis()
    reference = decomposition.FactorAnalysis(2).fit(x)            # its default tolerance: a few seconds less
    # our EM (run much longer) climbs at least as high as scikit-learn's fit, and to about the same maximum ...
    assert reference.score(x) - 1e-9 <= model.log_prob(x).numpy().mean() <= reference.score(x) + 1e-2
    # ... and the same log-density on the same parameters (W = components_^T)
    reference.components_ = model.W.numpy().T
    reference.noise_variance_ = model.psi.numpy()
    reference.mean_ = model.b.numpy()
    np.testing.assert_allclose(model.log_prob(x).numpy(), reference.score_samples(x), rtol=1e-10)


def test_the_toy_panel_fa_recovers_the_noise_that_ppca_averages():
    toy = fit_toy_3d(n=2000, seed=0)
    fa, ppca = toy["fa"], toy["ppca"]
    np.testing.assert_allclose(fa.psi.numpy(), toy["true_psi"], rtol=0.3, atol=0.03)
    # FA contains PPCA (psi all equal), so its maximum likelihood is at least PPCA's
    assert fa.log_prob(toy["x"]).numpy().mean() >= ppca.log_prob(toy["x"]).numpy().mean()
    direction = fa.W.numpy()[:, 0] / np.linalg.norm(fa.W.numpy())
    true_direction = toy["true_W"][:, 0] / np.linalg.norm(toy["true_W"])
    assert abs(direction @ true_direction) > 0.99


# ----------------------------------------------------------------------------- posterior and samples

@pytest.mark.parametrize("cls", [FactorAnalysis, PPCA])
def test_posterior_is_bayes_rule(cls):
    model = _random_model(cls, 5, 3, seed=8)
    W, b, psi = model.W.numpy(), model.b.numpy(), model.psi.numpy()
    x = np.random.default_rng(1).standard_normal((4, 5))
    mean, cov = model.posterior(x)
    # conditioning the joint Gaussian (z, x): cov(z, x) = W^T, cov(x) = C
    C = W @ W.T + np.diag(psi)
    np.testing.assert_allclose(mean.numpy(), (x - b) @ np.linalg.solve(C, W), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(cov.numpy(), np.eye(3) - W.T @ np.linalg.solve(C, W), rtol=1e-9, atol=1e-12)
    # Bayes' rule at an arbitrary z: log p(z|x) = log p(x|z) + log p(z) - log p(x)
    z = np.random.default_rng(2).standard_normal(3)
    log_p_x = model.log_prob(x).numpy()
    for n in range(4):
        log_joint = (stats.multivariate_normal(W @ z + b, np.diag(psi)).logpdf(x[n])
                     + stats.multivariate_normal(np.zeros(3), np.eye(3)).logpdf(z))
        log_posterior = stats.multivariate_normal(mean.numpy()[n], cov.numpy()).logpdf(z)
        assert log_posterior == pytest.approx(log_joint - log_p_x[n], rel=1e-9)


@pytest.mark.parametrize("cls", [FactorAnalysis, PPCA])
def test_samples_have_the_model_mean_and_covariance(cls):
    model = _random_model(cls, 4, 2, seed=9)
    n = 40000
    x = model.sample(n, rng=np.random.default_rng(0))
    assert isinstance(x, td.Tensor) and x.shape == (n, 4) and not x.requires_grad
    x = x.numpy()
    C = model.marginal_covariance()
    se_mean = np.sqrt(np.diag(C) / n)
    assert (np.abs(x.mean(axis=0) - model.b.numpy()) < 5 * se_mean).all()
    se_cov = np.sqrt((C ** 2 + np.outer(np.diag(C), np.diag(C))) / n)      # sd of a Gaussian sample covariance
    assert (np.abs(np.cov(x.T) - C) < 5 * se_cov).all()
    # the same generator state gives the same draws
    np.testing.assert_array_equal(model.sample(3, rng=np.random.default_rng(1)).numpy(),
                                  model.sample(3, rng=np.random.default_rng(1)).numpy())


# ----------------------------------------------------------------------------- gradients

@pytest.mark.parametrize("cls", [FactorAnalysis, PPCA])
def test_gradcheck_log_prob_and_loss_wrt_parameters_and_x(cls):
    model = _random_model(cls, 4, 3, seed=10)
    x = _t(np.random.default_rng(3).standard_normal((3, 4)), requires_grad=True)
    params = [_t(p.numpy(), requires_grad=True) for p in model.parameters()]
    td.gradcheck(lambda x, *ps: with_parameter_values(model, ps, lambda: model.log_prob(x)), [x] + params)
    td.gradgradcheck(lambda x, *ps: with_parameter_values(model, ps, lambda: model.log_prob(x)), [x] + params)
    td.gradcheck(lambda *ps: with_parameter_values(model, ps, lambda: model.loss(x.detach())), params)
    td.gradgradcheck(lambda *ps: with_parameter_values(model, ps, lambda: model.loss(x.detach())), params)


def test_gradcheck_the_woodbury_function_with_latents_beyond_features():
    rng = np.random.default_rng(4)
    W, b, psi = (_t(a, True) for a in (rng.standard_normal((2, 3)), rng.standard_normal(2), rng.uniform(0.5, 1, 2)))
    x = _t(rng.standard_normal((3, 2)), True)
    td.gradcheck(linear_gaussian_log_prob, [x, W, b, psi])
    td.gradgradcheck(linear_gaussian_log_prob, [x, W, b, psi])


def test_gradient_training_of_ppca_approaches_the_closed_form():
    x = _low_rank_data(200, 4, 1, 0.5, seed=6)
    target = PPCA(4, 1, dtype="float64").fit(x).log_likelihood_history[0]
    model = PPCA(4, 1, rng=np.random.default_rng(0), dtype="float64")
    optimizer = td.optim.Adam(model.parameters(), lr=0.2)
    start = -model.loss(x).item()
    for _ in range(600):
        optimizer.zero_grad()
        loss = model.loss(x)
        loss.backward()
        optimizer.step()
    assert start < target - 1.0
    assert -model.loss(x).item() == pytest.approx(target, abs=5e-3)


# ----------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("cls", [FactorAnalysis, PPCA])
def test_bad_input_is_rejected_and_changes_nothing(cls):
    model = _random_model(cls, 3, 1, seed=11)
    before = model.state_dict()
    good = np.random.default_rng(0).standard_normal((10, 3))
    nan_batch = good.copy()
    nan_batch[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"shape \(N, D\) = \(N, 3\), got \(10, 4\)"):
        model.log_prob(np.zeros((10, 4)))
    with pytest.raises(ValueError, match="got \\(3,\\)"):
        model.log_prob(np.zeros(3))
    with pytest.raises(ValueError, match="NaN"):
        model.log_prob(nan_batch)
    with pytest.raises(ValueError, match="NaN"):
        model.fit(nan_batch)
    with pytest.raises(ValueError, match="at least 2 examples"):
        model.fit(good[:1])
    with pytest.raises(ValueError, match="n_iter"):
        model.fit(good, n_iter=0)
    with pytest.raises(ValueError, match="non-negative int"):
        model.sample(-1)
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[name])
    for bad in (0, -2, 1.5, True):
        with pytest.raises(ValueError, match="n_latent must be a positive int"):
            cls(3, bad)
    with pytest.raises(ValueError, match="n_features must be a positive int"):
        cls(0, 1)


def test_ppca_rejects_an_unknown_method():
    with pytest.raises(ValueError, match='"closed_form" or "em"'):
        PPCA(3, 1).fit(np.zeros((5, 3)), method="svd")


def test_repr_is_short():
    assert repr(PPCA(784, 20)).count("\n") < 3 and len(repr(PPCA(784, 20))) < 200
