"""metropolis_hastings_batched (tinydgm/kernels/mh.py): MH chains for a log-density evaluated
by the engine, on every device (the CuPy stand-in, tinydgm.standin, without a GPU). The
chains target N(mu, sigma^2 I) (exact moments), and on the device they are the CPU's chains:
the noise is drawn from the same CPU generator."""
import numpy as np
import pytest

import tinydgm as td
from tinydgm import backend
from tinydgm.kernels.mh import metropolis_hastings_batched

MU, SIGMA = np.array([1.0, -2.0]), 0.7


def log_p(x):
    """log N(x; mu, sigma^2 I) up to a constant, one value per chain (C,)."""
    mu = td.tensor(MU, dtype=x.dtype, device=x.device)
    return -(((x - mu) / SIGMA) ** 2).sum(axis=1) / 2


def run(device, n_samples=400, seed=0):
    x0 = backend.to_device(np.zeros((64, 2)), device)
    return metropolis_hastings_batched(log_p, x0, n_samples, td.rng(seed), step_size=1.0, burn_in=100, thin=2)


def test_chains_reach_the_gaussian_moments():
    result = run("cpu")
    samples = backend.to_numpy(result.samples).reshape(-1, 2)
    assert result.samples.shape == (400, 64, 2) and 0.2 < float(np.mean(backend.to_numpy(result.accept_rate))) < 0.9
    # 25,600 correlated draws: a 0.06 tolerance is several standard errors of the mean and std
    np.testing.assert_allclose(samples.mean(axis=0), MU, atol=0.06)
    np.testing.assert_allclose(samples.std(axis=0), [SIGMA, SIGMA], atol=0.06)


def test_the_device_runs_the_cpus_chains(device):
    expected, got = run("cpu", 30), run(device, 30)
    assert backend.device_of(got.samples) == device and backend.device_of(got.x) == device
    np.testing.assert_allclose(backend.to_numpy(got.samples), backend.to_numpy(expected.samples), rtol=1e-10)
    np.testing.assert_allclose(backend.to_numpy(got.accept_rate), backend.to_numpy(expected.accept_rate))


def test_log_p_must_give_one_value_per_chain():
    with pytest.raises(ValueError, match=r"log_p must return one value per chain, shape \(64,\), got \(64, 2\)"):
        metropolis_hastings_batched(lambda x: x, np.zeros((64, 2)), 2, td.rng(0))
