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


# ----------------------------------------------------------------------------- zero-skipping products

def sparse_matrix(rng, shape, density, dtype, binary=False):
    values = np.ones(shape) if binary else rng.normal(size=shape)
    X = np.where(rng.random(shape) < density, values, 0.0).astype(dtype)
    X[0] = 0                                    # an all-zero row
    X[-1] = (rng.normal(size=shape[1]) if not binary else 1.0)     # a fully dense row
    return X


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("binary", [False, True])
@pytest.mark.parametrize("K", [1, 3, 4, 37])          # fewer than, exactly and not a multiple of 4 nonzeros
def test_sparse_products_equal_dense_products(dtype, binary, K):
    rng = np.random.default_rng(10)
    X = sparse_matrix(rng, (9, K), 0.3, dtype, binary)
    Y = rng.normal(size=(K, 13)).astype(dtype)
    out = np.full((9, 13), np.nan, dtype)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == "float32" else dict(rtol=1e-12, atol=1e-12)
    for kernel in (g._sparse_times_serial, g._sparse_times_parallel):
        out[...] = np.nan
        kernel(X, Y, out)
        np.testing.assert_allclose(out, X @ Y, **tol)
        assert not out[0].any()                    # all-zero row: exactly zero
    # X^T Y through the transposed copy, as the weight gradient is computed
    Z = rng.normal(size=(9, 13)).astype(dtype)
    XT, out2 = np.empty((K, 9), dtype), np.empty((K, 13), dtype)
    g._sparse_times_serial(np.ascontiguousarray(X.T), Z, out2)
    np.testing.assert_allclose(out2, X.T @ Z, **tol)
    g._transpose_times(X, Z, out2, XT)             # dispatcher: sparse or BLAS, same numbers
    np.testing.assert_allclose(out2, X.T @ Z, **tol)


@pytest.mark.parametrize("shape", [(784, 500), (37, 5), (16, 3), (5, 16)])   # bands of 16 rows, a partial band
def test_transposes_equal_numpy_transpose(shape):
    X = np.random.default_rng(15).normal(size=shape).astype("float32")
    for kernel in (g._transpose_serial, g._transpose_parallel):
        out = np.full(shape[::-1], np.nan, "float32")
        kernel(X, out)
        np.testing.assert_array_equal(out, X.T)


def test_sparse_product_does_not_depend_on_the_thread_count():
    numba = pytest.importorskip("numba")
    rng = np.random.default_rng(11)
    X = sparse_matrix(rng, (64, 200), 0.2, "float32")
    Y = rng.normal(size=(200, 50)).astype("float32")
    outs = []
    before = numba.get_num_threads()
    try:
        for threads in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            numba.set_num_threads(threads)
            out = np.empty((64, 50), "float32")
            g._sparse_times_parallel(X, Y, out)
            outs.append(out)
    finally:
        numba.set_num_threads(before)
    serial = np.empty((64, 50), "float32")
    g._sparse_times_serial(X, Y, serial)
    np.testing.assert_array_equal(outs[0], outs[1])           # bit for bit: one thread per row
    np.testing.assert_array_equal(outs[0], serial)


@pytest.mark.parametrize("persistent", [False, True])
@pytest.mark.parametrize("parallel", [False, True])
def test_cd_gradient_sparse_path_equals_dense_path(monkeypatch, persistent, parallel):
    """MNIST-like gray levels (about 20% nonzero): the zero-skipping products and BLAS give the same
    chains (float64) and the same gradient to rounding."""
    D, H, n, k = 50, 20, 40, 2
    W, b, c = small_rbm(D, H, scale=0.3)
    b -= 1.5                                         # sparse visible samples, as a trained MNIST RBM's
    rng = np.random.default_rng(12)
    v = sparse_matrix(rng, (n, D), 0.2, "float64")
    v = np.abs(v) / np.abs(v).max()                  # gray levels in [0, 1]
    h_chain = (rng.random((n, H)) < 0.5).astype(float) if persistent else None
    u_h, r_v = g.draw_noise(rng, k, n, D, H, start_hidden=not persistent, dtype="float64")
    monkeypatch.setattr(g, "SPARSE_PARALLEL", parallel)
    results, calls, sparse_times, logits_parallel = {}, [], g._sparse_times, g._sparse_minus_logits_parallel
    monkeypatch.setattr(g, "_sparse_times", lambda X, Y, out: (calls.append(X.shape), sparse_times(X, Y, out)))
    monkeypatch.setattr(g, "_sparse_minus_logits_parallel",
                        lambda X, *args: (calls.append(X.shape), logits_parallel(X, *args)))
    for name, below in (("dense", 0.0), ("sparse", 1.01)):
        monkeypatch.setattr(g, "SPARSE_BELOW", below)
        monkeypatch.setattr(g, "SPARSE_HIDDEN_BELOW", below)           # h W^T too
        calls.clear()
        results[name] = [a.copy() for a in g.cd_gradient_kernel(W, b, c, v, u_h, r_v, h_chain)]
        assert bool(calls) == (name == "sparse")     # the path under test was taken
        assert ((n, H) in calls) == (name == "sparse")  # h W^T included
    (dW, db, dc, v_chain, h_last), (sW, sb, sc, s_chain, s_last) = results["dense"], results["sparse"]
    np.testing.assert_array_equal(s_chain, v_chain)
    np.testing.assert_array_equal(s_last, h_last)
    np.testing.assert_allclose(sW, dW, atol=1e-13)
    np.testing.assert_allclose(sb, db, atol=1e-13)
    np.testing.assert_allclose(sc, dc, atol=1e-13)
    stats = g.cd_statistics(W, b, c, v, u_h, r_v, h_chain)          # and the xp twin
    np.testing.assert_array_equal(s_chain, stats.v_chain)
    np.testing.assert_allclose(sW, stats.vh_data - stats.vh_model, atol=1e-13)


