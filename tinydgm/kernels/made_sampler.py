"""Ancestral sampling from a Bernoulli MADE (Germain et al. 2015, sec. 3; intro lecture
part III, eq. 42: p(x) = prod_d p(x_d | x_<d)), fast and naive.

Sampling is sequential: x_d can be drawn only once every x_d' before it in the ordering is
known. The naive loop makes D full forward passes (one per dimension), O(D (D H_1 + ...))
per sample. The kernel uses two facts about the masks:

1. First layer, incremental pre-activations (as NADE's history vector,
   a <- a + x_d W1[d, :]): start from a = b^1 and, when x_d is set, add x_d times row d of
   the masked first-layer weight. O(H_1) per dimension, O(D H_1) per sample.
2. Upper layers, each unit computed once: hidden unit k of layer l has degree m^l(k) and,
   through the masks, depends only on the inputs with m^0 <= m^l(k). So once the variables
   at positions 1..j are sampled, every unit of degree j is final and never changes. Before
   sampling position t the kernel finalises the units of degree t - 1, layer by layer
   (h^l_k = relu(b^l_k + h^{l-1} . W^l[:, k]); the masked weights of the not-yet-final
   units of layer l-1 are zero). Output t then needs only h^L (units of degree < t, all
   final): logit_d = b^V_d + h^L . W^V[:, d] (+ sum_d' x_d' A[d', d] with direct
   connections, kept incrementally like the first layer).

Each unit is computed exactly once, so a whole sample costs about ONE forward pass
(O(D H_1 + sum_l H_{l-1} H_l + H_L D)) instead of D of them, for any depth. (The kernel
still scans each layer's degrees at every step to find the units to finalise: O(D sum_l
H_l) comparisons per sample, negligible beside the products for H >= D.)

Randomness is an input: ``u`` (n, D) holds the uniforms in ORDERING order (u[:, t] decides
the variable at position t + 1, i.e. the d with m^0(d) = t + 1), drawn by the caller's
seeded generator; x_d = 1[u < sigmoid(logit_d)]. The kernel, the batched twin and the
naive loop consume the same u and give identical samples (up to a uniform falling within
rounding distance of p: they sum in different orders; the kernel and twin compute in
float64, so for a float64 model this has probability ~1e-16 per draw).

    sample_bernoulli_made         dispatch: the Numba kernel for NumPy arrays, else the twin
    sample_bernoulli_made_kernel  the Numba kernel (serial, one sample at a time)
    sample_bernoulli_made_xp      the twin, batched over samples (NumPy or CuPy)
    sample_bernoulli_naive        the reference: D forward passes of a logits function
    sample_gaussian_naive         Gaussian MADE: x_d = mu_d + exp(log_scale_d) eps_d, D passes

Arguments shared by the fast samplers: ``weights`` [W^1, ..., W^L, W^V], masked (mask
already multiplied in), (in, out) layout; ``biases`` [b^1, ..., b^L, b^V]; ``degrees``
[m^0, ..., m^L] (m^0 a permutation of 1..D); ``direct`` the masked input-to-output weight
A (D, D) or None; ``u`` (n, D) uniforms in ordering order. They return x (n, D) float64.
"""
import numba
import numpy as np

from tinydgm import backend

__all__ = ["sample_bernoulli_made", "sample_bernoulli_made_kernel", "sample_bernoulli_made_xp",
           "sample_bernoulli_naive", "sample_gaussian_naive", "ordering_positions", "twin_schedule",
           "finalise_hidden"]


def ordering_positions(m0):
    """order[t] = the dimension d sampled at step t (0-based): the argsort of m^0."""
    xp = backend.xp_of(m0)
    return xp.argsort(m0, kind="stable")


def _check(weights, biases, degrees, direct, u, who):
    if len(weights) < 2 or len(weights) != len(biases) or len(degrees) != len(weights):
        raise ValueError(f"{who}: need [W^1..W^L, W^V], [b^1..b^L, b^V] and [m^0..m^L] with L >= 1 "
                         f"(got {len(weights)} weights, {len(biases)} biases, {len(degrees)} degree arrays)")
    n_dims = weights[0].shape[0]
    if weights[-1].shape[1] != n_dims:
        raise ValueError(f"{who}: the output layer has {weights[-1].shape[1]} columns but D = {n_dims}: "
                         "only Bernoulli MADEs (one logit per dimension) have a fast sampler")
    if u.ndim != 2 or u.shape[1] != n_dims:
        raise ValueError(f"{who}: u must have shape (n, D) = (n, {n_dims}), got {tuple(u.shape)}")
    if direct is not None and tuple(direct.shape) != (n_dims, n_dims):
        raise ValueError(f"{who}: direct must have shape (D, D) = {(n_dims, n_dims)}, got {tuple(direct.shape)}")
    return n_dims


