"""Single-site Gibbs sweeps for a fully visible Boltzmann machine (tomczak-dgm, "Boltzmann
machine"; kuleshov-l12, MCMC).

Energy on x in {0, 1}^D, with W SYMMETRIC and ZERO on the diagonal:

    E(x) = -x^T W x - b^T x,        P(x) = exp(-E(x)) / Z.

Convention, precisely: x^T W x = sum_{j != k} W_jk x_j x_k counts every pair twice
(W_jk x_j x_k and W_kj x_k x_j), so the coupling of a pair is 2 W_jk. The conditional of
one unit given the others is therefore

    P(x_i = 1 | x_-i) = sigmoid(2 (W x)_i + b_i),    (W x)_i = sum_{j != i} W_ij x_j,

(log P(x_i = 1, x_-i) - log P(x_i = 0, x_-i) = 2 (W x)_i + b_i). Models that write the
energy with a sum over pairs i < j, -sum_{i<j} J_ij x_i x_j, have J = 2 W.

A sweep visits the sites i = 0, 1, ..., D-1 in order and sets x_i = 1[u < P(x_i = 1 | x_-i)]
with u ~ U(0, 1): a Markov chain with P as its stationary distribution. Many chains run
at once; the uniforms u (n_sweeps, C, D) are an INPUT drawn by the seeded generator, so the
Numba kernel (``prange`` over chains with ``parallel=True``) gives the same chains on 1 or 2
threads and equals the xp twin, which updates all chains at once, site by site.

Recording: sample k (0-based) is the state after burn_in + (k + 1) * thin sweeps.
"""
import math

import numba
import numpy as np

from tinydgm import backend
from tinydgm.kernels.mh import _record_index, _record_index_nb   # burn-in / thinning bookkeeping, shared
from tinydgm.kernels.twins import serial_and_parallel

__all__ = ["gibbs_fvbm_kernel", "gibbs_fvbm_xp", "gibbs_fvbm", "check_boltzmann_weights"]

_NJIT = dict(cache=True, error_model="numpy")


@numba.njit(**_NJIT)
def _sigmoid(z):
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    t = math.exp(z)
    return t / (1.0 + t)




def _gibbs_body(W, b, x, u, burn_in, thin, t0, samples):
    n_sweeps, n_chains, n_dims = u.shape
    for c in numba.prange(n_chains):
        state = x[c].copy()
        for t in range(n_sweeps):
            for i in range(n_dims):
                field = 0.0
                for j in range(n_dims):
                    field += W[i, j] * state[j]               # (W x)_i, W_ii = 0
                p_i = _sigmoid(2.0 * field + b[i])            # P(x_i = 1 | x_-i)
                state[i] = 1.0 if u[t, c, i] < p_i else 0.0
            k = _record_index_nb(t0 + t, burn_in, thin)
            if k >= 0:
                samples[k, c] = state
        x[c] = state


_gibbs_serial, _gibbs_parallel = serial_and_parallel(_gibbs_body, **_NJIT)   # two cache entries: see kernels/twins.py


def check_boltzmann_weights(W, b, who, atol=1e-12):
    """W must be (D, D), symmetric with a zero diagonal, b (D,)."""
    xp = backend.get_array_module(W)
    if W.ndim != 2 or W.shape[0] != W.shape[1] or b.shape != (W.shape[0],):
        raise ValueError(f"{who}: W must be (D, D) and b (D,), got W {tuple(W.shape)} and b {tuple(b.shape)}")
    if W.size and (float(xp.abs(W - W.T).max()) > atol or float(xp.abs(xp.diagonal(W)).max()) > atol):
        raise ValueError(f"{who}: W must be symmetric with a zero diagonal (E(x) = -x^T W x - b^T x); "
                         "symmetrise it: W = (A + A.T) / 2 with the diagonal set to 0")


