"""The semi-supervised M2 model (tinydgm/models/latent/m2.py; Kingma et al. 2014, intro lecture
eqs. 36-38): the labelled bound against its formula, the exact sum over classes against its
parts and against a Monte Carlo over q(y|x), U(x) <= log p(x) with the gap equal to
KL(q(y, z|x) || p(y, z|x)) on a model small enough to integrate by quadrature (where the
importance-sampled estimate also reaches log p(x)), gradchecks and
gradgradchecks of L, U and the alpha objective with the noise held fixed, a short
semi-supervised training run where the unlabelled data help, class-conditional generation,
and bad input."""
import math

import numpy as np
import pytest
from scipy import special, stats

import tinydgm as td
from latent_helpers import assert_bad_batch_rejected, with_parameters
from tinydgm.models.latent.m2 import (M2, UNLABELLED, class_conditional_grid, paper_alpha,
                                      semi_supervised_data)


def small_m2(n_dims=4, n_classes=3, latent_dim=2, seed=0, **kw):
    kw.setdefault("hidden", (5,))
    kw.setdefault("activation", "tanh")
    return M2(n_dims, n_classes, latent_dim, rng=np.random.default_rng(seed), dtype="float64", **kw)


def binary_data(n, n_dims, seed=0):
    return (np.random.default_rng(seed).random((n, n_dims)) < 0.4).astype(np.float64)


def one_hot(y, k):
    return np.eye(k)[y]


def decoder_log_px(model, x, z, y):
    """log p(x|y, z) from the decoder's Bernoulli means, in NumPy: z (..., N, L), y (N,)."""
    zy = np.concatenate([z, np.broadcast_to(one_hot(y, model.n_classes), z.shape[:-1] + (model.n_classes,))], -1)
    p = model.decoder.mean(td.tensor(zy, dtype="float64")).numpy()
    return (x * np.log(p) + (1 - x) * np.log1p(-p)).sum(-1)


# ----------------------------------------------------------------------------- the bounds, exactly

def test_labelled_elbo_is_the_formula_with_the_closed_form_kl():
    """L(x, y) = 1/S sum_s log p(x|y, z_s) + log p(y) - KL(q(z|x, y) || N(0, I)), z_s = mu + sigma eps_s."""
    model = small_m2()
    x, y = binary_data(5, 4, seed=1), np.array([0, 1, 2, 2, 1])
    eps = np.random.default_rng(2).standard_normal((3, 5, 2))
    mu, log_var = (t.numpy() for t in model.encode(x, y))
    z = mu + np.exp(0.5 * log_var) * eps
    kl = 0.5 * (mu ** 2 + np.exp(log_var) - 1 - log_var).sum(-1)
    expected = decoder_log_px(model, x, z, y).mean(0) - math.log(3) - kl
    np.testing.assert_allclose(model.labelled_elbo(x, y, eps=eps).numpy(), expected, rtol=1e-12)


def test_closed_form_kl_equals_the_monte_carlo_form_in_expectation():
    """The deck's E_q[log p(x|y,z) + log p(y) + log p(z) - log q(z|x,y)], with log p(z) and
    log q from scipy, averaged over many z, agrees with the closed-form-KL bound within MC error."""
    model = small_m2(seed=3)
    x, y = binary_data(4, 4, seed=4), np.array([2, 0, 1, 0])
    S = 20000
    eps = np.random.default_rng(5).standard_normal((S, 4, 2))
    mu, log_var = (t.numpy() for t in model.encode(x, y))
    sigma = np.exp(0.5 * log_var)
    z = mu + sigma * eps
    terms = (decoder_log_px(model, x, z, y) - math.log(3) + stats.norm.logpdf(z).sum(-1)
             - stats.norm(mu, sigma).logpdf(z).sum(-1))
    closed_form = model.labelled_elbo(x, y, eps=eps).numpy()        # the same draws, the KL in closed form
    difference = terms - (decoder_log_px(model, x, z, y) - math.log(3))     # per draw: log p(z) - log q(z|x,y)
    se = difference.std(0) / np.sqrt(S)
    assert np.all(np.abs(terms.mean(0) - closed_form) < 4 * se), (terms.mean(0), closed_form, se)
    assert se.max() > 0