# ----------------------------------------------------------------------------- Numba kernel

@numba.njit(cache=True, error_model="numpy")
def _made_kernel(w1, b1, degrees, sizes, w_up, b_up, w_out_t, b_out, direct, has_direct, order, u, x):
    """Serial loop over samples; see the module docstring. Layer l >= 2 weights come
    transposed and flattened in ``w_up`` (unit k's incoming weights contiguous), hidden
    degrees and biases flattened per layer; ``sizes`` = [H_1, ..., H_L]."""
    n, n_dims = u.shape
    n_layers = sizes.shape[0]
    total = 0
    for l in range(n_layers):
        total += sizes[l]
    h = np.zeros(total)                         # all hidden activations, layer after layer
    a = np.empty(sizes[0])                      # first-layer pre-activation, incremental
    c = np.empty(n_dims)                        # direct-connection contributions, incremental
    h_last = total - sizes[n_layers - 1]
    for s in range(n):
        a[:] = b1
        c[:] = 0.0
        h[:] = 0.0
        for t in range(n_dims):
            # finalise the units of degree t (the variables at positions 1..t are known)
            for k in range(sizes[0]):
                if degrees[k] == t:
                    h[k] = max(a[k], 0.0)
            start_prev, start, w_at, b_at = 0, sizes[0], 0, 0
            for l in range(1, n_layers):
                n_prev, n_units = sizes[l - 1], sizes[l]
                for k in range(n_units):
                    if degrees[start + k] == t:
                        acc = b_up[b_at + k]
                        row = w_at + k * n_prev
                        for j in range(n_prev):
                            acc += h[start_prev + j] * w_up[row + j]
                        h[start + k] = max(acc, 0.0)
                w_at += n_units * n_prev
                b_at += n_units
                start_prev = start
                start += n_units
            # the variable at position t + 1
            d = order[t]
            logit = b_out[d] + c[d]
            for k in range(sizes[n_layers - 1]):
                logit += h[h_last + k] * w_out_t[d, k]
            p = 1.0 / (1.0 + np.exp(-logit))
            if u[s, t] < p:
                x[s, d] = 1.0
                for k in range(sizes[0]):               # a <- a + x_d W1[d, :]
                    a[k] += w1[d, k]
                if has_direct:
                    for j in range(n_dims):             # c <- c + x_d A[d, :]
                        c[j] += direct[d, j]
            else:
                x[s, d] = 0.0


def sample_bernoulli_made_kernel(weights, biases, degrees, u, direct=None):
    """The Numba kernel on NumPy arrays (computes in float64)."""
    n_dims = _check(weights, biases, degrees, direct, u, "sample_bernoulli_made_kernel")
    f64 = np.float64
    hidden = [np.ascontiguousarray(w, dtype=f64) for w in weights[:-1]]
    sizes = np.array([w.shape[1] for w in hidden], dtype=np.int64)
    # a unit of degree j is final before 0-based step t = j (positions 1..j are known)
    hidden_degrees = np.concatenate([np.asarray(m, dtype=np.int64) for m in degrees[1:]])
    w_up = np.concatenate([np.ascontiguousarray(w.T, dtype=f64).ravel() for w in hidden[1:]]) \
        if len(hidden) > 1 else np.zeros(0)
    b_up = np.concatenate([np.asarray(b, dtype=f64) for b in biases[1:-1]]) if len(hidden) > 1 else np.zeros(0)
    has_direct = direct is not None
    direct = np.ascontiguousarray(direct, dtype=f64) if has_direct else np.zeros((1, 1))
    x = np.empty((u.shape[0], n_dims))
    _made_kernel(hidden[0], np.asarray(biases[0], dtype=f64), hidden_degrees, sizes, w_up, b_up,
                 np.ascontiguousarray(np.asarray(weights[-1], dtype=f64).T), np.asarray(biases[-1], dtype=f64),
                 direct, has_direct, ordering_positions(np.asarray(degrees[0])).astype(np.int64),
                 np.ascontiguousarray(u, dtype=f64), x)
    return x


# ----------------------------------------------------------------------------- xp twin

