"""Multimodal VAE: the product of Gaussian experts (with the prior) equals the normalised
pointwise product of the densities (quadrature in 1-D and 2-D); a missing modality drops out
exactly; the sub-sampled objective is the sum of the subsets' ELBOs; with a one-dimensional
code the importance-sampled log-likelihood of any subset meets its quadrature value; label
accuracy from the image alone and generation from the label on a toy, two image halves completing
each other; gradients to second order."""
import numpy as np
import pytest

import tinydgm as td
from tinydgm import optim
from tinydgm.models.hybrid.multimodal_vae import CategoricalDecoder, MultimodalVAE, product_of_experts
from tinydgm.models.latent import MLPDecoder, MLPEncoder
from tinydgm.models.latent.vae import kl_standard_normal
from tinydgm.testing import swapped_weights
from tinydgm.train import fit


def normal_pdf(z, mu, var):
    return np.exp(-0.5 * (z - mu) ** 2 / var) / np.sqrt(2 * np.pi * var)


def tiny(latent_dim=2, seed=0, hidden=8):
    rng = np.random.default_rng(seed)
    encoders = [MLPEncoder((6,), latent_dim, hidden=(hidden,), rng=rng, dtype="float64"),
                MLPEncoder((3,), latent_dim, hidden=(hidden,), rng=rng, dtype="float64")]
    decoders = [MLPDecoder(latent_dim, (6,), hidden=(hidden,), rng=rng, dtype="float64"),
                CategoricalDecoder(latent_dim, 3, hidden=(hidden,), rng=rng, dtype="float64")]
    return MultimodalVAE(encoders, decoders, rng=np.random.default_rng(seed + 1))


