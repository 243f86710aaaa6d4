"""Every layer of tinydgm.nn (Linear, Conv2d, ConvTranspose2d, Embedding, BatchNorm,
ActNorm, activations): forward values against NumPy references (and torch.nn where PyTorch
imports), first and second derivatives with respect to the input and every parameter in
float64, log-determinants against brute-force Jacobians, inverses, and input errors."""
import math
import re

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

import tinydgm as td
from tinydgm import backend, nn

try:
    import torch
except ImportError:     # the comparisons with torch.nn are skipped
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed")

rng = np.random.default_rng(0)


def randn(*shape):
    return rng.standard_normal(shape)


def f64(a, requires_grad=True):
    return td.tensor(a, dtype="float64", requires_grad=requires_grad)


def gen(seed=0):
    return np.random.default_rng(seed)


# ----------------------------------------------------------------------------- derivative helper

def _owner(layer, dotted):
    *path, attr = dotted.split(".")
    for part in path:
        layer = getattr(layer, part)
    return layer, attr


def as_function(layer, names, method=None):
    """fn(x, *params): ``layer.method(x)`` computed with the parameters ``names`` replaced
    by the given tensors. gradcheck differentiates with respect to copies of its inputs,
    so the layer must compute with those copies, not with its own Parameters."""
    call = layer if method is None else getattr(layer, method)

    def fn(x, *params):
        saved = []
        try:
            for name, p in zip(names, params):
                module, attr = _owner(layer, name)
                saved.append((module, attr, getattr(module, attr)))
                object.__setattr__(module, attr, p)
            return call(x)
        finally:
            for module, attr, old in reversed(saved):
                object.__setattr__(module, attr, old)
    return fn


def check_derivatives(layer, x, method=None, names=None, wrt_input=True):
    """gradcheck and gradgradcheck of ``layer.method`` in float64 with respect to the input
    (if floating and ``wrt_input``) and the parameters ``names`` (all by default)."""
    layer.to(dtype="float64")
    params = dict(layer.named_parameters())
    names = list(params) if names is None else names
    fn = as_function(layer, names, method)
    xt = td.tensor(x, dtype="float64" if np.asarray(x).dtype.kind == "f" else None,
                   requires_grad=wrt_input and np.asarray(x).dtype.kind == "f")
    inputs = [xt] + [params[n] for n in names]
    # the check is vacuous if the substitution missed a parameter: each one must matter
    y = fn(*inputs)
    v = td.tensor(gen(5).standard_normal(y.shape), dtype="float64")
    grads = td.grad((y * v).sum(), inputs[1:], allow_unused=True)
    for name, g in zip(names, grads):
        assert g is not None and np.abs(g.numpy()).max() > 0, f"{name} does not reach the output"
    assert td.gradcheck(fn, inputs)
    assert td.gradgradcheck(fn, inputs)


def per_example_jacobians(fn, x):
    """(N, D, N, D) Jacobian of fn on the batch x (N, ...), D = entries per example."""
    jac = backend.to_numpy(td.jacobian(fn, f64(x)))
    n, d = x.shape[0], x[0].size
    return jac.reshape(n, d, n, d)


def log_abs_dets(jac):
    """log|det| of each example's diagonal block of a per-example Jacobian."""
    return np.array([np.linalg.slogdet(jac[i, :, i, :])[1] for i in range(jac.shape[0])])


def numpy_params(layer):
    return {name: p.numpy() for name, p in layer.named_parameters()}


# ----------------------------------------------------------------------------- activations

ACTIVATIONS = [
    (nn.ReLU(), lambda x: np.maximum(x, 0), "relu"),
    (nn.LeakyReLU(0.2), lambda x: np.where(x > 0, x, 0.2 * x), "leaky_relu"),
    (nn.ELU(0.7), lambda x: np.where(x > 0, x, 0.7 * np.expm1(np.minimum(x, 0))), "elu"),
    (nn.Sigmoid(), lambda x: 1 / (1 + np.exp(-x)), "sigmoid"),
    (nn.Tanh(), np.tanh, "tanh"),
    (nn.Softplus(), lambda x: np.logaddexp(0, x), "softplus"),
    (nn.Identity(), lambda x: x, None),
]
ACT_IDS = [type(a).__name__ for a, _, _ in ACTIVATIONS]


