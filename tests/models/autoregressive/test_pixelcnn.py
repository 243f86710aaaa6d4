"""PixelCNN and Gated PixelCNN: raster-order causality from the engine's Jacobian, the
blind spot of the ungated model and its absence in the gated one, normalisation over all
binary 3x3 images (and all 8-bit 1x2 images), samples against exact probabilities, fast
sampler == naive sampler, gradients of log_prob w.r.t. parameters, class conditioning,
bits/dim."""
import math

import numpy as np
import pytest

import tinydgm as td
from contracts import all_binary, assert_autoregressive, assert_normalised, chi_square_pvalue, dependency_matrix
from tinydgm.kernels import pixelcnn_sampler
from tinydgm.models.autoregressive.gated_pixelcnn import GatedPixelCNN
from tinydgm.models.autoregressive.pixelcnn import PAPER_CONFIG, PixelCNN


def tiny_pixelcnn(seed=0, **kw):
    args = dict(channels=4, n_residual=1, kernel_size=3, image_size=(3, 3), dtype="float64",
                rng=np.random.default_rng(seed))
    args.update(kw)
    return PixelCNN(**args)


def tiny_gated(seed=0, **kw):
    args = dict(channels=4, n_layers=2, kernel_size=3, first_kernel_size=3, image_size=(3, 3), dtype="float64",
                rng=np.random.default_rng(seed))
    args.update(kw)
    return GatedPixelCNN(**args)


def with_parameters(model, names, fn):
    """fn() evaluated with the named parameters replaced by gradcheck's inputs."""
    def call(*values):
        saved = []
        for name, value in zip(names, values):
            module, attr = model._owner(name)
            saved.append((module, attr, getattr(module, attr)))
            object.__setattr__(module, attr, value)
        try:
            return fn()
        finally:
            for module, attr, old in saved:
                object.__setattr__(module, attr, old)
    return call


def pixel_dependency(model, h, w, seed=0, labels=None):
    """dep[i, j, i', j'] = logits at (i, j) depend on the pixel (i', j')."""
    x = np.random.default_rng(seed).random((2, 1, h, w))
    dep = dependency_matrix(lambda t: model.logits(t, labels), x)
    return dep.reshape(h, w, h, w)


def window_before(h, w, i, j, radius):
    return [(a, b) for a in range(max(0, i - radius), i + 1) for b in range(max(0, j - radius), min(w, j + radius + 1))
            if a * w + b < i * w + j]


# ----------------------------------------------------------------------------- causality

@pytest.mark.parametrize("make", [
    lambda: tiny_pixelcnn(n_residual=2, image_size=(4, 5)),
    lambda: tiny_pixelcnn(kernel_size=7, image_size=(4, 5)),
    lambda: tiny_gated(image_size=(4, 5)),
    lambda: tiny_gated(first_kernel_size=7, image_size=(4, 5)),
])
def test_logits_are_autoregressive_in_raster_order(make):
    model = make()
    x = np.random.default_rng(1).random((2, 1, 4, 5))
    dep = assert_autoregressive(model.logits, x, order=np.arange(20))
    assert dep[19, :19].sum() >= 10            # the last pixel sees a good part of the image


def test_categorical_logits_are_autoregressive():
    """256 logits per pixel (outputs in blocks of D, level-major), 2x2 levels as input."""
    for model in (tiny_pixelcnn(output="categorical256", image_size=(2, 2)),
                  tiny_gated(output="categorical256", image_size=(2, 2))):
        x = np.random.default_rng(2).integers(0, 256, (2, 1, 2, 2)).astype(np.float64)
        fn = lambda t: model.logits(t).transpose(0, 2, 1, 3, 4)          # noqa: E731  (N, K, C, H, W)
        dep = assert_autoregressive(fn, x, order=np.arange(4), outputs_per_input=256)
        assert dep[255 * 4 + 3, :3].all()


def test_rgb_pixelcnn_orders_colours_inside_a_pixel():
    """R, G, B of pixel i: subpixel (c, i) sees every colour of x_<i and colours < c of pixel i."""
    model = tiny_pixelcnn(in_channels=3, channels=6, image_size=(3, 3))
    x = np.random.default_rng(3).random((2, 3, 3, 3))
    pixel = np.arange(9)
    order = (pixel[None, :] * 3 + np.arange(3)[:, None]).reshape(-1)     # input (c, i) at position 3 i + c
    dep = assert_autoregressive(model.logits, x, order=order)
    centre = 4
    np.testing.assert_array_equal(dep[[centre, 9 + centre, 18 + centre]][:, [centre, 9 + centre, 18 + centre]],
                                  np.tril(np.ones((3, 3), bool), -1))