def twin_schedule(weights, biases, degrees, n, xp):
    """The set-up shared by the batched twins (this module's and maf_sampler's): the weights
    and biases in float64 on xp's device, the sampling order, ``ready[l][t]`` = the units of
    hidden layer l to finalise before step t (CPU index lists, moved to the device), the
    incremental first-layer pre-activation a (n, H_1) at its bias, and zeroed hidden
    activations h (one (n, H_l) per layer)."""
    f64 = xp.float64
    weights = [xp.asarray(w, dtype=f64) for w in weights]
    biases = [xp.asarray(b, dtype=f64) for b in biases]
    hidden_degrees = [backend.to_numpy(m) if backend.is_array(m) else m for m in degrees[1:]]
    order = backend.to_numpy(ordering_positions(backend.to_numpy(degrees[0])))
    ready = [[xp.asarray(np.flatnonzero(m == t)) for t in range(len(order))] for m in hidden_degrees]
    a = xp.broadcast_to(biases[0], (n, weights[0].shape[1])).copy()
    h = [xp.zeros((n, w.shape[1]), dtype=f64) for w in weights[:-1]]
    return weights, biases, order, ready, a, h


def finalise_hidden(h, a, weights, biases, ready, t, xp):
    """Before step t of a batched twin: compute the hidden units whose degree is t, in every
    layer (ReLU; layer 1 from its incremental pre-activation a, deeper layers from the layer
    below), so that each unit is computed once, when all its inputs are final."""
    for l, layer_ready in enumerate(ready):
        idx = layer_ready[t]
        if idx.size == 0:
            continue
        if l == 0:
            h[0][:, idx] = xp.maximum(a[:, idx], 0.0)
        else:
            h[l][:, idx] = xp.maximum(h[l - 1] @ weights[l][:, idx] + biases[l][idx], 0.0)


def sample_bernoulli_made_xp(weights, biases, degrees, u, direct=None):
    """The twin, batched over the n samples (one vectorised step per dimension), on the
    arrays' module (NumPy or CuPy): the same finalise-once schedule as the kernel."""
    n_dims = _check(weights, biases, degrees, direct, u, "sample_bernoulli_made_xp")
    xp = backend.xp_of(u)
    f64 = xp.float64
    n = u.shape[0]
    weights, biases, order, ready, a, h = twin_schedule(weights, biases, degrees, n, xp)
    u = xp.asarray(u, dtype=f64)
    c = xp.zeros((n, n_dims), dtype=f64)
    x = xp.zeros((n, n_dims), dtype=f64)
    for t in range(n_dims):
        finalise_hidden(h, a, weights, biases, ready, t, xp)
        d = int(order[t])
        logit = h[-1] @ weights[-1][:, d] + biases[-1][d] + c[:, d]
        x_d = (u[:, t] < 1.0 / (1.0 + xp.exp(-logit))).astype(f64)
        x[:, d] = x_d
        a += x_d[:, None] * weights[0][d]
        if direct is not None:
            c += x_d[:, None] * xp.asarray(direct[d], dtype=f64)
    return x


def sample_bernoulli_made(weights, biases, degrees, u, direct=None):
    """The Numba kernel for NumPy arrays, the batched twin for CuPy arrays."""
    arrays = list(weights) + list(biases) + [u] + ([direct] if direct is not None else [])
    if all(type(a) is np.ndarray for a in arrays):
        return sample_bernoulli_made_kernel(weights, biases, degrees, u, direct)
    return sample_bernoulli_made_xp(weights, biases, degrees, u, direct)


# ----------------------------------------------------------------------------- naive references

def sample_bernoulli_naive(logits_fn, u, order):
    """The reference: for t = 0..D-1, one full forward pass ``logits_fn(x)`` (x (n, D) with
    the variables not yet sampled at 0), then x_d = 1[u[:, t] < sigmoid(logit_d)] for
    d = order[t]. D forward passes; ``logits_fn`` maps an array to an array (e.g. through
    the engine, without a graph)."""
    xp = backend.xp_of(u)
    x = xp.zeros(u.shape, dtype=xp.float64)
    for t in range(u.shape[1]):
        d = int(order[t])
        logit = xp.asarray(logits_fn(x)[:, d], dtype=xp.float64)
        x[:, d] = (u[:, t] < 1.0 / (1.0 + xp.exp(-logit))).astype(xp.float64)
    return x


def sample_gaussian_naive(params_fn, eps, order):
    """Gaussian MADE, D forward passes: ``params_fn(x)`` returns (mu, log_scale), each (n, D);
    x_d = mu_d + exp(log_scale_d) eps[:, t] for d = order[t] (eps in ordering order)."""
    xp = backend.xp_of(eps)
    x = xp.zeros(eps.shape, dtype=xp.float64)
    for t in range(eps.shape[1]):
        d = int(order[t])
        mu, log_scale = params_fn(x)
        x[:, d] = xp.asarray(mu[:, d], dtype=xp.float64) + \
            xp.exp(xp.asarray(log_scale[:, d], dtype=xp.float64)) * eps[:, t]
    return x
