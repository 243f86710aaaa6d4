"""Block Gibbs and CD statistics for RBMs: kernel == twin on the same random numbers, the
chains' distribution against the exact marginal (chi-square), PCD continuation, updates."""
import numpy as np
import pytest
from scipy.special import expit, logsumexp

from contracts import all_binary, chi_square_pvalue
from tinydgm import backend
from tinydgm.kernels import rbm_gibbs as g

SIGNIFICANCE = 1e-3        # chi-square tests fail below this p-value (fixed seeds: deterministic)


def small_rbm(D, H, dtype="float64", seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    return (scale * rng.normal(size=(D, H))).astype(dtype), rng.normal(size=D).astype(dtype), \
        rng.normal(size=H).astype(dtype)


def exact_log_marginal(W, b, c):
    """log p(v) of every binary v (all_binary order), by brute force."""
    v = all_binary(W.shape[0])
    log_p = v @ b + np.logaddexp(0, v @ W + c).sum(axis=1)
    return log_p - logsumexp(log_p)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("visible", ["bernoulli", "gaussian"])
def test_block_gibbs_kernel_equals_twin(dtype, visible):
    W, b, c = small_rbm(13, 7, dtype)
    sigma = np.linspace(0.5, 1.5, 13).astype(dtype) if visible == "gaussian" else None
    v0 = (np.random.default_rng(1).random((40, 13)) < 0.5).astype(dtype)
    u_h, r_v = g.draw_noise(np.random.default_rng(2), 5, 40, 13, 7, visible, dtype)
    fast = g.block_gibbs_kernel(W, b, c, v0, u_h, r_v, visible, sigma)
    twin = g.block_gibbs_xp(W, b, c, v0, u_h, r_v, visible, sigma)
    for a, t in zip(fast, twin):
        assert a.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(a, t)          # same operations in the same order: bit for bit
    if visible == "bernoulli":
        assert set(np.unique(fast[0])) <= {0.0, 1.0} and 0 < fast[0].mean() < 1


@pytest.mark.parametrize("visible", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("persistent", [False, True])
def test_cd_gradient_kernel_equals_twin_and_statistics(visible, persistent):
    D, H, n, k = 11, 6, 30, 3
    W, b, c = small_rbm(D, H)
    sigma = np.linspace(0.5, 1.5, D) if visible == "gaussian" else None
    rng = np.random.default_rng(3)
    v = rng.normal(size=(n, D)) if visible == "gaussian" else (rng.random((n, D)) < 0.3).astype(float)
    h_chain = (rng.random((n, H)) < 0.5).astype(float) if persistent else None
    u_h, r_v = g.draw_noise(rng, k, n, D, H, visible, "float64", start_hidden=not persistent)
    dW, db, dc, v_chain, h_last = [a.copy() for a in g.cd_gradient_kernel(W, b, c, v, u_h, r_v, h_chain, visible,
                                                                          sigma)]
    stats = g.cd_statistics(W, b, c, v, u_h, r_v, h_chain, visible, sigma)
    np.testing.assert_array_equal(v_chain, stats.v_chain)
    np.testing.assert_array_equal(h_last, stats.h_chain)
    np.testing.assert_allclose(dW, stats.vh_data - stats.vh_model, atol=1e-12)
    np.testing.assert_allclose(db, stats.v_data - stats.v_model, atol=1e-12)
    np.testing.assert_allclose(dc, stats.h_data - stats.h_model, atol=1e-12)
    # the positive phase is the data moment with p(h | v) summed out analytically
    x = v / sigma if visible == "gaussian" else v
    p = expit(x @ W + c)
    np.testing.assert_allclose(stats.vh_data, x.T @ p / n, rtol=1e-12)
    np.testing.assert_allclose(stats.h_data, p.mean(0), rtol=1e-12)


def test_pcd_continues_its_chains():
    """Two PCD-1 calls with the same parameters == one PCD-2 call on the same random numbers."""
    D, H, n = 9, 5, 20
    W, b, c = small_rbm(D, H)
    rng = np.random.default_rng(4)
    v = (rng.random((n, D)) < 0.5).astype(float)
    h0 = np.zeros((n, H))
    u_h, r_v = g.draw_noise(rng, 2, n, D, H)
    *_, v2, h2 = g.cd_gradient_kernel(W, b, c, v, u_h, r_v, h0)
    v2, h2 = v2.copy(), h2.copy()
    *_, _, h1 = g.cd_gradient_kernel(W, b, c, v, u_h[:1], r_v[:1], h0)
    *_, v1b, h1b = g.cd_gradient_kernel(W, b, c, v, u_h[1:], r_v[1:], h1.copy())
    np.testing.assert_array_equal(v1b, v2)
    np.testing.assert_array_equal(h1b, h2)


def test_block_gibbs_samples_follow_the_exact_marginal():
    """4000 independent chains, 30 sweeps from all-zeros: the last v against the exact p(v)
    (chi-square over the 2^6 states); a wrong model (biases shifted) is rejected."""
    D, H, n = 6, 4, 4000
    W, b, c = small_rbm(D, H, scale=0.8)
    u_h, r_v = g.draw_noise(np.random.default_rng(5), 30, n, D, H, dtype="float64")
    v, _, _ = g.block_gibbs(W, b, c, np.zeros((n, D)), u_h, r_v)
    assert chi_square_pvalue(v, exact_log_marginal(W, b, c)) > SIGNIFICANCE
    assert chi_square_pvalue(v, exact_log_marginal(W, b + 0.3, c)) < 1e-6


def test_gaussian_block_gibbs_matches_the_exact_visible_mean():
    """E[v] = sum_h p(h) (b + sigma W h), p(h) ∝ exp(c^T h + sum_i (m_i^2 - b_i^2) / (2 sigma_i^2))."""
    D, H, n = 4, 3, 4000
    W, b, c = small_rbm(D, H, scale=0.7)
    sigma = np.array([0.5, 1.0, 1.5, 2.0])
    u_h, r_v = g.draw_noise(np.random.default_rng(6), 40, n, D, H, "gaussian", "float64")
    v, _, _ = g.block_gibbs(W, b, c, np.zeros((n, D)), u_h, r_v, "gaussian", sigma)
    h = all_binary(H)
    m = b + sigma * (h @ W.T)
    log_p_h = h @ c + ((m ** 2 - b ** 2) / (2 * sigma ** 2)).sum(1)
    p_h = np.exp(log_p_h - logsumexp(log_p_h))
    mean = p_h @ m
    var = p_h @ (m ** 2) - mean ** 2 + sigma ** 2
    z = (v.mean(0) - mean) / np.sqrt(var / n)
    assert np.abs(z).max() < 4, z
    assert np.abs(v.var(0) / var - 1).max() < 0.1


def test_sgd_update_kernel_equals_formula():
    rng = np.random.default_rng(7)
    theta, grad, vel = (rng.normal(size=(5, 3)).astype("float32") for _ in range(3))
    expected_vel = 0.5 * vel + 0.1 * (grad - 0.01 * theta)
    expected = theta + expected_vel
    g.sgd_update(theta, grad, vel, 0.1, 0.5, 0.01)
    np.testing.assert_allclose(vel, expected_vel, rtol=1e-6)
    np.testing.assert_allclose(theta, expected, rtol=1e-6)


def test_shape_errors_name_the_expected_shape():
    W, b, c = small_rbm(5, 3)
    u_h, r_v = g.draw_noise(np.random.default_rng(0), 2, 4, 5, 3, dtype="float64")
    with pytest.raises(ValueError, match=r"v must have shape \(n, D\) = \(n, 5\), got \(4, 6\)"):
        g.block_gibbs(W, b, c, np.zeros((4, 6)), u_h, r_v)
    with pytest.raises(ValueError, match=r"u_h must have shape \(k \+ 1, n, H\) = \(3, 4, 3\), got \(2, 4, 3\)"):
        g.cd_gradient(W, b, c, np.zeros((4, 5)), u_h, r_v)
    with pytest.raises(ValueError, match=r"need at least one sweep \(k >= 1\)"):
        g.cd_gradient(W, b, c, np.zeros((4, 5)), u_h[:0], r_v[:0], h_chain=np.zeros((4, 3)))
    with pytest.raises(ValueError, match="visible must be one of"):
        g.block_gibbs(W, b, c, np.zeros((4, 5)), u_h, r_v, visible="poisson")


@pytest.mark.cuda
def test_twin_on_cuda_equals_kernel(device):
    W, b, c = small_rbm(13, 7)
    v0 = (np.random.default_rng(1).random((40, 13)) < 0.5).astype("float64")
    u_h, r_v = g.draw_noise(np.random.default_rng(2), 5, 40, 13, 7, dtype="float64")
    fast = g.block_gibbs(W, b, c, v0, u_h, r_v)
    to = lambda a: backend.to_device(a, device)      # noqa: E731
    twin = g.block_gibbs(to(W), to(b), to(c), to(v0), to(u_h), to(r_v))
    # CUDA's exp may differ by an ulp: allow the rare u within an ulp of p to flip
    assert (backend.to_numpy(twin[0]) == fast[0]).mean() > 0.999
