"""Gated PixelCNN (van den Oord, Kalchbrenner, Vinyals, Espeholt, Graves & Kavukcuoglu
2016c, "Conditional Image Generation with PixelCNN Decoders", sec. 2.1-2.3 and Figure 2;
intro lecture part III: "two stacks to fill the blind spot", "class-conditional PixelCNN").

    p(x | c) = prod_i p(x_i | x_<i, c)

The network is ``tinydgm.nn.GatedStack`` (a vertical stack that sees every row above and
a horizontal stack that sees the pixels to the left and reads the vertical stack; gated
units y = tanh(W_f * x + V_f c) * sigmoid(W_g * x + V_g c), eq. 2 and 4) followed by the
output head ReLU, 1x1 conv, ReLU, 1x1 conv -> logits. The stacks have no blind spot: the
logits at (i, j) see every earlier pixel within the receptive field.

Class conditioning (``n_classes``): c is the one-hot label (the paper's h), added through
a bias-free linear map V to every gated pre-activation of every layer (eq. 4: "a
class-dependent bias at every layer").

Outputs as in ``PixelCNN``: "bernoulli" or "categorical256" (levels 0..255, read as x / 255).
Limitation: no channel ordering inside a pixel (GatedStack has no RGB masks): with
in_channels > 1 the C subpixels of a pixel are conditionally independent given x_<i.
"""
from tinydgm import backend
from tinydgm.autodiff.elementwise import relu
from tinydgm.kernels import pixelcnn_sampler
from tinydgm.models.autoregressive.pixelcnn import AutoregressiveImageModel, train_and_evaluate
from tinydgm.nn.conv import Conv2d
from tinydgm.nn.masked_conv import GatedStack

__all__ = ["GatedPixelCNN", "PAPER_CONFIG", "reproduce"]


class GatedPixelCNN(AutoregressiveImageModel):
    """Gated PixelCNN (module docstring).

    in_channels: C. channels: width of both stacks. n_layers: gated blocks (the first of
    type A with ``first_kernel_size``, then type B with ``kernel_size``, both odd).
    n_classes: None, or the number of classes for class conditioning (``labels=`` in
    log_prob / loss batches (x, labels) / sample).
    head_channels: width of the 1x1 output layers (default: channels).
    """

    def __init__(self, in_channels=1, channels=64, n_layers=5, kernel_size=3, first_kernel_size=7, n_classes=None,
                 head_channels=None, output="bernoulli", image_size=(28, 28), rng=None, dtype=None, device=None):
        super().__init__()
        if n_classes is not None and (isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 1):
            raise ValueError(f"GatedPixelCNN: n_classes must be None or a positive int, got {n_classes!r}")
        self._setup(in_channels, output, image_size, n_classes)
        head_channels = channels if head_channels is None else head_channels
        self.channels, self.n_layers = channels, n_layers
        self.kernel_size, self.first_kernel_size = kernel_size, first_kernel_size
        conv = dict(rng=rng, dtype=dtype, device=device)
        self.stack = GatedStack(in_channels, channels, n_layers, kernel_size, first_kernel_size,
                                cond_features=n_classes, **conv)
        self.head = Conv2d(channels, head_channels, 1, **conv)          # 1x1: no spatial mixing, no mask needed
        self.conv_out = Conv2d(head_channels, in_channels * self.n_logits, 1, **conv)

    def extra_repr(self):
        return (f"in_channels={self.in_channels}, channels={self.channels}, n_layers={self.n_layers}, "
                f"n_classes={self.n_classes}, output={self.output!r}, image_size={self.image_size}")

    def _network(self, x, cond=None):
        h = self.stack(x, cond)                     # pixel (i, j) has seen x_<(i, j) only
        return self.conv_out(relu(self.head(relu(h))))

    def reach(self):
        """Exactly (up, left, right) = (P + 1, P + 1, P), P = sum of the blocks' half-widths p.

        Each block's vertical stack adds p rows up and p columns either side, so the last
        one has seen P rows up and P columns either side, and reaches the horizontal stack
        shifted down one row: P + 1 up, P right. The horizontal stack adds p columns left
        per block, p + 1 for the first (type A excludes the pixel itself): P + 1 left.
        The shift is paid once, not per block."""
        total = self.first_kernel_size // 2 + (self.kernel_size // 2) * (self.n_layers - 1)
        return total + 1, total + 1, total

    def _activation_cache(self, n, cond, image_size):
        """The vertical stack cached per row, the horizontal stack per pixel
        (``pixelcnn_sampler.GatedPixelCNNCache``)."""
        return pixelcnn_sampler.GatedPixelCNNCache(self, n, image_size, cond)


PAPER_CONFIG = dict(
    # van den Oord et al. 2016c report CIFAR-10 / ImageNet bits/dim, not binarized MNIST;
    # for MNIST we use the PixelCNN set-up of 2016b (published PixelCNN: 81.30 nats) with
    # the gated stack in place of the residual blocks. UNCERTAIN: depth/width (15 gated
    # layers of 64 maps, a 7x7 first layer, 3x3 after; the paper's ImageNet model has 20
    # layers, 384 maps, 5x5), optimiser and batch size are our choices.
    model=dict(in_channels=1, channels=64, n_layers=15, kernel_size=3, first_kernel_size=7, head_channels=64,
               output="bernoulli", image_size=(28, 28)),
    data="binarized_mnist",
    optimizer=dict(name="Adam", lr=1e-3),
    batch_size=16,
    epochs=50,
    evaluation="exact test NLL in nats, mean over the 10k binarized MNIST test images",
    published_nll=None,
)


def reproduce(epochs=None, data_path=None, n_train=None, n_test=None, batch_size=None, seed=0, progress=False,
              **model_overrides):
    """Train the PAPER_CONFIG gated PixelCNN on statically binarized MNIST; returns test NLL
    (nats), the learning curve and the wall time (see ``pixelcnn.train_and_evaluate``)."""
    config = dict(PAPER_CONFIG, model=dict(PAPER_CONFIG["model"], **model_overrides))
    model = GatedPixelCNN(**config["model"], rng=backend.rng(seed))
    return train_and_evaluate(model, config, epochs, data_path, n_train, n_test, batch_size, seed, progress)
