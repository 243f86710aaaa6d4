"""Sequential sampling of PixelCNN-type models (van den Oord et al. 2016b, sec. 3.5 and
2016c; intro lecture part III: "efficient parallel training, but sampling remains
sequential and slow").

    x_1 ~ p(x_1),  x_2 ~ p(x_2 | x_1),  ...,  x_D ~ p(x_D | x_<D)        (intro lecture eq. 42)

in raster order over the pixels (and, for colour-ordered models, R then G then B inside
a pixel). Three loops over the same conditionals:

naive   one full forward pass of the network per pixel (per colour group): H W passes
        over the whole (n, C, H, W) batch. The reference.
window  the receptive-field window: the logits at (i, j) depend only on the inputs in
        rows i - up .. i and columns j - left .. j + right (``reach``, from the masks and
        the depth), so each step runs the same network, with the same zero padding, on
        that crop of the batch and reads the logits at (i, j). Positions near the crop's
        artificial edges compute wrong activations, but none of them lies in the cone of
        (i, j): layer l is exact on the crop shrunk by the reach of layers 1..l, and
        (i, j) is what remains. Cost per pixel: one pass over (up + 1)(left + right + 1)
        positions instead of H W (9 x 17 = 153 of 784 for the MNIST PixelCNN: at most
        5x). Works for any network (it only calls ``logits_fn``).
fast    per-layer activation caching (``PixelCNNCache``, ``GatedPixelCNNCache``): every
        activation at every position is computed exactly ONCE, at the step where it
        becomes final, so a whole sample costs about one forward pass instead of H W.

Why each activation is final at its own pixel's step (the receptive-field argument).
Call position p = (i, j) and "before p" the positions earlier in raster order. A masked
convolution's output at p reads its input only at positions at or before p: type A
(first layer) reads rows i - k//2 .. i - 1 (all k columns, up to j + k//2) and row i up
to column j - 1, type B also (i, j) itself. The 1x1 convolutions, ReLUs and residual
adds read p only. By induction over the layers, every activation at p depends on x_<p
only (that is the autoregressive property), and it reads lower-layer activations only
at positions <= p. So, stepping through the pixels in raster order, at step p:

    1. x_<p is sampled, hence every activation at p is final (it will never change);
    2. the activations it reads at positions < p were computed at their own steps and
       are cached; those at p are computed in this same step, lower layers first.

A step therefore evaluates each layer at the ONE position p: for a k x k masked
convolution, gather its unmasked taps (the k//2 rows above, full width, and the centre
row up to the centre) from the cached, zero-padded input map of that layer, one (n, T C)
@ (T C, C_out) product with the masked weights, then write the result at p into the next
layer's cached map. Nothing ahead of p is ever read, so the cached maps can be filled
left to right, top to bottom, exactly like the image itself. (Propagating each new pixel
forward instead, "recompute every output whose input changed", recomputes a cone that
widens by k//2 per layer, and each position many times; pulling each position once, when
it is final, is the minimum.) What must be kept: for every spatial convolution, its input
map (a 1x1 layer's input is needed at p only and is not kept).

The gated PixelCNN has two stacks (``tinydgm.nn.masked_conv.GatedBlock``). The vertical
stack at row r reads rows r - k//2 .. r of the layer below at columns up to j + k//2:
after row i - 1 it is final for the whole row i - 1, and the horizontal stack reads it
only shifted down one row. So ``start_row(i)`` computes, layer by layer, the vertical
stack's row i - 1 (a 1-row convolution of a (k//2 + 1)-row strip, with the engine's conv)
and each layer's vertical-to-horizontal term for row i; the horizontal stack, which
reads row i at columns <= j, is then pulled pixel by pixel as above.

Colour-ordered models (RGB PixelCNN) evaluate pixel p once per colour group: the group g
channels of every layer at p depend on the colours < g of x_p, so each group's pass
recomputes the layers at p with the colours drawn so far. The last group's pass leaves
every layer at p final (no layer at p reads the last colour of x_p).

Randomness is an input: the caller draws uniforms u (n, C, H, W) once from its seeded
generator, and all loops turn the conditional at (c, i, j) into a value with u[:, c, i, j]:

    Bernoulli     x = 1[u < sigmoid(logit)]
    categorical   x = min{k : u < F(k)},  F(k) = sum_{l <= k} softmax(logits)_l   (inverse CDF)

so the loops give identical samples whenever they compute the same logits. They compute
them with matrix products of different shapes (im2col over the image, the crop, or the
gathered taps), which may round differently in the last bit; samples can then differ
only where u falls within that rounding distance of p (about 1e-16 relative in float64,
1e-7 in float32).

This is backend (xp) code without a graph (the work is in small matrix products that
BLAS does better than a hand-written Numba loop), so the same loops run batched on the
GPU for CuPy arrays.
"""
from tinydgm import backend
from tinydgm.autodiff.core import Tensor, no_grad
from tinydgm.autodiff.elementwise import _sigmoid_array

