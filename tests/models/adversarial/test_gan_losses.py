"""The adversarial losses: values against their formulas, gradients against finite
differences (float64), the vanishing-gradient argument at a fixed confident discriminator,
and the WGAN-GP penalty: its value against finite-difference input gradients, closed forms
for critics whose input gradient is known, and its gradient with respect to the critic's
parameters (the double backward through Linear, Conv2d and LeakyReLU) against finite
differences."""
import math

import numpy as np
import pytest

import tinydgm as td
from tinydgm.models.adversarial import (DCGANDiscriminator, MLPDiscriminator, discriminator_loss, gan_value,
                                        gradient_penalty, interpolates, minimax_generator_loss,
                                        non_saturating_generator_loss, wasserstein_critic_loss,
                                        wasserstein_estimate, wasserstein_generator_loss)
from tinydgm.nn import Conv2d, Linear


def _leaf(a):
    return td.tensor(np.asarray(a, dtype=np.float64), requires_grad=True)


def _log_sigmoid(l):
    return -np.logaddexp(0.0, -l)


# ----------------------------------------------------------------------------- values and gradients

def test_gan_value_is_the_lecture_objective_on_a_minibatch():
    rng = np.random.default_rng(0)
    real, fake = rng.standard_normal(7), rng.standard_normal(5)
    d_real, d_fake = 1 / (1 + np.exp(-real)), 1 / (1 + np.exp(-fake))
    expected = np.mean(np.log(d_real)) + np.mean(np.log(1 - d_fake))
    assert gan_value(_leaf(real), _leaf(fake)).item() == pytest.approx(expected, rel=1e-12)
    assert discriminator_loss(_leaf(real), _leaf(fake)).item() == pytest.approx(-expected, rel=1e-12)
    assert minimax_generator_loss(_leaf(fake)).item() == pytest.approx(np.mean(np.log(1 - d_fake)), rel=1e-12)
    assert non_saturating_generator_loss(_leaf(fake)).item() == pytest.approx(-np.mean(np.log(d_fake)), rel=1e-12)


def test_gan_losses_are_stable_for_confident_discriminators():
    logits = _leaf([-800.0, 800.0])
    assert np.isfinite(minimax_generator_loss(logits).item())
    assert non_saturating_generator_loss(logits).item() == pytest.approx(400.0)     # -ln sigmoid(-800) = 800


def test_wasserstein_losses():
    rng = np.random.default_rng(1)
    real, fake = rng.standard_normal(6), rng.standard_normal(4)
    estimate = real.mean() - fake.mean()
    assert wasserstein_estimate(_leaf(real), _leaf(fake)).item() == pytest.approx(estimate, rel=1e-12)
    assert wasserstein_critic_loss(_leaf(real), _leaf(fake)).item() == pytest.approx(-estimate, rel=1e-12)
    assert wasserstein_generator_loss(_leaf(fake)).item() == pytest.approx(-fake.mean(), rel=1e-12)


@pytest.mark.parametrize("loss, n_inputs", [
    (gan_value, 2), (discriminator_loss, 2), (minimax_generator_loss, 1), (non_saturating_generator_loss, 1),
    (wasserstein_estimate, 2), (wasserstein_critic_loss, 2), (wasserstein_generator_loss, 1),
])
def test_every_loss_is_gradient_checked(loss, n_inputs):
    rng = np.random.default_rng(2)
    inputs = [_leaf(3 * rng.standard_normal(5)) for _ in range(n_inputs)]
    assert td.gradcheck(loss, inputs)
    assert td.gradgradcheck(loss, inputs)


def test_interpolates_one_alpha_per_sample_and_its_gradient():
    rng = np.random.default_rng(3)
    x, x_tilde, alpha = rng.standard_normal((3, 2, 2, 2)), rng.standard_normal((3, 2, 2, 2)), rng.random(3)
    x_hat = interpolates(_leaf(x), _leaf(x_tilde), _leaf(alpha)).numpy()
    for i in range(3):
        np.testing.assert_allclose(x_hat[i], alpha[i] * x[i] + (1 - alpha[i]) * x_tilde[i], rtol=1e-14)
    assert td.gradcheck(interpolates, [_leaf(x), _leaf(x_tilde), _leaf(alpha)])


# ----------------------------------------------------------------------------- vanishing gradients

CONFIDENT = np.array([1e-6, 1e-4, 1e-2])      # D(G(z)): the discriminator rejects the fakes


