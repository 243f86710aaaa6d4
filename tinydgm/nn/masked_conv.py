"""Masked convolutions and the gated PixelCNN block (van den Oord et al. 2016b, "Pixel
Recurrent Neural Networks"; 2016c, "Conditional Image Generation with PixelCNN
Decoders"; intro lecture part III, "Pixel Convolutional Neural Networks").

A PixelCNN models p(x) = prod_i p(x_i | x_<i) over the pixels in raster order (row by
row, left to right). Its convolutions are masked so that the output at pixel i sees only
pixels before i: the kernel entries below the centre and to its right are zeroed.

    3x3, type A   3x3, type B        5x5, type A       5x5, type B
      1 1 1         1 1 1            1 1 1 1 1         1 1 1 1 1
      1 0 0         1 1 0            1 1 1 1 1         1 1 1 1 1
      0 0 0         0 0 0            1 1 0 0 0         1 1 1 0 0
                                     0 0 0 0 0         0 0 0 0 0
                                     0 0 0 0 0         0 0 0 0 0

Type A (the first layer) excludes the centre: the prediction for x_i must not see x_i.
Type B (every later layer) includes it: the centre feature at layer l > 1 already sees
only x_<i. With ``color_channels = 3`` (RGB predicted R, then G given R, then B given
R and G) the channels split into 3 contiguous groups and the centre entry connects input
group g_in to output group g_out only if g_in < g_out (A) or g_in <= g_out (B):

    centre, type A        centre, type B
          R  G  B  (in)         R  G  B
      R [ 0  0  0 ]         R [ 1  0  0 ]
      G [ 1  0  0 ]         G [ 1  1  0 ]
      B [ 1  1  0 ]         B [ 1  1  1 ]
    (out)

Off the centre every channel sees every channel.

The blind spot. A stack of masked 3x3 convolutions grows its receptive field upwards
and to the left, but never reaches the pixels above and to the right beyond the
first diagonal: with two layers the output at (i, j) sees (i - 2, j + 2) but not
(i - 1, j + 2), although that pixel comes before (i, j). The gated PixelCNN removes the
blind spot with two stacks (``GatedBlock``): a vertical stack that sees every row above,
and a horizontal stack that sees the pixels to the left in the current row and reads the
vertical stack (never the other way round).
"""
from tinydgm import backend
from tinydgm.autodiff.conv_ops import _int_pair, conv2d
from tinydgm.autodiff.core import Tensor
from tinydgm.autodiff.elementwise import sigmoid, tanh
from tinydgm.autodiff.shape import pad, split
from tinydgm.nn import init
from tinydgm.nn.conv import Conv2d
from tinydgm.nn.linear import Linear
from tinydgm.nn.module import Module, ModuleList, Parameter

__all__ = ["pixelcnn_mask", "MaskedConv2d", "GatedBlock", "GatedStack"]


def _odd_kernel(kernel_size, who):
    kernel = _int_pair(kernel_size, "kernel_size", who)
    if kernel[0] < 1 or kernel[1] < 1 or kernel[0] % 2 == 0 or kernel[1] % 2 == 0:
        raise ValueError(f"{who}: kernel_size must be odd (the mask is centred on the current pixel), "
                         f"got {kernel_size!r}")
    return kernel


def _check_mask_type(mask_type, who):
    if mask_type not in ("A", "B"):
        raise ValueError(f'{who}: mask_type must be "A" (first layer, excludes the current pixel) or "B" '
                         f'(later layers, includes it), got {mask_type!r}')


def _channel_groups(n_channels, color_channels, who, name):
    """Group of each channel: contiguous blocks, channel c in group c // (C / G)."""
    if n_channels % color_channels:
        raise ValueError(f"{who}: {name}={n_channels} must be divisible by color_channels={color_channels} "
                         "(channels are split into that many contiguous groups)")
    return backend.module_for_device("cpu").arange(n_channels) // (n_channels // color_channels)


def pixelcnn_mask(in_channels, out_channels, kernel_size, mask_type="A", color_channels=1):
    """The PixelCNN mask (a boolean CPU array of shape (C_out, C_in, kH, kW), the layout of
    conv weights): ones above the centre row and left of the centre, zeros below and to
    the right, and at the centre the channel-group rule (A: g_in < g_out, B: g_in <= g_out)."""
    who = "pixelcnn_mask"
    kh, kw = _odd_kernel(kernel_size, who)
    _check_mask_type(mask_type, who)
    if isinstance(color_channels, bool) or not isinstance(color_channels, int) or color_channels < 1:
        raise ValueError(f"{who}: color_channels must be a positive int, got {color_channels!r}")
    g_in = _channel_groups(in_channels, color_channels, who, "in_channels")
    g_out = _channel_groups(out_channels, color_channels, who, "out_channels")
    xp = backend.module_for_device("cpu")
    mask = xp.ones((out_channels, in_channels, kh, kw), dtype=bool)
    ci, cj = kh // 2, kw // 2
    mask[:, :, ci + 1:, :] = False            # rows below: later in raster order
    mask[:, :, ci, cj + 1:] = False           # right of the centre in its row
    centre = g_in[None, :] < g_out[:, None] if mask_type == "A" else g_in[None, :] <= g_out[:, None]
    mask[:, :, ci, cj] = centre
    return mask