def test_unlabelled_elbo_is_the_exact_sum_over_classes_of_its_parts():
    """U(x) = sum_k q(k|x) L(x, k) + H(q(y|x)), each L(x, k) the labelled bound with its own noise."""
    model = small_m2()
    x = binary_data(6, 4, seed=1)
    eps = np.random.default_rng(2).standard_normal((2, 3, 6, 2))              # (S, K, N, L)
    per_class = model.elbo_per_class(x, eps=eps).numpy()
    for k in range(3):
        np.testing.assert_allclose(per_class[:, k], model.labelled_elbo(x, np.full(6, k), eps=eps[:, k]).numpy(),
                                   rtol=1e-12)
    logits = model.classify(x).logits.numpy()
    q = special.softmax(logits, axis=1)
    entropy = -(q * np.log(q)).sum(1)
    np.testing.assert_allclose(model.unlabelled_elbo(x, eps=eps).numpy(), (q * per_class).sum(1) + entropy,
                               rtol=1e-12)


def test_the_exact_sum_over_labels_equals_a_monte_carlo_over_q_y_in_expectation():
    """E_{y ~ q(y|x)} E_{z ~ q(z|x,y)}[L-terms] + H: draws of (y, z) against the exact sum over y
    with many draws of z per class; both unbiased for U(x), so they agree within MC error."""
    model = small_m2(seed=1)
    x = binary_data(3, 4, seed=6)
    M = 20000
    q = special.softmax(model.classify(x).logits.numpy(), axis=1)
    entropy = -(q * np.log(q)).sum(1)
    gen = np.random.default_rng(7)
    y_draws = np.stack([gen.choice(3, size=M, p=q[n]) for n in range(3)], axis=1)      # (M, N)
    x_rep = np.broadcast_to(x, (M, 3, 4)).reshape(-1, 4)
    sampled = model.labelled_elbo(x_rep, y_draws.reshape(-1), rng=np.random.default_rng(8)).numpy().reshape(M, 3)
    mc = sampled.mean(0) + entropy
    exact_sum = model.unlabelled_elbo(x, n_samples=M, rng=np.random.default_rng(9)).numpy()
    se = sampled.std(0) / np.sqrt(M)
    assert np.all(np.abs(mc - exact_sum) < 4 * se), (mc, exact_sum, se)
    assert np.ptp(q) > 0.05                    # q(y|x) is not uniform, so the weighting matters


# ----------------------------------------------------------------------------- a model integrated exactly

GRID = np.linspace(-12, 12, 4001)             # z for the marginal p(x|y) = int p(z) p(x|y, z) dz
NODES, WEIGHTS = np.polynomial.hermite_e.hermegauss(80)    # E_{N(0,1)}[f] = sum_i w_i f(t_i) / sqrt(2 pi)


def exact_quantities(model, x):
    """By quadrature over the one-dimensional z: log p(x), the exact U(x) = E_q(y,z|x)[log p(x,y,z)
    - log q(y,z|x)] and KL(q(y, z|x) || p(y, z|x)), each (N,)."""
    n, k = len(x), model.n_classes
    log_py = -math.log(k)
    q_y = special.softmax(model.classify(x).logits.numpy(), axis=1)
    log_px_y = np.empty((n, k))            # log p(x|y) = log int N(z; 0, 1) p(x|y, z) dz
    bound_y = np.empty((n, k))             # E_q(z|x,y)[log p(x|y,z) + log p(z) - log q(z|x,y)]
    kl_post = np.empty((n, k))             # KL(q(z|x,y) || p(z|x,y))
    for c in range(k):
        y = np.full(n, c)
        log_lik = decoder_log_px(model, x, np.broadcast_to(GRID[:, None, None], (len(GRID), n, 1)), y)   # (G, N)
        log_joint = stats.norm.logpdf(GRID)[:, None] + log_lik
        log_px_y[:, c] = special.logsumexp(log_joint, axis=0) + np.log(GRID[1] - GRID[0])
        mu, log_var = (t.numpy()[:, 0] for t in model.encode(x, y))
        sigma = np.exp(0.5 * log_var)
        z = mu + sigma * NODES[:, None]                                              # (Q, N) nodes of q(z|x,y)
        w = WEIGHTS[:, None] / np.sqrt(2 * np.pi)
        log_q = stats.norm(mu, sigma).logpdf(z)
        log_pxz = decoder_log_px(model, x, z[..., None], y) + stats.norm.logpdf(z)
        bound_y[:, c] = (w * (log_pxz - log_q)).sum(0)
        kl_post[:, c] = (w * (log_q - (log_pxz - log_px_y[:, c]))).sum(0)
    log_px = special.logsumexp(log_py + log_px_y, axis=1)
    u = (q_y * (bound_y + log_py)).sum(1) - (q_y * np.log(q_y)).sum(1)
    log_p_y_x = log_py + log_px_y - log_px[:, None]                                 # log p(y|x)
    kl = (q_y * (np.log(q_y) - log_p_y_x + kl_post)).sum(1)
    return log_px, u, kl, bound_y + log_py, log_px_y + log_py


