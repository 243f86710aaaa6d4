"""Elementwise ops (tinydgm/autodiff/elementwise.py): forward against NumPy/SciPy in float32
and float64, first and second derivatives against finite differences on broadcasting and
zero-size shapes, reflected operators, dtype preservation, stability at extreme values,
subgradients at kinks and ties, comparisons, where, astype and to_device."""
import warnings

import numpy as np
import pytest
import scipy.special
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import mutually_broadcastable_shapes

import tinydgm as td

RTOL = {"float32": 1e-5, "float64": 1e-12}
ATOL = {"float32": 1e-6, "float64": 1e-14}


def t(array, device="cpu", requires_grad=True, dtype="float64"):
    return td.tensor(np.asarray(array, dtype=dtype), dtype=dtype, device=device,
                     requires_grad=requires_grad)


def check_grads(fn, *inputs):
    assert td.gradcheck(fn, list(inputs))
    assert td.gradgradcheck(fn, list(inputs))


def np_sum_to(g, shape):
    """Sum a broadcast gradient back to ``shape`` (the NumPy reference for sum_to)."""
    g = g.sum(axis=tuple(range(g.ndim - len(shape))))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    return g.sum(axis=axes, keepdims=True).reshape(shape)


# ----------------------------------------------------------------------------- input samplers
# Each returns float64 values in a smooth part of the op's domain: log/sqrt get positive
# inputs, and the kinks of relu/abs/clip are at least 0.2 away (far beyond a
# finite-difference step), so the checks never straddle a non-differentiable point.

def normal(rng, shape):
    return rng.standard_normal(shape)


def positive(rng, shape):
    return rng.uniform(0.3, 3.0, shape)


def above_minus_half(rng, shape):
    return rng.uniform(-0.5, 2.0, shape)


def away_from_zero(rng, shape):
    return rng.choice([-1.0, 1.0], shape) * rng.uniform(0.2, 1.5, shape)


def away_from_clip_bounds(rng, shape):
    # clusters around -1, 0, 1: at least 0.15 away from the bounds -0.5 and 0.5
    return rng.choice([-1.0, 0.0, 1.0], shape) + rng.uniform(-0.35, 0.35, shape)


def negative(rng, shape):
    return rng.uniform(-3.0, -0.05, shape)


def ref_log1mexp(x):
    with np.errstate(divide="ignore"):
        return np.where(x > -np.log(2), np.log(-np.expm1(x)), np.log1p(-np.exp(np.minimum(x, -np.log(2)))))


# name -> (tinydgm function, NumPy reference on float64, sampler)
UNARY = {
    "neg": (td.neg, np.negative, normal),
    "neg[operator]": (lambda x: -x, np.negative, normal),
    "exp": (td.exp, np.exp, normal),
    "log": (td.log, np.log, positive),
    "log1p": (td.log1p, np.log1p, above_minus_half),
    "expm1": (td.expm1, np.expm1, normal),
    "sqrt": (td.sqrt, np.sqrt, positive),
    "square": (td.square, np.square, normal),
    "sin": (td.sin, np.sin, normal),
    "cos": (td.cos, np.cos, normal),
    "tanh": (td.tanh, np.tanh, normal),
    "abs": (td.abs, np.abs, away_from_zero),
    "abs[operator]": (lambda x: abs(x), np.abs, away_from_zero),
    "sigmoid": (td.sigmoid, scipy.special.expit, normal),
    "log_sigmoid": (td.log_sigmoid, scipy.special.log_expit, normal),
    "softplus": (td.softplus, lambda x: np.logaddexp(0.0, x), normal),
    "relu": (td.relu, lambda x: np.maximum(x, 0.0), away_from_zero),
    "leaky_relu": (td.leaky_relu, lambda x: np.where(x > 0, x, 0.01 * x), away_from_zero),
    "leaky_relu[0.2]": (lambda x: td.leaky_relu(x, negative_slope=0.2),
                        lambda x: np.where(x > 0, x, 0.2 * x), away_from_zero),
    "elu": (td.elu, lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0))), away_from_zero),
    "elu[0.5]": (lambda x: td.elu(x, alpha=0.5),
                 lambda x: np.where(x > 0, x, 0.5 * np.expm1(np.minimum(x, 0))), away_from_zero),
    "clip": (lambda x: td.clip(x, -0.5, 0.5), lambda x: np.clip(x, -0.5, 0.5), away_from_clip_bounds),
    "clip[min]": (lambda x: td.clip(x, -0.5, None), lambda x: np.maximum(x, -0.5), away_from_clip_bounds),
    "clip[max]": (lambda x: td.clip(x, None, 0.5), lambda x: np.minimum(x, 0.5), away_from_clip_bounds),
    "clip[method]": (lambda x: x.clip(-0.5, 0.5), lambda x: np.clip(x, -0.5, 0.5), away_from_clip_bounds),
    "log1mexp": (td.log1mexp, ref_log1mexp, negative),
    "pow[2]": (lambda x: x ** 2, lambda x: x ** 2, normal),
    "pow[3]": (lambda x: x ** 3, lambda x: x ** 3, normal),
    "pow[0.5]": (lambda x: x ** 0.5, np.sqrt, positive),
    "pow[-1.5]": (lambda x: x ** -1.5, lambda x: x ** -1.5, positive),
    "pow[0]": (lambda x: x ** 0, lambda x: x ** 0, normal),
}
SHAPES = [(3, 4), (), (1, 5), (2, 1, 3), (2, 0, 3)]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", list(UNARY))
def test_unary_forward_matches_numpy_and_keeps_dtype(name, dtype, device):
    fn, ref, sample = UNARY[name]
    rng = np.random.default_rng(0)
    for shape in SHAPES:
        x = np.asarray(sample(rng, shape), dtype=dtype)
        y = fn(td.tensor(x, device=device))
        assert y.device == device
        assert y.dtype == dtype, f"{name}: {dtype} in, {y.dtype} out"
        assert y.shape == shape
        np.testing.assert_allclose(y.numpy(), ref(x.astype(np.float64)), rtol=RTOL[dtype], atol=ATOL[dtype])


