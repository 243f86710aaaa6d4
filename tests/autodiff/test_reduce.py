"""Reductions (tinydgm/autodiff/reduce.py): forward against NumPy/SciPy, first and second
derivatives against finite differences, stability at +-1000, ties, errors."""
import re

import numpy as np
import pytest
import scipy.special
from hypothesis import given, settings, strategies as st

import tinydgm as td
from tinydgm.autodiff import reduce as R


def t(array, device="cpu", requires_grad=True):
    return td.tensor(np.asarray(array, dtype=np.float64), dtype="float64", device=device,
                     requires_grad=requires_grad)


def check_grads(fn, *inputs):
    assert td.gradcheck(fn, list(inputs))
    assert td.gradgradcheck(fn, list(inputs))


def ref_logsumexp(x, axis, keepdims):
    # log(sum of no terms) = log 0 = -inf; SciPy errors for some empty inputs and gives shape
    # (1,) for 0-d ones with keepdims (NumPy reductions give ()), so use the plain formula there
    if x.size == 0 or x.ndim == 0:
        with np.errstate(divide="ignore"):
            return np.log(np.exp(x).sum(axis=axis, keepdims=keepdims))
    return scipy.special.logsumexp(x, axis=axis, keepdims=keepdims)


# op name -> (tinydgm reduction, NumPy reference); all take (x, axis, keepdims)
REDUCTIONS = {
    "sum": (td.sum, np.sum),
    "mean": (td.mean, np.mean),
    "var": (td.var, np.var),
    "max": (td.max, np.max),
    "min": (td.min, np.min),
    "logsumexp": (td.logsumexp, ref_logsumexp),
}
HAS_IDENTITY = {"sum", "mean", "var", "logsumexp"}     # defined over zero-size axes

# (shape, axis): None, int, negative int, tuples, size-1 axes, 0-d, axis=(), zero-size
CASES = [
    ((3, 4, 5), None), ((3, 4, 5), 1), ((3, 4, 5), -1), ((3, 4, 5), (0, 2)),
    ((3, 4, 5), (-3, -1)), ((3, 4, 5), (2, 0, 1)), ((2, 1, 3), 1), ((2, 1, 3), (0, 1)),
    ((4,), 0), ((), None), ((3, 4), ()), ((0, 3), 1), ((3, 0), 0),
]
EMPTY_AXIS_CASES = [((3, 0), 1), ((3, 0), None), ((0,), 0)]


def _id(case):
    return f"{case[0]}-axis{case[1]}"


# ----------------------------------------------------------------------------- reductions

@pytest.mark.filterwarnings("ignore::RuntimeWarning")      # NumPy warns for var of one entry etc.
@pytest.mark.parametrize("name", list(REDUCTIONS))
@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("case", CASES, ids=_id)
def test_reduction_matches_numpy_and_gradchecks(device, name, keepdims, case):
    shape, axis = case
    fn, ref = REDUCTIONS[name]
    x = np.random.default_rng(0).standard_normal(shape)
    y = fn(t(x, device), axis=axis, keepdims=keepdims)
    expected = ref(x, axis=axis, keepdims=keepdims)
    assert y.shape == np.shape(expected)
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-12, atol=1e-12)
    check_grads(lambda a: fn(a, axis=axis, keepdims=keepdims), t(x, device))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")      # mean of an empty slice is nan
@pytest.mark.parametrize("name", sorted(HAS_IDENTITY))
@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("case", EMPTY_AXIS_CASES, ids=_id)
def test_reduction_over_zero_size_axis(device, name, keepdims, case):
    shape, axis = case
    fn, ref = REDUCTIONS[name]
    x = np.zeros(shape)
    y = fn(t(x, device), axis=axis, keepdims=keepdims)
    expected = ref(x, axis=axis, keepdims=keepdims)
    np.testing.assert_array_equal(y.numpy(), expected)      # 0, nan or -inf, as NumPy/SciPy
    xt = t(x, device)
    fn(xt, axis=axis, keepdims=keepdims).sum().backward()
    assert xt.grad.shape == shape


