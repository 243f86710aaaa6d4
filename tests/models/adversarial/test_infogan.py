"""InfoGAN: the codes and ln Q(c | x), the bound L_I = H(c) + E[ln Q(c | G(z, c))] against the
exact I(c; x) of a fixed generator (equal with the exact posterior, lower with a worse Q),
gradients of every objective, which player each step moves, code sweeps, and errors."""
import copy
import math

import numpy as np
import pytest
from scipy import integrate, special, stats

import tinydgm as td
from tinydgm.models.adversarial import (Codes, InfoDiscriminator, InfoGAN, MLPDiscriminator, MLPGenerator,
                                        code_entropy, log_q_codes, quadrature_grid)
from tinydgm.models.adversarial.infogan import log_q_parts

from latent_helpers import with_parameters


def _infogan(seed=0, n_categories=3, n_continuous=2, noise_dim=2, hidden=(6,), dtype="float64", **kwargs):
    rng = np.random.default_rng(seed)
    generator = MLPGenerator(noise_dim + n_categories + n_continuous, 2, hidden, rng=rng, dtype=dtype)
    discriminator = InfoDiscriminator(2, n_categories, n_continuous, hidden, rng=rng, dtype=dtype)
    return InfoGAN(generator, discriminator, noise_dim, rng=seed, **kwargs)


def _params(module):
    return [p.numpy().copy() for p in module.parameters()]


def _same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a, b))


# ----------------------------------------------------------------------------- codes and ln Q(c | x)

def test_codes_follow_the_prior_and_enter_the_generator_as_one_hot_and_values():
    model = _infogan()
    codes = model.sample_codes(20000, rng=1)
    counts = np.bincount(codes.categories, minlength=3)
    assert stats.chisquare(counts).pvalue > 1e-3                         # uniform categories
    np.testing.assert_array_equal(codes.one_hot.numpy().argmax(1), codes.categories)
    assert codes.one_hot.numpy().sum(1).tolist() == [1.0] * 20000
    cont = codes.continuous.numpy()
    assert cont.min() >= -1 and cont.max() <= 1
    assert stats.kstest(cont[:, 0], stats.uniform(-1, 2).cdf).pvalue > 1e-3
    z = model.sample_noise(20000, rng=2)
    inputs = model.generator_input(z, codes).numpy()
    np.testing.assert_array_equal(inputs, np.concatenate([z.numpy(), codes.one_hot.numpy(), cont], axis=1))
    assert model.latent_dim == 2 + 3 + 2
    assert model.code_entropy() == pytest.approx(math.log(3) + 2 * math.log(2)) == code_entropy(3, 2)


def test_log_q_is_a_categorical_times_unit_variance_gaussians():
    rng = np.random.default_rng(3)
    q_logits, q_mean = rng.standard_normal((5, 4)), rng.standard_normal((5, 2))
    categories, cont = rng.integers(0, 4, 5), rng.uniform(-1, 1, (5, 2))
    codes = Codes(categories, td.tensor(np.eye(4)[categories]), td.tensor(cont))
    expected = (special.log_softmax(q_logits, axis=1)[np.arange(5), categories]
                + stats.norm.logpdf(cont, q_mean, 1.0).sum(1))
    np.testing.assert_allclose(log_q_codes(td.tensor(q_logits), td.tensor(q_mean), codes).numpy(), expected,
                               rtol=1e-12)
    leaves = [td.tensor(q_logits, requires_grad=True), td.tensor(q_mean, requires_grad=True)]
    assert td.gradcheck(lambda a, b: log_q_codes(a, b, codes), leaves)
    assert td.gradgradcheck(lambda a, b: log_q_codes(a, b, codes), leaves)


# ----------------------------------------------------------------------------- the bound against the exact I(c; x)

MEANS, SIGMA = np.array([-2.0, 0.0, 1.5]), 0.7     # x = G(z, c) = mu_c + sigma z: a mixture of 3 Gaussians


def _mixture_infogan(q_scale=1.0, q_shift=0.0):
    """A fixed generator x = mu_c + sigma z (a linear layer on [z, one_hot(c)]) and Q(c | x) with
    logits q_scale (mu_c x - mu_c^2 / 2) / sigma^2 + q_shift c: the exact posterior p(c | x) when
    q_scale = 1 and q_shift = 0 (Q reads x directly: no hidden layer)."""
    generator = MLPGenerator(1 + 3, 1, (), dtype="float64")
    generator.layers[0].weight.data[...] = np.concatenate([[SIGMA], MEANS])[:, None]
    generator.layers[0].bias.data[...] = 0.0
    discriminator = InfoDiscriminator(1, 3, 0, hidden=(), dtype="float64")
    discriminator.q_head.weight.data[...] = q_scale * MEANS[None, :] / SIGMA ** 2
    discriminator.q_head.bias.data[...] = -q_scale * MEANS ** 2 / (2 * SIGMA ** 2) + q_shift * np.arange(3)
    return InfoGAN(generator, discriminator, 1, rng=0)


