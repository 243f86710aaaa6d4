"""Hierarchical PixelCNN: x_hat is the max-pooled image, the mixture sum_{x_hat} p(x_hat) p(x | x_hat)
is normalised over every binary 2x6 image, the lecture's bound ln p(x_hat) + ln p(x | x_hat) lies
below it, ancestral samples follow the exact mixture (chi-square), the conditional PixelCNN is
causal in x, gradients of the bound to second order."""
import numpy as np
import pytest

import tinydgm as td
from contracts import all_binary, assert_autoregressive, assert_normalised, chi_square_pvalue
from tinydgm.models.autoregressive.hierarchical_pixelcnn import HierarchicalPixelCNN
from tinydgm.testing import swapped_weights


def tiny(image_size=(4, 4), seed=0, sharpen=1.0):
    model = HierarchicalPixelCNN(image_size, 2, channels=4, n_residual=1, kernel_size=3, cond_channels=4,
                                 cond_layers=2, cond_kernel_size=3, context_channels=3,
                                 rng=np.random.default_rng(seed), dtype="float64")
    for name, p in model.named_parameters():
        if "conv_out" in name:
            p.data *= sharpen
    return model


def test_high_level_representation_is_the_max_pooled_image():
    x = (np.random.default_rng(1).random((3, 1, 4, 6)) < 0.3).astype(np.float64)
    by_hand = x.reshape(3, 1, 2, 2, 3, 2).max(axis=(3, 5))
    np.testing.assert_array_equal(tiny((4, 6)).high_level(x).numpy(), by_hand)


def test_the_mixture_is_normalised_over_all_binary_2x6_images():
    model = tiny((2, 6), sharpen=2.0)
    log_p = assert_normalised(lambda x: model.log_prob_exact(x.reshape(-1, 1, 2, 6)).numpy(), 12)
    bound = model.log_prob_lower_bound(all_binary(12).reshape(-1, 1, 2, 6)).numpy()
    assert (bound <= log_p + 1e-12).all()
    assert np.exp(bound).sum() < 1.0                 # the bound leaves mass on the other x_hat


def test_bound_terms_are_reported_separately():
    model = tiny()
    x = (np.random.default_rng(2).random((5, 1, 4, 4)) < 0.5).astype(np.float64)
    log_p_xhat, log_p_x_xhat = model.log_prob_terms(x)
    x_hat = x.reshape(5, 1, 2, 2, 2, 2).max(axis=(3, 5))
    np.testing.assert_allclose(log_p_xhat.numpy(), model.prior.log_prob(x_hat).numpy(), rtol=1e-12)
    np.testing.assert_allclose((log_p_xhat + log_p_x_xhat).numpy(), model.log_prob_lower_bound(x).numpy(), rtol=1e-12)
    np.testing.assert_allclose(model.bits_per_dim(x).numpy(),
                               -model.log_prob_lower_bound(x).numpy() / (16 * np.log(2)), rtol=1e-12)
    np.testing.assert_allclose(model.loss(x).item(), -model.log_prob_lower_bound(x).numpy().mean(), rtol=1e-12)


@pytest.mark.parametrize("image_size", [(2, 2), (2, 4)])
def test_ancestral_samples_follow_the_exact_mixture(image_size):
    model = tiny(image_size, seed=3, sharpen=3.0)
    d = image_size[0] * image_size[1]
    log_p = model.log_prob_exact(all_binary(d).reshape((-1, 1) + image_size)).numpy()
    assert abs(np.exp(log_p).sum() - 1) < 1e-9
    samples = model.sample(20000, rng=np.random.default_rng(4)).numpy().reshape(20000, d)
    assert chi_square_pvalue(samples, log_p) > 1e-3


def test_the_conditional_pixelcnn_is_causal_in_x():
    model = tiny()
    x_hat = td.tensor((np.random.default_rng(5).random((2, 1, 2, 2)) < 0.5).astype(np.float64))
    c = model._context(x_hat)
    assert_autoregressive(lambda t: model.conditional.logits(t, c), np.random.default_rng(6).random((2, 1, 4, 4)),
                          np.arange(16))


def test_gradcheck_and_gradgradcheck_of_the_bound():
    model = tiny()
    x = (np.random.default_rng(7).random((2, 1, 4, 4)) < 0.5).astype(np.float64)
    modules = [model.prior.conv_in, model.context, model.conditional.masked[1]]
    weights = [m.weight for m in modules]

    def bound(*ws):
        with swapped_weights(modules, ws):
            return model.log_prob_lower_bound(x)
    td.gradcheck(bound, weights)
    td.gradgradcheck(lambda w1, w2: bound(weights[0], w1, w2).sum(), weights[1:])


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="factor"):
        HierarchicalPixelCNN((5, 5), 2)
    model = tiny()
    with pytest.raises(ValueError, match="binary"):
        model.loss(np.full((2, 1, 4, 4), 0.5))
    with pytest.raises(ValueError, match="log_prob_exact"):
        tiny((10, 10)).log_prob_exact(np.zeros((1, 1, 10, 10)))