def test_ungated_pixelcnn_has_a_blind_spot():
    # 3x3 type A + 2 blocks of 3x3 type B: three masked layers (as in tests/nn/test_masked_conv.py)
    dep = pixel_dependency(tiny_pixelcnn(n_residual=2, image_size=(7, 7)), 7, 7)
    i, j = 3, 3
    seen = dep[i, j]
    blind = [p for p in window_before(7, 7, i, j, 3) if not seen[p]]
    assert blind == [(i - 2, j + 3), (i - 1, j + 2), (i - 1, j + 3)]
    assert seen[i - 2, j + 2] and seen[i - 3, j + 3] and seen[i, j - 3]
    # the paper's 7x7 type-A first layer + 1 block: (i-1, j+4) precedes (i, j), lies within
    # the radius-4 window, and is never seen, while (i-2, j+4) is
    dep = pixel_dependency(tiny_pixelcnn(kernel_size=7, n_residual=1, image_size=(9, 9)), 9, 9)
    i, j = 4, 4
    assert not dep[i, j, i - 1, j + 4] and dep[i, j, i - 2, j + 4] and dep[i, j, i - 1, j + 3]


@pytest.mark.parametrize("first, n_layers, radius, size", [(3, 3, 3, 7), (7, 2, 4, 9)])
def test_gated_pixelcnn_has_no_blind_spot(first, n_layers, radius, size):
    model = tiny_gated(first_kernel_size=first, n_layers=n_layers, image_size=(size, size))
    dep = pixel_dependency(model, size, size)
    i = j = size // 2
    seen = dep[i, j]
    assert all(seen[p] for p in window_before(size, size, i, j, radius))
    assert seen[i - 1, j + 2] and not seen[i, j] and not seen[i, j + 1] and not seen[i + 1].any()


# ----------------------------------------------------------------------------- normalisation

@pytest.mark.parametrize("make", [tiny_pixelcnn, tiny_gated, lambda: tiny_gated(n_classes=3)])
def test_normalised_over_all_binary_3x3_images(make):
    model = make()
    labels = None if model.n_classes is None else 2
    log_p = assert_normalised(lambda a: model.log_prob(a.reshape(-1, 1, 3, 3), labels).numpy(), 9, atol=1e-10)
    assert log_p.std() > 0.05                          # not the uniform distribution


@pytest.mark.parametrize("make", [tiny_pixelcnn, tiny_gated])
def test_categorical256_normalised_over_all_1x2_images(make):
    model = make(output="categorical256", image_size=(1, 2))
    levels = np.stack(np.meshgrid(np.arange(256), np.arange(256), indexing="ij"), -1).reshape(-1, 1, 1, 2)
    log_p = model.log_prob(levels).numpy()
    assert abs(np.exp(log_p).sum() - 1) < 1e-10
    # one conditional: sum over the 256 levels of the second pixel, first pixel fixed
    block = log_p.reshape(256, 256)[17]
    first = model.logits(levels[:1]).numpy()[0, 0, :, 0, 0]
    assert abs(np.logaddexp.reduce(block) - (first[17] - np.logaddexp.reduce(first))) < 1e-10


def test_categorical_log_prob_equals_log_softmax_by_hand():
    model = tiny_pixelcnn(output="categorical256", image_size=(2, 2))
    x = np.random.default_rng(4).integers(0, 256, (3, 1, 2, 2))
    logits = model.logits(x).numpy()                                    # (3, 1, 256, 2, 2)
    log_softmax = logits - np.logaddexp.reduce(logits, axis=2, keepdims=True)
    expected = np.take_along_axis(log_softmax, x[:, :, None], axis=2).sum(axis=(1, 2, 3, 4))
    np.testing.assert_allclose(model.log_prob(x).numpy(), expected, rtol=1e-12)
    np.testing.assert_allclose(model.log_prob(x.astype(np.float64)).numpy(), expected, rtol=1e-12)
    with pytest.raises(ValueError, match="integer levels"):
        model.log_prob(x + 0.5)


# ----------------------------------------------------------------------------- sampling

def test_samples_follow_the_exact_distribution():
    model = tiny_pixelcnn(channels=6, seed=5)
    log_p = model.log_prob(all_binary(9).reshape(-1, 1, 3, 3)).numpy()
    samples = model.sample(20000, np.random.default_rng(6), method="fast").numpy()
    assert samples.shape == (20000, 1, 3, 3) and set(np.unique(samples)) == {0.0, 1.0}
    assert chi_square_pvalue(samples.reshape(-1, 9), log_p) > 0.001
    # the test has power: samples from another model are rejected
    other = tiny_pixelcnn(channels=6, seed=7).log_prob(all_binary(9).reshape(-1, 1, 3, 3)).numpy()
    assert chi_square_pvalue(samples.reshape(-1, 9), other) < 1e-6


