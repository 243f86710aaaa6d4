"""The sequential direction of an affine autoregressive flow (Papamakarios et al. 2017, MAF
eq. 2-5; Kingma et al. 2016, IAF; isachenko-l07 "Gaussian autoregressive flow (MAF)"),
fast and naive.

A Gaussian MADE gives mu_i, alpha_i from the variables v_<i (the MADE's input). Two maps
must be solved one variable at a time, because each v_i feeds the parameters of the next:

    direction="sample"     v_i = y_i exp(alpha_i(v_<i)) + mu_i(v_<i)       MAF sampling (y = u, v = x)
    direction="normalize"  v_i = (y_i - mu_i(v_<i)) exp(-alpha_i(v_<i))    IAF density  (y = x, v = u)

Both also return sum_i alpha_i (the log-dets: +sum alpha for MAF's inverse, -sum alpha for
IAF's forward). The naive loop makes D full forward passes of the MADE. The kernel uses
the same two facts as tinydgm.kernels.made_sampler (read its docstring): the first-layer
pre-activation is kept incrementally (a <- a + v_d W1[d, :] once v_d is known) and every
hidden unit of degree j is computed once, right after the variable at position j is known.
A whole solve costs about one forward pass per example instead of D. Unlike the Bernoulli
kernel, this one solves BLOCK = 64 examples at a time with arrays laid out (unit, example),
so every update is an axpy over the block (vectorised by the compiler, no reductions) and
masked-out weights are skipped: about 5x faster than one example at a time. The only differences
from the Bernoulli sampler: the input v_d is real (not 0/1), and each step reads two output
columns, mu_d (column d) and alpha_d (column D + d) of the MADE's [mu | alpha] output.

    autoregressive_affine         dispatch: the Numba kernel for NumPy arrays, else the twin
    autoregressive_affine_kernel  the Numba kernel (serial, one example at a time)
    autoregressive_affine_xp      the twin, batched over examples (NumPy or CuPy)
    autoregressive_affine_naive   the reference: D forward passes of a (mu, alpha) function

Arguments of the fast versions: ``weights`` [W^1, ..., W^L, W^V] masked (mask already
multiplied in), (in, out) layout, W^V of shape (H_L, 2D); ``biases`` [b^1, ..., b^L, b^V];
``degrees`` [m^0, ..., m^L]; ``y`` (n, D) in DIMENSION order (not ordering order: y is the
flow's other variable, indexed like v); ``direct`` the masked input-to-output weight
(D, 2D) or None. ReLU hidden units (tinydgm.models.autoregressive.made.MADE). They return
(v (n, D), alpha_sum (n,)) in float64.
"""
import numba
import numpy as np

from tinydgm import backend
from tinydgm.kernels.made_sampler import finalise_hidden, ordering_positions, twin_schedule

__all__ = ["autoregressive_affine", "autoregressive_affine_kernel", "autoregressive_affine_xp",
           "autoregressive_affine_naive", "soft_bound", "DIRECTIONS"]

DIRECTIONS = {"sample": 1, "normalize": -1}


def soft_bound(raw, bound):
    """alpha = bound tanh(raw / bound): |alpha| < bound, alpha ~ raw for |raw| << bound
    (None or 0: alpha = raw). Works on arrays and on engine Tensors alike."""
    if not bound:
        return raw
    if hasattr(raw, "requires_grad"):                  # an engine Tensor: differentiable
        return bound * (raw / bound).tanh()
    return bound * backend.xp_of(raw).tanh(raw / bound)


def _sign(direction, who):
    if direction not in DIRECTIONS:
        raise ValueError(f'{who}: direction must be "sample" or "normalize", got {direction!r}')
    return DIRECTIONS[direction]


def _check(weights, biases, degrees, direct, y, who):
    if len(weights) < 2 or len(weights) != len(biases) or len(degrees) != len(weights):
        raise ValueError(f"{who}: need [W^1..W^L, W^V], [b^1..b^L, b^V] and [m^0..m^L] with L >= 1 "
                         f"(got {len(weights)} weights, {len(biases)} biases, {len(degrees)} degree arrays)")
    n_dims = weights[0].shape[0]
    if weights[-1].shape[1] != 2 * n_dims:
        raise ValueError(f"{who}: the output layer must give [mu | alpha], 2D = {2 * n_dims} columns, got "
                         f"{weights[-1].shape[1]} (a Gaussian MADE, outputs_per_input=2)")
    if y.ndim != 2 or y.shape[1] != n_dims:
        raise ValueError(f"{who}: y must have shape (n, D) = (n, {n_dims}), got {tuple(y.shape)}")
    if direct is not None and tuple(direct.shape) != (n_dims, 2 * n_dims):
        raise ValueError(f"{who}: direct must have shape (D, 2D) = {(n_dims, 2 * n_dims)}, got {tuple(direct.shape)}")
    return n_dims


