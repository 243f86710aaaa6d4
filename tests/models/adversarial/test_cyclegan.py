"""CycleGAN: the least-squares losses and the cycle loss are the paper's formulas and are
gradient-checked (first and second order, float64), the generators' whole objective is
gradient-checked through the networks, one step updates each pair of players on its own
loss, and on 2-D domains where Y is X rotated by 45 degrees the trained G recovers the
rotation (and F its inverse) in a fixed budget, without ever seeing a pair."""
import numpy as np
import pytest

import tinydgm as td
from tinydgm.models.adversarial import MLPDiscriminator, MLPGenerator
from tinydgm.models.adversarial.cyclegan import (CycleGAN, ResidualMLP, cycle_consistency_loss,
                                                 least_squares_discriminator_loss, least_squares_generator_loss)

from flow_contracts import swap_parameters


def _leaf(a):
    return td.tensor(np.asarray(a, dtype=np.float64), dtype="float64", requires_grad=True)


def _model(seed=0, hidden=(8,), lambda_cycle=10.0, dtype="float64", residual=False, **kwargs):
    rng = np.random.default_rng(seed)
    if residual:
        g, f = ResidualMLP(2, hidden, rng=rng, dtype=dtype), ResidualMLP(2, hidden, rng=rng, dtype=dtype)
    else:
        g, f = MLPGenerator(2, 2, hidden, rng=rng, dtype=dtype), MLPGenerator(2, 2, hidden, rng=rng, dtype=dtype)
    return CycleGAN(g, f, MLPDiscriminator(2, hidden, rng=rng, dtype=dtype),
                    MLPDiscriminator(2, hidden, rng=rng, dtype=dtype), 2, lambda_cycle=lambda_cycle, **kwargs)


# ----------------------------------------------------------------------------- the losses

def test_least_squares_losses_are_the_papers_formulas():
    rng = np.random.default_rng(0)
    real, fake = rng.standard_normal(7), rng.standard_normal(5)
    d = least_squares_discriminator_loss(td.tensor(real, dtype="float64"), td.tensor(fake, dtype="float64"))
    assert d.item() == pytest.approx(np.mean((real - 1) ** 2) + np.mean(fake ** 2), rel=1e-13)
    g = least_squares_generator_loss(td.tensor(fake, dtype="float64"))
    assert g.item() == pytest.approx(np.mean((fake - 1) ** 2), rel=1e-13)
    # the discriminator's optimum for fixed densities: D*(x) = p_data / (p_data + p_fake) (Mao et al.
    # with targets 1 and 0); with every score at 1/2 (p_data = p_fake) both losses take 1/4 per term
    half = td.tensor(np.full(4, 0.5), dtype="float64")
    assert least_squares_discriminator_loss(half, half).item() == pytest.approx(0.5)
    assert least_squares_generator_loss(half).item() == pytest.approx(0.25)


def test_cycle_loss_is_the_mean_absolute_error_of_both_cycles():
    rng = np.random.default_rng(1)
    x, x_c, y, y_c = (rng.standard_normal((4, 3)) for _ in range(4))
    loss = cycle_consistency_loss(*(td.tensor(a, dtype="float64") for a in (x, x_c, y, y_c)))
    assert loss.item() == pytest.approx(np.abs(x_c - x).mean() + np.abs(y_c - y).mean(), rel=1e-13)


def test_every_loss_is_gradient_checked():
    rng = np.random.default_rng(2)
    real, fake = _leaf(rng.standard_normal(5)), _leaf(rng.standard_normal(5))
    assert td.gradcheck(least_squares_discriminator_loss, [real, fake])
    assert td.gradgradcheck(least_squares_discriminator_loss, [real, fake])
    assert td.gradcheck(least_squares_generator_loss, [fake])
    assert td.gradgradcheck(least_squares_generator_loss, [fake])
    # |a - b| away from its kink: differences of at least 0.1 in size
    x, y = rng.standard_normal((3, 2)), rng.standard_normal((3, 2))
    step = rng.choice([-1.0, 1.0], (2, 3, 2)) * (0.1 + rng.random((2, 3, 2)))
    inputs = [_leaf(x), _leaf(x + step[0]), _leaf(y), _leaf(y + step[1])]
    assert td.gradcheck(cycle_consistency_loss, inputs)
    assert td.gradgradcheck(cycle_consistency_loss, inputs)


def _objective_of_params(model, names, x, y):
    def fn(*params):
        saved = swap_parameters(model, dict(zip(names, params)))
        try:
            terms, _ = model.generator_terms(x, y)
            return sum(terms.values())
        finally:
            swap_parameters(model, saved)
    params = dict(model.named_parameters())
    return fn, [_leaf(params[name].numpy()) for name in names]