@pytest.mark.parametrize("name", list(UNARY))
def test_unary_gradcheck_and_gradgradcheck(name, device):
    fn, _, sample = UNARY[name]
    rng = np.random.default_rng(1)
    for shape in SHAPES:
        check_grads(fn, t(sample(rng, shape), device))


@pytest.mark.parametrize("name", list(UNARY))
def test_unary_float32_gradient_is_float32(name, device):
    fn, _, sample = UNARY[name]
    x = t(sample(np.random.default_rng(2), (3, 4)), device, dtype="float32")
    gx, = td.grad(fn(x).sum(), [x])
    assert gx.dtype == np.float32 and gx.shape == x.shape
    assert np.all(np.isfinite(gx.numpy()))


# Exact first derivatives at a few points, so a backward that is consistently wrong in a way
# finite differences cannot see (there is none, but these also pin the conventions) fails.
@pytest.mark.parametrize("name, x, expected", [
    ("sigmoid", [-2.0, 0.0, 3.0],
     scipy.special.expit([-2.0, 0.0, 3.0]) * scipy.special.expit([2.0, 0.0, -3.0])),
    ("softplus", [-2.0, 0.0, 3.0], scipy.special.expit([-2.0, 0.0, 3.0])),
    ("log_sigmoid", [-2.0, 0.0, 3.0], scipy.special.expit([2.0, 0.0, -3.0])),
    ("tanh", [-1.0, 0.5], 1 - np.tanh([-1.0, 0.5]) ** 2),
    ("relu", [-1.0, 0.0, 2.0], [0.0, 0.0, 1.0]),              # subgradient 0 at the kink
    ("abs", [-1.0, 0.0, 2.0], [-1.0, 0.0, 1.0]),
    ("leaky_relu", [-1.0, 0.0, 2.0], [0.01, 0.01, 1.0]),
    ("elu", [-1.0, 2.0], [np.exp(-1.0), 1.0]),
    ("clip", [-0.7, -0.5, 0.0, 0.5, 0.9], [0.0, 1.0, 1.0, 1.0, 0.0]),   # bounds count as inside
    ("log1mexp", [-0.1, -2.0], -np.exp([-0.1, -2.0]) / -np.expm1([-0.1, -2.0])),
])
def test_first_derivative_values(name, x, expected, device):
    fn = UNARY[name][0]
    xt = t(x, device)
    gx, = td.grad(fn(xt).sum(), [xt])
    np.testing.assert_allclose(gx.numpy(), expected, rtol=1e-12, atol=1e-15)


