"""Adversarial autoencoder: the priors' samplers have the moments they claim, the three losses
are gradient-checked (first and second order, float64, noise fixed), one training step is the
reconstruction update, then the discriminator's, then the encoder's (replayed by hand), and on
a 2-D toy the aggregated posterior's mean and covariance approach the prior's."""
import numpy as np
import pytest

import tinydgm as td
from tinydgm.data.toy import two_moons
from tinydgm.models.adversarial import MLPDiscriminator
from tinydgm.models.hybrid.aae import AdversarialAutoencoder, GaussianMixturePrior2D, GaussianPrior, SwissRollPrior
from tinydgm.models.latent import MLPDecoder, MLPEncoder

from flow_contracts import swap_parameters


def _model(seed=0, hidden=(8,), deterministic=True, dtype="float64", prior=None, likelihood="bernoulli", dim=4,
           **kwargs):
    rng = np.random.default_rng(seed)
    decoder = (MLPDecoder(2, dim, hidden, rng=rng, dtype=dtype) if likelihood == "bernoulli" else
               MLPDecoder(2, dim, hidden, likelihood="gaussian", sigma=0.1, rng=rng, dtype=dtype))
    return AdversarialAutoencoder(MLPEncoder(dim, 2, hidden, rng=rng, dtype=dtype), decoder,
                                  MLPDiscriminator(2, hidden, rng=rng, dtype=dtype),
                                  prior or GaussianMixturePrior2D(10, dtype=dtype), deterministic=deterministic,
                                  rng=seed, **kwargs)


def _binary(n=6, seed=1, dim=4):
    return (np.random.default_rng(seed).random((n, dim)) < 0.5).astype(np.float64)


# ----------------------------------------------------------------------------- priors

def test_mixture_prior_moments_are_exact():
    prior = GaussianMixturePrior2D(10, radius=1.4, radial_std=0.5, tangential_std=0.05, dtype="float64")
    z = prior.sample(200_000, rng=0).numpy()
    np.testing.assert_allclose(prior.mean(), 0.0, atol=1e-12)
    # K >= 3 evenly turned petals: the covariance is isotropic, (s_r^2 + r^2 + s_t^2) / 2 on the diagonal
    np.testing.assert_allclose(prior.covariance(), (0.25 + 1.96 + 0.0025) / 2 * np.eye(2), atol=1e-12)
    np.testing.assert_allclose(z.mean(axis=0), prior.mean(), atol=0.01)
    np.testing.assert_allclose(np.cov(z.T), prior.covariance(), atol=0.01)
    # each petal: radius r +- s_r along its direction, thin across it
    angle = np.arctan2(z[:, 1], z[:, 0])
    petal = 2 * np.pi / 10 * np.round(angle / (2 * np.pi / 10))          # the nearest petal's direction
    radial = z[:, 0] * np.cos(petal) + z[:, 1] * np.sin(petal)
    tangential = -z[:, 0] * np.sin(petal) + z[:, 1] * np.cos(petal)
    inner = radial > 0.3                   # away from the centre, where the petals overlap
    assert radial.mean() == pytest.approx(1.4, abs=0.01) and radial.std() == pytest.approx(0.5, abs=0.01)
    assert tangential[inner].std() == pytest.approx(0.05, abs=0.005)


def test_two_prior_samplers_give_tensors_of_the_latent_shape():
    for prior in (SwissRollPrior(dtype="float64"), GaussianPrior(3, dtype="float64")):
        z = prior.sample(50, rng=1)
        assert isinstance(z, td.Tensor) and z.shape == (50, getattr(prior, "latent_dim", 2))
        np.testing.assert_array_equal(prior.sample(50, rng=1).numpy(), z.numpy())


# ----------------------------------------------------------------------------- the losses

def _of_params(model, names, loss_fn):
    def fn(*params):
        saved = swap_parameters(model, dict(zip(names, params)))
        try:
            return loss_fn()
        finally:
            swap_parameters(model, saved)
    params = dict(model.named_parameters())
    return fn, [td.tensor(params[name].numpy(), dtype="float64", requires_grad=True) for name in names]