__all__ = ["draw_bernoulli", "draw_categorical", "crop_window", "sample_naive", "sample_window", "sample_fast",
           "sample", "TapConv", "Pointwise", "PixelCNNCache", "GatedPixelCNNCache"]


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


# ----------------------------------------------------------------------------- the loops

def sample_naive(logits_fn, u, n_levels, channel_groups, dtype):
    """Reference loop: a full forward pass per pixel and colour group.

    logits_fn(x) -> logits array (n, C, H, W) (Bernoulli, n_levels = 2) or (n, C, K, H, W);
    x holds the levels drawn so far (zeros elsewhere) in ``dtype``. channel_groups: slices of
    channels drawn together (one per colour for colour-ordered models, all channels at
    once otherwise). Returns x (n, C, H, W) as levels in ``dtype``.
    """
    return _full_pass_loop(logits_fn, u, n_levels, channel_groups, dtype, reach=None)


def sample_window(logits_fn, u, n_levels, channel_groups, dtype, reach):
    """The receptive-field-window loop (module docstring); same arguments as
    ``sample_naive`` plus reach = (up, left, right)."""
    return _full_pass_loop(logits_fn, u, n_levels, channel_groups, dtype, reach=reach)


def sample_fast(network, u, n_levels, channel_groups, dtype):
    """The cached loop (module docstring): ``network`` is a ``PixelCNNCache`` or
    ``GatedPixelCNNCache`` built for this batch (n images of u's size); it holds every
    layer's activation maps, which are filled as the loop goes (and can be inspected
    afterwards). Same u, groups and result as ``sample_naive``."""
    xp = backend.xp_of(u)
    n, n_channels, height, width = u.shape
    if (network.n, network.height, network.width) != (n, height, width):
        raise ValueError(f"pixelcnn_sampler.sample_fast: the network cache was built for {network.n} images of "
                         f"{network.height} x {network.width}, but u has shape {u.shape}")
    draw = draw_bernoulli if n_levels == 2 else draw_categorical
    x = xp.zeros((n, n_channels, height, width), dtype=dtype)
    with no_grad():
        for i in range(height):
            network.start_row(i)
            for j in range(width):
                for channels in channel_groups:         # colour groups in order: later ones read earlier
                    logits = network.logits_at(i, j)[:, channels]
                    values = draw(logits, u[:, channels, i, j]).astype(dtype)
                    x[:, channels, i, j] = values
                    network.write_input(i, j, channels, values)
    return x


def sample(logits_fn, u, n_levels, channel_groups, dtype, method="fast", reach=None, network=None):
    """Dispatch: "naive" (logits_fn), "window" (logits_fn and reach), "fast" (network)."""
    if method == "naive":
        return sample_naive(logits_fn, u, n_levels, channel_groups, dtype)
    if method == "window":
        if reach is None:
            raise ValueError("pixelcnn_sampler.sample: method='window' needs reach = (up, left, right)")
        return sample_window(logits_fn, u, n_levels, channel_groups, dtype, reach)
    if method == "fast":
        if network is None:
            raise ValueError("pixelcnn_sampler.sample: method='fast' needs the network's activation cache")
        return sample_fast(network, u, n_levels, channel_groups, dtype)
    raise ValueError(f'pixelcnn_sampler.sample: method must be "fast", "window" or "naive", got {method!r}')


def _full_pass_loop(logits_fn, u, n_levels, channel_groups, dtype, reach):
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
                    else:                               # window: the receptive field of (i, j)
                        r0, c0, c1 = crop_window(i, j, height, width, reach)
                        window = xp.ascontiguousarray(x[:, :, r0:i + 1, c0:c1])
                    logits = _pixel_logits(logits_fn(window), channels, i - r0, j - c0)
                    x[:, channels, i, j] = draw(logits, u[:, channels, i, j]).astype(dtype)
    return x


