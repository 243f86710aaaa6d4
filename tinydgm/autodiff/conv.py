"""Convolutions and pooling on NCHW tensors via im2col."""
__all__ = []