def test_unlabelled_bound_is_below_log_px_by_exactly_the_kl_to_the_joint_posterior():
    """On every binary x of D = 3 (K = 2 classes, L = 1): sum_x p(x) = 1, U(x) <= log p(x) and
    log p(x) - U(x) = KL(q(y, z|x) || p(y, z|x)); L(x, y) <= log p(x, y); and the model's
    Monte Carlo U (many draws) is the quadrature U within its error."""
    model = small_m2(n_dims=3, n_classes=2, latent_dim=1, hidden=(4,), seed=2)
    x = np.array([[(i >> b) & 1 for b in range(3)] for i in range(8)], dtype=np.float64)
    log_px, u, kl, bound_xy, log_pxy = exact_quantities(model, x)
    np.testing.assert_allclose(np.exp(log_px).sum(), 1.0, rtol=1e-9)
    assert np.all(u < log_px) and np.all(bound_xy < log_pxy)
    np.testing.assert_allclose(log_px - u, kl, rtol=1e-8, atol=1e-10)
    assert kl.min() > 1e-3                                   # a real gap, not 0 = 0
    S = 20000
    per_draw = np.stack([model.unlabelled_elbo(x, n_samples=1, rng=np.random.default_rng(s)).numpy()
                         for s in range(200)])
    mc = model.unlabelled_elbo(x, n_samples=S, rng=np.random.default_rng(11)).numpy()
    se = per_draw.std(0) / np.sqrt(S)
    assert np.all(np.abs(mc - u) < 4 * se + 1e-9), (mc, u, se)


def test_importance_weights_average_to_u_and_the_estimate_reaches_log_px():
    """With the proposal q(y, z|x): E[log w] = U(x) (the exact U by quadrature) and the k-sample
    estimate log 1/k sum w approaches log p(x) (F_1 < F_5000 ~ log p(x), within its errors)."""
    model = small_m2(n_dims=3, n_classes=2, latent_dim=1, hidden=(4,), seed=2)
    x = np.array([[(i >> b) & 1 for b in range(3)] for i in range(8)], dtype=np.float64)
    log_px, u, kl, _, _ = exact_quantities(model, x)
    log_w = model.log_importance_weights(x, 20000, rng=np.random.default_rng(0)).numpy()
    assert log_w.shape == (20000, 8)
    se = log_w.std(0) / np.sqrt(20000)
    assert np.all(np.abs(log_w.mean(0) - u) < 4 * se), (log_w.mean(0), u, se)
    estimate = td.evaluate.importance.importance_log_likelihood(model, x, k=5000, rng=np.random.default_rng(1))
    assert np.all(np.abs(estimate.log_px.numpy() - log_px) < 4 * estimate.stderr.numpy() + 1e-4)
    assert np.all(estimate.stderr.numpy() < 0.25 * kl)          # tight enough to tell log p(x) from U(x)
    np.testing.assert_allclose(model.log_prob_estimate(x, k=5000, rng=np.random.default_rng(1)).numpy(),
                               estimate.log_px.numpy(), rtol=1e-12)
    log_p50 = model.log_prob_estimate(x, k=50, rng=np.random.default_rng(2)).numpy()
    np.testing.assert_allclose(model.bits_per_dim(x, k=50, rng=np.random.default_rng(2)).numpy(),
                               -log_p50 / (3 * np.log(2)), rtol=1e-12)