# ----------------------------------------------------------------------------- Numba kernel

BLOCK = 64          # examples solved together: the inner loops run over them (SIMD, no reductions)


@numba.njit(cache=True, error_model="numpy")
def _affine_kernel(w1, b1, degrees, sizes, w_up, b_up, w_out, b_out, direct, has_direct, order, y, sign,
                   v, alpha_sum, bound):
    """Serial loop over blocks of examples; inside a block the schedule of made_sampler's
    kernel (finalise the units of degree t before step t) with every array laid out
    (unit, example), so each update is an axpy over the block's examples. Masked-out
    weights (exact zeros) are skipped. sign = +1 solves v = y exp(alpha) + mu, sign = -1
    solves v = (y - mu) exp(-alpha). ``w_up`` holds layers 2..L, (in, out) each, flattened.
    bound > 0: alpha = bound tanh(raw / bound) (see ``soft_bound``); bound <= 0: alpha = raw."""
    n, n_dims = y.shape
    n_layers = sizes.shape[0]
    total = 0
    for l in range(n_layers):
        total += sizes[l]
    h = np.zeros((total, BLOCK))                # all hidden activations, layer after layer
    a = np.empty((sizes[0], BLOCK))             # first-layer pre-activation, incremental
    c = np.empty((2 * n_dims, BLOCK))           # direct-connection contributions, incremental
    acc = np.empty(BLOCK)
    mu = np.empty(BLOCK)
    alpha = np.empty(BLOCK)
    value = np.empty(BLOCK)
    h_last = total - sizes[n_layers - 1]
    for s0 in range(0, n, BLOCK):
        m = min(BLOCK, n - s0)
        for k in range(sizes[0]):
            a[k, :m] = b1[k]
        c[:, :m] = 0.0
        h[:, :m] = 0.0
        alpha_sum[s0:s0 + m] = 0.0
        for t in range(n_dims):
            # finalise the units of degree t (the variables at positions 1..t are known)
            for k in range(sizes[0]):
                if degrees[k] == t:
                    for i in range(m):
                        h[k, i] = max(a[k, i], 0.0)
            start_prev, start, w_at = 0, sizes[0], 0
            for l in range(1, n_layers):
                n_prev, n_units = sizes[l - 1], sizes[l]
                for k in range(n_units):
                    if degrees[start + k] == t:
                        acc[:m] = b_up[start - sizes[0] + k]
                        for j in range(n_prev):
                            w = w_up[w_at + j * n_units + k]
                            if w != 0.0:
                                for i in range(m):
                                    acc[i] += w * h[start_prev + j, i]
                        for i in range(m):
                            h[start + k, i] = max(acc[i], 0.0)
                w_at += n_prev * n_units
                start_prev = start
                start += n_units
            # the variable at position t + 1: mu_d, alpha_d from the final units
            d = order[t]
            for i in range(m):
                mu[i] = b_out[d] + c[d, i]
                alpha[i] = b_out[n_dims + d] + c[n_dims + d, i]
            for k in range(sizes[n_layers - 1]):
                w_mu, w_alpha = w_out[k, d], w_out[k, n_dims + d]
                if w_mu != 0.0 or w_alpha != 0.0:
                    for i in range(m):
                        mu[i] += w_mu * h[h_last + k, i]
                        alpha[i] += w_alpha * h[h_last + k, i]
            for i in range(m):
                if bound > 0.0:
                    alpha[i] = bound * np.tanh(alpha[i] / bound)
                if sign > 0:
                    value[i] = y[s0 + i, d] * np.exp(alpha[i]) + mu[i]
                else:
                    value[i] = (y[s0 + i, d] - mu[i]) * np.exp(-alpha[i])
                v[s0 + i, d] = value[i]
                alpha_sum[s0 + i] += alpha[i]
            for k in range(sizes[0]):                   # a <- a + v_d W1[d, :]
                w = w1[d, k]
                if w != 0.0:
                    for i in range(m):
                        a[k, i] += value[i] * w
            if has_direct:
                for j in range(2 * n_dims):             # c <- c + v_d A[d, :]
                    w = direct[d, j]
                    if w != 0.0:
                        for i in range(m):
                            c[j, i] += value[i] * w


