"""Exact partition functions and log-likelihoods of small binary models by enumeration: the
oracle that AIS, contrastive divergence and the samplers are tested against (kuleshov-l12,
tomczak-dgm: p(x) = exp(-E(x)) / Z with Z a sum over all 2^D states).
"""
import math

from tinydgm import backend

__all__ = ["binary_states", "log_partition_by_enumeration", "rbm_free_energy", "rbm_log_partition",
           "rbm_log_likelihood"]


def binary_states(n_dims, start=0, stop=None, dtype=None, xp=None):
    """The binary vectors with integer codes start..stop-1 (all 2^n_dims by default), shape
    (stop - start, n_dims), most significant bit first: row k is the binary expansion of
    start + k, so code 0 is all zeros and code 2^D - 1 all ones."""
    xp = xp or backend.module_for_device("cpu")
    stop = 2 ** n_dims if stop is None else stop
    codes = xp.arange(start, stop, dtype=xp.int64)
    bits = (codes[:, None] >> xp.arange(n_dims - 1, -1, -1, dtype=xp.int64)[None, :]) & 1
    return bits.astype(dtype or backend.get_default_dtype())


def log_partition_by_enumeration(log_unnormalised, n_dims, chunk=65536, dtype="float64", xp=None):
    """log Z = log sum_x exp(g(x)) over all 2^n_dims binary vectors x, where
    ``log_unnormalised(states) -> (M,)`` array gives g (e.g. minus the energy, or minus the
    free energy of an RBM with the hidden units summed out). Chunked, with a running
    log-sum-exp so that no chunk overflows; exact up to rounding. Meant for n_dims <= ~25."""
    if n_dims < 0 or n_dims > 30:
        raise ValueError(f"log_partition_by_enumeration: n_dims must be in [0, 30] (2^n_dims states), got {n_dims}")
    xp = xp or backend.module_for_device("cpu")
    total, peak = 0.0, -math.inf
    for start in range(0, 2 ** n_dims, chunk):
        g = xp.asarray(log_unnormalised(binary_states(n_dims, start, min(start + chunk, 2 ** n_dims), dtype, xp)))
        m = float(g.max())
        if m > peak:                       # rescale what was summed so far to the new maximum
            total = total * math.exp(peak - m) if peak > -math.inf else 0.0
            peak = m
        total += float(xp.exp(g - peak).sum())
    return peak + math.log(total)


# ----------------------------------------------------------------------------- RBMs: exact, AIS, PL
#
# An RBM with W (D, H), visible bias b (D,), hidden bias c (H,) and energy
# E(v, h) = -b^T v - c^T h - v^T W h (tomczak-dgm, "Restricted Boltzmann Machines") has the
# free energy (the hidden units summed out, "RBM: Training")
#     F(v) = -b^T v - sum_j softplus(c_j + (v W)_j),      p(v) = exp(-F(v)) / Z,
# and symmetrically, summing out v, F(h) = -c^T h - sum_i softplus(b_i + (W h)_i).


def _xp_softplus(xp, x):
    """log(1 + e^x) without overflow, on arrays."""
    return xp.logaddexp(0, x)


def _is_tensor(x):
    from tinydgm.autodiff.core import Tensor
    return isinstance(x, Tensor)


def rbm_free_energy(W, b, c, v):
    """F(v) = -b^T v - sum_j softplus(c_j + (v W)_j), shape (N,); Tensors in, Tensor out
    (differentiable), arrays in, array out."""
    if _is_tensor(W):
        from tinydgm.autodiff.core import as_tensor
        from tinydgm.autodiff.elementwise import softplus
        v = as_tensor(v, like=W)
        return -(v @ b) - softplus(v @ W + c).sum(axis=1)
    xp = backend.get_array_module(W)
    return -(v @ b) - _xp_softplus(xp, v @ W + c).sum(axis=1)


def _smaller_layer(W, b, c):
    """(n_dims, g) enumerating the smaller layer: g(states) = -F over the visible states
    (D <= H, hidden units summed out) or over the hidden states (the visible summed out)."""
    D, H = W.shape
    if D <= H:
        return D, lambda v: -rbm_free_energy(W, b, c, v)
    W_t = W.T if not _is_tensor(W) else W.transpose()
    return H, lambda h: -rbm_free_energy(W_t, c, b, h)


def rbm_log_partition(W, b, c, chunk=65536):
    """Exact log Z = log sum_v exp(-F(v)) of a small RBM, enumerating the SMALLER layer (2^min(D, H)
    states; the other layer is summed out analytically). Arrays in: a float (through
    ``log_partition_by_enumeration``). Tensors in: a 0-d Tensor, differentiable (chunked
    log-sum-exp of log-sum-exps), e.g. for gradcheck of the exact log-likelihood."""
    n_dims, g = _smaller_layer(W, b, c)
    if n_dims > 30:
        raise ValueError(f"rbm_log_partition: the smaller layer has {n_dims} units (2^{n_dims} states): "
                         f"at most 30 can be enumerated (use rbm_ais)")
    if not _is_tensor(W):
        xp = backend.get_array_module(W)
        return log_partition_by_enumeration(g, n_dims, chunk=chunk, dtype=W.dtype, xp=xp)
    from tinydgm.autodiff.core import tensor
    from tinydgm.autodiff.reduce import logsumexp
    from tinydgm.autodiff.shape import stack
    xp = backend.module_for_device(W.device)
    parts = [logsumexp(g(tensor(binary_states(n_dims, start, min(start + chunk, 2 ** n_dims), W.dtype, xp),
                                device=W.device)))
             for start in range(0, 2 ** n_dims, chunk)]
    return parts[0] if len(parts) == 1 else logsumexp(stack(parts))


def rbm_log_likelihood(W, b, c, v):
    """Exact log p(v) = -F(v) - log Z per example (N,), in nats, for a small RBM (the smaller
    layer is enumerated). Tensors in: differentiable (gradcheck-able); arrays in: arrays out."""
    return -rbm_free_energy(W, b, c, v) - rbm_log_partition(W, b, c)
