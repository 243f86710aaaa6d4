"""The VAE (tinydgm/models/latent/vae.py) against exact answers: a linear-Gaussian VAE whose
log p(x) and posterior are known in closed form (tests/linear_vae_oracle.py), the closed-form
KL against Monte Carlo, the reparameterised gradient against the score-function estimator,
gradchecks of every objective with the noise held fixed, sampling against the exact marginal,
the PPCA solution at the ELBO's optimum, and bad input."""
import numpy as np
import pytest
from scipy import stats

import tinydgm as td
from latent_helpers import assert_bad_batch_rejected, with_parameters
from linear_vae_oracle import (decoder_weights, encoder_outputs, exact_log_px, exact_posterior,
                               kl_diagonal_to_full, linear_vae, orthogonal_rows, set_decoder,
                               set_encoder_to_posterior)
from tinydgm.distributions import MixtureOfGaussians, Normal, StandardNormal, kl_divergence
from tinydgm.models.latent import (ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder, Prior,
                                   StandardNormalPrior, VAE, kl_standard_normal, reparameterize)
from tinydgm.nn import Parameter

LOG_2PI = np.log(2 * np.pi)


def gaussian_data(n, n_dims, seed=0):
    return np.random.default_rng(seed).standard_normal((n, n_dims)) + 0.3


def binary_data(n, n_dims, seed=0):
    return (np.random.default_rng(seed).random((n, n_dims)) < 0.4).astype(np.float64)


def small_vae(likelihood="bernoulli", sigma=None, n_dims=5, latent_dim=2, seed=0, **kw):
    gen = np.random.default_rng(seed)
    encoder = MLPEncoder(n_dims, latent_dim, hidden=(4,), activation="tanh", rng=gen, dtype="float64")
    decoder = MLPDecoder(latent_dim, n_dims, hidden=(3,), activation="tanh", likelihood=likelihood, sigma=sigma,
                         rng=gen, dtype="float64")
    return VAE(encoder, decoder, rng=np.random.default_rng(seed + 1), **kw)


class GaussianPrior(Prior):
    """A learnable diagonal Gaussian prior N(m, diag(exp(2 s))): the prior interface with parameters."""

    def __init__(self, latent_dim):
        super().__init__()
        self.latent_dim = latent_dim
        self.m = Parameter(np.array([0.3, -0.2][:latent_dim]))
        self.s = Parameter(np.array([0.1, -0.3][:latent_dim]))

    def log_prob(self, z):
        return Normal(self.m, log_scale=self.s).log_prob(z).sum(axis=-1)

    def sample(self, n, rng=None):
        return Normal(self.m, log_scale=self.s).sample((n,), rng=rng)


# ----------------------------------------------------------------------------- the ELBO, exactly

def test_elbo_with_fixed_noise_is_the_formula():
    """elbo(x, eps) = 1/S sum_s log N(x; z_s W + b, sigma^2 I) - KL(q || N(0, I)), z_s = mu + sigma eps_s."""
    model = linear_vae(4, 2, sigma=0.7, seed=3)
    x = gaussian_data(6, 4, seed=1)
    eps = np.random.default_rng(2).standard_normal((5, 6, 2))
    mu, var = encoder_outputs(model, x)
    W, b = decoder_weights(model)
    z = mu + np.sqrt(var) * eps
    log_px_z = stats.norm(z @ W + b, 0.7).logpdf(x).sum(-1).mean(0)
    kl = 0.5 * (mu ** 2 + var - 1 - np.log(var)).sum(-1)
    np.testing.assert_allclose(model.elbo(x, eps=eps).numpy(), log_px_z - kl, rtol=1e-12)
    rec, kl_code = model.elbo_terms(x, eps=eps)
    np.testing.assert_allclose(kl_code.numpy(), kl, rtol=1e-12)