def autoregressive_affine_kernel(weights, biases, degrees, y, direction, direct=None, alpha_bound=None):
    """The Numba kernel on NumPy arrays (computes in float64)."""
    who = "autoregressive_affine_kernel"
    sign = _sign(direction, who)
    n_dims = _check(weights, biases, degrees, direct, y, who)
    f64 = np.float64
    hidden = [np.ascontiguousarray(w, dtype=f64) for w in weights[:-1]]
    sizes = np.array([w.shape[1] for w in hidden], dtype=np.int64)
    hidden_degrees = np.concatenate([np.asarray(m, dtype=np.int64) for m in degrees[1:]])
    w_up = np.concatenate([w.ravel() for w in hidden[1:]]) if len(hidden) > 1 else np.zeros(0)
    b_up = np.concatenate([np.asarray(b, dtype=f64) for b in biases[1:-1]]) if len(hidden) > 1 else np.zeros(0)
    has_direct = direct is not None
    direct = np.ascontiguousarray(direct, dtype=f64) if has_direct else np.zeros((1, 1))
    v = np.empty((y.shape[0], n_dims))
    alpha_sum = np.empty(y.shape[0])
    _affine_kernel(hidden[0], np.asarray(biases[0], dtype=f64), hidden_degrees, sizes, w_up, b_up,
                   np.ascontiguousarray(weights[-1], dtype=f64), np.asarray(biases[-1], dtype=f64),
                   direct, has_direct, ordering_positions(np.asarray(degrees[0])).astype(np.int64),
                   np.ascontiguousarray(y, dtype=f64), sign, v, alpha_sum,
                   float(alpha_bound) if alpha_bound else 0.0)
    return v, alpha_sum


# ----------------------------------------------------------------------------- xp twin

def autoregressive_affine_xp(weights, biases, degrees, y, direction, direct=None, alpha_bound=None):
    """The twin, batched over the n examples (one vectorised step per dimension), on the
    arrays' module (NumPy or CuPy): the same finalise-once schedule as the kernel."""
    who = "autoregressive_affine_xp"
    sign = _sign(direction, who)
    n_dims = _check(weights, biases, degrees, direct, y, who)
    xp = backend.xp_of(y)
    f64 = xp.float64
    n = y.shape[0]
    weights, biases, order, ready, a, h = twin_schedule(weights, biases, degrees, n, xp)
    y = xp.asarray(y, dtype=f64)
    c = xp.zeros((n, 2 * n_dims), dtype=f64)
    v = xp.zeros((n, n_dims), dtype=f64)
    alpha_sum = xp.zeros(n, dtype=f64)
    for t in range(n_dims):
        finalise_hidden(h, a, weights, biases, ready, t, xp)
        d = int(order[t])
        mu = h[-1] @ weights[-1][:, d] + biases[-1][d] + c[:, d]
        alpha = soft_bound(h[-1] @ weights[-1][:, n_dims + d] + biases[-1][n_dims + d] + c[:, n_dims + d],
                           alpha_bound)
        v_d = y[:, d] * xp.exp(alpha) + mu if sign > 0 else (y[:, d] - mu) * xp.exp(-alpha)
        v[:, d] = v_d
        alpha_sum += alpha
        a += v_d[:, None] * weights[0][d]
        if direct is not None:
            c += v_d[:, None] * xp.asarray(direct[d], dtype=f64)
    return v, alpha_sum


def autoregressive_affine(weights, biases, degrees, y, direction, direct=None, alpha_bound=None):
    """The Numba kernel for NumPy arrays, the batched twin for CuPy arrays."""
    arrays = list(weights) + list(biases) + [y] + ([direct] if direct is not None else [])
    if all(type(a) is np.ndarray for a in arrays):
        return autoregressive_affine_kernel(weights, biases, degrees, y, direction, direct, alpha_bound)
    return autoregressive_affine_xp(weights, biases, degrees, y, direction, direct, alpha_bound)


# ----------------------------------------------------------------------------- naive reference

def autoregressive_affine_naive(params_fn, y, order, direction):
    """The reference: for t = 0..D-1, one full forward pass ``params_fn(v)`` -> (mu, alpha),
    each (n, D) arrays (v holds the variables solved so far, the others at 0), then v_d for
    d = order[t]. D forward passes; the alpha of the last pass is the final one (alpha_d
    depends on v_<d only, all known by then). With direction="sample" this is
    made_sampler.sample_gaussian_naive with eps = y[:, order]."""
    sign = _sign(direction, "autoregressive_affine_naive")
    xp = backend.xp_of(y)
    v = xp.zeros(y.shape, dtype=xp.float64)
    alpha = xp.zeros(y.shape, dtype=xp.float64)
    for t in range(y.shape[1]):
        d = int(order[t])
        mu, alpha = (xp.asarray(p, dtype=xp.float64) for p in params_fn(v))
        if sign > 0:
            v[:, d] = y[:, d] * xp.exp(alpha[:, d]) + mu[:, d]
        else:
            v[:, d] = (y[:, d] - mu[:, d]) * xp.exp(-alpha[:, d])
    return v, alpha.sum(axis=1)
