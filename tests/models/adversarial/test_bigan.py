"""BiGAN: the game V(D, E, G) on pairs, its gradients, which player each step moves, the
optimal joint discriminator D*(x, z) = p_E(x, z) / (p_E(x, z) + p_G(x, z)) against bivariate
Gaussian densities and against a trained D(x, z), the round trips G(E(x)) and E(G(z)) on a
1-D toy, and the errors for players that do not fit together."""
import copy
import math

import numpy as np
import pytest
from scipy import stats

import tinydgm as td
from tinydgm.models.adversarial import (BiGAN, JointDiscriminator, MLPDiscriminator, MLPGenerator,
                                        compare_to_optimal, jensen_shannon_divergence, optimal_joint_discriminator,
                                        optimal_value, quadrature_grid)
from tinydgm.nn import Linear, Module
from tinydgm.optim import Adam

from latent_helpers import with_parameters


def _bigan(seed=0, objective="non_saturating", k=1, dtype="float64", hidden=(6,), **kwargs):
    rng = np.random.default_rng(seed)
    return BiGAN(MLPGenerator(3, 2, hidden, rng=rng, dtype=dtype), MLPGenerator(2, 3, hidden, rng=rng, dtype=dtype),
                 JointDiscriminator(3, 2, hidden, rng=rng, dtype=dtype), 2, objective=objective, k=k, rng=seed,
                 **kwargs)


def _data(n, seed=1):
    return 1.0 + np.random.default_rng(seed).standard_normal((n, 3))


def _log_sigmoid(logits):
    return -np.logaddexp(0.0, -logits)


def _params(module):
    return [p.numpy().copy() for p in module.parameters()]


def _same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a, b))


# ----------------------------------------------------------------------------- the game

def test_value_is_the_lecture_objective_on_pairs():
    """V = mean ln D(x, E(x)) + mean ln(1 - D(G(z), z)), from the logits of the two kinds of pairs."""
    model = _bigan()
    x, z = td.tensor(_data(7)), td.tensor(np.random.default_rng(2).standard_normal((5, 2)))
    encoder_logits = model.D(x, model.E(x)).numpy()
    generator_logits = model.D(model.G(z), z).numpy()
    expected = _log_sigmoid(encoder_logits).mean() + _log_sigmoid(-generator_logits).mean()
    assert model.value(x, z).item() == pytest.approx(expected, rel=1e-12)
    # the discriminator's pairs really are (x, E(x)) and (G(z), z): D sees the concatenation
    direct = model.discriminator.layers[0](td.concatenate([x, model.encoder(x)], axis=1))
    first = model.discriminator.layers[0](td.concatenate([x, model.E(x)], axis=1))
    np.testing.assert_array_equal(direct.numpy(), first.numpy())


@pytest.mark.parametrize("objective", ["non_saturating", "minimax"])
def test_encoder_generator_loss(objective):
    """minimax: E and G descend V itself; non-saturating: the labels swapped,
    -mean ln D(G(z), z) - mean ln(1 - D(x, E(x)))."""
    model = _bigan(objective=objective)
    x, z = td.tensor(_data(6)), td.tensor(np.random.default_rng(3).standard_normal((6, 2)))
    l_e, l_g = model.D(x, model.E(x)).numpy(), model.D(model.G(z), z).numpy()
    expected = (_log_sigmoid(l_e).mean() + _log_sigmoid(-l_g).mean() if objective == "minimax"
                else -_log_sigmoid(l_g).mean() - _log_sigmoid(-l_e).mean())
    assert model.encoder_generator_loss(x, z).item() == pytest.approx(expected, rel=1e-12)


def _objectives(model, x, z):
    return {
        "value": lambda: model.value(x, z),
        "discriminator_loss": lambda: model.discriminator_terms(x, model.E(x), model.G(z), z)["discriminator_loss"],
        "encoder_generator_loss": lambda: model.encoder_generator_loss(x, z),
    }


@pytest.mark.parametrize("objective", ["non_saturating", "minimax"])
@pytest.mark.parametrize("name", ["value", "discriminator_loss", "encoder_generator_loss"])
def test_every_objective_is_gradient_checked_in_every_parameter(objective, name):
    """First and second derivatives w.r.t. every parameter of E, G and D, in float64, with the
    data x and the prior draws z held fixed."""
    model = _bigan(seed=4, objective=objective, hidden=(4,))
    x, z = td.tensor(_data(5, seed=5)), td.tensor(np.random.default_rng(6).standard_normal((5, 2)))
    fn, inputs = with_parameters(model, _objectives(model, x, z)[name])
    assert td.gradcheck(fn, inputs)
    assert td.gradgradcheck(fn, inputs)


