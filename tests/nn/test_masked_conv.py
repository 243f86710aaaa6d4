"""Masked convolutions and the gated PixelCNN block: causality read from the engine's
Jacobian on small images (type A excludes the centre, type B includes it), the blind
spot of an ungated masked stack and its absence in the gated stack, the RGB
channel-group rule, class conditioning, forward values against NumPy, derivatives and
errors."""
import numpy as np
import pytest

import tinydgm as td
from contracts import with_params
from tinydgm.nn.masked_conv import GatedBlock, GatedStack, MaskedConv2d, pixelcnn_mask


def f64(a, requires_grad=True, device="cpu"):
    return td.tensor(a, dtype="float64", requires_grad=requires_grad, device=device)


def dependency(fn, x):
    """dep[o, i, j, c, i', j'] = output channel o at pixel (i, j) depends on input channel c
    at (i', j'), from the engine's Jacobian of fn(x)[0] for x of shape (1, C, H, W)."""
    jac = td.jacobian(lambda x: fn(x)[0], x)                    # (O, H, W, 1, C, H, W)
    return jac[:, :, :, 0] != 0


def raster_before(h, w, strict=True):
    """before[i, j, i', j'] = (i', j') comes before (i, j) in raster order."""
    order = np.arange(h * w).reshape(h, w)
    before = order[None, None, :, :] < order[:, :, None, None] if strict else \
        order[None, None, :, :] <= order[:, :, None, None]
    return before


def masked_stack(n_layers, channels=3, kernel=3, rng=None):
    """The ungated PixelCNN stack: type A, then type B layers, tanh in between."""
    layers = [MaskedConv2d(1, channels, kernel, "A", rng=rng, dtype="float64")]
    layers += [MaskedConv2d(channels, channels, kernel, "B", rng=rng, dtype="float64") for _ in range(n_layers - 1)]

    def fn(x):
        for k, layer in enumerate(layers):
            x = layer(x if k == 0 else td.tanh(x))
        return x
    return fn


def in_window(h, w, i, j, radius):
    """Pixels before (i, j) within the (2 r + 1)^2 square around it: the receptive field
    that r layers of 3x3 convolutions could cover."""
    return [(a, b) for a in range(max(0, i - radius), i + 1) for b in range(max(0, j - radius), min(w, j + radius + 1))
            if a * w + b < i * w + j]


# ----------------------------------------------------------------------------- the masks

def test_masks_match_the_docstring_drawings():
    a3 = [[1, 1, 1], [1, 0, 0], [0, 0, 0]]
    b3 = [[1, 1, 1], [1, 1, 0], [0, 0, 0]]
    np.testing.assert_array_equal(pixelcnn_mask(1, 1, 3, "A")[0, 0], a3)
    np.testing.assert_array_equal(pixelcnn_mask(1, 1, 3, "B")[0, 0], b3)
    b5 = pixelcnn_mask(2, 4, 5, "B")
    assert b5.shape == (4, 2, 5, 5)
    np.testing.assert_array_equal(b5[1, 1], [[1] * 5, [1] * 5, [1, 1, 1, 0, 0], [0] * 5, [0] * 5])
    rgb_a, rgb_b = pixelcnn_mask(3, 3, 3, "A", 3), pixelcnn_mask(3, 3, 3, "B", 3)
    np.testing.assert_array_equal(rgb_a[:, :, 1, 1], [[0, 0, 0], [1, 0, 0], [1, 1, 0]])
    np.testing.assert_array_equal(rgb_b[:, :, 1, 1], [[1, 0, 0], [1, 1, 0], [1, 1, 1]])
    # hidden layers: contiguous channel groups (6 channels: R = 0, 1; G = 2, 3; B = 4, 5)
    hidden = pixelcnn_mask(3, 6, 3, "A", 3)[:, :, 1, 1]
    np.testing.assert_array_equal(hidden, np.repeat([[0, 0, 0], [1, 0, 0], [1, 1, 0]], 2, axis=0))


@pytest.mark.parametrize("mask_type", ["A", "B"])
def test_single_layer_sees_its_causal_neighbourhood(mask_type):
    rng = np.random.default_rng(0)
    conv = MaskedConv2d(1, 2, 3, mask_type, rng=rng, dtype="float64")
    dep = dependency(conv, f64(rng.standard_normal((1, 1, 5, 5))))[:, :, :, 0]     # (2, 5, 5, 5, 5)
    allowed = raster_before(5, 5, strict=(mask_type == "A"))
    assert not (dep & ~allowed).any()
    i, j = 2, 2
    expected = np.zeros((5, 5), bool)
    expected[i - 1, j - 1:j + 2] = True
    expected[i, j - 1:j + 1 if mask_type == "B" else j] = True
    np.testing.assert_array_equal(dep[0, i, j], expected)
    assert dep[:, i, j, i, j].all() == (mask_type == "B")        # A excludes the centre, B includes it


