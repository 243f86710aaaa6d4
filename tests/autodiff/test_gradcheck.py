"""The gradient checker is itself tested: it passes correct ops, and it catches
deliberately broken ones (each a small Function below) with a message that names the
input, the index, the analytic and the numeric values."""
import re

import numpy as np
import pytest

import tinydgm as td
from tinydgm import GradcheckError


def f64(a, requires_grad=True):
    return td.tensor(np.asarray(a, dtype=np.float64), dtype="float64", requires_grad=requires_grad)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


# ----------------------------------------------------------------------------- broken ops

class TransposeForgetsPermutation(td.Function):
    """x.T for a square matrix, whose backward returns gy untransposed (wrong)."""

    def forward(self, x):
        return x.T.copy()

    def backward(self, gy):
        return gy


class FlipForgetsPermutation(td.Function):
    """x reversed along its last axis, whose backward does not reverse gy (wrong)."""

    def forward(self, x):
        return np.flip(x, axis=-1).copy()

    def backward(self, gy):
        return gy


class ExpWithConstantOutput(td.Function):
    """exp(x) whose backward wraps the array cached in forward into a constant Tensor:
    the first derivative is right, the second is not (d/dx of the constant is 0)."""

    def forward(self, x):
        self.y = np.exp(x)
        return self.y

    def backward(self, gy):
        return gy * td.Tensor(self.y)


class SquareOffByFactor(td.Function):
    """x^2 whose backward is ``factor`` times 2x (wrong unless factor == 1)."""

    def __init__(self, factor):
        self.factor = factor

    def forward(self, x):
        return x * x

    def backward(self, gy):
        x, = self.inputs
        return gy * x * (2.0 * self.factor)


class MulDropsSecondGrad(td.Function):
    """a * b with broadcasting; the gradient of a is summed back correctly, the gradient of
    b is replaced by zeros (wrong)."""

    def forward(self, a, b):
        return a * b

    def backward(self, gy):
        a, b = self.inputs
        return (gy * b).sum_to(a.shape), td.Tensor(np.zeros(b.shape, dtype=b.dtype))


def transpose_op(x):
    return TransposeForgetsPermutation()(x)


def flip_op(x):
    return FlipForgetsPermutation()(x)


# ----------------------------------------------------------------------------- messages

FAST_MESSAGE = re.compile(r"input (\d+) \(shape \(([\d, ]*)\)\) is wrong at index \(([\d, ]*)\): "
                          r"analytic (\S+), numeric (\S+), worst relative error (\S+)")
FULL_MESSAGE = re.compile(r"d\(output (\d+)\[([\d, ]*)\]\)/d\(input (\d+)\[([\d, ]*)\]\) is wrong: "
                          r"analytic (\S+), numeric (\S+), worst relative error (\S+)")


def _ints(text):
    return tuple(int(t) for t in text.replace(" ", "").split(",") if t)


def parse_fast(error):
    """(input index, index into it, analytic, numeric) from a fast-mode GradcheckError."""
    m = FAST_MESSAGE.search(str(error))
    assert m, f"unexpected gradcheck message: {error}"
    i, shape, index, a, n, rel = m.groups()
    assert len(_ints(index)) == len(_ints(shape))
    assert all(0 <= k < s for k, s in zip(_ints(index), _ints(shape)))
    assert float(rel) > 0
    return int(i), _ints(index), float(a), float(n)


def parse_full(error):
    """(output index, output entry, input index, input entry, analytic, numeric)."""
    m = FULL_MESSAGE.search(str(error))
    assert m, f"unexpected gradcheck message: {error}"
    k, out_idx, i, in_idx, a, n, _ = m.groups()
    return int(k), _ints(out_idx), int(i), _ints(in_idx), float(a), float(n)


# ----------------------------------------------------------------------------- correct ops pass

def test_passes_on_correct_compositions(rng):
    a = f64(rng.standard_normal((3, 4)))
    b = f64(rng.standard_normal((4, 2)))
    c = f64(rng.uniform(0.5, 2.0, (3, 1)))
    assert td.gradcheck(lambda a, b: (a @ b).exp() / ((a * a).sum() + 3.0), [a, b]) is True
    assert td.gradcheck(lambda a, c: (a * c + 5.0).log() ** 2 - c ** a.sum(), [a, c]) is True
    assert td.gradcheck(lambda a, b: (a.T @ a @ b).reshape(8).sum_to((1,)) / 7.0, [a, b]) is True
    assert td.gradcheck(lambda a: td.transpose(a, 1, 0) ** 3, [a]) is True


