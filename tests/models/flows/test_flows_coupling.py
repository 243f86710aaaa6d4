"""Coupling layers: the masks as drawn in the docstring, NICE additive coupling and scaling,
RealNVP affine coupling on vectors and images, through the flow contract."""
import numpy as np
import pytest
from flow_contracts import assert_flow_transform

import tinydgm as td
from tinydgm.models.flows import (AdditiveCoupling, AffineCoupling, Compose, Flow, Scaling, channel_mask,
                                  checkerboard_mask, half_mask)
from tinydgm.nn.conditioners import CNNConditioner, MLPConditioner


def _mlp(d, rng, scale=0.5):
    cond = MLPConditioner(d, d, hidden=(8,), rng=rng, dtype="float64")
    cond.last.weight.data = scale * rng.standard_normal(cond.last.weight.shape)   # not the identity
    cond.last.bias.data = scale * rng.standard_normal(cond.last.bias.shape)
    return cond


def _cnn(c, rng, scale=0.3):
    cond = CNNConditioner(c, c, hidden_channels=4, n_blocks=1, rng=rng, dtype="float64")
    cond.last.weight.data = scale * rng.standard_normal(cond.last.weight.shape)
    return cond


def test_masks_match_the_docstring():
    b = checkerboard_mask((2, 4, 4), dtype="float64")
    np.testing.assert_array_equal(b[0], [[1, 0, 1, 0], [0, 1, 0, 1], [1, 0, 1, 0], [0, 1, 0, 1]])
    np.testing.assert_array_equal(b[1], b[0])
    np.testing.assert_array_equal(checkerboard_mask((1, 3, 3), flip=True, dtype="float64"), 1 - checkerboard_mask((1, 3, 3), dtype="float64"))
    c = channel_mask((4, 2, 2), dtype="float64")
    assert c[:2].min() == 1 and c[2:].max() == 0
    np.testing.assert_array_equal(channel_mask((4, 2, 2), flip=True, dtype="float64"), 1 - c)
    np.testing.assert_array_equal(half_mask(4), [1, 1, 0, 0])
    np.testing.assert_array_equal(half_mask(3, flip=True), [0, 0, 1])
    with pytest.raises(ValueError, match="C even"):
        channel_mask((3, 2, 2))
    with pytest.raises(ValueError, match="d must be an int >= 2"):
        half_mask(1)


def test_mask_validation():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="both 0s and 1s"):
        AffineCoupling(np.ones(2), _mlp(2, rng))
    with pytest.raises(ValueError, match="only 0 and 1"):
        AffineCoupling(np.array([0.5, 1.0]), _mlp(2, rng))
    layer = AffineCoupling(half_mask(2, dtype="float64"), _mlp(2, rng))
    with pytest.raises(ValueError, match=r"input must have shape \(N, 2\)"):
        layer(td.tensor(np.zeros((3, 3)), dtype="float64"))


@pytest.mark.parametrize("flip", [False, True])
def test_affine_coupling_on_vectors(flip):
    rng = np.random.default_rng(1)
    layer = AffineCoupling(half_mask(5, flip, dtype="float64"), _mlp(5, rng))
    x = rng.normal(size=(3, 5))
    assert_flow_transform(layer, x)
    # x1 (mask 1) passes through unchanged; x2 changes
    y, _ = layer(td.tensor(x, dtype="float64"))
    b = half_mask(5, flip).astype(bool)
    np.testing.assert_array_equal(y.numpy()[:, b], x[:, b])
    assert np.abs(y.numpy()[:, ~b] - x[:, ~b]).min() > 0


@pytest.mark.parametrize("mask_fn, shape", [(checkerboard_mask, (1, 4, 4)), (checkerboard_mask, (2, 3, 3)),
                                            (channel_mask, (4, 2, 2))])
def test_affine_coupling_on_images(mask_fn, shape):
    rng = np.random.default_rng(2)
    for flip in (False, True):
        layer = AffineCoupling(mask_fn(shape, flip, dtype="float64"), _cnn(shape[0], rng))
        assert_flow_transform(layer, rng.normal(size=(2,) + shape))


def test_additive_coupling_is_volume_preserving():
    rng = np.random.default_rng(3)
    layer = AdditiveCoupling(half_mask(4, dtype="float64"), _mlp(4, rng))
    x = rng.normal(size=(3, 4))
    assert_flow_transform(layer, x)
    _, log_det = layer(td.tensor(x, dtype="float64"))
    np.testing.assert_array_equal(log_det.numpy(), 0)
    # a conditioner returning the shift alone works too
    cnn = _cnn(1, rng)
    image = AdditiveCoupling(checkerboard_mask((1, 4, 4), dtype="float64"), lambda h: cnn(h)[0])
    assert_flow_transform(image, rng.normal(size=(2, 1, 4, 4)), gradcheck_params=False)


def test_scaling_layer():
    rng = np.random.default_rng(4)
    layer = Scaling((3,), dtype="float64")
    layer.log_scale.data = rng.normal(size=3)
    assert_flow_transform(layer, rng.normal(size=(4, 3)))
    _, log_det = layer(td.tensor(np.zeros((2, 3)), dtype="float64"))
    np.testing.assert_allclose(log_det.numpy(), layer.log_scale.numpy().sum())


def test_fresh_couplings_are_the_identity():
    rng = np.random.default_rng(5)
    x = td.tensor(rng.normal(size=(3, 4)), dtype="float64")
    for cls in (AffineCoupling, AdditiveCoupling):
        layer = cls(half_mask(4, dtype="float64"), MLPConditioner(4, 4, hidden=(8,), rng=rng, dtype="float64"))
        y, log_det = layer(x)
        np.testing.assert_array_equal(y.numpy(), x.numpy())
        np.testing.assert_array_equal(log_det.numpy(), 0)


def test_nice_flow_contract_and_float32():
    # NICE: additive couplings with alternating masks, then the scaling layer
    rng = np.random.default_rng(6)
    layers = [AdditiveCoupling(half_mask(4, bool(k % 2), dtype="float64"), _mlp(4, rng)) for k in range(4)]
    scaling = Scaling((4,), dtype="float64")
    scaling.log_scale.data = 0.3 * rng.normal(size=4)
    flow = Flow(layers + [scaling], (4,))
    x = rng.normal(size=(3, 4))
    assert_flow_transform(flow.transform, x)
    # log p(x) = log N(z) + sum s: the couplings add no volume change, only the scaling does
    z, _ = flow.transform(td.tensor(x, dtype="float64"))
    expected = (-0.5 * z.numpy() ** 2 - 0.5 * np.log(2 * np.pi)).sum(1) + scaling.log_scale.numpy().sum()
    np.testing.assert_allclose(flow.log_prob(td.tensor(x, dtype="float64")).numpy(), expected, rtol=1e-12)
    # float32 stays float32
    layer = AffineCoupling(half_mask(2), MLPConditioner(2, 2, hidden=(8,), rng=rng))
    y, log_det = layer(td.tensor(rng.normal(size=(3, 2)).astype(np.float32)))
    assert y.dtype == np.float32 and log_det.dtype == np.float32


def test_gradgradcheck_of_an_affine_coupling_log_prob():
    rng = np.random.default_rng(7)
    flow = Flow([AffineCoupling(half_mask(2, dtype="float64"), _mlp(2, rng, 0.3))], (2,))
    x = td.tensor(rng.normal(size=(3, 2)), dtype="float64", requires_grad=True)
    td.gradgradcheck(flow.log_prob, [x])
