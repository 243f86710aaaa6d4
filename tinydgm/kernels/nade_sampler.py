"""Ancestral sampling from NADE (Larochelle & Murray 2011; intro lecture part III, "NADE
scales as O(DH)") with the incremental history vector:

    a_1 = c,   a_{d+1} = a_d + x_d w_d                    (pre-activations, H each)
    h_d = sigmoid(a_d),   p_d = p(x_d = 1 | x_<d) = sigmoid(b_d + V_d . h_d)
    x_d = 1[u_d < p_d],   u_d ~ U(0, 1)

Parameters in ``tinydgm.models.autoregressive.nade.NADE``'s layout: W (D, H) with row d = w_d, c (H,),
V (D, H) with row d = V_d, b (D,). The uniforms u (n, D) are an INPUT, drawn outside with
the seeded generator, so every sampler below turns the same u into the same x (up to
rounding of the dot products and, in float32, of the kernel's sigmoid: p_d is compared with
u_d, and only a u_d within a few ulps of p_d could flip), whatever the thread count.

Three samplers, one answer:

- ``nade_sample_kernel``: the Numba kernel, O(DH) work per sample, keeping a and h (H,)
  per sample: h = sigmoid(a) is recomputed only after an x_d = 1 (for x_d = 0 the history
  does not change). The samples are split into one block per Numba thread (serial below
  ``PARALLEL_ABOVE`` multiply-adds), and each block walks d once: V_d is read once per block,
  the dot products V_d . h are vectorized (reassociated sums), and so are the sigmoids
  (``tinydgm.kernels.sigmoid``: a polynomial exp in float32, the exact form in float64).
- ``nade_sample_xp``: its vectorized twin, batched over the n samples with a loop over d
  of array operations (a (n, H) @ (H,) product per dimension); it serves CuPy and is the
  reference the kernel is tested against.
- ``nade_sample_naive``: the textbook loop, D forward passes of the whole model through
  the engine (``logits_fn`` recomputes all D logits of the partial sample and dimension d
  is read off): O(D^2 H) per sample, the reference for both.

``nade_sample`` dispatches: the kernel for NumPy arrays, the twin for CuPy arrays.
"""
import numba
import numpy as np
from numba import prange

from tinydgm import backend
from tinydgm.kernels.sigmoid import sigmoid
from tinydgm.kernels.twins import serial_and_parallel

__all__ = ["nade_sample", "nade_sample_kernel", "nade_sample_xp", "nade_sample_naive"]


def _nade_body(W, c, V, b, u, n_threads, x):
    """x[i] for every sample i from u[i]: each thread takes a block of samples and walks d once,
    sampling x_d for the whole block (V_d is read once per block, not once per sample)."""
    n, n_dims = u.shape
    n_hidden = c.shape[0]
    for t in prange(n_threads):
        lo, hi = t * n // n_threads, (t + 1) * n // n_threads
        a = np.empty((hi - lo, n_hidden), dtype=c.dtype)
        h = np.empty((hi - lo, n_hidden), dtype=c.dtype)
        for e in range(hi - lo):
            for k in range(n_hidden):
                a[e, k] = c[k]                                  # a_1 = c
                h[e, k] = sigmoid(a[e, k])                      # h_1 = sigmoid(a_1)
        for d in range(n_dims):
            for e in range(hi - lo):
                logit = b[d]
                for k in range(n_hidden):
                    logit += V[d, k] * h[e, k]                  # b_d + V_d . h_d
                if u[lo + e, d] < sigmoid(logit):               # x_d = 1[u_d < p_d]
                    x[lo + e, d] = 1
                    for k in range(n_hidden):
                        a[e, k] += W[d, k]                      # a_{d+1} = a_d + x_d w_d
                        h[e, k] = sigmoid(a[e, k])
                else:                                           # x_d = 0: a_{d+1} = a_d, h_{d+1} = h_d
                    x[lo + e, d] = 0


_OPTIONS = dict(cache=True, error_model="numpy", fastmath={"reassoc", "contract", "nsz", "arcp"})
_nade_serial, _nade_parallel = serial_and_parallel(_nade_body, **_OPTIONS)   # two cache entries: see kernels/twins.py
PARALLEL_ABOVE = 1 << 20        # n D H multiply-adds: below this, one thread