def test_objectives_reach_the_players_they_should():
    """The discriminator's loss on detached pairs reaches only D; the E-and-G loss reaches E, G and D."""
    model = _bigan()
    x, z = td.tensor(_data(4)), td.tensor(np.random.default_rng(7).standard_normal((4, 2)))
    with td.no_grad():
        z_hat, x_fake = model.E(x), model.G(z)
    model.discriminator_terms(x, z_hat, x_fake, z)["discriminator_loss"].backward()
    assert all(p.grad is not None for p in model.discriminator.parameters())
    assert all(p.grad is None for p in list(model.encoder.parameters()) + list(model.generator.parameters()))
    model.zero_grad()
    model.encoder_generator_loss(x, z).backward()
    for player in (model.encoder, model.generator):
        assert all(p.grad is not None and np.abs(p.grad.numpy()).sum() > 0 for p in player.parameters())


# ----------------------------------------------------------------------------- training

def test_each_step_moves_only_its_side():
    model = _bigan(dtype="float32")
    e0, g0, d0 = _params(model.encoder), _params(model.generator), _params(model.discriminator)
    model.discriminator_step(_data(8).astype(np.float32))
    e1, g1, d1 = _params(model.encoder), _params(model.generator), _params(model.discriminator)
    assert _same(e0, e1) and _same(g0, g1) and not _same(d0, d1)
    model.discriminator.zero_grad()
    model.generator_step(_data(8).astype(np.float32))
    assert not _same(e1, _params(model.encoder)) and not _same(g1, _params(model.generator))
    assert _same(d1, _params(model.discriminator))
    assert all(p.grad is None for p in model.discriminator.parameters())       # frozen during E and G's step
    assert all(p.requires_grad for p in model.discriminator.parameters())      # and unfrozen after
    # one optimizer moves the encoder and the generator together
    assert len(model.g_optimizer.params) == len(list(model.encoder.parameters())) + \
        len(list(model.generator.parameters()))


def test_train_step_is_k_discriminator_steps_then_one_encoder_generator_step():
    model = _bigan(k=3)
    twin = copy.deepcopy(model)
    x = _data(12)
    report = model.train_step(x)
    d_losses = [twin.discriminator_step(x[4 * i:4 * (i + 1)])["discriminator_loss"] for i in range(3)]
    eg_loss = twin.generator_step(x[8:])
    assert report["discriminator_loss"] == pytest.approx(np.mean(d_losses), rel=1e-12)
    assert report["encoder_generator_loss"] == pytest.approx(eg_loss, rel=1e-12)
    for a, b in zip(model.parameters(), twin.parameters()):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_round_trips_invert_on_a_1d_toy():
    """x ~ N(1, 0.5^2), z ~ N(0, 1), MLP players: at the start G(E(x)) and E(G(z)) are far from x
    and z; after 1,000 rounds both mean squared errors have fallen tenfold or more (E and G
    invert each other at the game's optimum, Donahue et al. Theorem 2)."""
    rng = np.random.default_rng(0)
    model = BiGAN(MLPGenerator(1, 1, (32,), rng=rng), MLPGenerator(1, 1, (32,), rng=rng),
                  JointDiscriminator(1, 1, (32, 32), rng=rng), 1, lr=1e-3, rng=0)
    data = np.random.default_rng(100)
    x_eval = (1 + 0.5 * data.standard_normal((1000, 1))).astype(np.float32)
    z_eval = data.standard_normal((1000, 1)).astype(np.float32)
    before = model.reconstruction_errors(x_eval, z_eval)
    for _ in range(1000):
        model.train_step((1 + 0.5 * data.standard_normal((128, 1))).astype(np.float32))
    after = model.reconstruction_errors(x_eval, z_eval)
    assert before["x"] > 0.5 and before["z"] > 0.5             # Var x = 0.25, Var z = 1
    assert after["x"] < 0.1 * before["x"] and after["z"] < 0.1 * before["z"]
    assert after["x"] < 0.1 * 0.25 and after["z"] < 0.1        # under a tenth of each variance


def test_inference_methods():
    model = _bigan()
    x, z = _data(5), np.random.default_rng(8).standard_normal((5, 2))
    z_hat = model.encode(x)
    assert z_hat.shape == (5, 2) and not z_hat.requires_grad
    np.testing.assert_allclose(model.reconstruct(x).numpy(), model.generate(z_hat).numpy(), rtol=1e-14)
    np.testing.assert_allclose(model.reconstruct_latent(z).numpy(), model.encode(model.generate(z)).numpy(),
                               rtol=1e-14)
    errors = model.reconstruction_errors(x, z)
    assert errors["x"] == pytest.approx(((x - model.reconstruct(x).numpy()) ** 2).sum(1).mean(), rel=1e-12)
    assert errors["z"] == pytest.approx(((z - model.reconstruct_latent(z).numpy()) ** 2).sum(1).mean(), rel=1e-12)
    samples = model.sample(4, rng=1)
    assert samples.shape == (4, 3) and not samples.requires_grad


