"""Convolutions, pooling and nearest upsampling on NCHW tensors.

Layout follows PyTorch: images are (N, C, H, W); ``conv2d`` weights are
(C_out, C_in / groups, kH, kW) and ``conv_transpose2d`` weights (C_in, C_out / groups, kH, kW).
With stride s, padding p and dilation d (per axis) a convolution reads

    y[n, o, h, w] = b[o] + sum_{c, i, j} W[o, c, i, j] x_pad[n, g(o) C_g + c, s h + d i, s w + d j]
    H_out = floor((H + 2 p - d (kH - 1) - 1) / s) + 1

(cross-correlation, as in every deep learning library; g(o) is the group of channel o).

How it is computed (im2col, ``tinydgm.kernels.im2col``): for a chunk of m images the
column matrix cols[c, i, j, k, h, w] = x_pad[n0 + k, c, s h + d i, s w + d j], of shape
(C kH kW, m H_out W_out), holds the images side by side, so that the convolution of the
chunk is ONE matrix product W (C_out, C kH kW) @ cols (with small outputs, 7 x 7 in a
DCGAN, one product per image would have an inner dimension of only 49). The reverse,
col2im, scatter-adds each tap's block back into the image. Both are Numba kernels on the
CPU (NumPy's strided copies are slow on short window rows) with vectorized twins for CuPy;
with stride 1 on wide images the adjoint is computed instead as a convolution with the
flipped kernel, because im2col's copy is then cheaper than col2im's scatter. On the CPU
the batch is processed in chunks of a few images so that the column buffer (and the
matrix product reading it) stays in cache and is reused instead of reallocated.

Three Functions relate the image side x and the feature side y of one convolution, and
each one's backward is written with the other two, so gradients of any order exist:

    Conv2d(x, W)            y = conv(x, W)                 im2col + GEMM
    ConvTranspose2d(y, W)   x = conv^T(y, W)  (the adjoint) GEMM + col2im
    Conv2dGradWeight(x, y)  W = sum_n y_n cols(x_n)^T      im2col + GEMM

Pools follow the same pattern: ``avg_pool2d``'s backward is its adjoint (spread each
gradient evenly over its window) whose own backward is ``avg_pool2d`` again;
``max_pool2d``'s backward scatters to the argmax and the adjoint of that scatter is a
gather at the same positions.
"""
import itertools
import operator
import threading

from tinydgm import backend
from tinydgm.autodiff.core import Function
from tinydgm.kernels import im2col

__all__ = ["conv2d", "conv_transpose2d", "avg_pool2d", "max_pool2d", "upsample_nearest2d"]

# im2col works on chunks of images whose column matrix fills about this many bytes. On the
# CPU: small enough to stay in cache between the copy and the GEMM, big enough for BLAS to
# run at full speed (measured: 4 MB beats 1, 16 and 64 MB). On the GPU: big chunks, but a
# bounded workspace.
_CPU_CHUNK_BYTES = 1 << 22
_GPU_CHUNK_BYTES = 1 << 28
# Scratch buffers (column matrices, images side by side) up to this size are kept from call
# to call on the CPU, per thread: a fresh multi-megabyte NumPy temporary often comes back
# from the OS as new zeroed pages, one page fault per 4 KB (measured: 2,500 faults per
# DCGAN round in the forward convolutions alone). CuPy has its own memory pool.
_WORKSPACE_MAX_BYTES = 1 << 25
_workspace = threading.local()


def _xp(x):
    return backend.xp_of(x)


# ----------------------------------------------------------------------------- geometry

def _int_pair(value, name, op):
    """An int or a pair of ints as a pair (rows, columns)."""
    try:
        pair = (operator.index(value),) * 2 if not isinstance(value, (tuple, list)) else \
            tuple(operator.index(v) for v in value)
    except TypeError:
        raise TypeError(f"{op}: {name} must be an int or a pair of ints, got {value!r}") from None
    if len(pair) != 2:
        raise ValueError(f"{op}: {name} must be an int or a pair of ints, got {value!r}")
    return pair


