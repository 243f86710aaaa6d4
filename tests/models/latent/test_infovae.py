"""InfoVAE (tinydgm/models/latent/infovae.py): the MMD^2 estimators against the closed form for
two Gaussians under an RBF kernel (the U-statistic unbiased, the V-statistic off by its known
bias), against the double sums and against evaluate.mmd; the objective against its formula
and parts, the ELBO at alpha = 0, lambda = 1, gradchecks with the noise held fixed, training; the
MMD's own draws (mmd_samples) against their formula, their smaller spread, gradchecks."""
import numpy as np
import pytest

import tinydgm as td
from flow_contracts import swap_parameters
from tinydgm.evaluate import mmd as metric_mmd
from tinydgm.models.latent import InfoVAE, MLPDecoder, MLPEncoder, MixtureOfGaussiansPrior, VAE, mmd_squared
from tinydgm.models.latent.posteriors import PlanarPosterior


def gaussian_rbf_expectation(mean, cov, h):
    """E exp(-|d|^2 / (2 h^2)) for d ~ N(mean, cov): det(I + cov / h^2)^(-1/2) exp(-mean^T (cov + h^2 I)^-1 mean / 2)."""
    n = len(mean)
    return (np.linalg.det(np.eye(n) + cov / h ** 2) ** -0.5
            * np.exp(-0.5 * mean @ np.linalg.solve(cov + h ** 2 * np.eye(n), mean)))


def closed_form_mmd2(m1, s1, m2, s2, h):
    """MMD^2(N(m1, s1), N(m2, s2)) under the RBF kernel: E k(X, X~) + E k(Y, Y~) - 2 E k(X, Y)."""
    zero = np.zeros_like(m1)
    kxx = gaussian_rbf_expectation(zero, 2 * s1, h)
    kyy = gaussian_rbf_expectation(zero, 2 * s2, h)
    kxy = gaussian_rbf_expectation(m1 - m2, s1 + s2, h)
    return kxx + kyy - 2 * kxy, kxx, kyy


def t64(a):
    return td.tensor(np.asarray(a, dtype=np.float64), dtype="float64")


def test_unbiased_estimator_against_the_closed_form_for_two_gaussians():
    """Over 3000 independent pairs of samples (m = 8, m' = 12) the U-statistic averages to the
    closed-form MMD^2; the V-statistic averages to MMD^2 + (1 - E k(X, X~)) / m + (1 - E k(Y, Y~)) / m'
    (its diagonal terms), a bias the test can see."""
    m1, m2 = np.array([0.5, -0.2]), np.array([0.0, 0.3])
    s1 = np.array([[1.0, 0.3], [0.3, 0.6]])
    s2 = np.array([[0.5, -0.1], [-0.1, 1.2]])
    h = 0.9
    exact, kxx, kyy = closed_form_mmd2(m1, s1, m2, s2, h)
    gen = np.random.default_rng(0)
    unbiased, biased = [], []
    for _ in range(3000):
        x = t64(gen.multivariate_normal(m1, s1, 8))
        y = t64(gen.multivariate_normal(m2, s2, 12))
        unbiased.append(float(mmd_squared(x, y, "rbf", h).numpy()))
        biased.append(float(mmd_squared(x, y, "rbf", h, unbiased=False).numpy()))
    unbiased, biased = np.array(unbiased), np.array(biased)
    se_u, se_b = unbiased.std() / np.sqrt(3000), biased.std() / np.sqrt(3000)
    assert abs(unbiased.mean() - exact) < 4 * se_u, (unbiased.mean(), exact, se_u)
    bias = (1 - kxx) / 8 + (1 - kyy) / 12
    assert abs(biased.mean() - (exact + bias)) < 4 * se_b
    assert biased.mean() - exact > 10 * se_b                       # the bias is real at this size
    assert exact > 0.02 and (unbiased < 0).any()                    # the U-statistic can go negative