def _logits_of(d):
    """l = ln D - ln(1 - D), differentiable in D."""
    return td.log(d) - td.log1p(-d)


def test_gradients_with_respect_to_d_follow_the_lecture():
    """d/dD of the per-sample terms near D = 0: ln(1 - D) has slope -1/(1 - D), about -1
    (flat), while -ln D has slope -1/D, which blows up (intro lecture, 'why is GAN training
    difficult', point 1 and 2). Both slopes are negative: raising D lowers the loss."""
    n = len(CONFIDENT)
    d = _leaf(CONFIDENT)
    g_minimax, = td.grad(minimax_generator_loss(_logits_of(d)), d)
    d = _leaf(CONFIDENT)
    g_ns, = td.grad(non_saturating_generator_loss(_logits_of(d)), d)
    np.testing.assert_allclose(g_minimax.numpy(), -1 / (1 - CONFIDENT) / n, rtol=1e-6)
    np.testing.assert_allclose(g_ns.numpy(), -1 / CONFIDENT / n, rtol=1e-6)


def test_minimax_gradient_vanishes_through_the_logit_and_the_non_saturating_one_does_not():
    """What reaches the generator flows through the logit l (D = sigmoid(l)): per sample
    d/dl ln(1 - D) = -D -> 0 as D -> 0 (saturation), d/dl [-ln D] = -(1 - D) -> -1."""
    n = len(CONFIDENT)
    logits = np.log(CONFIDENT) - np.log1p(-CONFIDENT)
    l = _leaf(logits)
    g_minimax, = td.grad(minimax_generator_loss(l), l)
    l = _leaf(logits)
    g_ns, = td.grad(non_saturating_generator_loss(l), l)
    np.testing.assert_allclose(g_minimax.numpy(), -CONFIDENT / n, rtol=1e-9)
    np.testing.assert_allclose(g_ns.numpy(), -(1 - CONFIDENT) / n, rtol=1e-9)
    assert np.all(g_minimax.numpy() < 0) and np.all(g_ns.numpy() < 0)      # both push D(G(z)) up
    ratio = g_ns.numpy() / g_minimax.numpy()
    np.testing.assert_allclose(ratio, (1 - CONFIDENT) / CONFIDENT, rtol=1e-9)   # 1e6 times stronger at D = 1e-6
    # where the discriminator is fooled (D -> 1) the roles swap: minimax -> -1, non-saturating -> 0
    l = _leaf([8.0])
    g, = td.grad(non_saturating_generator_loss(l), l)
    assert abs(g.item()) < 1e-3


# ----------------------------------------------------------------------------- gradient penalty: values

def _numeric_input_gradient(critic, x, eps=1e-6):
    """d critic(x)_i / d x_i by central differences, per sample (critic scores each sample alone)."""
    grad = np.zeros_like(x)
    for index in np.ndindex(*x.shape[1:]):
        step = np.zeros_like(x)
        step[(slice(None),) + index] = eps
        up = critic(td.tensor(x + step)).numpy().reshape(-1)
        down = critic(td.tensor(x - step)).numpy().reshape(-1)
        grad[(slice(None),) + index] = (up - down) / (2 * eps)
    return grad