# ----------------------------------------------------------------------------- the blind spot

def test_ungated_stack_is_causal_and_has_a_blind_spot():
    rng = np.random.default_rng(1)
    n_layers, i, j = 3, 3, 3
    dep = dependency(masked_stack(n_layers, rng=rng), f64(rng.standard_normal((1, 1, 7, 7))))
    dep = dep.any(axis=(0, 3))                                    # (7, 7, 7, 7): pixel -> pixel
    assert not (dep & ~raster_before(7, 7)).any(), "a pixel sees itself or a later pixel"
    seen = dep[i, j]
    assert not seen[i - 1, j + 2]         # precedes (i, j), inside the 3-layer window: the blind spot
    assert seen[i - 2, j + 2] and seen[i - 3, j + 3] and seen[i, j - 3]     # ... while farther pixels are seen
    blind = [p for p in in_window(7, 7, i, j, n_layers) if not seen[p]]
    assert blind == [(i - 2, j + 3), (i - 1, j + 2), (i - 1, j + 3)]


def test_gated_stack_covers_its_receptive_field_without_blind_spot():
    rng = np.random.default_rng(2)
    n_layers, i, j = 3, 3, 3
    stack = GatedStack(1, 3, n_layers, rng=rng, dtype="float64")
    dep = dependency(stack, f64(rng.standard_normal((1, 1, 7, 7)))).any(axis=(0, 3))
    assert not (dep & ~raster_before(7, 7)).any(), "a pixel sees itself or a later pixel"
    seen = dep[i, j]
    assert all(seen[p] for p in in_window(7, 7, i, j, n_layers))
    assert seen[i - 1, j + 2]                                     # the ungated stack's blind spot
    assert not seen[i, j] and not seen[i, j + 1] and not seen[i + 1, :].any()


def test_gated_block_types_a_and_b():
    """Type A alone excludes the current pixel; type B fed the image includes it (B is
    for layers whose input already excludes it)."""
    rng = np.random.default_rng(3)
    x = f64(rng.standard_normal((1, 1, 5, 5)))
    for mask_type, strict in (("A", True), ("B", False)):
        block = GatedBlock(1, 2, 3, mask_type, rng=rng, dtype="float64")
        dep = dependency(lambda x: block(x, x)[1], x).any(axis=(0, 3))
        assert not (dep & ~raster_before(5, 5, strict)).any()
        assert dep[2, 2, 2, 2] == (not strict)
        assert dep[2, 2, 2, 1] and dep[2, 2, 1, 3]                   # left neighbour, above-right


def test_vertical_stack_never_reads_the_horizontal_stack():
    rng = np.random.default_rng(4)
    block = GatedBlock(2, 2, 3, "B", rng=rng, dtype="float64")
    v, h = f64(rng.standard_normal((1, 2, 4, 4))), f64(rng.standard_normal((1, 2, 4, 4)))
    jac_v_h = td.jacobian(lambda h: block(v, h)[0], h)
    assert not jac_v_h.any()
    jac_h_v = td.jacobian(lambda v: block(v, h)[1], v)
    assert jac_h_v.any()


# ----------------------------------------------------------------------------- colour channels

@pytest.mark.parametrize("mask_type", ["A", "B"])
def test_rgb_channel_groups_at_the_centre(mask_type):
    rng = np.random.default_rng(5)
    conv = MaskedConv2d(3, 3, 3, mask_type, color_channels=3, rng=rng, dtype="float64")
    dep = dependency(conv, f64(rng.standard_normal((1, 3, 5, 5))))        # (3, 5, 5, 3, 5, 5)
    centre = dep[:, 2, 2, :, 2, 2]                                          # [out group, in channel]
    strict = np.tril(np.ones((3, 3), bool), -1)                             # R: nothing, G: R, B: R and G
    np.testing.assert_array_equal(centre, strict if mask_type == "A" else strict | np.eye(3, dtype=bool))
    assert dep[:, 2, 2, :, 2, 1].all() and dep[:, 2, 2, :, 1, 3].all()     # earlier pixels: every channel
    assert not dep[:, 2, 2, :, 2, 3].any() and not dep[:, 2, 2, :, 3, :].any()