@pytest.mark.parametrize("kernel", ["rbf", "imq"])
def test_estimators_are_the_double_sums(kernel):
    gen = np.random.default_rng(1)
    x, y = gen.standard_normal((5, 3)), gen.standard_normal((4, 3)) + 0.5
    c = 1.7
    k = (lambda a, b: np.exp(-((a[:, None] - b[None]) ** 2).sum(-1) / (2 * c ** 2))) if kernel == "rbf" else \
        (lambda a, b: c / (c + ((a[:, None] - b[None]) ** 2).sum(-1)))
    off = lambda K: (K.sum() - np.trace(K)) / (len(K) * (len(K) - 1))
    unbiased = off(k(x, x)) + off(k(y, y)) - 2 * k(x, y).mean()
    biased = k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean()
    np.testing.assert_allclose(mmd_squared(t64(x), t64(y), kernel, c).numpy(), unbiased, rtol=1e-12)
    np.testing.assert_allclose(mmd_squared(t64(x), t64(y), kernel, c, unbiased=False).numpy(), biased, rtol=1e-12)
    if kernel == "rbf":                                             # the metric of tinydgm.evaluate is the V-statistic
        np.testing.assert_allclose(metric_mmd(x, y, bandwidth=c), biased, rtol=1e-10)


def test_default_kernel_parameters_follow_the_latent_dimension():
    gen = np.random.default_rng(2)
    x, y = t64(gen.standard_normal((4, 3))), t64(gen.standard_normal((5, 3)))
    np.testing.assert_allclose(mmd_squared(x, y, "rbf").numpy(), mmd_squared(x, y, "rbf", np.sqrt(3)).numpy())
    np.testing.assert_allclose(mmd_squared(x, y, "imq").numpy(), mmd_squared(x, y, "imq", 6.0).numpy())


@pytest.mark.parametrize("kernel", ["rbf", "imq"])
@pytest.mark.parametrize("unbiased", [True, False])
def test_mmd_gradcheck_and_gradgradcheck(kernel, unbiased):
    gen = np.random.default_rng(3)
    x = td.tensor(gen.standard_normal((4, 2)), dtype="float64", requires_grad=True)
    y = td.tensor(gen.standard_normal((3, 2)), dtype="float64", requires_grad=True)
    fn = lambda a, b: mmd_squared(a, b, kernel, 1.3, unbiased=unbiased)
    assert td.gradcheck(fn, [x, y])
    assert td.gradgradcheck(fn, [x, y])


# ----------------------------------------------------------------------------- the model

def binary_data(n, n_dims=5, seed=0):
    gen = np.random.default_rng(seed)
    return (gen.random((n, n_dims)) < np.where(gen.random((n, 1)) < 0.5, 0.85, 0.15)).astype(np.float64)


def parts(seed=0):
    gen = np.random.default_rng(seed)
    encoder = MLPEncoder(5, 2, hidden=(4,), activation="tanh", rng=gen, dtype="float64")
    decoder = MLPDecoder(2, 5, hidden=(3,), activation="tanh", rng=gen, dtype="float64")
    return encoder, decoder


@pytest.mark.parametrize("kernel", ["rbf", "imq"])
def test_objective_is_the_papers_formula_from_its_parts(kernel):
    """objective = E_q log p(x|z) - (1 - alpha) KL(q(z|x) || p) - (alpha + lambda - 1) MMD^2(q(z), p(z)),
    with the reconstruction and KL of the plain VAE on the same noise and the MMD of all S N
    posterior draws against the given prior draws."""
    encoder, decoder = parts()
    model = InfoVAE(encoder, decoder, alpha=0.3, lambda_=5.0, kernel=kernel)
    plain = VAE(encoder, decoder)
    x = binary_data(4)
    eps = np.random.default_rng(1).standard_normal((2, 4, 2))
    z_prior = np.random.default_rng(2).standard_normal((8, 2))
    rec, kl = plain.elbo_terms(x, eps=eps)
    mu, log_var = plain.encode(x)
    z = (mu.numpy() + np.exp(0.5 * log_var.numpy()) * eps).reshape(8, 2)
    mmd = mmd_squared(t64(z), t64(z_prior), kernel).numpy()
    expected = rec.numpy() - 0.7 * kl.numpy() - 4.3 * mmd
    np.testing.assert_allclose(model.objective(x, eps=eps, z_prior=z_prior).numpy(), expected, rtol=1e-12)
    terms = model.objective_terms(x, eps=eps, z_prior=z_prior)
    np.testing.assert_allclose(terms[2].numpy(), mmd, rtol=1e-12)
    np.testing.assert_allclose(model.elbo(x, eps=eps).numpy(), (rec - kl).numpy(), rtol=1e-12)   # still the ELBO
    assert model.mmd_weight == pytest.approx(4.3) and model.beta == pytest.approx(0.7)


