"""Metropolis–Hastings kernels: exact distribution (chi-square / KS), detailed balance of the
exact transition matrix, the Hastings correction, kernel == xp twin, thread-count invariance."""
import math

import numba
import numpy as np
import pytest
from scipy import stats

import tinydgm as td
from tinydgm.evaluate import binary_states
from tinydgm.kernels import mh
from contracts import chi_square_pvalue

ALPHA = 1e-3          # significance of the goodness-of-fit tests (fixed seeds: deterministic)


def boltzmann(n_dims, seed=0, scale=0.6):
    """A random Boltzmann machine: W symmetric, zero diagonal; its exact log-probabilities."""
    rng = np.random.default_rng(seed)
    W = np.triu(rng.normal(0, scale, (n_dims, n_dims)), 1)
    W = W + W.T
    b = rng.normal(0, 0.5, n_dims)
    states = binary_states(n_dims, dtype=np.float64)
    log_p = mh.boltzmann_log_p_xp(states, (W, b))
    return W, b, log_p - np.logaddexp.reduce(log_p)


def mixture(seed=0, d=2):
    rng = np.random.default_rng(seed)
    return (np.log(np.array([0.2, 0.3, 0.5])), rng.normal(0, 1.5, (3, d)), np.array([0.4, 0.6, 0.8]))


# ----------------------------------------------------------------------------- built-in targets

def test_boltzmann_flip_delta_is_the_difference_of_log_p():
    W, b, _ = boltzmann(5)
    rng = np.random.default_rng(1)
    x = (rng.random((20, 5)) < 0.5).astype(float)
    sites = rng.integers(0, 5, 20)
    want = mh.flip_delta_from_log_p(mh.boltzmann_log_p_xp)(x, sites, (W, b))
    np.testing.assert_allclose(mh.boltzmann_flip_delta_xp(x, sites, (W, b)), want, atol=1e-12)
    for c in range(20):
        assert mh.boltzmann_flip_delta(x[c], sites[c], (W, b)) == pytest.approx(want[c], abs=1e-12)
        assert mh.boltzmann_log_p(x[c], (W, b)) == pytest.approx(mh.boltzmann_log_p_xp(x[c:c + 1], (W, b))[0])


def test_gaussian_mixture_log_p_matches_scipy():
    params = mixture()
    log_w, means, stds = params
    x = np.random.default_rng(2).normal(0, 2, (7, 2))
    want = np.logaddexp.reduce([lw + stats.multivariate_normal(m, s ** 2).logpdf(x)
                                for lw, m, s in zip(log_w, means, stds)], axis=0) + math.log(2 * math.pi)
    np.testing.assert_allclose(mh.gaussian_mixture_log_p_xp(x, params), want, rtol=1e-12)
    np.testing.assert_allclose([mh.gaussian_mixture_log_p(row, params) for row in x], want, rtol=1e-12)


# ----------------------------------------------------------------------------- kernel == twin

