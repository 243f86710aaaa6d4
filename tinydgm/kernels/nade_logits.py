"""The NADE hidden layer and its gradient as fused kernels (Larochelle & Murray 2011;
intro lecture part III, "NADE scales as O(DH)"): the forward and backward of the engine op
``tinydgm.autodiff.nade_ops.nade_logits``.

For x (N, D), W (D, H) with row j = w_j, c (H,), V (D, H) with row d = V_d:

    a_d = c + sum_{j<d} x_j w_j,   h_d = sigmoid(a_d),   y_d = V_d . h_d        (forward, y (N, D))

and, for the gradient g = dL/dy (N, D), with gA_d = dL/da_d = g_d V_d * h_d (1 - h_d) and
R_j = sum_{d>j} gA_d (everything that x_j w_j feeds):

    dL/dV_d = sum_n g_d h_d,   dL/dc = sum_n sum_d gA_d,
    dL/dw_j = sum_n x_j R_j,   dL/dx_j = w_j . R_j                               (backward)

What makes the kernels fast: the history vector changes only where x_j != 0 (binary
MNIST: 13% of the pixels), and h_d with it. So each example keeps its distinct hidden
vectors, its *states*, one per run of zeros: s = 0 holds h = sigmoid(c), and every
nonzero x_j (j < D - 1) opens the next state, a <- a + x_j w_j. A batch of 100 binarized
MNIST digits has about 10,000 states instead of 78,400 (N, D) positions, so the forward
evaluates 8x fewer sigmoids and never builds the (N, D, H) tensors (157 MB each in
float32) that the cumsum form of the same equation needs. Within a run of zeros the
gradient of the shared h sums up: dL/dh_s = sum_{d in s} g_d V_d, so gA changes only at
the states too.

The kernels:

- ``_history_states``: the states of every example (parallel over examples), flat in
  ``hidden`` (S, H) with ``offsets`` (N + 1,): example n owns rows offsets[n] .. offsets[n+1]-1.
  The sigmoid is ``tinydgm.kernels.sigmoid.sigmoid`` (vectorized in float32).
- ``_logits``: y[n, d] = V_d . h_{state(n, d)}, d in blocks of ``BLOCK`` rows of V (32 x H:
  64 KB at H = 500 in float32) so that a block of V stays in the core's cache while every
  example of the thread passes over it.
- ``_backward``: the reverse recursion over d in the same blocks, per example:
  gh += g_d V_d inside a state; at the nonzero x_j that opened the state,
  R += gh * h (1 - h) and dL/dw_j += x_j R; dL/dx_j = w_j . (R + gh * h (1 - h)) at every j
  (only when asked: that is a dot product per position). dL/dV and dL/dw are summed
  over examples in one buffer per thread, added up at the end.

Cost (D = 784, H = 500, batch 100, float32): about 40M multiply-adds for y, 80M for the
gradients and 5M sigmoids; no (N, D, H) array. Threads: ``numba.get_num_threads()`` blocks
of examples (``prange``); the step that calls these kernels makes no BLAS call, so Numba's
threads do not compete with OpenBLAS's here (see kernels/adam.py for when they do).

``nade_logits_xp`` and ``nade_logits_backward_xp`` are the vectorized twins (NumPy or
CuPy): the same equations with the (N, D, H) arrays, the reference the kernels are tested
against and the CUDA path.
"""
import numba
import numpy as np
from numba import prange

from tinydgm import backend
from tinydgm.kernels.sigmoid import sigmoid

__all__ = ["history_offsets", "nade_logits_kernel", "nade_logits_backward_kernel", "nade_logits_xp",
           "nade_logits_backward_xp", "BLOCK"]

BLOCK = 32          # rows of V (and of its gradient) per cache block
_FAST = {"reassoc", "contract", "nsz", "arcp"}      # reassociation lets LLVM vectorize the dot products


def history_offsets(x):
    """offsets (N + 1,) int64: example n has 1 + (nonzeros of x[n, :D-1]) states, rows
    offsets[n] .. offsets[n + 1] - 1 of the flat state array."""
    n_states = 1 + np.count_nonzero(x[:, :-1], axis=1)
    offsets = np.zeros(len(x) + 1, dtype=np.int64)
    np.cumsum(n_states, out=offsets[1:])
    return offsets


