"""Evaluation in the units papers report: nats and bits per dimension.

    bits/dim = NLL_nats / (D ln 2)

(for 8-bit images modelled as discrete data, D = number of subpixels; for dequantized
continuous models add the dequantization and pre-processing log-dets before converting,
isachenko-l07's bits/dim table).

Energy-based models add exact partition functions of small binary models by enumeration
(the oracle for AIS, CD and samplers: DESIGN.md "Testing strategy").
"""
import math

from tinydgm import backend

__all__ = ["bits_per_dim", "nats_from_bits_per_dim", "binary_states", "log_partition_by_enumeration"]


def bits_per_dim(nll_nats, n_dims):
    """Convert a negative log-likelihood in nats (per example, any array/Tensor/float) to
    bits per dimension."""
    if n_dims < 1:
        raise ValueError(f"bits_per_dim: n_dims must be >= 1, got {n_dims}")
    return nll_nats / (n_dims * math.log(2.0))


def nats_from_bits_per_dim(bpd, n_dims):
    """The inverse: bits per dimension back to nats per example."""
    if n_dims < 1:
        raise ValueError(f"nats_from_bits_per_dim: n_dims must be >= 1, got {n_dims}")
    return bpd * n_dims * math.log(2.0)


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
