"""The Bernoulli log-likelihood of logits and its score as one pass each over the logits: the
fast path of the engine op ``tinydgm.autodiff.bernoulli_ops.bernoulli_log_likelihood``.

For logits l viewed as R rows of D event entries, data x of Rx rows (row r of l reads row
r mod Rx of x: x (N, D) against l (k, N, D) in an IWAE) and a gradient g (R,):

    log p(x | l)_r = sum_d [x_d l_d - max(l_d, 0) - log1p(exp(-|l_d|))]        (forward)
    s_r,d = g_r (x_d - sigmoid(l_d))                                            (score)

(tomczak-dgm, the Bernoulli decoder; intro lecture eq. 28, the reconstruction term.)

Why kernels: NumPy writes the forward as nine passes over the (k, N, D) arrays and the
score as five more. Each kernel is one pass that keeps nothing between forward and
backward (the score recomputes exp(-|l|): cheaper than storing and reloading it).

Threads: the kernels run on the calling thread, whatever ``tinydgm.set_num_threads`` says.
Splitting the rows with ``prange`` (``parallel=True``) was measured here and lost: a call
of the parallel build cost the calling thread about 1.6x the serial build's time even
with the rows in one block, and at 2 threads the OpenMP runtime behind Numba's threads
(GNU libgomp) busy-waits after every parallel pass (up to 10.8 ms of process CPU time per
forward call, against 0.41 ms on one thread), next to OpenBLAS's worker in the products
that follow (kernels/adam.py found the same fight: 3x slower). A (5, 100, 784) pass takes
0.2 ms on one thread.

In float32 the transcendentals are written with plain arithmetic so that LLVM vectorizes
them (Numba has no SIMD ``exp``/``log1p`` without Intel's SVML):

- exp(-|l|): ``tinydgm.kernels.sigmoid.exp_minus_abs`` (the Cephes ``expf`` scheme);
- log1p(e) for e = exp(-|l|) in [0, 1] (``log1p_unit``): 1 + e = 2^k m with k in {0, 1}
  and m in [sqrt(1/2), sqrt(2)], so f = m - 1 is e itself (k = 0, e <= sqrt(2) - 1) or
  (e - 1) / 2 (k = 1): 1 + e is never rounded, and log1p(e) ~ e stays accurate for tiny e.
  Then log1p(e) = log(1 + f) + k ln2, log(1 + f) from the Cephes ``logf`` polynomial, ln2 in
  two parts. Within 1.3e-7 (relative, about one float32 ulp) of log1p(e) on [0, 1]. (A form
  that rounds u = 1 + e and adds back e - (u - 1) does not survive ``fastmath``: reassociation
  folds the correction to 0.)

In float64 both are the C library's (``math.exp``, ``math.log1p``): the gradient checks
see the exact functions. Those scalar calls are slow (about 14 ns per entry here against
NumPy's SIMD loops), so the op takes the kernels for float32 only (``fast_layout``). At one
thread on (5, 100, 784) float32 logits the forward kernel took 0.23 ms against 0.75 ms for
the NumPy passes, the score 0.17 ms against 0.31 ms.

``bernoulli_log_likelihood_xp`` and ``bernoulli_score_xp`` are the vectorized twins (NumPy
or CuPy): the reference of the tests, and the path for float64, for CuPy arrays and for data
that broadcasts other than by leading rows.
"""
import math

import numba
import numpy as np
from numba import types
from numba.extending import overload

from tinydgm import backend
from tinydgm.kernels.sigmoid import exp_minus_abs, map_entries, sigmoid

__all__ = ["bernoulli_log_likelihood_kernel", "bernoulli_score_kernel", "bernoulli_log_likelihood_xp",
           "bernoulli_score_xp", "kernel_layout", "fast_layout", "log1p_unit", "log1p_unit_array"]

_FAST = {"reassoc", "contract", "nsz", "arcp"}      # reassociation lets LLVM vectorize the row sums
_NJIT = dict(cache=True, error_model="numpy", fastmath=_FAST)

# Cephes logf: log(1 + f) = f - f^2 / 2 + f^3 q(f) on m = 1 + f in [sqrt(1/2), sqrt(2)]
_Q = tuple(np.float32(c) for c in (7.0376836292e-2, -1.1514610310e-1, 1.1676998740e-1, -1.2420140846e-1,
                                   1.4249322787e-1, -1.6668057665e-1, 2.0000714765e-1, -2.4999993993e-1,
                                   3.3333331174e-1))
_LN2_HI = np.float32(0.693359375)
_LN2_LO = np.float32(-2.12194440e-4)
_SQRT2_MINUS_1 = np.float32(0.41421356237)
_ONE, _HALF, _ZERO = np.float32(1.0), np.float32(0.5), np.float32(0.0)


def log1p_unit(e):
    """log(1 + e) for a float scalar e in [0, 1]; usable inside ``numba.njit`` functions only."""
    raise TypeError("tinydgm.kernels.bernoulli.log1p_unit is compiled into Numba kernels; call it from "
                    "numba.njit code (or use log1p_unit_array on an array)")


def _log1p_unit_float32(e):
    big = e > _SQRT2_MINUS_1                                  # 1 + e = 2^k m, m in [sqrt(1/2), sqrt(2)]
    f = (e - _ONE) * _HALF if big else e                      # f = m - 1, without rounding 1 + e first
    k = _ONE if big else _ZERO
    z = f * f
    q = _Q[0]
    for c in _Q[1:]:
        q = q * f + c
    log_m = f + (f * z * q + k * _LN2_LO - _HALF * z)
    return log_m + k * _LN2_HI


def _log1p_unit_exact(e):
    return math.log1p(e)


