"""ELBO surgery (tinydgm/models/latent/elbo_surgery.py) against quadrature: on small VAEs with
affine encoders and decoders and a 1-2-D latent, every term (the average KL, KL(q_agg || p),
I_q, the beta-VAE decoder KL) is an integral computed on a fine grid with NumPy/SciPy, so the
theorem is checked to high precision and the Monte Carlo estimates against exact values."""
import numpy as np
import pytest
from scipy import special, stats

import tinydgm as td
from linear_vae_oracle import encoder_outputs, linear_vae, set_encoder
from tinydgm.models.latent import (AggregatedPosterior, MixtureOfGaussiansPrior, MLPDecoder, MLPEncoder, VAE,
                                   beta_vae_decomposition, elbo_surgery, elbo_surgery_table,
                                   format_elbo_surgery_table)
from tinydgm.models.latent.posteriors import PlanarPosterior


def grid(latent_dim, half_width=14.0, step=0.04):
    """Midpoints of a regular grid on [-half_width, half_width]^L: points (M, L) and the cell volume."""
    g = np.arange(-half_width, half_width, step) + step / 2
    points = np.stack(np.meshgrid(*[g] * latent_dim, indexing="ij"), -1).reshape(-1, latent_dim)
    return points, step ** latent_dim


def log_q_on_grid(mu, var, points):
    """log q(z|x_i) at every grid point, (n, M), for diagonal Gaussian posteriors."""
    return stats.norm(mu[:, None, :], np.sqrt(var)[:, None, :]).logpdf(points[None]).sum(-1)


def log_prior_on_grid(model, points):
    with td.no_grad():
        return model.prior.log_prob(td.tensor(points, dtype="float64")).numpy()


def surgery_by_quadrature(log_q, log_p, volume):
    """(average KL, KL(q_agg || p), I_q) as integrals on the grid, from log q(z|x_i) (n, M) and log p(z) (M,)."""
    n = log_q.shape[0]
    q = np.exp(log_q)
    log_q_agg = special.logsumexp(log_q, axis=0) - np.log(n)
    average_kl = (q * (log_q - log_p)).sum(1).mean() * volume
    marginal_kl = (np.exp(log_q_agg) * (log_q_agg - log_p)).sum() * volume
    mutual_info = (q * (log_q - log_q_agg)).sum(1).mean() * volume
    return average_kl, marginal_kl, mutual_info


def gaussian_data(n, n_dims, seed=0):
    return np.random.default_rng(seed).standard_normal((n, n_dims)) * 1.5 + 0.3


def within(estimate, se, exact, k=4.0):
    return abs(estimate - exact) < k * se, (estimate, se, exact)


# ----------------------------------------------------------------------------- the theorem

@pytest.mark.parametrize("prior", ["standard_normal", "mixture"])
def test_the_surgery_identity_by_quadrature_and_its_monte_carlo_estimates(prior):
    """1/n sum_i KL(q(z|x_i) || p) = KL(q_agg || p) + I_q (isachenko-l07 "ELBO surgery"), with
    every term an integral on a 2-D grid; elbo_surgery's estimates within 4 standard errors."""
    gen = np.random.default_rng(0)
    kw = {} if prior == "standard_normal" else {"prior": MixtureOfGaussiansPrior(2, 3, rng=gen, dtype="float64")}
    model = linear_vae(4, 2, sigma=0.7, seed=3, **kw)
    x = gaussian_data(6, 4, seed=1)
    mu, var = encoder_outputs(model, x)
    points, volume = grid(2)
    log_q = log_q_on_grid(mu, var, points)
    average_kl, marginal_kl, mutual_info = surgery_by_quadrature(log_q, log_prior_on_grid(model, points), volume)
    assert abs(average_kl - (marginal_kl + mutual_info)) < 1e-8
    assert 0.1 < mutual_info < np.log(6) - 0.1 and marginal_kl > 0.01          # a case with every term alive
    if prior == "standard_normal":                                             # the closed form (eq. 30)
        np.testing.assert_allclose(average_kl, (0.5 * (mu ** 2 + var - 1 - np.log(var)).sum(1)).mean(), rtol=1e-8)
    s = elbo_surgery(model, x, n_samples=4000, rng=np.random.default_rng(1))
    assert s.n == 6 and s.n_samples == 4000 and s.log_n == np.log(6)
    for estimate, se, exact in [(s.average_kl, s.average_kl_se, average_kl),
                                (s.marginal_kl, s.marginal_kl_se, marginal_kl),
                                (s.mutual_info, s.mutual_info_se, mutual_info)]:
        ok, detail = within(estimate, se, exact)
        assert ok and se < 0.02, detail
    # the per-sample identity makes the estimates add up exactly
    assert abs(s.average_kl - s.marginal_kl - s.mutual_info) < 1e-10
    np.testing.assert_allclose(s.elbo, s.reconstruction - s.average_kl, rtol=1e-12)


