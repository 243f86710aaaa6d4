"""PixelRNN with Row LSTM layers (van den Oord, Kalchbrenner & Kavukcuoglu 2016, "Pixel
Recurrent Neural Networks", sec. 3.1, 3.3, 3.4, Table 1; intro lecture part III, "Pixel
Recurrent/Convolutional Neural Networks" and "Pixel RNN: Bi-directional LSTM"), small scale:

    p(x) = prod_{i=1}^{D} p(x_i | x_<i)        pixels in raster order (row by row)

The Row LSTM processes the image one row at a time, top to bottom, computing the whole
row's states at once. With h_i, c_i the states of row i (maps of width W) and a_i row i of
the layer's input:

    [a_i, a_f, a_g, a_o] = K_ss * h_{i-1} + K_is * a_i        (sec. 3.1, gates i, f, g, o)
    c_i = sigmoid(a_f) . c_{i-1} + sigmoid(a_i) . tanh(a_g)
    h_i = sigmoid(a_o) . tanh(c_i)

K_is: a masked 1x3 convolution along the row (type B: columns j - 1 and j; the column
j + 1 is masked out), computed for every row at once before the loop; K_ss: an unmasked
1x3 convolution of the previous row's state (columns j - 1, j, j + 1). Both are written as
one matmul of the stacked shifted copies ("taps"). The state at (i, j) therefore sees a
triangle above the pixel (row i - d over columns j - d .. j + d), and the gates are the
LSTM's (``tinydgm.nn.recurrent.lstm_gates``). The network (the architecture table, Table 1, at MNIST size):

    x --k x k masked conv, type A--> C maps
      --[Row LSTM, residual: a + h] x n_layers-->       every K_is of type B (residual: sec. 3.3)
      --ReLU, 1x1 conv, ReLU, 1x1 conv--> logits          (two ReLU + 1x1 conv output layers)

Outputs as ``PixelCNN``: "bernoulli" (binary images) or "categorical256" (8-bit levels).
Training is sequential over the H rows (the slide's "slow sequential training process"),
unlike the PixelCNN's single pass; sampling ("fast") keeps each layer's state of the row
above and recomputes only the current row for each pixel (``RowLSTMCache``), one row pass
per pixel instead of a full image pass ("naive").

Limitations: the Row LSTM's receptive field is the paper's triangle: in its own row a pixel
sees only kernel_size // 2 + n_layers pixels to the left (the Diagonal BiLSTM of sec. 3.2,
which sees the whole context, is not implemented: it is the bidirectional layer that the
intro lecture's slide draws); one colour channel (no RGB channel masks)."""
import math

from tinydgm import backend
from tinydgm.autodiff.core import Tensor, no_grad
from tinydgm.autodiff.elementwise import relu
from tinydgm.autodiff.linalg import matmul
from tinydgm.autodiff.shape import concatenate, pad, stack
from tinydgm.models.autoregressive.pixelcnn import AutoregressiveImageModel
from tinydgm.nn import init
from tinydgm.nn.linear import Linear
from tinydgm.nn.masked_conv import MaskedConv2d
from tinydgm.nn.module import Module, ModuleList, Parameter
from tinydgm.nn.recurrent import lstm_gates

__all__ = ["PixelRNN", "RowLSTM", "RowLSTMCache"]


def _left_taps(a):
    """[a at column j - 1, a at column j] along the last axis, for a (..., W, C): the masked
    1x3 input-to-state taps of type B (column j + 1 is masked out; zeros left of the image)."""
    widths = [(0, 0)] * (a.ndim - 2) + [(1, 0), (0, 0)]
    shifted = pad(a, widths)[..., :-1, :]
    return concatenate([shifted, a], axis=-1)


def _row_taps(h):
    """[h at j - 1, h at j, h at j + 1] along the last axis, for h (N, W, C): the unmasked
    1x3 state-to-state taps (zeros beyond the image's edges)."""
    padded = pad(h, [(0, 0), (1, 1), (0, 0)])
    return concatenate([padded[:, :-2], padded[:, 1:-1], padded[:, 2:]], axis=-1)


class RowLSTM(Module):
    """One Row LSTM layer (module docstring) on channel-last maps a (N, H, W, C), with C
    state channels and the residual connection: returns a + h (N, H, W, C)."""

    def __init__(self, channels, rng=None, dtype=None, device=None):
        super().__init__()
        self.channels = channels
        bound = 1.0 / math.sqrt(channels)

        def uniform(*shape):
            return Parameter(init.uniform(shape, -bound, bound, rng, dtype, device))
        self.weight_is = uniform(2 * channels, 4 * channels)       # K_is: taps j - 1, j
        self.bias = uniform(4 * channels)
        self.weight_ss = uniform(3 * channels, 4 * channels)       # K_ss: taps j - 1, j, j + 1

    def extra_repr(self):
        return f"{self.channels}"

    def input_to_state(self, a):
        """K_is * a for every row at once: (..., W, C) -> (..., W, 4 C)."""
        return matmul(_left_taps(a), self.weight_is) + self.bias

    def row_step(self, is_row, h, c):
        """(h_i, c_i) from K_is * a_i (N, W, 4 C) and the previous row's (h_{i-1}, c_{i-1}) (N, W, C)."""
        return lstm_gates(is_row + matmul(_row_taps(h), self.weight_ss), c)

    def zero_state(self, n, width, like):
        xp = backend.get_array_module(like.data)
        zeros = Tensor(xp.zeros((n, width, self.channels), dtype=like.dtype))
        return zeros, zeros

    def forward(self, a):
        n, height, width, _ = a.shape
        is_all = self.input_to_state(a)
        h, c = self.zero_state(n, width, a)
        rows = []
        for i in range(height):                     # the sequential part: one row after the other
            h, c = self.row_step(is_all[:, i], h, c)
            rows.append(h)
        return a + stack(rows, axis=1)