def test_cd_gradient_sparse_path_float32_matches_twin():
    """float32: chains from the same uniforms may differ only where a uniform is within rounding of p."""
    D, H, n = 784, 50, 30
    rng = np.random.default_rng(13)
    W = (0.05 * rng.normal(size=(D, H))).astype("float32")
    b, c = np.full(D, -2, "float32"), np.zeros(H, "float32")
    v = np.where(rng.random((n, D)) < 0.2, rng.random((n, D)), 0).astype("float32")
    assert g._is_sparse(v)
    h_chain = (rng.random((n, H)) < 0.3).astype("float32")
    u_h, r_v = g.draw_noise(rng, 1, n, D, H)
    dW, db, dc, v_chain, h_last = [a.copy() for a in g.cd_gradient_kernel(W, b, c, v, u_h, r_v, h_chain)]
    stats = g.cd_statistics(W, b, c, v, u_h, r_v, h_chain)
    assert (v_chain == stats.v_chain).mean() > 0.999
    assert (h_last == stats.h_chain).mean() > 0.999
    np.testing.assert_allclose(dW, stats.vh_data - stats.vh_model, atol=1e-5)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("visible", ["bernoulli", "gaussian"])
def test_block_gibbs_stream_equals_kernel_on_draw_noise(dtype, visible):
    """Drawing each sweep's numbers just before the sweep gives the chains of drawing all k
    sweeps' numbers at once (draw_noise draws them sweep by sweep in the order they are used)."""
    W, b, c = small_rbm(13, 7, dtype)
    sigma = np.linspace(0.5, 1.5, 13).astype(dtype) if visible == "gaussian" else None
    v0 = (np.random.default_rng(1).random((40, 13)) < 0.5).astype(dtype)
    streamed = g.block_gibbs_stream(W, b, c, v0, 6, np.random.default_rng(9), visible, sigma)
    u_h, r_v = g.draw_noise(np.random.default_rng(9), 6, 40, 13, 7, visible, dtype)
    for a, t in zip(streamed, g.block_gibbs_kernel(W, b, c, v0, u_h, r_v, visible, sigma)):
        np.testing.assert_array_equal(a, t)


def test_draw_noise_order_and_out():
    """u_h[t] then r_v[t] sweep by sweep, then u_h[k] (start_hidden); ``out`` is filled in place."""
    rng = np.random.default_rng(4)
    u_h, r_v = g.draw_noise(np.random.default_rng(4), 2, 3, 5, 4, start_hidden=True)
    from tinydgm.kernels.uniforms import uniform
    for expected in (u_h[0], r_v[0], u_h[1], r_v[1], u_h[2]):
        np.testing.assert_array_equal(uniform(rng, expected.shape), expected)
    out = (np.empty((3, 3, 4), np.float32), np.empty((2, 3, 5), np.float32))
    got = g.draw_noise(np.random.default_rng(4), 2, 3, 5, 4, start_hidden=True, out=out)
    assert got[0] is out[0] and got[1] is out[1]
    np.testing.assert_array_equal(out[0], u_h)
    np.testing.assert_array_equal(out[1], r_v)
    with pytest.raises(ValueError, match=r"out's r_v must be a C-contiguous NumPy float32 array of shape \(2, 3, 5\)"):
        g.draw_noise(rng, 2, 3, 5, 4, start_hidden=True, out=(out[0], np.empty((2, 3, 4), np.float32)))
    with pytest.raises(ValueError, match="k must be a positive integer"):
        g.block_gibbs_stream(*small_rbm(5, 4), np.zeros((2, 5)), 0, rng)


@pytest.mark.parametrize("weight_update", [False, True])
def test_parallel_cd_step_on_sparse_data_makes_no_blas_call(monkeypatch, weight_update):
    """With several Numba threads and sparse data the step calls no BLAS (OpenBLAS's spinning
    threads would take the cores from Numba's): numpy.dot is never reached; the serial path does."""
    numba = pytest.importorskip("numba")
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs two Numba threads")
    D, H, n = 60, 20, 30
    W, b, c = small_rbm(D, H, "float32", scale=0.3)
    rng = np.random.default_rng(14)
    v = np.where(rng.random((n, D)) < 0.15, rng.random((n, D)), 0).astype("float32")
    h_chain = (rng.random((n, H)) < 0.6).astype("float32")    # serial: h W^T by BLAS (SPARSE_HIDDEN_BELOW)
    u_h, r_v = g.draw_noise(rng, 2, n, D, H)
    calls = []
    real_dot = np.dot
    monkeypatch.setattr(np, "dot", lambda *a, **k: (calls.append(1), real_dot(*a, **k))[1])
    update = (np.zeros_like(W), 0.1, 0.0, 0.0) if weight_update else None
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(2)
        for parallel in (True, False):
            monkeypatch.setattr(g, "SPARSE_PARALLEL", parallel)
            calls.clear()
            g.cd_gradient_kernel(W.copy(), b, c, v, u_h, r_v, h_chain, weight_update=update)
            assert bool(calls) == (not parallel)
    finally:
        numba.set_num_threads(before)
