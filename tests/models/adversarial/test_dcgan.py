"""The DCGAN-style and MLP networks: shapes, output ranges, initialisation, gradients against
finite differences (float64), and a DCGAN whose discriminator learns on MNIST-sized images."""
import numpy as np
import pytest

import tinydgm as td
from tinydgm.models.adversarial import GAN, DCGANDiscriminator, DCGANGenerator, MLPDiscriminator, MLPGenerator
from tinydgm.nn import BatchNorm, ConvTranspose2d, Linear


@pytest.mark.parametrize("output, low, high", [("tanh", -1.0, 1.0), ("sigmoid", 0.0, 1.0)])
def test_generator_shapes_and_output_range(output, low, high):
    generator = DCGANGenerator(latent_dim=6, features=4, output=output, rng=np.random.default_rng(0))
    generator.up3.weight.data *= 1000                          # large logits: the output saturates
    x = generator(td.tensor(np.random.default_rng(1).standard_normal((3, 6)), dtype="float32"))
    assert x.shape == (3, 1, 28, 28)
    assert x.numpy().min() >= low and x.numpy().max() <= high
    assert x.numpy().min() < low + 0.1 and x.numpy().max() > high - 0.1      # the whole range is reached
    layers = [m for m in generator.modules() if isinstance(m, (Linear, ConvTranspose2d, BatchNorm))]
    assert [type(m).__name__ for m in layers] == ["Linear", "BatchNorm", "ConvTranspose2d", "BatchNorm",
                                                  "ConvTranspose2d"]


def test_projection_is_a_transposed_convolution_from_one_pixel():
    """DCGAN's first layer, ConvTranspose2d(latent_dim, 2F, 7) on z as a 1 x 1 image, equals the
    dense projection with the weight reshaped."""
    rng = np.random.default_rng(5)
    generator = DCGANGenerator(latent_dim=3, features=2, rng=rng, dtype="float64")
    z = td.tensor(rng.standard_normal((4, 3)))
    weight = generator.project.weight.numpy().reshape(3, 4, 7, 7)
    as_conv = td.conv_transpose2d(z.reshape(4, 3, 1, 1), td.tensor(weight))
    np.testing.assert_allclose(generator.project(z).numpy().reshape(4, 4, 7, 7), as_conv.numpy(), rtol=1e-12)


def test_dcgan_initialisation():
    generator = DCGANGenerator(latent_dim=100, features=64, rng=np.random.default_rng(0))
    w = generator.project.weight.numpy()
    assert abs(w.std() - 0.02) < 0.001 and abs(w.mean()) < 0.001
    assert generator.project.bias is None and generator.up2.bias is None     # followed by batch norm
    assert np.all(generator.up3.bias.numpy() == 0)


def test_discriminator_shapes_and_options():
    x = td.tensor(np.random.default_rng(2).random((5, 1, 28, 28)), dtype="float32")
    assert DCGANDiscriminator(features=4)(x).shape == (5,)
    with_norm = DCGANDiscriminator(features=4, batch_norm=True)
    assert with_norm(x).shape == (5,) and with_norm.norm2 is not None and with_norm.down2.bias is None


def test_networks_gradient_check():
    rng = np.random.default_rng(3)
    generator = DCGANGenerator(latent_dim=3, features=2, rng=rng, dtype="float64")
    discriminator = DCGANDiscriminator(features=2, batch_norm=True, rng=rng, dtype="float64")
    z = td.tensor(rng.standard_normal((2, 3)), requires_grad=True)
    assert td.gradcheck(lambda z: discriminator(generator(z)), [z])
    x = td.tensor(rng.standard_normal((2, 1, 28, 28)), requires_grad=True)
    assert td.gradcheck(discriminator, [x])
    mlp_g, mlp_d = MLPGenerator(2, 2, (5, 5), rng=rng, dtype="float64"), MLPDiscriminator(2, (5,), rng=rng,
                                                                                          dtype="float64")
    z = td.tensor(rng.standard_normal((4, 2)), requires_grad=True)
    assert td.gradcheck(lambda z: mlp_d(mlp_g(z)), [z])


def test_dcgan_discriminator_learns_to_separate_real_from_generated():
    rng = np.random.default_rng(4)
    model = GAN(DCGANGenerator(latent_dim=8, features=4, rng=rng), DCGANDiscriminator(features=4, rng=rng), 8,
                lr=2e-3, rng=5)
    real = np.zeros((16, 1, 28, 28), np.float32)
    real[:, :, 10:18, 10:18] = 1.0                          # a white square on black
    losses = [model.discriminator_step(real)["discriminator_loss"] for _ in range(25)]
    assert losses[0] == pytest.approx(np.log(4), abs=0.01)     # -V = ln 4 for an undecided D
    assert losses[-1] < 0.2
    assert model.sample(3).shape == (3, 1, 28, 28)


def test_network_errors():
    with pytest.raises(ValueError, match=r"z must have shape \(N, 6\), got shape \(2, 5\)"):
        DCGANGenerator(latent_dim=6, features=2)(td.tensor(np.zeros((2, 5), np.float32)))
    with pytest.raises(ValueError, match=r"x must have shape \(N, 1, 28, 28\), got shape \(2, 1, 32, 32\)"):
        DCGANDiscriminator(features=2)(td.tensor(np.zeros((2, 1, 32, 32), np.float32)))
    with pytest.raises(ValueError, match='output must be "tanh"'):
        DCGANGenerator(output="relu")
    with pytest.raises(ValueError, match="features must be a positive int, got 0"):
        DCGANDiscriminator(features=0)
    with pytest.raises(ValueError, match="hidden must be positive ints"):
        MLPGenerator(2, 2, hidden=(4, 0))