def test_elbo_is_log_px_minus_kl_to_the_exact_posterior():
    """L(x) = log p(x) - KL(q(z|x) || p(z|x)) (intro lecture eq. 23; isachenko-l07 "ELBO"), to
    Monte Carlo error, for an encoder that is NOT the posterior."""
    sigma = 0.6
    model = linear_vae(4, 2, sigma=sigma, seed=5)
    x = gaussian_data(5, 4, seed=2)
    W, b = decoder_weights(model)
    mu, var = encoder_outputs(model, x)
    post_mean, post_cov = exact_posterior(W, b, sigma, x)
    gap = kl_diagonal_to_full(mu, var, post_mean, post_cov)
    assert gap.min() > 0.05                                     # a real gap to recover
    expected = exact_log_px(W, b, sigma, x) - gap
    # the oracle itself: the Gaussian expectation of log p(x|z) in closed form gives the same bound
    rec = -2 * np.log(2 * np.pi * sigma ** 2) - (((x - mu @ W - b) ** 2).sum(1) + var @ (W ** 2).sum(1)) / (2 * sigma ** 2)
    np.testing.assert_allclose(rec - 0.5 * (mu ** 2 + var - 1 - np.log(var)).sum(1), expected, rtol=1e-10)
    S = 20000
    eps = np.random.default_rng(3).standard_normal((S, 5, 2))
    z = mu + np.sqrt(var) * eps
    terms = stats.norm(z @ W + b, sigma).logpdf(x).sum(-1)        # per-sample reconstruction terms
    se = terms.std(0) / np.sqrt(S)
    elbo = model.elbo(x, eps=eps).numpy()
    assert np.all(np.abs(elbo - expected) < 4 * se), (elbo, expected, se)
    assert np.all(elbo < exact_log_px(W, b, sigma, x))


def test_the_bound_is_tight_when_q_is_the_posterior():
    """With orthogonal decoder rows the posterior is diagonal; the encoder set to it makes every
    importance weight equal p(x): log p(x, z) - log q(z|x) = log p(x) for every z."""
    sigma = 0.5
    model = linear_vae(5, 2, sigma=sigma, seed=0)
    set_decoder(model, orthogonal_rows(2, 5, [1.5, 0.8], seed=1), np.linspace(-1, 1, 5))
    set_encoder_to_posterior(model, sigma)
    x = gaussian_data(4, 5, seed=6)
    W, b = decoder_weights(model)
    log_w = model.log_importance_weights(x, 50).numpy()
    np.testing.assert_allclose(log_w, np.broadcast_to(exact_log_px(W, b, sigma, x), (50, 4)), atol=1e-10)
    mc = VAE(model.encoder, model.decoder, prior=StandardNormalPrior(2), kl="monte_carlo")
    np.testing.assert_allclose(mc.elbo(x, n_samples=3).numpy(), exact_log_px(W, b, sigma, x), atol=1e-10)


# ----------------------------------------------------------------------------- KL and gradients

def test_closed_form_kl_against_monte_carlo_and_distributions():
    gen = np.random.default_rng(0)
    mu, log_var = gen.standard_normal((3, 4)), gen.standard_normal((3, 4))
    closed = kl_standard_normal(td.tensor(mu, dtype="float64"), td.tensor(log_var, dtype="float64")).numpy()
    q = Normal(td.tensor(mu, dtype="float64"), log_var=td.tensor(log_var, dtype="float64"))
    reference = kl_divergence(q, StandardNormal((3, 4), dtype="float64")).numpy().sum(-1)
    np.testing.assert_allclose(closed, reference, rtol=1e-12)
    S = 200000
    z = mu + np.exp(0.5 * log_var) * gen.standard_normal((S, 3, 4))
    terms = (stats.norm(mu, np.exp(0.5 * log_var)).logpdf(z) - stats.norm(0, 1).logpdf(z)).sum(-1)
    assert np.all(np.abs(terms.mean(0) - closed) < 4 * terms.std(0) / np.sqrt(S))


def test_monte_carlo_kl_elbo_agrees_with_the_closed_form_in_expectation():
    model = small_vae()
    mc = VAE(model.encoder, model.decoder, prior=StandardNormalPrior(2), kl="monte_carlo")
    x = binary_data(3, 5)
    eps = np.random.default_rng(1).standard_normal((40000, 3, 2))
    rec_c, kl_c = model.elbo_terms(x, eps=eps)
    rec_m, kl_m = mc.elbo_terms(x, eps=eps)
    np.testing.assert_allclose(rec_c.numpy(), rec_m.numpy(), rtol=1e-12)    # same samples, same term
    np.testing.assert_allclose(kl_m.numpy(), kl_c.numpy(), atol=0.02)


