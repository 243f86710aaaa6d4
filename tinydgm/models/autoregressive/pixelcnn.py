"""PixelCNN (van den Oord, Kalchbrenner & Kavukcuoglu 2016, "Pixel Recurrent Neural
Networks", sec. 3.5, Table 1, Figure 5; intro lecture part III, eq. 42):

    p(x) = prod_{i=1}^{D} p(x_i | x_<i)        pixels in raster order (row by row)

All D conditionals come from one pass of a convolutional network whose convolutions are
masked (``tinydgm.nn.MaskedConv2d``) so that the logits at pixel i see x_<i only:

    x --7x7 masked conv, type A--> 2h maps
      --[residual block] x n_residual-->              (Figure 5, every conv type B)
            ReLU, 1x1 conv 2h -> h, ReLU, 3x3 conv h -> h, ReLU, 1x1 conv h -> 2h, + input
      --ReLU, 1x1 conv, ReLU, 1x1 conv--> logits      (Table 1: "2 layers of ReLU + 1x1 conv")

``channels`` is the residual stream's width 2h. Outputs:

    "bernoulli"        binary images, one logit l per subpixel, p(x_i = 1 | x_<i) = sigmoid(l)
    "categorical256"   8-bit images given as integer levels 0..255, 256 logits per subpixel,
                       p(x_i = k | x_<i) = softmax(logits)_k; the network reads x / 255

With ``in_channels`` = 3 the masks use the RGB channel-group rule (R, then G given R, then
B given R and G; ``pixelcnn_mask``), so every hidden width must be divisible by 3.

Limitations: the stack of masked 3x3 convolutions has the blind spot (above-right pixels
beyond the first diagonal are never seen; ``GatedPixelCNN`` removes it); no class
conditioning (use ``GatedPixelCNN``).

Sampling: ``tinydgm.kernels.pixelcnn_sampler`` (naive: one full pass per pixel; window: one
pass over the receptive-field window of each pixel; fast: every layer's activation map is
cached and each activation computed once, at its own pixel's step: about one forward
pass per image in all).
"""
import time

from tinydgm import backend
from tinydgm.autodiff.core import Tensor, no_grad, tensor
from tinydgm.autodiff.elementwise import relu
from tinydgm.distributions import Bernoulli, Categorical
from tinydgm.evaluate import bits_per_dim
from tinydgm.kernels import pixelcnn_sampler
from tinydgm.models.protocol import as_samples
from tinydgm.nn.masked_conv import MaskedConv2d
from tinydgm.nn.module import Module, ModuleList

__all__ = ["PixelCNN", "ResidualBlock", "AutoregressiveImageModel", "PAPER_CONFIG", "reproduce",
           "train_and_evaluate"]

OUTPUTS = {"bernoulli": 2, "categorical256": 256}