# ----------------------------------------------------------------------------- layers at one position

def _relu(a):
    """max(a, 0) in a fresh array (the engine's relu forward)."""
    xp = backend.xp_of(a)
    return xp.maximum(a, xp.zeros_like(a))


def _gate(a):
    """tanh(a_f) * sigmoid(a_g), a = [a_f, a_g] along the last axis (the engine's ``_gate``)."""
    xp = backend.xp_of(a)
    half = a.shape[-1] // 2
    return xp.tanh(a[..., :half]) * _sigmoid_array(xp, a[..., half:])


class Pointwise:
    """A 1x1 convolution at one position: y = a @ W^T + b with a (n, C_in), W the
    (mask-multiplied) weight (C_out, C_in, 1, 1)."""

    def __init__(self, conv):
        xp = backend.xp_of(conv.weight.data)
        weight = _effective_weight(conv)
        self.matrix = xp.ascontiguousarray(weight[:, :, 0, 0].T)
        self.bias = None if conv.bias is None else conv.bias.data

    def __call__(self, a):
        y = a @ self.matrix
        if self.bias is not None:
            y += self.bias
        return y


def _effective_weight(conv):
    """W * M for a MaskedConv2d, W for a Conv2d."""
    mask = getattr(conv, "mask", None)
    return conv.weight.data if mask is None else conv.weight.data * mask


class TapConv:
    """A stride-1 convolution evaluated at one output position (i, j) at a time, reading a
    cached, zero-padded input map that is filled position by position.

    The output at (i, j) reads the padded map at (i + ki, j + kj) for each kernel tap
    (ki, kj), i.e. the input image at (i + ki - pad_top, j + kj - pad_left). Only the
    ``taps`` whose weights are not all masked out are read (for a k x k PixelCNN mask: the
    k//2 rows above at full width and the centre row up to the centre; all of them lie at
    or before (i, j) in raster order):

        y(i, j) = b + sum_{(ki, kj) in taps} W[:, :, ki, kj] z_pad(i + ki, j + kj)
                = b + gather(z_pad, taps at (i, j))  (n, T C_in)  @  W_taps  (T C_in, C_out)

    The map is kept channels-last, (n, H + pad_top, W + pad_left + pad_right, C_in), so
    that the gather is one ``take`` of T C_in flat offsets per image.
    """

    def __init__(self, weight, bias, taps, n, height, width, pad_top, pad_left, pad_right):
        xp = backend.xp_of(weight)
        c_out, c_in = weight.shape[:2]
        self.n, self.c_in, self.height, self.width = n, c_in, height, width
        self.pad_top, self.pad_left = pad_top, pad_left
        self.map = xp.zeros((n, height + pad_top, width + pad_left + pad_right, c_in), dtype=weight.dtype)
        self.flat = self.map.reshape(n, -1)                     # a view: writes to map show here
        self.row_stride = self.map.shape[2] * c_in
        tap_offsets = xp.asarray([a * self.row_stride + b * c_in for a, b in taps], dtype="int64")
        self.offsets = (tap_offsets[:, None] + xp.arange(c_in, dtype="int64")[None, :]).reshape(-1)
        ki, kj = (xp.asarray([tap[axis] for tap in taps]) for axis in (0, 1))
        w_taps = weight[:, :, ki, kj]                           # (C_out, C_in, T)
        self.matrix = xp.ascontiguousarray(w_taps.transpose(2, 1, 0).reshape(len(taps) * c_in, c_out))
        self.bias = bias

    @classmethod
    def masked(cls, conv, n, height, width):
        """For a MaskedConv2d with "same" padding: the taps its mask keeps."""
        ph, pw = conv.padding
        used = backend.to_numpy(conv.mask.any(axis=(0, 1)))     # (kH, kW) taps not masked out
        taps = [(a, b) for a in range(used.shape[0]) for b in range(used.shape[1]) if used[a, b]]
        assert all(a < ph or (a == ph and b <= pw) for a, b in taps), "the mask reads ahead of (i, j)"
        bias = None if conv.bias is None else conv.bias.data
        return cls(_effective_weight(conv), bias, taps, n, height, width, ph, pw, pw)

    def write(self, i, j, values, channels=slice(None)):
        """Store the input at image position (i, j): values (n, len(channels))."""
        self.map[:, i + self.pad_top, j + self.pad_left, channels] = values

    def at(self, i, j):
        """The output at (i, j), (n, C_out)."""
        xp = backend.xp_of(self.flat)
        patch = xp.take(self.flat, self.offsets + (i * self.row_stride + j * self.c_in), axis=1)
        y = patch @ self.matrix
        if self.bias is not None:
            y += self.bias
        return y

    def input_map(self):
        """The cached input, unpadded, as (n, C_in, H, W)."""
        z = self.map[:, self.pad_top:self.pad_top + self.height, self.pad_left:self.pad_left + self.width]
        return z.transpose(0, 3, 1, 2)