def test_reparameterised_gradient_agrees_with_the_score_function_estimator():
    """d/d(mu, log_var) E_q[f(z)] by z = mu + sigma eps (eq. 33) and by E_q[f(z) d log q(z)]
    (REINFORCE): both unbiased, so they agree to Monte Carlo error; f = log p(x|z) of a decoder."""
    model = small_vae(seed=4)
    x = td.tensor(binary_data(1, 5, seed=3), dtype="float64")
    mu = td.tensor([[0.4, -0.7]], dtype="float64", requires_grad=True)
    log_var = td.tensor([[-0.5, 0.3]], dtype="float64", requires_grad=True)
    S = 40000
    eps = td.tensor(np.random.default_rng(5).standard_normal((S, 1, 2)), dtype="float64")
    f = model.decoder.log_prob(x, reparameterize(mu, log_var, eps))                 # (S, 1)
    reparam = [g.numpy().ravel() for g in td.grad(f.mean(), [mu, log_var])]
    # per-sample terms by the chain rule through z_s = mu + sigma eps_s, for the Monte Carlo error
    z = reparameterize(mu, log_var, eps).detach().requires_grad_()
    df_dz = td.grad(model.decoder.log_prob(x, z).sum(), [z])[0].numpy()[:, 0]
    sigma_eps = np.exp(0.5 * log_var.numpy()[0]) * eps.numpy()[:, 0]
    reparam_terms = np.concatenate([df_dz, 0.5 * df_dz * sigma_eps], axis=1)
    np.testing.assert_allclose(reparam_terms.mean(0), np.concatenate(reparam), rtol=1e-10)
    z = z.detach()
    log_q = Normal(mu, log_var=log_var).log_prob(z).sum(-1)                           # (S, 1)
    with td.no_grad():
        f_value = model.decoder.log_prob(x, z).numpy()
    baseline = f_value.mean()                      # a constant baseline keeps the estimator unbiased
    score = [g.numpy().ravel() for g in td.grad((log_q * td.tensor(f_value - baseline)).mean(), [mu, log_var])]
    # the score-function terms' spread, for the Monte Carlo error
    zs, m, lv = z.numpy()[:, 0], mu.numpy()[0], log_var.numpy()[0]
    d_mu = (zs - m) / np.exp(lv)
    d_lv = 0.5 * ((zs - m) ** 2 / np.exp(lv) - 1)
    score_terms = (f_value - baseline)[:, :1] * np.concatenate([d_mu, d_lv], axis=1)
    se = np.sqrt(score_terms.var(0) / S + reparam_terms.var(0) / S)
    difference = np.concatenate(reparam) - np.concatenate(score)
    assert np.all(np.abs(difference) < 4 * se), (difference, se)
    assert np.abs(np.concatenate(reparam)).max() > 10 * se.max()         # a gradient clearly away from 0


def every_objective():
    x_bin = binary_data(3, 5, seed=7)
    eps = np.random.default_rng(8).standard_normal((2, 3, 2))
    cases = {
        "elbo": (small_vae(), x_bin, lambda m, x: m.elbo(x, eps=eps)),
        "beta_loss": (small_vae(beta=4.0), x_bin, lambda m, x: m.objective(x, eps=eps)),
        "monte_carlo_kl_learned_prior": (small_vae(prior=GaussianPrior(2)), x_bin, lambda m, x: m.elbo(x, eps=eps)),
        "gaussian_fixed": (small_vae("gaussian", 0.8), gaussian_data(3, 5), lambda m, x: m.elbo(x, eps=eps)),
        "gaussian_learned": (small_vae("gaussian", "learned"), gaussian_data(3, 5), lambda m, x: m.elbo(x, eps=eps)),
        "discretized_logistic": (small_vae("discretized_logistic"),
                                 np.random.default_rng(9).integers(0, 256, (3, 5)) / 127.5 - 1,
                                 lambda m, x: m.elbo(x, eps=eps)),
    }
    return cases


@pytest.mark.parametrize("case", sorted(every_objective()))
def test_every_objective_gradcheck_with_the_noise_held_fixed(case):
    model, x, objective = every_objective()[case]
    fn, inputs = with_parameters(model, lambda: objective(model, x))
    assert td.gradcheck(fn, inputs)