# ----------------------------------------------------------------------------- the optimal joint discriminator

class NoisyAffine(Module):
    """v = scale u + shift + std eps, eps ~ N(0, 1) from its own generator: a stochastic player
    whose conditional density N(v; scale u + shift, std^2) is known."""

    def __init__(self, scale, shift, std, seed, dtype="float32"):
        super().__init__()
        self.layer = Linear(1, 1, dtype=dtype)
        self.layer.weight.data[...] = scale
        self.layer.bias.data[...] = shift
        self.std, self.noise, self.dtype_name = std, np.random.default_rng(seed), dtype

    def forward(self, u):
        eps = self.noise.standard_normal(u.shape).astype(self.dtype_name)
        return self.layer(u) + td.tensor(self.std * eps, dtype=self.dtype_name)


DATA = (1.0, 0.5)                 # p_data(x) = N(1, 0.5^2)
ENCODER = (0.8, -0.3, 0.4)        # p_E(z|x) = N(z; 0.8 x - 0.3, 0.4^2)
GENERATOR = (0.6, 0.5, 0.3)       # p_G(x|z) = N(x; 0.6 z + 0.5, 0.3^2), z ~ N(0, 1)


def _joint_logs(x, z):
    """(ln p_data(x), ln p_E(z|x), ln p(z), ln p_G(x|z)) on the grid."""
    a, b, s = ENCODER
    c, d, t = GENERATOR
    return (stats.norm.logpdf(x, *DATA), stats.norm.logpdf(z, a * x + b, s), stats.norm.logpdf(z, 0, 1),
            stats.norm.logpdf(x, c * z + d, t))


def _bivariate_joints(points):
    """ln p_E(x, z) and ln p_G(x, z) as the bivariate Gaussians they are (means and covariances
    worked out by hand: an independent route to the same densities)."""
    (m, v), (a, b, s), (c, d, t) = (DATA[0], DATA[1] ** 2), ENCODER, GENERATOR
    p_e = stats.multivariate_normal([m, a * m + b], [[v, a * v], [a * v, a * a * v + s * s]])
    p_g = stats.multivariate_normal([d, 0.0], [[c * c + t * t, c], [c, 1.0]])
    return p_e.logpdf(points), p_g.logpdf(points)


def test_optimal_joint_discriminator_is_the_joint_density_ratio():
    points, cell = quadrature_grid(-6.0, 6.0, 300, dim=2)
    x, z = points[:, 0], points[:, 1]
    d_star = optimal_joint_discriminator(*_joint_logs(x, z))
    log_p_e, log_p_g = _bivariate_joints(points)
    np.testing.assert_allclose(d_star, np.exp(log_p_e) / (np.exp(log_p_e) + np.exp(log_p_g)), rtol=1e-9, atol=1e-300)
    # max_D V(D, E, G) = 2 JSD(p_E(x, z) || p_G(x, z)) - ln 4, and D* beats any other D
    best = optimal_value(log_p_e, log_p_g, cell)
    assert np.exp(log_p_e).sum() * cell == pytest.approx(1.0, abs=1e-8)     # the grid holds both joints
    assert best == pytest.approx(2 * jensen_shannon_divergence(log_p_e, log_p_g, cell) - math.log(4), abs=1e-7)
    assert -math.log(4) < best < 0.0
    from tinydgm.models.adversarial import discriminator_value
    for shift in (-0.2, 0.1):
        worse = np.clip(d_star + shift * d_star * (1 - d_star), 1e-12, 1 - 1e-12)
        assert discriminator_value(worse, log_p_e, log_p_g, cell) < best
    with pytest.raises(ValueError, match=r"same shape.*log_p_z \(4,\)"):
        optimal_joint_discriminator(np.zeros(3), np.zeros(3), np.zeros(4), np.zeros(3))


