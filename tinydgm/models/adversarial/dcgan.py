"""DCGAN-style convolutional generator and discriminator for 28 x 28 images (Radford et al.
2016; intro lecture part I, "generator architecture" and "discriminator architecture").

Generator, an up-convolutional network (the recognition CNN reversed): strided transposed
convolutions double the resolution, batch norm and ReLU between them, tanh or sigmoid out.

    z (N, latent_dim)
      project: z W reshaped                       -> (N, 2F, 7, 7)    BatchNorm, ReLU
      ConvTranspose2d(2F, F, 4, stride 2, pad 1)  -> (N, F, 14, 14)   BatchNorm, ReLU
      ConvTranspose2d(F, C, 4, stride 2, pad 1)   -> (N, C, 28, 28)   tanh (x in [-1, 1]) or sigmoid ([0, 1])

The projection is DCGAN's first layer, ConvTranspose2d(latent_dim, 2F, 7) on z seen as a
1 x 1 image, written as the dense layer it is: out[n, c, i, j] = sum_l z[n, l] W[l, c, i, j],
so a Linear(latent_dim, 2F * 7 * 7) with weight W.reshape(latent_dim, -1) (and much faster
here than a transposed convolution from a single pixel). To copy it into a PyTorch
ConvTranspose2d, reshape the weight to (latent_dim, 2F, 7, 7).

Discriminator, a recognition CNN: strided convolutions halve the resolution (no pooling),
LeakyReLU(0.2) between them, and one output per image (the logit; the sigmoid is applied
inside the GAN loss, and a WGAN critic uses the output as its score).

    x (N, C, 28, 28)
      Conv2d(C, F, 4, stride 2, pad 1)             -> (N, F, 14, 14)   LeakyReLU
      Conv2d(F, 2F, 4, stride 2, pad 1)            -> (N, 2F, 7, 7)    [BatchNorm], LeakyReLU
      Conv2d(2F, 1, 7)                             -> (N, 1, 1, 1) -> (N,)

Choices: weights are drawn from N(0, 0.02^2) and biases start at zero (Radford et al.,
section 4); convolutions followed by batch norm have no bias (the norm's beta replaces it).
Batch norm in the discriminator is off by default: the WGAN-GP penalty is per example, and
batch norm makes each example's score depend on the rest of the batch (Gulrajani et al.
2017, section 4). ``batch_norm=True`` gives the DCGAN paper's discriminator.
"""
from tinydgm.autodiff.elementwise import leaky_relu, relu, sigmoid, tanh
from tinydgm.nn import init
from tinydgm.nn.conv import Conv2d, ConvTranspose2d
from tinydgm.nn.linear import Linear
from tinydgm.nn.module import Module
from tinydgm.nn.norm import BatchNorm

__all__ = ["DCGANGenerator", "DCGANDiscriminator", "IMAGE_SIZE"]

IMAGE_SIZE = 28
WEIGHT_STD = 0.02


def _check_positive(who, **values):
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{who}: {name} must be a positive int, got {value!r}")


def _dcgan_init(layer, rng):
    """W ~ N(0, 0.02^2), b = 0 (Radford et al. 2016)."""
    layer.weight.data = init.normal(layer.weight.shape, WEIGHT_STD, rng, layer.weight.dtype, layer.weight.device)
    if layer.bias is not None:
        layer.bias.data = layer.bias.data * 0
    return layer


class DCGANGenerator(Module):
    """G(z): (N, latent_dim) -> (N, channels, 28, 28), see the module docstring."""

    def __init__(self, latent_dim=100, channels=1, features=64, output="tanh", rng=None, dtype=None, device=None):
        super().__init__()
        _check_positive("DCGANGenerator", latent_dim=latent_dim, channels=channels, features=features)
        if output not in ("tanh", "sigmoid"):
            raise ValueError(f'DCGANGenerator: output must be "tanh" (x in [-1, 1]) or "sigmoid" (x in [0, 1]), '
                             f"got {output!r}")
        self.latent_dim, self.channels, self.features, self.output = latent_dim, channels, features, output
        f, opts = features, dict(dtype=dtype, device=device)
        self.project = _dcgan_init(Linear(latent_dim, 2 * f * 7 * 7, bias=False, **opts), rng)
        self.norm1 = BatchNorm(2 * f, **opts)
        self.up2 = _dcgan_init(ConvTranspose2d(2 * f, f, 4, stride=2, padding=1, bias=False, **opts), rng)
        self.norm2 = BatchNorm(f, **opts)
        self.up3 = _dcgan_init(ConvTranspose2d(f, channels, 4, stride=2, padding=1, **opts), rng)

    def forward(self, z):
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"DCGANGenerator: z must have shape (N, {self.latent_dim}), got shape {z.shape}")
        h = self.project(z).reshape(z.shape[0], 2 * self.features, 7, 7)
        h = relu(self.norm1(h))                         # 7 x 7
        h = relu(self.norm2(self.up2(h)))               # 14 x 14
        logits = self.up3(h)                            # 28 x 28
        return tanh(logits) if self.output == "tanh" else sigmoid(logits)

    def extra_repr(self):
        return (f"latent_dim={self.latent_dim}, channels={self.channels}, features={self.features}, "
                f"output={self.output}")

    def __repr__(self):
        return f"DCGANGenerator({self.extra_repr()})"


class DCGANDiscriminator(Module):
    """D(x): (N, channels, 28, 28) -> one logit/score per image, shape (N,)."""

    def __init__(self, channels=1, features=64, negative_slope=0.2, batch_norm=False, rng=None, dtype=None,
                 device=None):
        super().__init__()
        _check_positive("DCGANDiscriminator", channels=channels, features=features)
        self.channels, self.features, self.negative_slope = channels, features, float(negative_slope)
        self.batch_norm = bool(batch_norm)
        f, opts = features, dict(dtype=dtype, device=device)
        self.down1 = _dcgan_init(Conv2d(channels, f, 4, stride=2, padding=1, **opts), rng)
        self.down2 = _dcgan_init(Conv2d(f, 2 * f, 4, stride=2, padding=1, bias=not batch_norm, **opts), rng)
        self.norm2 = BatchNorm(2 * f, **opts) if batch_norm else None
        self.out = _dcgan_init(Conv2d(2 * f, 1, 7, **opts), rng)

    def forward(self, x):
        if x.ndim != 4 or x.shape[1:] != (self.channels, IMAGE_SIZE, IMAGE_SIZE):
            raise ValueError(f"DCGANDiscriminator: x must have shape (N, {self.channels}, {IMAGE_SIZE}, "
                             f"{IMAGE_SIZE}), got shape {x.shape}")
        h = leaky_relu(self.down1(x), self.negative_slope)          # 14 x 14
        h = self.down2(h)                                           # 7 x 7
        if self.norm2 is not None:
            h = self.norm2(h)
        h = leaky_relu(h, self.negative_slope)
        return self.out(h).reshape(-1)                              # (N, 1, 1, 1) -> (N,)

    def extra_repr(self):
        return (f"channels={self.channels}, features={self.features}, negative_slope={self.negative_slope}, "
                f"batch_norm={self.batch_norm}")

    def __repr__(self):
        return f"DCGANDiscriminator({self.extra_repr()})"
