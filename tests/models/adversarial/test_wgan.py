"""WGAN and WGAN-GP: weight clipping keeps the critic in the box, the critic's loss has no
log-sigmoid, the penalty enters the critic's update, one training round matches a PyTorch twin
step for step, and WGAN-GP covers all 8 modes of the 8-Gaussians toy within a fixed budget."""
import math

import numpy as np
import pytest

import tinydgm as td
from tinydgm.data.toy import eight_gaussians
from tinydgm.models.adversarial import WGAN, WGANGP, MLPDiscriminator, MLPGenerator, gradient_penalty
from tinydgm.optim import Adam, RMSProp


def _players(seed=0, hidden=(8,), latent_dim=2, dtype=None):
    rng = np.random.default_rng(seed)
    return (MLPGenerator(latent_dim, 2, hidden, rng=rng, dtype=dtype),
            MLPDiscriminator(2, hidden, rng=rng, dtype=dtype))


def _batch(n, seed=1):
    return eight_gaussians(n, np.random.default_rng(seed))


def test_weight_clipping_keeps_every_critic_weight_in_the_box():
    c = 0.01
    model = WGAN(*_players(), 2, n_critic=2, clip_value=c, lr=5e-3, rng=0)
    weights = np.concatenate([p.numpy().ravel() for p in model.critic.parameters()])
    assert np.all(np.abs(weights) <= c)                              # clipped at construction
    for step in range(3):
        model.train_step(_batch(16, seed=step))
        weights = np.concatenate([p.numpy().ravel() for p in model.critic.parameters()])
        assert np.all(np.abs(weights) <= c)
        assert np.mean(np.abs(weights) == np.float32(c)) > 0.5      # the clip is active, not vacuous
    generator = np.concatenate([p.numpy().ravel() for p in model.generator.parameters()])
    assert np.any(np.abs(generator) > c)                             # the generator is not clipped


def test_wgan_defaults_follow_arjovsky_et_al():
    model = WGAN(*_players(), 2)
    assert model.n_critic == 5 and model.clip_value == 0.01 and model.critic is model.discriminator
    assert isinstance(model.d_optimizer, RMSProp) and isinstance(model.g_optimizer, RMSProp)
    assert model.d_optimizer.lr == 5e-5
    gp = WGANGP(*_players(), 2)
    assert gp.n_critic == 5 and gp.lam == 10.0 and gp.clip_value is None
    assert isinstance(gp.d_optimizer, Adam) and gp.d_optimizer.betas == (0.0, 0.9) and gp.d_optimizer.lr == 1e-4
    assert repr(gp).startswith("WGANGP(latent_dim=2, event_shape=(2,), n_critic=5, lam=10.0")


def test_critic_loss_uses_raw_scores():
    model = WGAN(*_players(), 2, clip_value=None, rng=0)
    x_real, x_fake = td.tensor(_batch(8)), model.sample(8, rng=3)
    terms = model.discriminator_terms(x_real, x_fake)
    real, fake = model.critic(x_real).numpy(), model.critic(x_fake).numpy()
    assert terms["critic_loss"].item() == pytest.approx(fake.mean() - real.mean(), rel=1e-5)
    assert model.generator_loss(x_fake).item() == pytest.approx(-fake.mean(), rel=1e-5)
    report = model.train_step(_batch(40))
    assert report["wasserstein_estimate"] == -report["critic_loss"]


def test_penalty_enters_the_critic_update():
    model = WGANGP(*_players(), 2, lam=10.0, rng=0)
    x_real, x_fake = td.tensor(_batch(8)), model.sample(8, rng=3)
    terms = model.discriminator_terms(x_real, x_fake, rng=np.random.default_rng(9))
    expected = gradient_penalty(model.critic, x_real, x_fake, lam=10.0, rng=np.random.default_rng(9))
    assert terms["gradient_penalty"].item() == pytest.approx(expected.item(), rel=1e-6)
    sum(terms.values()).backward(retain_graph=True)
    with_penalty = [p.grad.numpy().copy() for p in model.critic.parameters()]
    model.critic.zero_grad()
    terms["critic_loss"].backward()
    without = [p.grad.numpy() for p in model.critic.parameters()]
    assert any(not np.allclose(a, b) for a, b in zip(with_penalty, without))