def test_passes_on_tuple_outputs(rng):
    a, b = f64(rng.standard_normal(3)), f64(rng.standard_normal((2, 3)))
    assert td.gradcheck(lambda a, b: (a * b, (a - b).exp().sum(axis=0)), [a, b]) is True


def test_gradcheck_leaves_inputs_alone(rng):
    data = rng.standard_normal((2, 2))
    x = f64(data)
    td.gradcheck(lambda x: x.exp(), [x])
    assert x.grad is None
    np.testing.assert_array_equal(x.numpy(), data)


def test_returns_false_without_raising():
    x = f64([0.5, -1.0, 2.0])
    assert td.gradcheck(lambda x: SquareOffByFactor(2.0)(x), [x], raise_exception=False) is False
    assert td.gradgradcheck(lambda x: ExpWithConstantOutput()(x), [x], raise_exception=False) is False


def test_bad_mode_is_rejected():
    with pytest.raises(ValueError, match="mode"):
        td.gradcheck(lambda x: x * 2.0, [f64([1.0])], mode="slow")


# ----------------------------------------------------------------------------- broken ops are caught

def test_catches_transpose_that_forgets_its_permutation(rng):
    x = f64(rng.standard_normal((4, 4)))
    with pytest.raises(GradcheckError) as info:
        td.gradcheck(transpose_op, [x])
    i, (row, col), analytic, numeric = parse_fast(info.value)
    assert i == 0
    assert row != col                      # the diagonal of a transpose's Jacobian is right
    assert abs(analytic - numeric) > 1e-3


def test_catches_flip_that_forgets_its_permutation(rng):
    x = f64(rng.standard_normal((2, 5)))
    with pytest.raises(GradcheckError) as info:
        td.gradcheck(flip_op, [x])
    i, (_, col), analytic, numeric = parse_fast(info.value)
    assert i == 0
    assert col != 2                        # the middle element is its own mirror image
    assert abs(analytic - numeric) > 1e-3


def test_all_ones_output_projection_would_not_catch_a_forgotten_transpose(rng):
    """Why gradcheck projects with a random v: with v = ones, v^T J u is the same for the
    transpose's Jacobian P (a permutation) and for the identity, since ones^T P = ones^T."""
    a = rng.standard_normal((3, 3))
    u = rng.standard_normal((3, 3))

    def vjp(op, v):
        x = f64(a)
        op(x).backward(f64(v, requires_grad=False))
        return x.grad.numpy()

    correct = lambda x: td.transpose(x)                     # noqa: E731
    ones = np.ones((3, 3))
    assert np.sum(vjp(transpose_op, ones) * u) == pytest.approx(np.sum(vjp(correct, ones) * u), rel=1e-12)
    v = rng.standard_normal((3, 3))
    assert abs(np.sum(vjp(transpose_op, v) * u) - np.sum(vjp(correct, v) * u)) > 1e-2


def test_catches_second_derivative_that_treats_cached_output_as_constant(rng):
    x = f64(rng.standard_normal((2, 3)))
    exp_op = lambda x: ExpWithConstantOutput()(x)          # noqa: E731
    assert td.gradcheck(exp_op, [x]) is True               # first derivative is right
    with pytest.raises(GradcheckError) as info:
        td.gradgradcheck(exp_op, [x])
    i, index, analytic, numeric = parse_fast(info.value)
    assert i == 0                                          # x, not the grad_outputs (input 1)
    assert analytic == 0.0 and abs(numeric) > 1e-3        # the constant hides d/dx exp(x)
    assert td.gradgradcheck(lambda x: x.exp(), [x]) is True


