"""Parallel multiscale PixelCNN (Reed, van den Oord, Kalchbrenner, Gomez Colmenarejo, Wang,
Belov & de Freitas 2017, "Parallel multiscale autoregressive density estimation";
intro lecture part III, "Parallel multiscale autoregressive density estimation").

The image x (H x W, binary) is split into a pyramid: x^(0) = x, x^(k+1) = x^(k)[::2, ::2],
down to the base x^(K) of size H / 2^K. Each finer image x^(k) is cut into four groups by the
position of a pixel inside its 2x2 block,

    1 2        group 1 = x^(k)[0::2, 0::2] = x^(k+1) (the coarser image, already known)
    3 4        group 2 = [0::2, 1::2],  group 3 = [1::2, 0::2],  group 4 = [1::2, 1::2]

and the pixels of a group are conditionally independent given the earlier groups:

    p(x) = p(x^(K)) prod_{k=K-1..0} prod_{g=2..4} prod_{i in group g of x^(k)} p(x_i | x^(k)_{groups < g})

p(x^(K)) is a PixelCNN at the base resolution (``PixelCNN``, raster order); each factor
p(x_g | x_{<g}) is a small unmasked CNN ("upsampling network") that reads the known groups,
stacked as channels at the coarse resolution, and outputs one logit per pixel of group g.

Sampling costs the base PixelCNN's loop plus 3 network evaluations per scale: O(log N)
evaluations for N pixels instead of PixelCNN's N (Reed et al. sec. 3). The price is the
independence assumption inside a group: pixels 2x2 apart cannot explain each other, which
costs likelihood (``log_prob_terms`` reports it term by term; benchmarks/quality_hybrid.py
against a full PixelCNN).

Limitations: binary one-channel images; H and W must be base size times 2^K; one upsampling
network per (scale, group) (the paper shares some across scales and conditions on more context).
"""
import math

from tinydgm import backend
from tinydgm.autodiff.core import Tensor, no_grad
from tinydgm.autodiff.elementwise import relu
from tinydgm.autodiff.shape import concatenate, stack
from tinydgm.distributions import Bernoulli
from tinydgm.evaluate import bits_per_dim
from tinydgm.kernels.pixelcnn_sampler import draw_bernoulli
from tinydgm.models.autoregressive.conditional_pixelcnn import binary_images
from tinydgm.models.autoregressive.pixelcnn import PixelCNN
from tinydgm.nn.conv import Conv2d
from tinydgm.nn.module import Module, ModuleList

__all__ = ["MultiscalePixelCNN", "GroupNetwork", "interleave", "OFFSETS"]

OFFSETS = ((0, 0), (0, 1), (1, 0), (1, 1))       # (row, column) of groups 1..4 inside a 2x2 block


def interleave(groups):
    """Four (N, C, s, t) group images -> the (N, C, 2s, 2t) image whose pixel (2i + dy, 2j + dx)
    is group (dy, dx)'s pixel (i, j) (OFFSETS order); the inverse of x[:, :, dy::2, dx::2]."""
    g1, g2, g3, g4 = groups
    blocks = stack([stack([g1, g2], axis=-1), stack([g3, g4], axis=-1)], axis=-2)   # (N, C, s, t, dy, dx)
    n, c, s, t = g1.shape
    return blocks.transpose(0, 1, 2, 4, 3, 5).reshape(n, c, 2 * s, 2 * t)


class GroupNetwork(Module):
    """logits of group g given groups 1..g-1 (stacked as g - 1 channels, (N, g - 1, s, t)):
    [3x3 conv, ReLU] x n_layers, then a 1x1 conv to one logit per pixel. Unmasked: every pixel
    of the known groups may be read."""

    def __init__(self, in_channels, channels=32, n_layers=2, rng=None, dtype=None, device=None):
        super().__init__()
        conv = dict(rng=rng, dtype=dtype, device=device)
        widths = [in_channels] + [channels] * n_layers
        self.convs = ModuleList([Conv2d(a, b, 3, padding=1, **conv) for a, b in zip(widths[:-1], widths[1:])])
        self.conv_out = Conv2d(widths[-1], 1, 1, **conv)

    def forward(self, known):
        h = known
        for conv in self.convs:
            h = relu(conv(h))
        return self.conv_out(h)