def test_one_round_matches_a_pytorch_twin():
    """Same weights, data, z and alpha: every parameter after three rounds of (n_critic = 3
    critic steps with the penalty, one generator step) agrees with PyTorch to float64 precision."""
    torch = pytest.importorskip("torch")
    td.set_default_dtype("float64")
    generator, critic = _players(hidden=(16, 16), dtype="float64")
    model = WGANGP(generator, critic, 2, n_critic=3, lr=1e-3, betas=(0.5, 0.9), rng=1)

    def twin(module):
        return [(torch.tensor(layer.weight.numpy().copy(), requires_grad=True),
                 torch.tensor(layer.bias.numpy().copy(), requires_grad=True)) for layer in module.layers]
    G, D = twin(generator), twin(critic)

    def t_generator(z):
        for W, b in G[:-1]:
            z = torch.relu(z @ W + b)
        return z @ G[-1][0] + G[-1][1]

    def t_critic(x):
        for W, b in D[:-1]:
            x = torch.nn.functional.leaky_relu(x @ W + b, 0.2)
        return (x @ D[-1][0] + D[-1][1]).reshape(-1)
    opt_g = torch.optim.Adam([p for layer in G for p in layer], lr=1e-3, betas=(0.5, 0.9))
    opt_d = torch.optim.Adam([p for layer in D for p in layer], lr=1e-3, betas=(0.5, 0.9))
    draws = np.random.default_rng(1)            # the model's rng: z, then alpha, per critic step
    for round_ in range(3):
        x = eight_gaussians(24, np.random.default_rng(round_), dtype="float64")
        report = model.train_step(x)
        for x_i in np.split(x, 3):
            z = torch.tensor(draws.standard_normal((8, 2)))
            with torch.no_grad():
                x_fake = t_generator(z)
            x_real = torch.tensor(x_i)
            alpha = torch.tensor(draws.random(8))[:, None]
            x_hat = (alpha * x_real + (1 - alpha) * x_fake).requires_grad_(True)
            grad, = torch.autograd.grad(t_critic(x_hat).sum(), x_hat, create_graph=True)
            penalty = 10.0 * ((grad.norm(dim=1) - 1) ** 2).mean()
            loss = t_critic(x_fake).mean() - t_critic(x_real).mean() + penalty
            opt_d.zero_grad()
            loss.backward()
            opt_d.step()
        g_loss = -t_critic(t_generator(torch.tensor(draws.standard_normal((8, 2))))).mean()
        opt_g.zero_grad()
        g_loss.backward()
        opt_g.step()
        assert report["generator_loss"] == pytest.approx(g_loss.item(), rel=1e-10)
    for layer, (W, b) in zip(list(generator.layers) + list(critic.layers), G + D):
        np.testing.assert_allclose(layer.weight.numpy(), W.detach().numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(layer.bias.numpy(), b.detach().numpy(), rtol=1e-10, atol=1e-12)


CENTRES = 2.0 * np.stack([np.cos(2 * np.pi * np.arange(8) / 8), np.sin(2 * np.pi * np.arange(8) / 8)], axis=1)


def _modes_covered(x, std=0.2, min_share=0.25):
    """(modes with at least min_share of their expected 1/8 of the samples within 3 std,
    fraction of samples within 3 std of some mode): the mode-collapse literature's counts."""
    distance = np.linalg.norm(x[:, None, :] - CENTRES, axis=2)
    near = distance.min(axis=1) < 3 * std
    counts = np.bincount(distance.argmin(axis=1)[near], minlength=8)
    return int((counts >= min_share * len(x) / 8).sum()), float(near.mean())


def test_mode_counter_sees_a_collapsed_generator():
    collapsed = CENTRES[3] + 0.1 * np.random.default_rng(0).standard_normal((1000, 2))
    assert _modes_covered(collapsed) == (1, 1.0)
    assert _modes_covered(eight_gaussians(2000, np.random.default_rng(1)))[0] == 8


def test_wgan_gp_covers_the_8_modes():
    """Gulrajani et al.'s toy setting (their released code: Adam betas (0.5, 0.9), n_critic = 5,
    lambda = 0.1 for 2-D toys), smaller networks and a larger lr to fit a few seconds."""
    rng = np.random.default_rng(0)
    model = WGANGP(*_players(hidden=(64, 64)), 2, n_critic=5, lam=0.1, lr=1e-3, betas=(0.5, 0.9), rng=1)
    before = _modes_covered(model.sample(2000, rng=2).numpy())
    for _ in range(400):
        model.train_step(eight_gaussians(5 * 64, rng))
    modes, quality = _modes_covered(model.sample(2000, rng=2).numpy())
    assert before[0] < 8
    assert modes == 8
    assert quality > 0.5


def test_bad_arguments():
    g, d = _players()
    for n_critic in (0, -2, 2.5):
        with pytest.raises(ValueError, match="n_critic must be an int >= 1"):
            WGAN(g, d, 2, n_critic=n_critic)
        with pytest.raises(ValueError, match="n_critic must be an int >= 1"):
            WGANGP(g, d, 2, n_critic=n_critic)
    with pytest.raises(ValueError, match=r"lam \(lambda\) must be a finite number >= 0, got -0.5"):
        WGANGP(g, d, 2, lam=-0.5)
    with pytest.raises(ValueError, match=r"clip_value \(c\) must be a finite number > 0 or None, got 0.0"):
        WGAN(g, d, 2, clip_value=0.0)
    with pytest.raises(ValueError, match=r"generator makes x of shape \(2,\).*expects 3"):
        WGANGP(g, MLPDiscriminator(3), 2)
    assert math.isclose(WGANGP(g, d, 2, lam=0.0).lam, 0.0)
