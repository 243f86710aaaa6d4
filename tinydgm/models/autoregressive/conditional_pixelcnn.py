"""A PixelCNN conditioned on a spatial map c (van den Oord et al. 2016c, sec. 2.3 "location-
dependent conditioning"; intro lecture part III, "Hierarchical PixelCNN" and "Hybrid models:
PixelVAE"):

    p(x | c) = prod_i p(x_i | x_<i, c)          binary pixels in raster order

c (N, C_c, H, W) is given (the upsampled code f(z) of a PixelVAE, the upsampled low-resolution
image x_hat of a hierarchical PixelCNN), so it may be read at every position: it enters each
layer through an unmasked 1x1 convolution V_l, a per-pixel bias.

    a_1 = W_1 *_A x + V_1 c                       k x k masked conv, type A (excludes x_i)
    a_l = a_{l-1} + W_l *_B relu(a_{l-1}) + V_l c   3x3 masked conv, type B, l = 2..L (residual)
    logits = W_out relu(a_L)                       1x1 conv -> one logit per pixel

``n_layers`` = L counts the masked convolutions. L = 0 is the factorised decoder
p(x | c) = prod_i Bernoulli(x_i; sigmoid(W_out relu(V_1 c))): no pixel sees another, the
plain VAE decoder; PixelVAE's information-preference experiment varies L.

Limitations: binary images, one channel; the ungated masked stack has PixelCNN's blind spot
(the lecture's "two stacks" remedy is ``GatedPixelCNN``).

Sampling (``sample``): c is fixed, x is drawn pixel by pixel. "window" runs the network on the
receptive field of each pixel only, x and c cropped alike (the window argument of
``tinydgm.kernels.pixelcnn_sampler``); "naive" runs it on the whole image at every step.
Both read the same uniforms u, so they give the same images.
"""
from tinydgm import backend
from tinydgm.autodiff.core import Tensor, no_grad, tensor
from tinydgm.autodiff.elementwise import relu
from tinydgm.distributions import Bernoulli
from tinydgm.kernels.pixelcnn_sampler import crop_window, draw_bernoulli
from tinydgm.nn.conv import Conv2d
from tinydgm.nn.masked_conv import MaskedConv2d
from tinydgm.nn.module import Module, ModuleList

__all__ = ["ConditionalPixelCNN", "binary_images"]


def binary_images(x, like, image_shape, who, check_binary=True):
    """x as a float Tensor (N, C, H, W) in like's dtype and device, checked to be binary
    (unless ``check_binary`` is False: the Jacobian tests feed real values); accepts flat rows
    (N, C H W) too."""
    if not isinstance(x, Tensor):
        x = tensor(backend.as_array(x, dtype=like.dtype, device=like.device))
    elif x.dtype != like.dtype:
        x = Tensor(x.data.astype(like.dtype))
    c, h, w = image_shape
    if x.ndim == 2 and x.shape[1] == c * h * w:
        x = x.reshape(x.shape[0], c, h, w)
    if x.ndim != 4 or tuple(x.shape[1:]) != tuple(image_shape):
        raise ValueError(f"{who}: x must have shape (N, {c}, {h}, {w}) or (N, {c * h * w}), got {tuple(x.shape)}")
    binary = (x.data == 0) | (x.data == 1)
    if check_binary and not bool(binary.all()):
        raise ValueError(f"{who}: x must be binary (0 or 1), got {int((~binary).sum())} other values, "
                         f"e.g. {float(x.data[~binary][0])!r}")
    return x


