"""Parallel multiscale PixelCNN: each pixel group depends only on earlier groups and coarser
scales (from the engine's Jacobian), normalisation over every binary 4x4 image, samples against
the exact distribution (chi-square), the log-likelihood term by term, O(log N) network
evaluations per sample, gradients to second order."""
import numpy as np
import pytest

import tinydgm as td
from contracts import all_binary, assert_autoregressive, assert_normalised, chi_square_pvalue, dependency_matrix
from tinydgm.models.autoregressive.multiscale_pixelcnn import OFFSETS, GroupNetwork, MultiscalePixelCNN, interleave


def tiny(image_size=(4, 4), base_size=(1, 1), seed=0, sharpen=1.0):
    model = MultiscalePixelCNN(image_size, base_size, channels=4, n_residual=1, kernel_size=3, group_channels=4,
                               group_layers=1, rng=np.random.default_rng(seed), dtype="float64")
    if sharpen != 1.0:          # larger output weights: a distribution far from uniform
        for name, p in model.named_parameters():
            if "conv_out" in name:
                p.data *= sharpen
    return model


def stage_of_each_pixel(image_size, base_size):
    """order[pixel] = when its conditional is evaluated: base pixels in raster order, then per
    scale (coarse to fine) groups 2, 3, 4; pixels of one group share a stage."""
    h, w = image_size
    hb, wb = base_size
    n_scales = int(np.log2(h // hb))
    order = np.full((h, w), -1)
    step = 2 ** n_scales
    order[::step, ::step] = np.arange(hb * wb).reshape(hb, wb)          # the base image
    stage = hb * wb
    for k in range(n_scales - 1, -1, -1):
        step = 2 ** k
        for dy, dx in OFFSETS[1:]:
            order[dy * step::2 * step, dx * step::2 * step] = stage
            stage += 1
    assert (order >= 0).all()
    return order.reshape(-1)


@pytest.mark.parametrize("image_size, base_size", [((4, 4), (1, 1)), ((8, 8), (2, 2)), ((4, 8), (1, 2))])
def test_each_group_depends_only_on_earlier_groups_and_coarser_scales(image_size, base_size):
    model = tiny(image_size, base_size)
    x = np.random.default_rng(1).random((2, 1) + image_size)
    order = stage_of_each_pixel(image_size, base_size)
    dep = assert_autoregressive(lambda t: model.logits(t), x, order)
    # not vacuous: the last group of the finest scale reads the pixels of every earlier group next to it
    h, w = image_size
    last = (1 * w + 1)                                   # pixel (1, 1): group 4 of the finest scale
    for neighbour in (0, 1, w):                          # (0, 0) group 1, (0, 1) group 2, (1, 0) group 3
        assert dep[last, neighbour], f"pixel (1, 1) ignores pixel {divmod(neighbour, w)}"
    assert not dep[1, w]                                 # group 2 at (0, 1) cannot read group 3 at (1, 0)


def test_pixels_within_a_group_are_independent():
    model = tiny((8, 8), (2, 2))
    dep = dependency_matrix(lambda t: model.logits(t), np.random.default_rng(2).random((2, 1, 8, 8)))
    group4 = [i * 8 + j for i in range(1, 8, 2) for j in range(1, 8, 2)]
    assert not dep[np.ix_(group4, group4)].any()


@pytest.mark.parametrize("image_size, base_size", [((4, 4), (1, 1)), ((4, 4), (2, 2))])
def test_normalised_over_all_binary_4x4_images(image_size, base_size):
    model = tiny(image_size, base_size, sharpen=3.0)
    assert_normalised(lambda x: model.log_prob(x.reshape(-1, 1, 4, 4)).numpy(), 16)


def test_log_prob_terms_add_up_to_log_prob_and_name_every_scale():
    model = tiny((8, 8), (2, 2), sharpen=2.0)
    x = (np.random.default_rng(3).random((3, 1, 8, 8)) < 0.5).astype(np.float64)
    terms = model.log_prob_terms(x)
    assert [name for name, _ in terms] == ["base 2x2", "4x4 group 2", "4x4 group 3", "4x4 group 4",
                                           "8x8 group 2", "8x8 group 3", "8x8 group 4"]
    np.testing.assert_allclose(sum(t.numpy() for _, t in terms), model.log_prob(x).numpy(), rtol=1e-12)
    # the base term is the base PixelCNN on x[::4, ::4]
    np.testing.assert_allclose(terms[0][1].numpy(), model.base.log_prob(x[:, :, ::4, ::4]).numpy(), rtol=1e-12)


@pytest.mark.parametrize("image_size, base_size", [((2, 2), (1, 1)), ((2, 4), (1, 2))])
def test_samples_follow_the_exact_distribution(image_size, base_size):
    model = tiny(image_size, base_size, seed=4, sharpen=3.0)
    d = image_size[0] * image_size[1]
    log_p = model.log_prob(all_binary(d).reshape((-1, 1) + image_size)).numpy()
    samples = model.sample(20000, rng=np.random.default_rng(5)).numpy().reshape(20000, d)
    assert chi_square_pvalue(samples, log_p) > 1e-3


def test_interleave_inverts_the_group_split():
    x = np.random.default_rng(6).random((2, 3, 6, 8))
    groups = [td.tensor(x[:, :, dy::2, dx::2]) for dy, dx in OFFSETS]
    np.testing.assert_array_equal(interleave(groups).numpy(), x)


def test_sampling_evaluates_each_group_network_once_per_scale(monkeypatch):
    model = tiny((8, 8), (2, 2))
    calls = []
    original = GroupNetwork.forward
    monkeypatch.setattr(GroupNetwork, "forward", lambda self, known: calls.append(known.shape) or original(self, known))
    x = model.sample(3, rng=np.random.default_rng(7))
    assert x.shape == (3, 1, 8, 8) and set(np.unique(x.numpy())) <= {0.0, 1.0}
    # 2 scales x groups 2, 3, 4, each one pass over the whole batch with 1, 2, 3 known groups
    assert calls == [(3, 1, 2, 2), (3, 2, 2, 2), (3, 3, 2, 2), (3, 1, 4, 4), (3, 2, 4, 4), (3, 3, 4, 4)]
    assert model.n_network_evaluations() == 1 + 6
    assert model.n_network_evaluations("naive") == 4 + 6


def test_sample_is_seeded_and_the_base_samplers_agree():
    model = tiny((8, 8), (2, 2), sharpen=2.0)
    fast = model.sample(4, rng=np.random.default_rng(8)).numpy()
    np.testing.assert_array_equal(model.sample(4, rng=np.random.default_rng(8), base_method="naive").numpy(), fast)


def test_gradcheck_log_prob_and_gradgradcheck_loss_wrt_parameters():
    model = tiny((4, 4), (2, 2))
    x = (np.random.default_rng(9).random((2, 1, 4, 4)) < 0.5).astype(np.float64)
    params = dict(model.named_parameters())
    names = ["base.conv_in.weight", "upsamplers.0.0.convs.0.weight", "upsamplers.0.2.conv_out.bias"]

    def log_prob(*values):
        saved = {n: params[n].data for n in names}
        for n, v in zip(names, values):
            module, attr = model._owner(n)
            object.__setattr__(module, attr, v)
        try:
            return model.log_prob(x)
        finally:
            for n in names:
                module, attr = model._owner(n)
                object.__setattr__(module, attr, params[n])
    td.gradcheck(log_prob, [params[n] for n in names])
    td.gradgradcheck(lambda w: log_prob(params[names[0]], w, params[names[2]]).sum(), [params[names[1]]])


def test_loss_is_the_mean_negative_log_prob_and_bad_input_is_named():
    model = tiny((4, 4), (2, 2))
    x = (np.random.default_rng(10).random((3, 16)) < 0.5).astype(np.float64)      # flat rows accepted
    np.testing.assert_allclose(model.loss(x).item(), -model.log_prob(x).numpy().mean(), rtol=1e-12)
    with pytest.raises(ValueError, match="binary"):
        model.log_prob(np.full((2, 1, 4, 4), 0.5))
    with pytest.raises(ValueError, match=r"\(N, 1, 4, 4\)"):
        model.log_prob(np.zeros((2, 1, 4, 5)))
    with pytest.raises(ValueError, match="base_size times 2"):
        MultiscalePixelCNN((12, 12), (5, 5))
