"""Coupling conditioners: exactly the identity at initialisation (shift = log_scale = 0),
shapes, forward values against NumPy once the zero layer is changed, the bounded
log-scale, gradients (first and second order) and argument errors."""
import numpy as np
import pytest

import tinydgm as td
from tinydgm.nn.conditioners import CNNConditioner, MLPConditioner


def f64(a, requires_grad=True, device="cpu"):
    return td.tensor(a, dtype="float64", requires_grad=requires_grad, device=device)


def perturb_last_layer(net, rng, scale=0.5):
    """Move the zero-initialised last layer (and the tanh scale) away from its init."""
    for p in [net.last.weight, net.last.bias] + ([net.scale] if net.tanh_scale else []):
        p.data = td.tensor(p.numpy() + scale * rng.standard_normal(p.shape), dtype=p.dtype, device=p.device).data


# ----------------------------------------------------------------------------- identity at init

@pytest.mark.parametrize("tanh_scale", [True, False])
def test_mlp_is_the_identity_coupling_at_init(device, tanh_scale):
    rng = np.random.default_rng(0)
    net = MLPConditioner(3, 2, hidden=(16, 16), tanh_scale=tanh_scale, rng=rng, device=device)
    shift, log_scale = net(td.tensor(rng.standard_normal((5, 3)) * 10, dtype="float32", device=device))
    assert shift.shape == log_scale.shape == (5, 2) and shift.device == device
    assert shift.dtype == np.float32
    np.testing.assert_array_equal(shift.numpy(), 0.0)
    np.testing.assert_array_equal(log_scale.numpy(), 0.0)


@pytest.mark.parametrize("tanh_scale", [True, False])
def test_cnn_is_the_identity_coupling_at_init(device, tanh_scale):
    rng = np.random.default_rng(1)
    net = CNNConditioner(2, 3, hidden_channels=8, n_blocks=2, tanh_scale=tanh_scale, rng=rng, device=device)
    shift, log_scale = net(td.tensor(rng.standard_normal((2, 2, 6, 5)), dtype="float32", device=device))
    assert shift.shape == log_scale.shape == (2, 3, 6, 5) and shift.device == device
    np.testing.assert_array_equal(shift.numpy(), 0.0)
    np.testing.assert_array_equal(log_scale.numpy(), 0.0)


def test_zero_layer_still_learns():
    """At init the last layer gets a non-zero gradient, so training leaves the identity."""
    rng = np.random.default_rng(2)
    for net, x in ((MLPConditioner(3, 2, hidden=(8,), rng=rng, dtype="float64"), rng.standard_normal((4, 3))),
                   (CNNConditioner(1, 1, 4, 1, rng=rng, dtype="float64"), rng.standard_normal((2, 1, 4, 4)))):
        shift, log_scale = net(f64(x, requires_grad=False))
        (shift.sum() + log_scale.sum()).backward()
        assert np.abs(net.last.weight.grad.numpy()).max() > 0
        assert np.abs(net.last.bias.grad.numpy()).max() > 0


# ----------------------------------------------------------------------------- shapes and values

def test_mlp_shapes():
    net = MLPConditioner(4, 3, hidden=(5,))
    shift, log_scale = net(td.tensor(np.ones((2, 7, 4))))
    assert shift.shape == log_scale.shape == (2, 7, 3)
    shift, log_scale = MLPConditioner(4, 1, hidden=())(td.tensor(np.ones((6, 4))))
    assert shift.shape == (6, 1)