def test_estimates_are_the_formulas_on_the_given_noise():
    """With eps held fixed the estimates are the sample means of log q(z|x_i) - log p(z),
    log q_agg(z) - log p(z), log q(z|x_i) - log q_agg(z) at z_is = mu_i + sigma_i eps_is, and
    the standard errors those of a stratified mean."""
    model = linear_vae(3, 2, sigma=0.5, seed=2)
    x = gaussian_data(5, 3, seed=4)
    eps = np.random.default_rng(5).standard_normal((7, 5, 2))
    mu, var = encoder_outputs(model, x)
    z = mu + np.sqrt(var) * eps                                                 # (S, n, L)
    log_q_all = stats.norm(mu[:, None], np.sqrt(var)[:, None]).logpdf(z[:, None, :, :]).sum(-1)  # (S, j, i)
    log_q = np.einsum("sii->si", log_q_all)
    log_q_agg = special.logsumexp(log_q_all, axis=1) - np.log(5)
    log_p = stats.norm().logpdf(z).sum(-1)
    s = elbo_surgery(model, x, eps=eps)
    for estimate, se, terms in [(s.average_kl, s.average_kl_se, log_q - log_p),
                                (s.marginal_kl, s.marginal_kl_se, log_q_agg - log_p),
                                (s.mutual_info, s.mutual_info_se, log_q - log_q_agg)]:
        np.testing.assert_allclose(estimate, terms.mean(), rtol=1e-10)
        np.testing.assert_allclose(se, np.sqrt(terms.var(0, ddof=1).sum() / 7) / 5, rtol=1e-10)


def test_chunking_does_not_change_the_estimates():
    model = linear_vae(3, 2, sigma=0.5, seed=2)
    x = gaussian_data(5, 3, seed=4)
    eps = np.random.default_rng(5).standard_normal((9, 5, 2))
    whole, chunked = elbo_surgery(model, x, eps=eps), elbo_surgery(model, x, eps=eps, work=60)
    for name in ("elbo", "average_kl", "marginal_kl", "mutual_info", "mutual_info_se"):
        np.testing.assert_allclose(getattr(chunked, name), getattr(whole, name), rtol=1e-12)


# ----------------------------------------------------------------------------- I_q in [0, log n]

def test_mutual_information_is_zero_when_the_code_ignores_x():
    """q(z|x) the same for every x: q_agg = q(z|x_i), so every term of I_q is exactly 0 and the
    whole average KL is the marginal KL."""
    model = linear_vae(4, 2, seed=1)
    set_encoder(model, np.zeros((4, 2)), np.array([0.3, -0.5]), np.array([-0.4, 0.2]))
    s = elbo_surgery(model, gaussian_data(8, 4), n_samples=50, rng=np.random.default_rng(0))
    assert abs(s.mutual_info) < 1e-12 and s.mutual_info_se < 1e-12
    np.testing.assert_allclose(s.marginal_kl, s.average_kl, rtol=1e-12)


def test_mutual_information_reaches_log_n_for_separated_posteriors():
    """Narrow posteriors far apart: each z identifies its x_i, I_q = log n (the upper bound),
    and no estimate exceeds it by more than rounding (q_agg's components come from the
    mixture's GEMM form, log q(z|x_i) from the direct one: they differ by ~1e-12 here)."""
    model = linear_vae(2, 2, seed=1)
    set_encoder(model, 10 * np.eye(2), np.zeros(2), np.array([-6.0, -6.0]))
    x = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.5]])
    s = elbo_surgery(model, x, n_samples=200, rng=np.random.default_rng(0))
    assert np.log(5) - 1e-9 < s.mutual_info <= np.log(5) + 1e-9
    general = elbo_surgery(linear_vae(4, 2, seed=3), gaussian_data(6, 4), n_samples=200, rng=np.random.default_rng(1))
    assert 0 < general.mutual_info < general.log_n


