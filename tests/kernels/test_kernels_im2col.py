"""The im2col / col2im kernels against their definition written as loops, against the
vectorized twins, and col2im as the adjoint of im2col."""
import itertools

import numpy as np
import pytest

from tinydgm.kernels import im2col as K

# (N, C, H, W, kernel, stride, padding, dilation): short and long window rows, padding
# wider than the dilated kernel's reach, and a 1 x 1 output
GEOMETRIES = [
    (5, 3, 14, 14, (4, 4), (2, 2), (1, 1), (1, 1)),      # the DCGAN layers' geometry
    (3, 2, 7, 6, (3, 2), (1, 2), (2, 1), (2, 1)),
    (2, 4, 9, 11, (3, 3), (2, 1), (0, 2), (1, 2)),
    (4, 3, 5, 5, (5, 5), (1, 1), (0, 0), (1, 1)),        # one output position per image
    (2, 2, 20, 20, (3, 3), (1, 1), (1, 1), (1, 1)),      # rows of 20: the twin's side
]


def _out(h, w, kernel, stride, padding, dilation):
    return tuple((n + 2 * p - d * (k - 1) - 1) // s + 1
                 for n, k, s, p, d in zip((h, w), kernel, stride, padding, dilation))


def _im2col_loops(x, rows, kernel, out, stride, padding, dilation):
    """cols[c, (i, j), k, (h, w)] = x[n0 + k, c, s h + d i - p, s w + d j - p] (0 outside), entry by entry."""
    n, c_in, height, width = x.shape
    m = rows.stop - rows.start
    cols = np.zeros((c_in, kernel[0] * kernel[1], m, out[0] * out[1]), dtype=x.dtype)
    for c, i, j, k, h, w in itertools.product(range(c_in), range(kernel[0]), range(kernel[1]), range(m),
                                              range(out[0]), range(out[1])):
        r = stride[0] * h + dilation[0] * i - padding[0]
        u = stride[1] * w + dilation[1] * j - padding[1]
        if 0 <= r < height and 0 <= u < width:
            cols[c, i * kernel[1] + j, k, h * out[1] + w] = x[rows.start + k, c, r, u]
    return cols


@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_im2col_chunks_match_the_definition(geometry, dtype):
    n, c, h, w, kernel, stride, padding, dilation = geometry
    x = np.random.default_rng(0).standard_normal((n, c, h, w)).astype(dtype)
    out = _out(h, w, kernel, stride, padding, dilation)
    seen = []
    for rows, cols in K.im2col_chunks(x, 2, kernel, out, stride, padding, dilation):
        assert cols.dtype == dtype and cols.flags.c_contiguous
        np.testing.assert_array_equal(cols, _im2col_loops(x, rows, kernel, out, stride, padding, dilation))
        seen.append((rows.start, rows.stop))
    assert seen == [(a, min(n, a + 2)) for a in range(0, n, 2)]


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_im2col_kernel_and_twin_agree_on_every_chunk_offset(geometry):
    n, c, h, w, kernel, stride, padding, dilation = geometry
    x = np.random.default_rng(1).standard_normal((n, c, h, w))
    out = _out(h, w, kernel, stride, padding, dilation)
    idx = K.window_index((h, w), kernel, out, stride, padding, dilation)
    x_pad = np.pad(x, ((0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2))
    for n0 in range(n - 1):
        rows = slice(n0, n0 + 2)
        by_kernel = np.empty((c, kernel[0] * kernel[1], 2, out[0] * out[1]))
        by_twin = np.full_like(by_kernel, np.nan)
        K._im2col_kernel(x, idx, by_kernel, n0)
        K.im2col_xp(x_pad[rows], by_twin, kernel, out, stride, dilation)
        np.testing.assert_array_equal(by_kernel, by_twin)


@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize("use_kernel", [True, False])
def test_col2im_is_the_adjoint_of_im2col(geometry, use_kernel, monkeypatch):
    """<im2col(x), cols> = <x, col2im(cols)> for random x and cols, and col2im
    overwrites (does not add to) the rows it is given, leaving the others alone."""
    if not use_kernel:
        monkeypatch.setattr(K, "_use_kernel", lambda *arrays: False)
    n, c, h, w, kernel, stride, padding, dilation = geometry
    rng = np.random.default_rng(2)
    x = rng.standard_normal((n, c, h, w))
    out = _out(h, w, kernel, stride, padding, dilation)
    rows = slice(1, n)
    cols = rng.standard_normal((c, kernel[0] * kernel[1], n - 1, out[0] * out[1]))
    target = np.full((n, c, h, w), 7.0)
    K.col2im(cols, target, rows, kernel, out, stride, padding, dilation)
    lhs = np.sum(_im2col_loops(x, rows, kernel, out, stride, padding, dilation) * cols)
    np.testing.assert_allclose(lhs, np.sum(x[rows] * target[rows]), rtol=1e-12)
    np.testing.assert_array_equal(target[0], 7.0)


def test_window_index_marks_the_padding_and_is_read_only():
    idx = K.window_index((3, 3), (3, 3), (3, 3), (1, 1), (1, 1), (1, 1))
    assert idx.shape == (9, 9) and idx.dtype == np.int32
    assert idx[0, 0] == -1 and idx[4, 4] == 4 and idx[8, 8] == -1    # corners read the padding
    with pytest.raises(ValueError):
        idx[0, 0] = 0