class PixelRNN(AutoregressiveImageModel):
    """PixelRNN with Row LSTM layers (module docstring).

    channels: the width C of the residual stream and of every Row LSTM state.
    n_layers: Row LSTM layers. kernel_size: the first, type-A convolution (7 in the paper).
    head_channels: width of the two ReLU + 1x1 output layers (default: channels).
    output: "bernoulli" or "categorical256". image_size: (H, W) for sampling and flat inputs.
    """

    def __init__(self, in_channels=1, channels=16, n_layers=2, kernel_size=7, head_channels=None,
                 output="bernoulli", image_size=(28, 28), rng=None, dtype=None, device=None):
        super().__init__()
        if in_channels != 1:
            raise ValueError(f"PixelRNN: in_channels must be 1 (no colour channel masks), got {in_channels!r}")
        self._setup(in_channels, output, image_size)
        if isinstance(n_layers, bool) or not isinstance(n_layers, int) or n_layers < 1:
            raise ValueError(f"PixelRNN: n_layers must be an int >= 1, got {n_layers!r}")
        head_channels = channels if head_channels is None else head_channels
        self.channels, self.n_layers, self.kernel_size = channels, n_layers, kernel_size
        make = dict(rng=rng, dtype=dtype, device=device)
        self.conv_in = MaskedConv2d(in_channels, channels, kernel_size, "A", **make)
        self.layers = ModuleList([RowLSTM(channels, **make) for _ in range(n_layers)])
        self.head = Linear(channels, head_channels, **make)             # 1x1 convolutions, channel-last
        self.conv_out = Linear(head_channels, in_channels * self.n_logits, **make)

    def extra_repr(self):
        return (f"channels={self.channels}, n_layers={self.n_layers}, kernel_size={self.kernel_size}, "
                f"output={self.output!r}, image_size={self.image_size}")

    @property
    def dtype(self):
        return self.conv_in.weight.dtype        # (gradcheck may swap the Parameters for plain Tensors)

    @property
    def device(self):
        return self.conv_in.weight.device

    def _network(self, x, cond=None):
        a = self.conv_in(x).transpose(0, 2, 3, 1)          # (N, H, W, C): type A, sees x_<i only
        for layer in self.layers:
            a = layer(a)                                    # row by row; K_is of type B keeps x_<i
        logits = self._output_layers(a)
        return logits.transpose(0, 3, 1, 2)

    def _output_layers(self, a):
        return self.conv_out(relu(self.head(relu(a))))

    def reach(self):
        raise NotImplementedError("PixelRNN: the Row LSTM's receptive field reaches every row above, so "
                                  'there is no window; sample with method="fast" or "naive"')

    def sample(self, n, rng=None, method="fast", labels=None, image_size=None):
        """n images (n, 1, H, W) (module docstring): "fast" keeps the Row LSTM states of the row
        above (``RowLSTMCache``), "naive" runs the full network once per pixel; both turn the
        same uniforms into the same images."""
        if method == "window":
            self.reach()
        return super().sample(n, rng, method, labels, image_size)

    def _activation_cache(self, n, cond, image_size):
        return RowLSTMCache(self, n, image_size)


class RowLSTMCache:
    """The "fast" sampler's state for a PixelRNN (the interface of the caches in
    ``tinydgm.kernels.pixelcnn_sampler``: ``start_row``, ``logits_at``, ``write_input``).

    For row i it keeps, per layer, the states (h_{i-1}, c_{i-1}) of the finished row above;
    ``logits_at(i, j)`` runs row i only: the type-A convolution on the rows i - k // 2 .. i
    (the rows below are masked out), each layer's ``row_step`` and the head."""

    def __init__(self, model, n, image_size):
        self.model, self.n = model, n
        self.height, self.width = tuple(image_size)
        like = model.conv_in.weight
        xp = backend.get_array_module(like.data)
        self.x = xp.zeros((n, 1, self.height, self.width), dtype=like.dtype)
        self.scale = None if model.n_levels == 2 else 1.0 / (model.n_levels - 1)
        self.states = [layer.zero_state(n, self.width, like) for layer in model.layers]

    def start_row(self, i):
        """Row i - 1 is complete: keep its states for row i."""
        if i > 0:
            _, self.states = self._row(i - 1)

    def write_input(self, i, j, channels, values):
        self.x[:, channels, i, j] = values if self.scale is None else values * self.scale

    def logits_at(self, i, j):
        logits, _ = self._row(i)
        logits = logits.data[:, j]                              # (n, C K)
        return logits if self.model.n_logits == 1 else logits.reshape(self.n, 1, self.model.n_logits)

    def _row(self, i):
        """Logits of row i (n, W, C K) and every layer's (h_i, c_i), from the cached states."""
        model = self.model
        with no_grad():
            top = max(0, i - model.kernel_size // 2)
            a = model.conv_in(Tensor(self.x[:, :, top:i + 1]))[:, :, -1].transpose(0, 2, 1)   # (n, W, C)
            states = []
            for layer, (h, c) in zip(model.layers, self.states):
                h, c = layer.row_step(layer.input_to_state(a), h, c)
                states.append((h, c))
                a = a + h
            return model._output_layers(a), states
