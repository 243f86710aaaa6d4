"""matmul and einsum: forward values against NumPy, first and second derivatives, errors."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import tinydgm as td

rng = np.random.default_rng(0)


def randn(*shape):
    return rng.standard_normal(shape)


def f64(a):
    return td.tensor(a, dtype="float64", requires_grad=True)


# ----------------------------------------------------------------------------- matmul

MATMUL_SHAPES = [((2, 3), (3, 4)), ((3,), (3, 2)), ((2, 3), (3,)), ((3,), (3,)),
                 ((5, 2, 3), (3, 4)), ((2, 3, 2, 3), (3, 4)), ((2, 1, 2, 3), (3, 3, 2)), ((0, 3), (3, 2)),
                 ((2, 0, 3), (3, 2)), ((2, 3, 0), (0, 2))]


@pytest.mark.parametrize("sa,sb", MATMUL_SHAPES)
def test_matmul(sa, sb, device):
    a, b = randn(*sa), randn(*sb)
    y = td.matmul(td.tensor(a, device=device), td.tensor(b, device=device))
    np.testing.assert_allclose(y.numpy(), a @ b, rtol=1e-12)
    if device == "cpu":
        assert td.gradcheck(td.matmul, [f64(a), f64(b)])
        assert td.gradgradcheck(td.matmul, [f64(a), f64(b)])


# ----------------------------------------------------------------------------- einsum

EINSUM_CASES = [
    ("ij,jk->ik", [(2, 3), (3, 4)]),                # matrix product
    ("bij,bjk->bik", [(2, 2, 3), (2, 3, 4)]),       # batched matrix product
    ("bi,bi->b", [(3, 4), (3, 4)]),                 # row-wise dot products
    ("i,j->ij", [(3,), (4,)]),                      # outer product
    ("i,i->", [(5,), (5,)]),                        # inner product, 0-d result
    ("ij->", [(2, 3)]),                             # total sum
    ("ij->ji", [(2, 3)]),                           # transpose
    ("ijk->kj", [(2, 3, 4)]),                       # sum over an index only one operand has
    ("ijk,j->i", [(2, 3, 4), (3,)]),                # k summed out inside operand 0 only
    ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 2)]),     # three operands
    ("ij,jk", [(2, 3), (3, 4)]),                    # implicit output: "ik"
    ("ba,b", [(3, 2), (3,)]),                       # implicit output: "a"
    ("i,i", [(4,), (4,)]),                          # implicit output: ""
    ("...ij,...jk->...ik", [(2, 1, 2, 3), (4, 3, 2)]),   # ellipsis with batch broadcasting
    ("...i,i", [(2, 3, 4), (4,)]),                  # implicit output with ellipsis: "..."
    ("ij,ij->i", [(3, 1), (3, 4)]),                 # size-1 dimension broadcasts
    ("i,ij->j", [(1,), (3, 2)]),                    # broadcast index that is then summed
    ("ij,jk->ik", [(0, 3), (3, 2)]),                # zero-size axis
]


@pytest.mark.parametrize("spec,shapes", EINSUM_CASES)
def test_einsum_matches_numpy(spec, shapes, device):
    arrays = [randn(*s) for s in shapes]
    y = td.einsum(spec, *(td.tensor(a, device=device) for a in arrays))
    expected = np.einsum(spec, *arrays)
    assert y.shape == np.shape(expected)
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("spec,shapes", EINSUM_CASES)
def test_einsum_gradcheck_and_gradgradcheck(spec, shapes):
    inputs = [f64(randn(*s)) for s in shapes]
    fn = lambda *xs: td.einsum(spec, *xs)  # noqa: E731
    assert td.gradcheck(fn, inputs)
    assert td.gradgradcheck(fn, inputs)


def test_einsum_same_tensor_twice_and_float32():
    x = td.tensor(randn(3, 4).astype(np.float32), requires_grad=True)
    y = td.einsum("ij,ij->", x, x)              # ||x||^2: gradient 2 x from both slots
    assert y.dtype == np.float32
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * x.numpy(), rtol=1e-6)
    assert x.grad.dtype == np.float32


def test_einsum_large_operands_use_an_optimized_path():
    a, b, c = randn(70, 80), randn(80, 90), randn(90, 5)
    y = td.einsum("ij,jk,kl->il", td.tensor(a), td.tensor(b), td.tensor(c))
    np.testing.assert_allclose(y.numpy(), a @ b @ c, rtol=1e-10)


LETTERS = "abcde"


@st.composite
def two_operand_specs(draw):
    """Random two-operand contractions: each operand takes distinct letters, the output
    a subset of their union (explicit) or nothing given (implicit)."""
    sizes = {c: draw(st.integers(1, 3)) for c in LETTERS}
    a = draw(st.lists(st.sampled_from(LETTERS), min_size=0, max_size=3, unique=True))
    b = draw(st.lists(st.sampled_from(LETTERS), min_size=0, max_size=3, unique=True))
    union = sorted(set(a) | set(b))
    out = draw(st.one_of(st.none(), st.permutations(union).flatmap(
        lambda p: st.integers(0, len(p)).map(lambda n: p[:n]))))
    spec = "".join(a) + "," + "".join(b) + ("" if out is None else "->" + "".join(out))
    return spec, [tuple(sizes[c] for c in a), tuple(sizes[c] for c in b)]


@settings(max_examples=25, deadline=None)
@given(two_operand_specs())
def test_einsum_random_contractions(case):
    spec, shapes = case
    arrays = [randn(*s) for s in shapes]
    np.testing.assert_allclose(td.einsum(spec, *map(td.tensor, arrays)).numpy(), np.einsum(spec, *arrays),
                               rtol=1e-12, atol=1e-12)
    inputs = [f64(a) for a in arrays]
    fn = lambda *xs: td.einsum(spec, *xs)  # noqa: E731
    assert td.gradcheck(fn, inputs)
    assert td.gradgradcheck(fn, inputs)


def test_einsum_errors():
    a, b = td.tensor(randn(2, 3)), td.tensor(randn(4, 5))
    with pytest.raises(ValueError, match=r"einsum: index 'i' is repeated in operand 0 \('ii'\); "
                                         r"traces and diagonals are not supported"):
        td.einsum("ii->", td.tensor(randn(3, 3)))
    with pytest.raises(ValueError, match=r"einsum: index 'j' has size 3 in one operand and 4 in operand 1"):
        td.einsum("ij,jk->ik", a, b)
    with pytest.raises(ValueError, match=r"einsum: subscripts 'ij->i' name 1 operand\(s\) but 2 were given"):
        td.einsum("ij->i", a, b)
    with pytest.raises(ValueError, match=r"einsum: operand 0 has shape \(2, 3\) but its subscripts 'ijk' name 3"):
        td.einsum("ijk->i", a)
    with pytest.raises(ValueError, match=r"einsum: output index 'k' does not appear in any operand"):
        td.einsum("ij->k", a)
    with pytest.raises(ValueError, match=r"einsum: output index 'i' is repeated"):
        td.einsum("ij->ii", a)
    with pytest.raises(ValueError, match=r"einsum: subscripts 'i1->i' may only use letters"):
        td.einsum("i1->i", a)
    with pytest.raises(TypeError, match=r"einsum: subscripts must be a string"):
        td.einsum(a, a)


def test_mixed_dtype_gradients_keep_each_inputs_dtype():
    """A float32 weight used on a float64 batch gets a float32 gradient (debug mode checks it)."""
    x = td.tensor(np.ones((4, 3)), dtype="float64")
    w = td.tensor(np.ones((3, 2)), dtype="float32", requires_grad=True)
    v = td.tensor(np.ones(3), dtype="float32", requires_grad=True)
    (x @ w).sum().backward()
    td.einsum("ij,j->i", x, v).sum().backward()
    assert w.grad.dtype == np.float32 and v.grad.dtype == np.float32
    np.testing.assert_allclose(w.grad.numpy(), np.full((3, 2), 4.0))
    np.testing.assert_allclose(v.grad.numpy(), np.full(3, 4.0))