def test_second_derivative_of_sigmoid_and_softplus(device):
    x = t([-3.0, -0.5, 0.0, 2.0], device)
    s = scipy.special.expit(x.numpy())
    g, = td.grad(td.sigmoid(x).sum(), [x], create_graph=True)
    gg, = td.grad(g.sum(), [x])
    np.testing.assert_allclose(gg.numpy(), s * (1 - s) * (1 - 2 * s), rtol=1e-12, atol=1e-15)
    g, = td.grad(td.softplus(x).sum(), [x], create_graph=True)
    gg, = td.grad(g.sum(), [x])
    np.testing.assert_allclose(gg.numpy(), s * (1 - s), rtol=1e-12)


# ----------------------------------------------------------------------------- binary ops

def grid_a(rng, shape):
    return 0.5 * rng.integers(-4, 4, shape) + 0.25 + rng.uniform(-0.05, 0.05, shape)


def grid_b(rng, shape):
    # a and b sit on interleaved grids: |a - b| >= 0.15 for every broadcast pair, no ties
    return 0.5 * rng.integers(-4, 4, shape) + rng.uniform(-0.05, 0.05, shape)


def away_from_zero_half(rng, shape):
    return rng.choice([-1.0, 1.0], shape) * rng.uniform(0.5, 1.5, shape)


def probabilities(rng, shape):
    return rng.uniform(0.05, 0.95, shape)


def pow_base(rng, shape):
    return rng.uniform(0.5, 2.0, shape)


# name -> (tinydgm function, NumPy reference, sampler a, sampler b)
BINARY = {
    "add": (td.add, np.add, normal, normal),
    "add[operator]": (lambda a, b: a + b, np.add, normal, normal),
    "sub": (td.sub, np.subtract, normal, normal),
    "sub[operator]": (lambda a, b: a - b, np.subtract, normal, normal),
    "mul": (td.mul, np.multiply, normal, normal),
    "mul[operator]": (lambda a, b: a * b, np.multiply, normal, normal),
    "div": (td.div, np.divide, normal, away_from_zero_half),
    "div[operator]": (lambda a, b: a / b, np.divide, normal, away_from_zero_half),
    "pow": (td.pow, np.power, pow_base, normal),
    "pow[operator]": (lambda a, b: a ** b, np.power, pow_base, normal),
    "maximum": (td.maximum, np.maximum, grid_a, grid_b),
    "minimum": (td.minimum, np.minimum, grid_a, grid_b),
    "binary_cross_entropy_with_logits": (td.binary_cross_entropy_with_logits,
                                         lambda l, y: np.logaddexp(0.0, l) - y * l, normal, probabilities),
}
PAIRS = [((3, 4), (3, 4)), ((3, 1), (1, 4)), ((2, 3, 4), (4,)), ((4,), (2, 3, 4)), ((), (3,)),
         ((2, 3), ()), ((), ()), ((1, 5), (4, 1)), ((2, 0, 3), (3,)), ((0,), (1,))]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", list(BINARY))
def test_binary_forward_matches_numpy_and_keeps_dtype(name, dtype, device):
    fn, ref, sample_a, sample_b = BINARY[name]
    rng = np.random.default_rng(3)
    for shape_a, shape_b in PAIRS:
        a = np.asarray(sample_a(rng, shape_a), dtype=dtype)
        b = np.asarray(sample_b(rng, shape_b), dtype=dtype)
        y = fn(td.tensor(a, device=device), td.tensor(b, device=device))
        assert y.dtype == dtype and y.device == device
        assert y.shape == np.broadcast_shapes(shape_a, shape_b)
        np.testing.assert_allclose(y.numpy(), ref(a.astype(np.float64), b.astype(np.float64)),
                                   rtol=RTOL[dtype], atol=ATOL[dtype])


@pytest.mark.parametrize("name", list(BINARY))
def test_binary_gradcheck_and_gradgradcheck(name, device):
    fn, _, sample_a, sample_b = BINARY[name]
    rng = np.random.default_rng(4)
    for shape_a, shape_b in PAIRS:
        check_grads(fn, t(sample_a(rng, shape_a), device), t(sample_b(rng, shape_b), device))


@pytest.mark.parametrize("name", list(BINARY))
def test_binary_gradient_to_one_operand_only(name, device):
    """needs_input_grad: a constant operand gets no gradient, the other the right one."""
    fn, _, sample_a, sample_b = BINARY[name]
    rng = np.random.default_rng(5)
    a, b = sample_a(rng, (3, 1)), sample_b(rng, (4,))
    check_grads(fn, t(a, device), t(b, device, requires_grad=False))
    check_grads(fn, t(a, device, requires_grad=False), t(b, device))


