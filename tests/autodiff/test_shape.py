"""Shape ops (tinydgm/autodiff/shape.py): forward against NumPy, first and second
derivatives against finite differences, permutation-sensitive backward, indexing with
repeated indices and masks, multi-output split, errors."""
import re

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import tinydgm as td
from tinydgm.autodiff import shape as S


def t(array, device="cpu", requires_grad=True):
    return td.tensor(np.asarray(array, dtype=np.float64), dtype="float64", device=device,
                     requires_grad=requires_grad)


def check_grads(fn, *inputs):
    assert td.gradcheck(fn, list(inputs))
    assert td.gradgradcheck(fn, list(inputs))


def randn(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


# ----------------------------------------------------------------------------- reshape

@pytest.mark.parametrize("shape, new", [((3, 4), (4, 3)), ((3, 4), (-1,)), ((3, 4), (2, -1, 2)),
                                        ((2, 1, 3), (3, 2)), ((), (1, 1)), ((0, 3), (3, 0)),
                                        ((6,), (1, 6, 1))])
def test_reshape(device, shape, new):
    x = randn(*shape)
    y = td.reshape(t(x, device), new)
    np.testing.assert_array_equal(y.numpy(), x.reshape(new))
    np.testing.assert_array_equal(t(x, device).reshape(*new).numpy(), x.reshape(new))
    check_grads(lambda a: td.reshape(a, new), t(x, device))


def test_reshape_is_a_no_op_for_the_same_shape():
    x = t(randn(2, 3))
    assert td.reshape(x, 2, 3) is x


def test_reshape_error_names_both_shapes():
    with pytest.raises(ValueError, match=re.escape("reshape: cannot reshape tensor of shape (3, 4) "
                                                   "into shape (5,)")):
        td.reshape(t(randn(3, 4)), 5)


# ----------------------------------------------------------------------------- transpose

@pytest.mark.parametrize("seed", range(4))
def test_transpose_random_permutations(device, seed):
    rng = np.random.default_rng(seed)
    shape = tuple(rng.integers(1, 4, size=4))
    perm = tuple(int(a) for a in rng.permutation(4))
    x = rng.standard_normal(shape)
    y = td.transpose(t(x, device), perm)
    np.testing.assert_array_equal(y.numpy(), x.transpose(perm))
    check_grads(lambda a: td.transpose(a, *perm), t(x, device))


def test_transpose_default_negative_axes_and_T(device):
    x = randn(2, 3, 4)
    np.testing.assert_array_equal(td.transpose(t(x, device)).numpy(), x.T)
    np.testing.assert_array_equal(t(x, device).T.numpy(), x.T)
    np.testing.assert_array_equal(td.transpose(t(x, device), -1, 0, -2).numpy(), x.transpose(2, 0, 1))
    check_grads(lambda a: td.transpose(a, -1, 0, -2), t(x, device))
    check_grads(lambda a: a.T, t(x, device))


def test_transpose_error():
    with pytest.raises(ValueError, match=r"transpose: axes \(0, 0\) are not a permutation"):
        td.transpose(t(randn(2, 3)), 0, 0)


class _ForgetsThePermutation(S.Transpose):
    """A broken transpose whose backward applies the forward permutation again."""

    def backward(self, gy):
        return td.transpose(gy, self.axes)


def test_gradcheck_catches_a_transpose_backward_that_ignores_the_inverse():
    perm = (1, 2, 0)                       # a 3-cycle: its inverse is (2, 0, 1), not itself
    x = t(randn(2, 2, 2))                  # a cube, so the broken gradient still has the right shape
    assert td.gradcheck(lambda a: S.Transpose(perm)(a), [x])
    with pytest.raises(td.GradcheckError):
        td.gradcheck(lambda a: _ForgetsThePermutation(perm)(a), [x])


# ----------------------------------------------------------------------------- expand_dims, squeeze

@pytest.mark.parametrize("shape, axis", [((3, 4), 0), ((3, 4), 2), ((3, 4), -1), ((3, 4), (0, 3)),
                                         ((3, 4), (-1, 1)), ((), 0), ((0, 2), 1)])
def test_expand_dims(device, shape, axis):
    x = randn(*shape)
    y = td.expand_dims(t(x, device), axis)
    np.testing.assert_array_equal(y.numpy(), np.expand_dims(x, axis))
    check_grads(lambda a: td.expand_dims(a, axis), t(x, device))


@pytest.mark.parametrize("shape, axis", [((1, 3, 1, 4), None), ((1, 3, 1, 4), 0), ((1, 3, 1, 4), -2),
                                         ((1, 3, 1, 4), (0, 2)), ((3, 4), None), ((1,), None),
                                         ((1, 0), 0)])
def test_squeeze(device, shape, axis):
    x = randn(*shape)
    y = td.squeeze(t(x, device), axis)
    np.testing.assert_array_equal(y.numpy(), np.squeeze(x, axis))
    check_grads(lambda a: td.squeeze(a, axis), t(x, device))


def test_expand_dims_and_squeeze_errors():
    x = t(randn(3, 4))
    with pytest.raises(ValueError, match="expand_dims: axis 3 is out of range for a tensor with 3 dimensions"):
        td.expand_dims(x, 3)
    with pytest.raises(ValueError, match=re.escape("squeeze: cannot squeeze axis 1 of a tensor of shape "
                                                   "(3, 4): its size is 4, not 1")):
        td.squeeze(x, 1)


# ----------------------------------------------------------------------------- broadcast_to

@pytest.mark.parametrize("shape, target", [((3,), (2, 3)), ((3, 1), (3, 4)), ((), (2, 2)), ((1, 1), (0, 5)),
                                           ((2, 1, 3), (4, 2, 5, 3))])
def test_broadcast_to(device, shape, target):
    x = randn(*shape)
    y = td.broadcast_to(t(x, device), target)
    np.testing.assert_array_equal(y.numpy(), np.broadcast_to(x, target))
    check_grads(lambda a: td.broadcast_to(a, target), t(x, device))


def test_broadcast_to_gradient_sums(device):
    x = t(randn(3, 1), device)
    td.broadcast_to(x, (2, 3, 4)).backward(t(np.ones((2, 3, 4)), device, requires_grad=False))
    np.testing.assert_array_equal(x.grad.numpy(), np.full((3, 1), 8.0))


def test_broadcast_to_error():
    with pytest.raises(ValueError, match=re.escape("broadcast_to: cannot broadcast a tensor of shape (3,) "
                                                   "to shape (4,)")):
        td.broadcast_to(t(randn(3)), (4,))


@st.composite
def broadcastable(draw):
    target = tuple(draw(st.lists(st.integers(0, 4), max_size=4)))
    lead = draw(st.integers(0, len(target)))
    return tuple(1 if draw(st.booleans()) else n for n in target[lead:]), target


@settings(max_examples=25, deadline=None)
@given(broadcastable(), st.integers(0, 2**32 - 1))
def test_broadcast_to_property(shapes, seed):
    shape, target = shapes
    x = np.random.default_rng(seed).standard_normal(shape)
    np.testing.assert_array_equal(td.broadcast_to(t(x), target).numpy(), np.broadcast_to(x, target))
    check_grads(lambda a: td.broadcast_to(a, target), t(x))


# ----------------------------------------------------------------------------- concatenate, stack

@pytest.mark.parametrize("shapes, axis", [([(2, 3), (4, 3)], 0), ([(2, 3), (2, 1), (2, 5)], 1),
                                          ([(2, 3), (2, 2)], -1), ([(2, 0), (2, 3)], 1), ([(5,)], 0),
                                          ([(1, 2, 3), (1, 2, 3), (1, 2, 3)], 2)])
def test_concatenate(device, shapes, axis):
    xs = [randn(*s, seed=i) for i, s in enumerate(shapes)]
    y = td.concatenate([t(x, device) for x in xs], axis=axis)
    np.testing.assert_array_equal(y.numpy(), np.concatenate(xs, axis=axis))
    check_grads(lambda *a: td.concatenate(a, axis=axis), *[t(x, device) for x in xs])


def test_concatenate_with_a_constant_and_mixed_dtypes(device):
    a = t(randn(2, 3), device)
    b = td.tensor(np.ones((1, 3), dtype=np.float32), device=device)
    y = td.concatenate([a, b])
    assert y.dtype == np.float64
    (y * t(np.arange(9.0).reshape(3, 3), device, requires_grad=False)).sum().backward()
    np.testing.assert_array_equal(a.grad.numpy(), np.arange(6.0).reshape(2, 3))
    assert b.grad is None


def test_concatenate_errors():
    a = t(randn(2, 3))
    with pytest.raises(ValueError, match=re.escape("concatenate: tensor 1 has shape (2, 4) but tensor 0 has "
                                                   "shape (2, 3); all dimensions except axis 0 must match")):
        td.concatenate([a, t(randn(2, 4))], axis=0)
    with pytest.raises(ValueError, match="concatenate: tensor 1 has 1 dimensions"):
        td.concatenate([a, t(randn(3))])
    with pytest.raises(ValueError, match="concatenate: zero-dimensional"):
        td.concatenate([t(1.0), t(2.0)])
    with pytest.raises(ValueError, match="concatenate: need at least one tensor"):
        td.concatenate([])
    with pytest.raises(ValueError, match="concatenate: axis 2 is out of range"):
        td.concatenate([a, a], axis=2)


@pytest.mark.parametrize("axis", [0, 1, 2, -1, -3])
def test_stack(device, axis):
    xs = [randn(2, 3, seed=i) for i in range(3)]
    y = td.stack([t(x, device) for x in xs], axis=axis)
    np.testing.assert_array_equal(y.numpy(), np.stack(xs, axis=axis))
    check_grads(lambda *a: td.stack(a, axis=axis), *[t(x, device) for x in xs])


def test_stack_errors():
    with pytest.raises(ValueError, match=re.escape("stack: all tensors must have the same shape, but tensor 0 "
                                                   "has shape (2, 3) and tensor 1 has shape (3, 2)")):
        td.stack([t(randn(2, 3)), t(randn(3, 2))])
    with pytest.raises(ValueError, match="stack: axis 3 is out of range"):
        td.stack([t(randn(2, 3))], axis=3)


# ----------------------------------------------------------------------------- split

@pytest.mark.parametrize("shape, spec, axis", [((6, 2), 3, 0), ((2, 6), [1, 4], 1), ((2, 6), [1, 4], -1),
                                               ((5,), [-2], 0), ((5,), [0, 5], 0), ((5,), [3, 1], 0),
                                               ((5,), [2, 2, 9], 0), ((0, 3), 3, 1), ((4,), 1, 0)])
def test_split(device, shape, spec, axis):
    x = randn(*shape)
    ys = td.split(t(x, device), spec, axis=axis)
    expected = np.split(x, spec, axis=axis)
    assert isinstance(ys, tuple) and len(ys) == len(expected)
    for y, e in zip(ys, expected):
        np.testing.assert_array_equal(y.numpy(), e)
    check_grads(lambda a: td.split(a, spec, axis=axis), t(x, device))


def test_split_overlapping_parts_add_their_gradients(device):
    """np.split(x, [3, 1]) = x[:3], x[3:1] (empty), x[1:]: entries 1 and 2 are in two parts."""
    x = t(randn(5), device)
    first, _, last = td.split(x, [3, 1])
    (first.sum() + 10 * last.sum()).backward()
    np.testing.assert_array_equal(x.grad.numpy(), [1, 11, 11, 10, 10])


def test_split_outputs_without_gradient_count_as_zeros(device):
    x = t(randn(6, 2), device)
    parts = td.split(x, 3)
    (parts[1] * 2).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[0, 0], [0, 0], [2, 2], [2, 2], [0, 0], [0, 0]])
    check_grads(lambda a: td.split(a, [1, 4])[1], t(randn(6, 2), device))
    check_grads(lambda a: td.split(a, [1, 4], axis=0)[::2], t(randn(6, 2), device))


