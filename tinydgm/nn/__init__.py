"""Layers: Module/Parameter, dense and convolutional layers, masked layers (MADE,
PixelCNN), coupling-network conditioners, recurrent cells (LSTM, GRU), normalisation and
initialisation."""
from tinydgm.nn.module import Module, Parameter, Sequential, ModuleList  # noqa: F401
from tinydgm.nn.linear import Linear  # noqa: F401
from tinydgm.nn import init  # noqa: F401
from tinydgm.nn.activations import ReLU, LeakyReLU, ELU, Sigmoid, Tanh, Softplus, Identity  # noqa: F401
from tinydgm.nn.conv import Conv2d, ConvTranspose2d  # noqa: F401
from tinydgm.nn.embedding import Embedding  # noqa: F401
from tinydgm.nn.norm import BatchNorm, ActNorm  # noqa: F401
from tinydgm.nn.masked_linear import made_degrees, made_masks, MaskedLinear, MADEMasks  # noqa: F401
from tinydgm.nn.masked_conv import pixelcnn_mask, MaskedConv2d, GatedBlock, GatedStack  # noqa: F401
from tinydgm.nn.conditioners import MLPConditioner, CNNConditioner  # noqa: F401
from tinydgm.nn.recurrent import LSTMCell, GRUCell, LSTM, GRU  # noqa: F401