@pytest.mark.parametrize("factor", [1.01, 2.0])
def test_catches_gradient_off_by_a_factor(rng, factor):
    x = f64(rng.uniform(0.5, 2.0, (3, 2)))
    with pytest.raises(GradcheckError) as info:
        td.gradcheck(lambda x: SquareOffByFactor(factor)(x), [x])
    i, index, analytic, numeric = parse_fast(info.value)
    assert i == 0
    assert analytic == pytest.approx(factor * numeric, rel=1e-4)
    assert td.gradcheck(lambda x: SquareOffByFactor(1.0)(x), [x]) is True


def test_catches_dropped_input_gradient(rng):
    a = f64(rng.standard_normal((3, 4)))
    b = f64(rng.standard_normal(4))
    with pytest.raises(GradcheckError) as info:
        td.gradcheck(lambda a, b: MulDropsSecondGrad()(a, b), [a, b])
    i, (col,), analytic, numeric = parse_fast(info.value)
    assert i == 1
    assert analytic == 0.0 and abs(numeric) > 1e-3


def test_input_without_requires_grad_is_not_checked(rng):
    a = f64(rng.standard_normal((3, 4)))
    b = f64(rng.standard_normal(4), requires_grad=False)
    seen = []

    def fn(a, b):
        seen.append(b.numpy().copy())
        return MulDropsSecondGrad()(a, b)

    assert td.gradcheck(fn, [a, b]) is True               # b's broken gradient is not looked at
    np.testing.assert_array_equal(seen[0], b.numpy())     # but fn still receives b


def test_no_input_requiring_grad_raises():
    with pytest.raises(ValueError, match="requires_grad=True"):
        td.gradcheck(lambda x: x * 2.0, [f64([1.0], requires_grad=False)])
    with pytest.raises(ValueError, match="requires_grad=True"):
        td.gradgradcheck(lambda x: x * 2.0, [f64([1.0], requires_grad=False)])


# ----------------------------------------------------------------------------- fn must return Tensors

def numpy_exp(x):
    """exp computed in NumPy: the engine sees no graph (the mistake under test)."""
    return np.exp(x.numpy())


@pytest.mark.parametrize("check, who, expected", [
    (td.gradcheck, "gradcheck", "a Tensor or a tuple of Tensors"),
    (td.gradgradcheck, "gradgradcheck", "a Tensor or a tuple of Tensors"),
    (lambda fn, x: td.jacobian(fn, x[0]), "jacobian", "one Tensor"),
    (lambda fn, x: td.numerical_jacobian(fn, x[0]), "numerical_jacobian", "one Tensor"),
])
def test_fn_returning_a_numpy_array_is_a_type_error_that_says_what_to_do(check, who, expected):
    with pytest.raises(TypeError) as info:
        check(numpy_exp, [f64([0.5, -1.0, 2.0])])
    message = str(info.value)
    assert message.startswith(f"{who}: fn 'numpy_exp' must return {expected}, but it returned a "
                              "numpy.ndarray of shape (3,) and dtype float64")
    assert "write fn with tinydgm ops" in message and "td.tensor(...) is NOT enough" in message


def test_fn_returning_a_python_float_or_a_numpy_output_in_a_tuple_is_named():
    x = [f64([0.5, -1.0])]
    with pytest.raises(TypeError, match=r"must return a Tensor or a tuple of Tensors, but it returned a float \(-0\.5\)"):
        td.gradcheck(lambda x: float(x.sum().item()), x)
    with pytest.raises(TypeError, match=r"must return Tensors, but its output 1 is a numpy\.ndarray of shape \(2,\)"):
        td.gradcheck(lambda x: (x.sum(), np.exp(x.numpy())), x)


def test_output_rewrapped_with_td_tensor_fails_with_a_no_graph_hint():
    """td.tensor(numpy result) is a Tensor, so no TypeError, but a constant: the wrong
    gradient (analytic 0) is reported with the reason."""
    with pytest.raises(GradcheckError, match=r"analytic 0, .*fn's output has no graph"):
        td.gradcheck(lambda x: td.tensor(numpy_exp(x)), [f64([0.5, -1.0])])
    with pytest.raises(GradcheckError, match="no graph"):
        td.gradcheck(lambda x: td.tensor(numpy_exp(x)), [f64([0.5, -1.0])], mode="full")


# ----------------------------------------------------------------------------- full mode

