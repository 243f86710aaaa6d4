"""Sequential sampling of PixelCNN-type models (van den Oord et al. 2016b, sec. 3.5 and
2016c; intro lecture part III: "efficient parallel training, but sampling remains
sequential and slow").

    x_1 ~ p(x_1),  x_2 ~ p(x_2 | x_1),  ...,  x_D ~ p(x_D | x_<D)        (lecture eq. 42)

in raster order over the pixels (and, for colour-ordered models, R then G then B inside
a pixel). Two loops over the same conditionals:

naive   one full forward pass of the network per pixel (per colour group): H W passes
        over the whole (n, C, H, W) batch. The reference.
fast    the receptive-field window: the logits at (i, j) depend only on the inputs in
        rows i - up .. i and columns j - left .. j + right (``reach``, from the masks and
        the depth), so each step runs the same network, with the same zero padding, on
        that crop of the batch and reads the logits at (i, j). Positions near the crop's
        artificial edges compute wrong activations, but none of them lies in the cone of
        (i, j): layer l is exact on the crop shrunk by the reach of layers 1..l, and
        (i, j) is what remains. Cost per pixel: one forward pass over
        (up + 1) x (left + right + 1) positions instead of H x W, so the speed-up is
        about H W / ((up + 1)(left + right + 1)) for shallow networks and tends to 1 when
        the receptive field covers the image. (The alternative, caching every layer's
        activations and computing each layer at the one new position per step, does
        O(network / (H W)) work per pixel; it is not implemented here.)

Randomness is an input: the caller draws uniforms u (n, C, H, W) once from its seeded
generator, and both loops turn the conditional at (c, i, j) into a value with u[:, c, i, j]:

    Bernoulli     x = 1[u < sigmoid(logit)]
    categorical   x = min{k : u < F(k)},  F(k) = sum_{l <= k} softmax(logits)_l   (inverse CDF)

so fast and naive give identical samples whenever they compute the same logits. The
crop's convolutions are smaller matrix products than the full image's and may round
differently in the last bit; the samples can then differ only where u falls within that
rounding distance of p (about 1e-16 relative in float64, 1e-7 in float32).

This is engine/xp code under ``no_grad`` (the work is in the convolutions), not a Numba
kernel: the same code runs batched on the GPU for CuPy arrays.
"""
from tinydgm import backend
from tinydgm.autodiff.core import no_grad

__all__ = ["draw_bernoulli", "draw_categorical", "crop_window", "sample_naive", "sample_fast", "sample"]


def draw_bernoulli(logits, u):
    """x = 1[u < sigmoid(l)], in float64 (so that float32 rounding of p cannot flip a draw
    between samplers computing the same logits)."""
    xp = backend.xp_of(logits)
    l = logits.astype("float64")
    # sigmoid without overflow: exp of -|l| only
    e = xp.exp(-xp.abs(l))
    p = xp.where(l >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
    return (u < p).astype("float64")


def draw_categorical(logits, u):
    """Inverse CDF: x = #{k : F(k) <= u} (clipped to K - 1 against rounding of F(K-1) < 1),
    with logits (..., K) and u (...)."""
    xp = backend.xp_of(logits)
    l = logits.astype("float64")
    p = xp.exp(l - l.max(axis=-1, keepdims=True))
    cdf = xp.cumsum(p, axis=-1) / p.sum(axis=-1, keepdims=True)
    k = (cdf <= u[..., None]).sum(axis=-1)
    return xp.minimum(k, logits.shape[-1] - 1).astype("float64")


def crop_window(i, j, height, width, reach):
    """Rows r0..i and columns c0..c1-1 of the image that can influence pixel (i, j), given
    reach = (up, left, right); returns (r0, c0, c1)."""
    up, left, right = reach
    return max(0, i - up), max(0, j - left), min(width, j + right + 1)


def _pixel_logits(logits, channels, i, j):
    """logits (n, C, H, W) or (n, C, K, H, W) -> (n, len(channels)[, K]) at pixel (i, j)."""
    return logits[:, channels, ..., i, j]


def sample_naive(logits_fn, u, n_levels, channel_groups, dtype):
    """Reference loop: a full forward pass per pixel and colour group.

    logits_fn(x) -> logits array (n, C, H, W) (Bernoulli, n_levels = 2) or (n, C, K, H, W);
    x holds the levels drawn so far (zeros elsewhere) in ``dtype``. channel_groups: slices of
    channels drawn together (one per colour for colour-ordered models, all channels at
    once otherwise). Returns x (n, C, H, W) as levels in ``dtype``.
    """
    return _loop(logits_fn, u, n_levels, channel_groups, dtype, reach=None)


def sample_fast(logits_fn, u, n_levels, channel_groups, dtype, reach):
    """The receptive-field-window loop (module docstring); same arguments as
    ``sample_naive`` plus reach = (up, left, right)."""
    return _loop(logits_fn, u, n_levels, channel_groups, dtype, reach=reach)


def sample(logits_fn, u, n_levels, channel_groups, dtype, method="fast", reach=None):
    if method == "naive":
        return sample_naive(logits_fn, u, n_levels, channel_groups, dtype)
    if method == "fast":
        if reach is None:
            raise ValueError("pixelcnn_sampler.sample: method='fast' needs reach = (up, left, right)")
        return sample_fast(logits_fn, u, n_levels, channel_groups, dtype, reach)
    raise ValueError(f'pixelcnn_sampler.sample: method must be "fast" or "naive", got {method!r}')


def _loop(logits_fn, u, n_levels, channel_groups, dtype, reach):
    xp = backend.xp_of(u)
    n, n_channels, height, width = u.shape
    draw = draw_bernoulli if n_levels == 2 else draw_categorical
    x = xp.zeros((n, n_channels, height, width), dtype=dtype)
    with no_grad():
        for i in range(height):
            for j in range(width):
                for channels in channel_groups:         # colour groups in order: later ones read earlier
                    if reach is None:                   # naive: the whole image
                        r0 = c0 = 0
                        window = x
                    else:                               # fast: the receptive-field window of (i, j)
                        r0, c0, c1 = crop_window(i, j, height, width, reach)
                        window = xp.ascontiguousarray(x[:, :, r0:i + 1, c0:c1])
                    logits = _pixel_logits(logits_fn(window), channels, i - r0, j - c0)
                    x[:, channels, i, j] = draw(logits, u[:, channels, i, j]).astype(dtype)
    return x