def _check(W, c, V, b, u, who):
    n_dims, n_hidden = W.shape
    shapes = {"W": (W.shape, (n_dims, n_hidden)), "c": (c.shape, (n_hidden,)),
              "V": (V.shape, (n_dims, n_hidden)), "b": (b.shape, (n_dims,))}
    for name, (got, want) in shapes.items():
        if tuple(got) != want:
            raise ValueError(f"{who}: {name} must have shape {want} (W is (D, H) = {W.shape}), got {tuple(got)}")
    if u.ndim != 2 or u.shape[1] != n_dims:
        raise ValueError(f"{who}: u must have shape (n, D) = (n, {n_dims}), got {tuple(u.shape)}")


def nade_sample_kernel(W, c, V, b, u):
    """The Numba kernel on NumPy arrays: samples x (n, D) in W's dtype from uniforms u (n, D).

    Parameters are cast to one dtype (W's) and made contiguous; u stays float64 (rounded to
    float32 a u close to 1 could become 1.0 and turn p = 1 into a 0)."""
    _check(W, c, V, b, u, "nade_sample_kernel")
    dtype = W.dtype
    W, c, V, b = (np.ascontiguousarray(p, dtype=dtype) for p in (W, c, V, b))
    u = np.ascontiguousarray(u, dtype=np.float64)
    x = np.empty(u.shape, dtype=dtype)
    n_threads = max(1, min(numba.get_num_threads(), len(u)))
    if n_threads == 1 or u.size * W.shape[1] < PARALLEL_ABOVE:
        _nade_serial(W, c, V, b, u, 1, x)
    else:
        _nade_parallel(W, c, V, b, u, n_threads, x)
    return x


def _sigmoid_xp(xp, z):
    """sigmoid(z) = |[z >= 0] - t / (1 + t)|, t = exp(-|z|): no overflow, any array module."""
    t = xp.exp(-xp.abs(z))
    return xp.abs((z >= 0) - t / (1 + t))


def nade_sample_xp(W, c, V, b, u):
    """The vectorized twin (NumPy or CuPy): all n samples at once, a loop over d.

    a is (n, H): a_{d+1} = a_d + x_d w_d as a rank-one update per dimension."""
    _check(W, c, V, b, u, "nade_sample_xp")
    xp = backend.get_array_module(W)
    n, n_dims = u.shape
    a = xp.repeat(c[None, :], n, axis=0)                  # a_1 = c for every sample
    x = xp.empty((n, n_dims), dtype=W.dtype)
    for d in range(n_dims):
        h = _sigmoid_xp(xp, a)                            # h_d, (n, H)
        p = _sigmoid_xp(xp, h @ V[d] + b[d])              # p_d, (n,)
        x_d = (u[:, d] < p).astype(W.dtype)
        x[:, d] = x_d
        a += x_d[:, None] * W[d]                          # adds exactly w_d or exactly 0
    return x


def nade_sample_naive(logits_fn, u, dtype=None, device="cpu"):
    """The reference: D forward passes through the engine.

    logits_fn: maps a Tensor x (n, D) to the Tensor of all D logits (n, D) (``NADE.logits``).
    For d = 1..D it recomputes the logits of the partial sample (dimensions >= d still 0;
    the autoregressive property makes logit d ignore them) and sets x_d = 1[u_d < sigmoid(logit_d)].
    Returns x (n, D) as a backend array on ``device``.
    """
    from tinydgm.autodiff.core import no_grad, tensor
    from tinydgm.autodiff.elementwise import sigmoid

    if u.ndim != 2:
        raise ValueError(f"nade_sample_naive: u must have shape (n, D), got {tuple(u.shape)}")
    n, n_dims = u.shape
    xp = backend.module_for_device(device)
    u = backend.to_device(u, device)
    x = xp.zeros((n, n_dims), dtype=dtype or backend.get_default_dtype())
    with no_grad():
        for d in range(n_dims):
            logits = logits_fn(tensor(x, device=device))          # a whole forward pass, (n, D)
            p_d = sigmoid(logits[:, d]).data
            x[:, d] = u[:, d] < p_d
    return x


def nade_sample(W, c, V, b, u):
    """Samples x (n, D) from uniforms u (n, D): the Numba kernel for NumPy parameters, the
    batched twin for CuPy ones (u is moved to the parameters' device)."""
    if backend.device_of(W) == "cpu":
        return nade_sample_kernel(W, c, V, b, backend.to_numpy(u))
    return nade_sample_xp(W, c, V, b, backend.to_device(u, "cuda"))