def test_where_values_and_gradients(device):
    rng = np.random.default_rng(6)
    for shape_a, shape_b in PAIRS:
        shape = np.broadcast_shapes(shape_a, shape_b)
        condition = rng.standard_normal(shape) > 0
        a, b = rng.standard_normal(shape_a), rng.standard_normal(shape_b)
        cond = td.tensor(condition, device=device)
        y = td.where(cond, t(a, device), t(b, device))
        np.testing.assert_array_equal(y.numpy(), np.where(condition, a, b))
        check_grads(lambda a, b: td.where(cond, a, b), t(a, device), t(b, device))
        gy = rng.standard_normal(shape)
        ta, tb = t(a, device), t(b, device)
        ga, gb = td.grad(td.where(cond, ta, tb), [ta, tb], grad_outputs=td.tensor(gy, device=device))
        np.testing.assert_array_equal(ga.numpy(), np_sum_to(np.where(condition, gy, 0.0), shape_a))
        np.testing.assert_array_equal(gb.numpy(), np_sum_to(np.where(condition, 0.0, gy), shape_b))


def test_where_condition_shapes_scalars_and_errors(device):
    x = t([[-1.0, 2.0, -3.0]], device)
    y = td.where(x > 0, x, 0.0)                               # Python number branch
    np.testing.assert_array_equal(y.numpy(), [[0.0, 2.0, 0.0]])
    gx, = td.grad(y.sum(), [x])
    np.testing.assert_array_equal(gx.numpy(), [[0.0, 1.0, 0.0]])
    cond = np.array([[True], [False]])                        # a NumPy condition, broadcasting
    if device == "cpu":
        np.testing.assert_array_equal(td.where(cond, x, -x).numpy(), np.where(cond, x.numpy(), -x.numpy()))
    both = td.where(td.tensor([True, False], device=device), 1.0, 2.0)
    assert both.dtype == td.get_default_dtype() and both.device == device
    np.testing.assert_array_equal(both.numpy(), [1.0, 2.0])
    x32 = t([1.0, -1.0], device, dtype="float32")
    assert td.where(x32 > 0, x32, 0.0).dtype == np.float32
    assert td.where(x32 > 0, 0.5, x32).dtype == np.float32
    with pytest.raises(TypeError, match="where: condition must be boolean, got dtype float64"):
        td.where(x, x, x)


def test_where_gradient_does_not_mix_nan_into_the_other_branch(device):
    # the gradient flowing in is inf where the condition is False: a mask product would
    # give inf * 0 = nan in a's gradient there; where() gives 0
    a, b = t([1.0, 2.0], device), t([3.0, 4.0], device)
    cond = td.tensor([True, False], device=device)
    ga, gb = td.grad(td.where(cond, a, b), [a, b], grad_outputs=t([1.0, np.inf], device, requires_grad=False))
    np.testing.assert_array_equal(ga.numpy(), [1.0, 0.0])
    np.testing.assert_array_equal(gb.numpy(), [0.0, np.inf])


BROADCASTING_OPS = {
    "add": (td.add, np.add, lambda a, b, g: (g, g)),
    "sub": (td.sub, np.subtract, lambda a, b, g: (g, -g)),
    "mul": (td.mul, np.multiply, lambda a, b, g: (g * b, g * a)),
    "div": (td.div, np.divide, lambda a, b, g: (g / b, -g * a / b ** 2)),
    "maximum": (td.maximum, np.maximum, lambda a, b, g: (g * (a > b), g * (a < b))),
    "minimum": (td.minimum, np.minimum, lambda a, b, g: (g * (a < b), g * (a > b))),
    "binary_cross_entropy_with_logits": (td.binary_cross_entropy_with_logits,
                                         lambda l, y: np.logaddexp(0.0, l) - y * l,
                                         lambda l, y, g: (g * (scipy.special.expit(l) - y), -g * l)),
}


@settings(max_examples=25, deadline=None)
@given(shapes=mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, min_side=0, max_side=3),
       name=st.sampled_from(sorted(BROADCASTING_OPS)), seed=st.integers(0, 2 ** 16))
