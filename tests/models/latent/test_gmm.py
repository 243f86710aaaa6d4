"""The Gaussian mixture: log p(x) against the dense mixture density (scipy) and
scikit-learn on the same parameters, EM's monotone log-likelihood, responsibilities by
Bayes' rule, samples against the mixture's moments, gradient checks, and bad input."""
import math

import numpy as np
import pytest
from scipy import stats

import tinydgm as td
from latent_helpers import with_parameter_values
from tinydgm.models.latent.gmm import GaussianMixture, full_component_log_prob

COVARIANCES = ["full", "diag"]


def _t(a, requires_grad=False):
    return td.tensor(np.asarray(a, dtype=np.float64), dtype="float64", requires_grad=requires_grad)


def _blobs(n=400, seed=0):
    """Three well-separated, differently shaped 2-D clusters."""
    rng = np.random.default_rng(seed)
    sizes = [n // 2, n // 3, n - n // 2 - n // 3]
    shapes = [np.array([[1.0, 0.0], [0.8, 0.5]]), np.array([[0.4, 0.0], [0.0, 0.4]]),
              np.array([[0.3, 0.6], [0.0, 0.4]])]
    centres = [np.array([3.0, 0.0]), np.array([-3.0, 1.0]), np.array([0.0, -3.0])]
    return np.concatenate([rng.standard_normal((m, 2)) @ A + c for m, A, c in zip(sizes, shapes, centres)])


def _random_mixture(covariance, k=3, d=2, seed=0):
    """A mixture with random weights, means and covariances (set through EM's own path)."""
    rng = np.random.default_rng(seed)
    model = GaussianMixture(k, d, covariance, rng=rng, dtype="float64")
    A = rng.standard_normal((k, d, d))
    covariances = A @ A.transpose(0, 2, 1) + 0.3 * np.eye(d)
    if covariance == "diag":
        covariances = covariances * np.eye(d)
    model._set(np.log(rng.dirichlet(np.ones(k))), 2 * rng.standard_normal((k, d)), covariances)
    return model


def _dense_log_prob(model, x):
    pi = model.weights.numpy()
    densities = [stats.multivariate_normal(m, c).pdf(x) for m, c in zip(model.means.numpy(), model.covariances())]
    return np.log(sum(p * q for p, q in zip(pi, densities)))


# ----------------------------------------------------------------------------- the density

@pytest.mark.parametrize("covariance", COVARIANCES)
def test_log_prob_equals_the_dense_mixture_density(covariance):
    model = _random_mixture(covariance, k=3, d=3, seed=1)
    x = 2 * np.random.default_rng(2).standard_normal((25, 3))
    np.testing.assert_allclose(model.log_prob(x).numpy(), _dense_log_prob(model, x), rtol=1e-10)
    np.testing.assert_allclose(model.bits_per_dim(x).numpy(), -_dense_log_prob(model, x) / (3 * math.log(2)),
                               rtol=1e-10)
    np.testing.assert_allclose(model.loss(x).item(), -_dense_log_prob(model, x).mean(), rtol=1e-10)
    component = np.stack([stats.multivariate_normal(m, c).logpdf(x)
                          for m, c in zip(model.means.numpy(), model.covariances())], axis=1)
    np.testing.assert_allclose(model.component_log_prob(x).numpy(), component, rtol=1e-10)


def test_full_covariance_reads_only_the_upper_triangle_of_the_precision_factor():
    model = _random_mixture("full", seed=3)
    x = np.random.default_rng(0).standard_normal((5, 2))
    before = model.log_prob(x).numpy()
    model.precision_cholesky.data[:, 1, 0] = 123.0          # below the diagonal: not part of U
    np.testing.assert_array_equal(model.log_prob(x).numpy(), before)


@pytest.mark.filterwarnings("ignore::UserWarning")        # sklearn: one EM step "did not converge"
@pytest.mark.parametrize("covariance", COVARIANCES)
def test_log_prob_agrees_with_scikit_learn_on_the_same_parameters(covariance):
    mixture = pytest.importorskip("sklearn.mixture")
    x = _blobs()
    model = GaussianMixture(3, 2, covariance, rng=np.random.default_rng(0), dtype="float64").fit(x)
    reference = mixture.GaussianMixture(3, covariance_type=covariance, max_iter=1).fit(x)
    reference.weights_ = model.weights.numpy()
    reference.means_ = model.means.numpy()
    if covariance == "full":
        reference.covariances_ = model.covariances()
        reference.precisions_cholesky_ = np.triu(model.precision_cholesky.numpy())
    else:
        reference.covariances_ = np.exp(2 * model.log_scales.numpy())
        reference.precisions_cholesky_ = np.exp(-model.log_scales.numpy())
    np.testing.assert_allclose(model.log_prob(x).numpy(), reference.score_samples(x), rtol=1e-10)
    np.testing.assert_allclose(model.responsibilities(x).numpy(), reference.predict_proba(x), atol=1e-10)


@pytest.mark.parametrize("covariance", COVARIANCES)
def test_em_reaches_scikit_learns_maximum(covariance):
    mixture = pytest.importorskip("sklearn.mixture")
    x = _blobs()
    model = GaussianMixture(3, 2, covariance, rng=np.random.default_rng(0), dtype="float64").fit(x, n_iter=500)
    reference = mixture.GaussianMixture(3, covariance_type=covariance, tol=1e-10, max_iter=500,
                                        n_init=3, random_state=0).fit(x)
    assert model.log_prob(x).numpy().mean() == pytest.approx(reference.score(x), abs=1e-6)


# ----------------------------------------------------------------------------- EM

@pytest.mark.parametrize("covariance", COVARIANCES)
def test_em_log_likelihood_is_monotone_and_stationary(covariance):
    x = _blobs(seed=4)
    model = GaussianMixture(3, 2, covariance, rng=np.random.default_rng(1), dtype="float64")
    model.fit(x, n_iter=300, tol=1e-12, reg_covar=0.0)
    history = np.array(model.log_likelihood_history)
    assert len(history) > 3
    assert (np.diff(history) >= -1e-12).all(), f"EM decreased the log-likelihood: {np.diff(history).min()}"
    assert history[-1] > history[0] + 0.1
    assert history[-1] == pytest.approx(model.log_prob(x).numpy().mean(), rel=1e-12)
    # a maximum of the likelihood: the gradient of the mean log-likelihood vanishes there
    model.loss(x).backward()
    for name, p in model.named_parameters():
        assert np.abs(p.grad.numpy()).max() < 1e-5, name


def test_em_m_step_is_the_responsibility_weighted_moments():
    x = _blobs(seed=5)
    model = GaussianMixture(3, 2, "full", rng=np.random.default_rng(0), dtype="float64").fit(x, n_iter=1, reg_covar=0)
    # one more EM step by hand from the fitted parameters equals fitting one step further
    resp = model.responsibilities(x).numpy()
    N_k = resp.sum(axis=0)
    means = resp.T @ x / N_k[:, None]
    covariances = np.stack([(resp[:, k, None] * (x - means[k])).T @ (x - means[k]) / N_k[k] for k in range(3)])
    resumed = GaussianMixture(3, 2, "full", dtype="float64")
    resumed._set(np.log(N_k / len(x)), means, covariances)
    twice = GaussianMixture(3, 2, "full", rng=np.random.default_rng(0), dtype="float64").fit(x, n_iter=2, reg_covar=0)
    np.testing.assert_allclose(resumed.means.numpy(), twice.means.numpy(), rtol=1e-10)
    np.testing.assert_allclose(resumed.covariances(), twice.covariances(), rtol=1e-9)
    np.testing.assert_allclose(resumed.weights.numpy(), twice.weights.numpy(), rtol=1e-10)


# ----------------------------------------------------------------------------- posterior and samples

@pytest.mark.parametrize("covariance", COVARIANCES)
def test_responsibilities_are_bayes_rule(covariance):
    model = _random_mixture(covariance, seed=6)
    x = np.random.default_rng(1).standard_normal((7, 2))
    joint = np.stack([p * stats.multivariate_normal(m, c).pdf(x)
                      for p, m, c in zip(model.weights.numpy(), model.means.numpy(), model.covariances())], axis=1)
    np.testing.assert_allclose(model.responsibilities(x).numpy(), joint / joint.sum(axis=1, keepdims=True),
                               rtol=1e-9)


@pytest.mark.parametrize("covariance", COVARIANCES)
def test_samples_have_the_mixture_mean_and_covariance(covariance):
    model = _random_mixture(covariance, seed=7)
    n = 40000
    x = model.sample(n, rng=np.random.default_rng(0))
    assert isinstance(x, td.Tensor) and x.shape == (n, 2) and not x.requires_grad and x.dtype == np.float64
    x = x.numpy()
    pi, mu, covs = model.weights.numpy(), model.means.numpy(), model.covariances()
    mean = pi @ mu
    cov = sum(p * (c + np.outer(m, m)) for p, m, c in zip(pi, mu, covs)) - np.outer(mean, mean)
    assert (np.abs(x.mean(axis=0) - mean) < 5 * np.sqrt(np.diag(cov) / n)).all()
    # sd of the sample covariance, from the fourth moments of the draws themselves
    r = x - mean
    se_cov = np.sqrt(np.var(r[:, :, None] * r[:, None, :], axis=0) / n)
    assert (np.abs(np.cov(x.T) - cov) < 5 * se_cov).all()
    np.testing.assert_array_equal(model.sample(4, rng=np.random.default_rng(1)).numpy(),
                                  model.sample(4, rng=np.random.default_rng(1)).numpy())


# ----------------------------------------------------------------------------- gradients

@pytest.mark.parametrize("covariance", COVARIANCES)
def test_gradcheck_log_prob_responsibilities_and_loss(covariance):
    model = _random_mixture(covariance, k=2, d=3, seed=8)
    x = _t(np.random.default_rng(3).standard_normal((4, 3)), requires_grad=True)
    params = [_t(p.numpy(), requires_grad=True) for p in model.parameters()]
    for method in ("log_prob", "responsibilities"):
        def fn(x, *ps, method=method):
            return with_parameter_values(model, ps, lambda: getattr(model, method)(x))
        td.gradcheck(fn, [x] + params)
        td.gradgradcheck(fn, [x] + params)
    td.gradcheck(lambda *ps: with_parameter_values(model, ps, lambda: model.loss(x.detach())), params)
    td.gradgradcheck(lambda *ps: with_parameter_values(model, ps, lambda: model.loss(x.detach())), params)


def test_gradcheck_the_full_component_density():
    rng = np.random.default_rng(9)
    x, means = _t(rng.standard_normal((3, 2)), True), _t(rng.standard_normal((2, 2)), True)
    U = _t(np.triu(rng.standard_normal((2, 2, 2))) + 2 * np.eye(2), True)
    td.gradcheck(full_component_log_prob, [x, means, U])
    td.gradgradcheck(full_component_log_prob, [x, means, U])


# ----------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("covariance", COVARIANCES)
def test_bad_input_is_rejected_and_changes_nothing(covariance):
    model = _random_mixture(covariance, seed=10)
    before = model.state_dict()
    x = _blobs(30)
    nan_batch = x.copy()
    nan_batch[3, 0] = np.nan
    with pytest.raises(ValueError, match=r"shape \(N, D\) = \(N, 2\), got \(30, 3\)"):
        model.log_prob(np.zeros((30, 3)))
    with pytest.raises(ValueError, match="NaN"):
        model.log_prob(nan_batch)
    with pytest.raises(ValueError, match="NaN"):
        model.fit(nan_batch)
    with pytest.raises(ValueError, match="at least n_components = 3 examples, got 2"):
        model.fit(x[:2])
    with pytest.raises(ValueError, match="n_iter"):
        model.fit(x, n_iter=0)
    with pytest.raises(ValueError, match="reg_covar"):
        model.fit(x, reg_covar=-1.0)
    with pytest.raises(ValueError, match="non-negative int"):
        model.sample(-2)
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[name])


def test_constructor_rejects_bad_arguments():
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="n_components must be a positive int"):
            GaussianMixture(bad, 2)
    with pytest.raises(ValueError, match="n_features must be a positive int"):
        GaussianMixture(2, 0)
    with pytest.raises(ValueError, match='"full" or "diag"'):
        GaussianMixture(2, 2, covariance="spherical")