@pytest.mark.parametrize("name", ["max", "min"])
@pytest.mark.parametrize("case", EMPTY_AXIS_CASES, ids=_id)
def test_max_min_of_zero_size_axis_is_an_error(name, case):
    shape, axis = case
    with pytest.raises(ValueError, match=rf"{name}: cannot reduce over axis \d of size 0 .*no identity"):
        REDUCTIONS[name][0](t(np.zeros(shape)), axis=axis)


@pytest.mark.parametrize("name", ["max", "min"])
def test_max_min_over_nonempty_axis_of_empty_tensor(name):
    x = t(np.zeros((0, 3)))
    y = REDUCTIONS[name][0](x, axis=1)
    assert y.shape == (0,)


@pytest.mark.parametrize("ddof", [0, 1, 2])
@pytest.mark.parametrize("axis", [None, 0, -1, (0, 1)])
def test_var_ddof(device, ddof, axis):
    x = np.random.default_rng(1).standard_normal((4, 5))
    y = td.var(t(x, device), axis=axis, ddof=ddof)
    np.testing.assert_allclose(y.numpy(), np.var(x, axis=axis, ddof=ddof), rtol=1e-12)
    check_grads(lambda a: td.var(a, axis=axis, ddof=ddof), t(x, device))


def test_var_gradient_formula():
    """d var / dx_i = 2 (x_i - mean) / (n - ddof)."""
    x = np.random.default_rng(2).standard_normal(6)
    xt = t(x)
    td.var(xt, ddof=1).backward()
    np.testing.assert_allclose(xt.grad.numpy(), 2 * (x - x.mean()) / 5, rtol=1e-12)


def test_mean_keeps_float32():
    x = td.tensor(np.ones((2, 3), dtype=np.float32))
    assert td.mean(x, axis=1).dtype == np.float32
    assert td.var(x, axis=1).dtype == np.float32


# ----------------------------------------------------------------------------- max / min ties

@pytest.mark.parametrize("name", ["max", "min"])
def test_max_min_ties_split_the_gradient(device, name):
    fn = REDUCTIONS[name][0]
    sign = 1 if name == "max" else -1
    x = sign * np.array([[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0], [5.0, 1.0, 4.0, 2.0]])
    xt = t(x, device)
    gy = np.array([1.0, 6.0, -2.0])
    fn(xt, axis=1).backward(t(gy, device, requires_grad=False))
    expected = np.array([[0, 0.5, 0.5, 0], [1.5, 1.5, 1.5, 1.5], [-2, 0, 0, 0]])
    np.testing.assert_allclose(xt.grad.numpy(), expected, rtol=1e-15)


def test_max_ties_over_all_axes_split_among_all_tied_entries(device):
    x = np.array([[7.0, 1.0], [7.0, 7.0]])
    xt = t(x, device)
    td.max(xt).backward()
    np.testing.assert_allclose(xt.grad.numpy(), [[1 / 3, 0], [1 / 3, 1 / 3]], rtol=1e-15)


def test_max_gradient_goes_to_argmax(device):
    x = np.random.default_rng(3).standard_normal((4, 6))
    xt = t(x, device)
    td.max(xt, axis=0).sum().backward()
    expected = np.zeros_like(x)
    expected[x.argmax(axis=0), np.arange(6)] = 1
    np.testing.assert_array_equal(xt.grad.numpy(), expected)


# ----------------------------------------------------------------------------- logsumexp, softmax, log_softmax

def ref_softmax(x, axis):
    return np.exp(x - scipy.special.logsumexp(x, axis=axis, keepdims=True))


def ref_log_softmax(x, axis):
    return x - scipy.special.logsumexp(x, axis=axis, keepdims=True)


