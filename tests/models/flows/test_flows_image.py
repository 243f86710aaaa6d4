"""Image flow layers: squeeze, act-norm / batch-norm transforms, Glow's LU 1x1 convolution and
the multi-scale architecture with factored-out latents, through the flow contract."""
import numpy as np
import pytest
from flow_contracts import assert_flow_transform

import tinydgm as td
from tinydgm.models.flows import (ActNormTransform, AffineCoupling, BatchNormTransform, Compose, Flow,
                                  InvertibleConv1x1, MultiScale, Squeeze, channel_mask, checkerboard_mask)
from tinydgm.nn.conditioners import CNNConditioner


def _coupling(shape, mask_fn, flip, rng):
    cond = CNNConditioner(shape[0], shape[0], hidden_channels=4, n_blocks=1, rng=rng, dtype="float64")
    cond.last.weight.data = 0.3 * rng.standard_normal(cond.last.weight.shape)
    return AffineCoupling(mask_fn(shape, flip, dtype="float64"), cond)


def test_squeeze_layout_and_contract():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, 4, 6))
    z, log_det = Squeeze()(td.tensor(x, dtype="float64"))
    assert z.shape == (2, 12, 2, 3)
    # channel 4c + 2i + j holds position (i, j) of each 2x2 block of channel c
    for c in range(3):
        for i in range(2):
            for j in range(2):
                np.testing.assert_array_equal(z.numpy()[:, 4 * c + 2 * i + j], x[:, c, i::2, j::2])
    np.testing.assert_array_equal(log_det.numpy(), 0)
    assert_flow_transform(Squeeze(), x)
    with pytest.raises(ValueError, match="must be even"):
        Squeeze()(td.tensor(np.zeros((1, 1, 3, 4))))
    with pytest.raises(ValueError, match=r"4 dimensions \(N, C, H, W\)"):
        Squeeze()(td.tensor(np.zeros((1, 4, 4))))


def test_invertible_conv1x1_lu():
    rng = np.random.default_rng(1)
    layer = InvertibleConv1x1(4, rng=rng, dtype="float64")
    w0 = layer.weight().numpy()
    # initialisation: a permutation matrix (orthogonal, log|det| = 0)
    np.testing.assert_array_equal(np.sort(w0, axis=1)[:, -1], 1)
    np.testing.assert_allclose(w0 @ w0.T, np.eye(4))
    for p in (layer.lower, layer.upper, layer.log_s):
        p.data = 0.5 * rng.standard_normal(p.shape)
    layer.sign_s = np.array([1.0, -1.0, 1.0, -1.0])
    w = layer.weight().numpy()
    sign, logabsdet = np.linalg.slogdet(w)
    np.testing.assert_allclose(logabsdet, layer.log_s.numpy().sum(), rtol=1e-12)
    x = rng.normal(size=(2, 4, 3, 2))
    z, log_det = layer(td.tensor(x, dtype="float64"))
    np.testing.assert_allclose(z.numpy(), np.einsum("ij,njhw->nihw", w, x), rtol=1e-12)
    np.testing.assert_allclose(log_det.numpy(), 6 * logabsdet)             # H W log|det W|
    assert_flow_transform(layer, x)


def test_actnorm_transform():
    rng = np.random.default_rng(2)
    layer = ActNormTransform(3, dtype="float64")
    x = rng.normal(size=(4, 3, 2, 2)) * [[[[2.0]], [[0.5]], [[3.0]]]] + 1.0
    assert_flow_transform(layer, x)        # initialises on x first
    y, _ = layer(td.tensor(x, dtype="float64"))
    np.testing.assert_allclose(y.numpy().mean(axis=(0, 2, 3)), 0, atol=1e-12)
    # vectors too
    assert_flow_transform(ActNormTransform(2, dtype="float64"), rng.normal(size=(5, 2)))


def test_batchnorm_transform_eval_mode_is_exact_and_train_mode_inverse_raises():
    rng = np.random.default_rng(3)
    layer = BatchNormTransform(3, dtype="float64")
    for _ in range(3):
        layer(td.tensor(rng.normal(size=(8, 3, 2, 2)) * 2 + 1, dtype="float64"))
    with pytest.raises(RuntimeError, match="evaluation mode"):
        layer.inverse(td.tensor(np.zeros((1, 3, 2, 2)), dtype="float64"))
    layer.norm.weight.data = rng.normal(size=3)
    layer.eval()
    assert_flow_transform(layer, rng.normal(size=(2, 3, 2, 2)))


