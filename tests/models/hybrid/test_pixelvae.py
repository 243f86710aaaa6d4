"""PixelVAE: the decoder p(x | z) is autoregressive in x and normalised for every z; with a
one-dimensional code the marginal p(x) = int p(z) p(x | z) dz is computed by Gauss-Hermite
quadrature, and the ELBO lies below it, the importance-sampled estimate meets it and ancestral
samples follow it (chi-square); the ELBO surgery (KL, I_q) applies; gradients to second order."""
import numpy as np
import pytest

import tinydgm as td
from contracts import all_binary, assert_autoregressive, assert_normalised, chi_square_pvalue, dependency_matrix
from tinydgm.models.hybrid.pixelvae import PixelCNNDecoder, PixelVAE
from tinydgm.models.latent import MLPDecoder, MLPEncoder
from tinydgm.models.latent.elbo_surgery import elbo_surgery
from tinydgm.testing import swapped_weights


def tiny(size=(2, 2), latent_dim=1, n_layers=2, n_upsample=1, seed=0, sharpen=1.0):
    rng = np.random.default_rng(seed)
    encoder = MLPEncoder((1,) + size, latent_dim, hidden=(8,), rng=rng, dtype="float64")
    decoder = PixelCNNDecoder(latent_dim, (1,) + size, n_layers=n_layers, channels=4, cond_channels=3, hidden=8,
                              n_upsample=n_upsample, kernel_size=3, rng=rng, dtype="float64")
    for p in decoder.parameters():
        p.data *= sharpen
    return PixelVAE(encoder, decoder, rng=np.random.default_rng(seed + 100))


def log_marginal_by_quadrature(model, x, n_nodes=80):
    """ln p(x) = ln int N(z; 0, 1) p(x | z) dz by Gauss-Hermite (latent_dim 1)."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(n_nodes)           # weight exp(-z^2 / 2)
    z = td.tensor(np.repeat(nodes[:, None, None], x.shape[0], axis=1))      # (K, N, 1)
    with td.no_grad():
        log_px_z = model.decoder.log_prob(td.tensor(x), z).numpy()          # (K, N)
    log_w = np.log(weights / np.sqrt(2 * np.pi))[:, None]
    top = (log_px_z + log_w).max(axis=0)
    return top + np.log(np.exp(log_px_z + log_w - top).sum(axis=0))


def test_decoder_is_autoregressive_in_x_for_a_fixed_code():
    model = tiny((4, 4), latent_dim=2, n_layers=3, n_upsample=2)
    f = model.decoder.features(td.tensor(np.random.default_rng(1).standard_normal((2, 2))))
    assert_autoregressive(lambda t: model.decoder.pixelcnn.logits(t, f), np.random.default_rng(2).random((2, 1, 4, 4)),
                          np.arange(16))


def test_zero_pixelcnn_layers_is_the_plain_vae_decoder():
    model = tiny((4, 4), latent_dim=2, n_layers=0, n_upsample=2)
    f = model.decoder.features(td.tensor(np.random.default_rng(3).standard_normal((2, 2))))
    dep = dependency_matrix(lambda t: model.decoder.pixelcnn.logits(t, f), np.random.default_rng(4).random((2, 1, 4, 4)))
    assert not dep.any()


@pytest.mark.parametrize("n_layers", [0, 2])
def test_decoder_is_normalised_over_all_binary_3x3_images_for_every_code(n_layers):
    model = tiny((3, 3), latent_dim=2, n_layers=n_layers, n_upsample=0, sharpen=2.0)
    for z in ([0.3, -1.2], [2.0, 0.5]):
        z_all = td.tensor(np.tile(np.array(z)[None, :], (512, 1)))
        assert_normalised(lambda x: model.decoder.log_prob(td.tensor(x.reshape(-1, 1, 3, 3)), z_all).numpy(), 9)


def test_elbo_below_and_importance_estimate_at_the_quadrature_marginal():
    model = tiny(sharpen=2.0)
    x = all_binary(4).reshape(-1, 1, 2, 2)
    exact = log_marginal_by_quadrature(model, x)
    assert abs(np.exp(exact).sum() - 1) < 1e-9                              # p(x) is normalised too
    with td.no_grad():
        elbo = model.elbo(x, n_samples=4000, rng=np.random.default_rng(5)).numpy()
    assert (elbo < exact).all()
    estimate = model.log_prob_estimate(x, k=3000, rng=np.random.default_rng(6)).numpy()
    np.testing.assert_allclose(estimate, exact, atol=0.03)


def test_ancestral_samples_follow_the_marginal():
    model = tiny(seed=7, sharpen=2.0)
    log_p = log_marginal_by_quadrature(model, all_binary(4).reshape(-1, 1, 2, 2))
    samples = model.sample(20000, rng=np.random.default_rng(8)).numpy().reshape(20000, 4)
    assert chi_square_pvalue(samples, log_p) > 1e-3
    naive = model.sample(30, rng=np.random.default_rng(9), method="naive").numpy()
    np.testing.assert_array_equal(model.sample(30, rng=np.random.default_rng(9)).numpy(), naive)


def test_elbo_surgery_splits_the_kl_into_marginal_kl_and_mutual_information():
    model = tiny((4, 4), latent_dim=2, n_upsample=2)
    x = (np.random.default_rng(10).random((20, 1, 4, 4)) < 0.5).astype(np.float64)
    s = elbo_surgery(model, x, n_samples=50, rng=np.random.default_rng(11))
    assert abs(s.average_kl - (s.marginal_kl + s.mutual_info)) < 1e-9
    assert 0 <= s.mutual_info <= s.log_n
    assert abs(s.elbo - (s.reconstruction - s.average_kl)) < 1e-9


def test_gradcheck_and_gradgradcheck_of_the_elbo_with_noise_fixed():
    model = tiny((4, 4), latent_dim=2, n_upsample=2)
    x = (np.random.default_rng(12).random((2, 1, 4, 4)) < 0.5).astype(np.float64)
    eps = td.tensor(np.random.default_rng(13).standard_normal((2, 2, 2)))
    layers = [model.encoder.net[0], model.decoder.dense[0], model.decoder.upsample[0],
              model.decoder.pixelcnn.masked[1], model.decoder.pixelcnn.cond[0]]
    weights = [m.weight for m in layers]

    def elbo(*ws):
        with swapped_weights(layers, ws):
            return model.elbo(x, eps=eps)
    td.gradcheck(elbo, weights)
    td.gradgradcheck(lambda w0, w3: elbo(w0, *weights[1:3], w3, weights[4]).sum(), [weights[0], weights[3]])


def test_loss_trains_and_bad_inputs_are_named():
    model = tiny((4, 4), latent_dim=2, n_upsample=2)
    x = (np.random.default_rng(14).random((8, 1, 4, 4)) < 0.5).astype(np.float64)
    assert np.isfinite(model.loss(x).item())
    assert model.reconstruct(x[:3]).shape == (3, 1, 4, 4)
    with pytest.raises(ValueError, match="binary"):
        model.loss(np.full((2, 1, 4, 4), 0.5))
    with pytest.raises(TypeError, match="PixelCNNDecoder"):
        PixelVAE(MLPEncoder(4, 2), MLPDecoder(2, 4))
    with pytest.raises(ValueError, match="divisible"):
        PixelCNNDecoder(2, (1, 6, 6), n_upsample=2)
    with pytest.raises(TypeError, match="autoregressive"):
        model.decoder.distribution(td.tensor(np.zeros((1, 2))))