def test_split_errors():
    with pytest.raises(ValueError, match=re.escape("split: axis 0 of a tensor of shape (5, 2) (size 5) cannot "
                                                   "be split into 2 equal sections")):
        td.split(t(randn(5, 2)), 2)
    with pytest.raises(ValueError, match="split: the number of sections must be positive"):
        td.split(t(randn(5, 2)), 0)


# ----------------------------------------------------------------------------- flip

@pytest.mark.parametrize("axis", [None, 0, 1, -1, (0, 2), (-1, -3)])
def test_flip(device, axis):
    x = randn(2, 3, 4)
    y = td.flip(t(x, device), axis)
    np.testing.assert_array_equal(y.numpy(), np.flip(x, axis))
    check_grads(lambda a: td.flip(a, axis), t(x, device))


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(0, 4), min_size=1, max_size=4), st.data())
def test_flip_property(shape, data):
    axes = data.draw(st.lists(st.integers(0, len(shape) - 1), unique=True, max_size=len(shape)))
    x = np.random.default_rng(len(axes)).standard_normal(shape)
    np.testing.assert_array_equal(td.flip(t(x), tuple(axes)).numpy(), np.flip(x, tuple(axes)))
    check_grads(lambda a: td.flip(a, tuple(axes)), t(x))


class _UnflippedGradient(S.Flip):
    def backward(self, gy):
        return gy