# ----------------------------------------------------------------------------- gradients

def objectives():
    x = binary_data(3, 4, seed=7)
    y = np.array([2, 0, 1])
    gen = np.random.default_rng(8)
    eps_l, eps_u = gen.standard_normal((2, 3, 2)), gen.standard_normal((1, 3, 3, 2))
    x_u = binary_data(3, 4, seed=9)
    return {
        "labelled": lambda m: m.labelled_elbo(x, y, eps=eps_l),
        "unlabelled": lambda m: m.unlabelled_elbo(x_u, eps=eps_u),
        "alpha_objective": lambda m: m.objective(x, y, x_u, eps_labelled=eps_l, eps_unlabelled=eps_u),
    }


@pytest.mark.parametrize("name", sorted(objectives()))
def test_every_objective_gradcheck_with_the_noise_held_fixed(name):
    model = small_m2(alpha=2.5)
    objective = objectives()[name]
    fn, inputs = with_parameters(model, lambda: objective(model))
    assert td.gradcheck(fn, inputs)


@pytest.mark.parametrize("name", sorted(objectives()))
def test_every_objective_gradgradcheck(name):
    model = small_m2(alpha=2.5)
    objective = objectives()[name]
    fn, inputs = with_parameters(model, lambda: objective(model).sum())
    assert td.gradgradcheck(fn, inputs)


def test_alpha_objective_is_the_sum_of_its_terms_and_the_loss_its_batch_mean():
    model = small_m2(alpha=2.5)
    x, y, x_u = binary_data(3, 4, seed=7), np.array([2, 0, 1]), binary_data(4, 4, seed=9)
    eps_l = np.random.default_rng(1).standard_normal((1, 3, 2))
    eps_u = np.random.default_rng(2).standard_normal((1, 3, 4, 2))
    log_q = special.log_softmax(model.classify(x).logits.numpy(), axis=1)[np.arange(3), y]
    expected = (model.labelled_elbo(x, y, eps=eps_l).numpy() + 2.5 * log_q).sum() \
        + model.unlabelled_elbo(x_u, eps=eps_u).numpy().sum()
    j = model.objective(x, y, x_u, eps_labelled=eps_l, eps_unlabelled=eps_u)
    assert j.shape == () and np.isclose(j.item(), expected, rtol=1e-12)
    # the (x, y) stream with -1 for unlabelled: -J / B, the same draws taken from the same generator
    x_all = np.concatenate([x_u[:2], x, x_u[2:]])
    y_all = np.array([UNLABELLED, UNLABELLED, 2, 0, 1, UNLABELLED, UNLABELLED])
    model.rng = np.random.default_rng(5)
    loss = model.loss((x_all, y_all)).item()
    gen = np.random.default_rng(5)
    eps_l, eps_u = gen.standard_normal((1, 3, 2)), gen.standard_normal((1, 3, 4, 2))
    assert np.isclose(loss, -model.objective(x, y, x_u, eps_labelled=eps_l, eps_unlabelled=eps_u).item() / 7,
                      rtol=1e-12)
    model.rng = np.random.default_rng(6)
    plain = model.loss(td.tensor(x_u, dtype="float64")).item()
    assert np.isclose(plain, -model.unlabelled_elbo(x_u, rng=np.random.default_rng(6)).numpy().mean(), rtol=1e-12)
    assert np.isclose(paper_alpha(50000, 100), 50.0)


# ----------------------------------------------------------------------------- training

def bars(n, seed, n_dims=16):
    """Two classes of binary images: a bar of 4 pixels in the left half (class 0) or the right
    half (class 1), at a random offset (the style), 5% of the pixels flipped."""
    gen = np.random.default_rng(seed)
    y = gen.integers(0, 2, n)
    start = 8 * y + gen.integers(0, 5, n)
    pixels = np.arange(n_dims)
    x = ((pixels >= start[:, None]) & (pixels < start[:, None] + 4)).astype(np.float64)
    return np.abs(x - (gen.random((n, n_dims)) < 0.05)), y