def _check_first_and_second_order(fn, inputs, names):
    assert td.gradcheck(fn, inputs)
    last = [i for i, name in enumerate(names) if ".1." in name or ".2." in name]     # later layers
    assert last, names
    fixed = [p.detach() for p in inputs]

    def fn_last(*ps):
        values = list(fixed)
        for i, p in zip(last, ps):
            values[i] = p
        return fn(*values)
    assert td.gradgradcheck(fn_last, [inputs[i] for i in last])


@pytest.mark.parametrize("deterministic", [True, False])
def test_reconstruction_loss_is_gradient_checked(deterministic):
    model, x = _model(deterministic=deterministic), td.tensor(_binary(), dtype="float64")
    eps = td.tensor(np.random.default_rng(2).standard_normal((6, 2)), dtype="float64")
    names = [name for name, _ in model.named_parameters() if not name.startswith("discriminator")]
    fn, inputs = _of_params(model, names, lambda: model.reconstruction_loss(x, model.encode(x, eps)))
    _check_first_and_second_order(fn, inputs, names)


def test_reconstruction_loss_is_minus_the_decoders_log_likelihood():
    model, x = _model(deterministic=False), td.tensor(_binary(), dtype="float64")
    eps = np.random.default_rng(3).standard_normal((6, 2))
    mu, log_var = model.encoder(x)
    z = mu.numpy() + np.exp(0.5 * log_var.numpy()) * eps
    np.testing.assert_allclose(model.encode(x, td.tensor(eps, dtype="float64")).numpy(), z, rtol=1e-14)
    logits = model.decoder.distribution(td.tensor(z, dtype="float64")).logits.numpy()
    log_px_z = (x.numpy() * logits - np.logaddexp(0, logits)).sum(axis=1)
    loss = model.reconstruction_loss(x, td.tensor(z, dtype="float64"))
    assert loss.item() == pytest.approx(-log_px_z.mean(), rel=1e-12)
    assert np.array_equal(_model(deterministic=True).encode(x).numpy(), mu.numpy())


def test_adversarial_losses_are_gradient_checked():
    model, x = _model(seed=4), td.tensor(_binary(seed=5), dtype="float64")
    z_prior = model.sample_prior(6, rng=6)
    d_names = [name for name, _ in model.named_parameters() if name.startswith("discriminator")]
    fn, inputs = _of_params(model, d_names, lambda: model.discriminator_loss(z_prior, model.encode(x).detach()))
    _check_first_and_second_order(fn, inputs, d_names)
    e_names = [name for name, _ in model.named_parameters() if name.startswith("encoder")]
    fn, inputs = _of_params(model, e_names, lambda: model.encoder_adversarial_loss(model.encode(x)))
    _check_first_and_second_order(fn, inputs, e_names)
    with td.no_grad():
        real, fake = model.D(z_prior).numpy(), model.D(model.encode(x)).numpy()
    expected = -(np.mean(-np.logaddexp(0, -real)) + np.mean(-np.logaddexp(0, fake)))
    assert model.discriminator_loss(z_prior, model.encode(x)).item() == pytest.approx(expected, rel=1e-12)


# ----------------------------------------------------------------------------- the training step

def test_one_step_is_reconstruction_then_discriminator_then_encoder():
    lr = 0.1
    model, twin = _model(seed=7), _model(seed=7)
    for m in (model, twin):
        m.ae_optimizer = td.optim.SGD(m.encoder.parameters() + m.decoder.parameters(), lr=lr)
        m.d_optimizer = td.optim.SGD(m.discriminator.parameters(), lr=lr)
        m.g_optimizer = td.optim.SGD(m.encoder.parameters(), lr=lr)
    x = _binary(8, seed=8)
    report = model.train_step(x, rng=np.random.default_rng(9))

    def sgd(params, loss):
        for p in params:
            p.grad = None
        loss.backward()
        for p in params:
            p.data = p.data - lr * p.grad.data
        twin.zero_grad()
    xt = td.tensor(x, dtype="float64")
    reconstruction = twin.reconstruction_loss(xt, twin.encode(xt))
    sgd(twin.encoder.parameters() + twin.decoder.parameters(), reconstruction)
    z_prior = twin.sample_prior(8, rng=np.random.default_rng(9))          # the step's first draw
    d_loss = twin.discriminator_loss(z_prior, twin.encode(xt).detach())
    sgd(twin.discriminator.parameters(), d_loss)
    g_loss = twin.encoder_adversarial_loss(twin.encode(xt))
    sgd(twin.encoder.parameters(), g_loss)
    assert report == pytest.approx({"reconstruction": reconstruction.item(), "discriminator_loss": d_loss.item(),
                                    "encoder_loss": g_loss.item()}, rel=1e-12)
    for (name, p), q in zip(model.named_parameters(), twin.parameters()):
        np.testing.assert_allclose(p.numpy(), q.numpy(), rtol=1e-12, atol=1e-14, err_msg=name)


