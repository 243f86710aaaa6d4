"""Block Gibbs sampling and contrastive-divergence statistics for RBMs (tomczak-dgm,
"Restricted Boltzmann Machines", "RBM: Contrastive Divergence", "RBM with Gaussian inputs";
kuleshov-l12, "(Persistent) Contrastive Divergence").

Layout (the toolkit's (in, out) layout, as ``Linear``): W (D, H), visible bias b (D,),
hidden bias c (H,), the energy E(v, h) = -b^T v - c^T h - v^T W h. The hidden units of an
RBM are independent given v and the visible units given h, so one Gibbs *sweep* samples a
whole layer at once from the lecture's conditionals

    p(h_j = 1 | v) = sigmoid(c_j + (v W)_j)            h = 1[u_h < p(h = 1 | v)]
    p(v_i = 1 | h) = sigmoid(b_i + (W h)_i)            v = 1[u_v < p(v = 1 | h)]      (Bernoulli)
    p(v_i | h) = N(b_i + sigma_i (W h)_i, sigma_i^2)   v = mean + sigma * eps         (Gaussian)

(Gaussian visible units: E(v, h) = sum_i (v_i - b_i)^2 / (2 sigma_i^2) - c^T h - (v / sigma)^T W h,
so p(h_j = 1 | v) = sigmoid(c_j + ((v / sigma) W)_j).)

The random numbers are INPUTS: uniforms u (and standard normals eps for Gaussian visible
units), one array per layer and per step, drawn by the caller's seeded generator. The same
random numbers give the same chains from the Numba path and from its xp twin.

The gradient of the log-likelihood (tomczak-dgm, "RBM: Training") is data moments minus
model moments:

    d log p / dW = <v p(h|v)^T>_data - <v p(h|v)^T>_model
    d log p / db = <v>_data - <v>_model,        d log p / dc = <p(h|v)>_data - <p(h|v)>_model

with the hidden units summed out analytically (p(h = 1 | v) instead of a sample of h, the
usual Rao-Blackwellised form, as scikit-learn's BernoulliRBM). The model moments come from
k sweeps of Gibbs sampling started at the data (CD-k, Hinton 2002) or at the persistent
chains of the previous update (PCD-k, Tieleman 2008). ``cd_statistics`` returns the two
phases separately; ``cd_gradient`` returns their difference with one matrix product.

Where the time goes, and why the kernels look as they do (float32, 100 chains, 784 x 500,
2 cores): a sweep is two GEMMs (about 0.6 ms each with OpenBLAS) and an elementwise part
over n (D + H) numbers. A Numba loop computing the sigmoid with a scalar ``exp`` costs
0.25 ms per 78k numbers (Numba has no vector exp without SVML); NumPy's SIMD ``exp``
costs 0.03 ms. So the elementwise part is three passes: a Numba pass
``e = -(a + bias)``, NumPy's ``exp`` in place, and a fused Numba pass
``p = 1 / (1 + e); x = 1[u < p]`` (sigmoid completion + Bernoulli sampling, optionally
scaling p by a per-row weight for the statistics); 0.06 ms together. The twin does the
same float operations in the same order (``1 / (1 + exp(-(a + bias)))`` with the same
NumPy exp), so on NumPy arrays kernel and twin agree bit for bit. The GEMMs are NumPy's
(``numpy.dot`` into preallocated buffers; Numba's ``np.dot`` calls the same BLAS, so
moving them inside an njit function would not change their cost -- not measured). Block Gibbs
(``block_gibbs_kernel``) is serial around the GEMMs: ``prange`` next to BLAS calls fights
OpenBLAS's spinning threads on 2 cores (see kernels/adam.py).

Zero-skipping products (``cd_gradient_kernel``). The visible matrices of MNIST training are
mostly zeros (gray levels: 19% nonzero; the chains' binary samples: 10-20% once the visible
biases have learned the background), so [v_data; v_model] W and the weight gradient
V2^T P2 (two of the step's three products, 1.5 ms each with BLAS at 1 thread) are computed as
sums over the nonzero entries only (``_sparse_row_times``, eight rows of W per pass), when
the nonzero fraction is below ``SPARSE_BELOW``; the weight gradient's rows go straight into
W's update (``_sparse_gradient_step``: one pass over W, the gradient never written). h W^T
is such a sum too when fewer than ``SPARSE_HIDDEN_BELOW`` of h are ones (an RBM trained on
MNIST: 25-30%), over a transposed copy of W made once per call (``_transpose_serial``). The
indices of the nonzeros are gathered without a branch (a branch on 15%-dense data
mispredicts often: 25% off the products' time).
The sums run in another order than BLAS's, so kernel and twin agree to rounding: float32
chains from the same uniforms differ only where a uniform lies within rounding of p.

Threads (``SPARSE_PARALLEL``, on by default). With one Numba thread the zero-skipping
products are serial (BLAS for the dense ones). With several, and sparse data, the
step makes NO BLAS call: OpenBLAS's threads spin-wait after each call and took the cores
from Numba's (a step with one BLAS call before the parallel kernels ran 3x slower), so h W^T
is a zero-skipping sum too, over a transposed copy of W (``_transpose_parallel``, 0.07 ms),
and every product, layer and the fused gradient step split their ROWS over the threads in
``_CHUNKS`` fixed tasks: a row is computed by one thread in one order, so the chains and the
parameters do not depend on the thread count, and a layer's rows stay in the cache of the
thread that computed them. PCD-1 step (float32, 784 x 500, batch 100, MNIST, 2 threads):
3.0 ms serial + BLAS, 2.2 ms without BLAS. Each parallel region ends with a join that waits
for the slowest thread, so independent work shares a region (``_transpose_and_logits_parallel``,
``_sample_and_logits_parallel``, ``_finish_and_transpose_parallel``): five regions per PCD-1
step instead of seven.
"""
import collections

import numba
import numpy as np

from tinydgm import backend
from tinydgm.kernels import uniforms

__all__ = ["VISIBLE_TYPES", "CDStatistics", "bernoulli_layer", "bernoulli_layer_xp", "block_gibbs",
           "block_gibbs_kernel", "block_gibbs_stream", "block_gibbs_xp", "cd_statistics", "cd_gradient",
           "cd_gradient_kernel", "cd_gradient_xp", "draw_noise", "sgd_update"]