def _input_scale(model, dtype, xp):
    """The network reads levels x as x / (K - 1) for K-level outputs (``_logits``)."""
    if model.n_levels == 2:
        return None
    return xp.asarray(1.0 / (model.n_levels - 1), dtype=dtype)


# ----------------------------------------------------------------------------- PixelCNN

class PixelCNNCache:
    """The activation cache of a ``tinydgm.models.autoregressive.pixelcnn.PixelCNN`` (module docstring).

    Per pixel p = (i, j), with a the residual stream (2h channels) at p:

        a = conv_in(x)(p)                                   7x7 type A: x_<p, gathered taps
        for each residual block:
            b = relu(W_1 relu(a))                           1x1: p only; b(p) is cached
            a = a + W_3 relu(conv_3x3(b)(p))                3x3 type B: b at p and before
        logits = W_out relu(W_head relu(a))                 1x1 head

    Cached maps: x (the input of conv_in) and, per block, b (the input of its 3x3 conv).
    ``start_row`` does nothing (the model has no per-row state).
    """

    def __init__(self, model, n, image_size):
        self.n, (self.height, self.width) = n, tuple(image_size)
        self.n_channels, self.n_logits = model.in_channels, model.n_logits
        xp = backend.xp_of(model.conv_in.weight.data)
        self.scale = _input_scale(model, model.conv_in.weight.dtype, xp)
        size = (n, self.height, self.width)
        self.conv_in = TapConv.masked(model.conv_in, *size)
        self.blocks = [(Pointwise(block.reduce), TapConv.masked(block.conv, *size), Pointwise(block.expand))
                       for block in model.blocks]
        self.head, self.out = Pointwise(model.head), Pointwise(model.conv_out)

    def start_row(self, i):
        pass

    def write_input(self, i, j, channels, values):
        """x(i, j)[channels] has been drawn: store it (as the network reads it)."""
        self.conv_in.write(i, j, values if self.scale is None else values * self.scale, channels)

    def logits_at(self, i, j):
        """Every layer at (i, j), lower first; returns the logits (n, C) or (n, C, K)."""
        a = self.conv_in.at(i, j)
        for reduce, conv, expand in self.blocks:
            conv.write(i, j, _relu(reduce(_relu(a))))
            a = a + expand(_relu(conv.at(i, j)))
        logits = self.out(_relu(self.head(_relu(a))))
        return logits if self.n_logits == 1 else logits.reshape(self.n, self.n_channels, self.n_logits)

    def maps(self):
        """The cached maps as (n, C, H, W) arrays: [x as read by conv_in, b of block 1, ...]."""
        return [self.conv_in.input_map()] + [conv.input_map() for _, conv, _ in self.blocks]


# ----------------------------------------------------------------------------- Gated PixelCNN