def test_generator_objective_is_gradient_checked_through_all_four_networks():
    """L_GAN(G, D_Y) + L_GAN(F, D_X) + lambda L_cyc as a function of the weights of G, F and both
    discriminators (their gradient is what a joint step would use; the training step freezes them)."""
    model = _model(seed=3)
    rng = np.random.default_rng(4)
    x, y = td.tensor(rng.standard_normal((6, 2)), dtype="float64"), td.tensor(rng.standard_normal((6, 2)),
                                                                               dtype="float64")
    names = [name for name, _ in model.named_parameters()]
    fn, params = _objective_of_params(model, names, x, y)
    assert td.gradcheck(fn, params)
    last = [name for name in names if ".layers.1." in name]            # second order on the last layers
    fixed = {name: p for name, p in zip(names, params) if name not in last}

    def fn_last(*ps):
        values = dict(fixed, **dict(zip(last, ps)))
        return fn(*[values[name] for name in names])
    assert td.gradgradcheck(fn_last, [p for name, p in zip(names, params) if name in last])


def test_discriminator_objective_is_gradient_checked():
    model = _model(seed=5)
    rng = np.random.default_rng(6)
    x, y, x_fake, y_fake = (td.tensor(rng.standard_normal((5, 2)), dtype="float64") for _ in range(4))
    names = [name for name, _ in model.named_parameters() if name.startswith("discriminator")]

    def fn(*params):
        saved = swap_parameters(model, dict(zip(names, params)))
        try:
            return sum(model.discriminator_terms(x, y, x_fake, y_fake).values())
        finally:
            swap_parameters(model, saved)
    params = dict(model.named_parameters())
    inputs = [_leaf(params[name].numpy()) for name in names]
    assert td.gradcheck(fn, inputs)
    assert td.gradgradcheck(fn, inputs)


# ----------------------------------------------------------------------------- the training step

def test_one_step_is_the_generators_update_then_the_discriminators():
    """The step equals: Adam on G and F with the gradient of their objective (discriminators
    untouched), then Adam on D_X and D_Y with the gradient of theirs at the translations made
    before the generators moved. Replayed by hand on a copy with plain SGD."""
    lr = 0.05
    model = _model(seed=7, g_optimizer=None)
    twin = _model(seed=7)
    model.g_optimizer = td.optim.SGD(model.generator_xy.parameters() + model.generator_yx.parameters(), lr=lr)
    model.d_optimizer = td.optim.SGD(model.discriminator_x.parameters() + model.discriminator_y.parameters(), lr=lr)
    rng = np.random.default_rng(8)
    x, y = rng.standard_normal((6, 2)), rng.standard_normal((6, 2))
    report = model.train_step((x, y))

    xt, yt = td.tensor(x, dtype="float64"), td.tensor(y, dtype="float64")
    terms, (y_fake, x_fake) = twin.generator_terms(xt, yt)
    sum(terms.values()).backward()
    g_grads = {name: p.grad.numpy().copy() for name, p in twin.named_parameters() if name.startswith("generator")}
    twin.zero_grad()
    sum(twin.discriminator_terms(xt, yt, x_fake.detach(), y_fake.detach()).values()).backward()
    d_grads = {name: p.grad.numpy().copy() for name, p in twin.named_parameters()
               if name.startswith("discriminator")}
    for name, p in twin.named_parameters():
        grad = g_grads.get(name, d_grads.get(name))
        np.testing.assert_allclose(dict(model.named_parameters())[name].numpy(), p.numpy() - lr * grad,
                                   rtol=1e-12, atol=1e-14, err_msg=name)
    assert report["cycle"] == pytest.approx(terms["cycle"].item(), rel=1e-12)
    assert set(report) == {"gan_G", "gan_F", "cycle", "D_X", "D_Y"}


def test_a_stacked_batch_is_the_pair_of_batches():
    rng = np.random.default_rng(9)
    x, y = rng.standard_normal((4, 2)), rng.standard_normal((4, 2))
    a, b = _model(seed=10), _model(seed=10)
    report_pair = a.train_step((x, y))
    report_stacked = b.train_step(np.stack([x, y], axis=1))
    assert report_pair == pytest.approx(report_stacked, rel=1e-12)
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        np.testing.assert_array_equal(p.numpy(), q.numpy(), err_msg=name)


def test_residual_translator_starts_as_the_identity():
    translator = ResidualMLP(2, (8,), rng=np.random.default_rng(0), dtype="float64")
    x = np.random.default_rng(1).standard_normal((5, 2))
    np.testing.assert_array_equal(translator(td.tensor(x, dtype="float64")).numpy(), x)


# ----------------------------------------------------------------------------- the rotation toy

THETA = np.pi / 4
ROTATION = np.array([[np.cos(THETA), -np.sin(THETA)], [np.sin(THETA), np.cos(THETA)]])
CENTRES = np.array([[2.0, 0.0], [-1.0, 1.2], [-0.5, -1.5]])
WEIGHTS = np.array([0.5, 0.3, 0.2])         # unequal, so no permutation of the clusters is a symmetry


def _domain_x(n, rng):
    """Three overlapping Gaussian clusters of unequal weights: no rotation maps X onto itself."""
    return CENTRES[rng.choice(3, n, p=WEIGHTS)] + 0.35 * rng.standard_normal((n, 2))