VISIBLE_TYPES = ("bernoulli", "gaussian")

# The products of ``cd_gradient_kernel`` whose left factor has fewer than this fraction of
# nonzero entries skip its zeros (``_sparse_times``) instead of calling BLAS. Measured at 1
# thread, float32, random binary patterns (MNIST's clustered pixels are faster still), BLAS
# about 1.65 ms for both: [v_data; v_model] W (200 x 784 @ 784 x 500) 0.72 ms at 15% nonzero,
# 1.25 ms at 25%, 1.64 ms at 35%; the weight gradient V2^T P2 (784 x 200 @ 200 x 500) 0.67,
# 1.05, 1.41 ms. So 30%: never much slower than BLAS, and MNIST batches (gray levels 19%
# nonzero, statically binarized 13%, the chains 13-20% once the visible biases have learned
# the background) take the zero-skipping path; the first batches of a fresh model (v_model
# half ones) stay on BLAS.
SPARSE_BELOW = 0.3
# The same for the serial h W^T (100 x 500 @ 500 x 784, BLAS 0.82 ms; zero-skipping through
# a transposed copy of W, 0.18 ms, made once per call): 0.33 ms at 15% ones, 0.47 ms at 25%,
# 0.65 ms at 35%, 0.83 ms at 45%. Hidden units of an RBM trained on MNIST: 25-30% ones.
SPARSE_HIDDEN_BELOW = 0.4
# With more than one Numba thread and sparse data, split every product of the CD step over
# the threads and make no BLAS call (module docstring, "Threads"); False: the serial kernels
# (``benchmarks/bench_rbm.py --serial`` measures both).
SPARSE_PARALLEL = True

CDStatistics = collections.namedtuple("CDStatistics", ["vh_data", "v_data", "h_data", "vh_model", "v_model",
                                                       "h_model", "v_chain", "h_chain"])
CDStatistics.__doc__ = """The two phases of the CD gradient, averaged over their examples:
vh (D, H) = <v p(h=1|v)^T>, v (D,) = <v>, h (H,) = <p(h=1|v)>, under the data (``*_data``)
and under the chains after k sweeps (``*_model``); v_chain (m, D) and h_chain (m, H) are the
chains' last visible and hidden samples (h_chain continues a persistent chain)."""


# ----------------------------------------------------------------------------- Numba kernels

@numba.njit(cache=True, error_model="numpy")
def _negate_plus_bias(a, bias):
    """a <- -(a + bias) (bias broadcast over rows), the argument of exp in sigmoid."""
    n, m = a.shape
    for r in range(n):
        for j in range(m):
            a[r, j] = -(a[r, j] + bias[j])


@numba.njit(cache=True, error_model="numpy")
def _bernoulli_row(e, u, x, s, one):
    """One row, given e = exp(-(a + bias)): p = 1 / (1 + e) (the sigmoid, in e's dtype: ``one``
    is 1 in that dtype), x = 1[u < p] (the Bernoulli draw) and e <- s * p, in one pass."""
    for j in range(e.shape[0]):
        p = one / (one + e[j])
        x[j] = one if u[j] < p else one - one
        e[j] = s * p


@numba.njit(cache=True, error_model="numpy")
def _sigmoid_row(e, s, one):
    """One row, given e = exp(-(a + bias)): e <- s / (1 + e), the probabilities alone."""
    for j in range(e.shape[0]):
        e[j] = s * (one / (one + e[j]))


@numba.njit(cache=True, error_model="numpy")
def _bernoulli_finish(e, u, x, row_scale, one):
    """``_bernoulli_row`` on every row r of e (n, m), scaled by row_scale[r]."""
    for r in range(e.shape[0]):
        _bernoulli_row(e[r], u[r], x[r], row_scale[r], one)


@numba.njit(cache=True, error_model="numpy")
def _sigmoid_finish(e, row_scale, one):
    """``_sigmoid_row`` on every row r of e, scaled by row_scale[r]."""
    for r in range(e.shape[0]):
        _sigmoid_row(e[r], row_scale[r], one)


@numba.njit(cache=True, error_model="numpy")
def _gaussian_finish(a, bias, sigma, eps, x):
    """x = bias + sigma * a + sigma * eps (a = (W h) per row): v ~ N(b + sigma W h, sigma^2)."""
    n, m = a.shape
    for r in range(n):
        for j in range(m):
            x[r, j] = bias[j] + sigma[j] * a[r, j] + sigma[j] * eps[r, j]


@numba.njit(cache=True, error_model="numpy")
def _sgd_kernel(theta, grad, velocity, lr, momentum, weight_decay):
    """velocity <- momentum velocity + lr (grad - weight_decay theta);  theta <- theta + velocity
    (gradient ASCENT on the log-likelihood), one pass over 1-D arrays (flat parameters, or one
    row of W). With momentum 0 the old velocity is not read (0 * velocity adds exactly 0 to a
    finite sum)."""
    if momentum == 0:
        for i in range(theta.shape[0]):
            step = lr * (grad[i] - weight_decay * theta[i])
            velocity[i] = step
            theta[i] += step
    else:
        for i in range(theta.shape[0]):
            velocity[i] = momentum * velocity[i] + lr * (grad[i] - weight_decay * theta[i])
            theta[i] += velocity[i]


@numba.njit(cache=True, error_model="numpy")
def _sparse_row_times(x, Y, out, nz):
    """out = x Y for one row x (K,) and Y (K, M), skipping the zeros of x:

        out = sum_{i: x_i != 0} x_i Y[i, :]

    Exact (up to the summation order) and ~1 / density times fewer multiply-adds than a dense
    product. The rows of Y are contiguous and ``out`` (one row) stays in L1; eight rows of Y
    are added per pass over ``out`` (one load and store of ``out`` per eight multiply-adds:
    1.6x faster than four rows per pass, 3x faster than one). nz: scratch (K,) for the
    nonzero column indices, gathered without a branch (every index is written, the count
    advances on nonzeros: a branch on 15%-dense data mispredicts often; 0.76 -> 0.57 ms for
    [v_data; v_model] W at 1 thread)."""
    count = 0
    for i in range(x.shape[0]):
        nz[count] = i
        count += x[i] != 0
    for j in range(out.shape[0]):
        out[j] = 0
    q = 0
    while q + 8 <= count:
        i0, i1, i2, i3, i4, i5, i6, i7 = nz[q], nz[q + 1], nz[q + 2], nz[q + 3], nz[q + 4], nz[q + 5], nz[q + 6], \
            nz[q + 7]
        x0, x1, x2, x3, x4, x5, x6, x7 = x[i0], x[i1], x[i2], x[i3], x[i4], x[i5], x[i6], x[i7]
        y0, y1, y2, y3, y4, y5, y6, y7 = Y[i0], Y[i1], Y[i2], Y[i3], Y[i4], Y[i5], Y[i6], Y[i7]
        for j in range(out.shape[0]):
            out[j] += ((x0 * y0[j] + x1 * y1[j]) + (x2 * y2[j] + x3 * y3[j])) + \
                ((x4 * y4[j] + x5 * y5[j]) + (x6 * y6[j] + x7 * y7[j]))
        q += 8
    while q < count:
        x0, y0 = x[nz[q]], Y[nz[q]]
        for j in range(out.shape[0]):
            out[j] += x0 * y0[j]
        q += 1