def _small_conv_critic(rng, channels=2, size=6):
    conv = Conv2d(channels, 3, 3, stride=2, padding=1, rng=rng, dtype="float64")
    dense = Linear(3 * (size // 2) ** 2, 1, rng=rng, dtype="float64")

    def critic(x):
        h = td.leaky_relu(conv(x), 0.2)
        return dense(h.reshape(x.shape[0], -1)).reshape(-1)
    return critic, {"conv.weight": (conv, "weight"), "conv.bias": (conv, "bias"),
                    "dense.weight": (dense, "weight"), "dense.bias": (dense, "bias")}


def test_penalty_value_against_finite_difference_input_gradients():
    rng = np.random.default_rng(4)
    critic, _ = _small_conv_critic(rng)
    x, x_tilde, alpha = rng.standard_normal((4, 2, 6, 6)), rng.standard_normal((4, 2, 6, 6)), rng.random(4)
    x_hat = alpha[:, None, None, None] * x + (1 - alpha[:, None, None, None]) * x_tilde
    norms = np.sqrt((_numeric_input_gradient(critic, x_hat) ** 2).reshape(4, -1).sum(axis=1))
    expected = 10.0 * np.mean((norms - 1) ** 2)
    got = gradient_penalty(critic, td.tensor(x), td.tensor(x_tilde), lam=10.0, alpha=td.tensor(alpha)).item()
    assert got == pytest.approx(expected, rel=1e-7)


def test_linear_critic_penalty_is_closed_form():
    """D(x) = <w, x> + b has grad_x D = w everywhere: the penalty is lambda (||w|| - 1)^2 for any
    x, x_tilde, alpha, and its gradient in w is 2 lambda (||w|| - 1) w / ||w||."""
    rng = np.random.default_rng(5)
    layer = Linear(5, 1, rng=rng, dtype="float64")
    w = layer.weight.numpy().reshape(-1)
    x, x_tilde = td.tensor(rng.standard_normal((8, 5))), td.tensor(rng.standard_normal((8, 5)))
    penalty = gradient_penalty(layer, x, x_tilde, lam=3.0, rng=np.random.default_rng(0))
    norm = np.linalg.norm(w)
    assert penalty.item() == pytest.approx(3.0 * (norm - 1) ** 2, rel=1e-10)
    penalty.backward()
    np.testing.assert_allclose(layer.weight.grad.numpy().reshape(-1), 6.0 * (norm - 1) * w / norm, rtol=1e-9)
    assert layer.bias.grad is None or np.all(layer.bias.grad.numpy() == 0)   # b does not move grad_x D


def test_image_critic_norm_runs_over_every_dimension_of_a_sample():
    """A linear critic on (N, C, H, W) images, a Conv2d whose kernel covers the image:
    grad_x D = W (C, H, W) for every sample, so the per-sample norm is the Frobenius norm of W."""
    rng = np.random.default_rng(6)
    conv = Conv2d(2, 1, 5, rng=rng, dtype="float64")

    def critic(x):
        return conv(x).reshape(-1)
    x, x_tilde = td.tensor(rng.standard_normal((3, 2, 5, 5))), td.tensor(rng.standard_normal((3, 2, 5, 5)))
    penalty = gradient_penalty(critic, x, x_tilde, lam=10.0, rng=np.random.default_rng(1))
    assert penalty.item() == pytest.approx(10.0 * (np.linalg.norm(conv.weight.numpy()) - 1) ** 2, rel=1e-10)


def test_per_sample_norms_and_alphas():
    """D(x) = ||x||^2 / 2 has grad_x D = x: the penalty is lambda mean_i (||x_hat_i|| - 1)^2 with
    each sample's own alpha_i."""
    rng = np.random.default_rng(7)
    x, x_tilde, alpha = rng.standard_normal((5, 3, 2)), rng.standard_normal((5, 3, 2)), rng.random(5)

    def critic(x):
        return 0.5 * (x * x).reshape(x.shape[0], -1).sum(axis=1)
    x_hat = alpha[:, None, None] * x + (1 - alpha[:, None, None]) * x_tilde
    norms = np.linalg.norm(x_hat.reshape(5, -1), axis=1)
    got = gradient_penalty(critic, td.tensor(x), td.tensor(x_tilde), lam=2.0, alpha=td.tensor(alpha)).item()
    assert got == pytest.approx(2.0 * np.mean((norms - 1) ** 2), rel=1e-10)


def test_alpha_is_drawn_per_sample_from_the_rng():
    rng = np.random.default_rng(8)
    x, x_tilde = rng.standard_normal((6, 3)), rng.standard_normal((6, 3))

    def critic(x):
        return 0.5 * (x * x).sum(axis=1)
    alpha = np.random.default_rng(42).random(6)
    x_hat = alpha[:, None] * x + (1 - alpha[:, None]) * x_tilde
    expected = np.mean((np.linalg.norm(x_hat, axis=1) - 1) ** 2)
    got = gradient_penalty(critic, td.tensor(x), td.tensor(x_tilde), lam=1.0, rng=np.random.default_rng(42))
    assert got.item() == pytest.approx(expected, rel=1e-10)


# ----------------------------------------------------------------------------- gradient penalty: second order

def _penalty_of_params(critic, slots, x, x_tilde, alpha, lam=10.0):
    """The penalty as a function of the critic's parameters (alpha and the samples fixed)."""
    names = list(slots)

    def fn(*params):
        saved = {name: getattr(*slots[name]) for name in names}
        for name, p in zip(names, params):
            setattr(*slots[name], p)
        try:
            return gradient_penalty(critic, x, x_tilde, lam=lam, alpha=alpha)
        finally:
            for name in names:
                setattr(*slots[name], saved[name])
    start = [td.tensor(getattr(*slots[name]).data, requires_grad=True) for name in names]
    return fn, start


def _module_slots(module):
    """name -> (owning module, attribute) for every parameter of a Module."""
    slots = {}
    for name, _ in module.named_parameters():
        *path, attr = name.split(".")
        owner = module
        for part in path:
            owner = getattr(owner, part)
        slots[name] = (owner, attr)
    return slots


def test_penalty_gradient_reaches_conv_and_leaky_relu_critic_parameters():
    rng = np.random.default_rng(9)
    critic, slots = _small_conv_critic(rng)
    x, x_tilde = td.tensor(rng.standard_normal((3, 2, 6, 6))), td.tensor(rng.standard_normal((3, 2, 6, 6)))
    fn, params = _penalty_of_params(critic, slots, x, x_tilde, td.tensor(rng.random(3)))
    assert td.gradcheck(fn, params)


def test_penalty_gradient_through_the_mlp_critic():
    rng = np.random.default_rng(10)
    critic = MLPDiscriminator(2, (8, 8), rng=rng, dtype="float64")
    x, x_tilde = td.tensor(rng.standard_normal((6, 2))), td.tensor(rng.standard_normal((6, 2)))
    fn, params = _penalty_of_params(critic, _module_slots(critic), x, x_tilde, td.tensor(rng.random(6)))
    assert td.gradcheck(fn, params)
    fixed = [p.detach() for p in params[:-2]]         # and the penalty's Hessian, on the last layer
    assert td.gradgradcheck(lambda w, b: fn(*fixed, w, b), params[-2:])


def test_penalty_gradient_through_the_dcgan_critic():
    rng = np.random.default_rng(11)
    critic = DCGANDiscriminator(features=2, rng=rng, dtype="float64")
    x, x_tilde = td.tensor(rng.standard_normal((2, 1, 28, 28))), td.tensor(rng.standard_normal((2, 1, 28, 28)))
    fn, params = _penalty_of_params(critic, _module_slots(critic), x, x_tilde, td.tensor(rng.random(2)))
    assert td.gradcheck(fn, params)


def test_penalty_treats_the_samples_as_constants():
    rng = np.random.default_rng(12)
    critic = MLPDiscriminator(2, (4,), rng=rng, dtype="float64")
    x_fake = _leaf(rng.standard_normal((4, 2)))          # e.g. straight from the generator's graph
    penalty = gradient_penalty(critic, td.tensor(rng.standard_normal((4, 2))), x_fake, rng=rng)
    penalty.backward()
    assert x_fake.grad is None
    # grad_x D depends on the weights (the biases only pick LeakyReLU's slopes: no gradient)
    assert all(p.grad is not None for name, p in critic.named_parameters() if name.endswith("weight"))


# ----------------------------------------------------------------------------- errors

def test_loss_errors():
    with pytest.raises(ValueError, match=r"real_logits must have shape \(N,\).*got shape \(3, 2\)"):
        gan_value(td.tensor(np.zeros((3, 2))), td.tensor(np.zeros(3)))
    with pytest.raises(TypeError, match="fake_logits must be a Tensor, got ndarray"):
        minimax_generator_loss(np.zeros(3))


def test_gradient_penalty_errors():
    x = td.tensor(np.zeros((4, 2)))
    layer = Linear(2, 1)
    with pytest.raises(ValueError, match=r"lam \(lambda\) must be a finite number >= 0, got -1.0"):
        gradient_penalty(layer, x, x, lam=-1.0)
    with pytest.raises(ValueError, match=r"x_real has shape \(4, 2\) but x_fake has shape \(3, 2\)"):
        gradient_penalty(layer, x, td.tensor(np.zeros((3, 2))))
    with pytest.raises(ValueError, match=r"alpha must have shape \(N,\) = \(4,\).*got shape \(4, 1\)"):
        gradient_penalty(layer, x, x, alpha=td.tensor(np.zeros((4, 1))))
    with pytest.raises(ValueError, match=r"one score per example, shape \(4,\), got shape \(4, 3\)"):
        gradient_penalty(Linear(2, 3), x, x)
    assert math.isfinite(gradient_penalty(layer, x, x, lam=0.0).item())
