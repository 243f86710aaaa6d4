"""PixelRNN with Row LSTM layers: the layer against a plain NumPy loop over rows and columns,
raster-order causality and the Row LSTM's triangular receptive field from the engine's
Jacobian, normalisation over all binary 3x3 images (and all 8-bit 1x2 images), the sampler
against the exact distribution (chi-square), "fast" == "naive" samplers, gradcheck and
gradgradcheck of log_prob, errors."""
import numpy as np
import pytest

import tinydgm as td
from contracts import all_binary, assert_autoregressive, assert_normalised, chi_square_pvalue, dependency_matrix
from tinydgm.models.autoregressive.pixelrnn import PixelRNN, RowLSTM


def tiny_pixelrnn(seed=0, **kw):
    args = dict(channels=3, n_layers=1, kernel_size=3, image_size=(3, 3), dtype="float64",
                rng=np.random.default_rng(seed))
    args.update(kw)
    return PixelRNN(**args)


def sigmoid(a):
    return 1 / (1 + np.exp(-a))


def row_lstm_by_loops(layer, a):
    """The Row LSTM of van den Oord et al. 2016b sec. 3.1, one pixel at a time in NumPy:
    gates at (i, j) = b + sum over input taps j-1, j of a(i, .) W_is + sum over state taps
    j-1, j, j+1 of h(i-1, .) W_ss; returns a + h."""
    w_is, w_ss, b = layer.weight_is.numpy(), layer.weight_ss.numpy(), layer.bias.numpy()
    n, height, width, c = a.shape
    h_prev, c_prev = np.zeros((n, width, c)), np.zeros((n, width, c))
    out = np.zeros_like(a)
    for i in range(height):
        h_row, c_row = np.zeros_like(h_prev), np.zeros_like(c_prev)
        for j in range(width):
            gates = b.copy()
            for tap, col in enumerate((j - 1, j)):
                if 0 <= col:
                    gates = gates + a[:, i, col] @ w_is[tap * c:(tap + 1) * c]
            for tap, col in enumerate((j - 1, j, j + 1)):
                if 0 <= col < width:
                    gates = gates + h_prev[:, col] @ w_ss[tap * c:(tap + 1) * c]
            gi, gf, gg, go = np.split(gates, 4, axis=-1)
            c_row[:, j] = sigmoid(gf) * c_prev[:, j] + sigmoid(gi) * np.tanh(gg)
            h_row[:, j] = sigmoid(go) * np.tanh(c_row[:, j])
        out[:, i] = a[:, i] + h_row
        h_prev, c_prev = h_row, c_row
    return out


def test_row_lstm_equals_the_pixel_by_pixel_loop():
    layer = RowLSTM(3, rng=np.random.default_rng(0), dtype="float64")
    a = np.random.default_rng(1).standard_normal((2, 4, 5, 3))
    np.testing.assert_allclose(layer(td.tensor(a, dtype="float64")).numpy(), row_lstm_by_loops(layer, a),
                               rtol=1e-12, atol=1e-14)


# ----------------------------------------------------------------------------- causality

@pytest.mark.parametrize("kw", [dict(), dict(n_layers=2, kernel_size=5)])
def test_logits_are_autoregressive_in_raster_order(kw):
    model = tiny_pixelrnn(image_size=(4, 5), **kw)
    x = np.random.default_rng(2).random((2, 1, 4, 5))
    dep = assert_autoregressive(model.logits, x, order=np.arange(20))
    assert dep[19, :19].sum() >= 15


def test_categorical_logits_are_autoregressive():
    """Three of the 256 levels' logits (every level goes through the same layers)."""
    model = tiny_pixelrnn(output="categorical256", image_size=(2, 2))
    x = np.random.default_rng(3).integers(0, 256, (2, 1, 2, 2)).astype(np.float64)
    fn = lambda t: model.logits(t)[:, :, [0, 17, 255]].transpose(0, 2, 1, 3, 4)     # noqa: E731  (N, 3, C, H, W)
    dep = assert_autoregressive(fn, x, order=np.arange(4), outputs_per_input=3)
    assert dep[2 * 4 + 3, :3].all()


def test_row_lstm_sees_the_triangle_above_beyond_the_convolutions_reach():
    """One Row LSTM layer after a 3x3 type-A convolution: (i, j) reads the state at (i - 1, j + 1),
    so the row d + 1 above is seen up to column j + d + 1 (0-based: (5, 1) sees (0, 6)); a
    stack of convolutions of this depth would reach 2 pixels. In its own row it sees only
    k // 2 + n_layers = 2 pixels to the left (the paper's "triangular receptive field")."""
    model = tiny_pixelrnn(image_size=(6, 7))
    x = np.random.default_rng(4).random((2, 1, 6, 7))
    dep = dependency_matrix(model.logits, x).reshape(6, 7, 6, 7)
    assert dep[5, 1, 0, 6] and dep[5, 0, 0, 5] and dep[5, 6, 0, 0]
    assert not dep[5, 0, 0, 6]                                         # outside the triangle
    assert dep[3, 3, 0].all() and dep[3, 3, 3, 1:3].all() and not dep[3, 3, 3, 0]


