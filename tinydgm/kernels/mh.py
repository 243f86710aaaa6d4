"""Metropolis–Hastings (kuleshov-l12, "Constructing MCMC chains with Metropolis-Hastings").

A proposal Q(x' | x) and the acceptance probability

    A(x' | x) = min(1, P(x') Q(x | x') / (P(x) Q(x' | x)))                       (Hastings)

make a Markov chain that satisfies detailed balance P(x) T(x' | x) = P(x') T(x | x') with
respect to the target P (the lecture's proof), whatever Q is. We work with log P, known up to
a constant (an energy-based model: log P(x) = -E(x) + const), and accept when

    log u < log A = min(0, log P(x') - log P(x) + log Q(x | x') - log Q(x' | x)),  u ~ U(0, 1).

Proposals here:

- continuous x in R^d, ``proposal="random_walk"``: x' = x + step_size * eps, eps ~ N(0, I);
  symmetric, so the Q terms cancel (the lecture's "x' = x^t + noise" sampler);
- continuous, ``proposal="independence"``: x' = mu + sigma * eps, independent of x;
  ASYMMETRIC: log Q(x | x') - log Q(x' | x) = log N(x; mu, sigma^2) - log N(x'; mu, sigma^2);
- binary x in {0, 1}^D, ``q=None``: pick a site i uniformly and flip it (symmetric);
- binary, ``q`` given (D,): pick a site i uniformly and propose x'_i = 1 with probability
  q_i, whatever x_i is (a biased site proposal, ASYMMETRIC): when x'_i = x_i the proposal is
  the current state (a self-transition, counted as accepted), else
  log Q(x | x') - log Q(x' | x) = log q_i(x_i) - log q_i(x'_i),  q_i(1) = q_i, q_i(0) = 1 - q_i.

Two forms, with randomness as INPUTS (drawn outside by the seeded generator, so the same
seed gives the same chains whatever the thread count, and the kernel equals its twin):

(a) Numba kernels for targets written as Numba functions, many chains at once (``prange``
    over the chains with ``parallel=True``: each chain reads only its own random numbers, so
    1 or 2 threads give identical chains):
    ``mh_kernel(log_p, params, x, eps, log_u, ...)``: log_p(x_row, params) -> float, a
    ``numba.njit`` function of one state (d,) and a tuple of arrays ``params``;
    ``mh_binary_kernel(flip_delta, params, x, sites, v, log_u, ...)``:
    flip_delta(x_row, i, params) = log P(x with x_i flipped) - log P(x).
    Built in: ``gaussian_mixture_log_p`` (params = (log_weights (K,), means (K, d), stds (K,)),
    isotropic components), ``boltzmann_log_p`` / ``boltzmann_flip_delta`` (params = (W, b),
    log P(x) = x^T W x + b^T x, W symmetric with zero diagonal).
(b) xp twins ``mh_xp`` / ``mh_binary_xp``: all chains at once, one batched call of the
    log-density per step: the reference for (a), the CuPy path, and the batched form for
    neural energies f_theta(x) evaluated by the engine (``metropolis_hastings_batched``).

Step bookkeeping (both forms): n_steps = burn_in + n_samples * thin transitions per chain;
sample k (0-based) is the state after burn_in + (k + 1) * thin transitions. The acceptance
rate counts every transition (burn-in included) per chain. Random numbers of step t, chain c:
eps[t, c] (continuous) or sites[t, c] and v[t, c] (binary), and log_u[t, c].
"""
import math
from typing import NamedTuple

import numba
import numpy as np

from tinydgm import backend
from tinydgm.kernels.twins import serial_and_parallel

__all__ = ["MHResult", "log_acceptance", "gaussian_mixture_log_p", "gaussian_mixture_log_p_xp",
           "boltzmann_log_p", "boltzmann_log_p_xp", "boltzmann_flip_delta", "boltzmann_flip_delta_xp",
           "flip_delta_from_log_p", "mh_kernel", "mh_xp", "mh_binary_kernel", "mh_binary_xp",
           "metropolis_hastings", "metropolis_hastings_binary", "metropolis_hastings_batched",
           "binary_mh_transition_matrix", "n_steps_for"]