def _multiscale(event_shape, n_scales, rng, conv1x1=False):
    c, h, w = event_shape
    scales = []
    for _ in range(n_scales):
        layers = [_coupling((c, h, w), checkerboard_mask, False, rng), Squeeze()]
        c, h, w = 4 * c, h // 2, w // 2
        if conv1x1:
            conv = InvertibleConv1x1(c, rng=rng, dtype="float64")
            conv.lower.data = 0.3 * rng.standard_normal((c, c))
            layers.append(conv)
        layers.append(_coupling((c, h, w), channel_mask, True, rng))
        scales.append(Compose(layers))
        c //= 2
    final = Compose([_coupling((c, h, w), checkerboard_mask, False, rng),
                     _coupling((c, h, w), checkerboard_mask, True, rng)])
    return MultiScale(scales, final, event_shape)


def test_multiscale_latent_shapes():
    ms = MultiScale([Compose([Squeeze()]), Compose([Squeeze()])], Compose([]), (1, 28, 28))
    assert ms.latent_shapes == [(2, 14, 14), (4, 7, 7), (4, 7, 7)]
    assert sum(c * h * w for c, h, w in ms.latent_shapes) == 784
    with pytest.raises(ValueError, match="must be even"):
        MultiScale([Compose([Squeeze()])] * 3, Compose([]), (1, 28, 28))


@pytest.mark.parametrize("n_scales, conv1x1", [(1, False), (2, False), (2, True)])
def test_multiscale_contract(n_scales, conv1x1):
    rng = np.random.default_rng(4)
    ms = _multiscale((1, 8, 8) if n_scales == 2 else (1, 4, 4), n_scales, rng, conv1x1)
    x = rng.normal(size=(2,) + ms.event_shape)
    assert_flow_transform(ms, x, gradcheck_params=n_scales == 1)
    if n_scales == 2:
        # parameters of the deeper flows: gradcheck of log_prob w.r.t. the final block only (cheaper)
        flow = Flow(ms, ms.event_shape)
        cond = ms.final.transforms[0].conditioner
        weight = td.tensor(cond.last.weight.numpy(), dtype="float64", requires_grad=True)
        saved = cond.last.weight

        def log_prob(w):
            cond.last.weight = w
            try:
                return flow.log_prob(td.tensor(x, dtype="float64"))
            finally:
                cond.last.weight = saved
        td.gradcheck(log_prob, [weight])


def test_multiscale_keeps_every_factored_out_latent_in_log_prob():
    rng = np.random.default_rng(5)
    ms = _multiscale((1, 8, 8), 2, rng)
    flow = Flow(ms, (1, 8, 8))
    x = td.tensor(rng.normal(size=(3, 1, 8, 8)), dtype="float64")
    zs, log_det = ms.latents(x)
    assert [tuple(z.shape[1:]) for z in zs] == [(2, 4, 4), (4, 2, 2), (4, 2, 2)]
    base = sum((-0.5 * z.numpy() ** 2 - 0.5 * np.log(2 * np.pi)).reshape(3, -1).sum(1) for z in zs)
    np.testing.assert_allclose(flow.log_prob(x).numpy(), base + log_det.numpy(), rtol=1e-12)
    # the packed z is a permutation of the latents' entries
    z, _ = ms(x)
    np.testing.assert_array_equal(np.sort(z.numpy().reshape(3, -1), 1),
                                  np.sort(np.concatenate([t.numpy().reshape(3, -1) for t in zs], 1), 1))
    # the factored-out z^(1) does not pass through the later scales: changing the final block leaves it unchanged
    ms.final.transforms[0].conditioner.last.bias.data = rng.normal(size=ms.final.transforms[0].conditioner.last.bias.shape)
    zs2, _ = ms.latents(x)
    np.testing.assert_array_equal(zs2[0].numpy(), zs[0].numpy())
    np.testing.assert_array_equal(zs2[1].numpy(), zs[1].numpy())
    assert np.abs(zs2[2].numpy() - zs[2].numpy()).max() > 0
