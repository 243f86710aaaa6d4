"""Annealed importance sampling for RBMs and two-layer DBMs (Salakhutdinov & Murray 2008, On
the quantitative analysis of deep belief networks, ICML; Neal 2001), tested against the exact
log Z of ``tinydgm.evaluate.exact``.
"""
import math

from tinydgm import backend
from tinydgm.evaluate.exact import _is_tensor, _xp_softplus, rbm_free_energy

__all__ = ["ais_betas", "base_rate_visible_bias", "rbm_ais", "dbm_ais", "rbm_test_log_likelihood"]


def ais_betas(schedule="salakhutdinov-murray", n_betas=None, dtype="float64", xp=None):
    """Inverse temperatures 0 = beta_0 < beta_1 < ... < beta_K = 1.

    "salakhutdinov-murray": the paper's schedule, 500 betas spaced uniformly in [0, 0.5], 4,000
    in [0.5, 0.9] and 10,000 in [0.9, 1] (14,500 intermediate distributions).
    "linear": n_betas + 1 equally spaced values."""
    xp = xp or backend.module_for_device("cpu")
    if schedule == "salakhutdinov-murray":
        return xp.concatenate([xp.linspace(0, 0.5, 500, endpoint=False, dtype=dtype),
                               xp.linspace(0.5, 0.9, 4000, endpoint=False, dtype=dtype),
                               xp.linspace(0.9, 1.0, 10001, dtype=dtype)])
    if schedule == "linear":
        if isinstance(n_betas, bool) or not isinstance(n_betas, int) or n_betas < 1:
            raise ValueError(f'ais_betas: "linear" needs n_betas, a positive int, got {n_betas!r}')
        return xp.linspace(0, 1, n_betas + 1, dtype=dtype)
    raise ValueError(f'ais_betas: schedule must be "salakhutdinov-murray" or "linear", got {schedule!r}')


def base_rate_visible_bias(data, smoothing=0.05):
    """The base-rate model's visible biases b_A = logit(mean pixel) (Salakhutdinov & Murray 2008,
    the base RBM with zero weights that fits the data's marginals); the means are smoothed
    toward 1/2, p = (sum + smoothing N) / (N (1 + 2 smoothing)), so that always-off pixels get a
    finite bias."""
    xp = backend.get_array_module(data)
    data = xp.asarray(data, dtype=xp.float64)
    p = (data.sum(axis=0) + smoothing * data.shape[0]) / (data.shape[0] * (1 + 2 * smoothing))
    return xp.log(p) - xp.log1p(-p)


def rbm_ais(W, b, c, n_runs=100, betas="salakhutdinov-murray", base_visible_bias=None, rng=None):
    """log Z of a Bernoulli RBM by annealed importance sampling (Salakhutdinov & Murray 2008).

    Base distribution p_A: an RBM with zero weights and visible biases b_A
    (``base_visible_bias``, e.g. ``base_rate_visible_bias(train_data)``; zeros by default), so
    log Z_A = sum_i softplus(b_A_i) + H log 2 (its H hidden units, with zero weights and biases,
    are summed out: each contributes a factor 2). Geometric path p_k ∝ p_A^(1 - beta_k) p_B^beta_k, with the hidden units
    summed out:

        log p*_k(v) = (1 - beta_k) b_A^T v + beta_k b^T v + sum_j softplus(beta_k (c_j + (v W)_j))

    Each of the M = n_runs runs draws v_1 ~ p_A, then for k = 1..K adds
    log p*_k(v_k) - log p*_{k-1}(v_k) to its log-weight and moves v with one block Gibbs sweep
    T_k that leaves p_k invariant (h ~ sigmoid(beta_k (c + v W)), v ~ sigmoid((1 - beta_k) b_A +
    beta_k (b + W h))). Then Z_B / Z_A is estimated by the mean of the weights w.

    Error: the standard error of log Z_hat by the delta method, se = std(w) / (sqrt(M) mean(w))
    (the sample standard deviation of the weights, ddof = 1, computed with the weights scaled
    by their maximum); also the paper's interval log(Z_hat -+ 3 std(w) Z_A / sqrt(M))
    ("log_z_lower", "log_z_upper"; the lower end is -inf when 3 sigma exceeds Z_hat).

    betas: a schedule name for ``ais_betas`` or an increasing array from 0 to 1. W, b, c: arrays
    (NumPy or CuPy; the sweeps use the Numba layer kernel on NumPy). rng: a NumPy Generator.
    Returns a dict: log_z, log_z_se, log_z_lower, log_z_upper, log_z_base, log_w (M,) (NumPy),
    n_runs, n_betas.
    """
    from tinydgm.kernels.rbm_gibbs import bernoulli_layer
    from tinydgm.kernels.uniforms import uniform
    if _is_tensor(W):
        W, b, c = W.data, b.data, c.data
    xp = backend.get_array_module(W)
    D, H = W.shape
    betas = _check_ais(n_runs, betas, "rbm_ais")
    rng = backend.default_generator() if rng is None else rng
    b_A = xp.zeros(D, W.dtype) if base_visible_bias is None else xp.asarray(base_visible_bias, dtype=W.dtype)
    device = backend.device_of(W)

    def uniforms(shape):
        return backend.to_device(uniform(rng, shape, W.dtype), device)

    def sum_softplus(beta, a):                          # sum_j softplus(beta a_j) in float64
        return _xp_softplus(xp, beta * a.astype(xp.float64)).sum(axis=1)

    db = (b - b_A).astype(xp.float64)
    v = (uniforms((n_runs, D)) < 1 / (1 + xp.exp(-b_A))).astype(W.dtype)    # v_1 ~ p_A
    log_w = xp.zeros(n_runs, dtype=xp.float64)
    for k in range(1, len(betas)):
        beta, beta_prev = betas[k], betas[k - 1]
        vW = v @ W
        a = vW + c
        log_w += (beta - beta_prev) * (v.astype(xp.float64) @ db) + sum_softplus(beta, a) - sum_softplus(beta_prev, a)
        if k < len(betas) - 1:                          # T_k: one sweep at inverse temperature beta_k
            _, h = bernoulli_layer(beta * vW, beta * c, uniforms((n_runs, H)))
            _, v = bernoulli_layer(beta * (h @ W.T), (1 - beta) * b_A + beta * b, uniforms((n_runs, D)))
    log_z_base = float(_xp_softplus(xp, b_A.astype(xp.float64)).sum()) + H * math.log(2.0)
    return _ais_result(backend.to_numpy(log_w), log_z_base, len(betas) - 1)