@overload(log1p_unit, jit_options={"error_model": "numpy", "fastmath": _FAST})
def _log1p_unit_overload(e):
    if e == types.float32:
        return _log1p_unit_float32
    return _log1p_unit_exact


@numba.njit(**_NJIT)
def _log1p_unit_loop(e, out):
    for i in range(e.size):
        out[i] = log1p_unit(e[i])


def log1p_unit_array(e):
    """log1p of every entry (in [0, 1]) of a float32 or float64 NumPy array, by the kernels' ``log1p_unit``."""
    return map_entries(_log1p_unit_loop, e, "log1p_unit_array")


# ----------------------------------------------------------------------------- the kernels

@numba.njit(**_NJIT)
def _forward(logits, x, zero, out):
    """out[r] = sum_d x[r mod Rx, d] l[r, d] - max(l[r, d], 0) - log1p(exp(-|l[r, d]|))."""
    n_rows, n_cols = logits.shape
    n_x_rows = x.shape[0]
    for r in range(n_rows):
        x_r = x[r % n_x_rows]
        acc = zero
        for d in range(n_cols):
            l = logits[r, d]
            acc += x_r[d] * l - max(l, zero) - log1p_unit(exp_minus_abs(l))
        out[r] = acc


@numba.njit(**_NJIT)
def _score(logits, x, g, out):
    """out[r, d] = g[r] (x[r mod Rx, d] - sigmoid(l[r, d]))."""
    n_rows, n_cols = logits.shape
    n_x_rows = x.shape[0]
    for r in range(n_rows):
        x_r = x[r % n_x_rows]
        g_r = g[r]
        for d in range(n_cols):
            out[r, d] = g_r * (x_r[d] - sigmoid(logits[r, d]))


def kernel_layout(logits, x, n_event):
    """(R, D, Rx) when the kernels apply, else None: contiguous float32/float64 NumPy logits of
    R x D entries (D = the last n_event axes), and x of l's dtype whose shape is l's trailing
    shape with at least the event axes (so row r of l reads row r mod Rx of x)."""
    if type(logits) is not np.ndarray or type(x) is not np.ndarray:
        return None
    if logits.dtype not in (np.float32, np.float64) or x.dtype != logits.dtype or not logits.flags.c_contiguous:
        return None
    if x.ndim < n_event or tuple(x.shape) != tuple(logits.shape[logits.ndim - x.ndim:]) or logits.size == 0:
        return None
    n_cols = math.prod(logits.shape[logits.ndim - n_event:])
    return logits.size // n_cols, n_cols, x.size // n_cols


def fast_layout(logits, x, n_event):
    """``kernel_layout`` for float32 logits, None otherwise: the op's choice of path. In float64 the
    C library's scalar exp and log1p make the kernels slower than NumPy's SIMD passes (about 3x
    for the forward at one thread here), and float64 is what the gradient checks run in."""
    return kernel_layout(logits, x, n_event) if logits.dtype == np.float32 else None


def bernoulli_log_likelihood_kernel(logits, x, n_event, layout=None):
    """log p(x | l) summed over the last n_event axes, shape logits.shape[:-n_event] (module
    docstring); the arrays must pass ``kernel_layout`` (its result may be passed as ``layout``)."""
    n_rows, n_cols, n_x_rows = layout or kernel_layout(logits, x, n_event)
    out = np.empty(n_rows, dtype=logits.dtype)
    _forward(logits.reshape(n_rows, n_cols), np.ascontiguousarray(x).reshape(n_x_rows, n_cols),
             logits.dtype.type(0), out)
    return out.reshape(logits.shape[:logits.ndim - n_event])


def bernoulli_score_kernel(logits, x, g, n_event, layout=None):
    """g (x - sigmoid(l)) in l's shape, for g of shape logits.shape[:-n_event] (+ n_event axes of size 1)."""
    n_rows, n_cols, n_x_rows = layout or kernel_layout(logits, x, n_event)
    g = np.ascontiguousarray(g, dtype=logits.dtype).reshape(n_rows)
    out = np.empty_like(logits)
    _score(logits.reshape(n_rows, n_cols), np.ascontiguousarray(x).reshape(n_x_rows, n_cols), g,
           out.reshape(n_rows, n_cols))
    return out


# ----------------------------------------------------------------------------- the twins

def bernoulli_log_likelihood_xp(logits, x, n_event):
    """The vectorized twin: (log p(x | l) summed over the last n_event axes, e = exp(-|l|)), for any
    x that broadcasts to l; e is what ``bernoulli_score_xp`` reuses."""
    xp = backend.get_array_module(logits)
    e = xp.abs(logits)
    xp.negative(e, out=e)
    xp.exp(e, out=e)                                      # e = exp(-|l|) in (0, 1]
    log_px = xp.multiply(x, logits, dtype=logits.dtype)   # x l, in l's (broadcast) shape
    log_px -= xp.log1p(e)
    log_px -= xp.maximum(logits, 0)
    return log_px.sum(axis=tuple(range(logits.ndim - n_event, logits.ndim))), e


def bernoulli_score_xp(logits, x, g, e=None):
    """The vectorized twin of the score: g (x - sigmoid(l)) with sigmoid(l) = |e / (1 + e) - [l >= 0]|,
    from e = exp(-|l|) (computed when not given); g broadcasts to l."""
    xp = backend.get_array_module(logits)
    if e is None:
        e = xp.exp(-xp.abs(logits))
    s = e + 1
    xp.divide(e, s, out=s)                                # sigmoid(-|l|)
    s -= logits >= 0
    xp.abs(s, out=s)                                      # sigmoid(l)
    xp.subtract(x, s, out=s)                              # x - sigmoid(l)
    s *= g
    return s