@pytest.mark.parametrize("case", ["elbo", "beta_loss", "monte_carlo_kl_learned_prior", "gaussian_learned"])
def test_every_objective_gradgradcheck(case):
    model, x, objective = every_objective()[case]
    fn, inputs = with_parameters(model, lambda: objective(model, x).sum())
    assert td.gradgradcheck(fn, inputs)


def test_convolutional_vae_gradcheck():
    gen = np.random.default_rng(0)
    encoder = ConvEncoder((1, 4, 4), 2, channels=(2,), hidden=(3,), activation="tanh", rng=gen, dtype="float64")
    decoder = ConvDecoder(2, (1, 4, 4), channels=(2,), hidden=(3,), activation="tanh", rng=gen, dtype="float64")
    model = VAE(encoder, decoder)
    x = (gen.random((2, 1, 4, 4)) < 0.5).astype(np.float64)
    eps = gen.standard_normal((1, 2, 2))
    fn, inputs = with_parameters(model, lambda: model.elbo(x, eps=eps))
    assert td.gradcheck(fn, inputs)


def test_beta_weights_the_kl_and_leaves_the_decoder_gradient_alone():
    x = binary_data(4, 5, seed=2)
    eps = np.random.default_rng(3).standard_normal((1, 4, 2))
    plain, beta = small_vae(seed=1), small_vae(seed=1, beta=4.0)
    rec, kl = plain.elbo_terms(x, eps=eps)
    np.testing.assert_allclose(beta.objective(x, eps=eps).numpy(), (rec - 4.0 * kl).numpy(), rtol=1e-12)
    np.testing.assert_allclose(beta.elbo(x, eps=eps).numpy(), plain.elbo(x, eps=eps).numpy(), rtol=1e-12)
    grads = []
    for model in (plain, beta):
        model.zero_grad()
        (-model.objective(x, eps=eps).mean()).backward()
        grads.append(([p.grad.numpy() for p in model.decoder.parameters()],
                      [p.grad.numpy() for p in model.encoder.parameters()]))
    for a, b in zip(grads[0][0], grads[1][0]):               # KL does not involve the decoder
        np.testing.assert_allclose(a, b, rtol=1e-12)
    assert not all(np.allclose(a, b) for a, b in zip(grads[0][1], grads[1][1]))


# ----------------------------------------------------------------------------- training and sampling

def test_a_larger_beta_trains_a_posterior_closer_to_the_prior():
    """beta-VAE (Higgins et al. 2017): with the KL weighted by beta = 8 the trained encoder's
    KL(q || p) is smaller, and its ELBO lower, than with beta = 1 (same data, same start)."""
    gen = np.random.default_rng(0)
    x = (gen.random((64, 5)) < np.where(gen.random((64, 1)) < 0.5, 0.9, 0.1)).astype(np.float64)
    kls, elbos = [], []
    for beta in (1.0, 8.0):
        model = small_vae(seed=2, beta=beta)
        td.train.fit(model, x, td.optim.Adam(model.parameters(), lr=0.03), epochs=60, batch_size=64, seed=1,
                     progress=False)
        eps = np.random.default_rng(3).standard_normal((200, 64, 2))
        rec, kl = model.elbo_terms(x, eps=eps)
        kls.append(kl.numpy().mean())
        elbos.append((rec - kl).numpy().mean())
    assert kls[1] < 0.5 * kls[0], kls
    assert elbos[1] < elbos[0], elbos