def test_gradcheck_catches_a_flip_backward_that_forgets_to_flip():
    x = t(randn(3, 4))
    with pytest.raises(td.GradcheckError):
        td.gradcheck(lambda a: _UnflippedGradient((1,))(a), [x])


# ----------------------------------------------------------------------------- pad

@pytest.mark.parametrize("shape, pad_width", [((3, 4), 1), ((3, 4), (2,)), ((3, 4), (1, 2)),
                                              ((3, 4), ((1, 2),)), ((3, 4), ((0, 1), (2, 0))),
                                              ((2, 1, 3), ((1, 1), (0, 0), (2, 1))), ((0, 2), 1),
                                              ((3,), ((2, 0),)), ((3, 4), 0)])
def test_pad(device, shape, pad_width):
    x = randn(*shape)
    y = td.pad(t(x, device), pad_width, constant_values=-1.5)
    np.testing.assert_array_equal(y.numpy(), np.pad(x, pad_width, constant_values=-1.5))
    check_grads(lambda a: td.pad(a, pad_width), t(x, device))


def test_pad_errors():
    x = t(randn(3, 4))
    with pytest.raises(ValueError, match='pad: only mode="constant" is supported'):
        td.pad(x, 1, mode="reflect")
    with pytest.raises(ValueError, match="pad: pad widths must be non-negative"):
        td.pad(x, (1, -1))
    with pytest.raises(ValueError, match="pad: pad_width .* does not match a tensor with 2 dimensions"):
        td.pad(x, ((1, 1), (1, 1), (1, 1)))