class GatedPixelCNNCache:
    """The activation cache of a ``tinydgm.models.autoregressive.gated_pixelcnn.GatedPixelCNN`` (module
    docstring; the block is ``tinydgm.nn.masked_conv.GatedBlock``, half-width p = k // 2).

    Per row i (``start_row``), block by block, from the vertical input maps v_l:

        a_v = W_v * v_l  over rows i-1-p .. i-1            one output row, i - 1
        v_{l+1}(i - 1) = gate(a_v + V_v c)                 cached (the next block's input)
        r_l(i) = W_vh a_v + b_h + b_vh + V_h c             the horizontal stack's input from
                                                           above (shift_down; row 0: biases)
    Per pixel (i, j), from the horizontal input maps h_l (row i, columns <= j):

        a_h = W_h * h_l (i, j) + r_l(i)[j]                 type A: columns j-p-1 .. j-1,
                                                           type B: j-p .. j
        h_{l+1}(i, j) = W_o gate(a_h) (+ h_l(i, j) for residual blocks)   cached
        logits = W_out relu(W_head relu(h_L))

    v_0 = h_0 = x. The vertical maps are channels-first, padded p rows above and p columns
    either side (the engine's conv2d reads a strip of them); the horizontal maps are
    ``TapConv`` maps.
    """

    def __init__(self, model, n, image_size, cond=None):
        self.n, (self.height, self.width) = n, tuple(image_size)
        self.n_channels, self.n_logits = model.in_channels, model.n_logits
        blocks = list(model.stack.blocks)
        self.blocks = blocks
        weight = blocks[0].h_conv.weight.data
        xp = backend.xp_of(weight)
        dtype = weight.dtype
        self.scale = _input_scale(model, dtype, xp)
        h, w = self.height, self.width
        self.pads = [block.k // 2 for block in blocks]
        self.v_maps = [xp.zeros((n, block.in_channels, h + p, w + 2 * p), dtype=dtype)
                       for block, p in zip(blocks, self.pads)]
        self.h_convs, self.h_outs, self.v_to_h, self.v_conds, self.h_row_bias = [], [], [], [], []
        with no_grad():
            for block, p in zip(blocks, self.pads):
                left = p + 1 if block.mask_type == "A" else p       # type A excludes column j
                taps = [(0, kj) for kj in range(p + 1)]
                self.h_convs.append(TapConv(block.h_conv.weight.data, None, taps, n, h, w, 0, left, 0))
                self.h_outs.append(Pointwise(block.h_out))
                self.v_to_h.append(Pointwise(block.v_to_h).matrix)              # W_vh^T; its bias is in r_l
                self.v_conds.append(None if cond is None else block.v_cond(cond).data)
                row_bias = block.h_conv.bias.data + block.v_to_h.bias.data      # (2C,)
                if cond is not None:
                    row_bias = row_bias + block.h_cond(cond).data                # (n, 2C)
                self.h_row_bias.append(xp.broadcast_to(row_bias, (n, 2 * block.channels)))
        self.row_terms = [None] * len(blocks)
        self.head, self.out = Pointwise(model.head), Pointwise(model.conv_out)

    def start_row(self, i):
        """The vertical stack's row i - 1 (final once row i - 1 of x is drawn) and, from it,
        each block's row term r_l(i) for the horizontal stack of row i."""
        xp = backend.xp_of(self.v_maps[0])
        for l, (block, p) in enumerate(zip(self.blocks, self.pads)):
            bias = self.h_row_bias[l][:, None, :]                      # (n, 1, 2C)
            if i == 0:                                                 # shift_down feeds zeros to row 0
                self.row_terms[l] = xp.ascontiguousarray(xp.broadcast_to(bias, (self.n, self.width, bias.shape[-1])))
                continue
            strip = self.v_maps[l][:, :, i - 1:i + p]                  # image rows i-1-p .. i-1
            a_v = block.v_conv(Tensor(strip)).data[:, :, 0].transpose(0, 2, 1)    # (n, W, 2C): row i - 1
            if l + 1 < len(self.blocks):                               # the last block's v is never read
                a = a_v if self.v_conds[l] is None else a_v + self.v_conds[l][:, None, :]
                q = self.pads[l + 1]
                self.v_maps[l + 1][:, :, i - 1 + q, q:q + self.width] = _gate(a).transpose(0, 2, 1)
            self.row_terms[l] = a_v @ self.v_to_h[l] + bias

    def write_input(self, i, j, channels, values):
        values = values if self.scale is None else values * self.scale
        p = self.pads[0]
        self.v_maps[0][:, channels, i + p, j + p] = values
        self.h_convs[0].write(i, j, values, channels)

    def logits_at(self, i, j):
        h = None
        last = len(self.blocks) - 1
        for l, block in enumerate(self.blocks):
            a_h = self.h_convs[l].at(i, j) + self.row_terms[l][:, j]
            h_new = self.h_outs[l](_gate(a_h))
            if block.residual:
                h_new += h
            if l < last:
                self.h_convs[l + 1].write(i, j, h_new)
            h = h_new
        logits = self.out(_relu(self.head(_relu(h))))
        return logits if self.n_logits == 1 else logits.reshape(self.n, self.n_channels, self.n_logits)

    def maps(self):
        """(vertical, horizontal): the cached inputs of each block as (n, C, H, W) arrays
        (vertical rows up to the last one computed)."""
        vertical = [v[:, :, p:, p:p + self.width] for v, p in zip(self.v_maps, self.pads)]
        return vertical, [conv.input_map() for conv in self.h_convs]