def test_linear_vae_at_the_elbo_optimum_recovers_the_ppca_solution():
    """Linear decoder, fixed sigma: maximising the ELBO gives Tipping & Bishop's maximum-likelihood
    W^T W = U_L (Lambda_L - sigma^2 I) U_L^T and b = the data mean, with a tight bound (the
    posterior becomes diagonal: W W^T diagonal; Lucas et al. 2019)."""
    D, L, sigma = 5, 2, 0.5
    gen = np.random.default_rng(0)
    x = gen.standard_normal((400, L)) @ orthogonal_rows(L, D, [2.0, 1.0], seed=3) + gen.standard_normal(D) \
        + sigma * gen.standard_normal((400, D))
    model = linear_vae(D, L, sigma=sigma, seed=1, n_samples=4)
    data = td.tensor(x, dtype="float64")
    optimizer = td.optim.Adam(model.parameters(), lr=0.03)
    for step in range(1200):
        if step == 800:
            optimizer.lr = 0.005
        optimizer.zero_grad()
        model.loss(data).backward()
        optimizer.step()
    W, b = decoder_weights(model)
    lam, U = np.linalg.eigh(np.cov(x.T, bias=True))
    lam, U = lam[::-1][:L], U[:, ::-1][:, :L]
    target = U @ np.diag(lam - sigma ** 2) @ U.T
    assert np.linalg.norm(W.T @ W - target) / np.linalg.norm(target) < 0.05
    np.testing.assert_allclose(b, x.mean(0), atol=0.03)
    gram = W @ W.T
    assert abs(gram[0, 1]) < 0.05 * np.sqrt(gram[0, 0] * gram[1, 1])
    gap = exact_log_px(W, b, sigma, x).mean() - model.elbo(data, n_samples=2000).numpy().mean()
    assert -0.01 < gap < 0.03


def test_samples_follow_the_exact_marginal():
    """x ~ p(x) = N(b, W^T W + sigma^2 I) for the linear-Gaussian VAE; mean=True gives z W + b."""
    sigma = 0.4
    model = linear_vae(3, 2, sigma=sigma, seed=2)
    W, b = decoder_weights(model)
    x = model.sample(20000, rng=np.random.default_rng(0)).numpy()
    assert x.shape == (20000, 3)
    cov = W.T @ W + sigma ** 2 * np.eye(3)
    np.testing.assert_allclose(x.mean(0), b, atol=4 * np.sqrt(np.diag(cov) / 20000).max())
    np.testing.assert_allclose(np.cov(x.T), cov, atol=0.05 * np.abs(cov).max())
    whitened = np.linalg.solve(np.linalg.cholesky(cov), (x - b).T).T      # N(0, I) if the law is right
    for d in range(3):
        assert stats.kstest(whitened[:, d], "norm").pvalue > 1e-3
    means = model.sample(20000, rng=np.random.default_rng(0), mean=True).numpy()
    np.testing.assert_allclose(np.cov(means.T), W.T @ W, atol=0.05 * np.abs(cov).max())


def test_bernoulli_samples_and_reconstructions():
    model = small_vae(seed=3)
    draws = model.sample(50, rng=np.random.default_rng(1)).numpy()
    assert set(np.unique(draws)) <= {0.0, 1.0}
    probs = model.sample(50, rng=np.random.default_rng(1), mean=True).numpy()
    assert probs.min() > 0 and probs.max() < 1
    x = binary_data(4, 5)
    mu, _ = model.encode(x)
    np.testing.assert_allclose(model.reconstruct(x).numpy(), model.decoder.mean(mu).numpy(), rtol=1e-12)


def test_fit_lends_its_generator_so_a_seed_repeats_the_run():
    x = binary_data(40, 5, seed=1)
    runs = []
    for _ in range(2):
        model = small_vae(seed=0)
        history = td.train.fit(model, x, td.optim.Adam(model.parameters(), lr=0.01), epochs=2, batch_size=10,
                               seed=3, progress=False)
        runs.append((history["loss"], model.decoder.net[0].weight.numpy()))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    assert runs[0][0][-1] < runs[0][0][0]


# ----------------------------------------------------------------------------- errors

@pytest.mark.parametrize("bad, message", [
    (np.zeros((3, 4)), r"x must have shape \(N, 5\)"),
    (np.zeros((3, 5, 1)), r"x must have shape \(N, 5\)"),
    (np.full((3, 5), 0.5), "needs binary data"),
    (np.where(np.eye(3, 5) > 0, np.nan, 0.0), "non-finite entries .* in 3 of its 3 examples"),
])
def test_bad_batches_raise_clear_errors_and_change_nothing(bad, message):
    model = small_vae()
    assert_bad_batch_rejected(model, (model.loss, model.elbo, lambda x: model.log_importance_weights(x, 3)),
                              bad, message)