def _check_ais(n_runs, betas, who):
    """The betas as a list of floats, after checking n_runs and the schedule."""
    if isinstance(n_runs, bool) or not isinstance(n_runs, int) or n_runs < 2:
        raise ValueError(f"{who}: n_runs must be an int >= 2 (for a standard error), got {n_runs!r}")
    betas = ais_betas(betas) if isinstance(betas, str) else backend.to_numpy(betas)
    if betas.ndim != 1 or len(betas) < 2 or betas[0] != 0 or betas[-1] != 1 or (betas[1:] <= betas[:-1]).any():
        raise ValueError(f"{who}: betas must increase from 0 to 1")
    return [float(x) for x in betas]


def _ais_result(log_w, log_z_base, n_betas):
    """log Z = log Z_A + log mean(w) from the runs' log-weights (NumPy, float64), with the
    delta-method standard error and the paper's 3-sigma interval (see ``rbm_ais``)."""
    n_runs = len(log_w)
    m = float(log_w.max())
    w = [math.exp(x - m) for x in log_w.tolist()]                   # weights scaled by exp(m)
    mean = math.fsum(w) / n_runs
    std = math.sqrt(math.fsum((x - mean) ** 2 for x in w) / (n_runs - 1))
    spread = 3 * std / math.sqrt(n_runs)
    return {
        "log_z": log_z_base + m + math.log(mean),
        "log_z_se": std / (math.sqrt(n_runs) * mean),
        "log_z_lower": log_z_base + m + math.log(mean - spread) if mean > spread else -math.inf,
        "log_z_upper": log_z_base + m + math.log(mean + spread),
        "log_z_base": log_z_base,
        "log_w": log_w,
        "n_runs": n_runs,
        "n_betas": n_betas,
    }


