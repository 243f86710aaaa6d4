"""MADE (tinydgm.models.autoregressive.made) and its samplers (tinydgm.kernels.made_sampler)."""
import math

import numpy as np
import pytest

import tinydgm as td
from tinydgm.kernels import made_sampler
from tinydgm.models.autoregressive.made import MADE, PAPER_CONFIG, _orthogonal_init, reproduce
from tinydgm.optim import Adagrad

from contracts import all_binary, assert_autoregressive, assert_normalised, chi_square_pvalue
from paths import DATA_DIR


def made(n_inputs=6, hidden=(24,), seed=0, **kwargs):
    kwargs.setdefault("dtype", "float64")
    kwargs.setdefault("connectivity", "natural")     # evenly spread degrees unless a test asks for random
    return MADE(n_inputs, list(hidden), rng=np.random.default_rng(seed), **kwargs)


def binary(n, d, seed=1):
    return np.random.default_rng(seed).integers(0, 2, (n, d)).astype(np.float64)


def perturb_biases(model, seed=5, scale=1.0):
    """Random biases so that every conditional differs from the initialisation's."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        layer.bias.data = layer.bias.data + scale * rng.standard_normal(layer.bias.shape)
    for layer in model.layers:
        layer.weight.data = layer.weight.data * 3.0          # sharper conditionals


# ----------------------------------------------------------------------------- autoregressive property

@pytest.mark.parametrize("kwargs", [
    dict(hidden=(30,)),
    dict(hidden=(30,), ordering="random", connectivity="random"),
    dict(hidden=(20, 20, 20), ordering="random"),
    dict(hidden=(20, 20), connectivity="random", direct=True),
    dict(hidden=(25,), ordering=np.array([3, 1, 6, 2, 5, 4])),
    dict(hidden=(20, 20), output="gaussian", ordering="random", direct=True),
])
def test_autoregressive_from_the_jacobian(kwargs):
    model = made(**kwargs)
    x = np.random.default_rng(2).standard_normal((3, 6))
    k = 2 if kwargs.get("output") == "gaussian" else 1
    dep = assert_autoregressive(model.forward, x, model.ordering, outputs_per_input=k)
    # not vacuous: the last variable's conditional(s) see every earlier input
    last = int(np.argmax(model.ordering))
    for block in range(k):
        assert dep[block * 6 + last].sum() == 5 if kwargs.get("connectivity") != "random" else \
            dep[block * 6 + last].sum() >= 1


def test_first_conditional_is_a_constant_and_the_last_input_feeds_nothing():
    model = made(hidden=(30, 30), ordering="random", direct=True)
    dep = assert_autoregressive(model.forward, binary(4, 6), model.ordering)
    first, last = int(np.argmin(model.ordering)), int(np.argmax(model.ordering))
    assert not dep[first].any() and not dep[:, last].any()


# ----------------------------------------------------------------------------- normalisation

@pytest.mark.parametrize("n_inputs, kwargs", [
    (6, dict(hidden=(16,))),
    (7, dict(hidden=(16, 16), ordering="random", connectivity="random", direct=True)),
    (8, dict(hidden=(20,), ordering="random")),
])
def test_single_mask_probabilities_sum_to_one(n_inputs, kwargs):
    model = made(n_inputs, **kwargs)
    perturb_biases(model)
    assert_normalised(lambda x: model.log_prob(x).numpy(), n_inputs, atol=1e-10)


def test_ensemble_averages_probabilities_and_stays_normalised():
    model = made(7, hidden=(16, 16), ordering="random", connectivity="random", n_masks=4)
    perturb_biases(model)
    x = all_binary(7)
    log_p = assert_normalised(lambda v: model.log_prob(v, n_masks=4).numpy(), 7, atol=1e-10)
    per_mask = []
    for k in range(4):
        model.masks.select(k).apply(model.layers, model.direct_layer)
        per_mask.append(model.log_prob(x).numpy())
    np.testing.assert_allclose(np.exp(log_p), np.mean(np.exp(per_mask), axis=0), rtol=1e-12)
    assert np.ptp(np.array(per_mask), axis=0).max() > 0.1          # the masks really differ


def test_averaging_logits_instead_is_not_normalised():
    """The issue's point, as a test: the mean of the K networks' logits is not a product of
    conditionals in any single order, so its 'probabilities' do not sum to 1."""
    model = made(7, hidden=(16, 16), ordering="random", connectivity="random", n_masks=4)
    perturb_biases(model)
    x = all_binary(7)
    logits = []
    for k in range(4):
        model.masks.select(k).apply(model.layers, model.direct_layer)
        logits.append(model.forward(x).numpy())
    mean_logits = np.mean(logits, axis=0)
    log_p = (x * mean_logits - np.logaddexp(0.0, mean_logits)).sum(axis=1)
    total = np.exp(log_p).sum()
    assert abs(total - 1.0) > 1e-3, total


def test_fresh_draw_ensemble_is_normalised():
    model = made(6, hidden=(16,), ordering="random", connectivity="random", resample_every_step=True)
    perturb_biases(model)
    before = [m.copy() for m in model.masks.masks]
    assert_normalised(lambda v: model.log_prob(v, n_masks=3, rng=np.random.default_rng(4)).numpy(), 6,
                      atol=1e-10)
    for layer, mask in zip(model.layers, before):                  # the current masks are restored
        np.testing.assert_array_equal(layer.mask, mask)


# ----------------------------------------------------------------------------- sampling

@pytest.mark.parametrize("kwargs", [
    dict(hidden=(20,)),
    dict(hidden=(20,), ordering="random", connectivity="random", direct=True),
    dict(hidden=(15, 12, 18), ordering="random", connectivity="random"),
    dict(hidden=(15, 12), direct=True, ordering=np.array([2, 5, 1, 6, 3, 4])),
])
def test_fast_sampler_equals_naive_and_twin(kwargs):
    model = made(6, **kwargs)
    perturb_biases(model)
    fast = model.sample(300, rng=np.random.default_rng(7)).numpy()
    naive = model.sample(300, rng=np.random.default_rng(7), method="naive").numpy()
    np.testing.assert_array_equal(fast, naive)
    u = np.random.default_rng(7).random((300, 6))
    weights, biases, degrees = model._sampler_arrays()
    twin = made_sampler.sample_bernoulli_made_xp(weights, biases, degrees, u, direct=model._direct_array())
    kernel = made_sampler.sample_bernoulli_made_kernel(weights, biases, degrees, u, direct=model._direct_array())
    np.testing.assert_array_equal(twin, kernel)
    np.testing.assert_array_equal(kernel, fast)
    assert 0.05 < fast.mean() < 0.95                                 # not a degenerate model


def test_same_seed_same_samples_different_seed_different_samples():
    model = made(8, hidden=(20,), ordering="random")
    a = model.sample(50, rng=np.random.default_rng(3)).numpy()
    np.testing.assert_array_equal(a, model.sample(50, rng=np.random.default_rng(3)).numpy())
    assert (a != model.sample(50, rng=np.random.default_rng(4)).numpy()).any()


def test_kernel_samples_follow_the_exact_distribution():
    model = made(6, hidden=(20, 20), ordering="random", connectivity="random", direct=True)
    perturb_biases(model, scale=0.5)
    log_p = model.log_prob(all_binary(6)).numpy()
    samples = model.sample(20000, rng=np.random.default_rng(11)).numpy()
    assert chi_square_pvalue(samples, log_p) > 0.001
    # and a wrong distribution is rejected by the same test (the test has power)
    other = made(6, hidden=(20, 20), seed=9)
    perturb_biases(other, seed=8, scale=0.5)
    assert chi_square_pvalue(samples, other.log_prob(all_binary(6)).numpy()) < 0.001


def test_fast_sample_on_device(device):
    model = made(5, hidden=(12, 12), ordering="random", direct=True)
    perturb_biases(model)
    model.to(device)
    fast = model.sample(200, rng=np.random.default_rng(2)).numpy()
    naive = model.sample(200, rng=np.random.default_rng(2), method="naive").numpy()
    assert isinstance(fast, np.ndarray)
    np.testing.assert_array_equal(fast, naive)
    log_p = model.log_prob(td.tensor(all_binary(5), dtype="float64", device=device)).numpy()
    assert abs(np.exp(log_p).sum() - 1) < 1e-10


def test_mnist_sized_fast_sampler_equals_naive():
    model = made(784, hidden=(64,), ordering="random", connectivity="random", direct=True)
    fast = model.sample(3, rng=np.random.default_rng(0)).numpy()
    naive = model.sample(3, rng=np.random.default_rng(0), method="naive").numpy()
    np.testing.assert_array_equal(fast, naive)


def test_gaussian_samples_invert_to_the_noise():
    """x_d = mu_d(x_<d) + exp(log_scale_d(x_<d)) eps_d: recover eps from the samples."""
    model = made(5, hidden=(16, 16), output="gaussian", ordering="random", direct=True)
    x = model.sample(40, rng=np.random.default_rng(6)).numpy()
    y = model.forward(x).numpy()
    mu, log_scale = y[:, :5], y[:, 5:]
    eps = (x - mu) / np.exp(log_scale)
    order = np.argsort(model.ordering)
    expected = np.random.default_rng(6).standard_normal((40, 5))
    np.testing.assert_allclose(eps[:, order], expected, atol=1e-10)
    np.testing.assert_array_equal(x, model.sample(40, rng=np.random.default_rng(6), method="naive").numpy())


# ----------------------------------------------------------------------------- gradients

def _log_prob_with(model, values, x, n_masks=None):
    """log_prob with the Tensors ``values`` in place of the weights and biases (layer by
    layer, weight then bias), so that gradcheck differentiates with respect to them."""
    layers = list(model.layers) + ([model.direct_layer] if model.direct_layer is not None else [])
    owners = [(layer, name) for layer in layers for name in ("weight", "bias") if getattr(layer, name) is not None]
    originals = [getattr(layer, name) for layer, name in owners]
    assert len(owners) == len(values)
    try:
        for (layer, name), value in zip(owners, values):
            object.__setattr__(layer, name, value)
        return model.log_prob(x, n_masks)
    finally:
        for (layer, name), original in zip(owners, originals):
            object.__setattr__(layer, name, original)


def _leaves(model, scale=1.0):
    return [td.tensor(p.data * scale, dtype="float64", requires_grad=True) for p in model.parameters()]


def test_gradcheck_bernoulli_log_prob_wrt_parameters():
    model = made(5, hidden=(8, 7), ordering="random", direct=True)
    x = td.tensor(binary(4, 5), dtype="float64")
    td.gradcheck(lambda *ps: _log_prob_with(model, ps, x), _leaves(model))


def test_gradcheck_gaussian_log_prob_wrt_parameters_and_x():
    model = made(4, hidden=(9,), output="gaussian", ordering="random", direct=True)
    x = td.tensor(np.random.default_rng(3).standard_normal((3, 4)), dtype="float64", requires_grad=True)
    td.gradcheck(lambda x, *ps: _log_prob_with(model, ps, x), [x] + _leaves(model, 0.5))


def test_gradcheck_ensemble_log_prob():
    model = made(4, hidden=(10,), ordering="random", connectivity="random", n_masks=3)
    x = td.tensor(binary(3, 4), dtype="float64")
    td.gradcheck(lambda *ps: _log_prob_with(model, ps, x, n_masks=3), _leaves(model))


def test_masked_weights_get_zero_gradient():
    model = made(6, hidden=(12,), ordering="random")
    model.loss(binary(5, 6)).backward()
    for layer in model.layers:
        assert (layer.weight.grad.numpy()[layer.mask == 0] == 0).all()
        assert (layer.weight.grad.numpy()[layer.mask == 1] != 0).any()


# ----------------------------------------------------------------------------- mask resampling

def test_training_cycles_through_the_fixed_masks_and_keeps_the_property():
    model = made(6, hidden=(20, 20), ordering="random", connectivity="random", n_masks=3)
    x = binary(4, 6)
    seen = []
    for _ in range(6):
        model.loss(x)
        seen.append(model.masks.index)
        assert_autoregressive(model.forward, x, model.ordering)
    assert seen == [1, 2, 0, 1, 2, 0]
    orderings = {tuple(model.masks.select(k).ordering) for k in range(3)}
    assert len(orderings) > 1
    model.eval()                                            # evaluation does not resample
    index = model.masks.index
    model.loss(x)
    assert model.masks.index == index


def test_fresh_draws_every_step_use_self_rng():
    model = made(6, hidden=(20,), ordering="random", connectivity="random", resample_every_step=True)
    x = binary(4, 6)
    orderings = []
    for _ in range(4):
        model.loss(x)
        orderings.append(tuple(model.ordering))
        assert_autoregressive(model.forward, x, model.ordering)
        np.testing.assert_array_equal(model.layers[0].mask, model.masks.masks[0])
    assert len(set(orderings)) > 1
    # the draws come from self.rng: the same generator state gives the same masks
    a = made(6, hidden=(20,), ordering="random", connectivity="random", resample_every_step=True)
    b = made(6, hidden=(20,), ordering="random", connectivity="random", resample_every_step=True)
    a.rng, b.rng = np.random.default_rng(5), np.random.default_rng(5)
    a.loss(x), b.loss(x)
    np.testing.assert_array_equal(a.ordering, b.ordering)


def test_single_mask_never_changes():
    model = made(6, hidden=(20,), ordering="random")
    masks = [layer.mask.copy() for layer in model.layers]
    for _ in range(3):
        model.loss(binary(4, 6))
    for layer, mask in zip(model.layers, masks):
        np.testing.assert_array_equal(layer.mask, mask)


def test_fit_with_mask_resampling_is_deterministic_and_learns():
    from tinydgm.optim import Adam
    from tinydgm.train import fit
    data = np.repeat(binary(4, 8, seed=2), 16, axis=0)          # 4 distinct patterns
    results = []
    for _ in range(2):
        model = made(8, hidden=(32,), ordering="random", connectivity="random", n_masks=4)
        history = fit(model, data, Adam(model.parameters(), lr=0.02), epochs=8, batch_size=16, seed=3,
                      progress=False)
        results.append(history["loss"])
    np.testing.assert_array_equal(results[0], results[1])
    assert results[0][-1] < 0.7 * results[0][0]


# ----------------------------------------------------------------------------- units and errors

def test_bits_per_dim_is_nats_over_d_ln2():
    model = made(6, hidden=(16,), ordering="random", n_masks=2, connectivity="random")
    x = binary(5, 6)
    np.testing.assert_allclose(model.bits_per_dim(x).numpy(), -model.log_prob(x).numpy() / (6 * math.log(2)))
    np.testing.assert_allclose(model.bits_per_dim(x, n_masks=2).numpy(),
                               -model.log_prob(x, n_masks=2).numpy() / (6 * math.log(2)))


def test_loss_is_the_mean_nll_and_accepts_uint8():
    model = made(6, hidden=(16,))
    x = binary(5, 6)
    np.testing.assert_allclose(model.loss(x.astype(np.uint8)).item(), -model.log_prob(x).numpy().mean())


@pytest.mark.parametrize("call, match", [
    (lambda: MADE(6, [8], output="poisson"), "bernoulli"),
    (lambda: MADE(6, [], dtype="float64"), "at least one hidden layer"),
    (lambda: MADE(6, 8), "non-empty list"),
    (lambda: MADE(6, [8], n_masks=3, resample_every_step=True), "resample_every_step"),
    (lambda: MADE(6, [3], connectivity="natural"), "natural connectivity"),
    (lambda: made(6).log_prob(np.zeros((2, 5))), r"shape \(N, D\) = \(N, 6\)"),
    (lambda: made(6).log_prob(np.zeros((2, 6)), n_masks=2), "only n_masks=1"),
    (lambda: made(6).log_prob(np.zeros((2, 6)), n_masks=0), "positive int"),
    (lambda: made(6).sample(3, method="magic"), "fast"),
    (lambda: made(6).sample(-1), "non-negative"),
])
def test_errors(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


def test_kernel_input_errors():
    model = made(6, hidden=(8,))
    weights, biases, degrees = model._sampler_arrays()
    with pytest.raises(ValueError, match=r"u must have shape \(n, D\)"):
        made_sampler.sample_bernoulli_made(weights, biases, degrees, np.zeros((3, 5)))
    gaussian = made(6, hidden=(8,), output="gaussian")
    with pytest.raises(ValueError, match="only Bernoulli"):
        made_sampler.sample_bernoulli_made(*gaussian._sampler_arrays(), np.zeros((3, 6)))


BINARIZED = str(DATA_DIR / "binarized_mnist.npz")


def test_paper_config_rows():
    assert PAPER_CONFIG["runs"]["1hl_1mask"] == {"hidden_sizes": [500], "n_masks": 1, "published_test_nll": 88.40}
    assert PAPER_CONFIG["runs"]["2hl_32masks"]["n_masks"] == 32
    assert PAPER_CONFIG["runs"]["2hl_32masks"]["published_test_nll"] == 86.64


@pytest.mark.skipif(not __import__("os").path.exists(BINARIZED),
                    reason="needs binarized_mnist.npz in TINYDGM_DATA (see tests/paths.py)")
def test_reproduce_smoke():
    result = reproduce(epochs=2, data_path=BINARIZED, hidden_sizes=[16], n_masks=2, max_train=300, patience=1)
    assert len(result["train_loss"]) == len(result["valid_nll"]) == len(result["epoch_time"]) >= 1
    assert result["config"]["eval_n_masks"] == 2
    assert 50 < result["test_nll"] < 544                       # better than uniform (784 ln 2 = 543.4)
    assert result["test_bits_per_dim"] == pytest.approx(result["test_nll"] / (784 * math.log(2)))


@pytest.mark.parametrize("hidden", [(5,), (9,), (4, 12)])
def test_orthogonal_init_gives_orthonormal_weights_and_keeps_the_masks(hidden):
    """The authors' init: W (n_in, n_out) with orthonormal rows (n_in <= n_out) or columns,
    zero biases; the masks (and so the autoregressive property) are untouched."""
    model = made(7, hidden=hidden, ordering="random", connectivity="random", direct=True)
    masks = [layer.mask.copy() for layer in model.layers]
    before = model.forward(td.tensor(binary(3, 7))).numpy()
    _orthogonal_init(model, np.random.default_rng(3))
    for layer in list(model.layers) + [model.direct_layer]:
        w = layer.weight.numpy()
        gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
        np.testing.assert_allclose(gram, np.eye(min(w.shape)), atol=1e-12)
        if layer.bias is not None:
            assert not layer.bias.numpy().any()
    for layer, mask in zip(model.layers, masks):
        np.testing.assert_array_equal(layer.mask, mask)
    assert not np.allclose(model.forward(td.tensor(binary(3, 7))).numpy(), before)    # it did re-draw
    assert_autoregressive(model.forward, binary(3, 7), model.ordering)


def test_reproduce_rejects_unknown_options():
    with pytest.raises(ValueError, match='optimizer must be "adam" or "adagrad", got \'sgd\''):
        reproduce(optimizer="sgd", data_path=BINARIZED)
    with pytest.raises(ValueError, match='init must be "default" or "orthogonal", got \'zeros\''):
        reproduce(init="zeros", data_path=BINARIZED)


@pytest.mark.skipif(not __import__("os").path.exists(BINARIZED),
                    reason="needs binarized_mnist.npz in TINYDGM_DATA (see tests/paths.py)")
def test_reproduce_with_the_papers_adagrad_and_orthogonal_init(monkeypatch):
    made_optimizers = []

    class Recording(Adagrad):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made_optimizers.append(self)
    monkeypatch.setattr("tinydgm.optim.Adagrad", Recording)
    result = reproduce(epochs=2, data_path=BINARIZED, hidden_sizes=[16], max_train=300, patience=2,
                       optimizer="adagrad", init="orthogonal", weight_decay=1e-4)
    assert result["config"]["optimizer"] == "adagrad" and result["config"]["init"] == "orthogonal"
    (optimizer,) = made_optimizers
    assert optimizer.lr == PAPER_CONFIG["lr"] == 0.01 and optimizer.weight_decay == 1e-4
    assert all("sum" in state for state in optimizer.state)      # it took the steps
    assert 50 < result["test_nll"] < 544