def _exact_mutual_information():
    """I(c; x) = sum_c p(c) int p(x|c) ln(p(x|c) / p(x)) dx by adaptive quadrature (scipy)."""
    def p_x(x):
        return stats.norm.pdf(x, MEANS, SIGMA).mean()

    def term(c):
        def integrand(x):
            p = stats.norm.pdf(x, MEANS[c], SIGMA)
            return 0.0 if p == 0 else p * math.log(p / p_x(x))
        return integrate.quad(integrand, -12, 12, epsabs=1e-13, epsrel=1e-11, limit=400)[0]
    return sum(term(c) for c in range(3)) / 3


def _bound_by_quadrature(model):
    """L_I = H(c) + sum_c p(c) int p(x|c) ln Q(c|x) dx on a fine grid, with the model's ln Q."""
    points, cell = quadrature_grid(-12.0, 12.0, 24000)
    n, total = len(points), 0.0
    for c in range(3):
        codes = model.sample_codes(n, rng=0, categories=np.full(n, c))
        with td.no_grad():
            log_q = model.log_q(td.tensor(points), codes).numpy()
        total += (stats.norm.pdf(points[:, 0], MEANS[c], SIGMA) * log_q).sum() * cell / 3
    return total + model.code_entropy()


def test_the_bound_with_the_exact_posterior_is_the_mutual_information():
    exact = _exact_mutual_information()
    assert 0.5 < exact < math.log(3)
    model = _mixture_infogan()
    assert _bound_by_quadrature(model) == pytest.approx(exact, abs=1e-8)
    # the model's own Monte Carlo estimate on fresh (z, c) agrees within its sampling error
    estimate = model.estimate_mutual_information_bound(200_000, rng=5)
    assert estimate == pytest.approx(exact, abs=0.01)


@pytest.mark.parametrize("q_scale, q_shift", [(0.5, 0.0), (1.0, 0.8), (0.0, 0.0)])
def test_a_worse_q_gives_a_lower_bound(q_scale, q_shift):
    """The gap is E_x KL(p(c|x) || Q(c|x)) > 0; Q that ignores x (q_scale = 0, equal logits)
    gives H(c) + ln(1/3) = 0."""
    exact = _exact_mutual_information()
    bound = _bound_by_quadrature(_mixture_infogan(q_scale, q_shift))
    assert bound < exact - 0.01
    if q_scale == 0.0:
        assert bound == pytest.approx(0.0, abs=1e-12)


def test_continuous_code_bound_is_below_the_exact_mutual_information():
    """c ~ U(-1, 1), x = c + 0.3 z (one category: H(c) = ln 2): I(c; x) = h(x) - h(x | c) by
    quadrature; the unit-variance Gaussian Q with the best linear mean stays below it, and Q's
    mean fitted by a few steps of gradient ascent on L_I raises the bound."""
    s = 0.3
    generator = MLPGenerator(1 + 1 + 1, 1, (), dtype="float64")
    generator.layers[0].weight.data[...] = np.array([[s], [0.0], [1.0]])
    generator.layers[0].bias.data[...] = 0.0
    discriminator = InfoDiscriminator(1, 1, 1, hidden=(), dtype="float64")
    discriminator.q_head.weight.data[...] = 0.0
    discriminator.q_head.bias.data[...] = 0.0
    model = InfoGAN(generator, discriminator, 1, rng=0)
    points, cell = quadrature_grid(-4.0, 4.0, 8000)
    x = points[:, 0]
    p_x = 0.5 * (stats.norm.cdf((x + 1) / s) - stats.norm.cdf((x - 1) / s))
    h_x = -(p_x * np.log(np.where(p_x > 0, p_x, 1.0))).sum() * cell
    exact = h_x - 0.5 * math.log(2 * math.pi * math.e * s * s)
    zero_mean_bound = math.log(2) - 0.5 * math.log(2 * math.pi) - 0.5 / 3     # Q = N(0, 1): E c^2 = 1/3
    assert model.estimate_mutual_information_bound(100_000, rng=1) == pytest.approx(zero_mean_bound, abs=0.01)
    optimizer = td.optim.Adam(discriminator.q_head.parameters(), lr=0.05)
    for _ in range(200):
        codes, z = model.sample_codes(512, rng=None), model.sample_noise(512)
        with td.no_grad():
            x_fake = model.G(model.generator_input(z, codes))
        loss = -model.mutual_information_bound(x_fake, codes)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    fitted = model.estimate_mutual_information_bound(100_000, rng=2)
    assert zero_mean_bound + 0.1 < fitted < exact


