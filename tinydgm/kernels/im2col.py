"""im2col and col2im, the gather and the scatter-add of an im2col convolution, as Numba
kernels (``tinydgm.autodiff.conv_ops`` builds the convolutions on them).

For a chunk of m images x[n0 : n0 + m] of size (H, W), a kernel of kH x kW taps and
outputs of size (H_out, W_out), with stride s, padding p and dilation d per axis:

    im2col   cols[c, t, k, q] = x[n0 + k, c, r, u]       (0 where (r, u) is in the padding)
    col2im   x[n0 + k, c] = sum over (t, q) landing on (r, u) of cols[c, t, k, q]

    where tap t = (i, j), output position q = (h, w), r = s_h h + d_h i - p_h, u = s_w w + d_w j - p_w.

The column matrix is laid out (C, kH kW, m, H_out W_out): the m images side by side, so
that the convolution of the whole chunk is ONE matrix product with W (C_out, C kH kW),
which keeps BLAS efficient when H_out W_out is small (49 at 7 x 7; one product per image
would have an inner dimension of 49).

Why kernels: with a 4 x 4 stride-2 kernel on 14 x 14 images every row of a window is 7
numbers long, and NumPy's strided copies and slice-adds pay their per-row overhead on
each (measured: 3.6 ms for the im2col copy and 8.4 ms for col2im's 16 slice-adds of a
64-image, 64-channel batch; these kernels take about 1.1 and 1.4 ms). The kernels walk
each (channel, tap, image) plane with a precomputed table of flat positions
``window_index`` (built once per geometry), so their inner loop runs over all
H_out W_out outputs. ``im2col_xp``/``col2im_xp`` are the vectorized twins (strided views
and slice-adds, for CuPy and as the tests' reference).
"""
import functools

import numba
import numpy as np

from tinydgm import backend


@functools.lru_cache(maxsize=256)
def window_index(image, kernel, out, stride, padding, dilation):
    """idx[t, q]: the flat position r W + u in an (H, W) plane that tap t = (i, j) reads at
    output position q = (h, w), or -1 where (r, u) lies in the zero padding. int32,
    shape (kH kW, H_out W_out); read-only (it is cached)."""
    (height, width), (kh, kw), (ho, wo) = image, kernel, out
    i, j = np.arange(kh)[:, None, None, None], np.arange(kw)[None, :, None, None]
    h, w = np.arange(ho)[None, None, :, None], np.arange(wo)[None, None, None, :]
    r = stride[0] * h + dilation[0] * i - padding[0]
    u = stride[1] * w + dilation[1] * j - padding[1]
    inside = (r >= 0) & (r < height) & (u >= 0) & (u < width)
    idx = np.where(inside, r * width + u, -1).astype(np.int32).reshape(kh * kw, ho * wo)
    idx.flags.writeable = False
    return idx


@numba.njit(cache=True, error_model="numpy")
def _im2col_kernel(x, idx, cols, n0):
    """cols[c, t, k, q] = x[n0 + k, c].flat[idx[t, q]], 0 where idx < 0."""
    channels, taps, m, positions = cols.shape
    planes = x.reshape(x.shape[0], x.shape[1], -1)
    zero = x.dtype.type(0)
    for c in range(channels):
        for t in range(taps):
            for k in range(m):
                for q in range(positions):
                    at = idx[t, q]
                    cols[c, t, k, q] = planes[n0 + k, c, at] if at >= 0 else zero


@numba.njit(cache=True, error_model="numpy")
def _col2im_kernel(cols, idx, x, n0):
    """x[n0 + k, c] = 0, then x[n0 + k, c].flat[idx[t, q]] += cols[c, t, k, q] (idx >= 0)."""
    channels, taps, m, positions = cols.shape
    planes = x.reshape(x.shape[0], x.shape[1], -1)
    for k in range(m):
        for c in range(channels):
            planes[n0 + k, c, :] = 0
            for t in range(taps):
                for q in range(positions):
                    at = idx[t, q]
                    if at >= 0:
                        planes[n0 + k, c, at] += cols[c, t, k, q]


def _window_view(x_pad, kernel, out, stride, dilation):
    """The strided view v[c, i, j, k, h, w] = x_pad[k, c, s_h h + d_h i, s_w w + d_w j]: no
    copy, its entries alias each other (only read it)."""
    s_n, s_c, s_h, s_w = x_pad.strides
    shape = (x_pad.shape[1],) + tuple(kernel) + (x_pad.shape[0],) + tuple(out)
    strides = (s_c, dilation[0] * s_h, dilation[1] * s_w, s_n, stride[0] * s_h, stride[1] * s_w)
    return backend.xp_of(x_pad).lib.stride_tricks.as_strided(x_pad, shape, strides)


