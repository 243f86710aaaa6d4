"""Normalizing flows (intro lecture part II; isachenko-l07): transforms with exact
log-determinants, composed into a ``Flow`` with log_prob by the change of variables."""
from tinydgm.models.flows.base import Compose, Flow, Inverse, Transform, brute_force_log_det, sum_per_example

__all__ = ["Transform", "Compose", "Inverse", "Flow", "brute_force_log_det", "sum_per_example"]

from tinydgm.models.flows.dequantization import (DequantizedFlow, LogitTransform, UniformDequantization,  # noqa: E402
                                                 VariationalDequantization, dequantized_bits_per_dim)

__all__ += ["UniformDequantization", "VariationalDequantization", "LogitTransform", "DequantizedFlow",
            "dequantized_bits_per_dim"]

from tinydgm.models.flows.autoregressive import IAFLayer, MAFLayer, Permutation, Reverse, build_maf  # noqa: E402

__all__ += ["MAFLayer", "IAFLayer", "Reverse", "Permutation", "build_maf"]