def test_the_aggregated_posterior_as_the_prior_removes_the_marginal_kl():
    """p = q_agg over the same points (isachenko-l07 "Optimal VAE prior"): KL(q_agg || p) = 0
    exactly, the average KL is I_q, and the average ELBO rises by KL(q_agg || N(0, I))."""
    model = linear_vae(4, 2, sigma=0.7, seed=3)
    x = gaussian_data(6, 4, seed=1)
    optimal = VAE(model.encoder, model.decoder, prior=AggregatedPosterior(model.encoder, x))
    eps = np.random.default_rng(2).standard_normal((3000, 6, 2))
    standard, best = elbo_surgery(model, x, eps=eps), elbo_surgery(optimal, x, eps=eps)
    assert abs(best.marginal_kl) < 1e-12 and best.marginal_kl_se < 1e-12
    np.testing.assert_allclose(best.average_kl, best.mutual_info, rtol=1e-12)
    np.testing.assert_allclose(best.mutual_info, standard.mutual_info, rtol=1e-12)    # I_q does not see p
    # exact gain by quadrature: KL(q_agg || N(0, I))
    mu, var = encoder_outputs(model, x)
    points, volume = grid(2)
    _, marginal_kl, _ = surgery_by_quadrature(log_q_on_grid(mu, var, points), stats.norm().logpdf(points).sum(1),
                                              volume)
    gain = best.elbo - standard.elbo
    assert abs(gain - marginal_kl) < 4 * standard.marginal_kl_se, (gain, marginal_kl)


def test_training_only_the_prior_lowers_the_marginal_kl_and_nothing_else():
    """The prior enters the average ELBO only through KL(q_agg || p) (isachenko-l07 "ELBO
    surgery", ELBO revisiting): fitting a learnable mixture prior with the encoder and decoder
    frozen lowers the marginal KL, leaves I_q and the reconstruction term exactly as they were,
    and raises the ELBO by exactly the marginal KL it removed (same draws before and after)."""
    model = linear_vae(4, 2, sigma=0.7, seed=3,
                       prior=MixtureOfGaussiansPrior(2, 4, init_std=0.5, rng=np.random.default_rng(0), dtype="float64"))
    x = gaussian_data(6, 4, seed=1)
    eps = np.random.default_rng(2).standard_normal((200, 6, 2))
    before = elbo_surgery(model, x, eps=eps)
    optimizer = td.optim.Adam(model.prior.parameters(), lr=0.05)
    data = td.tensor(x, dtype="float64")
    for _ in range(150):
        optimizer.zero_grad()
        model.loss(data).backward()
        optimizer.step()
    after = elbo_surgery(model, x, eps=eps)
    assert after.marginal_kl < 0.5 * before.marginal_kl, (before.marginal_kl, after.marginal_kl)
    np.testing.assert_allclose(after.mutual_info, before.mutual_info, rtol=1e-12)
    np.testing.assert_allclose(after.reconstruction, before.reconstruction, rtol=1e-12)
    np.testing.assert_allclose(after.elbo - before.elbo, before.marginal_kl - after.marginal_kl, rtol=1e-9)


# ----------------------------------------------------------------------------- beta-VAE

def bernoulli_vae(beta, seed=0):
    """Affine encoder and decoder, Bernoulli observations of 5 binary pixels, a 2-D latent."""
    gen = np.random.default_rng(seed)
    encoder = MLPEncoder(5, 2, hidden=(), rng=gen, dtype="float64")
    decoder = MLPDecoder(2, 5, hidden=(), rng=gen, dtype="float64")
    for p in decoder.parameters():
        p.data = 2.0 * p.data + gen.standard_normal(p.shape)
    return VAE(encoder, decoder, beta=beta)


def distinct_binary_rows(n, n_dims, seed=0):
    gen = np.random.default_rng(seed)
    while True:
        x = (gen.random((n, n_dims)) < 0.5).astype(np.float64)
        if len({tuple(r) for r in x}) == n:
            return x


@pytest.mark.parametrize("beta", [0.5, 4.0])
def test_beta_vae_decomposition_by_quadrature(beta):
    """kuleshov-l12 "beta-VAE": -E_q(x,z) log p(x|z) + beta E_x KL(q(z|x) || p(z)) =
    (beta - 1) I_q + beta KL(q_agg || p) + E_q(z) KL(q(x|z) || p(x|z)) + log n, every term an
    integral on a grid (the decoder's log p(x|z) in NumPy from its weights); the Monte Carlo
    estimates within 4 standard errors of them."""
    model = bernoulli_vae(beta, seed=1)
    x = distinct_binary_rows(6, 5, seed=2)
    mu, var = encoder_outputs(model, x)
    points, volume = grid(2)
    log_q = log_q_on_grid(mu, var, points)                                     # (n, M)
    layer = model.decoder.net[0]
    logits = points @ layer.weight.numpy() + layer.bias.numpy()                 # (M, D)
    log_px_z = x @ logits.T - np.logaddexp(0, logits).sum(1)                    # (n, M): log p(x_j|z)
    log_p = stats.norm().logpdf(points).sum(1)
    average_kl, marginal_kl, mutual_info = surgery_by_quadrature(log_q, log_p, volume)
    q = np.exp(log_q)
    loss = -(q * log_px_z).sum(1).mean() * volume + beta * average_kl
    log_q_xz = log_q - special.logsumexp(log_q, axis=0)                         # log q(x_j|z)
    q_agg = q.mean(0)
    decoder_kl = (q_agg * (np.exp(log_q_xz) * (log_q_xz - log_px_z)).sum(0)).sum() * volume
    total = (beta - 1) * mutual_info + beta * marginal_kl + decoder_kl + np.log(6)
    assert abs(loss - total) < 1e-7, (loss, total)
    assert decoder_kl > 0.05                                                   # every term alive
    d = beta_vae_decomposition(model, x, n_samples=3000, rng=np.random.default_rng(3))
    assert d.beta == beta and d.data_entropy == np.log(6)
    for estimate, se, exact in [(d.loss, d.loss_se, loss), (d.mutual_info, d.mutual_info_se, mutual_info),
                                (d.marginal_kl, d.marginal_kl_se, marginal_kl),
                                (d.decoder_kl, d.decoder_kl_se, decoder_kl)]:
        ok, detail = within(estimate, se, exact)
        assert ok and se < 0.05, detail
    combined_se = np.sqrt(d.loss_se ** 2 + (beta - 1) ** 2 * d.mutual_info_se ** 2 + beta ** 2 * d.marginal_kl_se ** 2
                          + d.decoder_kl_se ** 2)
    assert abs(d.total - d.loss) < 4 * combined_se


