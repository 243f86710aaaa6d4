"""D* = p_data / (p_data + p_G) and V(D*, G) = -ln 4 + 2 JSD by quadrature, against
independent computations (scipy.stats densities, adaptive scipy.integrate.quad), and a
discriminator trained against a fixed generator with a known density, compared to D*."""
import math

import numpy as np
import pytest
from scipy import integrate, stats

import tinydgm as td
from tinydgm.data.toy import eight_gaussians_log_density
from tinydgm.models.flows import toy_realnvp
from tinydgm.models.adversarial import (GAN, MLPDiscriminator, MLPGenerator, compare_to_optimal,
                                        discriminator_value, jensen_shannon_divergence, optimal_discriminator,
                                        optimal_value, quadrature_grid)
from tinydgm.optim import Adam

DATA = (1.0, 0.5)            # p_data = N(1, 0.5^2)
GEN = (-0.5, 1.0)            # p_G = N(-0.5, 1)


def _grid_logs(n=4001, low=-10.0, high=10.0):
    points, cell = quadrature_grid(low, high, n)
    x = points[:, 0]
    return x, cell, stats.norm.logpdf(x, *DATA), stats.norm.logpdf(x, *GEN)


def _jsd_by_quad(p, q):
    """JSD(p || q) by adaptive quadrature of its definition (lecture eq. 17)."""
    def half_kl(a, b):
        def integrand(x):
            pa, pb = a.pdf(x), b.pdf(x)
            return 0.0 if pa == 0 else pa * math.log(2 * pa / (pa + pb))
        return 0.5 * integrate.quad(integrand, -30, 30, epsabs=1e-14, epsrel=1e-12, limit=500)[0]
    return half_kl(p, q) + half_kl(q, p)


def test_quadrature_grid():
    points, cell = quadrature_grid(-1.0, 1.0, 4, dim=2)
    assert points.shape == (16, 2) and cell == pytest.approx(0.25)
    np.testing.assert_allclose(points[:4], [[-0.75, -0.75], [-0.75, -0.25], [-0.75, 0.25], [-0.75, 0.75]])


def test_optimal_discriminator_is_the_density_ratio():
    x, _, log_p_data, log_p_g = _grid_logs(401)
    p_data, p_g = stats.norm.pdf(x, *DATA), stats.norm.pdf(x, *GEN)
    middle = (p_data + p_g) > 1e-200
    np.testing.assert_allclose(optimal_discriminator(log_p_data, log_p_g)[middle],
                               (p_data / (p_data + p_g))[middle], rtol=1e-12)
    # far in the tails the ratio of two underflowing densities is still right
    assert optimal_discriminator(np.array([-2000.0]), np.array([-1000.0]))[0] == pytest.approx(math.exp(-1000.0),
                                                                                            rel=1e-12)


def test_jsd_by_quadrature_matches_adaptive_quadrature():
    _, cell, log_p_data, log_p_g = _grid_logs()
    expected = _jsd_by_quad(stats.norm(*DATA), stats.norm(*GEN))
    assert jensen_shannon_divergence(log_p_data, log_p_g, cell) == pytest.approx(expected, rel=1e-10)


def test_value_of_the_optimal_discriminator_is_minus_log_4_plus_twice_the_jsd():
    _, cell, log_p_data, log_p_g = _grid_logs()
    jsd = _jsd_by_quad(stats.norm(*DATA), stats.norm(*GEN))
    assert optimal_value(log_p_data, log_p_g, cell) == pytest.approx(-math.log(4) + 2 * jsd, rel=1e-10)
    d_star = optimal_discriminator(log_p_data, log_p_g)
    assert discriminator_value(d_star, log_p_data, log_p_g, cell) == pytest.approx(-math.log(4) + 2 * jsd, rel=1e-9)


def test_optimal_discriminator_maximises_the_value():
    x, cell, log_p_data, log_p_g = _grid_logs()
    best = optimal_value(log_p_data, log_p_g, cell)
    d_star = optimal_discriminator(log_p_data, log_p_g)
    for shift in (-0.05, -0.01, 0.01, 0.05):
        other = np.clip(d_star + shift * np.cos(x), 1e-12, 1 - 1e-12)
        assert discriminator_value(other, log_p_data, log_p_g, cell) < best
    # D = 1/2 everywhere (a discriminator that cannot tell): V = -ln 4
    half = np.full_like(x, 0.5)
    assert discriminator_value(half, log_p_data, log_p_g, cell) == pytest.approx(-math.log(4), rel=1e-12)


def test_jsd_limits_identical_and_disjoint():
    points, cell = quadrature_grid(-40.0, 40.0, 8001)
    x = points[:, 0]
    same = stats.norm.logpdf(x, 0.3, 1.2)
    assert jensen_shannon_divergence(same, same, cell) == pytest.approx(0.0, abs=1e-15)
    assert optimal_value(same, same, cell) == pytest.approx(-math.log(4), rel=1e-12)        # p_G = p_data
    left, right = stats.norm.logpdf(x, -20.0, 1.0), stats.norm.logpdf(x, 20.0, 1.0)
    assert jensen_shannon_divergence(left, right, cell) == pytest.approx(math.log(2), rel=1e-12)
    assert optimal_value(left, right, cell) == pytest.approx(0.0, abs=1e-12)    # D* separates them perfectly