class MaskedConv2d(Module):
    """y = conv2d(x, W * M, b) with the PixelCNN mask M (``pixelcnn_mask``), stride 1 and
    "same" zero padding (kH // 2, kW // 2), so y has x's height and width.

    mask_type "A" for the first layer (the output at pixel i sees x_<i only), "B" for the
    later ones; ``color_channels`` = 3 applies the RGB channel-group rule at the centre
    (both channel counts must be divisible by it). W (C_out, C_in, kH, kW) and b are
    Parameters initialised like ``Conv2d``; M is a buffer in W's dtype. Masked weights
    get zero gradient.
    """

    def __init__(self, in_channels, out_channels, kernel_size, mask_type="A", color_channels=1, bias=True,
                 zero_init=False, rng=None, dtype=None, device=None):
        super().__init__()
        for arg, value in (("in_channels", in_channels), ("out_channels", out_channels)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"MaskedConv2d: {arg} must be a positive int, got {value!r}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = _odd_kernel(kernel_size, "MaskedConv2d")
        self.mask_type, self.color_channels = mask_type, color_channels
        mask = pixelcnn_mask(in_channels, out_channels, self.kernel_size, mask_type, color_channels)
        shape = mask.shape
        weight, b = init.default_weight_and_bias(shape, "conv", out_channels, bias, zero_init, rng, dtype, device)
        self.weight = Parameter(weight)
        self.bias = None if b is None else Parameter(b)
        self.register_buffer("mask", backend.to_device(mask, self.weight.device).astype(self.weight.dtype))
        self.padding = (self.kernel_size[0] // 2, self.kernel_size[1] // 2)

    def forward(self, x):
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"MaskedConv2d({self.extra_repr()}): input must have shape (N, {self.in_channels}, "
                             f"H, W), got {x.shape}")
        return conv2d(x, self.weight * Tensor(self.mask), self.bias, padding=self.padding)

    def extra_repr(self):
        text = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, mask_type={self.mask_type!r}"
        if self.color_channels != 1:
            text += f", color_channels={self.color_channels}"
        return text + ("" if self.bias is not None else ", bias=False")


# ----------------------------------------------------------------------------- gated PixelCNN

def _shift_down(x):
    """x[i] <- x[i - 1] (zeros in row 0): row i then sees only rows < i of what x saw."""
    return pad(x, ((0, 0), (0, 0), (1, 0), (0, 0)))[:, :, :-1, :]


def _gate(a):
    """Gated activation: tanh(a_f) * sigmoid(a_g), a = [a_f, a_g] split along channels."""
    a_f, a_g = split(a, 2, axis=1)
    return tanh(a_f) * sigmoid(a_g)


class GatedBlock(Module):
    """One layer of the gated PixelCNN (van den Oord et al. 2016c, sec. 2 and Figure 2):

        vertical     a_v = W_v * v          kernel (k//2 + 1) x k over rows i - k//2 .. i
                     v'  = tanh(a_v,f + V_v,f c) * sigmoid(a_v,g + V_v,g c)
        horizontal   a_h = W_h * h + W_vh * shift_down(a_v)
                                            kernel 1 x (k//2 + 1) over columns j - k//2 .. j,
                                            W_vh a 1x1 convolution
                     h'  = W_o * (tanh(a_h,f + V_h,f c) * sigmoid(a_h,g + V_h,g c)) + h   (residual)

    with 2 * ``channels`` pre-activation maps split into the tanh half (f) and the sigmoid
    half (g). Causality: the vertical output at row i has seen rows <= i (all columns
    j - k//2 .. j + k//2, layer after layer), so it reaches the horizontal stack only
    shifted down one row; the horizontal stack never feeds the vertical one.

    mask_type "A" (the first layer, fed v = h = the image): the horizontal input is also
    shifted right one column, so the output at (i, j) excludes the pixel (i, j) itself; it
    has no residual (the channel counts differ). "B" (later layers): the horizontal
    convolution includes column j, which only carries x_<(i, j) from the layer below.

    Class conditioning (optional): ``cond_features`` = F adds V c to every pixel of each
    stack's pre-activation, with c (N, F) (the paper's h) a one-hot class vector or an
    embedding (``Embedding(n_classes, F)(labels)``) and V a bias-free Linear per stack.
    Not included: channel masking across RGB (use single-channel images, or put an RGB
    model's colour ordering in the output layer), skip connections, spatial conditioning.
    """

    def __init__(self, in_channels, channels, kernel_size=3, mask_type="B", cond_features=None, residual=None,
                 rng=None, dtype=None, device=None):
        super().__init__()
        who = "GatedBlock"
        k = _odd_kernel(kernel_size, who)
        if k[0] != k[1]:
            raise ValueError(f"{who}: kernel_size must be square (k x k), got {kernel_size!r}")
        _check_mask_type(mask_type, who)
        if residual is None:
            residual = mask_type == "B" and in_channels == channels
        if residual and in_channels != channels:
            raise ValueError(f"{who}: a residual connection needs in_channels == channels, got {in_channels} "
                             f"and {channels}")
        self.in_channels, self.channels, self.k = in_channels, channels, k[0]
        self.mask_type, self.residual, self.cond_features = mask_type, residual, cond_features
        p = self.k // 2
        conv = dict(rng=rng, dtype=dtype, device=device)
        self.v_conv = Conv2d(in_channels, 2 * channels, (p + 1, self.k), **conv)
        self.h_conv = Conv2d(in_channels, 2 * channels, (1, p + 1), **conv)
        self.v_to_h = Conv2d(2 * channels, 2 * channels, 1, **conv)
        self.h_out = Conv2d(channels, channels, 1, **conv)
        if cond_features is not None:
            self.v_cond = Linear(cond_features, 2 * channels, bias=False, **conv)
            self.h_cond = Linear(cond_features, 2 * channels, bias=False, **conv)

    def _conditioned(self, a, layer, cond):
        if cond is None:
            return a
        return a + layer(cond).reshape(a.shape[0], a.shape[1], 1, 1)

    def forward(self, v, h, cond=None):
        """(v, h) -> (v', h'), each (N, channels, H, W); cond (N, cond_features) or None."""
        if v.ndim != 4 or h.ndim != 4 or v.shape != h.shape or v.shape[1] != self.in_channels:
            raise ValueError(f"GatedBlock: v and h must both have shape (N, {self.in_channels}, H, W), got "
                             f"{v.shape} and {h.shape}")
        if (cond is None) != (self.cond_features is None):
            raise ValueError("GatedBlock: pass cond exactly when the block was built with cond_features "
                             f"(cond_features={self.cond_features}, cond {'missing' if cond is None else 'given'})")
        if cond is not None and (cond.ndim != 2 or cond.shape != (v.shape[0], self.cond_features)):
            raise ValueError(f"GatedBlock: cond must have shape (N, cond_features) = "
                             f"({v.shape[0]}, {self.cond_features}), got {cond.shape}")
        p = self.k // 2
        a_v = self.v_conv(pad(v, ((0, 0), (0, 0), (p, 0), (p, p))))      # rows i-p..i, columns j-p..j+p
        if self.mask_type == "A":   # columns j-p-1..j-1: the current pixel is excluded
            h_in = pad(h, ((0, 0), (0, 0), (0, 0), (p + 1, 0)))[:, :, :, :-1]
        else:                       # columns j-p..j
            h_in = pad(h, ((0, 0), (0, 0), (0, 0), (p, 0)))
        a_h = self.h_conv(h_in) + self.v_to_h(_shift_down(a_v))          # vertical -> horizontal only
        v_out = _gate(self._conditioned(a_v, getattr(self, "v_cond", None), cond))
        h_out = self.h_out(_gate(self._conditioned(a_h, getattr(self, "h_cond", None), cond)))
        return v_out, (h_out + h if self.residual else h_out)

    def extra_repr(self):
        text = f"{self.in_channels}, {self.channels}, kernel_size={self.k}, mask_type={self.mask_type!r}"
        if self.cond_features is not None:
            text += f", cond_features={self.cond_features}"
        return text + f", residual={self.residual}"


class GatedStack(Module):
    """n_layers gated blocks: the first of type A (in_channels -> channels, kernel
    ``first_kernel_size``, default ``kernel_size``), then type B with residuals.
    forward(x, cond=None) feeds v = h = x and returns the last horizontal output
    (N, channels, H, W), whose pixel (i, j) depends on x_<(i, j) only, with no blind spot.
    """

    def __init__(self, in_channels, channels, n_layers, kernel_size=3, first_kernel_size=None, cond_features=None,
                 rng=None, dtype=None, device=None):
        super().__init__()
        if isinstance(n_layers, bool) or not isinstance(n_layers, int) or n_layers < 1:
            raise ValueError(f"GatedStack: n_layers must be a positive int, got {n_layers!r}")
        conv = dict(cond_features=cond_features, rng=rng, dtype=dtype, device=device)
        blocks = [GatedBlock(in_channels, channels, first_kernel_size or kernel_size, "A", **conv)]
        blocks += [GatedBlock(channels, channels, kernel_size, "B", **conv) for _ in range(n_layers - 1)]
        self.blocks = ModuleList(blocks)

    def forward(self, x, cond=None):
        v = h = x
        for block in self.blocks:
            v, h = block(v, h, cond)
        return h