def train_on_bars(x_unlabelled, repeat):
    x_pool, y_pool = bars(400, seed=0)
    chosen = np.concatenate([np.flatnonzero(y_pool == c)[:2] for c in (0, 1)])       # 2 labels per class
    x, y = semi_supervised_data(x_pool[chosen], y_pool[chosen], x_unlabelled, repeat=repeat)
    model = M2(16, 2, latent_dim=2, hidden=(32,), activation="softplus", alpha=10.0, rng=np.random.default_rng(0),
               dtype="float64")
    history = td.train.fit(model, (x, y), td.optim.Adam(model.parameters(), lr=1e-2), epochs=10, batch_size=100,
                           seed=0, progress=False)
    return model, history


def test_unlabelled_data_help_the_classifier_with_four_labels():
    """4 labels and 1000 unlabelled bars: the classifier's test accuracy (chance 0.5) is high and
    at least that of the same model trained on the 4 labels alone for as many steps."""
    x_test, y_test = bars(1000, seed=3)
    semi, history = train_on_bars(bars(1000, seed=2)[0], repeat=50)
    alone, _ = train_on_bars(np.zeros((0, 16)), repeat=300)                    # 1200 examples: as many steps
    accuracy = (semi.predict(x_test).numpy() == y_test).mean()
    accuracy_alone = (alone.predict(x_test).numpy() == y_test).mean()
    assert accuracy > 0.95, accuracy
    assert accuracy >= accuracy_alone, (accuracy, accuracy_alone)
    assert history["epoch_loss"][-1] < history["epoch_loss"][0]
    # class-conditional generation: draws of class c look like class c to the classifier, and in
    # the grid every row's class-0 image has its bar on the left, its class-1 image on the right
    for c in (0, 1):
        samples = semi.sample(500, y=c, rng=np.random.default_rng(c))
        assert (semi.predict(samples).numpy() == c).mean() > 0.9
    grid = semi.class_grid(16, rng=np.random.default_rng(4)).numpy()                # (16, 2, 16)
    assert np.all(grid[:, 0, :8].sum(-1) > grid[:, 0, 8:].sum(-1))
    assert np.all(grid[:, 1, 8:].sum(-1) > grid[:, 1, :8].sum(-1))


# ----------------------------------------------------------------------------- generation

def test_class_conditional_samples_and_grid():
    model = small_m2()
    assert model.sample(5, y=2, rng=np.random.default_rng(0)).shape == (5, 4)
    x = model.sample(3, y=np.array([0, 2, 1]), rng=np.random.default_rng(0)).numpy()
    assert x.shape == (3, 4) and set(np.unique(x)) <= {0.0, 1.0}
    means = model.sample(6, rng=np.random.default_rng(1), mean=True).numpy()
    assert means.shape == (6, 4) and np.all((means > 0) & (means < 1))
    # the draws are decided by the generator
    np.testing.assert_array_equal(model.sample(6, rng=np.random.default_rng(1)).numpy(),
                                  model.sample(6, rng=np.random.default_rng(1)).numpy())
    # grid: z fixed along a row, class k in column k
    z = np.random.default_rng(2).standard_normal((2, 2))
    grid = model.class_grid(2, z=z).numpy()
    assert grid.shape == (2, 3, 4)
    for r in range(2):
        for k in range(3):
            zy = np.concatenate([z[r], one_hot(k, 3)])[None]
            np.testing.assert_allclose(grid[r, k], model.decoder.mean(td.tensor(zy, dtype="float64")).numpy()[0],
                                       rtol=1e-12)
    drawn = class_conditional_grid(model, 4, rng=np.random.default_rng(3))
    assert drawn.shape == (4, 3, 4)
    np.testing.assert_allclose(drawn, model.class_grid(4, rng=np.random.default_rng(3)).numpy(), rtol=1e-12)


def test_fit_with_a_seed_repeats_the_run():
    x, y = semi_supervised_data(binary_data(2, 4), np.array([0, 2]), binary_data(10, 4, seed=1), repeat=2)
    runs = []
    for _ in range(2):
        model = small_m2()
        history = td.train.fit(model, (x, y), td.optim.Adam(model.parameters(), lr=0.01), epochs=2, batch_size=5,
                               seed=3, progress=False)
        runs.append((history["loss"], model.classifier[0].weight.numpy()))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    assert np.array_equal(y, [0, 2, 0, 2] + [UNLABELLED] * 10)