def test_conditional_samples_follow_the_exact_distribution():
    model = tiny_gated(n_classes=2, seed=8)
    log_p = model.log_prob(all_binary(9).reshape(-1, 1, 3, 3), 1).numpy()
    samples = model.sample(10000, np.random.default_rng(9), method="fast", labels=1).numpy()
    assert chi_square_pvalue(samples.reshape(-1, 9), log_p) > 0.001


@pytest.mark.parametrize("make, labels", [
    (lambda: tiny_pixelcnn(image_size=(7, 7)), None),
    (lambda: tiny_pixelcnn(kernel_size=5, n_residual=2, image_size=(7, 10)), None),
    (lambda: tiny_pixelcnn(output="categorical256", image_size=(6, 7)), None),
    (lambda: tiny_pixelcnn(in_channels=3, channels=6, output="categorical256", image_size=(6, 6)), None),
    (lambda: tiny_gated(n_classes=3, image_size=(8, 8)), [0, 1, 2, 1, 0, 2]),
    (lambda: tiny_gated(first_kernel_size=5, n_layers=3, image_size=(10, 13)), None),
    (lambda: tiny_gated(output="categorical256", image_size=(7, 9)), None),
])
def test_fast_and_window_samplers_equal_naive_sampler(make, labels):
    model = make()
    h, w = model.image_size
    up, left, right = model.reach()
    assert up < h - 1 and left + right + 1 < w          # the windows really are crops
    n = 6
    naive = model.sample(n, np.random.default_rng(10), method="naive", labels=labels).numpy()
    fast = model.sample(n, np.random.default_rng(10), method="fast", labels=labels).numpy()
    window = model.sample(n, np.random.default_rng(10), method="window", labels=labels).numpy()
    np.testing.assert_array_equal(fast, naive)
    np.testing.assert_array_equal(window, naive)
    assert len(np.unique(naive)) > 1
    different = model.sample(n, np.random.default_rng(11), method="fast", labels=labels).numpy()
    assert (different != naive).any()


def _sampled_cache(model, n, seed, labels=None):
    """Run the fast loop on a cache we keep, to inspect its maps afterwards."""
    h, w = model.image_size
    network = model.activation_cache(n, labels)
    u = np.random.default_rng(seed).random((n, model.in_channels, h, w))
    groups = [slice(g, g + 1) for g in range(model.in_channels)] if model.colour_ordered else [slice(None)]
    x = pixelcnn_sampler.sample_fast(network, u, model.n_levels, groups, model.dtype)
    return network, x


@pytest.mark.parametrize("make", [
    lambda: tiny_pixelcnn(kernel_size=5, n_residual=2, image_size=(6, 7)),
    lambda: tiny_pixelcnn(in_channels=3, channels=6, output="categorical256", image_size=(4, 5)),
])
def test_pixelcnn_cached_activations_equal_a_full_forward(make):
    """After sampling, every cached map (x as the first conv reads it, and each block's
    input b = relu(W_1 relu(a)) of its 3x3 conv) equals the full forward pass on the
    samples at EVERY position, in float64: each entry was computed once, when final."""
    model = make()
    network, x = _sampled_cache(model, 5, seed=21)
    x_in = x / 255 if model.n_levels > 2 else x
    a = model.conv_in(td.tensor(x_in))
    expected = [x_in]
    for block in model.blocks:
        expected.append(td.relu(block.reduce(td.relu(a))).numpy())
        a = block(a)
    maps = network.maps()
    assert len(maps) == len(expected) == model.n_residual + 1
    for cached, full in zip(maps, expected):
        assert cached.shape == full.shape and np.abs(full).max() > 0.1
        np.testing.assert_allclose(cached, full, rtol=0, atol=1e-12)