def dbm_ais(W1, W2, b, c1, c2, n_runs=100, betas="salakhutdinov-murray", base_visible_bias=None, rng=None):
    """log Z of a two-hidden-layer DBM, E = -v^T W1 h1 - h1^T W2 h2 - b^T v - c1^T h1 - c2^T h2,
    by annealed importance sampling over h1 with v and h2 summed out (Salakhutdinov & Hinton
    2009, "Deep Boltzmann machines", Sec. 4: v and h2 are independent given h1, so AIS needs
    to run on h1 only, as ``rbm_ais`` runs on v).

    Path: p_k ∝ exp(-((1 - beta_k) E_A + beta_k E)), E_A = -b_A^T v (the base: no weights, no
    hidden biases, visible biases ``base_visible_bias``): each p_k is a DBM with weights
    beta_k W1, beta_k W2 and biases (1 - beta_k) b_A + beta_k b, beta_k c1, beta_k c2, whose
    h1-marginal is

        log p*_k(h1) = beta_k c1^T h1 + sum_i softplus((1 - beta_k) b_A_i + beta_k (b + W1 h1)_i)
                       + sum_j softplus(beta_k (c2 + W2^T h1)_j)

    The runs draw h1 ~ p_A (fair coins), add log p*_k(h1) - log p*_{k-1}(h1) to their
    log-weights and move with one Gibbs sweep of p_k, v ~ p_k(v | h1), h2 ~ p_k(h2 | h1),
    h1 ~ p_k(h1 | v, h2), which leaves p_k and so its h1-marginal invariant. log Z_A =
    sum_i softplus(b_A_i) + (H1 + H2) log 2. Arguments and result as ``rbm_ais``.
    """
    from tinydgm.kernels.rbm_gibbs import bernoulli_layer
    from tinydgm.kernels.uniforms import uniform
    if _is_tensor(W1):
        W1, W2, b, c1, c2 = W1.data, W2.data, b.data, c1.data, c2.data
    xp = backend.get_array_module(W1)
    (D, H1), H2 = W1.shape, W2.shape[1]
    if tuple(W2.shape) != (H1, H2) or tuple(b.shape) != (D,) or tuple(c1.shape) != (H1,) or tuple(c2.shape) != (H2,):
        raise ValueError(f"dbm_ais: need W1 (D, H1) = {tuple(W1.shape)}, W2 (H1, H2), b (D,), c1 (H1,), c2 (H2,); "
                         f"got W2 {tuple(W2.shape)}, b {tuple(b.shape)}, c1 {tuple(c1.shape)}, c2 {tuple(c2.shape)}")
    betas = _check_ais(n_runs, betas, "dbm_ais")
    rng = backend.default_generator() if rng is None else rng
    b_A = xp.zeros(D, W1.dtype) if base_visible_bias is None else xp.asarray(base_visible_bias, dtype=W1.dtype)
    device = backend.device_of(W1)

    def uniforms(n_cols):
        return backend.to_device(uniform(rng, (n_runs, n_cols), W1.dtype), device)

    def log_p_star(beta, h1, h1W1t, h1W2):                  # log p*_k(h1) in float64
        f64 = xp.float64
        return beta * (h1.astype(f64) @ c1.astype(f64)) \
            + _xp_softplus(xp, ((1 - beta) * b_A + beta * (b + h1W1t)).astype(f64)).sum(axis=1) \
            + _xp_softplus(xp, (beta * (c2 + h1W2)).astype(f64)).sum(axis=1)

    h1 = (uniforms(H1) < 0.5).astype(W1.dtype)               # h1_1 ~ p_A: fair coins
    log_w = xp.zeros(n_runs, dtype=xp.float64)
    for k in range(1, len(betas)):
        beta, beta_prev = betas[k], betas[k - 1]
        h1W1t, h1W2 = h1 @ W1.T, h1 @ W2
        log_w += log_p_star(beta, h1, h1W1t, h1W2) - log_p_star(beta_prev, h1, h1W1t, h1W2)
        if k < len(betas) - 1:                              # T_k: one Gibbs sweep of p_k
            _, v = bernoulli_layer(beta * h1W1t, (1 - beta) * b_A + beta * b, uniforms(D))
            _, h2 = bernoulli_layer(beta * h1W2, beta * c2, uniforms(H2))
            _, h1 = bernoulli_layer(beta * (v @ W1 + h2 @ W2.T), beta * c1, uniforms(H1))
    log_z_base = float(_xp_softplus(xp, b_A.astype(xp.float64)).sum()) + (H1 + H2) * math.log(2.0)
    return _ais_result(backend.to_numpy(log_w), log_z_base, len(betas) - 1)


def rbm_test_log_likelihood(W, b, c, v, log_z, batch_size=1000):
    """The mean log p(v) = -F(v) - log Z over the rows of v, in nats (a float), given log Z
    (exact, or ``rbm_ais(...)["log_z"]``: then an estimate; AIS's Z_hat is unbiased, so by
    Jensen E[log Z_hat] <= log Z and the log-likelihood tends to be OVER-estimated)."""
    if _is_tensor(W):
        W, b, c = W.data, b.data, c.data
    total = 0.0
    for start in range(0, v.shape[0], batch_size):
        chunk = v[start:start + batch_size]
        total += float((-rbm_free_energy(W, b, c, backend.to_device(chunk, backend.device_of(W))
                                         .astype(W.dtype))).astype("float64").sum())
    return total / v.shape[0] - log_z