SOFTMAX_CASES = [((3, 4, 5), -1), ((3, 4, 5), 0), ((3, 4, 5), (0, 2)), ((3, 4, 5), None),
                 ((2, 1, 3), 1), ((5,), -1), ((0, 3), -1), ((3, 0), -1)]


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@pytest.mark.parametrize("case", SOFTMAX_CASES, ids=_id)
def test_softmax_matches_numpy_and_gradchecks(device, name, case):
    shape, axis = case
    fn = getattr(td, name)
    ref = ref_softmax if name == "softmax" else ref_log_softmax
    x = 3 * np.random.default_rng(4).standard_normal(shape)
    y = fn(t(x, device), axis=axis)
    np.testing.assert_allclose(y.numpy(), ref(x, axis), rtol=1e-12, atol=1e-14)
    check_grads(lambda a: fn(a, axis=axis), t(x, device))


def test_softmax_default_axis_is_last(device):
    x = np.random.default_rng(5).standard_normal((3, 4))
    np.testing.assert_allclose(td.softmax(t(x, device)).numpy(), ref_softmax(x, -1), rtol=1e-12)
    np.testing.assert_allclose(td.log_softmax(t(x, device)).numpy(), ref_log_softmax(x, -1), rtol=1e-12)


def test_softmax_gradient_formula(device):
    """d logsumexp / dx = softmax(x); the rows of softmax's Jacobian sum to zero."""
    x = np.random.default_rng(6).standard_normal((2, 5))
    xt = t(x, device)
    td.logsumexp(xt, axis=1).sum().backward()
    np.testing.assert_allclose(xt.grad.numpy(), ref_softmax(x, 1), rtol=1e-12)
    xt = t(x, device)
    td.softmax(xt, axis=1).sum().backward()
    np.testing.assert_allclose(xt.grad.numpy(), 0, atol=1e-15)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_stability_at_plus_minus_1000(device, dtype):
    x = td.tensor([[1000.0, 1000.0], [-1000.0, -1000.0], [1000.0, -1000.0]], dtype=dtype, device=device,
                  requires_grad=True)
    lse = td.logsumexp(x, axis=1)
    log2 = np.log(np.array(2.0, dtype=dtype))
    np.testing.assert_array_equal(lse.numpy(), np.array([1000 + log2, -1000 + log2, 1000], dtype=dtype))
    lse.sum().backward()      # exp(x - y): y = 1000 + log 2 is rounded, so 0.5 is within ~1000 eps
    np.testing.assert_allclose(x.grad.numpy(), [[0.5, 0.5], [0.5, 0.5], [1, 0]],
                               rtol=2000 * np.finfo(dtype).eps)

    z = td.tensor([1000.0, 0.0, -1000.0], dtype=dtype, device=device)
    np.testing.assert_array_equal(td.softmax(z).numpy(), [1, 0, 0])
    np.testing.assert_array_equal(td.log_softmax(z).numpy(), [0, -1000, -2000])
    # the naive composition overflows: the test is about something
    with np.errstate(over="ignore"):
        assert not np.isfinite(td.log(td.sum(td.exp(z))).numpy())


@pytest.mark.parametrize("name", ["logsumexp", "softmax", "log_softmax"])
@pytest.mark.parametrize("offset", [1000.0, -1000.0])
def test_stable_ops_gradcheck_far_from_zero(name, offset):
    x = offset + np.random.default_rng(7).standard_normal((3, 4))
    check_grads(lambda a: getattr(td, name)(a, axis=1), t(x))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")      # log(0) for a slice of all -inf
def test_logsumexp_with_minus_infinity(device):
    x = t([[-np.inf, 0.0], [-np.inf, -np.inf]], device)
    y = td.logsumexp(x, axis=1)
    np.testing.assert_array_equal(y.numpy(), [0.0, -np.inf])
    np.testing.assert_array_equal(td.softmax(t([-np.inf, 0.0], device)).numpy(), [0, 1])
    y[0].backward()
    np.testing.assert_array_equal(x.grad.numpy()[0], [0, 1])


# ----------------------------------------------------------------------------- cumsum