def test_with_a_flow_posterior_the_draws_are_z_k():
    """posterior=: the reconstruction and KL are the flow-posterior VAE's on the same noise, the
    MMD is that of the z_K draws."""
    encoder, decoder = parts(5)
    posterior = PlanarPosterior(5, 2, n_layers=2, hidden=(3,), rng=np.random.default_rng(6), dtype="float64")
    model = InfoVAE(encoder, decoder, alpha=0.2, lambda_=3.0, posterior=posterior)
    plain = VAE(encoder, decoder, posterior=posterior)
    x = binary_data(4, seed=7)
    eps = np.random.default_rng(8).standard_normal((2, 4, 2))
    z_prior = np.random.default_rng(9).standard_normal((8, 2))
    rec, kl = plain.elbo_terms(x, eps=eps)
    mu, log_var = plain.encode(x)
    z0 = mu.numpy() + np.exp(0.5 * log_var.numpy()) * eps
    z_k, _ = posterior.transform(t64(z0), plain._as_data(x, "test"))
    mmd = mmd_squared(t64(z_k.numpy().reshape(8, 2)), t64(z_prior)).numpy()
    expected = rec.numpy() - 0.8 * kl.numpy() - 2.2 * mmd
    np.testing.assert_allclose(model.objective(x, eps=eps, z_prior=z_prior).numpy(), expected, rtol=1e-12)
    assert np.abs(z_k.numpy() - z0).max() > 1e-3                 # the steps moved the draws


def test_alpha_zero_lambda_one_is_the_elbo():
    encoder, decoder = parts(1)
    model, plain = InfoVAE(encoder, decoder, alpha=0.0, lambda_=1.0), VAE(encoder, decoder)
    x = binary_data(5, seed=2)
    eps = np.random.default_rng(3).standard_normal((3, 5, 2))
    np.testing.assert_allclose(model.objective(x, eps=eps).numpy(), plain.elbo(x, eps=eps).numpy(), rtol=1e-12)


def infovae_cases():
    encoder, decoder = parts(2)
    mixture = MixtureOfGaussiansPrior(2, 2, rng=np.random.default_rng(4), dtype="float64")
    return {
        "rbf": InfoVAE(*parts(2), alpha=0.5, lambda_=10.0),
        "imq_mmd_vae": InfoVAE(*parts(3), alpha=1.0, lambda_=10.0, kernel="imq"),
        "mixture_prior": InfoVAE(encoder, decoder, prior=mixture, alpha=0.2, lambda_=3.0),
        "planar_posterior": InfoVAE(*parts(5), alpha=0.5, lambda_=4.0, posterior=PlanarPosterior(
            5, 2, n_layers=2, hidden=(3,), rng=np.random.default_rng(6), dtype="float64")),
    }


def gradcheck_objective(model, order):
    x = binary_data(3, seed=5)
    eps = np.random.default_rng(6).standard_normal((2, 3, 2))
    z_prior = np.random.default_rng(7).standard_normal((6, 2))
    names = [n for n, _ in model.named_parameters()]
    values = [td.tensor(p.numpy(), dtype="float64", requires_grad=True) for p in model.parameters()]

    def objective(*params):
        saved = swap_parameters(model, dict(zip(names, params)))
        try:
            return model.objective(x, eps=eps, z_prior=z_prior).sum()
        finally:
            swap_parameters(model, saved)
    return (td.gradcheck if order == 1 else td.gradgradcheck)(objective, values)