def im2col_xp(x_pad, cols, kernel, out, stride, dilation):
    """The twin of the im2col kernel on an already zero-padded chunk x_pad (m, C, H + 2 p_h,
    W + 2 p_w): a strided window view, copied into cols."""
    view = _window_view(x_pad, kernel, out, stride, dilation)
    backend.xp_of(x_pad).copyto(cols.reshape(view.shape), view)


def col2im_xp(cols, x, rows, kernel, out, stride, padding, dilation):
    """The twin of ``col2im``: one strided slice-add per tap into a zero-padded chunk."""
    xp = backend.xp_of(x)
    (ph, pw), (h, w) = padding, x.shape[2:]
    m = rows.stop - rows.start
    x_pad = xp.zeros((m, x.shape[1], h + 2 * ph, w + 2 * pw), dtype=x.dtype)
    blocks = cols.reshape((x.shape[1],) + tuple(kernel) + (m,) + tuple(out))
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            r0, u0 = dilation[0] * i, dilation[1] * j
            window = (slice(None), slice(None), slice(r0, r0 + stride[0] * (out[0] - 1) + 1, stride[0]),
                      slice(u0, u0 + stride[1] * (out[1] - 1) + 1, stride[1]))
            x_pad[window] += blocks[:, i, j].swapaxes(0, 1)
    x[rows] = x_pad[:, :, ph:ph + h, pw:pw + w]


# NumPy's strided copy pays a fixed cost per contiguous run and is fast on long runs; the
# im2col kernel wins when the window rows are short (measured: 3x at 7 entries, slower
# than NumPy from about 28 entries, and on 1 x 1 outputs, where NumPy runs over the images).
_KERNEL_MAX_ROW = 16


def _use_kernel(*arrays):
    return all(type(a) is np.ndarray and a.flags.c_contiguous for a in arrays)


def im2col_chunks(x, size, kernel, out, stride, padding, dilation, buf=None):
    """(rows, cols) for each chunk of ``size`` images of x (N, C, H, W): cols (C, kH kW, m,
    H_out W_out) as in the module docstring, a view of one buffer reused from chunk to
    chunk (copy it to keep it), ``buf`` (flat, at least C kH kW size H_out W_out entries)
    if given. The Numba kernel for NumPy arrays with short window rows, else the twin
    (through one reused zero-padded buffer, whose border stays zero)."""
    xp = backend.xp_of(x)
    n, c, h, w = x.shape
    taps, positions = kernel[0] * kernel[1], out[0] * out[1]
    if buf is None:
        buf = xp.empty(c * taps * size * positions, dtype=x.dtype)
    kernel_ok = _use_kernel(x) and 1 < positions and out[1] < _KERNEL_MAX_ROW
    if kernel_ok:
        idx = window_index((h, w), tuple(kernel), tuple(out), tuple(stride), tuple(padding), tuple(dilation))
    elif padding != (0, 0):
        pad_buf = xp.zeros((size, c, h + 2 * padding[0], w + 2 * padding[1]), dtype=x.dtype)
    for n0 in range(0, n, size):
        rows = slice(n0, min(n, n0 + size))
        m = rows.stop - rows.start
        cols = buf[:c * taps * m * positions].reshape(c, taps, m, positions)
        if kernel_ok:
            _im2col_kernel(x, idx, cols, n0)
        elif padding == (0, 0):
            im2col_xp(x[rows], cols, kernel, out, stride, dilation)
        else:
            x_pad = pad_buf[:m]
            x_pad[:, :, padding[0]:padding[0] + h, padding[1]:padding[1] + w] = x[rows]
            im2col_xp(x_pad, cols, kernel, out, stride, dilation)
        yield rows, cols


def col2im(cols, x, rows, kernel, out, stride, padding, dilation):
    """Overwrite the images x[rows] with the scatter-add of ``cols`` (C, kH kW, m,
    H_out W_out) (see the module docstring): the adjoint of ``im2col``."""
    if _use_kernel(x, cols):
        idx = window_index(tuple(x.shape[2:]), tuple(kernel), tuple(out), tuple(stride), tuple(padding),
                           tuple(dilation))
        _col2im_kernel(cols.reshape(cols.shape[0], idx.shape[0], rows.stop - rows.start, -1), idx, x, rows.start)
    else:
        col2im_xp(cols, x, rows, kernel, out, stride, padding, dilation)