@numba.njit(cache=True, error_model="numpy")
def _sparse_gradient_step(XT, Y, W, velocity, lr, momentum, weight_decay):
    """The weight gradient G = X^T Y and its momentum step on W in ONE pass over W's rows:

        G_i = sum_{r: XT[i, r] != 0} XT[i, r] Y[r, :]           (``_sparse_row_times``, into a row in L1)
        velocity_i <- momentum velocity_i + lr (G_i - weight_decay W_i),   W_i <- W_i + velocity_i

    ``_sgd_kernel`` row by row, so the result equals the two separate passes
    exactly, without writing G (D x H) to memory and reading it back."""
    nz = np.empty(XT.shape[1], np.int64)
    g = np.empty(Y.shape[1], Y.dtype)
    for i in range(XT.shape[0]):
        _sparse_row_times(XT[i], Y, g, nz)
        _sgd_kernel(W[i], g, velocity[i], lr, momentum, weight_decay)


@numba.njit(cache=True, error_model="numpy")
def _sparse_times_serial(X, Y, out):
    """out = X Y row by row with ``_sparse_row_times`` (X (n, K) mostly zeros, Y (K, M))."""
    nz = np.empty(X.shape[1], np.int64)
    for r in range(X.shape[0]):
        _sparse_row_times(X[r], Y, out[r], nz)


# rows per task of the parallel kernels: each task allocates its scratch once, and a row's
# result does not depend on which thread computes it
_CHUNKS = 16