@pytest.mark.parametrize("make, labels", [
    (lambda: tiny_gated(first_kernel_size=5, n_layers=3, image_size=(6, 7)), None),
    (lambda: tiny_gated(n_classes=3, output="categorical256", image_size=(5, 5)), [2, 0, 1, 1]),
])
def test_gated_cached_activations_equal_a_full_forward(make, labels):
    """The gated cache: the horizontal maps h_l equal the full forward everywhere, the
    vertical maps v_l on rows 0 .. H-2 (row H - 1 of the vertical stack feeds no pixel
    and is never computed: it stays zero)."""
    model = make()
    n = 4
    network, x = _sampled_cache(model, n, seed=22, labels=labels)
    x_in = x / 255 if model.n_levels > 2 else x
    cond = model._cond(labels, n)
    v = h = td.tensor(x_in)
    expected_v, expected_h = [x_in], [x_in]
    for block in model.stack.blocks:
        v, h = block(v, h, cond)
        expected_v.append(v.numpy())
        expected_h.append(h.numpy())
    vertical, horizontal = network.maps()
    assert len(vertical) == len(horizontal) == model.n_layers
    height = model.image_size[0]
    for l in range(model.n_layers):
        np.testing.assert_allclose(horizontal[l], expected_h[l], rtol=0, atol=1e-12)
        np.testing.assert_allclose(vertical[l][:, :, :height - 1], expected_v[l][:, :, :height - 1], rtol=0, atol=1e-12)
        assert np.abs(expected_h[l]).max() > 0.1 and np.abs(expected_v[l][:, :, :height - 1]).max() > 0.1
    assert all((vertical[l][:, :, height - 1] == 0).all() for l in range(1, model.n_layers))


def test_fast_sampler_checks_its_cache():
    model = tiny_pixelcnn(image_size=(4, 4))
    network = model.activation_cache(3)
    with pytest.raises(ValueError, match="cache was built for 3 images of 4 x 4"):
        pixelcnn_sampler.sample_fast(network, np.zeros((2, 1, 4, 4)), 2, [slice(None)], "float64")
    with pytest.raises(ValueError, match="method='fast' needs the network's activation cache"):
        pixelcnn_sampler.sample(None, np.zeros((2, 1, 4, 4)), 2, [slice(None)], "float64", method="fast")
    # the cache follows sample(image_size=...): a larger image than the model's default
    assert model.sample(2, np.random.default_rng(0), image_size=(5, 6)).shape == (2, 1, 5, 6)
    np.testing.assert_array_equal(model.sample(2, np.random.default_rng(0), image_size=(5, 6)).numpy(),
                                  model.sample(2, np.random.default_rng(0), "naive", image_size=(5, 6)).numpy())


def test_window_logits_equal_full_logits():
    """The reach is right: the crop's logits at (i, j) match the full pass at every pixel."""
    for model in (tiny_pixelcnn(image_size=(7, 8)), tiny_gated(image_size=(7, 8)),
                  tiny_gated(first_kernel_size=5, n_layers=3, image_size=(9, 9))):
        h, w = model.image_size
        x = (np.random.default_rng(12).random((3, 1, h, w)) < 0.5).astype(np.float64)
        full = model.logits(x).numpy()
        worst = 0.0
        for i in range(h):
            for j in range(w):
                r0, c0, c1 = pixelcnn_sampler.crop_window(i, j, h, w, model.reach())
                crop = model.logits(x[:, :, r0:i + 1, c0:c1]).numpy()
                worst = max(worst, np.abs(crop[..., i - r0, j - c0] - full[..., i, j]).max())
        assert worst < 1e-12


def test_draws_use_the_uniforms():
    u = np.array([[0.2], [0.7]])
    logits = np.zeros((2, 1))                                      # p = 0.5
    np.testing.assert_array_equal(pixelcnn_sampler.draw_bernoulli(logits, u), [[1.0], [0.0]])
    logits = np.log(np.array([[0.1, 0.3, 0.6]] * 4))
    u = np.array([0.05, 0.15, 0.45, 0.999999])
    np.testing.assert_array_equal(pixelcnn_sampler.draw_categorical(logits, u), [0, 1, 2, 2])


def test_sample_on_device(device):
    model = tiny_pixelcnn(image_size=(5, 5), device=device)
    fast = model.sample(4, np.random.default_rng(13), method="fast").numpy()
    naive = model.sample(4, np.random.default_rng(13), method="naive").numpy()
    window = model.sample(4, np.random.default_rng(13), method="window").numpy()
    assert isinstance(fast, np.ndarray) and fast.shape == (4, 1, 5, 5)
    np.testing.assert_array_equal(fast, naive)
    np.testing.assert_array_equal(window, naive)
    gated = tiny_gated(n_classes=2, image_size=(5, 5), device=device)
    np.testing.assert_array_equal(gated.sample(4, np.random.default_rng(13), method="fast", labels=1).numpy(),
                                  gated.sample(4, np.random.default_rng(13), method="naive", labels=1).numpy())


# ----------------------------------------------------------------------------- gradients

