"""Glow builder (Kingma & Dhariwal 2018, "Glow: Generative flow with invertible 1x1
convolutions"), beside RealNVP's in realnvp.py:

    image_glow(event_shape=(1, 28, 28), n_scales=2, n_steps=4, hidden_channels=32, ...)

returning a ``Flow`` (base N(0, I)). The lectures name Glow among the flow models
(isachenko-l07, the Flow++ results table and the summary list) but do not derive it; the
layers it is built from are derived in Real NVP's part of the intro lecture (part II,
"Non-volume preserving (NVP) transformation", eq. 40-41, and "Implementation": squeeze,
factor-out).
"""
from tinydgm.models.flows.base import Compose, Flow, Inverse
from tinydgm.models.flows.coupling import AffineCoupling, channel_mask
from tinydgm.models.flows.image import ActNormTransform, InvertibleConv1x1, MultiScale, Squeeze
from tinydgm.nn.conditioners import CNNConditioner

__all__ = ["image_glow"]


def _positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"image_glow: {name} must be a positive int, got {value!r}")
    return value


def glow_step(shape, cnn, rng=None, dtype=None, device=None):
    """One step of flow (Glow, fig. 2a, table 1) on (C, H, W) images, C even:

        act-norm:      y = s * x + b per channel,                log|det| = H W sum_c log|s_c|
        1x1 conv:      y_ij = W x_ij at every pixel,             log|det| = H W log|det W|
        affine coupl.: x_a, x_b = split(x);  (log s, t) = NN(x_b);
                       y_a = s * x_a + t,  y_b = x_b,             log|det| = sum log|s|

    The coupling halves the channels (``channel_mask``), always the same way: the learned
    1x1 convolution before it does the mixing that Real NVP's alternating masks did.
    """
    kw = dict(dtype=dtype, device=device)
    conditioner = CNNConditioner(shape[0], shape[0], rng=rng, **cnn, **kw)
    return Compose([ActNormTransform(shape[0], **kw), InvertibleConv1x1(shape[0], rng=rng, **kw),
                    AffineCoupling(channel_mask(shape, **kw), conditioner)])


def image_glow(event_shape=(1, 28, 28), n_scales=2, n_steps=4, hidden_channels=32, n_blocks=0, kernel_size=3,
               rng=None, dtype=None, device=None):
    """The multi-scale Glow of Kingma & Dhariwal 2018 (sec. 3, fig. 2b) on (C, H, W) images:

        levels 1 .. L-1:  squeeze -> n_steps steps of flow -> split (half the channels factored out)
        level L:          squeeze -> n_steps steps of flow

    with L = n_scales and each step ``glow_step``: act-norm (sec. 3.1; data-dependent
    initialisation: the first batch comes out with zero mean and unit variance per channel),
    invertible 1x1 convolution (sec. 3.2, eq. 9-10, LU form: log|det| = h w log|det W| =
    h w sum log|s|), affine coupling (sec. 3.3, eq. 11-14). For 1 x 28 x 28 MNIST with
    n_scales=2: 1x28x28 -> 4x14x14 (2x14x14 factored out) -> 8x7x7.

    Built on ``MultiScale``: levels 1 .. L-1 are its scales; level L is its final block,
    squeeze -> steps -> unsqueeze. The unsqueeze only hands back the (C, H, W) layout
    MultiScale packs; it is a fixed permutation of i.i.d. N(0, 1) latents (log-det 0), so
    the density is that of Glow's last level.

    Differences from the paper (CPU-sized, stated): conditioners are ``CNNConditioner``
    (k x k conv -> n_blocks ResNet blocks -> zero-initialised k x k conv, so every coupling
    starts as the identity; log s = scale * tanh(.), not Glow's sigmoid(. + 2); the
    default n_blocks=0 leaves out the 1x1 convolution Glow's has in the middle), with
    hidden_channels instead of 512; factored-out latents have the standard normal prior
    (Real NVP's), not Glow's learned conditional prior. Returns ``Flow(MultiScale(...),
    event_shape)``.
    """
    event_shape = tuple(event_shape)
    if len(event_shape) != 3:
        raise ValueError(f"image_glow: event_shape must be (C, H, W), got {event_shape}")
    n_scales = _positive_int(n_scales, "n_scales")
    n_steps = _positive_int(n_steps, "n_steps")
    c, h, w = event_shape
    if h % 2 ** n_scales or w % 2 ** n_scales:
        raise ValueError(f"image_glow: n_scales={n_scales} squeezes {n_scales} times: height and width must be "
                         f"divisible by {2 ** n_scales}, got event_shape {event_shape}")
    cnn = dict(hidden_channels=hidden_channels, n_blocks=n_blocks, kernel_size=kernel_size)
    kw = dict(cnn=cnn, rng=rng, dtype=dtype, device=device)
    levels = []
    for _ in range(n_scales):
        c, h, w = 4 * c, h // 2, w // 2
        levels.append([Squeeze()] + [glow_step((c, h, w), **kw) for _ in range(n_steps)])
        c //= 2
    final = Compose(levels.pop() + [Inverse(Squeeze())])
    return Flow(MultiScale([Compose(level) for level in levels], final, event_shape), event_shape)