# ----------------------------------------------------------------------------- getitem

def _indices():
    """(name, index-builder) pairs; the builder gets the device and returns the index."""
    mask = randn(4, 5, seed=3) > 0
    return [
        ("int", lambda d: 1),
        ("negative int", lambda d: -1),
        ("slice", lambda d: slice(1, 3)),
        ("negative step", lambda d: (slice(None, None, -1), slice(4, 0, -2))),
        ("int and slice", lambda d: (2, slice(None, None, 2))),
        ("ellipsis", lambda d: (Ellipsis, 1)),
        ("newaxis", lambda d: (None, slice(1, 3), None, 0)),
        ("ellipsis and newaxis", lambda d: (Ellipsis, None)),
        ("empty slice", lambda d: slice(3, 1)),
        ("repeated list", lambda d: [0, 0, 3, 0]),
        ("repeated array pair", lambda d: (np.array([0, 1, 0, 0]), np.array([2, 2, 2, -1]))),
        ("int tensor", lambda d: td.tensor(np.array([[3, 3], [0, 3]]), device=d)),
        ("array and slice", lambda d: (slice(1, None), [4, 4, 0])),
        ("bool mask", lambda d: mask),
        ("bool mask tensor", lambda d: td.tensor(mask, device=d)),
        ("bool row mask and ints", lambda d: (np.array([True, False, True, True]), [1, 1, 4])),
        ("empty list", lambda d: []),
    ]