@pytest.mark.parametrize("proposal", ["random_walk", "independence"])
def test_continuous_kernel_equals_twin_and_threads(proposal):
    params = mixture()
    rng = np.random.default_rng(3)
    T, C = 120, 16
    x0 = rng.normal(0, 1, (C, 2))
    eps, log_u = rng.standard_normal((T, C, 2)), np.log(rng.random((T, C)))
    kw = dict(step_size=0.7, proposal=proposal, proposal_mean=[0.0, 0.5], proposal_std=[2.0, 1.5], burn_in=7, thin=4)
    x1 = x0.copy()
    s1, a1 = mh.mh_kernel(mh.gaussian_mixture_log_p, params, x1, eps, log_u, **kw)
    x2 = x0.copy()
    s2, a2 = mh.mh_xp(mh.gaussian_mixture_log_p_xp, params, x2, eps, log_u, **kw)
    assert s1.shape == (28, C, 2)
    np.testing.assert_allclose(s1, s2, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(a1, a2)
    assert 0 < a1.sum() < T * C                    # some moves accepted, some rejected
    threads = numba.get_num_threads()
    results = []
    for n in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
        numba.set_num_threads(n)
        x3 = x0.copy()
        results.append(mh.mh_kernel(mh.gaussian_mixture_log_p, params, x3, eps, log_u, parallel=True, **kw))
    numba.set_num_threads(threads)
    for s, a in results:
        np.testing.assert_array_equal(s, s1)
        np.testing.assert_array_equal(a, a1)


@pytest.mark.parametrize("biased", [False, True])
def test_binary_kernel_equals_twin_and_threads(biased):
    W, b, _ = boltzmann(6)
    rng = np.random.default_rng(4)
    T, C = 150, 12
    x0 = (rng.random((C, 6)) < 0.5).astype(float)
    sites, v, log_u = rng.integers(0, 6, (T, C)), rng.random((T, C)), np.log(rng.random((T, C)))
    q = rng.uniform(0.2, 0.8, 6) if biased else None
    x1 = x0.copy()
    s1, a1 = mh.mh_binary_kernel(mh.boltzmann_flip_delta, (W, b), x1, sites, log_u, v, q, burn_in=10, thin=5)
    for delta_xp in (mh.boltzmann_flip_delta_xp, mh.flip_delta_from_log_p(mh.boltzmann_log_p_xp)):
        x2 = x0.copy()
        s2, a2 = mh.mh_binary_xp(delta_xp, (W, b), x2, sites, log_u, v, q, burn_in=10, thin=5)
        np.testing.assert_array_equal(s1, s2)
        np.testing.assert_array_equal(a1, a2)
        np.testing.assert_array_equal(x1, x2)
    threads = numba.get_num_threads()
    for n in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
        numba.set_num_threads(n)
        x3 = x0.copy()
        s3, a3 = mh.mh_binary_kernel(mh.boltzmann_flip_delta, (W, b), x3, sites, log_u, v, q, burn_in=10, thin=5,
                                     parallel=True)
        np.testing.assert_array_equal(s3, s1)
        np.testing.assert_array_equal(a3, a1)
    numba.set_num_threads(threads)


def test_same_seed_same_chains_and_chunking():
    W, b, _ = boltzmann(5)
    x0 = np.zeros((8, 5))
    r1 = mh.metropolis_hastings_binary(mh.boltzmann_flip_delta, (W, b), x0, 20, np.random.default_rng(5),
                                       burn_in=3, thin=2)
    r2 = mh.metropolis_hastings_binary(mh.boltzmann_flip_delta, (W, b), x0, 20, np.random.default_rng(5),
                                       burn_in=3, thin=2, parallel=True)
    np.testing.assert_array_equal(r1.samples, r2.samples)
    np.testing.assert_array_equal(r1.accept_rate, r2.accept_rate)
    params = mixture()
    y0 = np.zeros((4, 2))
    c1 = mh.metropolis_hastings(mh.gaussian_mixture_log_p, params, y0, 30, np.random.default_rng(6), burn_in=5)
    c2 = mh.metropolis_hastings(mh.gaussian_mixture_log_p, params, y0, 30, np.random.default_rng(6), burn_in=5)
    np.testing.assert_array_equal(c1.samples, c2.samples)
    assert c1.samples.shape == (30, 4, 2) and c1.x.shape == (4, 2)
    np.testing.assert_array_equal(c1.samples[-1], c1.x)
    assert y0.sum() == 0                            # the caller's x0 is not modified


def test_batched_engine_form_equals_kernel():
    """The batched form (one engine call per step for all chains) == the Numba kernel, same seed."""
    params = mixture()
    log_w, means, stds = (td.tensor(a, dtype="float64") for a in params)

    def log_p(x):                      # the mixture written with engine ops, as a neural energy would be
        sq = ((td.expand_dims(x, 1) - means) ** 2).sum(axis=-1)
        return td.logsumexp(log_w - 0.5 * sq / stds ** 2 - 2 * td.log(stds), axis=1)

    x0 = np.random.default_rng(7).normal(0, 1, (10, 2))
    a = mh.metropolis_hastings(mh.gaussian_mixture_log_p, params, x0, 15, np.random.default_rng(8), burn_in=4,
                               thin=2, step_size=0.9)
    b = mh.metropolis_hastings_batched(log_p, x0, 15, np.random.default_rng(8), burn_in=4, thin=2, step_size=0.9)
    np.testing.assert_allclose(a.samples, b.samples, atol=1e-12)
    np.testing.assert_array_equal(a.accept_rate, b.accept_rate)


# ----------------------------------------------------------------------------- exactness

@numba.njit
def ising_ring_flip_delta(x, i, params):
    """A user-written Numba target: an Ising ring with coupling J on spins s = 2x - 1,
    log P = J sum_i s_i s_{i+1}; flipping s_i changes it by -2 J s_i (s_{i-1} + s_{i+1})."""
    (J,) = params
    D = x.shape[0]
    s = 2.0 * x[i] - 1.0
    return -2.0 * J[0] * s * ((2.0 * x[(i - 1) % D] - 1.0) + (2.0 * x[(i + 1) % D] - 1.0))


@pytest.mark.parametrize("case", ["flip", "biased", "user_energy"])
def test_binary_chains_match_exact_distribution(case):
    """Chi-square test (significance 1e-3, fixed seed) of the final states of 4000 independent
    chains after 300 transitions against the exact probabilities of all 2^5 states."""
    D = 5
    rng = np.random.default_rng(10)
    if case == "user_energy":
        params, delta = (np.array([0.4]),), ising_ring_flip_delta
        s = 2 * binary_states(D, dtype=np.float64) - 1
        log_p = 0.4 * (s * np.roll(s, -1, axis=1)).sum(axis=1)
        log_p -= np.logaddexp.reduce(log_p)
    else:
        W, b, log_p = boltzmann(D)
        params, delta = (W, b), mh.boltzmann_flip_delta
    q = np.linspace(0.25, 0.75, D) if case == "biased" else None
    x0 = np.zeros((4000, D))                       # every chain starts at the all-zeros state
    res = mh.metropolis_hastings_binary(delta, params, x0, 1, rng, burn_in=299, q=q)
    assert chi_square_pvalue(res.samples[0], log_p) > ALPHA
    assert 0.05 < res.accept_rate.mean() < 1


@pytest.mark.parametrize("q", [None, [0.3, 0.6, 0.8, 0.45]])
def test_transition_matrix_detailed_balance_and_kernel(q):
    """The exact T built from ``log_acceptance``: rows sum to 1, detailed balance pi(x) T(x, y) =
    pi(y) T(y, x) and stationarity pi T = pi hold to rounding; one kernel step from a fixed state
    follows the row of T (chi-square, 20000 draws)."""
    D = 4
    W, b, log_p = boltzmann(D, seed=3, scale=0.9)
    T = mh.binary_mh_transition_matrix(log_p, D, q)
    pi = np.exp(log_p)
    np.testing.assert_allclose(T.sum(axis=1), 1.0, atol=1e-14)
    assert (T >= 0).all()
    flow = pi[:, None] * T
    np.testing.assert_allclose(flow, flow.T, atol=1e-15)
    np.testing.assert_allclose(pi @ T, pi, atol=1e-14)
    start = 5                                       # state code 0101
    rng = np.random.default_rng(11)
    x0 = np.tile(binary_states(D, start, start + 1, dtype=np.float64), (20000, 1))
    res = mh.metropolis_hastings_binary(mh.boltzmann_flip_delta, (W, b), x0, 1, rng, q=q)
    codes = res.samples[0].astype(np.int64) @ (1 << np.arange(D - 1, -1, -1))
    counts = np.bincount(codes, minlength=2 ** D)
    support = T[start] > 0
    assert counts[~support].sum() == 0              # only single-site moves (or staying put)
    assert stats.chisquare(counts[support], 20000 * T[start, support]).pvalue > ALPHA


def test_detailed_balance_fails_without_hastings_correction():
    """The asymmetric proposal needs the correction: dropping Q's ratio breaks detailed balance."""
    D = 3
    _, _, log_p = boltzmann(D, seed=4)
    q = np.array([0.2, 0.5, 0.9])
    pi = np.exp(log_p)
    T = mh.binary_mh_transition_matrix(log_p, D, q)
    flow = pi[:, None] * T
    np.testing.assert_allclose(flow, flow.T, atol=1e-15)
    # the same proposal with the Metropolis rule only (Q ratio ignored)
    bad = np.zeros_like(T)
    for x in range(2 ** D):
        for i in range(D):
            bit = 1 << (D - 1 - i)
            y = x ^ bit
            p_move = q[i] if not x & bit else 1 - q[i]
            bad[x, y] += p_move * min(1.0, math.exp(log_p[y] - log_p[x])) / D
        bad[x, x] = 1 - bad[x].sum()
    assert np.abs(pi[:, None] * bad - (pi[:, None] * bad).T).max() > 1e-3


def test_exact_proposals_are_always_accepted():
    """With Q equal to the target, the Hastings ratio is exactly 1: an independence sampler
    proposing from N(mu, s^2) for a N(mu, s^2) target, and the biased site proposal with
    q = sigmoid(b) for independent Bernoulli units (W = 0), accept every move."""
    mu, s = np.array([1.0, -2.0]), np.array([0.5, 0.5])
    params = (np.zeros(1), mu[None, :], np.array([0.5]))
    res = mh.metropolis_hastings(mh.gaussian_mixture_log_p, params, np.zeros((20, 2)), 50, np.random.default_rng(12),
                                 proposal="independence", proposal_mean=mu, proposal_std=s)
    np.testing.assert_array_equal(res.accept_rate, 1.0)
    b = np.array([-1.0, 0.3, 2.0])
    q = 1 / (1 + np.exp(-b))
    res = mh.metropolis_hastings_binary(mh.boltzmann_flip_delta, (np.zeros((3, 3)), b), np.zeros((20, 3)), 50,
                                        np.random.default_rng(13), q=q)
    np.testing.assert_array_equal(res.accept_rate, 1.0)
    # without the correction (flip proposal) the same target rejects some moves
    res = mh.metropolis_hastings_binary(mh.boltzmann_flip_delta, (np.zeros((3, 3)), b), np.zeros((20, 3)), 50,
                                        np.random.default_rng(13))
    assert res.accept_rate.mean() < 0.9


@pytest.mark.parametrize("proposal", ["random_walk", "independence"])
def test_continuous_chains_match_mixture(proposal):
    """KS test (significance 1e-3) of the final states of 3000 chains on a 1-D mixture of
    three Gaussians against its exact CDF."""
    log_w, means, stds = np.log(np.array([0.2, 0.3, 0.5])), np.array([[-2.0], [0.5], [2.5]]), np.array([0.4, 0.6, 0.5])
    params = (log_w, means, stds)
    res = mh.metropolis_hastings(mh.gaussian_mixture_log_p, params, np.zeros((3000, 1)), 1, np.random.default_rng(14),
                                 burn_in=199, step_size=1.5, proposal=proposal, proposal_mean=0.0, proposal_std=2.5)

    def cdf(x):
        return sum(np.exp(lw) * stats.norm(m[0], s).cdf(x) for lw, m, s in zip(log_w, means, stds))

    assert stats.kstest(res.samples[0, :, 0], cdf).pvalue > ALPHA
    assert 0.1 < res.accept_rate.mean() < 0.9


def test_errors_are_clear():
    params = mixture()
    with pytest.raises(ValueError, match="proposal must be one of"):
        mh.metropolis_hastings(mh.gaussian_mixture_log_p, params, np.zeros((2, 2)), 1, np.random.default_rng(0),
                               proposal="langevin")
    with pytest.raises(ValueError, match="needs proposal_mean and proposal_std"):
        mh.metropolis_hastings(mh.gaussian_mixture_log_p, params, np.zeros((2, 2)), 1, np.random.default_rng(0),
                               proposal="independence")
    with pytest.raises(ValueError, match="0 < q_i < 1"):
        mh.metropolis_hastings_binary(mh.boltzmann_flip_delta, (np.zeros((2, 2)), np.zeros(2)), np.zeros((2, 2)), 1,
                                      np.random.default_rng(0), q=[0.0, 0.5])
    with pytest.raises(ValueError, match="thin must be an integer >= 1"):
        mh.metropolis_hastings(mh.gaussian_mixture_log_p, params, np.zeros((2, 2)), 1, np.random.default_rng(0), thin=0)
    with pytest.raises(ValueError, match="2 dimensions"):
        mh.metropolis_hastings(mh.gaussian_mixture_log_p, params, np.zeros(2), 1, np.random.default_rng(0))


def test_twins_on_device_equal_kernels(device):
    """The xp twins run on the device's array module (CuPy on CUDA) with the same random numbers."""
    xp = td.backend.module_for_device(device)
    params = mixture()
    rng = np.random.default_rng(20)
    x0 = rng.normal(0, 1, (6, 2))
    eps, log_u = rng.standard_normal((25, 6, 2)), np.log(rng.random((25, 6)))
    x1 = x0.copy()
    s1, a1 = mh.mh_kernel(mh.gaussian_mixture_log_p, params, x1, eps, log_u, burn_in=5)
    x2 = xp.asarray(x0)
    s2, a2 = mh.mh_xp(mh.gaussian_mixture_log_p_xp, tuple(xp.asarray(p) for p in params), x2, xp.asarray(eps),
                      xp.asarray(log_u), burn_in=5)
    np.testing.assert_allclose(td.backend.to_numpy(s2), s1, atol=1e-12)
    np.testing.assert_array_equal(td.backend.to_numpy(a2), a1)
    W, b, _ = boltzmann(4)
    sites, v = rng.integers(0, 4, (25, 6)), rng.random((25, 6))
    y0 = (rng.random((6, 4)) < 0.5).astype(float)
    y1 = y0.copy()
    q = np.array([0.3, 0.5, 0.6, 0.7])
    s1, a1 = mh.mh_binary_kernel(mh.boltzmann_flip_delta, (W, b), y1, sites, log_u, v, q)
    y2 = xp.asarray(y0)
    s2, a2 = mh.mh_binary_xp(mh.boltzmann_flip_delta_xp, (xp.asarray(W), xp.asarray(b)), y2, xp.asarray(sites),
                             xp.asarray(log_u), xp.asarray(v), xp.asarray(q))
    np.testing.assert_array_equal(td.backend.to_numpy(s2), s1)