def gibbs_fvbm_kernel(W, b, x, u, burn_in=0, thin=1, t0=0, samples=None, parallel=False):
    """u.shape[0] sweeps of the chains x (C, D) (float64 0/1, updated IN PLACE) with the
    Numba kernel. u (n_sweeps, C, D) uniforms; t0 the global index of the first sweep (chunked
    runs). Returns samples (n_samples, C, D)."""
    W = np.ascontiguousarray(W, dtype=np.float64)
    b = np.ascontiguousarray(b, dtype=np.float64)
    check_boltzmann_weights(W, b, "gibbs_fvbm_kernel")
    if x.dtype != np.float64 or not x.flags.c_contiguous or x.ndim != 2 or x.shape[1] != W.shape[0]:
        raise ValueError(f"gibbs_fvbm_kernel: x must be a C-contiguous float64 array (C, {W.shape[0]}), "
                         f"got {x.dtype} {tuple(x.shape)}")
    n_sweeps, n_chains, n_dims = u.shape
    if x.shape != (n_chains, n_dims):
        raise ValueError(f"gibbs_fvbm_kernel: u must have shape (n_sweeps, C, D) = (n, {n_chains}, {n_dims}), "
                         f"got {tuple(u.shape)}")
    if samples is None:
        samples = np.zeros((max(0, (t0 + n_sweeps - burn_in) // thin), n_chains, n_dims))
    run = _gibbs_parallel if parallel else _gibbs_serial
    run(W, b, x, np.ascontiguousarray(u, dtype=np.float64), int(burn_in), int(thin), int(t0), samples)
    return samples


def gibbs_fvbm_xp(W, b, x, u, burn_in=0, thin=1, t0=0, samples=None):
    """The vectorized twin (NumPy or CuPy): all chains at once, site by site:
    x[:, i] = 1[u[t, :, i] < sigmoid(2 x W[:, i] + b_i)]. x (C, D) is updated in place."""
    xp = backend.get_array_module(x)
    check_boltzmann_weights(W, b, "gibbs_fvbm_xp")
    n_sweeps, n_chains, n_dims = u.shape
    if samples is None:
        samples = xp.zeros((max(0, (t0 + n_sweeps - burn_in) // thin), n_chains, n_dims), dtype=x.dtype)
    for t in range(n_sweeps):
        for i in range(n_dims):
            logit = 2.0 * (x @ W[:, i]) + b[i]                # 2 (W x)_i + b_i for every chain
            t_ = xp.exp(-xp.abs(logit))                        # stable sigmoid
            p_i = xp.where(logit >= 0, 1.0 / (1.0 + t_), t_ / (1.0 + t_))
            x[:, i] = (u[t, :, i] < p_i).astype(x.dtype)
        k = _record_index(t0 + t, burn_in, thin)
        if k >= 0:
            samples[k] = x
    return samples


def gibbs_fvbm(W, b, x0, n_samples, rng, burn_in=0, thin=1, parallel=False, chunk_sweeps=256):
    """Gibbs chains of a fully visible Boltzmann machine from x0 (C, D): the Numba kernel for
    NumPy weights, the twin for CuPy ones. Uniforms (T, C, D) are drawn from ``rng`` (on the
    CPU) in chunks of ``chunk_sweeps`` sweeps. Returns (samples (n_samples, C, D), x (C, D))."""
    for name, value, low in (("n_samples", n_samples, 0), ("burn_in", burn_in, 0), ("thin", thin, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"gibbs_fvbm: {name} must be an integer >= {low}, got {value!r}")
    n_sweeps = burn_in + n_samples * thin
    device = backend.device_of(W)
    if device == "cpu":
        x = np.array(backend.to_numpy(x0), dtype=np.float64, order="C")
    else:
        x = backend.to_device(x0, device).astype(W.dtype)
    if x.ndim != 2:
        raise ValueError(f"gibbs_fvbm: x0 must have shape (C, D), got {tuple(x.shape)}")
    n_chains, n_dims = x.shape
    xp = backend.get_array_module(x)
    samples = xp.zeros((n_samples, n_chains, n_dims), dtype=x.dtype)
    for t0 in range(0, n_sweeps, chunk_sweeps):
        u = rng.random((min(chunk_sweeps, n_sweeps - t0), n_chains, n_dims))
        if device == "cpu":
            gibbs_fvbm_kernel(W, b, x, u, burn_in, thin, t0, samples, parallel)
        else:
            gibbs_fvbm_xp(W, b, x, backend.to_device(u, device), burn_in, thin, t0, samples)
    return samples, x