def _angle(a):
    """The rotation angle of the orthogonal part of a 2 x 2 matrix."""
    return np.arctan2(a[1, 0] - a[0, 1], a[0, 0] + a[1, 1])


def test_cyclegan_recovers_a_rotation_from_unpaired_samples():
    """Y = R X with R a 45-degree rotation; G and F see independent batches of X and of Y.
    After 500 steps G(x) is within 0.3 of R x on average (the identity map is 1.4 away, a
    permuted matching of the clusters 2.5), the affine fit of G turns by 45 +- 6 degrees, and
    F undoes it. lambda = 1 (not the paper's 10): the translators start at the identity, where
    the cycle loss is already met and a large lambda holds them there."""
    model = _model(seed=0, hidden=(32, 32), lambda_cycle=1.0, dtype="float32", residual=True, lr=2e-3)
    data, test = np.random.default_rng(100), np.random.default_rng(5)
    x_test = _domain_x(1000, test).astype(np.float32)
    y_test = x_test @ ROTATION.T

    def errors():
        g_err = np.linalg.norm(model.translate_xy(x_test).numpy() - y_test, axis=1).mean()
        f_err = np.linalg.norm(model.translate_yx(y_test).numpy() - x_test, axis=1).mean()
        return g_err, f_err
    before = errors()
    for _ in range(500):
        x, y = _domain_x(64, data), _domain_x(64, data) @ ROTATION.T     # two unpaired batches
        model.train_step((x.astype(np.float32), y.astype(np.float32)))
    g_err, f_err = errors()
    assert before[0] > 1.3 and before[1] > 1.3
    assert g_err < 0.3 and f_err < 0.3, (before, (g_err, f_err))
    design = np.hstack([x_test, np.ones((len(x_test), 1))])
    fit, *_ = np.linalg.lstsq(design, model.translate_xy(x_test).numpy(), rcond=None)
    assert np.degrees(_angle(fit[:2].T)) == pytest.approx(45.0, abs=6.0)
    cycled = model.cycle_x(x_test).numpy()
    assert np.linalg.norm(cycled - x_test, axis=1).mean() < 0.15


# ----------------------------------------------------------------------------- errors

def test_clear_errors_for_bad_players_and_batches():
    rng = np.random.default_rng(0)
    g, f = MLPGenerator(2, 2, (4,), rng=rng), MLPGenerator(2, 3, (4,), rng=rng)
    d = MLPDiscriminator(2, (4,), rng=rng)
    with pytest.raises(ValueError, match=r"generator_yx \(F\) must map a batch"):
        CycleGAN(g, f, d, d, 2)
    with pytest.raises(TypeError, match="discriminator_y must be a Module"):
        CycleGAN(g, g, d, "D", 2)
    with pytest.raises(ValueError, match="lambda_cycle must be a finite number >= 0"):
        CycleGAN(g, g, d, d, 2, lambda_cycle=-1)
    model = CycleGAN(g, MLPGenerator(2, 2, (4,), rng=rng), d, MLPDiscriminator(2, (4,), rng=rng), 2)
    with pytest.raises(ValueError, match=r"x must have shape \(N, 2\)"):
        model.train_step((np.zeros((3, 3)), np.zeros((3, 2))))
    with pytest.raises(ValueError, match=r"batch must be \(x, y\), got 3 items"):
        model.train_step((np.zeros((3, 2)),) * 3)
    with pytest.raises(ValueError, match=r"stacked batch \(x \| y\) must have shape \(N, 2, 2\)"):
        model.train_step(np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"y must have shape \(N, 2\)"):
        model.translate_yx(np.zeros((3, 4)))


def test_conv_translator_is_translation_equivariant_and_gradient_checked():
    from tinydgm.models.adversarial.cyclegan import ConvTranslator
    translator = ConvTranslator(1, channels=3, n_layers=1, rng=np.random.default_rng(0), dtype="float64")
    x = np.zeros((1, 1, 10, 10))
    x[0, 0, 4, 4] = 1.0
    shifted = np.roll(x, 2, axis=3)
    y, y_shifted = (translator(td.tensor(a, dtype="float64")).numpy() for a in (x, shifted))
    assert y.shape == x.shape and ((y > 0) & (y < 1)).all()                       # sigmoid pixels
    np.testing.assert_allclose(np.roll(y, 2, axis=3)[..., 3:-3], y_shifted[..., 3:-3], rtol=1e-12)
    names = [name for name, _ in translator.named_parameters()]
    params = dict(translator.named_parameters())
    image = td.tensor(np.random.default_rng(1).random((2, 1, 5, 5)), dtype="float64")

    def fn(*ps):
        saved = swap_parameters(translator, dict(zip(names, ps)))
        try:
            return translator(image)
        finally:
            swap_parameters(translator, saved)
    assert td.gradcheck(fn, [_leaf(params[name].numpy()) for name in names])
