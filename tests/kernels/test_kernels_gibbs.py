"""Single-site Gibbs for the fully visible Boltzmann machine E(x) = -x^T W x - b^T x: the
conditional's logit convention, the exact distribution (chi-square), kernel == twin, threads."""
import numba
import numpy as np
import pytest

import tinydgm as td
from tinydgm.evaluate import binary_states
from tinydgm.kernels import gibbs
from contracts import chi_square_pvalue

ALPHA = 1e-3


def boltzmann(n_dims, seed=0, scale=0.6):
    rng = np.random.default_rng(seed)
    W = np.triu(rng.normal(0, scale, (n_dims, n_dims)), 1)
    W = W + W.T
    b = rng.normal(0, 0.5, n_dims)
    x = binary_states(n_dims, dtype=np.float64)
    log_p = ((x @ W) * x).sum(axis=1) + x @ b               # -E(x)
    return W, b, log_p - np.logaddexp.reduce(log_p)


def test_conditional_logit_is_two_W_x_plus_b():
    """P(x_i = 1 | x_-i) from the exact joint equals sigmoid(2 (W x)_i + b_i)."""
    D = 4
    W, b, log_p = boltzmann(D, seed=1)
    states = binary_states(D, dtype=np.float64)
    for code, x in enumerate(states):
        for i in range(D):
            bit = 1 << (D - 1 - i)
            on, off = code | bit, code & ~bit
            exact = np.exp(log_p[on]) / (np.exp(log_p[on]) + np.exp(log_p[off]))
            logit = 2 * (W[i] @ x) + b[i]                     # W_ii = 0: x_i itself does not enter
            assert exact == pytest.approx(1 / (1 + np.exp(-logit)), rel=1e-12)


def test_one_sweep_from_kernel_matches_conditional():
    """After one sweep with u fixed, site 0's update follows P(x_0 = 1 | x_-0) exactly."""
    W, b, _ = boltzmann(3, seed=2)
    x = np.array([[0.0, 1.0, 1.0]])
    p0 = 1 / (1 + np.exp(-(2 * (W[0] @ x[0]) + b[0])))
    for u0, want in ((p0 - 1e-9, 1.0), (p0 + 1e-9, 0.0)):
        y = x.copy()
        gibbs.gibbs_fvbm_kernel(W, b, y, np.array([[[u0, 0.5, 0.5]]]))
        assert y[0, 0] == want


@pytest.mark.parametrize("D", [4, 6])
def test_chains_match_exact_distribution(D):
    """Chi-square (significance 1e-3, fixed seed): final states of 3000 chains after 50 sweeps."""
    W, b, log_p = boltzmann(D, seed=D, scale=0.8)
    samples, x = gibbs.gibbs_fvbm(W, b, np.zeros((3000, D)), 1, np.random.default_rng(0), burn_in=49)
    np.testing.assert_array_equal(samples[0], x)
    assert chi_square_pvalue(samples[0], log_p) > ALPHA


def test_chain_average_matches_exact_moments():
    """A long single chain (ergodic averages of thinned states) gives E[x] to within 0.03."""
    D = 5
    W, b, log_p = boltzmann(D, seed=5)
    samples, _ = gibbs.gibbs_fvbm(W, b, np.zeros((4, D)), 5000, np.random.default_rng(1), burn_in=20)
    exact = np.exp(log_p) @ binary_states(D, dtype=np.float64)
    np.testing.assert_allclose(samples.reshape(-1, D).mean(axis=0), exact, atol=0.03)


def test_kernel_equals_twin_and_thread_counts():
    W, b, _ = boltzmann(7, seed=3)
    rng = np.random.default_rng(4)
    x0 = (rng.random((9, 7)) < 0.5).astype(float)
    u = rng.random((30, 9, 7))
    x1 = x0.copy()
    s1 = gibbs.gibbs_fvbm_kernel(W, b, x1, u, burn_in=4, thin=3)
    x2 = x0.copy()
    s2 = gibbs.gibbs_fvbm_xp(W, b, x2, u, burn_in=4, thin=3)
    assert s1.shape == (8, 9, 7)
    np.testing.assert_array_equal(s1, s2)
    np.testing.assert_array_equal(x1, x2)
    threads = numba.get_num_threads()
    for n in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
        numba.set_num_threads(n)
        x3 = x0.copy()
        np.testing.assert_array_equal(gibbs.gibbs_fvbm_kernel(W, b, x3, u, burn_in=4, thin=3, parallel=True), s1)
    numba.set_num_threads(threads)


def test_same_seed_same_chains_any_chunking():
    W, b, _ = boltzmann(5)
    a = gibbs.gibbs_fvbm(W, b, np.zeros((6, 5)), 10, np.random.default_rng(9), burn_in=3, thin=2)
    c = gibbs.gibbs_fvbm(W, b, np.zeros((6, 5)), 10, np.random.default_rng(9), burn_in=3, thin=2, parallel=True)
    np.testing.assert_array_equal(a[0], c[0])


def test_rejects_asymmetric_or_diagonal_weights():
    W = np.array([[0.0, 1.0], [0.5, 0.0]])
    with pytest.raises(ValueError, match="symmetric with a zero diagonal"):
        gibbs.gibbs_fvbm(W, np.zeros(2), np.zeros((1, 2)), 1, np.random.default_rng(0))
    with pytest.raises(ValueError, match="symmetric with a zero diagonal"):
        gibbs.gibbs_fvbm(np.eye(2), np.zeros(2), np.zeros((1, 2)), 1, np.random.default_rng(0))


def test_twin_on_device_equals_kernel(device):
    """gibbs_fvbm dispatches to the twin for CuPy weights; same uniforms, same chains."""
    W, b, _ = boltzmann(5, seed=6)
    a, _ = gibbs.gibbs_fvbm(W, b, np.zeros((7, 5)), 4, np.random.default_rng(3), burn_in=2)
    xp = td.backend.module_for_device(device)
    c, _ = gibbs.gibbs_fvbm(xp.asarray(W), xp.asarray(b), np.zeros((7, 5)), 4, np.random.default_rng(3), burn_in=2)
    np.testing.assert_array_equal(td.backend.to_numpy(c), a)
