"""Convolution layers over the engine's ``conv2d`` and ``conv_transpose2d`` (im2col).

Weights use PyTorch's layout, so state can be copied across directly:

    Conv2d           weight (C_out, C_in / groups, kH, kW)
    ConvTranspose2d  weight (C_in, C_out / groups, kH, kW)

Initialisation is PyTorch's default: W, b ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with
fan_in = weight.shape[1] * kH * kW (``init.lecun_uniform(layout="conv")``), or all zeros
with ``zero_init=True`` (the last layer of a coupling network starts as the identity).
"""
from tinydgm.autodiff.conv_ops import _int_pair, conv2d, conv_transpose2d
from tinydgm.nn import init
from tinydgm.nn.module import Module, Parameter


class _ConvBase(Module):
    """Shared construction and input checks of Conv2d and ConvTranspose2d."""

    def __init__(self, in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
                 bias, zero_init, weight_shape, rng, dtype, device):
        super().__init__()
        name = type(self).__name__
        for arg, value in (("in_channels", in_channels), ("out_channels", out_channels), ("groups", groups)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: {arg} must be a positive int, got {value!r}")
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"{name}: groups={groups} must divide in_channels={in_channels} and "
                             f"out_channels={out_channels}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = _int_pair(kernel_size, "kernel_size", name)
        self.stride = _int_pair(stride, "stride", name)
        self.padding = _int_pair(padding, "padding", name)
        self.dilation = _int_pair(dilation, "dilation", name)
        self.groups = groups
        shape = weight_shape + self.kernel_size
        weight, b = init.default_weight_and_bias(shape, "conv", out_channels, bias, zero_init, rng, dtype, device)
        self.weight = Parameter(weight)
        self.bias = None if b is None else Parameter(b)

    def _check_input(self, x):
        if x.ndim != 4:
            raise ValueError(f"{type(self).__name__}({self.extra_repr()}): input must have 4 dimensions "
                             f"(N, C, H, W), got shape {x.shape}")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"{type(self).__name__}({self.extra_repr()}): input has {x.shape[1]} channels "
                             f"(shape {x.shape}) but the layer expects {self.in_channels}")

    def extra_repr(self):
        parts = [f"{self.in_channels}, {self.out_channels}", f"kernel_size={self.kernel_size}"]
        for name, default in (("stride", (1, 1)), ("padding", (0, 0)), ("dilation", (1, 1))):
            if getattr(self, name) != default:
                parts.append(f"{name}={getattr(self, name)}")
        if self.groups != 1:
            parts.append(f"groups={self.groups}")
        if self.bias is None:
            parts.append("bias=False")
        return ", ".join(parts)


class Conv2d(_ConvBase):
    """y = conv2d(x, W) + b on (N, C_in, H, W) images (cross-correlation, as in PyTorch):

        y[n, o, h, w] = b[o] + sum_{c, i, j} W[o, c, i, j] x_pad[n, c, s h + d i, s w + d j]
        H_out = floor((H + 2 padding - dilation (kH - 1) - 1) / stride) + 1
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, zero_init=False, rng=None, dtype=None, device=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         zero_init, (out_channels, in_channels // groups), rng, dtype, device)

    def forward(self, x):
        self._check_input(x)
        return conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


class ConvTranspose2d(_ConvBase):
    """x = conv_transpose2d(y, W) + b: the adjoint of a Conv2d with the same geometry, an
    upsampling layer for decoders and generators (arguments in PyTorch's order):

        H_out = (H - 1) stride - 2 padding + dilation (kH - 1) + output_padding + 1

    output_padding (< stride) picks which of the sizes that a strided Conv2d maps to H the
    output has.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, output_padding=0,
                 groups=1, bias=True, dilation=1, zero_init=False, rng=None, dtype=None, device=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         zero_init, (in_channels, out_channels // groups), rng, dtype, device)
        self.output_padding = _int_pair(output_padding, "output_padding", "ConvTranspose2d")

    def forward(self, x):
        self._check_input(x)
        return conv_transpose2d(x, self.weight, self.bias, self.stride, self.padding, self.output_padding,
                                self.dilation, self.groups)

    def extra_repr(self):
        text = super().extra_repr()
        if getattr(self, "output_padding", (0, 0)) != (0, 0):
            text += f", output_padding={self.output_padding}"
        return text