@pytest.mark.parametrize("shape, axis", [((3, 4), 0), ((3, 4), 1), ((3, 4), -1), ((2, 3, 4), None),
                                         ((5,), 0), ((), None), ((3, 0), 1), ((0, 2), 0)])
def test_cumsum_matches_numpy_and_gradchecks(device, shape, axis):
    x = np.random.default_rng(8).standard_normal(shape)
    y = td.cumsum(t(x, device), axis=axis)
    np.testing.assert_allclose(y.numpy(), np.cumsum(x, axis=axis), rtol=1e-12)
    check_grads(lambda a: td.cumsum(a, axis=axis), t(x, device))


def test_cumsum_gradient_is_reversed_cumsum(device):
    xt = t(np.zeros(4), device)
    td.cumsum(xt, 0).backward(t([1.0, 2.0, 3.0, 4.0], device, requires_grad=False))
    np.testing.assert_array_equal(xt.grad.numpy(), [10, 9, 7, 4])


def test_cumsum_rejects_tuple_axis():
    with pytest.raises(TypeError, match="cumsum: axis must be an int"):
        td.cumsum(t(np.zeros((2, 2))), axis=(0, 1))


# ----------------------------------------------------------------------------- sum_to

@pytest.mark.parametrize("big, small", [((3, 4), (4,)), ((3, 4), (3, 1)), ((3, 4), (1, 1)), ((3, 4), ()),
                                        ((2, 3, 4), (3, 1)), ((2, 1, 4), (1, 1, 4)), ((0, 4), (4,)),
                                        ((3, 0), (3, 1))])
def test_sum_to_matches_numpy_and_gradchecks(device, big, small):
    x = np.random.default_rng(9).standard_normal(big)
    y = td.sum_to(t(x, device), small)
    lead = len(big) - len(small)
    axes = tuple(range(lead)) + tuple(lead + i for i, n in enumerate(small) if n == 1)
    expected = x.sum(axis=axes, keepdims=True).reshape(small)
    assert y.shape == small
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-12)
    check_grads(lambda a: td.sum_to(a, small), t(x, device))


def test_sum_to_and_broadcast_to_are_no_ops_when_shapes_match():
    x = t(np.ones((2, 3)))
    assert td.sum_to(x, (2, 3)) is x
    assert td.broadcast_to(x, (2, 3)) is x


@st.composite
def broadcast_pair(draw):
    """A shape and a shape that broadcasts to it (leading axes dropped, some set to 1)."""
    big = tuple(draw(st.lists(st.integers(0, 4), min_size=0, max_size=4)))
    lead = draw(st.integers(0, len(big)))
    small = tuple(1 if draw(st.booleans()) else n for n in big[lead:])
    return big, small


@settings(max_examples=25, deadline=None)
@given(broadcast_pair(), st.integers(0, 2**32 - 1))
def test_sum_to_is_the_adjoint_of_broadcast_to(pair, seed):
    """<broadcast_to(x), y> = <x, sum_to(y)>, and both gradcheck."""
    big, small = pair
    rng = np.random.default_rng(seed)
    x, y = rng.standard_normal(small), rng.standard_normal(big)
    bx = td.broadcast_to(t(x), big)
    sy = td.sum_to(t(y), small)
    np.testing.assert_array_equal(bx.numpy(), np.broadcast_to(x, big))
    np.testing.assert_allclose((bx.numpy() * y).sum(), (x * sy.numpy()).sum(), rtol=1e-10, atol=1e-12)
    check_grads(lambda a: td.sum_to(a, small), t(y))
    check_grads(lambda a: td.broadcast_to(a, big), t(x))


# ----------------------------------------------------------------------------- property tests