class MultiscalePixelCNN(Module):
    """The parallel multiscale PixelCNN (module docstring) over binary (1, H, W) images.

    image_size: (H, W). base_size: (H, W) / 2^K of the base PixelCNN.
    channels, n_residual, kernel_size: the base ``PixelCNN``.
    group_channels, group_layers: each ``GroupNetwork``.
    """

    def __init__(self, image_size=(28, 28), base_size=(7, 7), channels=32, n_residual=2, kernel_size=5,
                 group_channels=32, group_layers=2, rng=None, dtype=None, device=None):
        super().__init__()
        (h, w), (hb, wb) = tuple(image_size), tuple(base_size)
        n_scales = math.log2(h / hb) if h % hb == 0 else -1
        if n_scales < 0 or n_scales != int(n_scales) or w != wb * 2 ** int(n_scales):
            raise ValueError(f"MultiscalePixelCNN: image_size must be base_size times 2^K in both dimensions, got "
                             f"image_size={tuple(image_size)} and base_size={tuple(base_size)}")
        self.image_size, self.base_size, self.n_scales = (h, w), (hb, wb), int(n_scales)
        self.event_shape = (1, h, w)
        conv = dict(rng=rng, dtype=dtype, device=device)
        self.base = PixelCNN(1, channels, n_residual, kernel_size, image_size=(hb, wb), **conv)
        # upsamplers[k][g - 2]: p(group g | groups < g) when going from resolution k + 1 to k (k = K-1 .. 0)
        self.upsamplers = ModuleList([ModuleList([GroupNetwork(g - 1, group_channels, group_layers, **conv)
                                                  for g in (2, 3, 4)]) for _ in range(self.n_scales)])

    def extra_repr(self):
        return f"image_size={self.image_size}, base_size={self.base_size}, n_scales={self.n_scales}"

    @property
    def dtype(self):
        return self.base.dtype

    @property
    def device(self):
        return self.base.device

    # --- the conditionals
    def pyramid(self, x):
        """[x^(0), ..., x^(K)]: x^(k+1) = x^(k)[::2, ::2], finest first."""
        images = [x]
        for _ in range(self.n_scales):
            images.append(images[-1][:, :, ::2, ::2])
        return images

    def group_logits(self, x_k, k):
        """Logits of groups 2, 3, 4 of x^(k) given the groups before each, three (N, 1, s, t)."""
        groups = [x_k[:, :, dy::2, dx::2] for dy, dx in OFFSETS]
        return [net(concatenate(groups[:g], axis=1)) for g, net in zip((1, 2, 3), self.upsamplers[k])]

    def logits(self, x):
        """The logit of every pixel's conditional, placed at that pixel: (N, 1, H, W). The base
        pixels carry the base PixelCNN's logits, the others those of their group's network.
        Differentiable w.r.t. floating x (for the Jacobian tests)."""
        x = self._images(x, check_binary=False)
        images = self.pyramid(x)
        logit_map = self.base.logits(images[-1])                       # p(x^(K)), raster order
        for k in range(self.n_scales - 1, -1, -1):                     # coarse to fine
            logit_map = interleave([logit_map] + self.group_logits(images[k], k))
        return logit_map

    def log_prob(self, x):
        """ln p(x) = ln p(x^(K)) + sum_k sum_{g=2..4} ln p(x^(k)_g | x^(k)_{<g}), (N,) in nats."""
        x = self._images(x)
        return Bernoulli(logits=self.logits(x)).log_prob(x).sum(axis=(1, 2, 3))

    def log_prob_terms(self, x):
        """The terms of ln p(x), each (N,): [("base HbxWb", ln p(x^(K))), ("HxW group g", ...), ...]."""
        x = self._images(x)
        images = self.pyramid(x)
        hb, wb = self.base_size
        terms = [(f"base {hb}x{wb}", self.base.log_prob(images[-1]))]
        for k in range(self.n_scales - 1, -1, -1):
            groups = [images[k][:, :, dy::2, dx::2] for dy, dx in OFFSETS]
            for g, logits in zip((2, 3, 4), self.group_logits(images[k], k)):
                h, w = images[k].shape[2:]
                terms.append((f"{h}x{w} group {g}", Bernoulli(logits=logits).log_prob(groups[g - 1]).sum(axis=(1, 2, 3))))
        return terms

    def bits_per_dim(self, x):
        x = self._images(x)
        return bits_per_dim(-self.log_prob(x), x.shape[1] * x.shape[2] * x.shape[3])

    def loss(self, batch):
        """Mean negative log-likelihood in nats."""
        return -self.log_prob(batch).mean()

    def n_network_evaluations(self, base_method="fast"):
        """Network passes to draw a batch: the base loop (one per base pixel for "naive"/"window";
        about one pass in all for the cached "fast" loop, counted as one) + 3 per scale."""
        hb, wb = self.base_size
        return (1 if base_method == "fast" else hb * wb) + 3 * self.n_scales

    # --- sampling
    def sample(self, n, rng=None, base_method="fast"):
        """x ~ p(x): the base image by the PixelCNN loop, then each scale's groups 2, 3, 4, every
        pixel of a group at once (x_i = 1[u_i < sigmoid(logit_i)]). (n, 1, H, W), no graph."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"MultiscalePixelCNN.sample: n must be a positive int, got {n!r}")
        rng = backend.default_generator() if rng is None else rng
        with no_grad():
            x = self.base.sample(n, rng, method=base_method)
            for k in range(self.n_scales - 1, -1, -1):
                groups = [x]
                for net in self.upsamplers[k]:
                    logits = net(concatenate(groups, axis=1)).data
                    u = backend.to_device(rng.random(logits.shape), self.device)
                    groups.append(Tensor(draw_bernoulli(logits, u).astype(self.dtype)))
                x = interleave(groups)
        return Tensor(x.data)

    def _images(self, x, check_binary=True):
        return binary_images(x, self.base.conv_in.weight, self.event_shape, type(self).__name__, check_binary)