@pytest.mark.parametrize("case", sorted(infovae_cases()))
def test_objective_gradcheck_with_the_noise_held_fixed(case):
    assert gradcheck_objective(infovae_cases()[case], 1)


def test_objective_gradgradcheck():
    assert gradcheck_objective(infovae_cases()["rbf"], 2)


def test_a_heavy_mmd_weight_pulls_the_aggregated_posterior_to_the_prior():
    """Same data, same start, same steps: with lambda = 100 (alpha = 1, the MMD-VAE) the
    trained q(z) is closer to N(0, I) in MMD than with the plain ELBO's weights."""
    x = binary_data(64, seed=8)
    mmds = []
    for alpha, lambda_ in ((0.0, 1.0), (1.0, 100.0)):
        model = InfoVAE(*parts(4), alpha=alpha, lambda_=lambda_, rng=np.random.default_rng(0))
        td.train.fit(model, x, td.optim.Adam(model.parameters(), lr=0.03), epochs=40, batch_size=64, seed=1,
                     progress=False)
        eps = np.random.default_rng(9).standard_normal((8, 64, 2))
        z_prior = np.random.default_rng(10).standard_normal((512, 2))
        mmds.append(float(model.objective_terms(x, eps=eps, z_prior=z_prior)[2].numpy()))
    assert mmds[1] < 0.5 * mmds[0], mmds


def test_mmd_samples_draw_fresh_codes_for_the_mmd_only():
    """mmd_samples = K: the reconstruction and KL are those of the decoder's S draws, the MMD is that
    of K fresh draws mu + sigma eps_mmd per example (K N codes) against K N prior draws."""
    encoder, decoder = parts(11)
    model = InfoVAE(encoder, decoder, alpha=0.5, lambda_=3.0, mmd_samples=3)
    plain = VAE(encoder, decoder)
    x = binary_data(4, seed=12)
    eps = np.random.default_rng(13).standard_normal((2, 4, 2))
    eps_mmd = np.random.default_rng(14).standard_normal((3, 4, 2))
    z_prior = np.random.default_rng(15).standard_normal((12, 2))
    rec, kl = plain.elbo_terms(x, eps=eps)
    mu, log_var = plain.encode(x)
    z = (mu.numpy() + np.exp(0.5 * log_var.numpy()) * eps_mmd).reshape(12, 2)
    mmd = mmd_squared(t64(z), t64(z_prior)).numpy()
    terms = model.objective_terms(x, eps=eps, z_prior=z_prior, eps_mmd=eps_mmd)
    np.testing.assert_allclose(terms[0].numpy(), rec.numpy(), rtol=1e-12)
    np.testing.assert_allclose(terms[1].numpy(), kl.numpy(), rtol=1e-12)
    np.testing.assert_allclose(terms[2].numpy(), mmd, rtol=1e-12)
    np.testing.assert_allclose(model.objective(x, eps=eps, z_prior=z_prior, eps_mmd=eps_mmd).numpy(),
                               rec.numpy() - 0.5 * kl.numpy() - 2.5 * mmd, rtol=1e-12)


def test_more_mmd_samples_shrink_the_spread_of_the_estimate():
    """The MMD term's spread over the noise (fixed weights and batch) falls as the codes per estimate
    grow: K = 8 draws per example against K = 1 (a U-statistic of 8 times as many pairs)."""
    x = binary_data(6, seed=16)
    spreads = []
    for k in (1, 8):
        model = InfoVAE(*parts(17), alpha=1.0, lambda_=10.0, mmd_samples=k, rng=np.random.default_rng(18))
        with td.no_grad():
            values = [float(model.objective_terms(x)[2].numpy()) for _ in range(300)]
        spreads.append(np.std(values))
    assert spreads[1] < 0.45 * spreads[0], spreads