@st.composite
def reduction_case(draw):
    """A shape (0-3 axes of size 0-4) and an axis in one of NumPy's forms."""
    shape = tuple(draw(st.lists(st.integers(0, 4), min_size=0, max_size=3)))
    ndim = len(shape)
    chosen = draw(st.lists(st.integers(0, ndim - 1), unique=True, max_size=ndim)) if ndim else []
    form = draw(st.sampled_from(["none", "int", "negative", "tuple"]))
    if form == "none" or not chosen:
        axis = None
    elif form == "int":
        axis = chosen[0]
    elif form == "negative":
        axis = chosen[0] - ndim
    else:
        axis = tuple(a - ndim if draw(st.booleans()) else a for a in chosen)
    return shape, axis


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@settings(max_examples=25, deadline=None)
@given(reduction_case(), st.sampled_from(sorted(REDUCTIONS)), st.booleans(), st.integers(0, 2**32 - 1))
def test_reductions_property(case, name, keepdims, seed):
    shape, axis = case
    fn, ref = REDUCTIONS[name]
    x = np.random.default_rng(seed).standard_normal(shape)
    axes = R.normalize_axis(axis, len(shape), name)
    if name not in HAS_IDENTITY and any(shape[a] == 0 for a in axes):
        with pytest.raises(ValueError, match="no identity"):
            fn(t(x), axis=axis, keepdims=keepdims)
        return
    y = fn(t(x), axis=axis, keepdims=keepdims)
    np.testing.assert_allclose(y.numpy(), ref(x, axis=axis, keepdims=keepdims), rtol=1e-10, atol=1e-12)
    check_grads(lambda a: fn(a, axis=axis, keepdims=keepdims), t(x))


# ----------------------------------------------------------------------------- API and errors

def test_tensor_methods():
    x = np.random.default_rng(10).standard_normal((3, 4))
    xt = t(x)
    np.testing.assert_allclose(xt.sum(axis=1).numpy(), x.sum(axis=1))
    np.testing.assert_allclose(xt.mean().numpy(), x.mean())
    np.testing.assert_allclose(xt.var(0, ddof=1).numpy(), x.var(0, ddof=1))
    np.testing.assert_allclose(xt.max(1, keepdims=True).numpy(), x.max(1, keepdims=True))
    np.testing.assert_allclose(xt.min().numpy(), x.min())
    np.testing.assert_allclose(xt.cumsum(1).numpy(), x.cumsum(1))
    np.testing.assert_allclose(xt.logsumexp(0).numpy(), scipy.special.logsumexp(x, 0))


@pytest.mark.parametrize("name", ["sum", "mean", "var", "max", "min", "logsumexp", "softmax", "log_softmax",
                                  "cumsum"])
@pytest.mark.parametrize("axis", [2, -3])
def test_out_of_range_axis_names_the_op(name, axis):
    with pytest.raises(ValueError, match=re.escape(f"{name}: axis {axis} is out of range for a tensor "
                                                   "with 2 dimensions")):
        getattr(td, name)(t(np.zeros((2, 3))), axis=axis)


def test_repeated_axis_is_an_error():
    with pytest.raises(ValueError, match=r"mean: repeated axis in \(1, -1\)"):
        td.mean(t(np.zeros((2, 3))), axis=(1, -1))


def test_zero_dimensional_tensor_accepts_only_no_axis():
    x = t(np.array(2.0))
    assert td.sum(x).item() == 2.0
    assert td.max(x, axis=()).item() == 2.0
    with pytest.raises(ValueError, match="sum: axis 0 is out of range"):
        td.sum(x, axis=0)


def test_numpy_integer_axis_is_accepted():
    x = np.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(td.sum(t(x), axis=np.int64(1)).numpy(), x.sum(axis=1))


@pytest.mark.parametrize("axis", [0, 1])
def test_cumsum_large_leading_axis_equals_numpy(axis):
    """Big arrays summed along a leading axis take the slab-by-slab path; same values."""
    x = np.random.default_rng(5).standard_normal((40, 300, 64)).astype(np.float32)
    y = td.cumsum(td.tensor(x), axis=axis)
    np.testing.assert_allclose(y.numpy(), np.cumsum(x, axis=axis), rtol=1e-5, atol=1e-4)
    assert y.dtype == np.float32