PROPOSALS = ("random_walk", "independence")
_NJIT = dict(cache=True, error_model="numpy")


class MHResult(NamedTuple):
    samples: object        # (n_samples, C, d): the recorded states of every chain
    x: object              # (C, d): the final state (continue the chains from it)
    accept_rate: object    # (C,): accepted / proposed transitions of each chain


def n_steps_for(n_samples, burn_in, thin):
    """Transitions per chain: burn_in + n_samples * thin."""
    for name, value, low in (("n_samples", n_samples, 0), ("burn_in", burn_in, 0), ("thin", thin, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"metropolis_hastings: {name} must be an integer >= {low}, got {value!r}")
    return int(burn_in) + int(n_samples) * int(thin)


# ----------------------------------------------------------------------------- the acceptance rule

@numba.njit(**_NJIT)
def log_acceptance(log_p_x, log_p_y, log_q_x_given_y, log_q_y_given_x):
    """log A(y | x) = min(0, log P(y) - log P(x) + log Q(x | y) - log Q(y | x)): the one rule
    every kernel, twin and transition matrix of this module uses (NaN from -inf - -inf
    compares False with log u: rejected)."""
    return min(0.0, log_p_y - log_p_x + log_q_x_given_y - log_q_y_given_x)


def _log_acceptance_xp(xp, delta):
    """The same rule on arrays: min(0, delta), delta = the log Hastings ratio."""
    return xp.minimum(0.0, delta)


def _record_index(t, burn_in, thin):
    """The sample index recorded after transition t (0-based, global), or -1."""
    done = t + 1 - burn_in
    if done > 0 and done % thin == 0:
        return done // thin - 1
    return -1


_record_index_nb = numba.njit(**_NJIT)(_record_index)


# ----------------------------------------------------------------------------- built-in targets

@numba.njit(**_NJIT)
def _component_term(x, log_w, means, stds, k, d):
    """log w_k - |x - mu_k|^2 / (2 s_k^2) - d log s_k."""
    sq = 0.0
    for j in range(d):
        z = x[j] - means[k, j]
        sq += z * z
    return log_w[k] - 0.5 * sq / (stds[k] * stds[k]) - d * math.log(stds[k])


@numba.njit(**_NJIT)
def gaussian_mixture_log_p(x, params):
    """log P(x) = logsumexp_k [log w_k - |x - mu_k|^2 / (2 s_k^2) - d log s_k] (up to -d/2 log 2 pi)."""
    log_w, means, stds = params
    n_comp, d = means.shape
    top, total = -np.inf, 0.0
    for k in range(n_comp):                 # one pass, running log-sum-exp: no temporary array per call
        term = _component_term(x, log_w, means, stds, k, d)
        if term > top:
            total = total * math.exp(top - term) + 1.0 if top > -np.inf else 1.0
            top = term
        elif term > -np.inf:
            total += math.exp(term - top)
    if top == -np.inf:
        return top
    return top + math.log(total)


def gaussian_mixture_log_p_xp(x, params):
    """The twin: x (C, d) -> (C,), the same formula on arrays."""
    xp = backend.get_array_module(x)
    log_w, means, stds = params
    d = means.shape[1]
    sq = ((x[:, None, :] - means[None, :, :]) ** 2).sum(axis=-1)             # (C, K)
    terms = log_w - 0.5 * sq / (stds * stds) - d * xp.log(stds)
    top = terms.max(axis=1)
    return top + xp.log(xp.exp(terms - top[:, None]).sum(axis=1))


@numba.njit(**_NJIT)
def boltzmann_log_p(x, params):
    """log P(x) = -E(x) = x^T W x + b^T x (tomczak-dgm's Boltzmann machine energy)."""
    W, b = params
    return x @ (W @ x) + b @ x


def boltzmann_log_p_xp(x, params):
    """The twin: x (C, D) -> (C,)."""
    W, b = params
    return ((x @ W) * x).sum(axis=1) + x @ b


@numba.njit(**_NJIT)
def boltzmann_flip_delta(x, i, params):
    """log P(x with x_i flipped) - log P(x) = (1 - 2 x_i) (2 (W x)_i + b_i).

    For W symmetric with zero diagonal x^T W x = sum_{j != k} W_jk x_j x_k is linear in x_i
    with slope 2 (W x)_i (which does not contain x_i), so the flip changes log P by that slope
    (plus b_i) times the change 1 - 2 x_i of x_i. O(D) instead of the O(D^2) of two log P's."""
    W, b = params
    field = 0.0
    for j in range(x.shape[0]):
        field += W[i, j] * x[j]
    return (1.0 - 2.0 * x[i]) * (2.0 * field + b[i])


def boltzmann_flip_delta_xp(x, sites, params):
    """The twin: x (C, D), sites (C,) -> (C,)."""
    xp = backend.get_array_module(x)
    W, b = params
    rows = xp.arange(x.shape[0])
    field = (W[sites] * x).sum(axis=1)
    return (1.0 - 2.0 * x[rows, sites]) * (2.0 * field + b[sites])


def flip_delta_from_log_p(log_p_xp):
    """A batched flip_delta(x, sites, params) from a batched log_p(x, params) (C, D) -> (C,):
    log P(x') - log P(x) by two evaluations (any target on {0, 1}^D)."""
    def flip_delta(x, sites, params):
        xp = backend.get_array_module(x)
        rows = xp.arange(x.shape[0])
        y = x.copy()
        y[rows, sites] = 1 - y[rows, sites]
        return log_p_xp(y, params) - log_p_xp(x, params)
    return flip_delta


# ----------------------------------------------------------------------------- (a) continuous kernel

def _mh_body(log_p, params, x, eps, log_u, step_size, independence, mu, sigma, burn_in, thin, t0,
             samples, n_accepted):
    n_steps, n_chains, d = eps.shape
    for c in numba.prange(n_chains):
        state = x[c].copy()
        proposal = np.empty(d)
        log_p_x = log_p(state, params)
        for t in range(n_steps):
            log_q_ratio = 0.0                               # random walk: Q symmetric
            if independence:
                sq_x, sq_y = 0.0, 0.0
                for j in range(d):
                    proposal[j] = mu[j] + sigma[j] * eps[t, c, j]
                    z_x = (state[j] - mu[j]) / sigma[j]
                    sq_x += z_x * z_x
                    sq_y += eps[t, c, j] * eps[t, c, j]
                log_q_ratio = -0.5 * sq_x + 0.5 * sq_y      # log N(x; mu, s) - log N(x'; mu, s)
            else:
                for j in range(d):
                    proposal[j] = state[j] + step_size * eps[t, c, j]
            log_p_y = log_p(proposal, params)
            if log_u[t, c] < log_acceptance(log_p_x, log_p_y, log_q_ratio, 0.0):
                state[:] = proposal
                log_p_x = log_p_y
                n_accepted[c] += 1
            k = _record_index_nb(t0 + t, burn_in, thin)
            if k >= 0:
                samples[k, c] = state
        x[c] = state


_mh_serial, _mh_parallel = serial_and_parallel(_mh_body, **_NJIT)   # two cache entries: see kernels/twins.py


def _proposal_arrays(proposal, mu, sigma, d, who):
    if proposal not in PROPOSALS:
        raise ValueError(f"{who}: proposal must be one of {PROPOSALS}, got {proposal!r}")
    if proposal == "random_walk":
        return False, np.zeros(d), np.ones(d)
    if mu is None or sigma is None:
        raise ValueError(f'{who}: proposal="independence" needs proposal_mean and proposal_std')
    mu = np.broadcast_to(np.asarray(backend.to_numpy(mu), dtype=np.float64), (d,)).copy()
    sigma = np.broadcast_to(np.asarray(backend.to_numpy(sigma), dtype=np.float64), (d,)).copy()
    if not (sigma > 0).all():
        raise ValueError(f"{who}: proposal_std must be > 0, got {sigma}")
    return True, mu, sigma


def _check_state(x, rank, who, name="x"):
    if x.ndim != rank:
        raise ValueError(f"{who}: {name} must have {rank} dimensions (chains, dims), got shape {tuple(x.shape)}")


def mh_kernel(log_p, params, x, eps, log_u, step_size=0.5, proposal="random_walk", proposal_mean=None,
              proposal_std=None, burn_in=0, thin=1, t0=0, samples=None, n_accepted=None, parallel=False):
    """Run the chains x (C, d) (float64, updated IN PLACE) through eps.shape[0] transitions.

    log_p: a numba.njit function log_p(x_row, params) -> float (``gaussian_mixture_log_p`` or
    your own). eps (T, C, d) standard normals, log_u (T, C) log-uniforms. t0: the global index of
    the first transition (for chunked runs); samples (n_samples, C, d) receives the recorded
    states (see the module docstring); n_accepted (C,) int64 is incremented. Returns
    (samples, n_accepted)."""
    _check_state(x, 2, "mh_kernel")
    if x.dtype != np.float64 or not x.flags.c_contiguous:
        raise ValueError("mh_kernel: x must be a C-contiguous float64 array (it is updated in place)")
    n_steps, n_chains, d = eps.shape
    if x.shape != (n_chains, d) or log_u.shape != (n_steps, n_chains):
        raise ValueError(f"mh_kernel: x {x.shape}, eps {eps.shape} and log_u {log_u.shape} disagree: "
                         "expected x (C, d), eps (T, C, d), log_u (T, C)")
    independence, mu, sigma = _proposal_arrays(proposal, proposal_mean, proposal_std, d, "mh_kernel")
    if samples is None:
        samples = np.zeros((max(0, (t0 + n_steps - burn_in) // thin), n_chains, d))
    if n_accepted is None:
        n_accepted = np.zeros(n_chains, dtype=np.int64)
    run = _mh_parallel if parallel else _mh_serial
    run(log_p, params, x, np.ascontiguousarray(eps, dtype=np.float64), np.ascontiguousarray(log_u, dtype=np.float64),
        float(step_size), independence, mu, sigma, int(burn_in), int(thin), int(t0), samples, n_accepted)
    return samples, n_accepted


# ----------------------------------------------------------------------------- (b) continuous twin

def mh_xp(log_p, params, x, eps, log_u, step_size=0.5, proposal="random_walk", proposal_mean=None,
          proposal_std=None, burn_in=0, thin=1, t0=0, samples=None, n_accepted=None):
    """The vectorized twin of ``mh_kernel`` (NumPy or CuPy): every chain at once, ONE call of
    the batched log_p(x (C, d), params) -> (C,) per transition; same arguments and result.
    x is updated in place."""
    xp = backend.get_array_module(x)
    n_steps, n_chains, d = eps.shape
    independence, mu, sigma = _proposal_arrays(proposal, proposal_mean, proposal_std, d, "mh_xp")
    mu, sigma = xp.asarray(mu, dtype=x.dtype), xp.asarray(sigma, dtype=x.dtype)
    if samples is None:
        samples = xp.zeros((max(0, (t0 + n_steps - burn_in) // thin), n_chains, d), dtype=x.dtype)
    if n_accepted is None:
        n_accepted = xp.zeros(n_chains, dtype=xp.int64)
    log_p_x = log_p(x, params)
    for t in range(n_steps):
        if independence:
            y = mu + sigma * eps[t]
            log_q_ratio = -0.5 * (((x - mu) / sigma) ** 2).sum(axis=1) + 0.5 * (eps[t] ** 2).sum(axis=1)
        else:
            y = x + step_size * eps[t]
            log_q_ratio = 0.0
        log_p_y = log_p(y, params)
        accept = log_u[t] < _log_acceptance_xp(xp, log_p_y - log_p_x + log_q_ratio)
        x[...] = xp.where(accept[:, None], y, x)
        log_p_x = xp.where(accept, log_p_y, log_p_x)
        n_accepted += accept
        k = _record_index(t0 + t, burn_in, thin)
        if k >= 0:
            samples[k] = x
    return samples, n_accepted


# ----------------------------------------------------------------------------- (a) binary kernel

def _mh_binary_body(flip_delta, params, x, sites, v, log_u, q, biased, burn_in, thin, t0, samples, n_accepted):
    n_steps, n_chains = sites.shape
    for c in numba.prange(n_chains):
        state = x[c].copy()
        for t in range(n_steps):
            i = sites[t, c]
            log_q_ratio = 0.0                                # flip: Q symmetric
            move = True
            if biased:
                new = 1.0 if v[t, c] < q[i] else 0.0
                if new == state[i]:
                    move = False                             # proposal == current state
                else:                                        # log q_i(x_i) - log q_i(x'_i)
                    log_q_ratio = (math.log(q[i]) - math.log1p(-q[i])) * (state[i] - new)
            if move:
                delta = flip_delta(state, i, params)
                if log_u[t, c] < log_acceptance(0.0, delta, log_q_ratio, 0.0):
                    state[i] = 1.0 - state[i]
                    n_accepted[c] += 1
            else:
                n_accepted[c] += 1
            k = _record_index_nb(t0 + t, burn_in, thin)
            if k >= 0:
                samples[k, c] = state
        x[c] = state


_mh_binary_serial, _mh_binary_parallel = serial_and_parallel(_mh_binary_body, **_NJIT)   # two cache entries: see kernels/twins.py


def _q_array(q, n_dims, who, xp=np):
    if q is None:
        return False, xp.full(n_dims, 0.5)
    q = xp.asarray(q, dtype=xp.float64).reshape(-1)
    if q.shape != (n_dims,) or not bool(((q > 0) & (q < 1)).all()):
        raise ValueError(f"{who}: q must have shape ({n_dims},) with 0 < q_i < 1, got {q}")
    return True, q


def mh_binary_kernel(flip_delta, params, x, sites, log_u, v=None, q=None, burn_in=0, thin=1, t0=0,
                     samples=None, n_accepted=None, parallel=False):
    """Run binary chains x (C, D) (float64 0/1, updated IN PLACE) through sites.shape[0] transitions.

    flip_delta: numba.njit flip_delta(x_row, i, params) -> log P(x with x_i flipped) - log P(x)
    (``boltzmann_flip_delta`` or your own). sites (T, C) int64 uniform in 0..D-1, log_u (T, C);
    v (T, C) uniforms and q (D,) for the biased site proposal (q=None: plain flips, v unused).
    Returns (samples (n_samples, C, D), n_accepted (C,))."""
    _check_state(x, 2, "mh_binary_kernel")
    if x.dtype != np.float64 or not x.flags.c_contiguous:
        raise ValueError("mh_binary_kernel: x must be a C-contiguous float64 array (it is updated in place)")
    n_steps, n_chains = sites.shape
    n_dims = x.shape[1]
    if x.shape[0] != n_chains or log_u.shape != sites.shape:
        raise ValueError(f"mh_binary_kernel: x {x.shape}, sites {sites.shape} and log_u {log_u.shape} "
                         "disagree: expected x (C, D), sites and log_u (T, C)")
    biased, q = _q_array(q, n_dims, "mh_binary_kernel")
    if biased and (v is None or v.shape != sites.shape):
        raise ValueError("mh_binary_kernel: the biased proposal (q given) needs uniforms v of shape (T, C)")
    v = log_u if v is None else v
    if samples is None:
        samples = np.zeros((max(0, (t0 + n_steps - burn_in) // thin), n_chains, n_dims))
    if n_accepted is None:
        n_accepted = np.zeros(n_chains, dtype=np.int64)
    run = _mh_binary_parallel if parallel else _mh_binary_serial
    run(flip_delta, params, x, np.ascontiguousarray(sites, dtype=np.int64), np.ascontiguousarray(v, dtype=np.float64),
        np.ascontiguousarray(log_u, dtype=np.float64), q, biased, int(burn_in), int(thin), int(t0), samples,
        n_accepted)
    return samples, n_accepted


def mh_binary_xp(flip_delta, params, x, sites, log_u, v=None, q=None, burn_in=0, thin=1, t0=0,
                 samples=None, n_accepted=None):
    """The vectorized twin of ``mh_binary_kernel``: one batched flip_delta(x (C, D), sites (C,),
    params) -> (C,) per transition (``boltzmann_flip_delta_xp``, or ``flip_delta_from_log_p``)."""
    xp = backend.get_array_module(x)
    n_steps, n_chains = sites.shape
    n_dims = x.shape[1]
    biased, q = _q_array(q, n_dims, "mh_binary_xp", xp)
    if samples is None:
        samples = xp.zeros((max(0, (t0 + n_steps - burn_in) // thin), n_chains, n_dims), dtype=x.dtype)
    if n_accepted is None:
        n_accepted = xp.zeros(n_chains, dtype=xp.int64)
    rows = xp.arange(n_chains)
    for t in range(n_steps):
        i = sites[t]
        x_i = x[rows, i]
        delta = flip_delta(x, i, params)
        if biased:
            new = (v[t] < q[i]).astype(x.dtype)
            move = new != x_i
            log_q_ratio = (xp.log(q[i]) - xp.log1p(-q[i])) * (x_i - new)
        else:
            move = xp.ones(n_chains, dtype=bool)
            log_q_ratio = 0.0
        accept = log_u[t] < _log_acceptance_xp(xp, delta + log_q_ratio)
        flip = move & accept
        x[rows, i] = xp.where(flip, 1.0 - x_i, x_i)
        n_accepted += flip | ~move
        k = _record_index(t0 + t, burn_in, thin)
        if k >= 0:
            samples[k] = x
    return samples, n_accepted


# ----------------------------------------------------------------------------- drivers

def _as_chains(x0, who, dtype=np.float64):
    x = np.array(backend.to_numpy(x0), dtype=dtype, order="C")
    _check_state(x, 2, who, "x0")
    return x


def metropolis_hastings(log_p, params, x0, n_samples, rng, step_size=0.5, burn_in=0, thin=1,
                        proposal="random_walk", proposal_mean=None, proposal_std=None, parallel=False,
                        chunk_steps=1024):
    """MH chains in R^d with the Numba kernel: x0 (C, d) starting states (one chain per row),
    log_p a numba.njit log-density of one state (see ``mh_kernel``). Random numbers are drawn
    from ``rng`` in chunks of ``chunk_steps`` transitions (eps (T, C, d) then log_u (T, C) per
    chunk), so memory stays bounded and the same seed gives the same chains (also with
    ``parallel=True``, on any thread count). Returns MHResult (samples (n_samples, C, d))."""
    n_steps = n_steps_for(n_samples, burn_in, thin)
    x = _as_chains(x0, "metropolis_hastings")
    n_chains, d = x.shape
    samples = np.zeros((n_samples, n_chains, d))
    n_accepted = np.zeros(n_chains, dtype=np.int64)
    for t0 in range(0, n_steps, chunk_steps):
        T = min(chunk_steps, n_steps - t0)
        eps = rng.standard_normal((T, n_chains, d))
        log_u = np.log(rng.random((T, n_chains)))
        mh_kernel(log_p, params, x, eps, log_u, step_size, proposal, proposal_mean, proposal_std, burn_in, thin,
                  t0, samples, n_accepted, parallel)
    return MHResult(samples, x, n_accepted / max(n_steps, 1))


def metropolis_hastings_binary(flip_delta, params, x0, n_samples, rng, burn_in=0, thin=1, q=None,
                               parallel=False, chunk_steps=4096):
    """MH chains on {0, 1}^D with the Numba kernel (single-site proposals, see
    ``mh_binary_kernel``). Per chunk: sites (T, C) = rng.integers(0, D), then v (T, C) uniforms
    when q is given, then log_u (T, C). Returns MHResult (samples (n_samples, C, D) of 0.0/1.0)."""
    n_steps = n_steps_for(n_samples, burn_in, thin)
    x = _as_chains(x0, "metropolis_hastings_binary")
    n_chains, n_dims = x.shape
    samples = np.zeros((n_samples, n_chains, n_dims))
    n_accepted = np.zeros(n_chains, dtype=np.int64)
    for t0 in range(0, n_steps, chunk_steps):
        T = min(chunk_steps, n_steps - t0)
        sites = rng.integers(0, n_dims, (T, n_chains))
        v = rng.random((T, n_chains)) if q is not None else None
        log_u = np.log(rng.random((T, n_chains)))
        mh_binary_kernel(flip_delta, params, x, sites, log_u, v, q, burn_in, thin, t0, samples, n_accepted, parallel)
    return MHResult(samples, x, n_accepted / max(n_steps, 1))


def metropolis_hastings_batched(log_p, x0, n_samples, rng, step_size=0.5, burn_in=0, thin=1,
                                proposal="random_walk", proposal_mean=None, proposal_std=None):
    """MH chains for a batched log-density, e.g. a neural energy evaluated by the engine:
    log_p(x) maps a Tensor (C, d) of states to a Tensor (C,) (f_theta(x) = -E_theta(x)), and is
    called ONCE per transition for all chains, under no_grad. x0 (C, d) is a NumPy or CuPy
    array or a Tensor; the chains run on its device in its floating dtype. Random numbers are
    drawn from ``rng`` on the CPU (eps (T, C, d), then log_u (T, C)) and moved to the device,
    so the same seed gives the same chains as ``mh_xp`` given those numbers."""
    from tinydgm.autodiff.core import Tensor, no_grad, tensor

    n_steps = n_steps_for(n_samples, burn_in, thin)
    data = x0.data if isinstance(x0, Tensor) else x0
    device = backend.device_of(data) if backend.is_array(data) else "cpu"
    xp = backend.module_for_device(device)
    dtype = data.dtype if backend.is_array(data) and data.dtype.kind == "f" else backend.get_default_dtype()
    x = xp.array(data, dtype=dtype)
    _check_state(x, 2, "metropolis_hastings_batched", "x0")
    n_chains, d = x.shape
    eps = backend.to_device(rng.standard_normal((n_steps, n_chains, d)).astype(dtype), device)
    log_u = backend.to_device(np.log(rng.random((n_steps, n_chains))), device)

    def log_p_array(states, _params):
        with no_grad():
            out = log_p(tensor(states, device=device))
        out = out.data if isinstance(out, Tensor) else out
        if out.shape != (states.shape[0],):
            raise ValueError(f"metropolis_hastings_batched: log_p must return one value per chain, shape "
                             f"({states.shape[0]},), got {tuple(out.shape)}")
        return out

    samples, n_accepted = mh_xp(log_p_array, None, x, eps, log_u, step_size, proposal, proposal_mean,
                                proposal_std, burn_in, thin)
    return MHResult(samples, x, n_accepted / max(n_steps, 1))


# ----------------------------------------------------------------------------- exact transition matrix

def binary_mh_transition_matrix(log_p_all, n_dims, q=None):
    """The exact MH transition matrix T[x, y] = P(next = y | current = x) on all 2^D binary
    states (codes in ``tinydgm.evaluate.binary_states`` order: bit D-1-i of the code is x_i),
    for the single-site proposals of ``mh_binary_kernel`` and its acceptance rule
    ``log_acceptance``: T[x, y] = sum_i (1/D) Q_i(y | x) A(y | x) for y != x, and the diagonal
    takes the rest. log_p_all: (2^D,) unnormalised log-probabilities. Rows sum to 1."""
    log_p_all = np.asarray(backend.to_numpy(log_p_all), dtype=np.float64)
    n_states = 2 ** n_dims
    if log_p_all.shape != (n_states,):
        raise ValueError(f"binary_mh_transition_matrix: log_p_all must have shape ({n_states},), got {log_p_all.shape}")
    biased, q = _q_array(q, n_dims, "binary_mh_transition_matrix")
    T = np.zeros((n_states, n_states))
    for x in range(n_states):
        for i in range(n_dims):
            bit = 1 << (n_dims - 1 - i)
            y = x ^ bit
            x_i = 1.0 if x & bit else 0.0
            if biased:                      # propose x'_i = 1 - x_i with probability q_i(1 - x_i)
                p_move = q[i] if x_i == 0.0 else 1.0 - q[i]
                log_q_ratio = (math.log(q[i]) - math.log1p(-q[i])) * (x_i - (1.0 - x_i))
            else:
                p_move, log_q_ratio = 1.0, 0.0
            a = math.exp(log_acceptance(log_p_all[x], log_p_all[y], log_q_ratio, 0.0))
            T[x, y] += p_move * a / n_dims
        T[x, x] = 1.0 - T[x].sum()
    return T
