"""Layers: Module/Parameter, dense and convolutional layers, masked layers (MADE,
PixelCNN), coupling-network conditioners, normalisation and initialisation."""
from tinydgm.nn.module import Module, Parameter, Sequential, ModuleList  # noqa: F401
from tinydgm.nn.linear import Linear  # noqa: F401
from tinydgm.nn import init  # noqa: F401
