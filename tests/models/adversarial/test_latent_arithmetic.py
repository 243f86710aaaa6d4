"""Latent interpolation and vector arithmetic: endpoints, geometry (the spherical path keeps
the norm and moves at a constant angle), the averaged-z arithmetic, and decoding through a GAN."""
import numpy as np
import pytest

import tinydgm as td
from tinydgm.models.adversarial import GAN, MLPDiscriminator, MLPGenerator, interpolate, lerp, slerp, vector_arithmetic


def test_lerp_is_the_straight_line():
    z0, z1 = np.array([1.0, -2.0, 0.5]), np.array([3.0, 0.0, -1.5])
    path = lerp(z0, z1, 5).numpy()
    assert path.shape == (5, 3)
    np.testing.assert_allclose(path[0], z0)
    np.testing.assert_allclose(path[-1], z1)
    np.testing.assert_allclose(np.diff(path, axis=0), np.tile((z1 - z0) / 4, (4, 1)), rtol=1e-12)


def test_slerp_keeps_the_norm_and_turns_at_a_constant_rate():
    rng = np.random.default_rng(0)
    z0 = rng.standard_normal(16)
    z1 = rng.standard_normal(16)
    z1 *= np.linalg.norm(z0) / np.linalg.norm(z1)           # same norm: the path stays on the sphere
    path = slerp(td.tensor(z0), td.tensor(z1), 7).numpy()
    np.testing.assert_allclose(path[0], z0, rtol=1e-12)
    np.testing.assert_allclose(path[-1], z1, rtol=1e-10)
    np.testing.assert_allclose(np.linalg.norm(path, axis=1), np.linalg.norm(z0), rtol=1e-12)
    unit = path / np.linalg.norm(path, axis=1, keepdims=True)
    angles = np.arccos(np.clip((unit[1:] * unit[:-1]).sum(axis=1), -1, 1))
    omega = np.arccos(z0 @ z1 / np.linalg.norm(z0) ** 2)
    np.testing.assert_allclose(angles, omega / 6, rtol=1e-6)
    # the straight line dips towards the origin, the spherical path does not
    assert np.linalg.norm(lerp(z0, z1, 7).numpy()[3]) < 0.9 * np.linalg.norm(z0)


def test_slerp_of_parallel_vectors_falls_back_to_lerp():
    z0 = np.array([1.0, 2.0])
    np.testing.assert_allclose(slerp(z0, 3 * z0, 3).numpy(), lerp(z0, 3 * z0, 3).numpy())


def test_interpolate_dispatches():
    z0, z1 = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    np.testing.assert_allclose(interpolate(z0, z1, 3, "spherical").numpy()[1], [np.sqrt(0.5)] * 2)
    np.testing.assert_allclose(interpolate(z0, z1, 3).numpy()[1], [0.5, 0.5])
    with pytest.raises(ValueError, match='method must be "linear" or "spherical", got \'cubic\''):
        interpolate(z0, z1, 3, "cubic")


def test_vector_arithmetic_averages_each_concept():
    rng = np.random.default_rng(1)
    king, man, woman = (rng.standard_normal((3, 4)) for _ in range(3))
    z = vector_arithmetic(king, man, woman).numpy()
    np.testing.assert_allclose(z, king.mean(0) - man.mean(0) + woman.mean(0), rtol=1e-12)
    # a shift shared by the concepts "king" and "man" cancels: (a + s) - (b + s) + c = a - b + c
    shift = rng.standard_normal(4)
    np.testing.assert_allclose(vector_arithmetic(king + shift, man + shift, woman).numpy(), z, rtol=1e-12)


def test_decoding_an_interpolation_through_a_gan():
    rng = np.random.default_rng(2)
    model = GAN(MLPGenerator(3, 2, (8,), rng=rng), MLPDiscriminator(2, (8,), rng=rng), 3)
    z = model.sample_latent(2, rng=3)
    path = slerp(z[0], z[1], 9)
    x = model.generate(path.astype(z.dtype))
    assert x.shape == (9, 2)
    np.testing.assert_allclose(x.numpy()[[0, -1]], model.generate(z).numpy(), rtol=1e-5, atol=1e-6)


def test_errors():
    with pytest.raises(ValueError, match=r"same shape \(latent_dim,\), got shapes \(2,\) and \(3,\)"):
        lerp(np.zeros(2), np.zeros(3), 4)
    with pytest.raises(ValueError, match="steps must be an int >= 2"):
        slerp(np.ones(2), np.ones(2), 1)
    with pytest.raises(ValueError, match=r"shapes \(n_i, latent_dim\)"):
        vector_arithmetic(np.zeros((2, 3)), np.zeros((2, 4)), np.zeros((2, 3)))