class AutoregressiveImageModel(Module):
    """What PixelCNN and GatedPixelCNN share: the output distribution, log_prob, bits/dim,
    loss and sampling. A subclass defines ``_network(x_in, cond)`` (N, C * K_out, H, W),
    ``reach()`` and ``colour_ordered``."""

    colour_ordered = False

    def _setup(self, in_channels, output, image_size, n_classes=None):
        if output not in OUTPUTS:
            raise ValueError(f"{type(self).__name__}: output must be one of {tuple(OUTPUTS)}, got {output!r}")
        if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
            raise ValueError(f"{type(self).__name__}: in_channels must be a positive int, got {in_channels!r}")
        self.in_channels, self.output = in_channels, output
        self.n_levels = OUTPUTS[output]
        self.n_logits = 1 if output == "bernoulli" else self.n_levels     # logits per subpixel
        self.image_size = tuple(image_size)
        self.n_classes = n_classes

    # --- data in
    @property
    def dtype(self):
        return self.parameters()[0].dtype

    @property
    def device(self):
        return self.parameters()[0].device

    def _images(self, x):
        """x as a Tensor (N, C, H, W) on the model's device: accepts (N, C, H, W), (N, H, W)
        for C = 1, and flat (N, C * H * W) rows for the model's ``image_size``."""
        if not isinstance(x, Tensor):
            x = tensor(x, device=self.device)
        c = self.in_channels
        if x.ndim == 2:
            h, w = self.image_size
            if x.shape[1] != c * h * w:
                raise ValueError(f"{type(self).__name__}: flat images must have {c} x {h} x {w} = {c * h * w} "
                                 f"columns (image_size={self.image_size}), got shape {x.shape}")
            x = x.reshape(x.shape[0], c, h, w)
        elif x.ndim == 3 and c == 1:
            x = x.reshape(x.shape[0], 1, x.shape[1], x.shape[2])
        if x.ndim != 4 or x.shape[1] != c:
            raise ValueError(f"{type(self).__name__}: images must have shape (N, {c}, H, W)"
                             f"{' or (N, H, W)' if c == 1 else ''}, got {x.shape}")
        return x

    def _as_float(self, x):
        """Integer data (uint8 images from the loaders) as constant floats in the model's dtype."""
        if backend.is_floating(x.dtype):
            return x if x.dtype == self.dtype else x.astype(self.dtype)
        return Tensor(x.data.astype(self.dtype))

    def _levels(self, x):
        """Integer levels (N, C, H, W) for the categorical log_prob, checked."""
        k = x.data
        if backend.is_floating(k.dtype):
            xp = backend.xp_of(k)
            if not bool((xp.round(k) == k).all()):
                raise ValueError(f"{type(self).__name__}.log_prob: categorical256 images must hold integer "
                                 "levels 0..255, got non-integer values")
            k = k.astype("int64")
        return Tensor(k)

    def _cond(self, labels, n):
        """One-hot class vectors c (n, n_classes) (the paper's h), or None."""
        if self.n_classes is None:
            if labels is not None:
                raise ValueError(f"{type(self).__name__}: labels given but the model has no class "
                                 "conditioning (n_classes=None)")
            return None
        if labels is None:
            raise ValueError(f"{type(self).__name__}: a class-conditional model needs labels (n_classes="
                             f"{self.n_classes})")
        labels = labels.data if isinstance(labels, Tensor) else labels
        xp = backend.module_for_device(self.device)
        labels = backend.to_device(backend.as_array(labels), self.device).astype("int64").reshape(-1)
        if labels.size == 1 and n != 1:
            labels = xp.full((n,), int(labels[0]), dtype="int64")
        if labels.shape != (n,):
            raise ValueError(f"{type(self).__name__}: labels must have shape ({n},), got {labels.shape}")
        if bool(((labels < 0) | (labels >= self.n_classes)).any()):
            raise ValueError(f"{type(self).__name__}: labels must lie in [0, {self.n_classes})")
        return Tensor(xp.eye(self.n_classes, dtype=self.dtype)[labels])

    # --- the conditionals
    def logits(self, x, labels=None):
        """Logits of every conditional p(x_i | x_<i), in one pass: (N, C, H, W) for
        "bernoulli", (N, C, 256, H, W) for "categorical256" (x as levels; the network reads
        x / 255). Differentiable w.r.t. floating x (for the Jacobian tests)."""
        x = self._images(x)
        return self._logits(x, self._cond(labels, x.shape[0]))

    def _logits(self, x, cond):
        x_in = self._as_float(x)
        if self.n_levels > 2:
            x_in = x_in * (1.0 / (self.n_levels - 1))
        out = self._network(x_in, cond)
        if self.n_logits == 1:
            return out
        n, _, h, w = out.shape
        return out.reshape(n, self.in_channels, self.n_logits, h, w)

    def log_prob(self, x, labels=None):
        """ln p(x) = sum_i ln p(x_i | x_<i) in nats, per image (N,)."""
        x = self._images(x)
        logits = self.logits(x, labels)
        if self.n_logits == 1:
            log_p = Bernoulli(logits=logits).log_prob(self._as_float(x))
        else:   # (N, C, K, H, W) -> (N, C, H, W, K): one categorical per subpixel
            log_p = Categorical(logits.transpose(0, 1, 3, 4, 2)).log_prob(self._levels(x))
        return log_p.sum(axis=(1, 2, 3))

    def bits_per_dim(self, x, labels=None):
        """-ln p(x) / (D ln 2), D = C H W subpixels."""
        x = self._images(x)
        return bits_per_dim(-self.log_prob(x, labels), x.shape[1] * x.shape[2] * x.shape[3])

    def loss(self, batch):
        """Mean negative log-likelihood in nats; batch = x or (x, labels)."""
        if isinstance(batch, tuple):
            x, labels = batch
            return -self.log_prob(x, labels).mean()
        return -self.log_prob(batch).mean()

    # --- sampling
    def reach(self):
        """(up, left, right): how far the logits at (i, j) can look (rows i - up .. i,
        columns j - left .. j + right)."""
        raise NotImplementedError

    def activation_cache(self, n, labels=None, image_size=None):
        """The per-layer activation cache that the "fast" sampler fills
        (``tinydgm.kernels.pixelcnn_sampler``), for n images."""
        size = self.image_size if image_size is None else tuple(image_size)
        return self._activation_cache(n, self._cond(labels, n), size)

    def _activation_cache(self, n, cond, image_size):
        raise NotImplementedError

    def sample(self, n, rng=None, method="fast", labels=None, image_size=None):
        """n images (n, C, H, W), a Tensor on the model's device (no graph): 0.0/1.0 in the
        model's dtype (bernoulli) or int64 levels (categorical256). Uniforms u (n, C, H, W)
        are drawn once from ``rng`` (a NumPy Generator; default ``td.seed``'s) and fed to the
        sampling loop, so every method gives the same images for the same seed
        (``tinydgm.kernels.pixelcnn_sampler``):

            "fast"    per-layer activation caching, each activation computed once
            "window"  one pass over each pixel's receptive-field window
            "naive"   one full forward pass per pixel (the reference)
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"{type(self).__name__}.sample: n must be a positive int, got {n!r}")
        if method not in ("fast", "window", "naive"):
            raise ValueError(f'{type(self).__name__}.sample: method must be "fast", "window" or "naive", '
                             f"got {method!r}")
        rng = backend.default_generator() if rng is None else rng
        h, w = self.image_size if image_size is None else image_size
        u = backend.to_device(rng.random((n, self.in_channels, h, w)), self.device)
        cond = self._cond(labels, n)
        c = self.in_channels
        groups = [slice(g, g + 1) for g in range(c)] if self.colour_ordered else [slice(0, c)]

        def logits_fn(x):
            return self._logits(Tensor(x), cond).data
        network = self._activation_cache(n, cond, (h, w)) if method == "fast" else None
        x = pixelcnn_sampler.sample(logits_fn, u, self.n_levels, groups, self.dtype, method,
                                    self.reach() if method == "window" else None, network)
        return as_samples(x, None if self.n_logits == 1 else "int64")


class ResidualBlock(Module):
    """The PixelCNN residual block (van den Oord et al. 2016b, Figure 5), every conv type B:

        y = x + W_3 * relu(W_2 * relu(W_1 * relu(x)))
            W_1 1x1 (2h -> h), W_2 3x3 masked (h -> h), W_3 1x1 (2h <- h)
    """

    def __init__(self, channels, kernel_size=3, color_channels=1, rng=None, dtype=None, device=None):
        super().__init__()
        hidden = channels // 2
        conv = dict(color_channels=color_channels, rng=rng, dtype=dtype, device=device)
        self.reduce = MaskedConv2d(channels, hidden, 1, "B", **conv)
        self.conv = MaskedConv2d(hidden, hidden, kernel_size, "B", **conv)
        self.expand = MaskedConv2d(hidden, channels, 1, "B", **conv)

    def forward(self, x):
        return x + self.expand(relu(self.conv(relu(self.reduce(relu(x))))))


class PixelCNN(AutoregressiveImageModel):
    """The PixelCNN of van den Oord et al. 2016b (module docstring).

    in_channels: C (1 for MNIST; 3 uses the RGB channel-group masks).
    channels: width 2h of the residual stream (the blocks' bottleneck is h = channels // 2).
    n_residual: number of residual blocks (3x3 type-B convolutions inside).
    kernel_size: the first, type-A convolution (7 in the paper).
    head_channels: width of the two ReLU + 1x1 output layers (default: channels).
    output: "bernoulli" or "categorical256".
    image_size: (H, W) for sampling and for flat (N, C H W) inputs; the network itself is
        fully convolutional and takes any size.
    """

    def __init__(self, in_channels=1, channels=64, n_residual=5, kernel_size=7, head_channels=None,
                 output="bernoulli", image_size=(28, 28), residual_kernel_size=3, rng=None, dtype=None,
                 device=None):
        super().__init__()
        self._setup(in_channels, output, image_size)
        if isinstance(n_residual, bool) or not isinstance(n_residual, int) or n_residual < 0:
            raise ValueError(f"PixelCNN: n_residual must be an int >= 0, got {n_residual!r}")
        if channels % 2 or (channels // 2) % in_channels:
            raise ValueError(f"PixelCNN: channels must be even and channels // 2 divisible by in_channels="
                             f"{in_channels} (colour groups), got channels={channels}")
        head_channels = channels if head_channels is None else head_channels
        self.colour_ordered = in_channels > 1
        self.channels, self.n_residual, self.kernel_size = channels, n_residual, kernel_size
        self.residual_kernel_size = residual_kernel_size
        conv = dict(color_channels=in_channels, rng=rng, dtype=dtype, device=device)
        self.conv_in = MaskedConv2d(in_channels, channels, kernel_size, "A", **conv)
        self.blocks = ModuleList([ResidualBlock(channels, residual_kernel_size, **conv) for _ in range(n_residual)])
        self.head = MaskedConv2d(channels, head_channels, 1, "B", **conv)
        self.conv_out = MaskedConv2d(head_channels, in_channels * self.n_logits, 1, "B", **conv)

    def extra_repr(self):
        return (f"in_channels={self.in_channels}, channels={self.channels}, n_residual={self.n_residual}, "
                f"output={self.output!r}, image_size={self.image_size}")

    def _network(self, x, cond=None):
        a = self.conv_in(x)                         # type A: sees x_<i only
        for block in self.blocks:
            a = block(a)                            # type B: x_<i stays x_<i
        return self.conv_out(relu(self.head(relu(a))))

    def reach(self):
        r = self.kernel_size // 2 + self.n_residual * (self.residual_kernel_size // 2)
        return r, r, r

    def _activation_cache(self, n, cond, image_size):
        return pixelcnn_sampler.PixelCNNCache(self, n, image_size)


# ----------------------------------------------------------------------------- the paper's set-up

PAPER_CONFIG = dict(
    # van den Oord et al. 2016b, Table 6: PixelCNN 81.30 nats on statically binarized MNIST
    # (the Larochelle & Murray 2011 split: 50k train, 10k valid, 10k test, never re-binarized).
    # Architecture from Table 1 / Figure 5 with a sigmoid (Bernoulli) output for MNIST.
    # UNCERTAIN: the paper does not spell out the MNIST PixelCNN's depth and width in a form
    # we can quote; 15 residual blocks of width 2h = 64 (h = 32) is our reading of a "deep
    # PixelCNN" for 28x28 and a common reimplementation choice, not a quoted figure. The
    # optimiser (the paper trains with RMSProp/Adam-type updates; batch size and schedule
    # for MNIST are not given) is likewise our choice: Adam, lr 1e-3, batch 16.
    model=dict(in_channels=1, channels=64, n_residual=15, kernel_size=7, head_channels=64,
               output="bernoulli", image_size=(28, 28)),
    data="binarized_mnist",          # tinydgm.data.load_binarized_mnist: train / valid / test
    optimizer=dict(name="Adam", lr=1e-3),
    batch_size=16,
    epochs=50,                       # until the validation NLL stops improving (uncertain)
    evaluation="exact test NLL in nats (sum of the 784 Bernoulli conditionals), mean over the 10k test set",
    published_nll=81.30,
)


def train_and_evaluate(model, config, epochs=None, data_path=None, n_train=None, n_test=None,
                       batch_size=None, seed=0, progress=False):
    """Train ``model`` on statically binarized MNIST with ``config`` (PAPER_CONFIG-like) and
    return dict(test_nll, valid_nll, history, seconds, config). ``data_path="embedded"``
    uses the embedded 1000/500-image subset binarized once (for runs without MNIST files);
    n_train / n_test cut the splits for short runs."""
    from tinydgm import data as td_data
    from tinydgm import optim
    from tinydgm.train import fit

    if data_path == "embedded":
        train = td_data.load_embedded_binarized("train")["x"].reshape(-1, 784)
        test = td_data.load_embedded_binarized("test")["x"].reshape(-1, 784)
        valid = test
    else:
        arrays = td_data.load_binarized_mnist(path=data_path, download=False, progress=progress)
        train, valid, test = arrays["train"], arrays["valid"], arrays["test"]
    train = train[:n_train] if n_train else train
    test = test[:n_test] if n_test else test
    valid = valid[:n_test] if n_test else valid
    opt = config["optimizer"]
    optimizer = getattr(optim, opt["name"])(model.parameters(), lr=opt["lr"])
    epochs = config["epochs"] if epochs is None else epochs
    batch_size = config["batch_size"] if batch_size is None else batch_size
    start = time.perf_counter()
    history = fit(model, train, optimizer, epochs=epochs, batch_size=batch_size, seed=seed,
                  valid_data=valid, progress=progress)
    seconds = time.perf_counter() - start
    return dict(test_nll=evaluate_nll(model, test), valid_nll=history["valid_loss"][-1], history=history,
                seconds=seconds, config=config)


def evaluate_nll(model, x, batch_size=100):
    """Mean exact negative log-likelihood in nats over the rows of ``x``."""
    total = 0.0
    with no_grad():
        for start in range(0, len(x), batch_size):
            total += -float(model.log_prob(x[start:start + batch_size]).sum().item())
    return total / len(x)


def reproduce(epochs=None, data_path=None, n_train=None, n_test=None, batch_size=None, seed=0, progress=False,
              **model_overrides):
    """Train the PAPER_CONFIG PixelCNN on statically binarized MNIST and return test NLL
    (nats), the learning curve (``history``) and the wall time. Short runs: pass epochs,
    n_train, n_test (and model overrides such as n_residual=3)."""
    config = dict(PAPER_CONFIG, model=dict(PAPER_CONFIG["model"], **model_overrides))
    model = PixelCNN(**config["model"], rng=backend.rng(seed))
    result = train_and_evaluate(model, config, epochs, data_path, n_train, n_test, batch_size, seed, progress)
    result["published_nll"] = PAPER_CONFIG["published_nll"]
    result["nll_gap"] = result["test_nll"] - PAPER_CONFIG["published_nll"]
    return result

