"""Langevin dynamics (unadjusted and MALA) with the engine's gradient w.r.t. x."""
import numpy as np
import pytest
from scipy import stats

import tinydgm as td
from tinydgm.kernels import langevin as lg

MU, S = 1.5, 0.7
ALPHA = 1e-3


def gaussian_f(x):
    """log N(x; MU, S^2) up to a constant, for x (C, 1) -> (C,)."""
    return (-(x - MU) ** 2 / (2 * S ** 2)).sum(axis=1)


def test_log_density_and_grad_matches_analytic():
    x = np.random.default_rng(0).normal(0, 2, (7, 1))
    f, g = lg.log_density_and_grad(gaussian_f, x)
    np.testing.assert_allclose(f, -(x[:, 0] - MU) ** 2 / (2 * S ** 2), rtol=1e-12)
    np.testing.assert_allclose(g, -(x - MU) / S ** 2, rtol=1e-12)
    y = np.random.default_rng(1).normal(0, 1, (5, 3))       # a non-separable f: the chains do not mix
    f2, g2 = lg.log_density_and_grad(lambda t: -td.log(1 + (t ** 2).sum(axis=1)), y)
    np.testing.assert_allclose(g2, -2 * y / (1 + (y ** 2).sum(axis=1, keepdims=True)), rtol=1e-12)


def test_mala_matches_gaussian_mean_and_variance():
    """MALA is exact: 4000 chains, 150 steps of size 0.4 from x = -3: KS test against N(MU, S^2)."""
    res = lg.langevin(gaussian_f, np.full((4000, 1), -3.0), 1, np.random.default_rng(2), step_size=0.4,
                      mala=True, burn_in=149)
    x = res.samples[0, :, 0]
    assert stats.kstest(x, stats.norm(MU, S).cdf).pvalue > ALPHA
    assert abs(x.mean() - MU) < 0.04 and abs(x.var() / S ** 2 - 1) < 0.08
    assert 0.5 < res.accept_rate.mean() < 1.0


def test_ula_has_its_known_discretisation_bias_and_mala_removes_it():
    """For a Gaussian target ULA is an AR(1) chain x' = (1 - tau/S^2) x + ... whose stationary
    variance is 2 tau / (1 - (1 - tau/S^2)^2) != S^2; MALA's is S^2."""
    tau = 0.3
    rho = 1 - tau / S ** 2
    want_ula = 2 * tau / (1 - rho ** 2)
    ula = lg.langevin(gaussian_f, np.zeros((4000, 1)), 1, np.random.default_rng(3), step_size=tau, burn_in=99)
    mala = lg.langevin(gaussian_f, np.zeros((4000, 1)), 1, np.random.default_rng(3), step_size=tau, mala=True,
                       burn_in=99)
    assert abs(ula.samples[0].var() / want_ula - 1) < 0.08
    assert abs(mala.samples[0].var() / S ** 2 - 1) < 0.08
    assert want_ula / S ** 2 > 1.25                # the bias is large enough to tell them apart
    np.testing.assert_array_equal(ula.accept_rate, 1.0)


def test_random_numbers_are_inputs_same_seed_same_chains():
    x0 = np.random.default_rng(4).normal(0, 1, (6, 1))
    a = lg.langevin(gaussian_f, x0, 5, np.random.default_rng(5), step_size=0.2, mala=True, burn_in=2, thin=3)
    b = lg.langevin(gaussian_f, x0, 5, np.random.default_rng(5), step_size=0.2, mala=True, burn_in=2, thin=3)
    np.testing.assert_array_equal(a.samples, b.samples)
    rng = np.random.default_rng(5)                  # the same draws handed to the twin directly
    eps = rng.standard_normal((17, 6, 1))
    log_u = np.log(rng.random((17, 6)))
    x = x0.copy()
    s, n_acc = lg.langevin_xp(gaussian_f, x, eps, log_u, 0.2, mala=True, burn_in=2, thin=3)
    np.testing.assert_array_equal(s, a.samples)
    np.testing.assert_array_equal(n_acc / 17, a.accept_rate)
    assert a.samples.shape == (5, 6, 1)


def test_ula_step_is_the_formula():
    x = np.array([[0.2], [-1.0]])
    eps = np.array([[[0.5], [-0.3]]])
    y = x.copy()
    lg.langevin_xp(gaussian_f, y, eps, step_size=0.1)
    np.testing.assert_allclose(y, x + 0.1 * (-(x - MU) / S ** 2) + np.sqrt(0.2) * eps[0], rtol=1e-12)
    z = x.copy()
    lg.langevin_xp(gaussian_f, z, eps, step_size=0.1, noise_scale=0.01)    # Du & Mordatch's small noise
    np.testing.assert_allclose(z, x + 0.1 * (-(x - MU) / S ** 2) + 0.01 * eps[0], rtol=1e-12)


def test_errors():
    with pytest.raises(ValueError, match="MALA needs"):
        lg.langevin_xp(gaussian_f, np.zeros((2, 1)), np.zeros((3, 2, 1)), mala=True)
    with pytest.raises(ValueError, match="one value per chain"):
        lg.langevin(lambda t: t, np.zeros((2, 1)), 1, np.random.default_rng(0))
    with pytest.raises(ValueError, match="step_size must be > 0"):
        lg.langevin(gaussian_f, np.zeros((2, 1)), 1, np.random.default_rng(0), step_size=0.0)


def test_runs_on_device(device):
    """Chains live on x0's device; the same seed gives the same chains as on the CPU."""
    xp = td.backend.module_for_device(device)
    x0 = np.linspace(-1, 1, 5)[:, None]
    a = lg.langevin(gaussian_f, x0, 3, np.random.default_rng(6), step_size=0.1, mala=True)
    b = lg.langevin(gaussian_f, xp.asarray(x0), 3, np.random.default_rng(6), step_size=0.1, mala=True)
    np.testing.assert_allclose(td.backend.to_numpy(b.samples), a.samples, atol=1e-12)