class ConditionalPixelCNN(Module):
    """p(x | c) over binary (1, H, W) images given a spatial map c (module docstring).

    cond_channels: C_c, channels of c. channels: width of the masked stack.
    n_layers: L >= 0 masked convolutions (the first k x k type A, the rest 3x3 type B).
    kernel_size: k of the first layer (odd).
    """

    def __init__(self, cond_channels, channels=32, n_layers=3, kernel_size=5, rng=None, dtype=None, device=None):
        super().__init__()
        for name, value, low in (("cond_channels", cond_channels, 1), ("channels", channels, 1),
                                 ("n_layers", n_layers, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"ConditionalPixelCNN: {name} must be an int >= {low}, got {value!r}")
        self.cond_channels, self.channels, self.n_layers, self.kernel_size = cond_channels, channels, n_layers, kernel_size
        conv = dict(rng=rng, dtype=dtype, device=device)
        masked = []
        if n_layers:
            masked.append(MaskedConv2d(1, channels, kernel_size, "A", **conv))
            masked += [MaskedConv2d(channels, channels, 3, "B", **conv) for _ in range(n_layers - 1)]
        self.masked = ModuleList(masked)
        self.cond = ModuleList([Conv2d(cond_channels, channels, 1, **conv) for _ in range(max(n_layers, 1))])
        self.conv_out = Conv2d(channels, 1, 1, **conv)

    def extra_repr(self):
        return (f"cond_channels={self.cond_channels}, channels={self.channels}, n_layers={self.n_layers}, "
                f"kernel_size={self.kernel_size}")

    def logits(self, x, c):
        """One logit per pixel (N, 1, H, W) for p(x_i = 1 | x_<i, c), in one pass."""
        if c.ndim != 4 or c.shape[1] != self.cond_channels or (x.shape[0],) + tuple(x.shape[2:]) != \
                (c.shape[0],) + tuple(c.shape[2:]):
            raise ValueError(f"ConditionalPixelCNN: c must have shape (N, {self.cond_channels}, H, W) matching "
                             f"x {tuple(x.shape)}, got {tuple(c.shape)}")
        if self.n_layers == 0:
            a = self.cond[0](c)                                        # factorised: no pixel sees another
        else:
            a = self.masked[0](x) + self.cond[0](c)                    # type A: x_<i and c
            for conv, cond in zip(self.masked[1:], self.cond[1:]):
                a = a + conv(relu(a)) + cond(c)                        # type B: x_<i stays x_<i
        return self.conv_out(relu(a))

    def log_prob(self, x, c):
        """ln p(x | c) = sum_i ln Bernoulli(x_i; sigmoid(logit_i)), (N,) in nats; x binary (N, 1, H, W)."""
        return Bernoulli(logits=self.logits(x, c)).log_prob(x).sum(axis=(1, 2, 3))

    def reach(self):
        """(up, left, right): the logits at (i, j) read rows i - up .. i, columns j - left .. j + right."""
        r = self.kernel_size // 2 + max(self.n_layers - 1, 0) if self.n_layers else 0
        return r, r, r

    def sample(self, c, rng=None, method="window"):
        """x ~ p(x | c), (N, 1, H, W) as a Tensor of 0.0/1.0 without a graph; uniforms u are
        drawn once from ``rng`` and x_i = 1[u_i < sigmoid(logit_i)] in raster order."""
        if method not in ("window", "naive"):
            raise ValueError(f'ConditionalPixelCNN.sample: method must be "window" or "naive", got {method!r}')
        c = c if isinstance(c, Tensor) else tensor(c)
        rng = backend.default_generator() if rng is None else rng
        n, _, height, width = c.shape
        u = backend.to_device(rng.random((n, 1, height, width)), c.device)
        xp = backend.get_array_module(c.data)
        x = xp.zeros((n, 1, height, width), dtype=c.dtype)
        reach = self.reach() if method == "window" else (height, width, width)
        with no_grad():
            if self.n_layers == 0:                                     # every pixel at once
                return Tensor(draw_bernoulli(self.logits(Tensor(x), c).data, u).astype(c.dtype))
            for i in range(height):
                for j in range(width):
                    r0, c0, c1 = crop_window(i, j, height, width, reach)
                    window = Tensor(xp.ascontiguousarray(x[:, :, r0:i + 1, c0:c1]))
                    logits = self.logits(window, c[:, :, r0:i + 1, c0:c1]).data[:, 0, i - r0, j - c0]
                    x[:, 0, i, j] = draw_bernoulli(logits, u[:, 0, i, j])
        return Tensor(x)