# ----------------------------------------------------------------------------- normalisation and sampling

@pytest.mark.parametrize("kw", [dict(), dict(n_layers=2, channels=4)])
def test_normalised_over_all_binary_3x3_images(kw):
    model = tiny_pixelrnn(**kw)
    log_p = assert_normalised(lambda a: model.log_prob(a.reshape(-1, 1, 3, 3)).numpy(), 9, atol=1e-10)
    assert log_p.std() > 0.05


def test_categorical256_conditionals_normalised_on_1x2_images():
    """sum over x_2 of p(x_1, x_2) = p(x_1) for a few x_1, and the p(x_1) sum to 1."""
    model = tiny_pixelrnn(output="categorical256", image_size=(1, 2))
    first = model.logits(np.zeros((1, 1, 1, 2))).numpy()[0, 0, :, 0, 0]
    log_p1 = first - np.logaddexp.reduce(first)
    assert abs(np.exp(log_p1).sum() - 1) < 1e-12
    for x1 in (0, 17, 128, 255):
        levels = np.stack([np.full(256, x1), np.arange(256)], -1).reshape(-1, 1, 1, 2)
        assert abs(np.logaddexp.reduce(model.log_prob(levels).numpy()) - log_p1[x1]) < 1e-10


def test_samples_follow_the_exact_distribution():
    model = tiny_pixelrnn(channels=4, seed=5)
    log_p = model.log_prob(all_binary(9).reshape(-1, 1, 3, 3)).numpy()
    samples = model.sample(20000, np.random.default_rng(6)).numpy()
    assert samples.shape == (20000, 1, 3, 3) and set(np.unique(samples)) == {0.0, 1.0}
    assert chi_square_pvalue(samples.reshape(-1, 9), log_p) > 0.001
    other = tiny_pixelrnn(channels=4, seed=7).log_prob(all_binary(9).reshape(-1, 1, 3, 3)).numpy()
    assert chi_square_pvalue(samples.reshape(-1, 9), other) < 1e-6


@pytest.mark.parametrize("kw", [dict(image_size=(5, 6), n_layers=2), dict(output="categorical256", image_size=(4, 5)),
                                dict(kernel_size=5, image_size=(6, 4))])
def test_fast_sampler_equals_naive_sampler(kw):
    model = tiny_pixelrnn(**kw)
    naive = model.sample(5, np.random.default_rng(8), method="naive").numpy()
    fast = model.sample(5, np.random.default_rng(8), method="fast").numpy()
    np.testing.assert_array_equal(fast, naive)
    assert len(np.unique(naive)) > 1
    assert (model.sample(5, np.random.default_rng(9)).numpy() != naive).any()


def test_log_prob_and_samples_on_every_device(device):
    cpu, here = tiny_pixelrnn(seed=12), tiny_pixelrnn(seed=12, device=device)
    x = (np.random.default_rng(13).random((2, 1, 3, 3)) < 0.5).astype(np.float64)
    log_p = here.log_prob(td.tensor(x, dtype="float64", device=device))
    assert log_p.device == device
    np.testing.assert_allclose(log_p.numpy(), cpu.log_prob(x).numpy(), rtol=1e-12)
    samples = here.sample(3, np.random.default_rng(14))
    assert samples.device == device
    np.testing.assert_array_equal(samples.numpy(), cpu.sample(3, np.random.default_rng(14)).numpy())


# ----------------------------------------------------------------------------- derivatives and errors

def test_log_prob_gradcheck_and_gradgradcheck():
    model = tiny_pixelrnn(channels=2, image_size=(2, 3), seed=10)
    x = (np.random.default_rng(11).random((2, 1, 2, 3)) < 0.5).astype(np.float64)
    owners = [(m, name) for m in model.modules() for name, v in m.__dict__.items() if isinstance(v, td.nn.Parameter)]
    params = [td.tensor(getattr(m, name).numpy(), dtype="float64", requires_grad=True) for m, name in owners]

    def fn(*values):
        saved = [getattr(m, name) for m, name in owners]
        for (m, name), v in zip(owners, values):
            object.__setattr__(m, name, v)
        try:
            return model.log_prob(x)
        finally:
            for (m, name), v in zip(owners, saved):
                object.__setattr__(m, name, v)
    td.gradcheck(fn, params)
    td.gradgradcheck(fn, params)


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="in_channels must be 1"):
        PixelRNN(in_channels=3)
    with pytest.raises(ValueError, match="n_layers must be an int >= 1"):
        PixelRNN(n_layers=0)
    with pytest.raises(NotImplementedError, match='method="fast" or "naive"'):
        tiny_pixelrnn().sample(2, method="window")
    with pytest.raises(ValueError, match=r"images must have shape"):
        tiny_pixelrnn().log_prob(np.zeros((2, 2, 3, 3)))
