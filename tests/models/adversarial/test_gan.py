"""GAN: the alternation of Algorithm 1 (k discriminator steps on k minibatches, then one
generator step), which player each step moves, the two generator objectives, sampling, the
short repr and the errors for players that do not fit together."""
import copy

import numpy as np
import pytest

import tinydgm as td
from tinydgm.models.adversarial import (GAN, MLPDiscriminator, MLPGenerator, minimax_generator_loss,
                                        non_saturating_generator_loss)
from tinydgm.nn import Linear, Module
from tinydgm.optim import SGD


def _toy_gan(k=1, objective="non_saturating", seed=0, **kwargs):
    rng = np.random.default_rng(seed)
    return GAN(MLPGenerator(2, 2, (8,), rng=rng), MLPDiscriminator(2, (8,), rng=rng), 2, k=k,
               objective=objective, rng=seed, **kwargs)


def _batch(n, seed=1):
    return np.random.default_rng(seed).standard_normal((n, 2)).astype(np.float32) + 1.0


def _params(module):
    return [p.numpy().copy() for p in module.parameters()]


def _same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a, b))


def test_train_step_is_k_discriminator_steps_on_k_minibatches_then_one_generator_step():
    model = _toy_gan(k=3)
    twin = copy.deepcopy(model)
    x = _batch(12)
    report = model.train_step(x)
    d_losses = [twin.discriminator_step(x[4 * i:4 * (i + 1)])["discriminator_loss"] for i in range(3)]
    g_loss = twin.generator_step(4)
    assert report["discriminator_loss"] == pytest.approx(np.mean(d_losses), rel=1e-6)
    assert report["generator_loss"] == pytest.approx(g_loss, rel=1e-6)
    for a, b in zip(model.parameters(), twin.parameters()):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert {s["t"] for s in model.d_optimizer.state} == {3}     # three discriminator updates
    assert {s["t"] for s in model.g_optimizer.state} == {1}     # one generator update


def test_each_step_moves_only_its_player():
    model = _toy_gan()
    g0, d0 = _params(model.generator), _params(model.discriminator)
    model.discriminator_step(_batch(8))
    g1, d1 = _params(model.generator), _params(model.discriminator)
    assert _same(g0, g1) and not _same(d0, d1)
    model.discriminator.zero_grad()
    model.generator_step(8)
    assert not _same(g1, _params(model.generator)) and _same(d1, _params(model.discriminator))
    assert all(p.grad is None for p in model.discriminator.parameters())   # D was frozen during G's step
    assert all(p.requires_grad for p in model.discriminator.parameters())  # and unfrozen after


@pytest.mark.parametrize("objective, loss", [("minimax", minimax_generator_loss),
                                             ("non_saturating", non_saturating_generator_loss)])
def test_generator_objectives(objective, loss):
    model = _toy_gan(objective=objective, g_optimizer=None)
    x_fake = model.G(model.sample_latent(16, rng=3))
    assert model.generator_loss(x_fake).item() == pytest.approx(loss(model.D(x_fake)).item(), rel=1e-6)
    # one small generator step at a fixed discriminator raises D(G(z)) on fixed z (both objectives)
    model.g_optimizer = SGD(model.generator.parameters(), lr=1e-2)
    z = model.sample_latent(256, rng=4)
    before = td.sigmoid(model.D(model.generate(z))).numpy().mean()
    model.generator_step(256, rng=5)
    after = td.sigmoid(model.D(model.generate(z))).numpy().mean()
    assert after > before


def test_sample_protocol():
    model = _toy_gan()
    x = model.sample(5, rng=7)
    assert isinstance(x, td.Tensor) and x.shape == (5, 2) and x.dtype == np.float32
    assert not x.requires_grad and x.creator is None
    np.testing.assert_array_equal(x.numpy(), model.sample(5, rng=7).numpy())
    assert not np.array_equal(x.numpy(), model.sample(5, rng=8).numpy())
    assert model.generator.training                     # sampling restores the mode
    z = model.sample_latent(5, rng=7)
    np.testing.assert_array_equal(model.generate(z).numpy(), x.numpy())
    assert model.event_shape == (2,)


def test_repr_is_short():
    text = repr(_toy_gan(k=2, objective="minimax"))
    assert text.startswith("GAN(latent_dim=2, event_shape=(2,), objective=minimax, k=2")
    assert "MLPGenerator(2 -> [8] -> 2" in text and "MLPDiscriminator" in text
    assert "tensor(" not in text and len(text.splitlines()) <= 3


class _Flat(Module):
    """A discriminator over flat vectors of a given size."""

    def __init__(self, size, outputs=1):
        super().__init__()
        self.layer = Linear(size, outputs)

    def forward(self, x):
        return self.layer(x)


def test_mismatched_players_are_reported():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"generator makes x of shape \(3,\).*discriminator does not take.*"
                                         r"expects 2"):
        GAN(MLPGenerator(2, 3, rng=rng), MLPDiscriminator(2, rng=rng), 2)
    with pytest.raises(ValueError, match=r"generator does not take z of shape \(N, latent_dim\) = \(2, 4\)"):
        GAN(MLPGenerator(2, 2, rng=rng), MLPDiscriminator(2, rng=rng), 4)
    with pytest.raises(ValueError, match=r"one output per example, shape \(N,\) or \(N, 1\), got \(2, 3\)"):
        GAN(MLPGenerator(2, 2, rng=rng), _Flat(2, outputs=3), 2)
    model = GAN(MLPGenerator(2, 2, rng=rng), _Flat(2), 2)           # (N, 1) outputs are fine
    assert model.D(td.tensor(np.zeros((3, 2), np.float32))).shape == (3,)


def test_bad_arguments():
    rng = np.random.default_rng(0)
    g, d = MLPGenerator(2, 2, rng=rng), MLPDiscriminator(2, rng=rng)
    for k in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="k must be an int >= 1"):
            GAN(g, d, 2, k=k)
    with pytest.raises(ValueError, match="objective must be one of"):
        GAN(g, d, 2, objective="hinge")
    with pytest.raises(TypeError, match="discriminator must be a Module, got function"):
        GAN(g, lambda x: x, 2)
    with pytest.raises(TypeError, match="d_optimizer must be a tinydgm.optim Optimizer"):
        GAN(g, d, 2, d_optimizer="adam")
    model = GAN(g, d, 2, k=2)
    with pytest.raises(ValueError, match=r"x must have shape \(N, 2\).*got shape \(4, 3\)"):
        model.train_step(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="batch of 5 examples must split into k = 2"):
        model.train_step(np.zeros((5, 2)))
    with pytest.raises(ValueError, match=r"z must have shape \(n, 2\)"):
        model.generate(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="n must be a non-negative int"):
        model.sample(-1)