def test_full_mode_passes_correct_ops(rng):
    a = f64(rng.standard_normal((2, 3)))
    b = f64(rng.standard_normal((3, 2)))
    assert td.gradcheck(lambda a, b: (a @ b).exp(), [a, b], mode="full") is True


def test_full_mode_catches_forgotten_transpose(rng):
    x = f64(rng.standard_normal((3, 3)))
    with pytest.raises(GradcheckError) as info:
        td.gradcheck(transpose_op, [x], mode="full")
    k, out_idx, i, in_idx, analytic, numeric = parse_full(info.value)
    assert k == 0 and i == 0 and len(out_idx) == 2 and len(in_idx) == 2
    # broken Jacobian: identity; true Jacobian: d y[r, c] / d x[c, r] = 1
    if analytic == pytest.approx(1.0):
        assert numeric == pytest.approx(0.0, abs=1e-6) and out_idx == in_idx and out_idx[0] != out_idx[1]
    else:
        assert analytic == 0.0 and numeric == pytest.approx(1.0) and out_idx == in_idx[::-1]


def test_full_mode_catches_forgotten_flip(rng):
    x = f64(rng.standard_normal(4))
    with pytest.raises(GradcheckError) as info:
        td.gradcheck(flip_op, [x], mode="full")
    k, (r,), i, (c,), analytic, numeric = parse_full(info.value)
    assert (k, i) == (0, 0)
    assert (analytic, r == c) in ((1.0, True), (0.0, False))
    assert abs(analytic - numeric) == pytest.approx(1.0, abs=1e-6)


def test_full_mode_catches_factor_and_dropped_gradient(rng):
    x = f64(rng.uniform(0.5, 2.0, 3))
    with pytest.raises(GradcheckError) as info:
        td.gradcheck(lambda x: SquareOffByFactor(1.01)(x), [x], mode="full")
    _, out_idx, _, in_idx, analytic, numeric = parse_full(info.value)
    assert out_idx == in_idx and analytic == pytest.approx(1.01 * numeric, rel=1e-4)

    a, b = f64(rng.standard_normal((2, 3))), f64(rng.standard_normal(3))
    with pytest.raises(GradcheckError) as info:
        td.gradcheck(lambda a, b: MulDropsSecondGrad()(a, b), [a, b], mode="full")
    k, _, i, _, analytic, numeric = parse_full(info.value)
    assert (k, i) == (0, 1) and analytic == 0.0 and abs(numeric) > 1e-3


def test_full_mode_catches_second_order_bug(rng):
    x = f64(rng.standard_normal(3))
    with pytest.raises(GradcheckError, match=r"input 0"):
        td.gradgradcheck(lambda x: ExpWithConstantOutput()(x), [x], mode="full")


# ----------------------------------------------------------------------------- Jacobians

def test_jacobian_of_linear_map_is_the_matrix(rng):
    A = rng.standard_normal((3, 4))
    x = f64(rng.standard_normal(4))
    fn = lambda x: f64(A, requires_grad=False) @ x         # noqa: E731
    J = td.jacobian(fn, x)
    assert J.shape == (3, 4)
    np.testing.assert_allclose(J, A, rtol=1e-12)
    np.testing.assert_allclose(td.numerical_jacobian(fn, x), A, rtol=1e-6, atol=1e-8)


def test_jacobian_shape_is_output_shape_plus_input_shape(rng):
    A = rng.standard_normal((3, 4))
    x = f64(rng.standard_normal((4, 2)))
    fn = lambda x: f64(A, requires_grad=False) @ x         # noqa: E731
    J = td.jacobian(fn, x)
    assert J.shape == (3, 2, 4, 2)
    expected = np.einsum("ik,jl->ijkl", A, np.eye(2))       # d (A x)[i, j] / d x[k, l]
    np.testing.assert_allclose(J, expected, rtol=1e-12)
    np.testing.assert_allclose(td.numerical_jacobian(fn, x), J, rtol=1e-6, atol=1e-8)


def test_jacobian_of_elementwise_map_is_diagonal(rng):
    a = rng.standard_normal((2, 3))
    J = td.jacobian(lambda x: x.exp(), f64(a))
    expected = np.zeros((2, 3, 2, 3))
    for idx in np.ndindex(2, 3):
        expected[idx + idx] = np.exp(a[idx])
    np.testing.assert_allclose(J, expected, rtol=1e-12)
    np.testing.assert_allclose(td.numerical_jacobian(lambda x: x.exp(), f64(a)), expected, rtol=1e-6, atol=1e-9)


