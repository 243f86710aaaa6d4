"""Normalizing flows (intro lecture part II; isachenko-l07): transforms with exact
log-determinants, composed into a ``Flow`` with log_prob by the change of variables.

    base.py            Transform, Compose, Inverse, Flow, brute_force_log_det (the oracle)
    planar.py          planar and radial flows (Rezende & Mohamed 2015)
    coupling.py        NICE additive coupling and scaling, RealNVP affine coupling, masks
    image.py           squeeze, multi-scale factor-out, batch/act-norm, invertible 1x1 conv
    realnvp.py         RealNVP builders for 2-D toys and 28 x 28 images, reproduce()
    glow.py            the multi-scale Glow builder (act-norm, 1x1 convolution, affine coupling)
    maf_iaf.py         MAF and IAF layers, reversals and permutations, build_maf
    dequantization.py  uniform and variational dequantization, the logit pre-processing
"""
from tinydgm.models.flows.maf_iaf import IAFLayer, MAFLayer, Permutation, Reverse, build_maf
from tinydgm.models.flows.base import Compose, Flow, Inverse, Transform, brute_force_log_det, sum_per_example
from tinydgm.models.flows.coupling import (AdditiveCoupling, AffineCoupling, Scaling, channel_mask,
                                           checkerboard_mask, half_mask)
from tinydgm.models.flows.dequantization import (DequantizedFlow, LogitTransform, UniformDequantization,
                                                 VariationalDequantization, dequantized_bits_per_dim)
from tinydgm.models.flows.glow import image_glow
from tinydgm.models.flows.image import ActNormTransform, BatchNormTransform, InvertibleConv1x1, MultiScale, Squeeze
from tinydgm.models.flows.planar import PlanarFlow, RadialFlow, planar_flow, radial_flow
from tinydgm.models.flows.realnvp import image_realnvp, toy_realnvp

__all__ = [
    "Transform", "Compose", "Inverse", "Flow", "brute_force_log_det", "sum_per_example",
    "PlanarFlow", "RadialFlow", "planar_flow", "radial_flow",
    "AdditiveCoupling", "AffineCoupling", "Scaling", "checkerboard_mask", "channel_mask", "half_mask",
    "Squeeze", "MultiScale", "BatchNormTransform", "ActNormTransform", "InvertibleConv1x1",
    "toy_realnvp", "image_realnvp", "image_glow",
    "MAFLayer", "IAFLayer", "Reverse", "Permutation", "build_maf",
    "UniformDequantization", "VariationalDequantization", "LogitTransform", "DequantizedFlow",
    "dequantized_bits_per_dim",
]