def test_bad_counts_noise_and_configuration():
    model = small_vae()
    x = binary_data(2, 5)
    for k in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="k must be an int >= 1"):
            model.log_importance_weights(x, k)
    with pytest.raises(ValueError, match="n_samples must be an int >= 1"):
        model.elbo(x, n_samples=0)
    with pytest.raises(ValueError, match=r"eps must have shape \(S, N, L\) = \(1, 2, 2\)"):
        model.elbo(x, n_samples=1, eps=np.zeros((1, 2, 3)))
    with pytest.raises(ValueError, match="differs from the decoder"):
        VAE(MLPEncoder(5, 3), MLPDecoder(2, 5))
    with pytest.raises(ValueError, match=r"reads examples of shape \(5,\) but the decoder writes \(6,\)"):
        VAE(MLPEncoder(5, 2), MLPDecoder(2, 6))
    with pytest.raises(ValueError, match='kl="closed_form" needs the N\\(0, I\\) prior'):
        VAE(MLPEncoder(5, 2), MLPDecoder(2, 5), prior=GaussianPrior(2), kl="closed_form")
    with pytest.raises(TypeError, match="has no sample"):
        VAE(MLPEncoder(5, 2), MLPDecoder(2, 5), prior=type("OnlyLogProb", (), {"log_prob": lambda self, z: z})())
    with pytest.raises(ValueError, match="beta must be a number >= 0"):
        VAE(MLPEncoder(5, 2), MLPDecoder(2, 5), beta=-1)
    with pytest.raises(ValueError, match="sigma > 0"):
        MLPDecoder(2, 5, likelihood="gaussian")
    with pytest.raises(ValueError, match="likelihood must be one of"):
        MLPDecoder(2, 5, likelihood="poisson")
    with pytest.raises(ValueError, match="divisible by 2\\^len\\(channels\\) = 4"):
        ConvEncoder((1, 6, 6), 2, channels=(2, 2))
    with pytest.raises(ValueError, match="needs data on its 256 levels"):
        small_vae("discretized_logistic").elbo(np.full((2, 5), 0.001))


def test_mixture_prior_plugs_into_the_monte_carlo_kl():
    """Any object with log_prob (summed over L) and sample works as the prior: the Monte Carlo
    KL with the same draws equals 1/S sum_s [log q(z_s|x) - log p(z_s)]."""
    class MixturePrior:
        latent_dim = 2
        mixture = MixtureOfGaussians(np.zeros(3), np.array([[1.0, 0.0], [-1.0, 0.5], [0.0, -1.0]]),
                                     np.full((3, 2), -0.5))

        def log_prob(self, z):
            return self.mixture.log_prob(z)

        def sample(self, n, rng=None):
            return self.mixture.sample((n,), rng=rng)

    model = small_vae(prior=MixturePrior())
    assert model.kl == "monte_carlo"
    x = binary_data(3, 5)
    eps = np.random.default_rng(0).standard_normal((4, 3, 2))
    mu, log_var = model.encode(x)
    z = mu.numpy() + np.exp(0.5 * log_var.numpy()) * eps
    log_q = stats.norm(mu.numpy(), np.exp(0.5 * log_var.numpy())).logpdf(z).sum(-1)
    log_p = np.log(sum(stats.multivariate_normal(m, np.exp(-1.0) * np.eye(2)).pdf(z) for m in
                       MixturePrior.mixture.means.numpy()) / 3)
    np.testing.assert_allclose(model.elbo_terms(x, eps=eps)[1].numpy(), (log_q - log_p).mean(0), rtol=1e-6)
    assert model.sample(4, rng=np.random.default_rng(1)).shape == (4, 5)


def test_repr_is_a_short_summary():
    text = repr(small_vae())
    assert text.startswith("VAE(latent_dim=2, event_shape=(5,), prior=StandardNormalPrior, kl='closed_form'")
    assert "parameters" in text and "[" not in text.splitlines()[0]


def test_loss_matches_on_every_device(device):
    model = small_vae()
    x = binary_data(3, 5)
    eps = np.random.default_rng(0).standard_normal((1, 3, 2))
    expected = model.elbo(x, eps=eps).numpy()
    model.to(device)
    np.testing.assert_allclose(model.elbo(x, eps=eps).numpy(), expected, rtol=1e-10)
    assert model.sample(3, rng=np.random.default_rng(0)).device == device