def test_jacobian_of_tuple_inputs_is_a_tuple(rng):
    a, b = rng.standard_normal(3), rng.standard_normal(3)
    Ja, Jb = td.jacobian(lambda a, b: a * b, (f64(a), f64(b)))
    np.testing.assert_allclose(Ja, np.diag(b))
    np.testing.assert_allclose(Jb, np.diag(a))
    Na, Nb = td.numerical_jacobian(lambda a, b: a * b, (f64(a), f64(b)))
    np.testing.assert_allclose(Na, np.diag(b), atol=1e-8)
    np.testing.assert_allclose(Nb, np.diag(a), atol=1e-8)


# ----------------------------------------------------------------------------- float64

def test_float32_inputs_are_checked_in_float64():
    x = td.tensor([0.5, 1.5, 2.5], dtype="float32", requires_grad=True)
    seen = []

    def fn(x):
        seen.append((x.dtype, td.tensor([1.0]).dtype))
        return (x * 3.0).exp()

    assert td.gradcheck(fn, [x]) is True
    assert seen and all(s == (np.float64, np.float64) for s in seen)
    assert x.dtype == np.float32 and td.get_default_dtype() == np.float32


# ----------------------------------------------------------------------------- second order

SMOOTH = {
    "div_by_sum": lambda a, b, c: (a @ b).exp() / (a ** 2).sum(),
    "log_mul_div_pow": lambda a, b, c: (a * c).log() * (a / c) ** 1.5,
    "tensor_pow_exp_sum": lambda a, b, c: c ** a - (a - c).exp().sum(axis=1, keepdims=True),
    "matmul_chain": lambda a, b, c: ((a * c) @ b) ** 2 @ b.T,
}


@pytest.mark.parametrize("name", list(SMOOTH))
def test_gradgradcheck_passes_on_smooth_compositions(rng, name):
    a = f64(rng.uniform(0.5, 2.0, (3, 4)))
    b = f64(rng.standard_normal((4, 2)))
    c = f64(rng.uniform(0.5, 2.0, (1, 4)))
    assert td.gradgradcheck(SMOOTH[name], [a, b, c]) is True


def test_gradgradcheck_full_mode_passes(rng):
    a = f64(rng.uniform(0.5, 2.0, (2, 3)))
    c = f64(rng.uniform(0.5, 2.0, 3))
    assert td.gradgradcheck(lambda a, c: (a * c).log() * a.exp(), [a, c], mode="full") is True


def test_gradgradcheck_with_explicit_grad_outputs(rng):
    a = f64(rng.uniform(0.5, 2.0, (3, 4)))
    b = f64(rng.standard_normal((4, 2)))
    v = f64(rng.standard_normal((3, 2)), requires_grad=False)
    assert td.gradgradcheck(lambda a, b: (a.log() @ b) ** 2, [a, b], grad_outputs=v) is True
    with pytest.raises(GradcheckError):
        td.gradgradcheck(lambda a: ExpWithConstantOutput()(a), [a],
                         grad_outputs=f64(np.ones((3, 4)), requires_grad=False))


def test_nan_gradients_are_failures():
    """NaN compares false with everything: the checker must count it as wrong, not as close."""
    x = td.tensor([-1.0, 2.0], dtype="float64", requires_grad=True)
    with np.errstate(invalid="ignore"):
        with pytest.raises(td.GradcheckError, match="nan"):
            td.gradcheck(lambda x: td.log(x), [x])
        assert td.gradcheck(lambda x: td.log(x), [x], raise_exception=False) is False


def test_zero_dim_input_stays_an_array_during_finite_differences():
    # the perturbed value must stay an ndarray: a function may wrap x.data in a new Tensor
    seen = []

    def fn(b):
        seen.append(type(b.data))
        return td.tensor(b.data) * 0 + b * 2

    assert td.gradcheck(fn, [td.tensor(np.array(0.3), dtype="float64", requires_grad=True)])
    assert set(seen) == {np.ndarray}