@pytest.mark.parametrize("act, reference, _", ACTIVATIONS, ids=ACT_IDS)
def test_activation_forward(act, reference, _, device):
    x = randn(3, 4) * 3
    np.testing.assert_allclose(act(td.tensor(x, device=device)).numpy(), reference(x), rtol=1e-12, atol=1e-14)
    assert act.parameters() == []


@needs_torch
@pytest.mark.parametrize("act, _, torch_name", ACTIVATIONS[:-1], ids=ACT_IDS[:-1])
def test_activation_matches_torch(act, _, torch_name):
    x = randn(5, 3) * 3
    kwargs = {"negative_slope": 0.2} if torch_name == "leaky_relu" else {"alpha": 0.7} if torch_name == "elu" else {}
    expected = getattr(torch.nn.functional, torch_name)(torch.from_numpy(x), **kwargs).numpy()
    np.testing.assert_allclose(act(f64(x, False)).numpy(), expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("act", [a for a, _, _ in ACTIVATIONS[:-1]], ids=ACT_IDS[:-1])
def test_activation_derivatives(act):
    x = randn(3, 4) * 2
    assert td.gradcheck(act, [f64(x)])
    assert td.gradgradcheck(act, [f64(x)])


def test_activation_repr():
    assert repr(nn.LeakyReLU(0.2)) == "LeakyReLU(negative_slope=0.2)"
    assert repr(nn.ELU()) == "ELU(alpha=1.0)"
    assert repr(nn.Identity()) == "Identity()"


# ----------------------------------------------------------------------------- Linear

def test_linear_forward(device):
    layer = nn.Linear(4, 3, rng=gen(1)).to(device)
    x = randn(2, 5, 4).astype(np.float32)                  # leading batch dimensions
    p = numpy_params(layer)
    np.testing.assert_allclose(layer(td.tensor(x, device=device)).numpy(), x @ p["weight"] + p["bias"],
                               rtol=1e-5, atol=1e-6)


def test_linear_without_bias_and_zero_init():
    layer = nn.Linear(4, 3, bias=False, rng=gen(1))
    assert layer.bias is None and [n for n, _ in layer.named_parameters()] == ["weight"]
    x = randn(2, 4).astype(np.float32)
    np.testing.assert_allclose(layer(td.tensor(x)).numpy(), x @ layer.weight.numpy(), rtol=1e-5)
    zero = nn.Linear(4, 3, zero_init=True)
    assert not zero(td.tensor(x)).numpy().any()


@needs_torch
def test_linear_matches_torch():
    layer = nn.Linear(4, 3, rng=gen(1)).to(dtype="float64")
    reference = torch.nn.Linear(4, 3).double()
    # PyTorch stores the weight as (out, in): transpose it
    reference.load_state_dict({"weight": torch.from_numpy(layer.weight.numpy().T.copy()),
                               "bias": torch.from_numpy(layer.bias.numpy())})
    x = randn(6, 4)
    np.testing.assert_allclose(layer(f64(x, False)).numpy(), reference(torch.from_numpy(x)).detach().numpy(),
                               rtol=1e-12, atol=1e-14)


def test_linear_derivatives():
    check_derivatives(nn.Linear(4, 3, rng=gen(1)), randn(5, 4))


def test_linear_wrong_features():
    with pytest.raises(ValueError, match=r"Linear: input has 5 features \(shape \(2, 5\)\) but the layer expects 4"):
        nn.Linear(4, 3)(td.tensor(np.zeros((2, 5), dtype=np.float32)))


# ----------------------------------------------------------------------------- convolutions

def pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def conv2d_ref(x, w, b, stride=1, padding=0, dilation=1, groups=1):
    """y[n, o, h, v] = b[o] + sum_{c,i,j} w[o, c, i, j] x_pad[n, c, s h + d i, s v + d j], per group."""
    (sh, sw), (ph, pw), (dh, dw) = pair(stride), pair(padding), pair(dilation)
    c_out, c_g, kh, kw = w.shape
    x_pad = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    windows = sliding_window_view(x_pad, (dh * (kh - 1) + 1, dw * (kw - 1) + 1), axis=(2, 3))
    windows = windows[:, :, ::sh, ::sw, ::dh, ::dw]          # (N, C, H_out, W_out, kH, kW)
    o_g = c_out // groups
    y = np.concatenate([np.einsum("nchwij,ocij->nohw", windows[:, g * c_g:(g + 1) * c_g],
                                  w[g * o_g:(g + 1) * o_g]) for g in range(groups)], axis=1)
    return y if b is None else y + b[:, None, None]


def conv_transpose2d_ref(x, w, b, stride=1, padding=0, output_padding=0, dilation=1, groups=1):
    """Each input pixel x[n, c, h, v] scatters x * w[c, :, i, j] to (s h + d i, s v + d j);
    then ``padding`` is cut from every side."""
    (sh, sw), (ph, pw), (dh, dw), (oh, ow) = pair(stride), pair(padding), pair(dilation), pair(output_padding)
    n, c_in, hh, ww = x.shape
    _, o_g, kh, kw = w.shape
    c_g = c_in // groups
    full = np.zeros((n, o_g * groups, (hh - 1) * sh + dh * (kh - 1) + 1 + oh, (ww - 1) * sw + dw * (kw - 1) + 1 + ow))
    for g in range(groups):
        xg, wg = x[:, g * c_g:(g + 1) * c_g], w[g * c_g:(g + 1) * c_g]
        for i in range(kh):
            for j in range(kw):
                full[:, g * o_g:(g + 1) * o_g, dh * i:dh * i + sh * (hh - 1) + 1:sh,
                     dw * j:dw * j + sw * (ww - 1) + 1:sw] += np.einsum("nchv,co->nohv", xg, wg[:, :, i, j])
    y = full[:, :, ph:full.shape[2] - ph, pw:full.shape[3] - pw]
    return y if b is None else y + b[:, None, None]


CONV_CASES = [   # (in, out, kernel, options, input H x W)
    (3, 4, 3, dict(padding=1), (5, 5)),
    (2, 3, (2, 3), dict(stride=2, bias=False), (6, 7)),
    (4, 2, 3, dict(stride=(1, 2), padding=(2, 1), dilation=2), (5, 6)),
    (4, 6, 1, dict(groups=2), (3, 4)),
]
TRANSPOSE_CASES = [
    (3, 4, 3, dict(padding=1), (4, 4)),
    (2, 3, (2, 3), dict(stride=2, output_padding=1, bias=False), (3, 4)),
    (4, 6, 3, dict(stride=(2, 1), padding=1, dilation=(1, 2), groups=2), (3, 4)),
]


def _conv_ids(cases):
    return [f"{c[0]}-{c[1]}-k{c[2]}-{c[3]}" for c in cases]


@pytest.mark.parametrize("c_in, c_out, kernel, options, image", CONV_CASES, ids=_conv_ids(CONV_CASES))
def test_conv2d_forward(c_in, c_out, kernel, options, image, device):
    layer = nn.Conv2d(c_in, c_out, kernel, rng=gen(2), dtype="float64", **options).to(device)
    x = randn(2, c_in, *image)
    expected = conv2d_ref(x, layer.weight.numpy(), None if layer.bias is None else layer.bias.numpy(),
                          **{k: v for k, v in options.items() if k != "bias"})
    y = layer(td.tensor(x, device=device))
    assert y.device == device
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("c_in, c_out, kernel, options, image", TRANSPOSE_CASES, ids=_conv_ids(TRANSPOSE_CASES))
def test_conv_transpose2d_forward(c_in, c_out, kernel, options, image, device):
    layer = nn.ConvTranspose2d(c_in, c_out, kernel, rng=gen(3), dtype="float64", **options).to(device)
    x = randn(2, c_in, *image)
    expected = conv_transpose2d_ref(x, layer.weight.numpy(), None if layer.bias is None else layer.bias.numpy(),
                                    **{k: v for k, v in options.items() if k != "bias"})
    np.testing.assert_allclose(layer(td.tensor(x, device=device)).numpy(), expected, rtol=1e-10, atol=1e-12)


def test_conv_weight_layouts():
    conv = nn.Conv2d(4, 6, (3, 5), groups=2)
    assert conv.weight.shape == (6, 2, 3, 5) and conv.bias.shape == (6,)
    up = nn.ConvTranspose2d(4, 6, (3, 5), groups=2)
    assert up.weight.shape == (4, 3, 3, 5) and up.bias.shape == (6,)


@needs_torch
@pytest.mark.parametrize("c_in, c_out, kernel, options, image", CONV_CASES, ids=_conv_ids(CONV_CASES))
def test_conv2d_matches_torch(c_in, c_out, kernel, options, image):
    layer = nn.Conv2d(c_in, c_out, kernel, rng=gen(2), dtype="float64", **options)
    reference = torch.nn.Conv2d(c_in, c_out, kernel, **options).double()
    # same layout: the state dict loads as it is
    reference.load_state_dict({k: torch.from_numpy(v) for k, v in layer.state_dict().items()})
    x = randn(2, c_in, *image)
    np.testing.assert_allclose(layer(f64(x, False)).numpy(), reference(torch.from_numpy(x)).detach().numpy(),
                               rtol=1e-10, atol=1e-12)


@needs_torch
@pytest.mark.parametrize("c_in, c_out, kernel, options, image", TRANSPOSE_CASES, ids=_conv_ids(TRANSPOSE_CASES))
def test_conv_transpose2d_matches_torch(c_in, c_out, kernel, options, image):
    layer = nn.ConvTranspose2d(c_in, c_out, kernel, rng=gen(3), dtype="float64", **options)
    reference = torch.nn.ConvTranspose2d(c_in, c_out, kernel, **options).double()
    reference.load_state_dict({k: torch.from_numpy(v) for k, v in layer.state_dict().items()})
    x = randn(2, c_in, *image)
    np.testing.assert_allclose(layer(f64(x, False)).numpy(), reference(torch.from_numpy(x)).detach().numpy(),
                               rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("make, fan_in", [
    (lambda: nn.Conv2d(8, 16, 3, groups=2, rng=gen(4)), 4 * 9),            # C_in / groups * kH * kW
    (lambda: nn.ConvTranspose2d(8, 16, 3, groups=2, rng=gen(4)), 8 * 9),   # C_out / groups * kH * kW
])
def test_conv_default_init_is_pytorchs(make, fan_in):
    """W, b ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in from weight.shape[1] as in PyTorch."""
    layer = make()
    bound = 1 / math.sqrt(fan_in)
    for p in (layer.weight.numpy(), layer.bias.numpy()):
        assert np.abs(p).max() <= bound
    assert np.abs(layer.weight.numpy()).max() > 0.95 * bound
    np.testing.assert_allclose(layer.weight.numpy().var(), bound ** 2 / 3, rtol=0.2)
    if torch is not None:       # PyTorch's own layer draws within the same bound
        reference = (torch.nn.Conv2d if isinstance(layer, nn.Conv2d) else torch.nn.ConvTranspose2d)(8, 16, 3, groups=2)
        assert reference.weight.abs().max().item() <= bound and reference.weight.abs().max().item() > 0.95 * bound


def test_conv_zero_init_starts_at_zero():
    x = td.tensor(randn(2, 3, 4, 4).astype(np.float32))
    assert not nn.Conv2d(3, 5, 3, padding=1, zero_init=True)(x).numpy().any()
    assert not nn.ConvTranspose2d(3, 5, 3, zero_init=True)(x).numpy().any()


@pytest.mark.parametrize("c_in, c_out, kernel, options, image", CONV_CASES[:3], ids=_conv_ids(CONV_CASES[:3]))
def test_conv2d_derivatives(c_in, c_out, kernel, options, image):
    check_derivatives(nn.Conv2d(c_in, c_out, kernel, rng=gen(2), **options), randn(2, c_in, *image))


@pytest.mark.parametrize("c_in, c_out, kernel, options, image", TRANSPOSE_CASES, ids=_conv_ids(TRANSPOSE_CASES))
def test_conv_transpose2d_derivatives(c_in, c_out, kernel, options, image):
    check_derivatives(nn.ConvTranspose2d(c_in, c_out, kernel, rng=gen(3), **options), randn(2, c_in, *image))


@pytest.mark.parametrize("cls", [nn.Conv2d, nn.ConvTranspose2d])
def test_conv_input_errors_name_the_layer(cls):
    layer = cls(3, 4, 3)
    name = re.escape(f"{cls.__name__}(3, 4, kernel_size=(3, 3))")
    with pytest.raises(ValueError, match=rf"^{name}: input must have 4 dimensions \(N, C, H, W\), "
                                         r"got shape \(3, 8, 8\)"):
        layer(td.tensor(np.zeros((3, 8, 8), dtype=np.float32)))
    with pytest.raises(ValueError, match=rf"^{name}: input has 1 channels \(shape \(2, 1, 8, 8\)\) "
                                         r"but the layer expects 3"):
        layer(td.tensor(np.zeros((2, 1, 8, 8), dtype=np.float32)))


def test_conv_constructor_errors():
    with pytest.raises(ValueError, match="Conv2d: groups=2 must divide in_channels=3 and out_channels=4"):
        nn.Conv2d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="ConvTranspose2d: out_channels must be a positive int, got 0"):
        nn.ConvTranspose2d(3, 0, 3)
    with pytest.raises(TypeError, match="Conv2d: kernel_size must be an int or a pair of ints"):
        nn.Conv2d(3, 4, 2.5)


# ----------------------------------------------------------------------------- Embedding

def test_embedding_forward_any_label_shape(device):
    layer = nn.Embedding(7, 3, rng=gen(5)).to(device)
    table = layer.weight.numpy()
    labels = np.array([[0, 6, 2], [2, 2, 5]])
    for given in (labels, td.tensor(labels, device=device), labels.tolist()):
        y = layer(given)
        assert y.shape == (2, 3, 3)
        np.testing.assert_array_equal(y.numpy(), table[labels])
    np.testing.assert_array_equal(layer(4).numpy(), table[4])


@needs_torch
def test_embedding_matches_torch():
    layer = nn.Embedding(7, 3, rng=gen(5), dtype="float64")
    reference = torch.nn.Embedding(7, 3).double()
    reference.load_state_dict({"weight": torch.from_numpy(layer.weight.numpy())})
    labels = np.array([[1, 6, 1], [0, 3, 3]])
    np.testing.assert_array_equal(layer(labels).numpy(), reference(torch.from_numpy(labels)).detach().numpy())


def test_embedding_gradient_scatter_adds_repeated_labels():
    layer = nn.Embedding(5, 2, rng=gen(6), dtype="float64")
    labels = np.array([1, 3, 1, 1, 0])
    g = randn(5, 2)
    (layer(labels) * f64(g, False)).sum().backward()
    expected = np.zeros((5, 2))
    np.add.at(expected, labels, g)
    np.testing.assert_allclose(layer.weight.grad.numpy(), expected, rtol=1e-12)
    assert not expected[[2, 4]].any()


def test_embedding_derivatives():
    check_derivatives(nn.Embedding(5, 3, rng=gen(6)), np.array([[4, 0], [4, 2]]))


def test_embedding_initialisation_is_standard_normal():
    w = nn.Embedding(1000, 200, rng=gen(7)).weight.numpy()
    assert abs(w.mean()) < 0.01 and abs(w.var() - 1) < 0.02


def test_embedding_label_errors():
    layer = nn.Embedding(4, 2)
    with pytest.raises(IndexError, match=r"Embedding: label 4 is out of range for 4 embeddings "
                                         r"\(labels must lie in \[0, 3\]\)"):
        layer(np.array([0, 4, 1]))
    with pytest.raises(IndexError, match="Embedding: label -1 is out of range"):
        layer(np.array([-1, 2]))
    with pytest.raises(TypeError, match="Embedding: labels must be integers, got dtype float32"):
        layer(td.tensor([1.0, 2.0]))
    with pytest.raises(TypeError, match="Embedding: labels must be integers, got dtype bool"):
        layer(np.array([True, False]))


# ----------------------------------------------------------------------------- BatchNorm

def bn_with_affine(num_features, axis=1, **kwargs):
    """A BatchNorm whose gamma (with a negative entry) and beta are not the identity."""
    layer = nn.BatchNorm(num_features, axis=axis, dtype="float64", **kwargs)
    layer.weight.data = gen(8).uniform(0.5, 2.0, num_features) * np.where(np.arange(num_features) == 1, -1, 1)
    layer.bias.data = gen(9).standard_normal(num_features)
    return layer


def bn_ref(x, axis, mu, var, gamma, beta, eps):
    shape = [1] * x.ndim
    shape[axis] = -1
    return (x - mu.reshape(shape)) / np.sqrt(var.reshape(shape) + eps) * gamma.reshape(shape) + beta.reshape(shape)


@pytest.mark.parametrize("shape, axis", [((6, 3, 4, 5), 1), ((8, 3), 1), ((4, 5, 3), -1)])
def test_batchnorm_training_forward_uses_batch_statistics(shape, axis, device):
    layer = bn_with_affine(3, axis=axis).to(device)
    x = randn(*shape) * 2 + 1
    axes = tuple(i for i in range(x.ndim) if i != axis % x.ndim)
    expected = bn_ref(x, axis, x.mean(axis=axes), x.var(axis=axes), layer.weight.numpy(), layer.bias.numpy(), 1e-5)
    np.testing.assert_allclose(layer(td.tensor(x, device=device)).numpy(), expected, rtol=1e-10, atol=1e-12)


def test_batchnorm_eval_forward_uses_running_statistics(device):
    layer = bn_with_affine(3, eps=1e-3)
    layer.running_mean = randn(3)
    layer.running_var = gen(10).uniform(0.5, 2.0, 3)
    layer.eval().to(device)
    x = randn(4, 3, 2, 2)
    expected = bn_ref(x, 1, backend.to_numpy(layer.running_mean), backend.to_numpy(layer.running_var),
                      layer.weight.numpy(), layer.bias.numpy(), 1e-3)
    np.testing.assert_allclose(layer(td.tensor(x, device=device)).numpy(), expected, rtol=1e-10, atol=1e-12)


def test_batchnorm_running_statistics_follow_momentum():
    """running <- (1 - momentum) running + momentum batch, with the unbiased batch variance."""
    layer = nn.BatchNorm(2, momentum=0.3, dtype="float64")
    mean, var = np.zeros(2), np.ones(2)
    for _ in range(2):
        x = randn(5, 2, 3) * 3 + 2
        layer(f64(x))
        n = 5 * 3
        mean = 0.7 * mean + 0.3 * x.mean(axis=(0, 2))
        var = 0.7 * var + 0.3 * x.var(axis=(0, 2)) * n / (n - 1)
        np.testing.assert_allclose(layer.running_mean, mean, rtol=1e-12)
        np.testing.assert_allclose(layer.running_var, var, rtol=1e-12)
    # log_det, eval-mode forward and inverse leave them alone
    layer.log_det(f64(randn(5, 2, 3)))
    layer.eval()
    layer.inverse(layer(f64(randn(5, 2, 3))))
    np.testing.assert_allclose(layer.running_mean, mean, rtol=1e-12)
    np.testing.assert_allclose(layer.running_var, var, rtol=1e-12)


@needs_torch
@pytest.mark.parametrize("shape", [(6, 3, 4, 5), (8, 3)])
def test_batchnorm_matches_torch_in_both_modes(shape):
    layer = bn_with_affine(3, momentum=0.2)
    reference = (torch.nn.BatchNorm2d if len(shape) == 4 else torch.nn.BatchNorm1d)(3, momentum=0.2).double()
    reference.load_state_dict({k: torch.from_numpy(v) for k, v in layer.state_dict().items()}, strict=False)
    for _ in range(2):
        x = randn(*shape) * 2 + 1
        np.testing.assert_allclose(layer(f64(x)).numpy(), reference(torch.from_numpy(x)).detach().numpy(),
                                   rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(layer.running_mean, reference.running_mean.numpy(), rtol=1e-12)
    np.testing.assert_allclose(layer.running_var, reference.running_var.numpy(), rtol=1e-12)
    layer.eval()
    reference.eval()
    x = randn(*shape)
    np.testing.assert_allclose(layer(f64(x)).numpy(), reference(torch.from_numpy(x)).detach().numpy(),
                               rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("shape", [(4, 3, 2, 3), (6, 2)])
def test_batchnorm_training_second_derivatives(shape):
    """The classic bug: batch statistics cached as arrays make the second derivative wrong.
    Here mu and sigma^2 are engine ops of x, so gradgradcheck (inside check_derivatives)
    sees every dependence."""
    check_derivatives(bn_with_affine(shape[1]), randn(*shape) * 2 + 1)


class _BatchNormCachedBackward(td.Function):
    """x_hat = (x - mu) / sqrt(sigma^2 + eps) over axis 0, with the textbook backward
        dx = (g - mean(g) - x_hat mean(g x_hat)) / sqrt(sigma^2 + eps)
    built from x_hat and 1/sqrt(sigma^2 + eps) cached as arrays in forward: right first
    derivatives, wrong second derivatives (the backward treats them as constants)."""

    def forward(self, x):
        self.inv_std = 1 / np.sqrt(x.var(axis=0) + 1e-5)
        self.x_hat = (x - x.mean(axis=0)) * self.inv_std
        return self.x_hat

    def backward(self, gy):
        x_hat, inv_std = td.Tensor(self.x_hat), td.Tensor(self.inv_std)
        return (gy - gy.mean(axis=0) - x_hat * (gy * x_hat).mean(axis=0)) * inv_std


def test_gradgradcheck_catches_batch_statistics_cached_in_backward():
    """The check above has teeth: the cached-array implementation passes gradcheck and
    fails gradgradcheck, while BatchNorm (engine ops) passes both on the same input."""
    x = randn(6, 3) * 2 + 1
    buggy = _BatchNormCachedBackward()
    assert td.gradcheck(lambda t: _BatchNormCachedBackward()(t), [f64(x)])
    with pytest.raises(td.GradcheckError):
        td.gradgradcheck(lambda t: _BatchNormCachedBackward()(t), [f64(x)])
    layer = nn.BatchNorm(3, dtype="float64")
    np.testing.assert_allclose(layer(f64(x)).numpy(), buggy(f64(x)).numpy(), rtol=1e-12, atol=1e-12)
    assert td.gradgradcheck(layer, [f64(x)])


def test_batchnorm_eval_derivatives():
    layer = bn_with_affine(3)
    layer.running_mean, layer.running_var = randn(3), gen(10).uniform(0.5, 2.0, 3)
    check_derivatives(layer.eval(), randn(4, 3, 2, 2))


@pytest.mark.parametrize("training", [True, False])
def test_batchnorm_log_det_derivatives(training):
    layer = bn_with_affine(3).train(training)
    check_derivatives(layer, randn(4, 3, 2, 2), method="log_det", names=["weight"], wrt_input=training)


def test_batchnorm_eval_log_det_is_the_brute_force_jacobian():
    """log_det(x) = log|det dy_i/dx_i| per example, from the engine's full Jacobian; the
    examples do not interact (off-diagonal blocks are zero)."""
    layer = bn_with_affine(2, eps=1e-2)
    layer.running_mean, layer.running_var = randn(2), gen(11).uniform(0.3, 3.0, 2)
    layer.eval()
    x = randn(3, 2, 2, 3)
    jac = per_example_jacobians(layer, x)
    np.testing.assert_allclose(layer.log_det(f64(x)).numpy(), log_abs_dets(jac), rtol=1e-10)
    for i in range(3):
        for j in range(3):
            if i != j:
                assert not jac[i, :, j, :].any()


def test_batchnorm_training_log_det_treats_batch_statistics_as_constants():
    """Training-mode log_det = the log-det of the per-example affine map that the batch
    statistics define: with the running statistics set to this batch's, evaluation mode
    applies the same map, and its brute-force Jacobian gives the same log-det."""
    layer = bn_with_affine(3)
    x = randn(5, 3, 2, 2) * 2 + 1
    y_train = layer(f64(x)).numpy()
    log_det_train = layer.log_det(f64(x)).numpy()
    expected = 4 * (np.log(np.abs(layer.weight.numpy())) - 0.5 * np.log(x.var(axis=(0, 2, 3)) + 1e-5)).sum()
    np.testing.assert_allclose(log_det_train, np.full(5, expected), rtol=1e-12)
    layer.running_mean, layer.running_var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))
    layer.eval()
    np.testing.assert_allclose(layer(f64(x)).numpy(), y_train, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(log_abs_dets(per_example_jacobians(layer, x)), log_det_train, rtol=1e-10)


def test_batchnorm_inverse(device):
    layer = bn_with_affine(3)
    layer(f64(randn(8, 3, 2, 2)))                 # some running statistics
    layer.eval().to(device)
    x = td.tensor(randn(4, 3, 2, 2), device=device)
    np.testing.assert_allclose(layer.inverse(layer(x)).numpy(), x.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(layer(layer.inverse(x)).numpy(), x.numpy(), rtol=1e-10, atol=1e-12)


def test_batchnorm_errors():
    layer = nn.BatchNorm(3)
    with pytest.raises(ValueError, match=r"BatchNorm\(3\): input has 4 features on axis 1 \(shape \(2, 4\)\) "
                                         r"but the layer expects 3"):
        layer(td.tensor(np.zeros((2, 4), dtype=np.float32)))
    with pytest.raises(ValueError, match=r"BatchNorm\(3\): input must have at least 2 dimensions \(N, C, ...\), "
                                         r"got shape \(3,\)"):
        layer(td.tensor(np.zeros(3, dtype=np.float32)))
    with pytest.raises(ValueError, match=r"BatchNorm\(3\): training mode needs more than one value per feature"):
        layer(td.tensor(np.zeros((1, 3), dtype=np.float32)))
    with pytest.raises(RuntimeError, match=r"BatchNorm\(3\).inverse: only defined in evaluation mode"):
        layer.inverse(td.tensor(np.zeros((2, 3), dtype=np.float32)))
    with pytest.raises(ValueError, match="BatchNorm: axis must be an int other than 0"):
        nn.BatchNorm(3, axis=0)
    with pytest.raises(ValueError, match=r"BatchNorm\(3\): feature axis 3 is not a non-batch axis"):
        nn.BatchNorm(3, axis=3)(td.tensor(np.zeros((2, 3), dtype=np.float32)))


# ----------------------------------------------------------------------------- ActNorm

def test_actnorm_data_dependent_initialisation(device):
    layer = nn.ActNorm(3, dtype="float64").to(device)
    assert not bool(layer.initialized)
    x = randn(16, 3, 4, 4) * np.array([0.5, 2.0, 5.0])[:, None, None] + np.array([1.0, -3.0, 0.0])[:, None, None]
    y = layer(td.tensor(x, device=device)).numpy()
    assert bool(layer.initialized)
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-12)
    np.testing.assert_allclose(y.var(axis=(0, 2, 3)), 1, rtol=1e-5)
    # later batches use the parameters as they are
    scale, bias = layer.scale.numpy(), layer.bias.numpy()
    x2 = randn(16, 3, 4, 4)
    np.testing.assert_allclose(layer(td.tensor(x2, device=device)).numpy(),
                               x2 * scale[:, None, None] + bias[:, None, None], rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(layer.scale.numpy(), scale)


def test_actnorm_on_vectors_and_last_axis():
    x = randn(50, 6, 4) * 3 + 1
    y = nn.ActNorm(4, axis=-1, dtype="float64")(f64(x)).numpy()
    np.testing.assert_allclose(y.mean(axis=(0, 1)), 0, atol=1e-12)
    np.testing.assert_allclose(y.std(axis=(0, 1)), 1, rtol=1e-5)
    layer = nn.ActNorm(4, dtype="float64")
    layer.log_det(f64(x[:, 0]))                         # log_det alone also initialises
    assert bool(layer.initialized)
    np.testing.assert_allclose(layer(f64(x[:, 0])).numpy().std(axis=0), 1, rtol=1e-5)


def test_actnorm_log_det_is_the_brute_force_jacobian():
    layer = nn.ActNorm(2, dtype="float64")
    layer.initialize(f64(randn(8, 2, 3, 2) * 3))
    layer.scale.data = layer.scale.data * np.array([1.0, -1.0])     # a negative scale: log|s|
    x = randn(3, 2, 3, 2)
    log_det = layer.log_det(f64(x)).numpy()
    np.testing.assert_allclose(log_det, log_abs_dets(per_example_jacobians(layer, x)), rtol=1e-10)
    np.testing.assert_allclose(log_det, np.full(3, 6 * np.log(np.abs(layer.scale.numpy())).sum()), rtol=1e-12)


def test_actnorm_inverse(device):
    layer = nn.ActNorm(3, dtype="float64").to(device)
    x = td.tensor(randn(4, 3, 2, 2) * 2 + 1, device=device)
    np.testing.assert_allclose(layer.inverse(layer(x)).numpy(), x.numpy(), rtol=1e-10, atol=1e-12)


def test_actnorm_state_dict_round_trip_keeps_the_initialisation():
    layer = nn.ActNorm(3, dtype="float64")
    layer(f64(randn(10, 3, 2, 2) * 4 + 2))
    state = layer.state_dict()
    assert list(state) == ["scale", "bias", "initialized"] and state["initialized"].dtype == np.bool_
    restored = nn.ActNorm(3, dtype="float64")
    restored.load_state_dict(state)
    assert bool(restored.initialized)
    x = randn(5, 3, 2, 2)                               # a batch that would give other statistics
    np.testing.assert_array_equal(restored(f64(x)).numpy(), layer(f64(x)).numpy())
    np.testing.assert_array_equal(restored.scale.numpy(), state["scale"])


def test_actnorm_derivatives():
    layer = nn.ActNorm(3)
    layer.initialize(td.tensor(randn(6, 3, 2, 2) * 2 + 1))
    check_derivatives(layer, randn(4, 3, 2, 2))
    check_derivatives(layer, randn(4, 3, 2, 2), method="log_det", names=["scale"], wrt_input=False)


def test_actnorm_errors():
    layer = nn.ActNorm(3)
    with pytest.raises(ValueError, match=r"ActNorm\(3\): input has 2 features on axis 1"):
        layer(td.tensor(np.zeros((4, 2, 5, 5), dtype=np.float32)))
    with pytest.raises(ValueError, match=r"ActNorm\(3\): input must have at least 2 dimensions"):
        layer(td.tensor(np.zeros(3, dtype=np.float32)))
    assert not bool(layer.initialized)                  # a rejected batch does not initialise