# ----------------------------------------------------------------------------- gradients

def _fixed_batch(model, n=5, seed=7):
    rng = np.random.default_rng(seed)
    codes = model.sample_codes(n, rng=rng)
    z = model.sample_noise(n, rng=rng)
    x = td.tensor(rng.standard_normal((n, 2)))
    return codes, z, x


def _objectives(model):
    codes, z, x = _fixed_batch(model)

    def x_fake():
        return model.G(model.generator_input(z, codes))
    return {
        "mutual_information_bound": lambda: model.mutual_information_bound(x_fake(), codes),
        "discriminator_terms": lambda: sum(model.discriminator_terms(x, x_fake(), codes).values()),
        "generator_terms": lambda: sum(model.generator_terms(x_fake(), codes).values()),
    }


@pytest.mark.parametrize("name", ["mutual_information_bound", "discriminator_terms", "generator_terms"])
def test_every_objective_is_gradient_checked_in_every_parameter(name):
    """First and second derivatives w.r.t. every parameter of G, the shared body and both heads,
    in float64, with z, the codes and the real batch held fixed."""
    model = _infogan(seed=4, hidden=(4,), lam=0.7)
    fn, inputs = with_parameters(model, _objectives(model)[name])
    assert td.gradcheck(fn, inputs)
    assert td.gradgradcheck(fn, inputs)


def test_the_terms_are_the_gan_losses_and_lambda_times_the_bound():
    model = _infogan(lam=0.5)
    codes, z, x = _fixed_batch(model)
    x_fake = model.G(model.generator_input(z, codes))
    d_terms, g_terms = model.discriminator_terms(x, x_fake, codes), model.generator_terms(x_fake, codes)
    bound = model.mutual_information_bound(x_fake, codes).item()
    real, fake = model.D(x).numpy(), model.D(x_fake).numpy()
    assert d_terms["discriminator_loss"].item() == pytest.approx(
        np.logaddexp(0, -real).mean() + np.logaddexp(0, fake).mean(), rel=1e-12)
    assert g_terms["generator_loss"].item() == pytest.approx(np.logaddexp(0, -fake).mean(), rel=1e-12)
    assert d_terms["information_loss"].item() == pytest.approx(-0.5 * bound, rel=1e-12)
    assert g_terms["information_loss"].item() == pytest.approx(-0.5 * bound, rel=1e-12)


def test_lam_continuous_weighs_the_continuous_part_alone():
    """lambda (ln K + mean ln Q(c_cat|x)) + lambda_cont (n ln 2 + mean ln Q(c_cont|x)), gradient-checked;
    with lambda_cont = lambda it is lambda L_I."""
    model = _infogan(lam=0.5, lam_continuous=0.1, hidden=(4,))
    codes, z, x = _fixed_batch(model)
    x_fake = model.G(model.generator_input(z, codes))
    _, q_logits, q_mean = model.discriminator.heads(model.discriminator.features(x_fake))
    cat, cont = (t.numpy() for t in log_q_parts(q_logits, q_mean, codes))
    np.testing.assert_allclose(cat + cont, log_q_codes(q_logits, q_mean, codes).numpy(), rtol=1e-12)
    expected = 0.5 * (cat.mean() + math.log(3)) + 0.1 * (cont.mean() + 2 * math.log(2))
    assert model.discriminator_terms(x, x_fake, codes)["information_loss"].item() == pytest.approx(-expected,
                                                                                                   rel=1e-12)
    assert model.generator_terms(x_fake, codes)["information_loss"].item() == pytest.approx(-expected, rel=1e-12)
    fn, inputs = with_parameters(model, lambda: model.weighted_information(*model.discriminator.heads(
        model.discriminator.features(model.G(model.generator_input(z, codes))))[1:], codes))
    assert td.gradcheck(fn, inputs)
    assert td.gradgradcheck(fn, inputs)
    assert "lam_continuous=0.1" in repr(model)


# ----------------------------------------------------------------------------- training

def test_each_step_moves_only_its_side_and_q_trains_with_the_discriminator():
    model = _infogan(dtype="float32")
    x = np.random.default_rng(1).standard_normal((8, 2)).astype(np.float32)
    g0, d0 = _params(model.generator), _params(model.discriminator)
    q0 = _params(model.discriminator.q_head)
    model.discriminator_step(x)
    g1, d1 = _params(model.generator), _params(model.discriminator)
    assert _same(g0, g1) and not _same(q0, _params(model.discriminator.q_head))
    assert all(not np.array_equal(a, b) for a, b in zip(d0, d1))        # body, D head and Q head all move
    model.discriminator.zero_grad()
    model.generator_step(8)
    assert not _same(g1, _params(model.generator)) and _same(d1, _params(model.discriminator))
    assert all(p.grad is None for p in model.discriminator.parameters())


