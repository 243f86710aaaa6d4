"""Evaluation in the units papers report: nats and bits per dimension.

    bits/dim = NLL_nats / (D ln 2)

(for 8-bit images modelled as discrete data, D = number of subpixels; for dequantized
continuous models add the dequantization and pre-processing log-dets before converting,
isachenko-l07's bits/dim table).
"""
import math

__all__ = ["bits_per_dim", "nats_from_bits_per_dim"]


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
