"""The IWAE bound (tinydgm/models/latent/iwae.py): F_k rises with k towards the exact log p(x)
of a linear-Gaussian VAE, F_1 is the ELBO, the gradient is the normalised-importance-weight
one, gradchecks for several k with the noise held fixed, training on F_k, bad input."""
import numpy as np
import pytest

import tinydgm as td
from latent_helpers import with_parameters
from linear_vae_oracle import decoder_weights, exact_log_px, linear_vae, set_encoder_to_posterior
from tinydgm.models.latent import IWAE, MLPDecoder, MLPEncoder, StandardNormalPrior, VAE, log_mean_exp


def gaussian_data(n, n_dims, seed=0):
    return np.random.default_rng(seed).standard_normal((n, n_dims)) + 0.3


def small_iwae(k=3, seed=0):
    gen = np.random.default_rng(seed)
    encoder = MLPEncoder(4, 2, hidden=(3,), activation="tanh", rng=gen, dtype="float64")
    decoder = MLPDecoder(2, 4, hidden=(3,), activation="tanh", likelihood="gaussian", sigma="learned", rng=gen,
                         dtype="float64")
    return IWAE(encoder, decoder, k=k, rng=np.random.default_rng(seed + 1))


def test_log_mean_exp_is_stable_and_exact():
    log_w = td.tensor([[1000.0, -1000.0], [1000.0 + np.log(3.0), -999.0]], dtype="float64")
    np.testing.assert_allclose(log_mean_exp(log_w, axis=0).numpy(),
                               [1000.0 + np.log(2.0), -1000.0 + np.log((1 + np.e) / 2)], rtol=1e-14)


def test_bound_rises_with_k_towards_the_exact_log_likelihood():
    """F_1 < F_3 < F_10 < F_100 <= log p(x), and log p(x) - F_100 is small (q wider than the
    posterior, so the weights are bounded and F_k -> log p(x); Burda et al. theorem 1).
    Each F_k is the mean of R draws, computed at once on R copies of the batch."""
    sigma, n = 0.5, 3
    model = linear_vae(4, 2, sigma=sigma, seed=2, model=IWAE)
    set_encoder_to_posterior(model, sigma, mean_shift=np.array([0.4, -0.3]), log_var_shift=np.log(2.0))
    x = gaussian_data(n, 4, seed=1)
    W, b = decoder_weights(model)
    log_px = exact_log_px(W, b, sigma, x)
    gen = np.random.default_rng(0)
    bounds, errors = [], []
    for k in (1, 3, 10, 100):
        repeats = 90000 // k
        draws = model.iwae_bound(np.tile(x, (repeats, 1)), k, rng=gen).numpy().reshape(repeats, n)
        bounds.append(draws.mean(0))
        errors.append(draws.std(0) / np.sqrt(repeats))
    bounds, errors = np.array(bounds), np.array(errors)
    assert np.all(np.diff(bounds, axis=0) > 3 * np.sqrt(errors[1:] ** 2 + errors[:-1] ** 2)), (bounds, errors)
    assert np.all(bounds[-1] <= log_px + 3 * errors[-1])
    assert np.all(log_px - bounds[0] > 0.3)                             # a real gap at k = 1 ...
    assert np.all(log_px - bounds[-1] < 0.03 * (log_px - bounds[0]))     # ... almost closed at k = 100


def test_k_equal_one_is_the_elbo_with_a_monte_carlo_kl():
    model = small_iwae()
    x = gaussian_data(5, 4)
    eps = np.random.default_rng(0).standard_normal((1, 5, 2))
    mc = VAE(model.encoder, model.decoder, prior=StandardNormalPrior(2), kl="monte_carlo")
    np.testing.assert_allclose(model.iwae_bound(x, eps=eps).numpy(), mc.elbo(x, eps=eps).numpy(), rtol=1e-12)


def test_the_same_draws_give_a_higher_bound_than_their_average_log_weight():
    """Jensen, draw by draw: log mean_i w_i >= mean_i log w_i (= the ELBO with a Monte Carlo KL)."""
    model = small_iwae()
    x = gaussian_data(6, 4)
    eps = np.random.default_rng(1).standard_normal((8, 6, 2))
    log_w = model.log_importance_weights(x, 8, eps=eps).numpy()
    bound = model.iwae_bound(x, eps=eps).numpy()
    np.testing.assert_allclose(bound, np.log(np.exp(log_w).mean(0)), rtol=1e-12)
    assert np.all(bound >= log_w.mean(0))


def test_gradient_is_the_normalised_importance_weighted_one():
    """grad F_k = sum_i w~_i grad log w_i with w~ = softmax(log w): the engine's gradient
    through logsumexp equals the sum built from each weight's own gradient."""
    model = small_iwae(k=5)
    x = gaussian_data(1, 4, seed=3)
    eps = np.random.default_rng(2).standard_normal((5, 1, 2))
    params = model.parameters()
    model.zero_grad()
    model.iwae_bound(x, eps=eps).sum().backward()
    engine = [p.grad.numpy().copy() for p in params]
    log_w = model.log_importance_weights(x, 5, eps=eps)
    weights = np.exp(log_w.numpy()[:, 0] - log_w.numpy()[:, 0].max())
    weights /= weights.sum()
    expected = [np.zeros_like(g) for g in engine]
    for i in range(5):
        for total, g in zip(expected, td.grad(log_w[i, 0], params, retain_graph=True)):
            total += weights[i] * g.numpy()
    for a, b in zip(engine, expected):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-14)
    assert weights.max() < 0.99                        # several samples carry weight


@pytest.mark.parametrize("k", [1, 3, 7])
def test_bound_gradcheck_and_gradgradcheck_with_the_noise_held_fixed(k):
    model = small_iwae(k=k)
    x = gaussian_data(2, 4, seed=k)
    eps = np.random.default_rng(k).standard_normal((k, 2, 2))
    fn, inputs = with_parameters(model, lambda: model.iwae_bound(x, eps=eps))
    assert td.gradcheck(fn, inputs)
    assert td.gradgradcheck(fn, inputs)


def test_training_on_the_bound_raises_it():
    gen = np.random.default_rng(4)
    x = gen.standard_normal((64, 2)) @ gen.standard_normal((2, 4)) + 0.1 * gen.standard_normal((64, 4))
    model = small_iwae(k=5, seed=2)
    eps = np.random.default_rng(5).standard_normal((5, 64, 2))
    before = model.iwae_bound(x, eps=eps).numpy().mean()
    td.train.fit(model, x, td.optim.Adam(model.parameters(), lr=0.02), epochs=30, batch_size=32, seed=0,
                 progress=False)
    assert model.iwae_bound(x, eps=eps).numpy().mean() > before + 1.0
    assert model.loss(x).shape == ()


def test_bad_k():
    with pytest.raises(ValueError, match="k must be an int >= 1, got 0"):
        small_iwae(k=0)
    model = small_iwae()
    for k in (0, -3, 1.5):
        with pytest.raises(ValueError, match="k must be an int >= 1"):
            model.iwae_bound(gaussian_data(2, 4), k)
    with pytest.raises(ValueError, match="non-finite"):
        model.loss(np.full((2, 4), np.nan))