def test_train_step_reports_both_terms_of_both_sides():
    model = _infogan(k=2)
    twin = copy.deepcopy(model)
    x = np.random.default_rng(2).standard_normal((8, 2))
    report = model.train_step(x)
    d = [twin.discriminator_step(x[4 * i:4 * (i + 1)]) for i in range(2)]
    g = twin.generator_step(4)
    assert report["discriminator_loss"] == pytest.approx(np.mean([t["discriminator_loss"] for t in d]), rel=1e-12)
    assert report["information_loss"] == pytest.approx(np.mean([t["information_loss"] for t in d]), rel=1e-12)
    assert report["generator_loss"] == pytest.approx(g["generator_loss"], rel=1e-12)
    assert report["generator_information_loss"] == pytest.approx(g["information_loss"], rel=1e-12)


def test_code_sweeps_and_inference():
    model = _infogan()
    z = np.random.default_rng(3).standard_normal((4, 2))
    cont = np.array([[-1.0, 0.0], [-0.3, 0.0], [0.3, 0.0], [1.0, 0.0]])
    x = model.generate_with_codes(z, [1, 1, 1, 1], cont)
    inputs = np.concatenate([z, np.tile([0.0, 1.0, 0.0], (4, 1)), cont], axis=1)
    np.testing.assert_array_equal(x.numpy(), model.generate(inputs).numpy())
    categories, probs, means = model.infer_codes(x)
    assert probs.shape == (4, 3) and means.shape == (4, 2)
    np.testing.assert_allclose(probs.numpy().sum(1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(categories, probs.numpy().argmax(1))
    samples = model.sample(5, rng=4)
    assert samples.shape == (5, 2) and not samples.requires_grad


# ----------------------------------------------------------------------------- errors and repr

def test_errors():
    rng = np.random.default_rng(0)
    with pytest.raises(TypeError, match="share its body with Q.*MLPDiscriminator has no 'features'"):
        InfoGAN(MLPGenerator(7, 2, rng=rng), MLPDiscriminator(2, rng=rng), 2)
    with pytest.raises(ValueError, match=r"generator does not take z of shape \(N, latent_dim\) = \(2, 7\)"):
        InfoGAN(MLPGenerator(6, 2, rng=rng), InfoDiscriminator(2, 3, 2, rng=rng), 2)
    with pytest.raises(ValueError, match="lam .* must be a finite number >= 0"):
        _infogan(lam=-1.0)
    with pytest.raises(ValueError, match="lam_continuous must be a finite number >= 0"):
        _infogan(lam_continuous=float("inf"))
    with pytest.raises(ValueError, match="n_continuous must be an int >= 0"):
        InfoDiscriminator(2, 3, -1)
    model = _infogan()
    with pytest.raises(ValueError, match=r"categories must be 2 ints in \[0, 3\)"):
        model.sample_codes(2, categories=[0, 3])
    with pytest.raises(ValueError, match=r"continuous must have shape \(2, 2\), got shape \(2, 1\)"):
        model.generate_with_codes(np.zeros((2, 2)), [0, 1], np.zeros((2, 1)))
    codes = model.sample_codes(3, rng=0)
    with pytest.raises(ValueError, match=r"z must have shape \(3, 2\) to go with 3 codes"):
        model.generator_input(td.tensor(np.zeros((3, 5))), codes)
    with pytest.raises(ValueError, match=r"Q's outputs must match the codes: q_logits \(3, 3\)"):
        log_q_codes(td.tensor(np.zeros((3, 4))), td.tensor(np.zeros((3, 2))), codes)
    with pytest.raises(ValueError, match=r"InfoDiscriminator: x must have 2 entries per example"):
        model.discriminator(td.tensor(np.zeros((3, 5))))
    with pytest.raises(ValueError, match=r"x must have shape \(N, 2\)"):
        model.train_step(np.zeros((4, 3)))
    with pytest.raises(NotImplementedError, match="generator_terms"):
        model.generator_loss(td.tensor(np.zeros((3, 2))))


def test_repr_is_short():
    text = repr(_infogan(lam=0.5))
    lines = text.splitlines()
    assert lines[0].startswith("InfoGAN(latent_dim=7, event_shape=(2,), noise_dim=2, codes=3 categories + 2 "
                               "continuous, lam=0.5, k=1)")
    assert "InfoDiscriminator(2 -> [6] -> 1 + Q(3 categories, 2 continuous)" in text
    assert len(lines) == 3 and "tensor(" not in text