def test_binary_broadcasting_property(shapes, name, seed):
    fn, ref, ref_grads = BROADCASTING_OPS[name]
    shape_a, shape_b = shapes.input_shapes
    rng = np.random.default_rng(seed)
    a, b = grid_a(rng, shape_a), grid_b(rng, shape_b)     # no zeros, no ties
    ta, tb = t(a), t(b)
    y = fn(ta, tb)
    assert y.shape == shapes.result_shape
    np.testing.assert_allclose(y.numpy(), ref(a, b), rtol=1e-12, atol=1e-14)
    gy = rng.standard_normal(y.shape)
    ga, gb = td.grad(y, [ta, tb], grad_outputs=td.tensor(gy, dtype="float64"))
    assert ga.shape == shape_a and gb.shape == shape_b
    expected_a, expected_b = ref_grads(np.broadcast_to(a, y.shape), np.broadcast_to(b, y.shape), gy)
    np.testing.assert_allclose(ga.numpy(), np_sum_to(expected_a, shape_a), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(gb.numpy(), np_sum_to(expected_b, shape_b), rtol=1e-10, atol=1e-12)


def test_binary_ops_reject_incompatible_shapes():
    with pytest.raises(ValueError, match=r"add: .*\(3,\), \(4,\)"):
        td.add(t(np.zeros(3)), t(np.zeros(4)))
    with pytest.raises(ValueError, match=r"maximum: .*\(2, 3\), \(2,\)"):
        td.maximum(t(np.zeros((2, 3))), t(np.zeros(2)))


# ----------------------------------------------------------------------------- operators and dtypes

def test_reflected_operators(device):
    x_np = np.array([0.5, 1.5, 3.0])
    x = t(x_np, device)
    cases = [
        (lambda x: 2.0 - x, lambda x: 2.0 - x, lambda x: -np.ones_like(x)),
        (lambda x: 2.0 / x, lambda x: 2.0 / x, lambda x: -2.0 / x ** 2),
        (lambda x: 2.0 ** x, lambda x: 2.0 ** x, lambda x: 2.0 ** x * np.log(2.0)),
        (lambda x: 2.0 * x, lambda x: 2.0 * x, lambda x: 2.0 * np.ones_like(x)),
        (lambda x: 2.0 + x, lambda x: 2.0 + x, lambda x: np.ones_like(x)),
        (lambda x: x - 2.0, lambda x: x - 2.0, lambda x: np.ones_like(x)),
        (lambda x: x / 2.0, lambda x: x / 2.0, lambda x: np.full_like(x, 0.5)),
    ]
    for fn, ref, dref in cases:
        y = fn(x)
        np.testing.assert_allclose(y.numpy(), ref(x_np), rtol=1e-14)
        gx, = td.grad(y.sum(), [x])
        np.testing.assert_allclose(gx.numpy(), dref(x_np), rtol=1e-14)
        check_grads(fn, x)


def test_numpy_array_on_the_left_defers_to_the_tensor():
    a = np.array([[1.0], [2.0]])
    x = t([3.0, 4.0, 5.0])
    for y, expected in [(a + x, a + x.numpy()), (a - x, a - x.numpy()), (a * x, a * x.numpy()),
                        (a / x, a / x.numpy()), (a ** x, a ** x.numpy())]:
        assert isinstance(y, td.Tensor)
        np.testing.assert_allclose(y.numpy(), expected, rtol=1e-14)
    gx, = td.grad((a * x).sum(), [x])
    np.testing.assert_allclose(gx.numpy(), [3.0, 3.0, 3.0])


def test_float32_stays_float32_with_python_scalars(device):
    x = t([[0.5, -1.5, 2.0]], device, dtype="float32")
    results = {
        "x + 1": x + 1, "1 + x": 1 + x, "x - 0.5": x - 0.5, "0.5 - x": 0.5 - x, "x * 0.1": x * 0.1,
        "0.1 * x": 0.1 * x, "x / 3": x / 3, "3 / x": 3 / x, "x ** 2": x ** 2, "x ** 2.5": abs(x) ** 2.5,
        "2 ** x": 2 ** x, "np.float64 * x": np.float64(0.1) * x, "x * np.float64": x * np.float64(0.1),
        "maximum": td.maximum(x, 0.0), "minimum": td.minimum(0.0, x), "clip": td.clip(x, 0, 1),
        "bce": td.binary_cross_entropy_with_logits(x, 1.0), "bce[int targets]":
            td.binary_cross_entropy_with_logits(x, td.tensor(np.array([[1, 0, 1]]), device=device)),
        "leaky_relu": td.leaky_relu(x, 0.3), "elu": td.elu(x, 2.0), "where": td.where(x > 0, x, 0.0),
    }
    for name, y in results.items():
        assert y.dtype == np.float32, f"{name}: float32 in, {y.dtype} out"
        gx, = td.grad(y.sum(), [x])
        assert gx.dtype == np.float32, f"{name}: float32 gradient expected, got {gx.dtype}"


def test_mixed_dtypes_promote_like_numpy_and_gradients_keep_each_inputs_dtype(device):
    a = t([1.0, 2.0], device, dtype="float32")
    b = t([3.0, 4.0], device, dtype="float64")
    for fn in (td.add, td.sub, td.mul, td.div, td.pow, td.maximum, td.minimum,
               td.binary_cross_entropy_with_logits):
        y = fn(a, b)
        assert y.dtype == np.float64
        ga, gb = td.grad(y.sum(), [a, b])
        assert ga.dtype == np.float32 and gb.dtype == np.float64


def test_pow_with_a_tensor_exponent(device):
    a_np, b_np = np.array([[0.5], [2.0]]), np.array([1.5, -0.5, 3.0])
    a, b = t(a_np, device), t(b_np, device)
    y = a ** b
    np.testing.assert_allclose(y.numpy(), a_np ** b_np, rtol=1e-14)
    ga, gb = td.grad(y.sum(), [a, b])
    np.testing.assert_allclose(ga.numpy(), (b_np * a_np ** (b_np - 1)).sum(axis=1, keepdims=True), rtol=1e-13)
    np.testing.assert_allclose(gb.numpy(), (a_np ** b_np * np.log(a_np)).sum(axis=0), rtol=1e-13)
    check_grads(td.pow, a, b)
    check_grads(lambda b: 2.5 ** b, b)                        # number base, tensor exponent


def test_comparisons_return_boolean_tensors_without_gradient(device):
    a_np, b_np = np.array([[1.0, 2.0, 3.0]]), np.array([[2.0], [1.0]])
    a, b = t(a_np, device), t(b_np, device)
    cases = [(a < b, a_np < b_np), (a <= b, a_np <= b_np), (a > b, a_np > b_np), (a >= b, a_np >= b_np),
             (a == b, a_np == b_np), (a != b, a_np != b_np), (td.less(a, 2.0), a_np < 2.0),
             (td.greater_equal(2.0, a), 2.0 >= a_np), (td.equal(a, 2), a_np == 2),
             (td.not_equal(a, 2), a_np != 2),
             (td.less_equal(a, b), a_np <= b_np), (td.greater(a, b), a_np > b_np)]
    for y, expected in cases:
        assert isinstance(y, td.Tensor) and y.dtype == np.bool_ and y.device == device
        assert not y.requires_grad and y.creator is None
        np.testing.assert_array_equal(y.numpy(), expected)


# ----------------------------------------------------------------------------- stability

def _strict():
    """FP overflow/invalid/divide raise; underflow to 0 is allowed: exp(-1000) = 0 is the
    correctly rounded result, and every stable formula needs it. Warnings are errors too."""
    return np.errstate(over="raise", invalid="raise", divide="raise", under="ignore")


def _value_and_grad(fn, x_values, dtype):
    x = t(x_values, dtype=dtype)
    with _strict(), warnings.catch_warnings():
        warnings.simplefilter("error")
        y = fn(x)
        gx, = td.grad(y.sum(), [x], create_graph=True)
        ggx, = td.grad(gx.sum(), [x])
    return y.numpy(), gx.numpy(), ggx.numpy()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_softplus_sigmoid_log_sigmoid_at_extreme_values(dtype):
    x = [-1000.0, -100.0, 100.0, 1000.0]
    y, g, gg = _value_and_grad(td.softplus, x, dtype)
    np.testing.assert_array_equal(y[2:], [100.0, 1000.0])
    np.testing.assert_allclose(y[:2], [0.0, np.exp(-100.0)], atol=1e-40)
    np.testing.assert_allclose(g, [0.0, 0.0, 1.0, 1.0], atol=1e-40)
    assert np.all(np.isfinite(gg)) and np.all(gg >= 0)

    y, g, gg = _value_and_grad(td.log_sigmoid, x, dtype)
    np.testing.assert_array_equal(y[:2], [-1000.0, -100.0])
    np.testing.assert_allclose(y[2:], [0.0, 0.0], atol=1e-40)
    np.testing.assert_allclose(g, [1.0, 1.0, 0.0, 0.0], atol=1e-40)
    assert np.all(np.isfinite(gg))

    y, g, gg = _value_and_grad(td.sigmoid, x, dtype)
    np.testing.assert_allclose(y, [0.0, 0.0, 1.0, 1.0], atol=1e-40)
    np.testing.assert_allclose(g, [0.0, 0.0, 0.0, 0.0], atol=1e-40)
    assert np.all(np.isfinite(gg))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sigmoid_keeps_relative_accuracy_in_both_tails(dtype):
    x = np.array([-80.0, -30.0, -5.0, -1e-3, 0.0, 1e-3, 5.0, 30.0], dtype=dtype)
    with _strict():
        y = td.sigmoid(td.tensor(x)).numpy()
        ls = td.log_sigmoid(td.tensor(x)).numpy()
        sp = td.softplus(td.tensor(x)).numpy()
    x64 = x.astype(np.float64)
    rtol = 4 * np.finfo(dtype).eps
    np.testing.assert_allclose(y, scipy.special.expit(x64), rtol=rtol)   # 1.8e-35 at -80, not 0
    np.testing.assert_allclose(ls, scipy.special.log_expit(x64), rtol=rtol)
    np.testing.assert_allclose(sp, np.logaddexp(0.0, x64), rtol=rtol)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_binary_cross_entropy_with_logits_at_extreme_logits(dtype):
    logits = np.array([100.0, 100.0, -100.0, -100.0, 1000.0, -1000.0])
    targets = np.array([1.0, 0.0, 1.0, 0.0, 0.0, 1.0])
    l, y = t(logits, dtype=dtype), t(targets, dtype=dtype)
    with _strict(), warnings.catch_warnings():
        warnings.simplefilter("error")
        loss = td.binary_cross_entropy_with_logits(l, y)
        gl, gt = td.grad(loss.sum(), [l, y], create_graph=True)
        ggl, = td.grad(gl.sum(), [l])
    np.testing.assert_allclose(loss.numpy(), [0.0, 100.0, 100.0, 0.0, 1000.0, 1000.0], atol=1e-30)
    np.testing.assert_allclose(gl.numpy(), [0.0, 1.0, -1.0, 0.0, 1.0, -1.0], atol=1e-30)  # sigmoid(l) - t
    np.testing.assert_array_equal(gt.numpy(), -logits)
    assert np.all(np.isfinite(ggl.numpy()))


def test_log1mexp_is_accurate_on_both_sides_of_the_switch():
    x = np.array([-1e-20, -1e-8, -0.5, -np.log(2), -0.8, -5.0, -50.0, -1000.0])
    y, g, gg = _value_and_grad(td.log1mexp, x, "float64")
    expected = [np.log(1e-20), np.log(-np.expm1(-1e-8)), np.log(-np.expm1(-0.5)), np.log(0.5),
                np.log1p(-np.exp(-0.8)), np.log1p(-np.exp(-5.0)), -np.exp(-50.0), 0.0]
    np.testing.assert_allclose(y, expected, rtol=1e-14, atol=1e-300)
    # naive log(1 - exp(x)) loses everything at both ends
    with np.errstate(divide="ignore"):
        assert np.log(1 - np.exp(-1e-20)) == -np.inf and np.log(1 - np.exp(-50.0)) == 0.0
    np.testing.assert_allclose(g, -np.exp(x) / -np.expm1(x), rtol=1e-12)    # -e^x / (1 - e^x)
    assert np.all(np.isfinite(gg))


def test_elu_and_exp_branches_do_not_overflow():
    y, g, _ = _value_and_grad(td.elu, [-1000.0, 1000.0], "float64")
    np.testing.assert_array_equal(y, [-1.0, 1000.0])
    np.testing.assert_allclose(g, [0.0, 1.0], atol=1e-300)
    # each branch of log1mexp sees only inputs it can take: no log1p(-1) near 0, no overflow far out
    y, g, gg = _value_and_grad(td.log1mexp, [-1e-100, -800.0], "float64")
    np.testing.assert_allclose(y, [np.log(1e-100), -np.exp(-800.0)], rtol=1e-14, atol=1e-300)
    np.testing.assert_allclose(g, [-1e100, -np.exp(-800.0)], rtol=1e-12, atol=1e-300)
    assert np.all(np.isfinite(gg))


# ----------------------------------------------------------------------------- kinks, ties, clip

def test_maximum_and_minimum_split_the_gradient_at_ties(device):
    a, b = t([1.0, 2.0, 3.0], device), t([2.0, 2.0, 2.0], device)
    for fn, expected_a in [(td.maximum, [0.0, 0.5, 1.0]), (td.minimum, [1.0, 0.5, 0.0])]:
        ga, gb = td.grad(fn(a, b).sum(), [a, b])
        np.testing.assert_array_equal(ga.numpy(), expected_a)
        np.testing.assert_array_equal(gb.numpy(), 1.0 - np.array(expected_a))
    x = t([0.5, -1.0], device)
    gx, = td.grad(td.maximum(x, x).sum(), [x])                # both halves reach x
    np.testing.assert_array_equal(gx.numpy(), [1.0, 1.0])
    x = t([[1.0], [3.0]], device)                             # a tie broadcast against three entries
    gx, = td.grad(td.maximum(x, t([1.0, 2.0, 4.0], device, requires_grad=False)).sum(), [x])
    np.testing.assert_array_equal(gx.numpy(), [[0.5], [2.0]])


def test_clip_arguments():
    x = t([-2.0, 0.0, 2.0])
    assert td.clip(x, None, None) is x
    np.testing.assert_array_equal(td.clip(x, -1, None).numpy(), [-1.0, 0.0, 2.0])
    np.testing.assert_array_equal(td.clip(x, None, 1).numpy(), [-2.0, 0.0, 1.0])
    with pytest.raises(ValueError, match=r"clip: a_min \(1\) must not exceed a_max \(-1\)"):
        td.clip(x, 1, -1)
    with pytest.raises(TypeError, match="clip: a_min must be a Python number or None, got Tensor"):
        td.clip(x, x, 1.0)


def test_fused_ops_reject_integer_inputs():
    i = td.tensor(np.array([1, 2]))
    for fn, name in [(td.sigmoid, "sigmoid"), (td.softplus, "softplus"), (td.log_sigmoid, "log_sigmoid"),
                     (td.log1mexp, "log1mexp"), (lambda x: td.binary_cross_entropy_with_logits(x, 1.0),
                                                 "binary_cross_entropy_with_logits")]:
        with pytest.raises(TypeError, match=f"{name}: input must be a floating tensor, got dtype int64"):
            fn(i)


def test_relu_and_abs_match_the_method_and_operator_forms():
    x = t([-1.5, 0.25, 2.0])
    np.testing.assert_array_equal(x.relu().numpy(), td.relu(x).numpy())
    np.testing.assert_array_equal(abs(x).numpy(), [1.5, 0.25, 2.0])
    for name in ("sigmoid", "softplus", "log_sigmoid", "tanh", "sqrt", "square", "expm1", "log1p"):
        y = getattr(x.abs(), name)()
        np.testing.assert_array_equal(y.numpy(), getattr(td, name)(td.abs(x)).numpy())


# ----------------------------------------------------------------------------- astype and to_device

def test_astype_round_trip_gradients(device):
    x = t([[0.5, -1.25, 3.0]], device)
    y = td.astype(x, "float32")
    assert y.dtype == np.float32 and y.device == device
    assert td.astype(x, "float64") is x and x.astype("float64") is x
    gx, = td.grad((td.astype(y, "float64") * 3.0).sum(), [x])
    assert gx.dtype == np.float64
    np.testing.assert_array_equal(gx.numpy(), [[3.0, 3.0, 3.0]])
    # linear op: a large step keeps float32 rounding out of the central differences
    fn = lambda x: td.astype(td.astype(x, "float32"), "float64")  # noqa: E731
    assert td.gradcheck(fn, [x], eps=1e-2)
    assert td.gradgradcheck(fn, [x], eps=1e-2)


def test_to_device_moves_values_and_gradients_back(device):
    x = t([[1.0, -2.0], [3.0, 0.5]])                         # on the CPU
    assert td.to_device(x, "cpu") is x
    y = td.to_device(x, device)
    assert y.device == device
    np.testing.assert_array_equal(y.numpy(), x.numpy())
    z = td.to_device(td.sigmoid(y) * y, "cpu")
    gx, = td.grad(z.sum(), [x])
    assert gx.device == "cpu"
    s = scipy.special.expit(x.numpy())
    np.testing.assert_allclose(gx.numpy(), s + x.numpy() * s * (1 - s), rtol=1e-12)
    check_grads(lambda x: td.to_device(td.tanh(td.to_device(x, device)), "cpu"), x)


def test_zero_dim_comparisons_and_where_with_a_numpy_condition(device):
    x = t(1.5, device)
    for y, expected in [(x > 0, True), (x <= 1.0, False), (td.equal(x, 1.5), True)]:
        assert y.shape == () and y.dtype == np.bool_ and y.item() is expected
    a = t([1.0, 2.0, 3.0], device)
    y = td.where(np.array([True, False, True]), a, 0.0)      # the condition follows a to its device
    assert y.device == device
    np.testing.assert_array_equal(y.numpy(), [1.0, 0.0, 3.0])