class _Geometry:
    """Stride, padding and dilation (pairs) and groups of one convolution or pool."""

    __slots__ = ("stride", "padding", "dilation", "groups")

    def __init__(self, stride, padding, dilation=(1, 1), groups=1):
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups

    @classmethod
    def parse(cls, op, stride, padding, dilation=1, groups=1):
        stride = _int_pair(stride, "stride", op)
        padding = _int_pair(padding, "padding", op)
        dilation = _int_pair(dilation, "dilation", op)
        if min(stride) < 1 or min(dilation) < 1 or min(padding) < 0:
            raise ValueError(f"{op}: stride and dilation must be >= 1 and padding >= 0, got "
                             f"stride={stride}, padding={padding}, dilation={dilation}")
        if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
            raise ValueError(f"{op}: groups must be a positive int, got {groups!r}")
        return cls(stride, padding, dilation, groups)

    def span(self, kernel):
        """Extent of the dilated kernel: d (k - 1) + 1 per axis."""
        return tuple(d * (k - 1) + 1 for d, k in zip(self.dilation, kernel))

    def padded(self, image):
        return tuple(n + 2 * p for n, p in zip(image, self.padding))

    def out_size(self, image, kernel):
        """H_out = floor((H + 2 p - d (k - 1) - 1) / s) + 1 per axis."""
        return tuple((n - e) // s + 1 for n, e, s in zip(self.padded(image), self.span(kernel), self.stride))

    def windows(self, kernel, out):
        """(i, j, index): for each kernel offset, the slice of x_pad that it reads,
        index = (:, :, d_h i : ... : s_h, d_w j : ... : s_w) with out[0] x out[1] entries."""
        (sh, sw), (dh, dw) = self.stride, self.dilation
        for i, j in itertools.product(range(kernel[0]), range(kernel[1])):
            rows = slice(dh * i, dh * i + sh * (out[0] - 1) + 1, sh)
            cols = slice(dw * j, dw * j + sw * (out[1] - 1) + 1, sw)
            yield i, j, (slice(None), slice(None), rows, cols)

    def interior(self, image):
        """Index of the unpadded image inside x_pad."""
        (ph, pw), (h, w) = self.padding, image
        return slice(None), slice(None), slice(ph, ph + h), slice(pw, pw + w)


def _chunk_size(n, bytes_per_image, array):
    """How many images per im2col chunk."""
    limit = _CPU_CHUNK_BYTES if backend.device_of(array) == "cpu" else _GPU_CHUNK_BYTES
    return max(1, min(n, limit // max(bytes_per_image, 1)))


def _chunks(n, size):
    for n0 in range(0, n, size):
        yield slice(n0, min(n, n0 + size))


def _scratch(slot, count, like):
    """A flat scratch array of ``count`` entries of like's dtype: on the CPU, the same memory
    each time for the same ``slot`` (grown when too small); its contents are garbage."""
    xp = _xp(like)
    if backend.device_of(like) != "cpu" or count * like.dtype.itemsize > _WORKSPACE_MAX_BYTES:
        return xp.empty(count, dtype=like.dtype)
    buffers = _workspace.__dict__.setdefault("buffers", {})
    key = (slot, like.dtype.str)
    buf = buffers.get(key)
    if buf is None or buf.size < count:
        buf = buffers[key] = xp.empty(count, dtype=like.dtype)
    return buf[:count]


def _prefix(buf, shape):
    """A contiguous array of ``shape`` at the start of the flat buffer ``buf`` (the last
    chunk is smaller than the others)."""
    count = 1
    for d in shape:
        count *= d
    return buf[:count].reshape(shape)


def _im2col_chunks(x, kernel, geom, out):
    """(rows, cols) per chunk of m images: cols[c, t, k, q] = x_pad[n0 + k, c, s h + d i, s w + d j]
    for tap t = (i, j) and output q = (h, w), shape (C, kH kW, m, H_out W_out), in one reused buffer."""
    n, c = x.shape[:2]
    per_image = c * kernel[0] * kernel[1] * out[0] * out[1]
    size = _chunk_size(n, per_image * x.dtype.itemsize, x)
    return im2col.im2col_chunks(x, size, kernel, out, geom.stride, geom.padding, geom.dilation,
                                buf=_scratch("cols", per_image * size, x))


# ----------------------------------------------------------------------------- stride 1: the padded grid
#
# With stride 1, output (h, w) of tap (i, j) reads x_pad[h + d i, w + d j]. Lay a chunk's padded images
# side by side as one flat row per channel, pad[c, k Hp Wp + r Wp + u] = x_pad[n0 + k, c, r, u]: then the
# tap's column row is the contiguous slice pad[c, shift : shift + m Hp Wp] with shift = d i Wp + d j,
# evaluated at every position of the padded grid (k, r, u), of which the outputs are the corner
# r < H_out, u < W_out (the other positions read past their image and are dropped). Copying whole rows
# instead of runs of W_out entries makes the column matrix about 1.7x faster to build on 28 x 28 images;
# the products grow by the extra positions, so the grid is used only where they are few.

_GRID_MAX_EXTRA = 1.25       # padded positions per output position, at most
_GRID_MIN_ROW = 16           # shorter output rows: the gather kernel of tinydgm.kernels.im2col is faster


def _use_grid(x, geom, out):
    """Whether conv(x) with this geometry runs on the padded grid (see above)."""
    if geom.stride != (1, 1) or backend.device_of(x) != "cpu" or out[1] < _GRID_MIN_ROW:
        return False
    hp, wp = geom.padded(x.shape[2:])
    return hp * wp <= _GRID_MAX_EXTRA * out[0] * out[1]


def _grid_chunks(x, kernel, geom):
    """(rows, cols) per chunk of m images: cols[c, t, k Hp Wp + r Wp + u] = x_pad[n0 + k, c, r + d i, u + d j]
    for tap t = (i, j) (the padded grid's positions; beyond an image's own block: that of the next image
    or zeros), shape (C, kH kW, m Hp Wp), in one reused buffer."""
    xp = _xp(x)
    n, c, h, w = x.shape
    (kh, kw), (dh, dw), (ph, pw) = kernel, geom.dilation, geom.padding
    hp, wp = geom.padded((h, w))
    reach = dh * (kh - 1) * wp + dw * (kw - 1)              # the largest shift
    size = _chunk_size(n, c * kh * kw * hp * wp * x.dtype.itemsize, x)
    cols_buf = _scratch("cols", c * kh * kw * size * hp * wp, x)
    pad_buf = _scratch("grid", c * (size * hp * wp + reach), x)
    for n0 in range(0, n, size):
        rows = slice(n0, min(n, n0 + size))
        m = rows.stop - rows.start
        span = m * hp * wp
        pad = _prefix(pad_buf, (c, span + reach))
        pad[...] = 0                  # borders and tail: the buffer is shared with other geometries
        pad[:, :span].reshape(c, m, hp, wp)[:, :, ph:ph + h, pw:pw + w] = x[rows].swapaxes(0, 1)
        cols = _prefix(cols_buf, (c, kh * kw, span))
        for i in range(kh):
            for j in range(kw):
                shift = dh * i * wp + dw * j
                cols[:, i * kw + j] = pad[:, shift:shift + span]
        yield rows, cols


def _images_side_by_side(y, rows, groups, buf):
    """y[rows] (m, C, H, W) as (groups, C / groups, m H W), the layout of the column matrix,
    copied into the flat buffer ``buf``."""
    m, c = rows.stop - rows.start, y.shape[1]
    side = _prefix(buf, (c, m, y.shape[2] * y.shape[3]))
    side[...] = y[rows].reshape(m, c, -1).swapaxes(0, 1)
    return side.reshape(groups, c // groups, -1)


def _conv_forward(x, w, geom, b=None):
    """y = conv(x, W) + b: per group, W (C_out/g, C/g kH kW) @ cols (C/g kH kW, m H_out W_out),
    one product for a chunk of m images, whose result (C_out, m, H_out, W_out) is then
    written image by image into y."""
    xp = _xp(x)
    n = x.shape[0]
    c_out, c_g, kh, kw = w.shape
    g = geom.groups
    out = geom.out_size(x.shape[2:], (kh, kw))
    w_mat = w.reshape(g, c_out // g, c_g * kh * kw)
    y = xp.empty((n, c_out) + out, dtype=x.dtype)
    if _use_grid(x, geom, out):
        return _conv_forward_grid(x, w_mat, geom, (kh, kw), out, y, b)
    side_buf = None
    for rows, cols in _im2col_chunks(x, (kh, kw), geom, out):
        m = rows.stop - rows.start
        if side_buf is None:             # sized by the first (largest) chunk
            side_buf = _scratch("side", c_out * m * out[0] * out[1], x)
        y_side = _prefix(side_buf, (g, c_out // g, m * out[0] * out[1]))
        xp.matmul(w_mat, cols.reshape(g, c_g * kh * kw, -1), out=y_side)
        y[rows] = y_side.reshape((c_out, m) + out).swapaxes(0, 1)
        if b is not None:                # while the chunk is still in cache
            y[rows] += b.reshape(1, -1, 1, 1)
    return y


def _conv_forward_grid(x, w_mat, geom, kernel, out, y, b):
    """_conv_forward on the padded grid (stride 1): the product runs over every grid position and
    the outputs are its corner r < H_out, u < W_out."""
    xp = _xp(x)
    g, c_out_g, k_g = w_mat.shape
    hp, wp = geom.padded(x.shape[2:])
    side_buf = None
    for rows, cols in _grid_chunks(x, kernel, geom):
        m = rows.stop - rows.start
        if side_buf is None:             # sized by the first (largest) chunk
            side_buf = _scratch("side", g * c_out_g * m * hp * wp, x)
        y_grid = _prefix(side_buf, (g, c_out_g, m * hp * wp))
        xp.matmul(w_mat, cols.reshape(g, k_g, -1), out=y_grid)
        y[rows] = y_grid.reshape(g * c_out_g, m, hp, wp)[:, :, :out[0], :out[1]].swapaxes(0, 1)
        if b is not None:
            y[rows] += b.reshape(1, -1, 1, 1)
    return y


def _conv_adjoint(y, w, geom, image):
    """x = conv^T(y, W) for an image of size ``image``: cols = W^T @ y (per group, a chunk
    of images side by side), then col2im adds each tap's block into its window of x."""
    xp = _xp(y)
    n, c_out, ho, wo = y.shape
    _, c_g, kh, kw = w.shape
    g = geom.groups
    if geom.out_size(image, (kh, kw)) != (ho, wo):    # guards the callers' size bookkeeping
        raise ValueError(f"an image of size {tuple(image)} gives outputs of size "
                         f"{geom.out_size(image, (kh, kw))}, not {(ho, wo)}")
    full = geom.span((kh, kw))
    if geom.stride == (1, 1) and all(p <= e - 1 for p, e in zip(geom.padding, full)) and wo >= 16:
        # With stride 1 the adjoint is itself a convolution, of y padded by d (k - 1) - p with
        # the kernel flipped and its in/out channels swapped (per group); on wide images
        # im2col (a plain copy) + GEMM beats GEMM + col2im (a scatter).
        w_flip = w.reshape(g, c_out // g, c_g, kh, kw).swapaxes(1, 2)[..., ::-1, ::-1]
        flipped = _Geometry((1, 1), tuple(e - 1 - p for p, e in zip(geom.padding, full)), geom.dilation, g)
        return _conv_forward(y, xp.ascontiguousarray(w_flip).reshape(g * c_g, c_out // g, kh, kw), flipped)
    k_g, p = c_g * kh * kw, ho * wo
    w_t = w.reshape(g, c_out // g, k_g).swapaxes(1, 2)            # (g, C/g kH kW, C_out/g)
    x = xp.empty((n, c_g * g) + tuple(image), dtype=y.dtype)
    size = _chunk_size(n, g * k_g * p * y.dtype.itemsize, y)
    cols_buf, side_buf = _scratch("cols", g * k_g * size * p, y), _scratch("side", c_out * size * p, y)
    for rows in _chunks(n, size):
        m = rows.stop - rows.start
        cols = _prefix(cols_buf, (g, k_g, m * p))
        xp.matmul(w_t, _images_side_by_side(y, rows, g, side_buf), out=cols)
        im2col.col2im(cols.reshape(c_g * g, kh * kw, m, p), x, rows, (kh, kw), (ho, wo),
                      geom.stride, geom.padding, geom.dilation)
    return x


def _conv_weight_grad(x, gy, kernel, geom):
    """dW[o, c, i, j] = sum_{n, h, w} gy[n, o, h, w] x_pad[n, c, s h + d i, s w + d j]
    (per group): per chunk of m images side by side, gy (C_out/g, m P) @ cols^T (m P, C/g kH kW),
    computed as its transpose cols @ gy^T when C/g kH kW is the larger side (BLAS runs the
    product faster with the larger dimension as its rows)."""
    xp = _xp(x)
    c_out = gy.shape[1]
    g = geom.groups
    c_g = x.shape[1] // g
    k_g = c_g * kernel[0] * kernel[1]
    transposed = k_g > c_out // g
    dw = xp.zeros((g, k_g, c_out // g) if transposed else (g, c_out // g, k_g), dtype=x.dtype)
    if _use_grid(x, geom, gy.shape[2:]):
        _conv_weight_grad_grid(x, gy, kernel, geom, dw, transposed)
        return (xp.ascontiguousarray(dw.swapaxes(1, 2)) if transposed else dw).reshape((c_out, c_g) + tuple(kernel))
    side_buf = None
    for rows, cols in _im2col_chunks(x, kernel, geom, gy.shape[2:]):
        if side_buf is None:             # sized by the first (largest) chunk
            side_buf = _scratch("side", gy[rows].size, gy)
        cols, gy_side = cols.reshape(g, k_g, -1), _images_side_by_side(gy, rows, g, side_buf)
        dw += xp.matmul(cols, gy_side.swapaxes(1, 2)) if transposed else xp.matmul(gy_side, cols.swapaxes(1, 2))
    if transposed:
        dw = xp.ascontiguousarray(dw.swapaxes(1, 2))
    return dw.reshape((c_out, c_g) + tuple(kernel))


def _conv_weight_grad_grid(x, gy, kernel, geom, dw, transposed):
    """_conv_weight_grad on the padded grid (stride 1), accumulated into dw: gy placed at the grid's
    output corner, zeros at the other positions, so the product sums over the outputs only."""
    xp = _xp(x)
    g = dw.shape[0]
    c_out, (ho, wo) = gy.shape[1], gy.shape[2:]
    hp, wp = geom.padded(x.shape[2:])
    grid_buf = None
    for rows, cols in _grid_chunks(x, kernel, geom):
        m = rows.stop - rows.start
        if grid_buf is None:             # sized by the first (largest) chunk
            grid_buf = _scratch("side", c_out * m * hp * wp, gy)
        gy_grid = _prefix(grid_buf, (c_out, m, hp, wp))
        gy_grid[...] = 0
        gy_grid[:, :, :ho, :wo] = gy[rows].swapaxes(0, 1)
        cols, gy_grid = cols.reshape(g, -1, m * hp * wp), gy_grid.reshape(g, c_out // g, -1)
        dw += xp.matmul(cols, gy_grid.swapaxes(1, 2)) if transposed else xp.matmul(gy_grid, cols.swapaxes(1, 2))


# ----------------------------------------------------------------------------- convolutions

class Conv2d(Function):
    """y = conv(x, W) + b. Backward: dx = conv^T(dy, W) (the adjoint, sized back to x),
    dW = Conv2dGradWeight(x, dy), db = sum of dy over (N, H, W)."""

    def __init__(self, geom):
        self.geom = geom

    @classmethod
    def name(cls):
        return "conv2d"

    def forward(self, x, w, b=None):
        return _conv_forward(x, w, self.geom, b)

    def backward(self, gy):
        x, w = self.inputs[:2]
        need = self.needs_input_grad
        gx = ConvTranspose2d(self.geom, x.shape[2:])(gy, w) if need[0] else None
        gw = Conv2dGradWeight(self.geom, w.shape[2:])(x, gy) if need[1] else None
        if len(self.inputs) == 2:
            return gx, gw
        return gx, gw, (gy.sum(axis=(0, 2, 3)) if need[2] else None)


class ConvTranspose2d(Function):
    """x = conv^T(y, W) + b, the adjoint of conv(., W) for images of size ``image``.
    Backward: dy = conv(dx, W), dW = Conv2dGradWeight(dx, y), db = sum of dx."""

    def __init__(self, geom, image):
        self.geom, self.image = geom, tuple(image)

    @classmethod
    def name(cls):
        return "conv_transpose2d"

    def forward(self, y, w, b=None):
        x = _conv_adjoint(y, w, self.geom, self.image)
        if b is not None:
            x += b.reshape(1, -1, 1, 1)
        return x

    def backward(self, gx):
        y, w = self.inputs[:2]
        need = self.needs_input_grad
        gy = Conv2d(self.geom)(gx, w) if need[0] else None
        gw = Conv2dGradWeight(self.geom, w.shape[2:])(gx, y) if need[1] else None
        if len(self.inputs) == 2:
            return gy, gw
        return gy, gw, (gx.sum(axis=(0, 2, 3)) if need[2] else None)


class Conv2dGradWeight(Function):
    """dW = Conv2dGradWeight(x, dy), the weight gradient of conv, bilinear in (x, dy):
    <V, dW> = <dy, conv(x, V)> = <x, conv^T(dy, V)>, so its backward for an incoming V is
    d/dx = conv^T(dy, V) and d/ddy = conv(x, V)."""

    def __init__(self, geom, kernel):
        self.geom, self.kernel = geom, tuple(kernel)

    @classmethod
    def name(cls):
        return "conv2d_grad_weight"

    def forward(self, x, gy):
        return _conv_weight_grad(x, gy, self.kernel, self.geom)

    def backward(self, gw):
        x, gy = self.inputs
        gx = ConvTranspose2d(self.geom, x.shape[2:])(gy, gw) if self.needs_input_grad[0] else None
        ggy = Conv2d(self.geom)(x, gw) if self.needs_input_grad[1] else None
        return gx, ggy


def _check_conv_args(op, x, weight, bias, groups, in_name, out_channels):
    """Shapes and dtypes shared by conv2d and conv_transpose2d; returns (C_in, C_out)."""
    if x.ndim != 4:
        raise ValueError(f"{op}: input must have 4 dimensions (N, C, H, W), got shape {x.shape}")
    if weight.ndim != 4:
        raise ValueError(f"{op}: weight must have 4 dimensions {in_name}, got shape {weight.shape}")
    if x.dtype != weight.dtype or (bias is not None and bias.dtype != x.dtype):
        dtypes = f"input {x.dtype}, weight {weight.dtype}" + ("" if bias is None else f", bias {bias.dtype}")
        raise TypeError(f"{op}: input, weight and bias must have the same dtype, got {dtypes}")
    if not backend.is_floating(x.dtype):
        raise TypeError(f"{op}: needs floating tensors, got dtype {x.dtype}")
    if bias is not None and bias.shape != (out_channels,):
        raise ValueError(f"{op}: bias must have shape ({out_channels},) (one per output channel), "
                         f"got {bias.shape}")


def _check_kernel_fits(op, x, kernel, geom):
    span = geom.span(kernel)
    padded = geom.padded(x.shape[2:])
    if span[0] > padded[0] or span[1] > padded[1]:
        raise ValueError(f"{op}: kernel {tuple(kernel)} with dilation {geom.dilation} spans {span}, "
                         f"larger than the padded input {padded} (input {x.shape[2:]}, padding {geom.padding})")


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D cross-correlation of x (N, C_in, H, W) with weight (C_out, C_in/groups, kH, kW).

        y[n, o, h, w] = bias[o] + sum_{c, i, j} weight[o, c, i, j] x_pad[n, c', s h + d i, s w + d j]

    with c' running over the input channels of o's group. stride, padding and dilation
    are ints or (rows, columns) pairs; the padding is zeros on both sides. Output size
    H_out = floor((H + 2 padding - dilation (kH - 1) - 1) / stride) + 1, like PyTorch.
    """
    geom = _Geometry.parse("conv2d", stride, padding, dilation, groups)
    _check_conv_args("conv2d", x, weight, bias, groups, "(C_out, C_in/groups, kH, kW)", weight.shape[0])
    c_in, c_out = x.shape[1], weight.shape[0]
    if c_out % groups:
        raise ValueError(f"conv2d: groups={groups} does not divide the {c_out} output channels "
                         f"(weight shape {weight.shape})")
    if c_in % groups:
        raise ValueError(f"conv2d: groups={groups} does not divide the {c_in} input channels "
                         f"(input shape {x.shape})")
    if c_in != weight.shape[1] * groups:
        raise ValueError(f"conv2d: input has {c_in} channels but weight expects {weight.shape[1] * groups} "
                         f"(weight shape {weight.shape}, groups={groups})")
    _check_kernel_fits("conv2d", x, weight.shape[2:], geom)
    inputs = (x, weight) if bias is None else (x, weight, bias)
    return Conv2d(geom)(*inputs)


def conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0, dilation=1, groups=1):
    """Transposed convolution: the adjoint (gradient) of ``conv2d`` with respect to its input.

    x (N, C_in, H, W), weight (C_in, C_out/groups, kH, kW) as in PyTorch. Each input pixel
    scatters weight-times-value into a kH x kW window of the output (stride s apart), and
    ``padding`` is cut from every side of the result:

        H_out = (H - 1) s - 2 padding + d (kH - 1) + output_padding + 1

    output_padding (< stride) adds rows/columns at the bottom/right, to pick which of the
    input sizes that a strided conv2d maps to H the result should have. For matching
    arguments <conv2d(u, W), v> = <u, conv_transpose2d(v, W)>.
    """
    op = "conv_transpose2d"
    geom = _Geometry.parse(op, stride, padding, dilation, groups)
    out_pad = _int_pair(output_padding, "output_padding", op)
    _check_conv_args(op, x, weight, bias, groups, "(C_in, C_out/groups, kH, kW)",
                     weight.shape[1] * groups if weight.ndim == 4 else None)
    c_in = x.shape[1]
    if c_in % groups:
        raise ValueError(f"{op}: groups={groups} does not divide the {c_in} input channels (input shape {x.shape})")
    if c_in != weight.shape[0]:
        raise ValueError(f"{op}: input has {c_in} channels but weight expects {weight.shape[0]} "
                         f"(weight shape {weight.shape}, groups={groups})")
    if min(out_pad) < 0 or out_pad[0] >= geom.stride[0] or out_pad[1] >= geom.stride[1]:
        raise ValueError(f"{op}: output_padding must be >= 0 and smaller than the stride, "
                         f"got output_padding={out_pad}, stride={geom.stride}")
    span = geom.span(weight.shape[2:])
    image = tuple((n - 1) * s - 2 * p + e + q
                  for n, s, p, e, q in zip(x.shape[2:], geom.stride, geom.padding, span, out_pad))
    if min(image) < 1:
        raise ValueError(f"{op}: the output would have size {image} (input {x.shape[2:]}, kernel "
                         f"{weight.shape[2:]}, stride {geom.stride}, padding {geom.padding}); reduce the padding")
    inputs = (x, weight) if bias is None else (x, weight, bias)
    return ConvTranspose2d(geom, image)(*inputs)


# ----------------------------------------------------------------------------- pooling

def _pool_geometry(op, x, kernel_size, stride, padding):
    if x.ndim != 4:
        raise ValueError(f"{op}: input must have 4 dimensions (N, C, H, W), got shape {x.shape}")
    kernel = _int_pair(kernel_size, "kernel_size", op)
    geom = _Geometry.parse(op, kernel if stride is None else stride, padding)
    if min(kernel) < 1:
        raise ValueError(f"{op}: kernel_size must be >= 1, got {kernel}")
    if geom.padding[0] > kernel[0] // 2 or geom.padding[1] > kernel[1] // 2:
        raise ValueError(f"{op}: padding {geom.padding} must be at most half the kernel size {kernel}")
    _check_kernel_fits(op, x, kernel, geom)
    return kernel, geom


def _spread(gy, kernel, geom, image, weight=None):
    """The adjoint of reading windows: x_pad[window (i, j)] += gy (times weight(i, j)),
    summed over the kernel offsets, padding cut off."""
    xp = _xp(gy)
    n, c = gy.shape[:2]
    x_pad = xp.zeros((n, c) + geom.padded(image), dtype=gy.dtype)
    for i, j, window in geom.windows(kernel, gy.shape[2:]):
        x_pad[window] += gy if weight is None else weight(i, j)
    return x_pad[geom.interior(image)].copy() if geom.padding != (0, 0) else x_pad


def _padded(x, geom, fill):
    if geom.padding == (0, 0):
        return x
    x_pad = _xp(x).full(x.shape[:2] + geom.padded(x.shape[2:]), fill, dtype=x.dtype)
    x_pad[geom.interior(x.shape[2:])] = x
    return x_pad


class AvgPool2d(Function):
    """y[n, c, h, w] = mean of x_pad over the window (zero padding counts, as PyTorch's
    default count_include_pad=True). Linear: the backward is the adjoint AvgPool2dAdjoint."""

    def __init__(self, kernel, geom):
        self.kernel, self.geom = kernel, geom

    @classmethod
    def name(cls):
        return "avg_pool2d"

    def forward(self, x):
        x_pad = _padded(x, self.geom, 0)
        out = self.geom.out_size(x.shape[2:], self.kernel)
        y = _xp(x).zeros(x.shape[:2] + out, dtype=x.dtype)
        for _, _, window in self.geom.windows(self.kernel, out):
            y += x_pad[window]
        y *= 1.0 / (self.kernel[0] * self.kernel[1])
        return y

    def backward(self, gy):
        x, = self.inputs
        return AvgPool2dAdjoint(self.kernel, self.geom, x.shape[2:])(gy)


class AvgPool2dAdjoint(Function):
    """dx = each gradient spread evenly (1 / (kH kW)) over its window; the backward of
    this linear map is avg_pool2d again."""

    def __init__(self, kernel, geom, image):
        self.kernel, self.geom, self.image = kernel, geom, tuple(image)

    @classmethod
    def name(cls):
        return "avg_pool2d_backward"

    def forward(self, gy):
        dx = _spread(gy, self.kernel, self.geom, self.image)
        dx *= 1.0 / (self.kernel[0] * self.kernel[1])
        return dx

    def backward(self, g):
        return AvgPool2d(self.kernel, self.geom)(g)


class MaxPool2d(Function):
    """y[n, c, h, w] = max of x over the window (padding never wins). The backward routes
    each gradient to its window's argmax (MaxPool2dScatter); ties go to the first
    maximum in row-major window order. NaNs propagate to the output."""

    def __init__(self, kernel, geom):
        self.kernel, self.geom = kernel, geom

    @classmethod
    def name(cls):
        return "max_pool2d"

    def forward(self, x):
        xp = _xp(x)
        fill = -float("inf") if backend.is_floating(x.dtype) else xp.iinfo(x.dtype).min
        x_pad = _padded(x, self.geom, fill)
        out = self.geom.out_size(x.shape[2:], self.kernel)
        k_h, k_w = self.kernel
        arg = xp.zeros(x.shape[:2] + out, dtype=xp.int8 if k_h * k_w <= 127 else xp.int32)
        y = None
        for i, j, window in self.geom.windows(self.kernel, out):
            v = x_pad[window]
            if y is None:
                y = v.copy()
                continue
            xp.copyto(arg, i * k_w + j, where=v > y)   # strictly greater: the first of ties stays
            xp.maximum(y, v, out=y)
        self.argmax = arg                               # piecewise constant in x: safe to cache
        return y

    def backward(self, gy):
        x, = self.inputs
        return MaxPool2dScatter(self.argmax, self.kernel, self.geom, x.shape[2:])(gy)


class MaxPool2dScatter(Function):
    """dx = each gradient added at its window's argmax (windows may overlap). Linear in
    dy; its adjoint (the backward) gathers at the same positions: MaxPool2dGather."""

    def __init__(self, argmax, kernel, geom, image):
        self.argmax, self.kernel, self.geom, self.image = argmax, kernel, geom, tuple(image)

    @classmethod
    def name(cls):
        return "max_pool2d_backward"

    def forward(self, gy):
        xp, k_w = _xp(gy), self.kernel[1]
        return _spread(gy, self.kernel, self.geom, self.image,
                       weight=lambda i, j: xp.where(self.argmax == i * k_w + j, gy, 0))

    def backward(self, g):
        return MaxPool2dGather(self.argmax, self.kernel, self.geom)(g)


class MaxPool2dGather(Function):
    """y[n, c, h, w] = g[n, c, argmax position of window (h, w)]; backward: the scatter."""

    def __init__(self, argmax, kernel, geom):
        self.argmax, self.kernel, self.geom = argmax, kernel, geom

    @classmethod
    def name(cls):
        return "max_pool2d_gather"

    def forward(self, g):
        xp = _xp(g)
        g_pad = _padded(g, self.geom, 0)
        y = xp.zeros(self.argmax.shape, dtype=g.dtype)
        for i, j, window in self.geom.windows(self.kernel, self.argmax.shape[2:]):
            xp.copyto(y, g_pad[window], where=self.argmax == i * self.kernel[1] + j)
        return y

    def backward(self, gy):
        g, = self.inputs
        return MaxPool2dScatter(self.argmax, self.kernel, self.geom, g.shape[2:])(gy)


def avg_pool2d(x, kernel_size, stride=None, padding=0):
    """Mean over kH x kW windows of x (N, C, H, W), ``stride`` defaulting to the kernel size.

    Zero padding counts in the mean (PyTorch's count_include_pad=True); the output size
    rounds down (no ceil_mode). padding must be at most half the kernel size.
    """
    kernel, geom = _pool_geometry("avg_pool2d", x, kernel_size, stride, padding)
    if not backend.is_floating(x.dtype):
        raise TypeError(f"avg_pool2d: needs a floating tensor, got dtype {x.dtype}")
    return AvgPool2d(kernel, geom)(x)


def max_pool2d(x, kernel_size, stride=None, padding=0):
    """Max over kH x kW windows of x (N, C, H, W), ``stride`` defaulting to the kernel size.

    Padding is -inf (never the max). The gradient goes to one argmax per window: with ties
    to the first maximum in row-major order within the window (as PyTorch's CPU kernel).
    The output size rounds down (no ceil_mode); padding must be at most half the kernel.
    """
    kernel, geom = _pool_geometry("max_pool2d", x, kernel_size, stride, padding)
    return MaxPool2d(kernel, geom)(x)


# ----------------------------------------------------------------------------- upsampling

class UpsampleNearest2d(Function):
    """y[n, c, h, w] = x[n, c, h // s_h, w // s_w]. Its adjoint (the backward) sums each
    s_h x s_w block: UpsampleNearest2dAdjoint, a sum-pool."""

    def __init__(self, scale):
        self.scale = scale

    @classmethod
    def name(cls):
        return "upsample_nearest2d"

    def forward(self, x):
        (n, c, h, w), (sh, sw) = x.shape, self.scale
        blocks = _xp(x).broadcast_to(x[:, :, :, None, :, None], (n, c, h, sh, w, sw))
        return blocks.reshape(n, c, h * sh, w * sw)

    def backward(self, gy):
        return UpsampleNearest2dAdjoint(self.scale)(gy)


class UpsampleNearest2dAdjoint(Function):
    """dx[n, c, h, w] = sum of dy over the block [s_h h : s_h (h + 1), s_w w : s_w (w + 1)],
    as s_h s_w strided slice-adds; its backward is the upsampling again."""

    def __init__(self, scale):
        self.scale = scale

    @classmethod
    def name(cls):
        return "upsample_nearest2d_backward"

    def forward(self, gy):
        sh, sw = self.scale
        dx = gy[:, :, 0::sh, 0::sw].copy()
        for a, b in itertools.product(range(sh), range(sw)):
            if a or b:
                dx += gy[:, :, a::sh, b::sw]
        return dx

    def backward(self, g):
        return UpsampleNearest2d(self.scale)(g)


def upsample_nearest2d(x, scale_factor):
    """Nearest-neighbour upsampling of x (N, C, H, W) by an integer factor (or a pair):
    every pixel becomes an s_h x s_w block."""
    scale = _int_pair(scale_factor, "scale_factor", "upsample_nearest2d")
    if x.ndim != 4:
        raise ValueError(f"upsample_nearest2d: input must have 4 dimensions (N, C, H, W), got shape {x.shape}")
    if min(scale) < 1:
        raise ValueError(f"upsample_nearest2d: scale_factor must be a positive int, got {scale_factor!r}")
    return UpsampleNearest2d(scale)(x)