def test_gradcheck_pixelcnn_log_prob_wrt_parameters():
    model = tiny_pixelcnn(channels=4)
    x = (np.random.default_rng(14).random((2, 1, 3, 3)) < 0.5).astype(np.float64)
    names = ["conv_in.weight", "blocks.0.conv.weight", "blocks.0.expand.bias", "conv_out.weight"]
    params = dict(model.named_parameters())
    td.gradcheck(with_parameters(model, names, lambda: model.log_prob(x)), [params[n] for n in names])


def test_gradcheck_gated_and_categorical_log_prob_wrt_parameters():
    model = tiny_gated(n_classes=2)
    x = (np.random.default_rng(15).random((2, 1, 3, 3)) < 0.5).astype(np.float64)
    names = ["stack.blocks.0.v_conv.weight", "stack.blocks.1.h_cond.weight", "stack.blocks.1.h_out.bias",
             "head.weight"]
    params = dict(model.named_parameters())
    td.gradcheck(with_parameters(model, names, lambda: model.log_prob(x, [0, 1])), [params[n] for n in names])
    model = tiny_pixelcnn(output="categorical256", image_size=(2, 2))
    x = np.random.default_rng(16).integers(0, 256, (2, 1, 2, 2))
    names = ["conv_in.weight", "conv_out.bias"]
    params = dict(model.named_parameters())
    td.gradcheck(with_parameters(model, names, lambda: model.log_prob(x)), [params[n] for n in names])


# ----------------------------------------------------------------------------- conditioning, units, training

def test_class_conditioning_changes_log_prob():
    model = tiny_gated(n_classes=3)
    x = (np.random.default_rng(17).random((4, 1, 3, 3)) < 0.5).astype(np.float64)
    a, b = model.log_prob(x, [0, 0, 0, 0]).numpy(), model.log_prob(x, [2, 2, 2, 2]).numpy()
    assert np.abs(a - b).min() > 1e-6
    np.testing.assert_allclose(model.log_prob(x, [0, 2, 0, 2]).numpy(), [a[0], b[1], a[2], b[3]], rtol=1e-12)
    dep = pixel_dependency(model, 3, 3, labels=[1, 2])
    assert not (dep & ~(np.arange(9)[None, :] < np.arange(9)[:, None]).reshape(3, 3, 3, 3)).any()
    with pytest.raises(ValueError, match="needs labels"):
        model.log_prob(x)
    with pytest.raises(ValueError, match="no class conditioning"):
        tiny_gated().log_prob(x, [0, 1, 0, 1])
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        model.log_prob(x, [0, 1, 3, 1])


@pytest.mark.parametrize("output", ["bernoulli", "categorical256"])
def test_bits_per_dim_and_loss(output):
    model = tiny_pixelcnn(in_channels=3, channels=6, output=output, image_size=(2, 3))
    rng = np.random.default_rng(18)
    x = rng.integers(0, 2 if output == "bernoulli" else 256, (4, 3, 2, 3))
    log_p = model.log_prob(x).numpy()
    np.testing.assert_allclose(model.bits_per_dim(x).numpy(), -log_p / (18 * math.log(2)), rtol=1e-12)
    np.testing.assert_allclose(model.loss(td.tensor(x)).item(), -log_p.mean(), rtol=1e-12)


def test_flat_and_uint8_inputs_and_a_training_step():
    from tinydgm import optim
    from tinydgm.train import fit
    model = PixelCNN(channels=4, n_residual=1, kernel_size=3, image_size=(4, 4), rng=np.random.default_rng(19))
    x = (np.random.default_rng(20).random((16, 16)) < 0.3).astype(np.uint8)      # flat rows, as the loader gives
    np.testing.assert_allclose(model.log_prob(x).numpy(), model.log_prob(x.reshape(16, 1, 4, 4)).numpy())
    before = model.loss(x).item()
    history = fit(model, x, optim.Adam(model.parameters(), lr=1e-2), epochs=5, batch_size=8, seed=0, progress=False)
    assert history["loss"].shape == (10,) and model.loss(x).item() < before
    with pytest.raises(ValueError, match="flat images must have 1 x 4 x 4 = 16 columns"):
        model.log_prob(np.zeros((2, 15)))


def test_paper_config_and_errors():
    assert PAPER_CONFIG["published_nll"] == 81.30 and PAPER_CONFIG["model"]["kernel_size"] == 7
    model = PixelCNN(**dict(PAPER_CONFIG["model"], n_residual=1))
    assert model.reach() == (4, 4, 4)
    with pytest.raises(ValueError, match="output must be one of"):
        PixelCNN(output="gaussian")
    with pytest.raises(ValueError, match='method must be "fast", "window" or "naive"'):
        tiny_pixelcnn().sample(2, np.random.default_rng(0), method="slow")
