"""conv2d, conv_transpose2d, avg/max pooling and nearest upsampling: forward values
against naive loop references (and scipy / PyTorch where present), the adjoint identity
between conv2d and conv_transpose2d, first and second derivatives, and error messages."""
import itertools
import re

import numpy as np
import pytest

import tinydgm as td
from tinydgm.autodiff import conv_ops as conv_module

rng = np.random.default_rng(0)


def randn(*shape):
    return rng.standard_normal(shape)


def f64(a):
    return td.tensor(a, dtype="float64", requires_grad=True)


# ----------------------------------------------------------------------------- naive references

def pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def conv2d_ref(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    """One output pixel at a time: y[n, o, h, w] = b[o] + <window of x_pad, w[o]>."""
    (sh, sw), (ph, pw), (dh, dw) = pair(stride), pair(padding), pair(dilation)
    n, c, hh, ww = x.shape
    c_out, c_g, kh, kw = w.shape
    x_pad = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    ho = (hh + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    wo = (ww + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    y = np.zeros((n, c_out, ho, wo))
    for o in range(c_out):
        first = (o // (c_out // groups)) * c_g           # first input channel of o's group
        for h in range(ho):
            for v in range(wo):
                window = x_pad[:, first:first + c_g,
                               h * sh: h * sh + dh * (kh - 1) + 1: dh,
                               v * sw: v * sw + dw * (kw - 1) + 1: dw]
                y[:, o, h, v] = (window * w[o]).sum(axis=(1, 2, 3)) + (0 if b is None else b[o])
    return y


def conv_transpose2d_ref(x, w, b=None, stride=1, padding=0, output_padding=0, dilation=1, groups=1):
    """One input pixel at a time: scatter x[n, c, h, v] * w[c] into the output window."""
    (sh, sw), (ph, pw), (dh, dw), (oh, ow) = pair(stride), pair(padding), pair(dilation), pair(output_padding)
    n, c_in, hh, ww = x.shape
    _, c_og, kh, kw = w.shape
    full = np.zeros((n, c_og * groups, (hh - 1) * sh + dh * (kh - 1) + 1 + oh,
                     (ww - 1) * sw + dw * (kw - 1) + 1 + ow))
    for c in range(c_in):
        first = (c // (c_in // groups)) * c_og           # first output channel of c's group
        for h in range(hh):
            for v in range(ww):
                for i, j in itertools.product(range(kh), range(kw)):
                    full[:, first:first + c_og, h * sh + i * dh, v * sw + j * dw] += \
                        x[:, c, h, v][:, None] * w[c, :, i, j]
    out = full[:, :, ph:full.shape[2] - ph, pw:full.shape[3] - pw]
    return out + (0 if b is None else b[:, None, None])


def pool_ref(x, kernel, stride, padding, reduce, fill):
    (kh, kw), (sh, sw), (ph, pw) = pair(kernel), pair(stride), pair(padding)
    x_pad = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=fill)
    ho = (x.shape[2] + 2 * ph - kh) // sh + 1
    wo = (x.shape[3] + 2 * pw - kw) // sw + 1
    y = np.zeros(x.shape[:2] + (ho, wo))
    for h in range(ho):
        for v in range(wo):
            y[:, :, h, v] = reduce(x_pad[:, :, h * sh:h * sh + kh, v * sw:v * sw + kw], axis=(2, 3))
    return y


# ----------------------------------------------------------------------------- configurations

# (N, C_in, C_out, H, W, kernel, stride, padding, dilation, groups): every stride 1/2,
# padding 0/1/2, dilation 1/2 and groups 1/2/4, on a non-square input and kernel,
# with batch 1 and 3.
CONFIGS = [
    (1 if k % 2 else 3, 4, 8, 7, 6, (3, 2), s, p, d, g)
    for k, (s, p, d, g) in enumerate(itertools.product((1, 2), (0, 1, 2), (1, 2), (1, 2, 4)))
] + [
    (2, 3, 5, 5, 9, (1, 1), 1, 0, 1, 1),                  # 1x1 kernel
    (2, 2, 3, 6, 7, (2, 3), (2, 1), (1, 0), (1, 2), 1),   # per-axis stride, padding, dilation
    (1, 1, 1, 3, 3, (3, 3), 1, 0, 1, 1),                  # kernel as large as the input
    # output rows of 16 and more: im2col by NumPy's strided copy instead of the Numba
    # kernel, and the stride-1 adjoint as a convolution with the flipped kernel
    (2, 4, 6, 3, 18, (3, 3), 1, 1, 1, 2),
    (2, 3, 2, 4, 21, (2, 3), (1, 1), (0, 2), (1, 2), 1),
    (1, 2, 3, 3, 35, (1, 3), (1, 2), (1, 1), 1, 1),
]


def _conv_case(config, device):
    n, c_in, c_out, h, w, kernel, s, p, d, g = config
    x, weight, bias = randn(n, c_in, h, w), randn(c_out, c_in // g, *kernel), randn(c_out)
    return x, weight, bias, dict(stride=s, padding=p, dilation=d, groups=g)


@pytest.mark.parametrize("config", CONFIGS)
def test_conv2d_matches_naive_loops(config, device):
    x, weight, bias, kw = _conv_case(config, device)
    y = td.conv2d(td.tensor(x, device=device), td.tensor(weight, device=device),
                  td.tensor(bias, device=device), **kw)
    np.testing.assert_allclose(y.numpy(), conv2d_ref(x, weight, bias, **kw), rtol=1e-10, atol=1e-10)
    assert y.dtype == np.float64


def _output_padding(h, kernel, s, p, d):
    """The output_padding for which conv_transpose2d recovers an input of size h."""
    ho = (h + 2 * p - d * (kernel - 1) - 1) // s + 1
    return h - ((ho - 1) * s - 2 * p + d * (kernel - 1) + 1)


@pytest.mark.parametrize("config", CONFIGS)
def test_conv_transpose2d_is_adjoint_of_conv2d_and_matches_naive_loops(config, device):
    x, weight, _, kw = _conv_case(config, device)
    n, c_in, c_out, h, w, kernel, s, p, d, g = config
    s, p, d = pair(s), pair(p), pair(d)
    out_pad = tuple(_output_padding(size, k, *args) for size, k, *args in zip((h, w), kernel, s, p, d))
    y = conv2d_ref(x, weight, **kw)
    v = randn(*y.shape)
    xt = td.conv_transpose2d(td.tensor(v, device=device), td.tensor(weight, device=device),
                             output_padding=out_pad, **kw)
    assert xt.shape == x.shape
    # <conv2d(x, W), v> == <x, conv_transpose2d(v, W)>
    np.testing.assert_allclose((y * v).sum(), (x * xt.numpy()).sum(), rtol=1e-10)
    np.testing.assert_allclose(xt.numpy(), conv_transpose2d_ref(v, weight, output_padding=out_pad, **kw),
                               rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("stride,padding,output_padding,dilation,groups",
                         [(1, 0, 0, 1, 1), (2, 1, 1, 1, 2), (3, 2, 2, 2, 1), ((2, 1), (0, 1), (1, 0), (1, 2), 4)])
def test_conv_transpose2d_with_bias_matches_naive_loops(stride, padding, output_padding, dilation, groups, device):
    x, weight, bias = randn(2, 4, 3, 5), randn(4, 8 // groups, 3, 2), randn(8)
    kw = dict(stride=stride, padding=padding, output_padding=output_padding, dilation=dilation, groups=groups)
    y = td.conv_transpose2d(td.tensor(x, device=device), td.tensor(weight, device=device),
                            td.tensor(bias, device=device), **kw)
    np.testing.assert_allclose(y.numpy(), conv_transpose2d_ref(x, weight, bias, **kw), rtol=1e-10, atol=1e-10)


def test_conv2d_matches_scipy_correlate():
    signal = pytest.importorskip("scipy.signal")
    x, weight = randn(2, 3, 8, 7), randn(4, 3, 3, 2)
    y = td.conv2d(td.tensor(x), td.tensor(weight), padding=1).numpy()
    x_pad = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    expected = np.array([[signal.correlate(x_pad[n], weight[o], mode="valid")[0] for o in range(4)]
                         for n in range(2)])
    np.testing.assert_allclose(y, expected, rtol=1e-10, atol=1e-10)


def test_conv_ops_match_torch():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x, weight, bias = randn(3, 4, 9, 8), randn(6, 2, 3, 2), randn(6)
    kw = dict(stride=2, padding=(1, 2), dilation=(2, 1), groups=2)
    np.testing.assert_allclose(td.conv2d(td.tensor(x), td.tensor(weight), td.tensor(bias), **kw).numpy(),
                               F.conv2d(*map(torch.tensor, (x, weight, bias)), **kw).numpy(), rtol=1e-9, atol=1e-9)
    wt = randn(4, 3, 3, 2)
    mine = td.conv_transpose2d(td.tensor(x), td.tensor(wt), td.tensor(bias), stride=2, padding=1,
                               output_padding=1, dilation=2, groups=2)
    theirs = F.conv_transpose2d(*map(torch.tensor, (x, wt, bias)), stride=2, padding=1, output_padding=1,
                                dilation=2, groups=2)
    np.testing.assert_allclose(mine.numpy(), theirs.numpy(), rtol=1e-9, atol=1e-9)
    for ours, theirs in [(td.avg_pool2d, F.avg_pool2d), (td.max_pool2d, F.max_pool2d)]:
        np.testing.assert_allclose(ours(td.tensor(x), 3, 2, 1).numpy(), theirs(torch.tensor(x), 3, 2, 1).numpy(),
                                   rtol=1e-12)


def test_float32_stays_float32_and_gradients_have_input_dtypes(device):
    x = td.tensor(randn(2, 3, 6, 6).astype(np.float32), requires_grad=True, device=device)
    w = td.tensor(randn(4, 3, 3, 3).astype(np.float32), requires_grad=True, device=device)
    b = td.tensor(randn(4).astype(np.float32), requires_grad=True, device=device)
    y = td.max_pool2d(td.conv2d(x, w, b, padding=1), 2)
    y = td.upsample_nearest2d(td.avg_pool2d(y, 3, 1, 1), 2)
    y = td.conv_transpose2d(y, td.tensor(randn(4, 2, 3, 3).astype(np.float32), device=device), stride=2)
    assert y.dtype == np.float32
    (y * y).sum().backward()
    for t in (x, w, b):
        assert t.grad.dtype == np.float32 and t.grad.shape == t.shape


def test_chunked_im2col_over_the_batch(monkeypatch):
    """Chunks of one image, and chunks of two with a shorter last one, give the same
    values and gradients as one chunk for the whole batch."""
    x, w, b, w_t = randn(5, 4, 7, 6), randn(6, 2, 3, 3), randn(6), randn(6, 3, 3, 3)
    kw = dict(stride=2, padding=1, groups=2)

    def run():
        xs, ws, bs, wts = f64(x), f64(w), f64(b), f64(w_t)
        y = td.conv2d(xs, ws, bs, **kw)
        z = td.conv_transpose2d(y, wts, padding=1)
        (z * z).sum().backward()
        return y.numpy(), z.numpy(), xs.grad.numpy(), ws.grad.numpy(), wts.grad.numpy()

    whole = run()
    col_bytes_per_image = 4 * 9 * 4 * 3 * 8               # C_in kH kW H_out W_out float64
    for chunk_bytes in (1, 2 * col_bytes_per_image):
        monkeypatch.setattr(conv_module, "_CPU_CHUNK_BYTES", chunk_bytes)
        for a, c in zip(whole, run()):
            np.testing.assert_allclose(a, c, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(whole[0], conv2d_ref(x, w, b, **kw), rtol=1e-10, atol=1e-10)


def test_zero_size_batch():
    x, w = f64(np.zeros((0, 3, 5, 5))), f64(randn(4, 3, 3, 3))
    y = td.conv2d(x, w, padding=1)
    assert y.shape == (0, 4, 5, 5)
    y.sum().backward()
    assert x.grad.shape == x.shape and np.all(w.grad.numpy() == 0)


# ----------------------------------------------------------------------------- derivatives

GRAD_CONFIGS = [
    dict(stride=1, padding=0, dilation=1, groups=1),
    dict(stride=2, padding=1, dilation=(1, 2), groups=2),
    dict(stride=(1, 2), padding=(2, 1), dilation=2, groups=1),
]


@pytest.mark.parametrize("kw", GRAD_CONFIGS)
def test_conv2d_gradcheck_and_gradgradcheck(kw):
    g = kw["groups"]
    x, w, b = f64(randn(2, 4, 5, 6)), f64(randn(4, 4 // g, 3, 2)), f64(randn(4))
    fn = lambda x, w, b: td.conv2d(x, w, b, **kw)  # noqa: E731
    assert td.gradcheck(fn, [x, w, b])
    assert td.gradgradcheck(fn, [x, w, b])
    fn = lambda x, w: td.conv2d(x, w, **kw)  # noqa: E731  (no bias)
    assert td.gradgradcheck(fn, [x, w])


@pytest.mark.parametrize("kw", GRAD_CONFIGS)
def test_conv_transpose2d_gradcheck_and_gradgradcheck(kw):
    g = kw["groups"]
    out_pad = 1 if kw["stride"] == 2 else 0
    x, w, b = f64(randn(2, 4, 4, 3)), f64(randn(4, 6 // g, 3, 2)), f64(randn(6))
    fn = lambda x, w, b: td.conv_transpose2d(x, w, b, output_padding=out_pad, **kw)  # noqa: E731
    assert td.gradcheck(fn, [x, w, b])
    assert td.gradgradcheck(fn, [x, w, b])


def test_wide_image_gradcheck_and_gradgradcheck():
    """Output rows of 16 and more (the other side of the im2col and adjoint switches)."""
    x, w, b = f64(randn(2, 2, 3, 17)), f64(randn(2, 2, 2, 3)), f64(randn(2))
    fn = lambda x, w, b: td.conv2d(x, w, b, padding=(0, 1))  # noqa: E731
    assert td.gradcheck(fn, [x, w, b])
    assert td.gradgradcheck(fn, [x, w, b])


# stride-1 convolutions on long rows run on the padded grid (conv_ops._grid_chunks)
GRID_CASES = [
    ((3, 4, 20, 18), (6, 4, 3, 3), dict(padding=1)),
    ((2, 4, 40, 36), (4, 2, 3, 3), dict(padding=2, dilation=2, groups=2)),
    ((2, 3, 17, 30), (2, 3, 2, 3), dict(padding=(0, 1))),
]


@pytest.mark.parametrize("x_shape,w_shape,kw", GRID_CASES)
def test_padded_grid_path_matches_the_loops_and_the_im2col_path(x_shape, w_shape, kw, monkeypatch):
    """Values, and the gradients of conv2d and of the adjoint, on the grid equal the naive loops and the
    im2col path, also with chunks of one image (the grid's tail reads the next image's block)."""
    x, w, b = randn(*x_shape), randn(*w_shape), randn(w_shape[0])
    xs = td.tensor(x)
    out = td.conv2d(xs, td.tensor(w), **kw).shape[2:]
    geom = conv_module._Geometry.parse("conv2d", 1, kw.get("padding", 0), kw.get("dilation", 1), kw.get("groups", 1))
    assert conv_module._use_grid(x, geom, out)

    def run():
        xs, ws, bs = f64(x), f64(w), f64(b)
        y = td.conv2d(xs, ws, bs, **kw)
        (y * y * y).sum().backward()
        return y.numpy(), xs.grad.numpy(), ws.grad.numpy(), bs.grad.numpy()

    grid = run()
    np.testing.assert_allclose(grid[0], conv2d_ref(x, w, b, **kw), rtol=1e-10, atol=1e-10)
    monkeypatch.setattr(conv_module, "_CPU_CHUNK_BYTES", 1)
    for a, c in zip(grid, run()):
        np.testing.assert_allclose(a, c, rtol=1e-10, atol=1e-10)
    monkeypatch.setattr(conv_module, "_use_grid", lambda *args: False)
    for a, c in zip(grid, run()):
        np.testing.assert_allclose(a, c, rtol=1e-10, atol=1e-10)


def test_padded_grid_path_gradcheck_and_gradgradcheck():
    x, w, b = f64(randn(1, 2, 20, 20)), f64(randn(2, 2, 3, 3)), f64(randn(2))
    fn = lambda x, w, b: td.conv2d(x, w, b, padding=1)  # noqa: E731
    assert conv_module._use_grid(x.data, conv_module._Geometry.parse("conv2d", 1, 1), (20, 20))
    assert td.gradcheck(fn, [x, w, b])
    assert td.gradgradcheck(fn, [x, w, b])


def test_padded_grid_ignores_stale_and_non_finite_scratch(monkeypatch):
    """The grid's borders and tail are zeroed on every call: a scratch buffer left full of NaN by
    another convolution does not leak into values or weight gradients (NaN x 0 would)."""
    x, w = randn(2, 3, 20, 20), randn(4, 3, 3, 3)
    clean = td.conv2d(f64(x), f64(w), padding=1)
    conv_module._workspace.__dict__.setdefault("buffers", {})
    for key, buf in conv_module._workspace.buffers.items():
        buf[...] = np.nan
    xs, ws = f64(x), f64(w)
    y = td.conv2d(xs, ws, padding=1)
    y.sum().backward()
    np.testing.assert_allclose(y.numpy(), clean.numpy(), rtol=1e-12)
    assert np.isfinite(ws.grad.numpy()).all() and np.isfinite(xs.grad.numpy()).all()


def test_third_derivative_of_conv2d():
    """The backward of the backward is made of the same three Functions, so gradients of
    any order exist: check d/dW of the gradient penalty ||d<y, v>/dx||^2 numerically."""
    x, w = f64(randn(1, 2, 5, 5)), f64(randn(3, 2, 3, 3))
    v = td.tensor(randn(1, 3, 3, 3))

    def penalty(x, w):
        gx, = td.grad((td.conv2d(x, w, stride=2, padding=1) * v).sum(), [x], create_graph=True)
        return (gx * gx).sum()

    assert td.gradgradcheck(penalty, [x, w])


@pytest.mark.parametrize("op,kw", [
    (td.avg_pool2d, dict(kernel_size=2)),
    (td.avg_pool2d, dict(kernel_size=3, stride=2, padding=1)),
    (td.avg_pool2d, dict(kernel_size=(3, 2), stride=(1, 2), padding=(1, 0))),
    (td.max_pool2d, dict(kernel_size=2)),
    (td.max_pool2d, dict(kernel_size=3, stride=1, padding=1)),       # overlapping windows
    (td.max_pool2d, dict(kernel_size=(2, 3), stride=(2, 1), padding=(1, 1))),
])
def test_pool_forward_gradcheck_and_gradgradcheck(op, kw, device):
    x = randn(2, 3, 5, 6)
    y = op(td.tensor(x, device=device), **kw)
    kernel = kw["kernel_size"]
    stride, padding = kw.get("stride", kernel), kw.get("padding", 0)
    if op is td.avg_pool2d:
        expected = pool_ref(x, kernel, stride, padding, np.mean, 0.0)
    else:
        expected = pool_ref(x, kernel, stride, padding, np.max, -np.inf)
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-12)
    if device == "cpu":
        fn = lambda x: op(x, **kw)  # noqa: E731
        xs = f64(x)
        assert td.gradcheck(fn, [xs])
        assert td.gradgradcheck(fn, [xs])


def test_max_pool2d_ties_go_to_the_first_maximum_in_row_major_order():
    x = f64(np.array([[[[1.0, 1.0, 0.0, 2.0],
                        [1.0, 1.0, 2.0, 2.0]]]]))
    td.max_pool2d(x, 2).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[[[1.0, 0.0, 0.0, 1.0],
                                                      [0.0, 0.0, 0.0, 0.0]]]])


def test_max_pool2d_propagates_nan():
    x = np.zeros((1, 1, 2, 2))
    x[0, 0, 1, 0] = np.nan
    assert np.isnan(td.max_pool2d(td.tensor(x), 2).numpy()).all()


def test_max_pool2d_backward_is_a_scatter_whose_adjoint_is_a_gather():
    """d/dx <max_pool(x), v> = scatter(v); the derivative of <scatter(v), u> by v is u
    gathered at the argmax positions."""
    x, v = f64(randn(1, 2, 4, 4)), f64(randn(1, 2, 3, 3))
    gx, = td.grad((td.max_pool2d(x, 2, stride=1) * v).sum(), [x], create_graph=True)
    u = randn(1, 2, 4, 4)
    gv, = td.grad((gx * td.tensor(u)).sum(), [v])
    x_np = x.numpy()
    expected = np.zeros((1, 2, 3, 3))
    for c, h, w in itertools.product(range(2), range(3), range(3)):
        window = x_np[0, c, h:h + 2, w:w + 2]
        i, j = np.unravel_index(np.argmax(window), (2, 2))
        expected[0, c, h, w] = u[0, c, h + i, w + j]
    np.testing.assert_allclose(gv.numpy(), expected, rtol=1e-12)


@pytest.mark.parametrize("scale", [1, 2, (2, 3)])
def test_upsample_nearest2d(scale, device):
    x = randn(2, 3, 3, 4)
    sh, sw = pair(scale)
    y = td.upsample_nearest2d(td.tensor(x, device=device), scale)
    np.testing.assert_array_equal(y.numpy(), np.repeat(np.repeat(x, sh, axis=2), sw, axis=3))
    if device == "cpu":
        fn = lambda x: td.upsample_nearest2d(x, scale)  # noqa: E731
        assert td.gradcheck(fn, [f64(x)])
        assert td.gradgradcheck(fn, [f64(x)])


# ----------------------------------------------------------------------------- errors

def test_conv2d_errors():
    x, w = td.tensor(randn(2, 3, 8, 8)), td.tensor(randn(8, 4, 3, 3))
    with pytest.raises(ValueError, match=r"conv2d: input must have 4 dimensions \(N, C, H, W\), got shape \(3, 8, 8\)"):
        td.conv2d(td.tensor(randn(3, 8, 8)), w)
    with pytest.raises(ValueError, match=r"conv2d: weight must have 4 dimensions"):
        td.conv2d(x, td.tensor(randn(8, 3, 3)))
    with pytest.raises(ValueError, match=re.escape(
            "conv2d: input has 3 channels but weight expects 4 (weight shape (8, 4, 3, 3), groups=1)")):
        td.conv2d(x, w)
    with pytest.raises(ValueError, match=r"conv2d: groups=2 does not divide the 3 input channels"):
        td.conv2d(x, td.tensor(randn(8, 1, 3, 3)), groups=2)
    with pytest.raises(ValueError, match=r"conv2d: groups=3 does not divide the 8 output channels"):
        td.conv2d(x, td.tensor(randn(8, 1, 3, 3)), groups=3)
    with pytest.raises(ValueError, match=r"conv2d: kernel \(9, 9\) with dilation \(1, 1\) spans \(9, 9\), "
                                         r"larger than the padded input \(8, 8\)"):
        td.conv2d(x, td.tensor(randn(8, 3, 9, 9)))
    with pytest.raises(ValueError, match=r"spans \(5, 5\), larger than the padded input \(4, 4\)"):
        td.conv2d(td.tensor(randn(1, 3, 4, 4)), td.tensor(randn(2, 3, 3, 3)), dilation=2)
    with pytest.raises(ValueError, match=r"conv2d: bias must have shape \(8,\)"):
        td.conv2d(x, td.tensor(randn(8, 3, 3, 3)), td.tensor(randn(3)))
    with pytest.raises(TypeError, match=r"conv2d: input, weight and bias must have the same dtype"):
        td.conv2d(x, td.tensor(randn(8, 3, 3, 3).astype(np.float32)))
    with pytest.raises(ValueError, match=r"conv2d: stride and dilation must be >= 1"):
        td.conv2d(x, td.tensor(randn(8, 3, 3, 3)), stride=0)
    with pytest.raises(TypeError, match=r"conv2d: padding must be an int or a pair of ints, got 1.5"):
        td.conv2d(x, td.tensor(randn(8, 3, 3, 3)), padding=1.5)


def test_conv_transpose2d_errors():
    x = td.tensor(randn(2, 3, 4, 4))
    with pytest.raises(ValueError, match=re.escape(
            "conv_transpose2d: input has 3 channels but weight expects 4 (weight shape (4, 2, 3, 3), groups=1)")):
        td.conv_transpose2d(x, td.tensor(randn(4, 2, 3, 3)))
    with pytest.raises(ValueError, match=r"conv_transpose2d: output_padding must be >= 0 and smaller than the stride"):
        td.conv_transpose2d(x, td.tensor(randn(3, 2, 3, 3)), stride=2, output_padding=2)
    with pytest.raises(ValueError, match=r"conv_transpose2d: the output would have size"):
        td.conv_transpose2d(td.tensor(randn(1, 3, 1, 1)), td.tensor(randn(3, 2, 1, 1)), padding=1)
    with pytest.raises(ValueError, match=r"conv_transpose2d: groups=2 does not divide the 3 input channels"):
        td.conv_transpose2d(x, td.tensor(randn(3, 2, 3, 3)), groups=2)


def test_pool_and_upsample_errors():
    x = td.tensor(randn(1, 2, 4, 4))
    with pytest.raises(ValueError, match=r"max_pool2d: input must have 4 dimensions"):
        td.max_pool2d(td.tensor(randn(2, 4, 4)), 2)
    with pytest.raises(ValueError, match=r"avg_pool2d: padding \(2, 2\) must be at most half the kernel size"):
        td.avg_pool2d(x, 3, padding=2)
    with pytest.raises(ValueError, match=r"max_pool2d: kernel \(5, 5\) .* larger than the padded input \(4, 4\)"):
        td.max_pool2d(x, 5)
    with pytest.raises(ValueError, match=r"upsample_nearest2d: scale_factor must be a positive int"):
        td.upsample_nearest2d(x, 0)
    with pytest.raises(TypeError, match=r"upsample_nearest2d: scale_factor must be an int or a pair of ints"):
        td.upsample_nearest2d(x, 1.5)