def test_mlp_forward_values(device):
    rng = np.random.default_rng(3)
    net = MLPConditioner(3, 2, hidden=(6, 5), activation="tanh", rng=rng, dtype="float64", device=device)
    perturb_last_layer(net, rng)
    x = rng.standard_normal((4, 3))
    shift, log_scale = net(td.tensor(x, device=device))
    h = x
    for layer in net.layers:
        h = np.tanh(h @ layer.weight.numpy() + layer.bias.numpy())
    out = h @ net.last.weight.numpy() + net.last.bias.numpy()
    np.testing.assert_allclose(shift.numpy(), out[:, :2], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(log_scale.numpy(), net.scale.numpy() * np.tanh(out[:, 2:]), rtol=1e-12, atol=1e-12)
    assert np.abs(shift.numpy()).min() > 0 and np.abs(log_scale.numpy()).min() > 0


def conv_same_ref(x, w, b):
    """'same'-padded cross-correlation, one kernel tap at a time."""
    kh, kw = w.shape[2:]
    xp = np.pad(x, ((0, 0), (0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2)))
    y = np.zeros((x.shape[0], w.shape[0]) + x.shape[2:]) + b[None, :, None, None]
    for i in range(kh):
        for j in range(kw):
            y += np.einsum("nchw,oc->nohw", xp[:, :, i:i + x.shape[2], j:j + x.shape[3]], w[:, :, i, j])
    return y


def test_cnn_forward_values(device):
    rng = np.random.default_rng(4)
    net = CNNConditioner(2, 1, hidden_channels=3, n_blocks=1, activation="elu", rng=rng, dtype="float64",
                         device=device)
    perturb_last_layer(net, rng)
    x = rng.standard_normal((2, 2, 5, 4))
    shift, log_scale = net(td.tensor(x, device=device))
    conv = lambda layer, x: conv_same_ref(x, layer.weight.numpy(), layer.bias.numpy())  # noqa: E731
    elu = lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0)))  # noqa: E731
    h = conv(net.conv_in, x)
    for conv_1, conv_2 in net.blocks:
        h = h + conv(conv_2, elu(conv(conv_1, elu(h))))
    out = conv(net.last, elu(h))
    np.testing.assert_allclose(shift.numpy(), out[:, :1], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(log_scale.numpy(), net.scale.numpy() * np.tanh(out[:, 1:]), rtol=1e-10, atol=1e-12)


def test_log_scale_is_bounded_by_the_scale():
    rng = np.random.default_rng(5)
    net = MLPConditioner(2, 2, hidden=(8,), rng=rng, dtype="float64")
    net.last.weight.data = net.last.weight.data + 100.0       # a huge raw log-scale
    _, log_scale = net(f64(rng.standard_normal((50, 2)) * 10, requires_grad=False))
    assert (np.abs(log_scale.numpy()) <= net.scale.numpy()).all()
    assert np.abs(log_scale.numpy()).max() > 0.99


# ----------------------------------------------------------------------------- derivatives

@pytest.mark.parametrize("activation", ["relu", "tanh", "softplus"])
def test_mlp_gradients(activation):
    rng = np.random.default_rng(6)
    net = MLPConditioner(3, 2, hidden=(5, 4), activation=activation, rng=rng, dtype="float64")
    perturb_last_layer(net, rng)
    x = f64(rng.standard_normal((3, 3)))
    td.gradcheck(net, [x])
    td.gradgradcheck(net, [x])


def test_cnn_gradients():
    rng = np.random.default_rng(7)
    net = CNNConditioner(2, 1, hidden_channels=3, n_blocks=1, activation="elu", rng=rng, dtype="float64")
    perturb_last_layer(net, rng)
    x = f64(rng.standard_normal((1, 2, 4, 4)))
    td.gradcheck(net, [x])
    td.gradgradcheck(net, [x])


# ----------------------------------------------------------------------------- errors

def test_errors():
    with pytest.raises(ValueError, match="activation must be one of"):
        MLPConditioner(2, 2, activation="swish")
    with pytest.raises(ValueError, match="out_features must be a positive int"):
        MLPConditioner(2, 0)
    with pytest.raises(ValueError, match="hidden sizes must be a positive int"):
        MLPConditioner(2, 2, hidden=(4, 0))
    with pytest.raises(ValueError, match="kernel_size must be an odd positive int"):
        CNNConditioner(1, 1, kernel_size=2)
    with pytest.raises(ValueError, match="n_blocks must be a non-negative int"):
        CNNConditioner(1, 1, n_blocks=-1)
    with pytest.raises(ValueError, match="input has 3 channels"):
        CNNConditioner(2, 1, 4)(td.tensor(np.zeros((1, 3, 4, 4))))