def test_rgb_stack_keeps_the_colour_ordering():
    """A (3 -> 6), B (6 -> 6), B (6 -> 3): output colour g at (i, j) reads input colour c
    at (i, j) only if c < g, every colour of earlier pixels."""
    rng = np.random.default_rng(6)
    layers = [MaskedConv2d(3, 6, 3, "A", 3, rng=rng, dtype="float64"),
              MaskedConv2d(6, 6, 3, "B", 3, rng=rng, dtype="float64"),
              MaskedConv2d(6, 3, 3, "B", 3, rng=rng, dtype="float64")]

    def fn(x):
        for k, layer in enumerate(layers):
            x = layer(x if k == 0 else td.tanh(x))
        return x
    dep = dependency(fn, f64(rng.standard_normal((1, 3, 5, 5))))
    np.testing.assert_array_equal(dep[:, 2, 2, :, 2, 2], np.tril(np.ones((3, 3), bool), -1))
    before = raster_before(5, 5)
    same_pixel = np.eye(25, dtype=bool).reshape(5, 5, 5, 5)
    for g in range(3):
        for c in range(3):
            at_or_after = dep[g, :, :, c] & ~before     # only the pixel itself, and only earlier colours
            np.testing.assert_array_equal(at_or_after, same_pixel if c < g else False)
    assert dep[:, 2, 2, :, 1, 3].all() and dep[:, 2, 2, :, 0, 4].all()     # earlier pixels: every colour


# ----------------------------------------------------------------------------- conditioning

def test_class_conditioning_changes_the_output_and_keeps_causality():
    rng = np.random.default_rng(7)
    stack = GatedStack(1, 3, 2, cond_features=4, rng=rng, dtype="float64")
    x = f64(rng.standard_normal((2, 1, 5, 5)))
    one_hot = f64(np.eye(4)[[1, 3]], requires_grad=False)
    other = f64(np.eye(4)[[2, 0]], requires_grad=False)
    y1, y2 = stack(x, one_hot).numpy(), stack(x, other).numpy()
    assert np.abs(y1 - y2).min() > 0                    # every output entry moves with the class
    for cond in (one_hot, other):
        dep = dependency(lambda x: stack(x, cond[:1]), x[:1].detach()).any(axis=(0, 3))
        assert not (dep & ~raster_before(5, 5)).any()


# ----------------------------------------------------------------------------- forward values

def conv2d_ref(x, w, b, padding):
    """y = b + sum over kernel taps (i, j) of w[:, :, i, j] x_pad[..., i:i+H, j:j+W]."""
    (ph, pw) = padding
    x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    kh, kw = w.shape[2:]
    ho, wo = x.shape[2] - kh + 1, x.shape[3] - kw + 1
    y = np.zeros((x.shape[0], w.shape[0], ho, wo)) + (0 if b is None else b[None, :, None, None])
    for i in range(kh):
        for j in range(kw):
            y += np.einsum("nchw,oc->nohw", x[:, :, i:i + ho, j:j + wo], w[:, :, i, j])
    return y


def sigmoid_ref(x):
    return 1 / (1 + np.exp(-x))


def gate_ref(a):
    f, g = np.split(a, 2, axis=1)
    return np.tanh(f) * sigmoid_ref(g)


def gated_block_ref(block, v, h, cond):
    """The gated block written out in NumPy: paddings, the one-row shift, gates, residual."""
    p = block.k // 2
    conv = lambda layer, x: conv2d_ref(x, layer.weight.numpy(), layer.bias.numpy(), (0, 0))  # noqa: E731
    a_v = conv(block.v_conv, np.pad(v, ((0, 0), (0, 0), (p, 0), (p, p))))
    h_in = np.pad(h, ((0, 0), (0, 0), (0, 0), (p + 1, 0)))[..., :-1] if block.mask_type == "A" else \
        np.pad(h, ((0, 0), (0, 0), (0, 0), (p, 0)))
    a_h = conv(block.h_conv, h_in) + conv(block.v_to_h, np.pad(a_v, ((0, 0), (0, 0), (1, 0), (0, 0)))[:, :, :-1])
    if cond is not None:
        a_v = a_v + (cond @ block.v_cond.weight.numpy())[:, :, None, None]
        a_h = a_h + (cond @ block.h_cond.weight.numpy())[:, :, None, None]
    h_out = conv(block.h_out, gate_ref(a_h))
    return gate_ref(a_v), h_out + h if block.residual else h_out


