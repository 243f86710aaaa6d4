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

from tinydgm.models.flows.planar import PlanarFlow, RadialFlow, planar_flow, radial_flow  # noqa: E402
from tinydgm.models.flows.coupling import (AdditiveCoupling, AffineCoupling, Scaling, channel_mask,  # noqa: E402
                                           checkerboard_mask, half_mask)
from tinydgm.models.flows.image import (ActNormTransform, BatchNormTransform, InvertibleConv1x1,  # noqa: E402
                                        MultiScale, Squeeze)
from tinydgm.models.flows.realnvp import image_realnvp, toy_realnvp  # noqa: E402

__all__ += ["PlanarFlow", "RadialFlow", "planar_flow", "radial_flow", "AdditiveCoupling", "AffineCoupling",
            "Scaling", "checkerboard_mask", "channel_mask", "half_mask", "Squeeze", "MultiScale",
            "BatchNormTransform", "ActNormTransform", "InvertibleConv1x1", "toy_realnvp", "image_realnvp"]