@pytest.mark.parametrize("flow", [False, True])
def test_objective_gradcheck_with_mmd_samples(flow):
    encoder, decoder = parts(19)
    posterior = PlanarPosterior(5, 2, n_layers=1, hidden=(3,), rng=np.random.default_rng(20), dtype="float64") \
        if flow else None
    model = InfoVAE(encoder, decoder, alpha=0.5, lambda_=4.0, posterior=posterior, mmd_samples=2)
    x = binary_data(3, seed=21)
    eps = np.random.default_rng(22).standard_normal((1, 3, 2))
    eps_mmd = np.random.default_rng(23).standard_normal((2, 3, 2))
    z_prior = np.random.default_rng(24).standard_normal((6, 2))
    names = [n for n, _ in model.named_parameters()]
    values = [td.tensor(p.numpy(), dtype="float64", requires_grad=True) for p in model.parameters()]

    def objective(*params):
        saved = swap_parameters(model, dict(zip(names, params)))
        try:
            return model.objective(x, eps=eps, z_prior=z_prior, eps_mmd=eps_mmd).sum()
        finally:
            swap_parameters(model, saved)
    assert td.gradcheck(objective, values)


def test_bad_arguments():
    encoder, decoder = parts()
    with pytest.raises(ValueError, match="alpha must be <= 1"):
        InfoVAE(encoder, decoder, alpha=1.5)
    with pytest.raises(ValueError, match="alpha \\+ lambda_ must be >= 1"):
        InfoVAE(encoder, decoder, alpha=0.0, lambda_=0.5)
    with pytest.raises(ValueError, match="kernel must be one of"):
        InfoVAE(encoder, decoder, kernel="laplace")
    with pytest.raises(ValueError, match="kernel_parameter .* must be a number > 0"):
        InfoVAE(encoder, decoder, kernel_parameter=0.0)
    model = InfoVAE(encoder, decoder)
    x = binary_data(3)
    with pytest.raises(ValueError, match=r"z_prior must have shape \(S N, L\) = \(3, 2\)"):
        model.objective(x, eps=np.zeros((1, 3, 2)), z_prior=np.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"eps must have shape \(S, N, L\) = \(1, 3, 2\)"):
        model.objective(x, n_samples=1, eps=np.zeros((1, 3, 3)))
    with pytest.raises(ValueError, match="needs at least 2 draws"):
        mmd_squared(t64(np.zeros((1, 2))), t64(np.zeros((3, 2))))
    with pytest.raises(ValueError, match="same L"):
        mmd_squared(t64(np.zeros((2, 2))), t64(np.zeros((3, 3))))
    with pytest.raises(ValueError, match="needs binary data"):
        model.loss(np.full((2, 5), 0.5))
    assert repr(model).startswith("InfoVAE(latent_dim=2") and "alpha=0.0, lambda_=1.0, kernel='rbf'" in repr(model)
    with pytest.raises(ValueError, match="mmd_samples must be an int >= 1, got 0"):
        InfoVAE(encoder, decoder, mmd_samples=0)
    with pytest.raises(ValueError, match="eps_mmd needs mmd_samples"):
        model.objective(x, eps_mmd=np.zeros((1, 3, 2)))
    more = InfoVAE(encoder, decoder, mmd_samples=2)
    with pytest.raises(ValueError, match=r"eps_mmd must have shape \(K, N, L\) = \(2, 3, 2\)"):
        more.objective(x, eps_mmd=np.zeros((1, 3, 2)))
    with pytest.raises(ValueError, match=r"z_prior must have shape \(K N, L\) = \(6, 2\)"):
        more.objective(x, eps=np.zeros((1, 3, 2)), z_prior=np.zeros((3, 2)))
    assert "mmd_samples=2" in repr(more) and "mmd_samples" not in repr(model)