def toy_data(n, seed):
    """6 binary pixels, the pair 2y, 2y + 1 mostly on for label y in {0, 1, 2}; label one-hot."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    p = np.where(np.arange(6)[None, :] // 2 == y[:, None], 0.95, 0.05)
    return (rng.random((n, 6)) < p).astype(np.float64), np.eye(3)[y], y


# ----------------------------------------------------------------------------- the product of experts

def test_product_of_experts_is_the_normalised_product_of_densities_in_1d():
    mus, variances = [1.5, -0.7, 3.0], [0.5, 2.0, 4.0]
    mu, log_var = product_of_experts([td.tensor([m], dtype="float64") for m in mus],
                                     [td.tensor([np.log(v)], dtype="float64") for v in variances])
    z = np.linspace(-12, 12, 200001)
    product = normal_pdf(z, 0.0, 1.0) * np.prod([normal_pdf(z, m, v) for m, v in zip(mus, variances)], axis=0)
    density = product / np.trapezoid(product, z)
    np.testing.assert_allclose(density, normal_pdf(z, mu.numpy()[0], np.exp(log_var.numpy()[0])), atol=1e-8)


def test_product_of_experts_is_the_normalised_product_of_densities_in_2d():
    mus = np.array([[0.8, -1.0], [-0.5, 2.0]])
    variances = np.array([[0.3, 1.5], [2.0, 0.4]])
    mu, log_var = product_of_experts([td.tensor(m[None], dtype="float64") for m in mus],
                                     [td.tensor(np.log(v)[None], dtype="float64") for v in variances])
    g = np.linspace(-8, 8, 801)
    z1, z2 = np.meshgrid(g, g, indexing="ij")
    product = normal_pdf(z1, 0, 1) * normal_pdf(z2, 0, 1)
    for m, v in zip(mus, variances):
        product = product * normal_pdf(z1, m[0], v[0]) * normal_pdf(z2, m[1], v[1])
    density = product / (product.sum() * (g[1] - g[0]) ** 2)
    var = np.exp(log_var.numpy()[0])
    expected = normal_pdf(z1, mu.numpy()[0, 0], var[0]) * normal_pdf(z2, mu.numpy()[0, 1], var[1])
    np.testing.assert_allclose(density, expected, atol=1e-6)


def test_a_missing_modality_drops_out_exactly():
    model = tiny()
    x, y, _ = toy_data(5, 1)
    mu_x, log_var_x = model.encoders[0](td.tensor(x))
    mu, log_var = model.posterior((x, None))
    expected = product_of_experts([mu_x], [log_var_x])              # the prior and q(z | x) only
    np.testing.assert_array_equal(mu.numpy(), expected[0].numpy())
    np.testing.assert_array_equal(log_var.numpy(), expected[1].numpy())
    # the ELBO of the image alone never touches the label's encoder or decoder
    eps = td.tensor(np.random.default_rng(2).standard_normal((3, 5, 2)))
    loss = -model.elbo((x, None), eps=eps).sum()
    loss.backward()
    assert all(p.grad is None for p in model.encoders[1].parameters() + model.decoders[1].parameters())
    assert all(p.grad is not None for p in model.encoders[0].parameters() + model.decoders[0].parameters())
    z = mu.numpy() + np.exp(0.5 * log_var.numpy()) * eps.numpy()
    by_hand = model.decoders[0].log_prob(td.tensor(x), td.tensor(z)).numpy().mean(axis=0) - \
        kl_standard_normal(mu, log_var).numpy()
    np.testing.assert_allclose(model.elbo((x, None), eps=eps).numpy(), by_hand, rtol=1e-12)


def test_objective_sums_the_elbos_of_all_modalities_and_of_each_alone():
    model = tiny()
    x, y, _ = toy_data(4, 3)
    eps = [td.tensor(np.random.default_rng(s).standard_normal((1, 4, 2))) for s in range(3)]
    flat = np.concatenate([x, y], axis=1)
    expected = (model.elbo((x, y), eps=eps[0]) + model.elbo((x, None), eps=eps[1]) +
                model.elbo((None, y), eps=eps[2])).numpy()
    np.testing.assert_allclose(model.objective(flat, eps=eps).numpy(), expected, rtol=1e-12)
    assert model.subsets([x, None]) == [(0,)]


def test_weights_scale_each_reconstruction_term_of_the_objective_only():
    model = tiny()
    x, y, _ = toy_data(4, 4)
    eps = td.tensor(np.random.default_rng(5).standard_normal((1, 4, 2)))
    mu, log_var = model.posterior((x, y))
    z = mu + (0.5 * log_var).exp() * eps
    log_px, log_py = (model.decoders[m].log_prob(td.tensor(v), z).numpy()[0] for m, v in ((0, x), (1, y)))
    kl = kl_standard_normal(mu, log_var).numpy()
    np.testing.assert_allclose(model.elbo((x, y), eps=eps, weights=(1.0, 10.0)).numpy(), log_px + 10 * log_py - kl,
                               rtol=1e-12)
    np.testing.assert_allclose(model.elbo((x, y), eps=eps).numpy(), log_px + log_py - kl, rtol=1e-12)
    weighted = tiny()
    weighted.weights = [1.0, 10.0]
    eps3 = [eps] * 3
    expected = sum(model.elbo(s, eps=eps, weights=(1.0, 10.0)) for s in ((x, y), (x, None), (None, y))).numpy()
    np.testing.assert_allclose(weighted.objective(np.concatenate([x, y], axis=1), eps=eps3).numpy(), expected,
                               rtol=1e-12)
    with pytest.raises(ValueError, match="weights"):
        MultimodalVAE(list(model.encoders), list(model.decoders), weights=(1.0,))


# ----------------------------------------------------------------------------- likelihood

def log_marginal_by_quadrature(model, xs, subset, n_nodes=80):
    nodes, weights = np.polynomial.hermite_e.hermegauss(n_nodes)
    n = xs[subset[0]].shape[0]
    z = td.tensor(np.repeat(nodes[:, None, None], n, axis=1))
    with td.no_grad():
        log_px_z = sum(model.decoders[m].log_prob(td.tensor(xs[m]), z).numpy() for m in subset)
    a = log_px_z + np.log(weights / np.sqrt(2 * np.pi))[:, None]
    top = a.max(axis=0)
    return top + np.log(np.exp(a - top).sum(axis=0))


@pytest.mark.parametrize("present", [None, (0,), (1,)])
def test_importance_estimate_of_any_subset_meets_quadrature(present):
    model = tiny(latent_dim=1, seed=4)
    for encoder in model.encoders:      # broad experts: q(z | x_S) covers the posterior, so the weights stay tame
        encoder.net[-1].bias.data[1:] = 3.0
    x, y, _ = toy_data(6, 5)
    flat = np.concatenate([x, y], axis=1)
    exact = log_marginal_by_quadrature(model, [x, y], present or (0, 1))
    estimate = model.log_prob_estimate(flat, k=3000, rng=np.random.default_rng(6), present=present).numpy()
    np.testing.assert_allclose(estimate, exact, atol=0.03)


def test_gradcheck_and_gradgradcheck_of_the_objective_with_noise_fixed():
    model = tiny()
    x, y, _ = toy_data(3, 7)
    flat = np.concatenate([x, y], axis=1)
    eps = [td.tensor(np.random.default_rng(s).standard_normal((1, 3, 2))) for s in range(3)]
    layers = [model.encoders[0].net[0], model.encoders[1].net[2], model.decoders[0].net[0], model.decoders[1].net[2]]
    weights = [m.weight for m in layers]

    def objective(*ws):
        with swapped_weights(layers, ws):
            return model.objective(flat, eps=eps)
    td.gradcheck(objective, weights)
    td.gradgradcheck(lambda w0, w1: objective(w0, w1, *weights[2:]).sum(), weights[:2])


# ----------------------------------------------------------------------------- generation

def test_categorical_decoder_draws_follow_its_probabilities():
    decoder = CategoricalDecoder(2, 3, hidden=(4,), rng=np.random.default_rng(8), dtype="float64")
    z = td.tensor(np.tile([[0.5, -1.0]], (30000, 1)))
    draws = decoder.sample(z, np.random.default_rng(9)).numpy()
    assert (draws.sum(axis=1) == 1).all()
    np.testing.assert_allclose(draws.mean(axis=0), decoder.mean(z[:1]).numpy()[0], atol=0.01)


def test_label_from_the_image_alone_and_image_from_the_label_on_a_toy():
    model = tiny(seed=10, hidden=16)
    x, y, labels = toy_data(600, 11)
    fit(model, np.concatenate([x, y], axis=1), optim.Adam(model.parameters(), lr=3e-2), epochs=30, batch_size=50,
        seed=0, progress=False)
    x_test, y_test, labels_test = toy_data(300, 12)
    accuracy = (model.predict((x_test, None), 1).numpy() == labels_test).mean()
    assert accuracy > 0.9, accuracy
    means = model.conditional((None, np.eye(3)), 0).numpy()          # E[x | z = mu(q(z | y))], one row per label
    for k in range(3):          # label k turns on pixels 2k and 2k + 1, and only those
        assert means[k, 2 * k:2 * k + 2].min() > 0.5 > np.delete(means[k], [2 * k, 2 * k + 1]).max(), means[k]
    samples = model.sample_modalities(4, rng=np.random.default_rng(13))
    assert samples[0].shape == (4, 6) and samples[1].shape == (4, 3) and (samples[1].numpy().sum(axis=1) == 1).all()


def test_bad_inputs_are_named():
    model = tiny()
    with pytest.raises(ValueError, match="every modality is missing"):
        model.posterior((None, None))
    with pytest.raises(ValueError, match="one-hot"):
        model.elbo((None, np.full((2, 3), 0.5)))
    with pytest.raises(ValueError, match=r"\(N, 9\)"):
        model.loss(np.zeros((2, 8)))
    with pytest.raises(ValueError, match="2 modalities"):
        model.elbo((np.zeros((2, 6)),))


def test_image_halves_as_two_modalities_complete_each_other_on_a_toy():
    # top and bottom halves of a 2 x 4 "image": the bottom row repeats the top row, which is one of 3 patterns
    rng = np.random.default_rng(20)
    patterns = np.array([[1, 1, 0, 0], [0, 0, 1, 1], [1, 0, 1, 0]], dtype=np.float64)
    k = rng.integers(0, 3, 600)
    top, bottom = patterns[k], patterns[k]
    init = np.random.default_rng(21)
    model = MultimodalVAE([MLPEncoder(4, 2, hidden=(16,), rng=init, dtype="float64") for _ in range(2)],
                          [MLPDecoder(2, 4, hidden=(16,), rng=init, dtype="float64") for _ in range(2)],
                          rng=np.random.default_rng(22))
    fit(model, np.concatenate([top, bottom], axis=1), optim.Adam(model.parameters(), lr=3e-2), epochs=20,
        batch_size=50, seed=0, progress=False)
    completed = model.conditional((patterns, None), 1).numpy()          # E[bottom | z = mean of q(z | top)]
    np.testing.assert_array_equal(completed > 0.5, patterns > 0.5)
    completed = model.conditional((None, patterns), 0).numpy()          # and the top from the bottom
    np.testing.assert_array_equal(completed > 0.5, patterns > 0.5)