def test_identity_in_two_dimensions_on_8_gaussians():
    """p_data = 8 Gaussians, p_G = N(0, I): the identity holds once the grid holds all the mass
    (it needs normalised densities), and the quadrature has converged."""
    values = []
    for n in (320, 400):
        points, cell = quadrature_grid(-8.0, 8.0, n, dim=2)
        log_p_data = eight_gaussians_log_density(points)
        log_p_g = stats.multivariate_normal(np.zeros(2), np.eye(2)).logpdf(points)
        jsd = jensen_shannon_divergence(log_p_data, log_p_g, cell)
        values.append(optimal_value(log_p_data, log_p_g, cell))
        assert values[-1] == pytest.approx(-math.log(4) + 2 * jsd, rel=1e-9)
        assert 0.0 < jsd < math.log(2)
    assert values[0] == pytest.approx(values[1], rel=1e-9)


def test_a_flow_as_the_generator():
    """p_G from a RealNVP's exact log_prob (random weights, so not a plain Gaussian): the
    identity holds on a grid that holds the flow's mass."""
    rng = np.random.default_rng(3)
    flow = toy_realnvp(2, n_couplings=2, hidden=(8,), rng=rng, dtype="float64")
    for p in flow.parameters():
        p.data = p.data + 0.1 * rng.standard_normal(p.shape)
    points, cell = quadrature_grid(-9.0, 9.0, 360, dim=2)
    with td.no_grad():
        log_p_g = flow.log_prob(td.tensor(points)).numpy()
    log_p_data = eight_gaussians_log_density(points)
    assert np.exp(log_p_g).sum() * cell == pytest.approx(1.0, abs=1e-5)       # the grid holds p_G
    log_normal = stats.multivariate_normal(np.zeros(2), np.eye(2)).logpdf(points)
    assert np.max(np.abs(log_p_g - log_normal)[np.exp(log_p_g) > 1e-3]) > 1.0     # not the base density
    jsd = jensen_shannon_divergence(log_p_data, log_p_g, cell)
    assert optimal_value(log_p_data, log_p_g, cell) == pytest.approx(-math.log(4) + 2 * jsd, abs=1e-5)


def test_trained_discriminator_approaches_the_optimal_one():
    """Fix a linear generator x = z - 0.5 (so p_G = N(-0.5, 1)), train only the discriminator
    on p_data = N(1, 0.5^2), and compare it with D* on a grid."""
    rng = np.random.default_rng(0)
    generator = MLPGenerator(1, 1, hidden=(), rng=rng)
    generator.layers[0].weight.data[...] = 1.0
    generator.layers[0].bias.data[...] = GEN[0]
    discriminator = MLPDiscriminator(1, (32, 32), rng=rng)
    model = GAN(generator, discriminator, 1, d_optimizer=Adam(discriminator.parameters(), lr=3e-3), rng=1)
    points, cell = quadrature_grid(-6.0, 6.0, 2001)
    log_p_data, log_p_g = stats.norm.logpdf(points[:, 0], *DATA), stats.norm.logpdf(points[:, 0], *GEN)
    points = points.astype(np.float32)
    before = compare_to_optimal(model.D, points, log_p_data, log_p_g, cell)
    frozen = [p.numpy().copy() for p in generator.parameters()]
    for _ in range(800):
        model.discriminator_step(DATA[0] + DATA[1] * rng.standard_normal((256, 1)))
    after = compare_to_optimal(model.D, points, log_p_data, log_p_g, cell, support_fraction=0.1)
    assert before["mean_abs_error"] > 0.1
    assert after["mean_abs_error"] < 0.02
    assert after["max_abs_error"] < 0.1                        # where the mixture has >= 10% of its peak
    assert 0.0 <= after["value_gap"] < 5e-3
    assert after["optimal_value"] == pytest.approx(optimal_value(log_p_data, log_p_g, cell))
    for p, p0 in zip(generator.parameters(), frozen):          # the discriminator step leaves G alone
        np.testing.assert_array_equal(p.numpy(), p0)


def test_errors():
    with pytest.raises(ValueError, match=r"same shape.*log_p_data \(3,\), log_p_g \(4,\)"):
        optimal_discriminator(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="n must be a positive int, got 0"):
        quadrature_grid(0.0, 1.0, 0)
    with pytest.raises(ValueError, match="need low < high"):
        quadrature_grid(1.0, 0.0, 5)
    with pytest.raises(ValueError, match=r"points must have shape \(M, dim\)"):
        compare_to_optimal(lambda x: x, np.zeros(5), np.zeros(5), np.zeros(5), 0.1)
