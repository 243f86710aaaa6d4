"""The PixelCNN conditioned on a spatial map c: raster-order causality in x with c read
everywhere (engine Jacobian), normalisation over all binary 3x3 images for a fixed c, the
window sampler equals the naive one and follows the exact distribution, L = 0 is factorised,
gradients to second order."""
import numpy as np
import pytest

import tinydgm as td
from contracts import all_binary, assert_autoregressive, assert_normalised, chi_square_pvalue, dependency_matrix
from tinydgm.models.autoregressive.conditional_pixelcnn import ConditionalPixelCNN


def tiny(n_layers=2, seed=0, kernel_size=3):
    return ConditionalPixelCNN(2, channels=4, n_layers=n_layers, kernel_size=kernel_size,
                               rng=np.random.default_rng(seed), dtype="float64")


def cond_map(n, h, w, seed=1):
    return td.tensor(np.random.default_rng(seed).standard_normal((n, 2, h, w)))


@pytest.mark.parametrize("n_layers, kernel_size", [(1, 3), (3, 3), (2, 5)])
def test_logits_are_autoregressive_in_x_and_read_c(n_layers, kernel_size):
    model = tiny(n_layers, kernel_size=kernel_size)
    c = cond_map(2, 4, 4)
    x = np.random.default_rng(2).random((2, 1, 4, 4))
    assert_autoregressive(lambda t: model.logits(t, c), x, np.arange(16))
    dep_c = dependency_matrix(lambda t: model.logits(td.tensor(x), t), c.numpy())     # (16, 2 * 16)
    assert dep_c[5].reshape(2, 16)[:, 5].all()          # pixel (1, 1) reads c at its own position


def test_zero_layers_is_the_factorised_decoder():
    model = tiny(0)
    c = cond_map(2, 3, 3)
    dep = dependency_matrix(lambda t: model.logits(t, c), np.random.default_rng(3).random((2, 1, 3, 3)))
    assert not dep.any()
    assert model.reach() == (0, 0, 0)


@pytest.mark.parametrize("n_layers", [0, 2])
def test_normalised_over_all_binary_3x3_images_for_a_fixed_c(n_layers):
    model = tiny(n_layers)
    c = td.tensor(np.broadcast_to(cond_map(1, 3, 3).numpy(), (512, 2, 3, 3)).copy())
    assert_normalised(lambda x: model.log_prob(td.tensor(x.reshape(-1, 1, 3, 3)), c).numpy(), 9)


def test_window_sampler_equals_naive_and_follows_the_exact_distribution():
    model = tiny(2, seed=4)
    for p in model.conv_out.parameters():
        p.data *= 3.0
    c1 = cond_map(1, 2, 2, seed=5).numpy()
    c = td.tensor(np.broadcast_to(c1, (20000, 2, 2, 2)).copy())
    window = model.sample(c, np.random.default_rng(6), method="window").numpy()
    naive = model.sample(c[:50], np.random.default_rng(6), method="naive").numpy()
    np.testing.assert_array_equal(model.sample(c[:50], np.random.default_rng(6), method="window").numpy(), naive)
    log_p = model.log_prob(td.tensor(all_binary(4).reshape(-1, 1, 2, 2)),
                           td.tensor(np.broadcast_to(c1, (16, 2, 2, 2)).copy())).numpy()
    assert chi_square_pvalue(window.reshape(-1, 4), log_p) > 1e-3


def test_window_sampler_on_a_larger_image_equals_naive():
    model = tiny(3, seed=7, kernel_size=5)
    c = cond_map(3, 6, 7, seed=8)
    np.testing.assert_array_equal(model.sample(c, np.random.default_rng(9), method="window").numpy(),
                                  model.sample(c, np.random.default_rng(9), method="naive").numpy())


def test_gradcheck_and_gradgradcheck_log_prob():
    model = tiny(2)
    x = td.tensor((np.random.default_rng(10).random((2, 1, 3, 3)) < 0.5).astype(np.float64))
    c = td.tensor(np.random.default_rng(11).standard_normal((2, 2, 3, 3)), requires_grad=True)
    w = model.masked[1].weight
    v = model.cond[1].weight

    def log_prob(c, w, v):
        saved = model.masked[1].weight, model.cond[1].weight
        object.__setattr__(model.masked[1], "weight", w)
        object.__setattr__(model.cond[1], "weight", v)
        try:
            return model.log_prob(x, c)
        finally:
            object.__setattr__(model.masked[1], "weight", saved[0])
            object.__setattr__(model.cond[1], "weight", saved[1])
    td.gradcheck(log_prob, [c, w, v])
    td.gradgradcheck(lambda c, w: log_prob(c, w, v).sum(), [c, w])


def test_bad_inputs_are_named():
    model = tiny(2)
    with pytest.raises(ValueError, match="c must have shape"):
        model.logits(td.tensor(np.zeros((2, 1, 3, 3))), cond_map(2, 3, 4))
    with pytest.raises(ValueError, match="n_layers"):
        ConditionalPixelCNN(2, n_layers=-1)
    with pytest.raises(ValueError, match="method"):
        model.sample(cond_map(1, 2, 2), method="fast")