@pytest.mark.parametrize("color_channels", [1, 3])
def test_masked_conv_forward(device, color_channels):
    rng = np.random.default_rng(8)
    conv = MaskedConv2d(3, 6, (3, 5), "B", color_channels, rng=rng, dtype="float64", device=device)
    x = rng.standard_normal((2, 3, 5, 6))
    y = conv(td.tensor(x, device=device))
    assert y.device == device and y.shape == (2, 6, 5, 6)
    mask = pixelcnn_mask(3, 6, (3, 5), "B", color_channels)
    ref = conv2d_ref(x, conv.weight.numpy() * mask, conv.bias.numpy(), (1, 2))
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("mask_type, cond_features", [("A", None), ("B", None), ("B", 3)])
def test_gated_block_forward(device, mask_type, cond_features):
    rng = np.random.default_rng(9)
    block = GatedBlock(2, 2, 5, mask_type, cond_features, rng=rng, dtype="float64", device=device)
    v, h = rng.standard_normal((2, 2, 6, 5)), rng.standard_normal((2, 2, 6, 5))
    cond = None if cond_features is None else rng.standard_normal((2, 3))
    v_out, h_out = block(td.tensor(v, device=device), td.tensor(h, device=device),
                         None if cond is None else td.tensor(cond, device=device))
    v_ref, h_ref = gated_block_ref(block, v, h, cond)
    assert v_out.device == device and h_out.shape == (2, 2, 6, 5)
    assert block.residual == (mask_type == "B")
    np.testing.assert_allclose(v_out.numpy(), v_ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(h_out.numpy(), h_ref, rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------------------- derivatives


def test_masked_conv_gradients():
    rng = np.random.default_rng(10)
    conv = MaskedConv2d(3, 3, 3, "A", color_channels=3, rng=rng, dtype="float64")
    x = f64(rng.standard_normal((2, 3, 4, 4)))
    fn = lambda x, w, b: td.tanh(with_params(conv, x, weight=w, bias=b))  # noqa: E731
    td.gradcheck(fn, [x, conv.weight, conv.bias])
    td.gradgradcheck(fn, [x, conv.weight, conv.bias])
    (conv(x) ** 2).sum().backward()
    mask = conv.mask.astype(bool)
    assert (conv.weight.grad.numpy()[~mask] == 0).all() and (conv.weight.grad.numpy()[mask] != 0).all()


@pytest.mark.parametrize("mask_type", ["A", "B"])
def test_gated_block_gradients(mask_type):
    rng = np.random.default_rng(11)
    block = GatedBlock(2, 2, 3, mask_type, cond_features=2, rng=rng, dtype="float64")
    v, h = f64(rng.standard_normal((2, 2, 3, 4))), f64(rng.standard_normal((2, 2, 3, 4)))
    cond = f64(rng.standard_normal((2, 2)))
    fn = lambda v, h, c: block(v, h, c)  # noqa: E731
    td.gradcheck(fn, [v, h, cond])
    td.gradgradcheck(fn, [v, h, cond])


def test_gated_stack_gradients():
    rng = np.random.default_rng(12)
    stack = GatedStack(1, 2, 2, rng=rng, dtype="float64")
    x = f64(rng.standard_normal((1, 1, 4, 4)))
    td.gradcheck(stack, [x])
    td.gradgradcheck(stack, [x])


# ----------------------------------------------------------------------------- state and errors

def test_mask_buffer_state():
    conv = MaskedConv2d(1, 2, 3, "A")
    state = conv.state_dict()
    assert set(state) == {"weight", "bias", "mask"} and state["mask"].dtype == np.float32
    np.testing.assert_array_equal(state["mask"], pixelcnn_mask(1, 2, 3, "A"))
    assert "mask_type='A'" in repr(conv)


def test_errors():
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        MaskedConv2d(1, 2, 4)
    with pytest.raises(ValueError, match='mask_type must be "A"'):
        MaskedConv2d(1, 2, 3, mask_type="C")
    with pytest.raises(ValueError, match="out_channels=4 must be divisible by color_channels=3"):
        MaskedConv2d(3, 4, 3, color_channels=3)
    with pytest.raises(ValueError, match=r"input must have shape \(N, 2, H, W\), got \(1, 3, 5, 5\)"):
        MaskedConv2d(2, 2, 3)(td.tensor(np.zeros((1, 3, 5, 5))))
    with pytest.raises(ValueError, match="residual connection needs in_channels == channels"):
        GatedBlock(1, 2, residual=True)
    with pytest.raises(ValueError, match="kernel_size must be square"):
        GatedBlock(2, 2, (3, 5))
    block = GatedBlock(2, 2, cond_features=3)
    x = td.tensor(np.zeros((1, 2, 4, 4)))
    with pytest.raises(ValueError, match="cond missing"):
        block(x, x)
    with pytest.raises(ValueError, match=r"cond must have shape \(N, cond_features\) = \(1, 3\), got \(1, 2\)"):
        block(x, x, td.tensor(np.zeros((1, 2))))
    with pytest.raises(ValueError, match=r"v and h must both have shape \(N, 2, H, W\)"):
        block(x, x[:, :1], td.tensor(np.zeros((1, 3))))
    with pytest.raises(ValueError, match="n_layers must be a positive int"):
        GatedStack(1, 2, 0)
