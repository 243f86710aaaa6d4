"""Hierarchical PixelCNN (Kolesnikov & Lampert 2017, "PixelCNN models with auxiliary variables
for natural image modeling"; intro lecture part III, "Hierarchical PixelCNN").

A high-level representation x_hat = f(x) of the image, here the low-resolution image

    x_hat = maxpool_{f x f}(x)          (binary: a coarse pixel is on when any of its f x f pixels is)

gets its own PixelCNN, and a conditional PixelCNN models the image given it:

    p(x_hat) = prod_j p(x_hat_j | x_hat_<j)              ``PixelCNN`` at resolution (H/f, W/f)
    p(x | x_hat) = prod_i p(x_i | x_<i, x_hat)             ``ConditionalPixelCNN``, c = context(up(x_hat))

The model's distribution is the mixture p(x) = sum_{x_hat} p(x_hat) p(x | x_hat) (sampling is
ancestral: x_hat, then x). Keeping only the term x_hat = f(x) gives the lecture's bound

    ln p(x) >= ln p(x_hat) + ln p(x | x_hat),     x_hat = f(x)

(tight when p(x | x_hat) gives no mass to images with another f(x)); both terms train on
pairs (f(x), x) and are reported separately (``log_prob_terms``). ``log_prob_exact`` sums
the mixture over every x_hat, for tiny images (tests).

c = relu(W_c * upsample_nearest(x_hat)), a 3x3 convolution over the coarse image upsampled
to H x W, so each pixel's conditional sees the coarse neighbourhood around it.

Limitations: binary one-channel images; x_hat is the max-pooled image only (the paper also
uses fewer grey levels, which binary data do not have).
"""
from tinydgm import backend
from tinydgm.autodiff.conv_ops import max_pool2d, upsample_nearest2d
from tinydgm.autodiff.core import Tensor, no_grad
from tinydgm.autodiff.elementwise import relu
from tinydgm.autodiff.reduce import logsumexp
from tinydgm.autodiff.shape import stack
from tinydgm.evaluate import bits_per_dim
from tinydgm.evaluate.exact import binary_states
from tinydgm.models.autoregressive.conditional_pixelcnn import ConditionalPixelCNN, binary_images
from tinydgm.models.autoregressive.pixelcnn import PixelCNN
from tinydgm.nn.conv import Conv2d
from tinydgm.nn.module import Module

__all__ = ["HierarchicalPixelCNN"]

MAX_EXACT_DIMS = 16          # log_prob_exact enumerates 2^(H W / f^2) coarse images


class HierarchicalPixelCNN(Module):
    """p(x_hat) p(x | x_hat) over binary (1, H, W) images (module docstring).

    image_size: (H, W), divisible by factor f. channels, n_residual, kernel_size: the prior
    PixelCNN on x_hat. cond_channels, cond_layers, cond_kernel_size: the conditional
    PixelCNN. context_channels: maps of c.
    """

    def __init__(self, image_size=(28, 28), factor=2, channels=32, n_residual=2, kernel_size=5, cond_channels=32,
                 cond_layers=3, cond_kernel_size=5, context_channels=16, rng=None, dtype=None, device=None):
        super().__init__()
        h, w = tuple(image_size)
        if isinstance(factor, bool) or not isinstance(factor, int) or factor < 2 or h % factor or w % factor:
            raise ValueError(f"HierarchicalPixelCNN: factor must be an int >= 2 dividing image_size={tuple(image_size)}, "
                             f"got {factor!r}")
        self.image_size, self.factor, self.event_shape = (h, w), factor, (1, h, w)
        conv = dict(rng=rng, dtype=dtype, device=device)
        self.prior = PixelCNN(1, channels, n_residual, kernel_size, image_size=(h // factor, w // factor), **conv)
        self.context = Conv2d(1, context_channels, 3, padding=1, **conv)
        self.conditional = ConditionalPixelCNN(context_channels, cond_channels, cond_layers, cond_kernel_size, **conv)

    def extra_repr(self):
        return f"image_size={self.image_size}, factor={self.factor}"

    def high_level(self, x):
        """x_hat = f(x): the f x f max-pooled image (N, 1, H/f, W/f)."""
        return max_pool2d(self._images(x), self.factor)

    def _context(self, x_hat):
        return relu(self.context(upsample_nearest2d(x_hat, self.factor)))

    def log_prob_terms(self, x):
        """(ln p(x_hat), ln p(x | x_hat)) at x_hat = f(x), each (N,) in nats."""
        x = self._images(x)
        x_hat = max_pool2d(x, self.factor)
        return self.prior.log_prob(x_hat), self.conditional.log_prob(x, self._context(x_hat))

    def log_prob_lower_bound(self, x):
        """ln p(x_hat) + ln p(x | x_hat) <= ln p(x), (N,) (intro lecture, hierarchical PixelCNN)."""
        log_p_xhat, log_p_x_xhat = self.log_prob_terms(x)
        return log_p_xhat + log_p_x_xhat

    def log_prob_exact(self, x):
        """ln p(x) = ln sum_{x_hat} p(x_hat) p(x | x_hat) over all 2^(HW/f^2) coarse images (tiny models)."""
        x = self._images(x)
        n, (h, w) = x.shape[0], self.image_size
        hh, wh = h // self.factor, w // self.factor
        if hh * wh > MAX_EXACT_DIMS:
            raise ValueError(f"HierarchicalPixelCNN.log_prob_exact: enumerates 2^{hh * wh} coarse images; at most "
                             f"2^{MAX_EXACT_DIMS} allowed")
        xp = backend.get_array_module(x.data)
        states = Tensor(binary_states(hh * wh, dtype=x.dtype, xp=xp).reshape(-1, 1, hh, wh))
        log_p_xhat = self.prior.log_prob(states)                          # (S,)
        terms = []
        for s in range(states.shape[0]):                                  # ln p(x_hat_s) + ln p(x | x_hat_s)
            x_hat = Tensor(xp.broadcast_to(states.data[s:s + 1], (n, 1, hh, wh)).copy())
            terms.append(log_p_xhat[s] + self.conditional.log_prob(x, self._context(x_hat)))
        return logsumexp(stack(terms, axis=0), axis=0)

    def bits_per_dim(self, x):
        """From the bound: -(ln p(x_hat) + ln p(x | x_hat)) / (H W ln 2), an upper bound."""
        x = self._images(x)
        return bits_per_dim(-self.log_prob_lower_bound(x), x.shape[2] * x.shape[3])

    def loss(self, batch):
        """-mean [ln p(x_hat) + ln p(x | x_hat)]: both PixelCNNs trained on the pairs (f(x), x)."""
        return -self.log_prob_lower_bound(batch).mean()

    def sample(self, n, rng=None, method="window"):
        """x_hat ~ p(x_hat) (the cached PixelCNN loop), then x ~ p(x | x_hat); (n, 1, H, W), no graph."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"HierarchicalPixelCNN.sample: n must be a positive int, got {n!r}")
        rng = backend.default_generator() if rng is None else rng
        with no_grad():
            x_hat = self.prior.sample(n, rng, method="fast")
            return self.conditional.sample(self._context(x_hat), rng, method)

    def _images(self, x):
        return binary_images(x, self.context.weight, self.event_shape, type(self).__name__)