@numba.njit(cache=True, error_model="numpy", parallel=True)
def _sparse_times_parallel(X, Y, out):
    """``_sparse_times_serial`` with the rows split over Numba's threads (``_CHUNKS`` tasks):
    each row is computed by one thread in the same order, so the result does not depend on
    the thread count."""
    R = X.shape[0]
    for chunk in numba.prange(_CHUNKS):
        nz = np.empty(X.shape[1], np.int64)
        for r in range(chunk * R // _CHUNKS, (chunk + 1) * R // _CHUNKS):
            _sparse_row_times(X[r], Y, out[r], nz)


@numba.njit(cache=True, error_model="numpy")
def _minus_logits_rows(X, Y, bias, out, r0, r1, nz):
    """out[r] = -(X[r] Y + bias) for rows r0 <= r < r1 (zero-skipping), the argument of exp in
    the sigmoid; the bias is added while the row is still in L1."""
    for r in range(r0, r1):
        row = out[r]
        _sparse_row_times(X[r], Y, row, nz)
        for j in range(row.shape[0]):
            row[j] = -(row[j] + bias[j])


@numba.njit(cache=True, error_model="numpy")
def _finish_rows(e, u, x, row_scale, first_sampled, one, r0, r1):
    """Rows r0 <= r < r1, given e = exp(-(a + bias)): p = 1 / (1 + e) and e <- row_scale[r] p;
    rows r >= first_sampled also draw x[r - first_sampled] = 1[u[r - first_sampled] < p] (the
    data rows of PCD's last product need p only)."""
    for r in range(r0, r1):
        if r >= first_sampled:
            _bernoulli_row(e[r], u[r - first_sampled], x[r - first_sampled], row_scale[r], one)
        else:
            _sigmoid_row(e[r], row_scale[r], one)


@numba.njit(cache=True, error_model="numpy", parallel=True)
def _sparse_minus_logits_parallel(X, Y, bias, out):
    """out = -(X Y + bias) (``_minus_logits_rows``), rows split over the threads as
    ``_sparse_times_parallel`` (the next pass splits the rows the same way, so a row crosses
    between cores only for NumPy's exp)."""
    R = X.shape[0]
    for chunk in numba.prange(_CHUNKS):
        nz = np.empty(X.shape[1], np.int64)
        _minus_logits_rows(X, Y, bias, out, chunk * R // _CHUNKS, (chunk + 1) * R // _CHUNKS, nz)


@numba.njit(cache=True, error_model="numpy", parallel=True)
def _bernoulli_finish_parallel(e, u, x, row_scale, first_sampled, one):
    """``_finish_rows`` on every row of e, rows split over the threads."""
    R = e.shape[0]
    for chunk in numba.prange(_CHUNKS):
        _finish_rows(e, u, x, row_scale, first_sampled, one, chunk * R // _CHUNKS, (chunk + 1) * R // _CHUNKS)


# Fused parallel regions of the no-BLAS step. Every parallel region ends with a join that waits
# for the slowest thread (on a shared machine a thread descheduled for a time slice stalls the
# whole region), so work that does not depend on the region before is done in the same region:
# each task does its share of both jobs, the same share at any thread count.

@numba.njit(cache=True, error_model="numpy", parallel=True)
def _transpose_and_logits_parallel(W, WT, V, bias, out):
    """Two independent jobs in one region: WT = W^T (``_transpose_band``) and out = -(V W + bias)
    (``_minus_logits_rows``; PCD's data rows, needed only after the chains' step)."""
    n_bands, R = (W.shape[0] + 15) // 16, V.shape[0]
    for chunk in numba.prange(_CHUNKS):
        for band in range(chunk * n_bands // _CHUNKS, (chunk + 1) * n_bands // _CHUNKS):
            _transpose_band(W, WT, band)
        nz = np.empty(V.shape[1], np.int64)
        _minus_logits_rows(V, W, bias, out, chunk * R // _CHUNKS, (chunk + 1) * R // _CHUNKS, nz)


@numba.njit(cache=True, error_model="numpy", parallel=True)
def _sample_and_logits_parallel(e, u, x, W, bias, out, one):
    """Given e = exp(-(h W^T + b)) of the chains, row by row in one task: x[r] = 1[u[r] < p],
    p = 1 / (1 + e[r]) (e[r] <- p), then out[r] = -(x[r] W + bias) while x[r] is in L1: the
    visible sample and the logits of the next hidden layer in one region."""
    R = e.shape[0]
    for chunk in numba.prange(_CHUNKS):
        nz = np.empty(x.shape[1], np.int64)
        for r in range(chunk * R // _CHUNKS, (chunk + 1) * R // _CHUNKS):
            _bernoulli_row(e[r], u[r], x[r], one, one)
            _minus_logits_rows(x, W, bias, out, r, r + 1, nz)


@numba.njit(cache=True, error_model="numpy", parallel=True)
def _finish_and_transpose_parallel(e, u, x, row_scale, first_sampled, one, V, VT):
    """Two independent jobs in one region: ``_finish_rows`` on every row of e and VT = V^T
    (``_transpose_band``; [v_data; v_model] for the weight gradient)."""
    R, n_bands = e.shape[0], (V.shape[0] + 15) // 16
    for chunk in numba.prange(_CHUNKS):
        _finish_rows(e, u, x, row_scale, first_sampled, one, chunk * R // _CHUNKS, (chunk + 1) * R // _CHUNKS)
        for band in range(chunk * n_bands // _CHUNKS, (chunk + 1) * n_bands // _CHUNKS):
            _transpose_band(V, VT, band)


@numba.njit(cache=True, error_model="numpy", parallel=True)
def _sparse_gradient_step_parallel(XT, Y, W, velocity, lr, momentum, weight_decay):
    """``_sparse_gradient_step`` with the rows of W split over Numba's threads: the same
    arithmetic row by row, so the same W for any thread count."""
    D = XT.shape[0]
    for chunk in numba.prange(_CHUNKS):
        nz = np.empty(XT.shape[1], np.int64)
        g = np.empty(Y.shape[1], Y.dtype)
        for i in range(chunk * D // _CHUNKS, (chunk + 1) * D // _CHUNKS):
            _sparse_row_times(XT[i], Y, g, nz)
            _sgd_kernel(W[i], g, velocity[i], lr, momentum, weight_decay)


@numba.njit(cache=True, error_model="numpy")
def _transpose_band(X, out, band):
    """out[:, 16 band : 16 band + 16] = X[16 band : 16 band + 16, :]^T: each row of ``out``
    receives 16 consecutive numbers (one cache line), a fixed-length inner loop the compiler
    unrolls."""
    K, M = X.shape
    i0 = band * 16
    if i0 + 16 <= K:
        for j in range(M):
            row = out[j, i0:i0 + 16]
            for i in range(16):
                row[i] = X[i0 + i, j]
    else:
        for j in range(M):
            for i in range(i0, K):
                out[j, i] = X[i, j]


@numba.njit(cache=True, error_model="numpy", parallel=True)
def _transpose_parallel(X, out):
    """out = X^T (X (K, M), out (M, K)) in bands of 16 rows of X per task (``_transpose_band``;
    0.07 ms for 784 x 500 float32 at 2 threads, a copy is 0.03 ms; a loop over 16 columns per
    task writing one number per row of ``out`` took 0.28 ms)."""
    for band in numba.prange((X.shape[0] + 15) // 16):
        _transpose_band(X, out, band)


@numba.njit(cache=True, error_model="numpy")
def _transpose_serial(X, out):
    """``_transpose_parallel`` on one thread, for the serial path next to BLAS calls (0.18 ms for
    784 x 500 float32; NumPy's ``out[...] = X.T`` 0.33 ms)."""
    for band in range((X.shape[0] + 15) // 16):
        _transpose_band(X, out, band)


@numba.njit(cache=True, error_model="numpy")
def _nonzero_count(X):
    """The number of nonzero entries of a 2-D array (np.count_nonzero on float32 costs 0.07 ms
    for 200 x 784, this loop 0.01 ms)."""
    count = 0
    for r in range(X.shape[0]):
        for i in range(X.shape[1]):
            if X[r, i] != 0:
                count += 1
    return count


@numba.njit(cache=True, error_model="numpy")
def _weighted_column_sums(w, X, out):
    """out = w^T X (w (n,), X (n, M)): out[j] = sum_r w[r] X[r, j] (the bias gradients) in
    Numba rather than a BLAS matrix-vector product, which would wake OpenBLAS's threads."""
    for j in range(X.shape[1]):
        out[j] = 0
    for r in range(X.shape[0]):
        for j in range(X.shape[1]):
            out[j] += w[r] * X[r, j]


def _one(dtype):
    return np.dtype(dtype).type(1)


def _bernoulli_layer_kernel(a, bias, u, x, row_scale=None):
    """In place: a (n, m) holds the product (v W or h W^T) on entry and row_scale * p on exit;
    x receives the sample (u None: no sample, a receives row_scale * p only). Float arrays of
    one dtype, C-contiguous."""
    if row_scale is None:
        row_scale = np.ones(a.shape[0], dtype=a.dtype)
    _negate_plus_bias(a, bias)
    with np.errstate(over="ignore"):        # exp(-a) = inf gives p = 1 / inf = 0 exactly
        np.exp(a, out=a)
    if u is None:
        _sigmoid_finish(a, row_scale, _one(a.dtype))
    else:
        _bernoulli_finish(a, u, x, row_scale, _one(a.dtype))


def _is_sparse(X, below=None):
    """True when the fraction of nonzero entries of X is below ``below`` (default ``SPARSE_BELOW``)."""
    return _nonzero_count(X) < (SPARSE_BELOW if below is None else below) * X.size


def _parallel():
    return SPARSE_PARALLEL and numba.get_num_threads() > 1


def _sparse_times(X, Y, out):
    """The serial zero-skipping product (next to BLAS calls: no parallel kernel, module docstring)."""
    _sparse_times_serial(X, Y, out)


def _times(X, Y, out):
    """out = X Y (X (n, K) and Y (K, M) C-contiguous): the zero-skipping kernel when X is
    sparse (``_is_sparse``), else BLAS (``numpy.dot``)."""
    if _is_sparse(X):
        _sparse_times(X, Y, out)
    else:
        np.dot(X, Y, out=out)


def _transpose_times(X, Y, out, XT):
    """out = X^T Y (X (n, K), Y (n, M)): when X is sparse, X^T is copied into the buffer XT
    (K, n) (cheap: n K numbers, against K n M multiply-adds) so that each row of ``out`` is a
    zero-skipping sum of rows of Y, out[i, :] = sum_{r: X[r, i] != 0} X[r, i] Y[r, :]."""
    if _is_sparse(X):
        _transpose_serial(X, XT)
        _sparse_times(XT, Y, out)
    else:
        np.dot(X.T, Y, out=out)


def _exp_in_place(a):
    """a <- exp(a) with NumPy's SIMD exp (module docstring: Numba's scalar exp is 8x slower)."""
    with np.errstate(over="ignore"):        # exp(-a) = inf gives p = 1 / inf = 0 exactly
        np.exp(a, out=a)


# ----------------------------------------------------------------------------- one layer

def bernoulli_layer(product, bias, u):
    """(p, x) for a Bernoulli layer from the product (v W or h W^T) of shape (n, m):
    p = sigmoid(product + bias), x = 1[u < p]. The Numba path on NumPy arrays (``product`` is
    overwritten with p), the twin on CuPy arrays."""
    if backend.device_of(product) != "cpu":
        return bernoulli_layer_xp(product, bias, u)
    x = np.empty_like(product)
    _bernoulli_layer_kernel(product, bias, u, x)
    return product, x


def bernoulli_layer_xp(product, bias, u):
    """The twin: p = 1 / (1 + exp(-(product + bias))), x = 1[u < p] (same operations, same order)."""
    xp = backend.get_array_module(product)
    p = 1 / (1 + xp.exp(-(product + bias)))
    return p, (u < p).astype(product.dtype)


def _gaussian_layer_xp(product, bias, sigma, eps):
    return bias + sigma * product + sigma * eps


# ----------------------------------------------------------------------------- noise

def draw_noise(rng, k, n_chains, n_visible, n_hidden, visible="bernoulli", dtype="float32", start_hidden=False,
               device="cpu", out=None):
    """The random numbers of k sweeps of n_chains chains: u_h (k + start_hidden, n, H) uniforms
    and r_v (k, n, D), uniforms (Bernoulli) or standard normals (Gaussian visible units), in
    ``dtype``, drawn by the NumPy Generator ``rng`` (then moved to ``device``). start_hidden:
    one more slice of u_h to sample the chains' first h from the data (CD-k).

    Drawn sweep by sweep, in the order a chain v -> h -> v consumes them: u_h[t] then r_v[t]
    for t = 0, ..., k - 1, then u_h[k] when start_hidden; so ``block_gibbs_stream``, drawing
    each sweep's numbers just before the sweep, gives the same chains. Uniforms come from
    ``uniforms.uniform`` (float32: two per 64-bit draw). out: a (u_h, r_v) pair of C-contiguous
    host arrays of these shapes and dtype to fill (no allocation in a training loop)."""
    _check_visible(visible, "draw_noise")
    dtype = np.dtype(dtype)
    shapes = ((k + bool(start_hidden), n_chains, n_hidden), (k, n_chains, n_visible))
    if out is None:
        u_h, r_v = (np.empty(shape, dtype) for shape in shapes)
    else:
        u_h, r_v = out
        for name, a, shape in (("u_h", u_h, shapes[0]), ("r_v", r_v, shapes[1])):
            if not isinstance(a, np.ndarray) or a.shape != shape or a.dtype != dtype or not a.flags.c_contiguous:
                got = f"{type(a).__name__} {getattr(a, 'dtype', None)} {getattr(a, 'shape', None)}"
                raise ValueError(f"draw_noise: out's {name} must be a C-contiguous NumPy {dtype} array of shape "
                                 f"{shape}, got {got}")
    for t in range(k):
        _draw_sweep(rng, u_h[t], r_v[t], visible)
    if start_hidden:
        uniforms.uniform(rng, u_h[k].shape, dtype, out=u_h[k])
    if device != "cpu":
        return backend.to_device(u_h, device), backend.to_device(r_v, device)
    return u_h, r_v


def _draw_sweep(rng, u_h, r_v, visible):
    """One sweep's random numbers, in place: u_h (n, H) uniforms, then r_v (n, D)."""
    uniforms.uniform(rng, u_h.shape, u_h.dtype, out=u_h)
    if visible == "bernoulli":
        uniforms.uniform(rng, r_v.shape, r_v.dtype, out=r_v)
    else:
        rng.standard_normal(dtype=r_v.dtype, out=r_v)


def _check_visible(visible, who):
    if visible not in VISIBLE_TYPES:
        raise ValueError(f"{who}: visible must be one of {VISIBLE_TYPES}, got {visible!r}")


def _check(W, b, c, v, u_h, r_v, who, k_extra=0, sigma=None):
    D, H = W.shape
    if tuple(b.shape) != (D,) or tuple(c.shape) != (H,):
        raise ValueError(f"{who}: b must have shape (D,) = ({D},) and c (H,) = ({H},) for W of shape {W.shape}, "
                         f"got {tuple(b.shape)} and {tuple(c.shape)}")
    if sigma is not None and tuple(sigma.shape) != (D,):
        raise ValueError(f"{who}: sigma must have shape (D,) = ({D},), got {tuple(sigma.shape)}")
    if v is not None and (v.ndim != 2 or v.shape[1] != D):
        raise ValueError(f"{who}: v must have shape (n, D) = (n, {D}), got {tuple(v.shape)}")
    if r_v.ndim != 3 or r_v.shape[2] != D:
        raise ValueError(f"{who}: r_v must have shape (k, n, D) = (k, n, {D}), got {tuple(r_v.shape)}")
    k, n = r_v.shape[:2]
    if k < 1:
        raise ValueError(f"{who}: need at least one sweep (k >= 1), got r_v of shape {tuple(r_v.shape)}")
    if tuple(u_h.shape) != (k + k_extra, n, H):
        raise ValueError(f"{who}: u_h must have shape (k + {k_extra}, n, H) = ({k + k_extra}, {n}, {H}), "
                         f"got {tuple(u_h.shape)}")
    return k, n


# ----------------------------------------------------------------------------- block Gibbs

def block_gibbs_kernel(W, b, c, v0, u_h, r_v, visible="bernoulli", sigma=None):
    """k block Gibbs sweeps v_t -> h_t ~ p(h | v_t) -> v_{t+1} ~ p(v | h_t) of n chains, the
    Numba path (NumPy arrays). u_h (k, n, H), r_v (k, n, D) (uniforms, or normals for
    Gaussian visible units). Returns (v_k, h_{k-1}, p(v = 1 | h_{k-1}) or the Gaussian mean)."""
    _check_visible(visible, "block_gibbs_kernel")
    k, _ = _check(W, b, c, v0, u_h, r_v, "block_gibbs_kernel", sigma=sigma)
    return _sweeps(W, b, c, v0, k, lambda t: (u_h[t], r_v[t]), visible, sigma)


def block_gibbs_stream(W, b, c, v0, k, rng, visible="bernoulli", sigma=None):
    """``block_gibbs_kernel(W, b, c, v0, *draw_noise(rng, k, ...))`` drawing each sweep's random
    numbers just before the sweep, into two reused buffers: the same chains, without holding
    the numbers of all k sweeps at once (100 sweeps of 100 chains of a 784 x 500 RBM: 51 MB,
    whose page faults alone cost about half as much as drawing them). NumPy arrays."""
    _check_visible(visible, "block_gibbs_stream")
    D, H = W.shape
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"block_gibbs_stream: k must be a positive integer (sweeps), got {k!r}")
    if v0.ndim != 2 or v0.shape[1] != D:
        raise ValueError(f"block_gibbs_stream: v0 must have shape (n, D) = (n, {D}), got {tuple(v0.shape)}")
    u_h, r_v = np.empty((v0.shape[0], H), W.dtype), np.empty((v0.shape[0], D), W.dtype)

    def noise_at(t):
        _draw_sweep(rng, u_h, r_v, visible)
        return u_h, r_v
    return _sweeps(W, b, c, v0, k, noise_at, visible, sigma)


def _sweeps(W, b, c, v0, k, noise_at, visible, sigma):
    """The sweeps of ``block_gibbs_kernel``; noise_at(t) gives sweep t's (u_h, r_v)."""
    n, (D, H) = v0.shape[0], W.shape
    dtype = W.dtype
    W, b, c = (np.ascontiguousarray(a, dtype=dtype) for a in (W, b, c))
    gaussian = visible == "gaussian"
    if gaussian:
        sigma = np.ones(D, dtype) if sigma is None else np.ascontiguousarray(sigma, dtype=dtype)
    v = np.array(v0, dtype=dtype, order="C")
    h = np.zeros((n, H), dtype=dtype)
    a_h = np.empty((n, H), dtype=dtype)
    a_v = np.empty((n, D), dtype=dtype)
    for t in range(k):
        u_h, r_v = noise_at(t)
        np.dot(v / sigma if gaussian else v, W, out=a_h)
        _bernoulli_layer_kernel(a_h, c, u_h, h)
        np.dot(h, W.T, out=a_v)
        if gaussian:
            _gaussian_finish(a_v, b, sigma, r_v, v)
            a_v = b + sigma * a_v
        else:
            _bernoulli_layer_kernel(a_v, b, r_v, v)
    return v, h, a_v


def block_gibbs_xp(W, b, c, v0, u_h, r_v, visible="bernoulli", sigma=None):
    """The vectorized twin of ``block_gibbs_kernel`` (NumPy or CuPy), same random numbers,
    same chains."""
    _check_visible(visible, "block_gibbs_xp")
    k, n = _check(W, b, c, v0, u_h, r_v, "block_gibbs_xp", sigma=sigma)
    xp = backend.get_array_module(W)
    dtype = W.dtype
    gaussian = visible == "gaussian"
    if gaussian and sigma is None:
        sigma = xp.ones(W.shape[0], dtype)
    v = xp.asarray(v0, dtype=dtype)
    h = xp.zeros((n, W.shape[1]), dtype=dtype)
    mean_v = None
    for t in range(k):
        _, h = bernoulli_layer_xp((v / sigma if gaussian else v) @ W, c, u_h[t])
        a_v = h @ W.T
        if gaussian:
            v = _gaussian_layer_xp(a_v, b, sigma, r_v[t])
            mean_v = b + sigma * a_v
        else:
            mean_v, v = bernoulli_layer_xp(a_v, b, r_v[t])
    return v, h, mean_v


def block_gibbs(W, b, c, v0, u_h, r_v, visible="bernoulli", sigma=None):
    """k block Gibbs sweeps: the Numba path for NumPy arrays, the twin for CuPy arrays."""
    if backend.device_of(W) == "cpu":
        return block_gibbs_kernel(W, b, c, backend.to_numpy(v0), backend.to_numpy(u_h), backend.to_numpy(r_v),
                                  visible, None if sigma is None else backend.to_numpy(sigma))
    return block_gibbs_xp(W, b, c, v0, u_h, r_v, visible, sigma)


# ----------------------------------------------------------------------------- CD statistics

class _Buffers:
    """Preallocated work arrays of ``cd_gradient_kernel`` for one (n_data, n_chains, D, H, dtype):
    V2 = [v_data; v_model] (n + m, D), P2 = [p_data / n; -p_model / m] (n + m, H), so that
    dW = V2^T P2 is ONE matrix product, and the bias gradients are two matrix-vector products."""

    def __init__(self, n, m, D, H, dtype):
        self.key = (n, m, D, H, np.dtype(dtype))
        self.V2 = np.empty((n + m, D), dtype)
        self.P2 = np.empty((n + m, H), dtype)
        self.h = np.empty((m, H), dtype)
        self.h_next = np.empty((m, H), dtype)
        self.a_v = np.empty((m, D), dtype)
        self.scale_data = np.full(n, 1.0 / n, dtype)
        self.scale_model = np.full(m, -1.0 / m, dtype)
        self.ones_model = np.ones(m, dtype)
        self.signs = np.concatenate([self.scale_data, self.scale_model])
        self.ones2 = np.ones(n + m, dtype)
        self.dW = np.empty((D, H), dtype)
        self.V2T = np.empty((D, n + m), dtype)
        self.WT = np.empty((H, D), dtype)


_BUFFERS = {}


def _buffers(n, m, D, H, dtype):
    key = (n, m, D, H, np.dtype(dtype))
    if key not in _BUFFERS:
        _BUFFERS.clear()                    # one shape at a time: a training run reuses it
        _BUFFERS[key] = _Buffers(n, m, D, H, dtype)
    return _BUFFERS[key]


def cd_gradient_kernel(W, b, c, v_data, u_h, r_v, h_chain=None, visible="bernoulli", sigma=None,
                       weight_update=None):
    """The CD-k / PCD-k estimate of d log p / d(W, b, c) (data moments minus model moments,
    means over the n data rows and the m chains), the Numba path.

    h_chain None: CD-k, m = n chains start at h_0 ~ p(h | v_data) (u_h has k + 1 slices, the
    first for h_0). h_chain (m, H): PCD-k, the chains continue from these hidden states (u_h
    has k slices; the last step computes p(h | v) of the data and of the chains with one
    product [v_data; v_model] W). Returns (dW, db, dc, v_chain, h_chain): the gradient arrays (dW is a
    reused buffer: copy it to keep it) and the chains' last visible and hidden samples.

    Products: v W and dW = V2^T P2 skip the zeros of v (``_times``, ``_transpose_times``) when
    fewer than ``SPARSE_BELOW`` of its entries are nonzero, else BLAS; h W^T is BLAS. With
    ``SPARSE_PARALLEL``, several Numba threads, Bernoulli units and sparse v_data: every
    product is zero-skipping and split over the threads, h W^T over a transposed copy of W,
    no BLAS call (module docstring, "Threads").
    """
    _check_visible(visible, "cd_gradient_kernel")
    persistent = h_chain is not None
    k, m = _check(W, b, c, v_data, u_h, r_v, "cd_gradient_kernel", k_extra=0 if persistent else 1, sigma=sigma)
    n, (D, H) = v_data.shape[0], W.shape
    if not persistent and m != n:
        raise ValueError(f"cd_gradient_kernel: CD-k runs one chain per data row: r_v must have n = {n} chains, got {m}")
    dtype = W.dtype
    gaussian = visible == "gaussian"
    if gaussian:
        sigma = np.ones(D, dtype) if sigma is None else np.ascontiguousarray(sigma, dtype=dtype)
    buf = _buffers(n, m, D, H, dtype)
    parallel = _parallel()
    V2, P2 = buf.V2, buf.P2
    V2[:n] = v_data
    h = buf.h
    if persistent:
        # PCD: the positive phase waits for the chains' last step, where ONE product
        # [v_data; v_model] W gives p(h | v_data) and p(h | v_model) together
        h[...] = h_chain
        offset = 0
    else:
        # CD: p(h = 1 | v_data) / n into the first n rows of P2, and h_0 ~ p(h | v_data)
        _times(V2[:n] / sigma if gaussian else V2[:n], W, P2[:n])
        _bernoulli_layer_kernel(P2[:n], c, u_h[0], h, buf.scale_data)
        offset = 1
    v_model = V2[n:]
    a_h = P2[n:]
    # sparse data and several threads: no BLAS call at all (OpenBLAS's threads spin-wait after a
    # call and would take the cores from Numba's; a BLAS call before a parallel kernel made the
    # step 3x slower): every product is a zero-skipping sum split over the threads, h W^T through
    # a transposed copy of W, whatever the density of h (binary: the cost is proportional to it,
    # the same as BLAS's at half ones), and each layer's rows stay with the thread that computed them
    no_blas = parallel and not gaussian and _is_sparse(v_data)
    if no_blas:
        # five parallel regions for PCD-1 (fused where the work is independent, see the kernels)
        one = _one(dtype)
        n_data = n if persistent else 0      # PCD: the data rows' logits -(v_data W + c) now, p at the end
        _transpose_and_logits_parallel(W, buf.WT, V2[:n_data], c, P2[:n_data])
        for t in range(k):
            last = t == k - 1
            _sparse_minus_logits_parallel(h, buf.WT, b, buf.a_v)                 # v_{t+1} ~ p(v | h_t) ...
            _exp_in_place(buf.a_v)
            _sample_and_logits_parallel(buf.a_v, r_v[t], v_model, W, c, a_h, one)  # ... and -(v_{t+1} W + c)
            if last and persistent:          # both phases: the data rows need p only
                rows, u, scale, first = P2, u_h[t], buf.signs, n
            else:
                rows, u, scale, first = a_h, u_h[t + offset], buf.scale_model if last else buf.ones_model, 0
            _exp_in_place(rows)
            if last:                         # and [v_data; v_model]^T for the weight gradient
                _finish_and_transpose_parallel(rows, u, buf.h_next, scale, first, one, V2, buf.V2T)
            else:
                _bernoulli_finish_parallel(rows, u, buf.h_next, scale, first, one)
            h, buf.h_next = buf.h_next, h
    transposed = False
    for t in range(0 if no_blas else k):
        if _is_sparse(h, SPARSE_HIDDEN_BELOW):                           # v_{t+1} ~ p(v | h_t)
            if not transposed:                                           # W^T once per call
                _transpose_serial(W, buf.WT)
                transposed = True
            _sparse_times(h, buf.WT, buf.a_v)
        else:
            np.dot(h, W.T, out=buf.a_v)
        if gaussian:
            _gaussian_finish(buf.a_v, b, sigma, r_v[t], v_model)
        else:
            _bernoulli_layer_kernel(buf.a_v, b, r_v[t], v_model)
        last = t == k - 1
        if last and persistent:                                          # both phases in one product
            _times(V2 / sigma if gaussian else V2, W, P2)
            _bernoulli_layer_kernel(P2[:n], c, None, None, buf.scale_data)    # p only: nothing to sample
        else:
            _times(v_model / sigma if gaussian else v_model, W, a_h)       # h_{t+1} ~ p(h | v_{t+1})
        _bernoulli_layer_kernel(a_h, c, u_h[t + offset], buf.h_next, buf.scale_model if last else buf.ones_model)
        h, buf.h_next = buf.h_next, h
    buf.h = h
    if gaussian:
        V2 = V2 / sigma            # the statistics of Gaussian units are those of v / sigma
    dW = buf.dW
    if weight_update is not None and not gaussian and (no_blas or _is_sparse(V2)):
        # the gradient rows go straight into the update of W: dW is never written
        velocity, lr, momentum, weight_decay = weight_update
        one = _one(dtype)
        if not no_blas:                      # (the no-BLAS sweeps transposed it already)
            _transpose_serial(V2, buf.V2T)
        step = _sparse_gradient_step_parallel if no_blas else _sparse_gradient_step
        step(buf.V2T, P2, W, velocity, one * lr, one * momentum, one * weight_decay)
        dW = None
    elif no_blas:
        _sparse_times_parallel(buf.V2T, P2, dW)                          # <v p^T>_data - <v p^T>_model
    else:
        _transpose_times(V2, P2, dW, buf.V2T)                            # <v p^T>_data - <v p^T>_model
        if weight_update is not None:
            velocity, lr, momentum, weight_decay = weight_update
            sgd_update(W, dW, velocity, lr, momentum, weight_decay)
    db = np.empty(D, dtype)
    _weighted_column_sums(buf.signs, V2, db)                             # <v>_data - <v>_model
    if gaussian:
        db = db / sigma            # d(-E)/db_i = (v_i - b_i) / sigma_i^2: the b terms cancel
    dc = np.empty(H, dtype)
    _weighted_column_sums(buf.ones2, P2, dc)                             # <p>_data - <p>_model
    return dW, db, dc, v_model.copy(), h.copy()


def cd_gradient_xp(W, b, c, v_data, u_h, r_v, h_chain=None, visible="bernoulli", sigma=None):
    """The vectorized twin of ``cd_gradient_kernel`` (NumPy or CuPy): the same random numbers
    give the same chains and the same gradient (up to the summation order of the products)."""
    stats = cd_statistics(W, b, c, v_data, u_h, r_v, h_chain, visible, sigma)
    return (stats.vh_data - stats.vh_model, stats.v_data - stats.v_model, stats.h_data - stats.h_model,
            stats.v_chain, stats.h_chain)


def cd_gradient(W, b, c, v_data, u_h, r_v, h_chain=None, visible="bernoulli", sigma=None, weight_update=None):
    """CD-k / PCD-k gradient: the Numba path for NumPy arrays, the twin for CuPy arrays.

    weight_update = (velocity, lr, momentum, weight_decay): also apply ``sgd_update`` to W
    (in place) with the weight gradient; on the Numba path with sparse visible matrices the
    gradient is then never materialised (``_sparse_gradient_step``) and dW is returned as None."""
    if backend.device_of(W) == "cpu":
        to = backend.to_numpy
        return cd_gradient_kernel(W, b, c, to(v_data), to(u_h), to(r_v), None if h_chain is None else to(h_chain),
                                  visible, None if sigma is None else to(sigma), weight_update)
    dW, db, dc, v, h = cd_gradient_xp(W, b, c, v_data, u_h, r_v, h_chain, visible, sigma)
    if weight_update is not None:
        velocity, lr, momentum, weight_decay = weight_update
        sgd_update(W, dW, velocity, lr, momentum, weight_decay)
    return dW, db, dc, v, h


def cd_statistics(W, b, c, v_data, u_h, r_v, h_chain=None, visible="bernoulli", sigma=None):
    """The positive and negative phase statistics of CD-k (h_chain None: chains start at
    h_0 ~ p(h | v_data), u_h has k + 1 slices) or PCD-k (chains continue from h_chain, u_h has
    k slices), as a ``CDStatistics`` (means over examples / chains). Vectorized xp code
    (NumPy or CuPy); for Gaussian visible units the statistics are those of v / sigma."""
    _check_visible(visible, "cd_statistics")
    persistent = h_chain is not None
    k, m = _check(W, b, c, v_data, u_h, r_v, "cd_statistics", k_extra=0 if persistent else 1, sigma=sigma)
    n = v_data.shape[0]
    if not persistent and m != n:
        raise ValueError(f"cd_statistics: CD-k runs one chain per data row: r_v must have n = {n} chains, got {m}")
    xp = backend.get_array_module(W)
    gaussian = visible == "gaussian"
    if gaussian and sigma is None:
        sigma = xp.ones(W.shape[0], W.dtype)
    x_data = v_data / sigma if gaussian else v_data
    if persistent:
        p_data, h = 1 / (1 + xp.exp(-(x_data @ W + c))), h_chain
    else:
        p_data, h = bernoulli_layer_xp(x_data @ W, c, u_h[0])            # h_0 ~ p(h | v_data)
    offset = 0 if persistent else 1
    v = p_model = None
    for t in range(k):
        a_v = h @ W.T
        if gaussian:
            v = _gaussian_layer_xp(a_v, b, sigma, r_v[t])
        else:
            _, v = bernoulli_layer_xp(a_v, b, r_v[t])
        p_model, h = bernoulli_layer_xp((v / sigma if gaussian else v) @ W, c, u_h[t + offset])
    x_model = v / sigma if gaussian else v
    div = (lambda t: t / sigma) if gaussian else (lambda t: t)
    return CDStatistics(vh_data=x_data.T @ p_data / n, v_data=div(x_data.mean(axis=0)), h_data=p_data.mean(axis=0),
                        vh_model=x_model.T @ p_model / m, v_model=div(x_model.mean(axis=0)),
                        h_model=p_model.mean(axis=0), v_chain=v, h_chain=h)


# ----------------------------------------------------------------------------- the update

def sgd_update(theta, grad, velocity, lr, momentum=0.0, weight_decay=0.0):
    """In place, gradient ASCENT with momentum and L2 weight decay (Hinton's practical guide;
    scikit-learn's BernoulliRBM is momentum = weight_decay = 0):

        velocity <- momentum velocity + lr (grad - weight_decay theta),   theta <- theta + velocity

    One fused Numba pass on NumPy arrays, xp operations on CuPy arrays."""
    if backend.device_of(theta) == "cpu" and theta.flags.c_contiguous and velocity.flags.c_contiguous:
        one = _one(theta.dtype)
        _sgd_kernel(theta.reshape(-1), np.ascontiguousarray(grad, theta.dtype).reshape(-1), velocity.reshape(-1),
                    one * lr, one * momentum, one * weight_decay)
        return theta
    velocity *= momentum
    velocity += lr * (grad - weight_decay * theta)
    theta += velocity
    return theta