def test_aggregated_posterior_moments_approach_the_prior():
    """Two moons encoded in 2-D, the codes pushed to the mixture of 10 Gaussians: the codes' mean
    and covariance start far from the prior's exact ones (covariance off by 1.1 in some entry)
    and after 600 steps sit within 0.25 (mean) and 0.4 (covariance entries) of them, while the
    reconstruction error falls."""
    rng = np.random.default_rng(0)
    prior = GaussianMixturePrior2D(10)
    decoder = MLPDecoder(2, 2, (32, 32), likelihood="gaussian", sigma=0.1, rng=rng)
    model = AdversarialAutoencoder(MLPEncoder(2, 2, (32, 32), rng=rng), decoder,
                                   MLPDiscriminator(2, (32, 32), rng=rng), prior, lr=1e-3, rng=0)
    x_test = two_moons(2000, np.random.default_rng(7))

    def gaps():
        z = model.codes(x_test).numpy().astype(np.float64)
        return np.abs(z.mean(axis=0) - prior.mean()).max(), np.abs(np.cov(z.T) - prior.covariance()).max()
    mean_before, cov_before = gaps()
    data = np.random.default_rng(50)
    first = model.train_step(two_moons(128, data))
    for _ in range(599):
        last = model.train_step(two_moons(128, data))
    mean_after, cov_after = gaps()
    assert cov_before > 1.0
    assert mean_after < 0.25 and cov_after < 0.4, (mean_before, cov_before, mean_after, cov_after)
    assert last["reconstruction"] < first["reconstruction"] - 50


def test_sample_decodes_prior_draws():
    model = _model(seed=10)
    z = model.sample_prior(5, rng=11)
    np.testing.assert_allclose(model.sample(5, rng=11, mean=True).numpy(), model.decode(z).numpy(), rtol=1e-14)
    x = model.sample(5, rng=12).numpy()
    assert x.shape == (5, 4) and set(np.unique(x)) <= {0.0, 1.0}


# ----------------------------------------------------------------------------- errors

def test_clear_errors():
    rng = np.random.default_rng(0)
    encoder, decoder = MLPEncoder(4, 2, (4,), rng=rng), MLPDecoder(2, 4, (4,), rng=rng)
    discriminator = MLPDiscriminator(2, (4,), rng=rng)
    prior = GaussianMixturePrior2D()
    with pytest.raises(TypeError, match="encoder must be a GaussianEncoder"):
        AdversarialAutoencoder(discriminator, decoder, discriminator, prior)
    with pytest.raises(TypeError, match="prior must have sample"):
        AdversarialAutoencoder(encoder, decoder, discriminator, "mixture")
    with pytest.raises(ValueError, match="the decoder maps 3 latents"):
        AdversarialAutoencoder(encoder, MLPDecoder(3, 4, (4,), rng=rng), discriminator, prior)
    with pytest.raises(ValueError, match=r"prior.sample\(2\) must give a Tensor \(2, 2\)"):
        AdversarialAutoencoder(encoder, decoder, discriminator, GaussianPrior(3))
    with pytest.raises(ValueError, match="n_components must be a positive int"):
        GaussianMixturePrior2D(0)
    model = AdversarialAutoencoder(encoder, decoder, discriminator, prior)
    with pytest.raises(ValueError, match=r"x must have shape \(N, 4\)"):
        model.train_step(np.zeros((3, 5)))
    with pytest.raises(ValueError, match="Bernoulli decoder needs binary data"):
        model.train_step(np.full((3, 4), 0.5))
    with pytest.raises(ValueError, match=r"z must have shape \(n, 2\)"):
        model.decode(np.zeros((3, 3)))
