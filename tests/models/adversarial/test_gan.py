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


def test_dcgan_rounds_match_a_pytorch_twin():
    """Same weights, data and z: after three rounds (one discriminator and one non-saturating
    generator step each, batch norm in training mode) every parameter and running statistic
    agrees with PyTorch to float64 precision (the generator's projection copied into a Linear;
    the default optimizers, Adam with DCGAN's lr = 2e-4 and beta1 = 0.5)."""
    torch = pytest.importorskip("torch")
    from tinydgm.models.adversarial import DCGANDiscriminator, DCGANGenerator
    nn = torch.nn
    td.set_default_dtype("float64")
    rng = np.random.default_rng(0)
    generator = DCGANGenerator(latent_dim=5, features=3, rng=rng, dtype="float64")
    discriminator = DCGANDiscriminator(features=3, rng=rng, dtype="float64")
    model = GAN(generator, discriminator, 5, rng=1)

    def copy_into(layer, ours, transpose=False):
        layer = layer.double()                           # before the copy: no float32 rounding
        with torch.no_grad():
            layer.weight.copy_(torch.tensor(ours.weight.numpy().T if transpose else ours.weight.numpy()))
            if ours.bias is not None:
                layer.bias.copy_(torch.tensor(ours.bias.numpy()))
        return layer
    t_generator = nn.Sequential(
        copy_into(nn.Linear(5, 6 * 49, bias=False), generator.project, transpose=True), nn.Unflatten(1, (6, 7, 7)),
        nn.BatchNorm2d(6), nn.ReLU(),
        copy_into(nn.ConvTranspose2d(6, 3, 4, 2, 1, bias=False), generator.up2), nn.BatchNorm2d(3), nn.ReLU(),
        copy_into(nn.ConvTranspose2d(3, 1, 4, 2, 1), generator.up3), nn.Tanh()).double()
    t_discriminator = nn.Sequential(
        copy_into(nn.Conv2d(1, 3, 4, 2, 1), discriminator.down1), nn.LeakyReLU(0.2),
        copy_into(nn.Conv2d(3, 6, 4, 2, 1), discriminator.down2), nn.LeakyReLU(0.2),
        copy_into(nn.Conv2d(6, 1, 7), discriminator.out), nn.Flatten(0)).double()
    opt_d = torch.optim.Adam(t_discriminator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_g = torch.optim.Adam(t_generator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    bce = nn.functional.binary_cross_entropy_with_logits
    draws = np.random.default_rng(1)                     # the model's rng: z of each step
    for round_ in range(3):
        x = np.tanh(np.random.default_rng(10 + round_).standard_normal((6, 1, 28, 28)))
        report = model.train_step(x)
        with torch.no_grad():
            x_fake = t_generator(torch.tensor(draws.standard_normal((6, 5))))
        real = torch.tensor(x)
        d_loss = bce(t_discriminator(real), torch.ones(6, dtype=torch.float64)) + \
            bce(t_discriminator(x_fake), torch.zeros(6, dtype=torch.float64))
        opt_d.zero_grad()
        d_loss.backward()
        opt_d.step()
        g_loss = bce(t_discriminator(t_generator(torch.tensor(draws.standard_normal((6, 5))))),
                     torch.ones(6, dtype=torch.float64))
        opt_g.zero_grad()
        g_loss.backward()
        opt_g.step()
        assert report["discriminator_loss"] == pytest.approx(d_loss.item(), rel=1e-10)
        assert report["generator_loss"] == pytest.approx(g_loss.item(), rel=1e-10)
    np.testing.assert_allclose(generator.project.weight.numpy(), t_generator[0].weight.detach().numpy().T,
                               rtol=1e-9, atol=1e-12)
    pairs = [(generator.up2, t_generator[4]), (generator.up3, t_generator[7]),
             (discriminator.down1, t_discriminator[0]), (discriminator.down2, t_discriminator[2]),
             (discriminator.out, t_discriminator[4])]
    for ours, theirs in pairs:
        np.testing.assert_allclose(ours.weight.numpy(), theirs.weight.detach().numpy(), rtol=1e-9, atol=1e-12)
    for ours, theirs in ((generator.norm1, t_generator[2]), (generator.norm2, t_generator[5])):
        np.testing.assert_allclose(ours.weight.numpy(), theirs.weight.detach().numpy(), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(ours.running_mean, theirs.running_mean.numpy(), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(ours.running_var, theirs.running_var.numpy(), rtol=1e-9, atol=1e-12)