def test_beta_vae_loss_is_the_models_beta_objective():
    """The decomposition's loss is -model.objective averaged over the same draws."""
    model = bernoulli_vae(3.0, seed=4)
    x = distinct_binary_rows(4, 5, seed=5)
    eps = np.random.default_rng(6).standard_normal((5, 4, 2))
    mc = VAE(model.encoder, model.decoder, prior=MixtureOfGaussiansPrior(2, 1, init_std=0.0, dtype="float64"),
             beta=3.0)                                    # an N(0, I) prior through the Monte Carlo KL
    d = beta_vae_decomposition(mc, x, eps=eps)
    expected = -np.mean([mc.objective(x, eps=eps[s:s + 1]).numpy() for s in range(5)])
    np.testing.assert_allclose(d.loss, expected, rtol=1e-10)


# ----------------------------------------------------------------------------- the table and errors

def test_table_rows_for_a_list_of_vaes():
    x = gaussian_data(6, 4, seed=1)
    models = [linear_vae(4, 2, seed=3), linear_vae(4, 2, seed=3, prior=MixtureOfGaussiansPrior(2, 2, dtype="float64"))]
    models.append(VAE(models[0].encoder, models[0].decoder, prior=AggregatedPosterior(models[0].encoder, x)))
    rows = elbo_surgery_table(models, x, n_samples=20, rng=np.random.default_rng(0))
    assert [r["prior"] for r in rows] == ["StandardNormalPrior", "MixtureOfGaussiansPrior", "AggregatedPosterior"]
    for r in rows:
        np.testing.assert_allclose(r["average_kl"], r["marginal_kl"] + r["mutual_info"], rtol=1e-10)
        np.testing.assert_allclose(r["elbo"], r["reconstruction"] - r["average_kl"], rtol=1e-10)
        assert r["log_n"] == np.log(6) and r["mutual_info_se"] > 0
    assert rows[2]["marginal_kl"] == pytest.approx(0, abs=1e-12)
    text = format_elbo_surgery_table(rows)
    assert text.count("\n") == 4 and "| AggregatedPosterior |" in text and "KL(q_agg || p)" in text
    named = elbo_surgery_table(models[:1], x, names=["plain"], n_samples=3)
    assert named[0]["model"] == "plain"


def test_bad_arguments():
    model = linear_vae(4, 2, seed=3)
    x = gaussian_data(6, 4)
    with pytest.raises(ValueError, match="n_samples must be an int >= 2"):
        elbo_surgery(model, x, n_samples=1)
    with pytest.raises(ValueError, match=r"eps must have shape \(S, n, L\) = \(3, 6, 2\)"):
        elbo_surgery(model, x, n_samples=3, eps=np.zeros((3, 6, 3)))
    with pytest.raises(ValueError, match=r"x must have shape \(N, 4\)"):
        elbo_surgery(model, x[:, :3])
    with pytest.raises(ValueError, match="beta must be a number >= 0"):
        beta_vae_decomposition(model, x, beta=-1.0)
    flow = VAE(model.encoder, model.decoder, posterior=PlanarPosterior(4, 2, n_layers=1, dtype="float64"))
    with pytest.raises(ValueError, match="a flow posterior \\(PlanarPosterior\\) has no density at an arbitrary z"):
        elbo_surgery(flow, x)
    with pytest.raises(ValueError, match="2 models but 1 names"):
        elbo_surgery_table([model, model], x, names=["a"])