# ----------------------------------------------------------------------------- errors

@pytest.mark.parametrize("bad, message", [
    (np.zeros((3, 5)), r"x must have shape \(N, 4\)"),
    (np.zeros((3, 4, 1)), r"x must have shape \(N, 4\)"),
    (np.full((3, 4), 0.5), "needs binary data"),
    (np.where(np.eye(3, 4) > 0, np.nan, 0.0), "non-finite entries .* in 3 of its 3 examples"),
])
def test_bad_batches_raise_clear_errors_and_change_nothing(bad, message):
    model = small_m2()
    labels = np.array([0, 1, UNLABELLED])
    calls = (model.loss, lambda x: model.loss((x, labels)), model.unlabelled_elbo, model.classify,
             lambda x: model.labelled_elbo(x, np.zeros(3, dtype=int)),
             lambda x: model.log_importance_weights(x, 2))
    assert_bad_batch_rejected(model, calls, bad, message, fit_batch=(bad, labels))


def test_bad_labels_noise_and_configuration():
    model = small_m2()
    x = binary_data(3, 4)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\), got values in \[0, 3\]"):
        model.labelled_elbo(x, np.array([0, 3, 1]))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\), got values in \[-1, 1\]"):
        model.labelled_elbo(x, np.array([0, -1, 1]))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\) or -1 \(unlabelled\)"):
        model.loss((x, np.array([0, -2, 1])))
    with pytest.raises(TypeError, match="integer class labels, got dtype float64"):
        model.labelled_elbo(x, np.array([0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match=r"y must have shape \(N,\) = \(3,\), got \(2,\)"):
        model.labelled_elbo(x, np.array([0, 1]))
    with pytest.raises(ValueError, match=r"eps must have shape \(S, N, L\) = \(S, 3, 2\), got \(1, 3, 3\)"):
        model.labelled_elbo(x, np.array([0, 1, 2]), eps=np.zeros((1, 3, 3)))
    with pytest.raises(ValueError, match=r"eps must have shape \(S, K, N, L\) = \(S, 3, 3, 2\)"):
        model.unlabelled_elbo(x, eps=np.zeros((1, 3, 2)))
    with pytest.raises(ValueError, match="n_samples must be an int >= 1"):
        model.unlabelled_elbo(x, n_samples=0)
    for k in (0, 2.5, True):
        with pytest.raises(ValueError, match="k must be an int >= 1"):
            model.log_importance_weights(x, k)
    with pytest.raises(ValueError, match="a pair"):
        model.loss((x, np.array([0, 1, 2]), x))
    with pytest.raises(ValueError, match="no examples"):
        model.objective(None, None, np.zeros((0, 4)))
    with pytest.raises(ValueError, match=r"z must have shape \(n_rows, L\) = \(2, 2\)"):
        model.class_grid(2, z=np.zeros((3, 2)))
    with pytest.raises(ValueError, match="n_classes must be >= 2"):
        M2(4, 1)
    with pytest.raises(ValueError, match="alpha must be a number >= 0"):
        M2(4, 2, alpha=-1)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        model.sample(2, y=5)
    with pytest.raises(ValueError, match="3 labelled examples but 2 labels"):
        semi_supervised_data(x, np.array([0, 1]), x)
    with pytest.raises(ValueError, match=r"labelled examples of shape \(4,\), unlabelled of shape \(5,\)"):
        semi_supervised_data(x, np.array([0, 1, 2]), np.zeros((2, 5)))


def test_repr_is_a_short_summary():
    text = repr(small_m2(alpha=2.0))
    assert text.startswith("M2(event_shape=(4,), n_classes=3, latent_dim=2, hidden=(5,), alpha=2.0, n_samples=1)")
    assert "parameters" in text and "[" not in text.splitlines()[0]


def test_bounds_match_on_every_device(device):
    model = small_m2()
    x = binary_data(3, 4)
    eps = np.random.default_rng(0).standard_normal((1, 3, 3, 2))
    expected = model.unlabelled_elbo(x, eps=eps).numpy()
    model.to(device)
    np.testing.assert_allclose(model.unlabelled_elbo(x, eps=eps).numpy(), expected, rtol=1e-10)
    assert model.sample(3, rng=np.random.default_rng(0)).device == device