def _history_states(x, W, c, offsets, n_threads, hidden):
    """hidden[offsets[n] + s] = sigmoid(a) of example n's state s: a_1 = c, a += x_j w_j at each x_j != 0."""
    n, n_dims = x.shape
    n_hidden = c.shape[0]
    for t in prange(n_threads):
        a = np.empty_like(c)
        for i in range(t * n // n_threads, (t + 1) * n // n_threads):
            a[:] = c                                            # a_1 = c
            s = offsets[i]
            for k in range(n_hidden):
                hidden[s, k] = sigmoid(a[k])
            for j in range(n_dims - 1):
                x_j = x[i, j]
                if x_j != 0:                                    # a_{j+1} = a_j + x_j w_j: a new state
                    s += 1
                    for k in range(n_hidden):
                        a[k] += x_j * W[j, k]
                        hidden[s, k] = sigmoid(a[k])


def _logits(x, V, offsets, hidden, n_threads, y):
    """y[n, d] = V_d . h_{state(n, d)}; each thread takes a block of examples, d in cache blocks."""
    n, n_dims = x.shape
    n_hidden = V.shape[1]
    for t in prange(n_threads):
        lo, hi = t * n // n_threads, (t + 1) * n // n_threads
        state = offsets[lo:hi].copy()                           # each example's current state row
        for d0 in range(0, n_dims, BLOCK):
            for i in range(lo, hi):
                s = state[i - lo]
                for d in range(d0, min(d0 + BLOCK, n_dims)):
                    acc = V[d, 0] * 0
                    for k in range(n_hidden):
                        acc += V[d, k] * hidden[s, k]
                    y[i, d] = acc
                    if x[i, d] != 0:
                        s += 1
                state[i - lo] = s


def _backward(x, W, V, g, offsets, hidden, n_threads, need_x, gx, gW_t, gc_t, gV_t):
    """The reverse recursion over d (see the module docstring); gW_t, gc_t, gV_t: one slice per thread."""
    n, n_dims = x.shape
    n_hidden = W.shape[1]
    for t in prange(n_threads):
        lo, hi = t * n // n_threads, (t + 1) * n // n_threads
        m = hi - lo
        gh = np.zeros((m, n_hidden), dtype=W.dtype)             # sum of g_d V_d in the current state
        R = np.zeros((m, n_hidden), dtype=W.dtype)              # sum of gA_d over the later states
        state = offsets[lo + 1:hi + 1] - 1                      # start from each example's last state
        for d1 in range(n_dims, 0, -BLOCK):
            for i in range(lo, hi):
                e = i - lo
                s = state[e]
                for d in range(d1 - 1, max(d1 - BLOCK, 0) - 1, -1):
                    x_d = x[i, d]
                    if x_d != 0 and d < n_dims - 1:             # x_d opened state s: close it
                        for k in range(n_hidden):
                            h = hidden[s, k]
                            r = R[e, k] + gh[e, k] * h * (1 - h)
                            R[e, k] = r                         # R_d = sum_{d' > d} gA_d'
                            gh[e, k] = 0
                            gW_t[t, d, k] += x_d * r            # dL/dw_d += x_d R_d
                        s -= 1
                    if need_x:                                  # dL/dx_d = w_d . R_d
                        acc = W[d, 0] * 0
                        for k in range(n_hidden):
                            h = hidden[s, k]
                            acc += W[d, k] * (R[e, k] + gh[e, k] * h * (1 - h))
                        gx[i, d] = acc
                    g_d = g[i, d]
                    for k in range(n_hidden):
                        gV_t[t, d, k] += g_d * hidden[s, k]     # dL/dV_d += g_d h_d
                        gh[e, k] += g_d * V[d, k]               # dL/dh_s += g_d V_d
                state[e] = s
        for e in range(m):                                      # the first state: a_1 = c
            s = state[e]
            for k in range(n_hidden):
                h = hidden[s, k]
                gc_t[t, k] += R[e, k] + gh[e, k] * h * (1 - h)


# Each body splits the examples into n_threads blocks (prange); a serial build runs small
# batches without waking a thread pool (a 2-thread parallel region waits for both threads,
# which on a busy machine costs milliseconds for microseconds of work).
_OPTIONS = dict(cache=True, error_model="numpy", fastmath=_FAST)
_KERNELS = {parallel: tuple(numba.njit(parallel=parallel, **_OPTIONS)(body)
                            for body in (_history_states, _logits, _backward))
            for parallel in (False, True)}
PARALLEL_ABOVE = 1 << 20        # N D H multiply-adds: below this, one thread


def _kernels(x, W):
    """(n_threads, (history_states, logits, backward)) for this problem size."""
    n_threads = max(1, min(numba.get_num_threads(), len(x)))
    if n_threads == 1 or x.size * W.shape[1] < PARALLEL_ABOVE:
        return 1, _KERNELS[False]
    return n_threads, _KERNELS[True]


def _check(x, W, c, V, who):
    n_dims, n_hidden = W.shape
    if x.ndim != 2 or x.shape[1] != n_dims:
        raise ValueError(f"{who}: x must have shape (N, D) = (N, {n_dims}) (W is (D, H) = {tuple(W.shape)}), "
                         f"got {tuple(x.shape)}")
    for name, got, want in (("c", c.shape, (n_hidden,)), ("V", V.shape, (n_dims, n_hidden))):
        if tuple(got) != want:
            raise ValueError(f"{who}: {name} must have shape {want} (W is (D, H) = {tuple(W.shape)}), got {tuple(got)}")
    if len({x.dtype, W.dtype, c.dtype, V.dtype}) != 1:
        raise TypeError(f"{who}: x, W, c and V must share one float dtype, got {x.dtype}, {W.dtype}, "
                        f"{c.dtype}, {V.dtype}")


def nade_logits_kernel(x, W, c, V):
    """y (N, D) with y[n, d] = V_d . sigmoid(c + sum_{j<d} x[n, j] w_j), and the states the
    backward needs: (y, (offsets, hidden)). NumPy arrays of one dtype (float32 or float64)."""
    _check(x, W, c, V, "nade_logits_kernel")
    x, W, c, V = (np.ascontiguousarray(a) for a in (x, W, c, V))
    offsets = history_offsets(x)
    hidden = np.empty((offsets[-1], W.shape[1]), dtype=W.dtype)
    n_threads, (history_states, logits, _) = _kernels(x, W)
    history_states(x, W, c, offsets, n_threads, hidden)
    y = np.empty(x.shape, dtype=W.dtype)
    logits(x, V, offsets, hidden, n_threads, y)
    return y, (offsets, hidden)


def nade_logits_backward_kernel(x, W, V, g, states, need_x=True):
    """(dL/dx or None, dL/dW, dL/dc, dL/dV) from g = dL/dy (N, D) and the forward's ``states``."""
    offsets, hidden = states
    x, W, V, g = (np.ascontiguousarray(a, dtype=W.dtype) for a in (x, W, V, g))
    if g.shape != x.shape:
        raise ValueError(f"nade_logits_backward_kernel: g must have the shape of y, {tuple(x.shape)}, got {tuple(g.shape)}")
    n_threads, (_, _, backward) = _kernels(x, W)
    n_dims, n_hidden = W.shape
    gx = np.zeros(x.shape if need_x else (0, 0), dtype=W.dtype)
    gW_t = np.zeros((n_threads, n_dims, n_hidden), dtype=W.dtype)
    gV_t = np.zeros((n_threads, n_dims, n_hidden), dtype=W.dtype)
    gc_t = np.zeros((n_threads, n_hidden), dtype=W.dtype)
    backward(x, W, V, g, offsets, hidden, n_threads, need_x, gx, gW_t, gc_t, gV_t)
    gW, gc, gV = (a[0] if n_threads == 1 else a.sum(axis=0) for a in (gW_t, gc_t, gV_t))
    return (gx if need_x else None), gW, gc, gV


# ----------------------------------------------------------------------------- the vectorized twins

def _sigmoid_xp(xp, z):
    """sigmoid(z) = |[z >= 0] - t / (1 + t)|, t = exp(-|z|): no overflow, any array module."""
    t = xp.exp(-xp.abs(z))
    return xp.abs((z >= 0) - t / (1 + t))


def _hidden_xp(x, W, c):
    """h (N, D, H): h[:, d] = sigmoid(c + sum_{j<d} x_j w_j), the cumsum of the history."""
    xp = backend.get_array_module(W)
    a = xp.empty((x.shape[0], x.shape[1], W.shape[1]), dtype=W.dtype)
    a[:, 0] = c
    a[:, 1:] = c + xp.cumsum(x[:, :-1, None] * W[None, :-1], axis=1)
    return _sigmoid_xp(xp, a)


def nade_logits_xp(x, W, c, V):
    """The twin of ``nade_logits_kernel`` (NumPy or CuPy): y (N, D) through the (N, D, H) arrays."""
    _check(x, W, c, V, "nade_logits_xp")
    xp = backend.get_array_module(W)
    return xp.einsum("ndh,dh->nd", _hidden_xp(x, W, c), V)


def nade_logits_backward_xp(x, W, c, V, g, need_x=True):
    """The twin of ``nade_logits_backward_kernel``: (dL/dx or None, dL/dW, dL/dc, dL/dV)."""
    _check(x, W, c, V, "nade_logits_backward_xp")
    xp = backend.get_array_module(W)
    h = _hidden_xp(x, W, c)
    gV = xp.einsum("nd,ndh->dh", g, h)
    gA = g[:, :, None] * V[None] * h * (1 - h)                    # dL/da_d
    R = gA.sum(axis=1, keepdims=True) - xp.cumsum(gA, axis=1)     # R_j = sum_{d>j} gA_d
    gW = xp.einsum("nj,njh->jh", x, R)
    gx = xp.einsum("njh,jh->nj", R, W) if need_x else None
    return gx, gW, gA.sum(axis=(0, 1)), gV