@pytest.mark.parametrize("name, make_index", _indices(), ids=[n for n, _ in _indices()])
def test_getitem_matches_numpy_and_gradchecks(device, name, make_index):
    x = randn(4, 5)
    index = make_index(device)
    np_index = tuple(i.numpy() if isinstance(i, td.Tensor) else i for i in index) \
        if isinstance(index, tuple) else (index.numpy() if isinstance(index, td.Tensor) else index)
    y = t(x, device)[index]
    np.testing.assert_array_equal(y.numpy(), x[np_index])
    check_grads(lambda a: a[index], t(x, device))
    # the gradient scatters back, adding repeated entries: compare with np.add.at
    xt = t(x, device)
    gy = randn(*y.shape, seed=5)
    td.getitem(xt, index).backward(t(gy, device, requires_grad=False))
    expected = np.zeros_like(x)
    np.add.at(expected, np_index, gy)
    np.testing.assert_allclose(xt.grad.numpy(), expected, rtol=1e-15)


def test_getitem_repeated_indices_add_up(device):
    x = t(np.zeros(4), device)
    x[[1, 1, 1, 3, 1]].sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0, 4, 0, 1])


def test_getitem_double_backward_through_scatter_add(device):
    """d/dx of sum((grad of sum(x[i]^3))^2): the gradient itself goes through GetItemGrad."""
    x = t([1.0, 2.0, 3.0], device)
    (g,) = td.grad((x[[0, 0, 2]] ** 3).sum(), [x], create_graph=True)
    np.testing.assert_allclose(g.numpy(), [6.0, 0.0, 27.0])
    (g * g).sum().backward()
    # g = (2 * 3 x0^2, 0, 3 x2^2): d/dx sum(g^2) = (2 g0 * 12 x0, 0, 2 g2 * 6 x2)
    np.testing.assert_allclose(x.grad.numpy(), [2 * 6 * 12, 0.0, 2 * 27 * 18])


def test_getitem_2d_mask_with_repeated_ints(device):
    """A 2-D mask next to an integer array: the mask stands for its nonzero() positions."""
    x = randn(2, 3, 4)
    mask = np.array([[True, False, True], [False, False, True]])
    index = (mask, [3, 3, 0])
    np.testing.assert_array_equal(t(x, device)[index].numpy(), x[index])
    check_grads(lambda a: a[index], t(x, device))
    xt = t(x, device)
    xt[(td.tensor(mask, device=device), [1, 1, 1])].sum().backward()
    expected = np.zeros_like(x)
    expected[0, 0, 1] = expected[0, 2, 1] = expected[1, 2, 1] = 1
    np.testing.assert_array_equal(xt.grad.numpy(), expected)


def test_getitem_of_zero_dimensional_and_zero_size(device):
    x = randn(3, 0)
    check_grads(lambda a: a[1:, :], t(x, device))
    s = np.array(2.5)
    y = t(s, device)[()]
    assert y.shape == () and y.item() == 2.5
    check_grads(lambda a: a[None], t(s, device))


def test_getitem_errors():
    x = t(randn(3, 4))
    with pytest.raises(IndexError, match="getitem: .*out of bounds"):
        x[5]
    with pytest.raises(IndexError, match="getitem: index arrays must be integers or booleans, got dtype float64"):
        x[np.array([0.5])]


# ----------------------------------------------------------------------------- API

def test_tensor_methods():
    x = randn(1, 3, 1)
    xt = t(x)
    np.testing.assert_array_equal(xt.squeeze().numpy(), x.squeeze())
    np.testing.assert_array_equal(xt.expand_dims(0).numpy(), x[None])
    np.testing.assert_array_equal(xt.flip(1).numpy(), x[:, ::-1])
    np.testing.assert_array_equal(xt.transpose(2, 0, 1).numpy(), x.transpose(2, 0, 1))
    np.testing.assert_array_equal(xt.broadcast_to(2, 3, 4).numpy(), np.broadcast_to(x, (2, 3, 4)))