def test_trained_joint_discriminator_approaches_the_optimal_one():
    """Fix a noisy linear encoder and generator (so both joints are known bivariate Gaussians),
    train only D(x, z) with ``BiGAN.discriminator_step`` and compare it with D* on a grid."""
    rng = np.random.default_rng(0)
    encoder, generator = NoisyAffine(*ENCODER, seed=1), NoisyAffine(*GENERATOR, seed=2)
    discriminator = JointDiscriminator(1, 1, (32, 32), rng=rng)
    model = BiGAN(encoder, generator, discriminator, 1, d_optimizer=Adam(discriminator.parameters(), lr=1e-3),
                  rng=3)
    points, cell = quadrature_grid(-5.0, 5.0, 200, dim=2)
    log_p_e, log_p_g = _bivariate_joints(points)

    def pair_logits(p):
        return model.D(p[:, :1], p[:, 1:])
    grid = points.astype(np.float32)
    before = compare_to_optimal(pair_logits, grid, log_p_e, log_p_g, cell)
    frozen = _params(encoder) + _params(generator)
    data = np.random.default_rng(4)
    for _ in range(2000):
        model.discriminator_step((DATA[0] + DATA[1] * data.standard_normal((256, 1))).astype(np.float32))
    after = compare_to_optimal(pair_logits, grid, log_p_e, log_p_g, cell, support_fraction=0.1)
    assert before["mean_abs_error"] > 0.1
    assert after["mean_abs_error"] < 0.02
    assert after["max_abs_error"] < 0.1                        # where the mixture has >= 10% of its peak
    assert 0.0 <= after["value_gap"] < 3e-3
    assert _same(frozen, _params(encoder) + _params(generator))    # the discriminator step leaves E and G alone


# ----------------------------------------------------------------------------- errors and repr

class _SingleInput(Module):
    """A discriminator of x alone (not of pairs)."""

    def __init__(self):
        super().__init__()
        self.layer = Linear(3, 1, dtype="float64")

    def forward(self, x):
        return self.layer(x)


def test_mismatched_players_are_reported():
    rng = np.random.default_rng(0)
    enc, gen = MLPGenerator(3, 2, rng=rng, dtype="float64"), MLPGenerator(2, 3, rng=rng, dtype="float64")
    disc = JointDiscriminator(3, 2, rng=rng, dtype="float64")
    with pytest.raises(ValueError, match=r"encoder must map x of shape \(2, 3\) to z of shape.*\(2, 2\), got \(2, 4\)"):
        BiGAN(MLPGenerator(3, 4, rng=rng, dtype="float64"), gen, disc, 2)
    with pytest.raises(ValueError, match=r"generator makes x of shape \(4,\).*encoder does not take"):
        BiGAN(enc, MLPGenerator(2, 4, rng=rng, dtype="float64"), disc, 2)
    with pytest.raises(ValueError, match=r"discriminator does not take the pair \(x, z\)"):
        BiGAN(enc, gen, _SingleInput(), 2)
    with pytest.raises(ValueError, match=r"generator does not take z of shape \(N, latent_dim\) = \(2, 5\)"):
        BiGAN(enc, gen, disc, 5)
    with pytest.raises(ValueError, match=r"JointDiscriminator: expects x with 3 entries.*z of shape \(N, 2\)"):
        disc(td.tensor(np.zeros((2, 3))), td.tensor(np.zeros((2, 1))))
    with pytest.raises(ValueError, match=r"one output per pair.*got \(2, 2\)"):
        class TwoOutputs(JointDiscriminator):
            def forward(self, x, z):
                return td.concatenate([x[:, :1], z[:, :1]], axis=1)
        BiGAN(enc, gen, TwoOutputs(3, 2, dtype="float64"), 2)
    with pytest.raises(TypeError, match="encoder must be a Module, got function"):
        BiGAN(lambda x: x, gen, disc, 2)
    with pytest.raises(TypeError, match="discriminator must be a Module"):
        BiGAN(enc, gen, MLPDiscriminator, 2)


def test_bad_arguments():
    model = _bigan(k=2)
    with pytest.raises(ValueError, match=r"x must have shape \(N, 3\).*got shape \(4, 2\)"):
        model.train_step(np.zeros((4, 2)))
    with pytest.raises(ValueError, match="batch of 5 examples must split into k = 2"):
        model.train_step(np.zeros((5, 3)))
    with pytest.raises(ValueError, match=r"z must have shape \(n, 2\), got shape \(3, 1\)"):
        model.reconstruction_errors(np.zeros((3, 3)), np.zeros((3, 1)))
    with pytest.raises(ValueError, match=r"x must have shape \(N, 3\)"):
        model.encode(np.zeros((3, 4)))
    with pytest.raises(NotImplementedError, match="encoder_generator_loss"):
        model.generator_loss(td.tensor(np.zeros((3, 3))))
    with pytest.raises(ValueError, match="objective must be one of"):
        _bigan(objective="hinge")
    with pytest.raises(TypeError, match="g_optimizer must be a tinydgm.optim Optimizer"):
        _bigan(g_optimizer="adam")


def test_repr_is_short():
    text = repr(_bigan(k=2))
    lines = text.splitlines()
    assert lines[0].startswith("BiGAN(latent_dim=2, event_shape=(3,), objective=non_saturating, k=2)")
    assert "(encoder): MLPGenerator(3 -> [6] -> 2" in text and "JointDiscriminator(3 + 2 -> [6] -> 1" in text
    assert len(lines) == 4 and "tensor(" not in text
