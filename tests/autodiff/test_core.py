"""The engine contract of tinydgm/autodiff/core.py: Tensor, Function, backward, grad,
no_grad, accumulation, second derivatives, graph memory, dtypes, debug mode and errors."""
import gc
import re
import sys
import tracemalloc
import weakref

import numpy as np
import pytest

import tinydgm as td
from tinydgm import backend
from tinydgm.autodiff import core


def f64(a, requires_grad=True):
    return td.tensor(np.asarray(a, dtype=np.float64), dtype="float64", requires_grad=requires_grad)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


# ----------------------------------------------------------------------------- accumulation

def test_backward_accumulates_until_zeroed(rng):
    a = rng.standard_normal((3, 4))
    x = f64(a)
    expected = 2 * a * np.exp(a ** 2)            # d/dx sum(exp(x^2))
    (x ** 2).exp().sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-12)
    (x ** 2).exp().sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * expected, rtol=1e-12)
    x.zero_grad()
    assert x.grad is None
    (x ** 2).exp().sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-12)


def test_non_leaf_tensors_get_no_grad():
    x = f64([1.0, 2.0, 3.0])
    h = x * 2.0
    y = (h * h).sum()
    y.backward()
    assert h.grad is None
    assert not h.is_leaf and x.is_leaf
    np.testing.assert_allclose(x.grad.numpy(), 8 * np.array([1.0, 2.0, 3.0]))


def test_leaf_grad_is_not_touched_for_leaves_without_requires_grad():
    x = f64([1.0, 2.0])
    c = f64([3.0, 4.0], requires_grad=False)
    (x * c).sum().backward()
    assert c.grad is None
    np.testing.assert_allclose(x.grad.numpy(), [3.0, 4.0])


def test_each_leaf_owns_a_writeable_grad():
    """Two leaves must not share one gradient array (an optimizer that updates or clips
    ``p.grad.data`` in place would otherwise change the other leaf's gradient), and the
    array must be writeable (not a read-only broadcast view)."""
    x = f64(np.ones((2, 3)))
    z = f64(np.ones((2, 3)))
    (x + z).sum().backward()
    assert x.grad is not z.grad
    assert not np.shares_memory(x.grad.data, z.grad.data)
    assert x.grad.data.flags.writeable and z.grad.data.flags.writeable
    x.grad.data *= 0.5                               # in-place clipping of one gradient
    np.testing.assert_allclose(z.grad.numpy(), np.ones((2, 3)))


def test_leaf_grad_does_not_alias_the_grad_argument():
    x = f64(np.ones(3))
    g = f64([1.0, 2.0, 3.0], requires_grad=False)
    (x + 0.0).backward(g)                            # add passes its gradient through unchanged
    assert not np.shares_memory(x.grad.data, g.data)
    x.grad.data *= 2.0
    np.testing.assert_array_equal(g.numpy(), [1.0, 2.0, 3.0])


def test_zero_dim_tensor_used_twice():
    """NumPy turns 0-d sums into scalars; accumulating two gradients of a 0-d tensor must
    still give a Tensor."""
    x = f64(3.0)
    (x * x).backward()
    assert x.grad.shape == () and x.grad.item() == 6.0
    s = f64([1.0, 2.0])
    total = s.sum()
    (total * total).backward()                       # d/ds (sum s)^2 = 2 sum s
    np.testing.assert_allclose(s.grad.numpy(), [6.0, 6.0])


def test_zero_dim_grad_accumulates_across_calls():
    x = f64(3.0)
    (x * 2.0).backward()
    (x * 2.0).backward()
    assert x.grad.shape == () and x.grad.item() == 4.0


# ----------------------------------------------------------------------------- grad()

def test_grad_returns_gradients_and_leaves_dot_grad_alone(rng):
    a, b = rng.standard_normal(4), rng.standard_normal(4)
    x, w = f64(a), f64(b)
    y = (x * w).exp().sum()
    gx, gw = td.grad(y, [x, w])
    np.testing.assert_allclose(gx.numpy(), b * np.exp(a * b), rtol=1e-12)
    np.testing.assert_allclose(gw.numpy(), a * np.exp(a * b), rtol=1e-12)
    assert x.grad is None and w.grad is None


def test_grad_with_grad_outputs_for_non_scalar_output(rng):
    a = rng.standard_normal((2, 3))
    v = rng.standard_normal((2, 3))
    x = f64(a)
    y = x ** 3
    gx, = td.grad(y, x, grad_outputs=f64(v, requires_grad=False))
    np.testing.assert_allclose(gx.numpy(), 3 * a ** 2 * v, rtol=1e-12)


def test_grad_single_tensor_input_returns_tuple():
    x = f64([2.0])
    out = td.grad((x * x).sum(), x)
    assert isinstance(out, tuple) and len(out) == 1
    np.testing.assert_allclose(out[0].numpy(), [4.0])


def test_grad_allow_unused():
    x, unused = f64([1.0, 2.0]), f64([3.0])
    y = (x * x).sum()
    with pytest.raises(RuntimeError, match="input 1.*not used.*allow_unused"):
        td.grad(y, [x, unused], retain_graph=True)
    gx, gu = td.grad(y, [x, unused], allow_unused=True)
    assert gu is None
    np.testing.assert_allclose(gx.numpy(), [2.0, 4.0])


def test_grad_of_an_intermediate_tensor():
    x = f64([1.0, -2.0, 3.0])
    h = x * 2.0 + 1.0                               # a non-leaf input
    y = (h ** 2).sum()
    gh, gx = td.grad(y, [h, x])
    hv = 2 * np.array([1.0, -2.0, 3.0]) + 1
    np.testing.assert_allclose(gh.numpy(), 2 * hv)
    np.testing.assert_allclose(gx.numpy(), 4 * hv)
    assert x.grad is None and h.grad is None


def test_grad_rejects_inputs_and_outputs_without_graph():
    x = f64([1.0])
    c = f64([1.0], requires_grad=False)
    with pytest.raises(RuntimeError, match="input 1 does not require grad"):
        td.grad((x * c).sum(), [x, c])
    with pytest.raises(RuntimeError, match="output 0 does not require grad"):
        td.grad((c * c).sum(), [x])


# ----------------------------------------------------------------------------- second order

def test_second_derivative_closed_form():
    """d2/dx2 [x^3 e^x] = (x^3 + 6x^2 + 6x) e^x."""
    a = np.array([-1.5, -0.3, 0.0, 0.7, 2.0])
    x = f64(a)
    y = (x ** 3 * x.exp()).sum()
    g, = td.grad(y, x, create_graph=True)
    np.testing.assert_allclose(g.numpy(), (3 * a ** 2 + a ** 3) * np.exp(a), rtol=1e-12)
    assert g.requires_grad and g.creator is not None
    h, = td.grad(g.sum(), x)
    np.testing.assert_allclose(h.numpy(), (a ** 3 + 6 * a ** 2 + 6 * a) * np.exp(a), rtol=1e-12, atol=1e-14)


def test_second_derivative_through_backward_create_graph():
    a = np.array([0.5, 1.5])
    x = f64(a)
    (x ** 3 * x.exp()).sum().backward(create_graph=True)
    gx = x.grad
    assert gx.requires_grad
    x.grad = None
    gx.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), (a ** 3 + 6 * a ** 2 + 6 * a) * np.exp(a), rtol=1e-12)


def _f_hvp(x, A):
    """f(x) = sum(exp(A x)) / (1 + |x|^2): a non-quadratic test function."""
    return (A @ x).exp().sum() / ((x * x).sum() + 1.0)


def test_hessian_vector_product_matches_differences_of_gradients(rng):
    A = f64(rng.standard_normal((3, 4)) * 0.5, requires_grad=False)
    a = rng.standard_normal(4)
    v = rng.standard_normal(4)

    def gradient(point):
        x = f64(point)
        g, = td.grad(_f_hvp(x, A), x)
        return g.numpy()

    x = f64(a)
    g, = td.grad(_f_hvp(x, A), x, create_graph=True)
    hv, = td.grad((g * f64(v, requires_grad=False)).sum(), x)
    eps = 1e-6
    numeric = (gradient(a + eps * v) - gradient(a - eps * v)) / (2 * eps)
    np.testing.assert_allclose(hv.numpy(), numeric, rtol=1e-6, atol=1e-8)


def test_gradient_penalty_differentiated_wrt_parameters(rng):
    """WGAN-GP style: penalty(w) = || d/dx f(x; w) ||^2, differentiated w.r.t. w."""
    xa = rng.standard_normal((5, 3))
    wa = rng.standard_normal((3, 2))

    def penalty(w_array, create_graph):
        w = f64(w_array)
        x = f64(xa)
        f = ((x @ w).exp() * (x @ w)).sum()
        gx, = td.grad(f, x, create_graph=create_graph)
        return (gx * gx).sum(), w

    p, w = penalty(wa, create_graph=True)
    assert p.requires_grad
    p.backward()
    numeric = np.zeros_like(wa)
    eps = 1e-6
    for idx in np.ndindex(*wa.shape):
        step = np.zeros_like(wa)
        step[idx] = eps
        numeric[idx] = (penalty(wa + step, False)[0].item() - penalty(wa - step, False)[0].item()) / (2 * eps)
    np.testing.assert_allclose(w.grad.numpy(), numeric, rtol=1e-5, atol=1e-7)


def test_without_create_graph_gradients_have_no_graph():
    x = f64([1.0, 2.0])
    g, = td.grad((x ** 3).sum(), x)
    assert not g.requires_grad and g.creator is None
    (x ** 3).sum().backward()
    assert not x.grad.requires_grad and x.grad.creator is None


# ----------------------------------------------------------------------------- retain_graph

def test_backward_twice_without_retain_graph_raises():
    x = f64([1.0, 2.0])
    y = (x * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="second time.*retain_graph=True"):
        y.backward()


def test_grad_through_a_freed_shared_part_of_the_graph_raises_instead_of_losing_the_path():
    # y1 and y2 share h: grad(y1, x) frees h's creator; grad(y2, x) must still see that its
    # path to x runs through h (and say the graph was freed), not call x unused.
    x = f64([1.0, 2.0])
    h = (x * x).exp()
    y1, y2 = h.sum(), (h * h).sum()
    td.grad(y1, x)
    with pytest.raises(RuntimeError, match="second time.*retain_graph=True"):
        td.grad(y2, x)


def test_grad_after_a_freed_backward_still_reaches_inputs_off_the_freed_path():
    # the freed part leads only to a; the gradient for b does not need it.
    a, b = f64([1.0, 2.0]), f64([3.0, 4.0])
    h = (a * a).exp()
    td.grad(h.sum(), a)
    (gb,) = td.grad((h * b).sum(), b)
    np.testing.assert_allclose(gb.numpy(), np.exp(np.array([1.0, 4.0])))


def test_backward_twice_with_retain_graph_accumulates():
    x = f64([1.0, 2.0])
    y = (x * x).exp().sum()
    y.backward(retain_graph=True)
    first = x.grad.numpy().copy()
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * first)


# ----------------------------------------------------------------------------- graph shapes

def test_long_chain_backpropagates_without_recursion():
    n = 10_000
    assert n > sys.getrecursionlimit()
    x = f64(1.0)
    y = x
    for _ in range(n):
        y = y * 1.0001
    y.backward()
    np.testing.assert_allclose(x.grad.item(), 1.0001 ** n, rtol=1e-10)
    assert y.generation == n
    del y                                            # freeing the chain must not recurse either


def test_long_chain_grad_function():
    x = f64([0.5])
    y = x
    for _ in range(10_000):
        y = y + x * 1e-4
    g, = td.grad(y.sum(), x)
    np.testing.assert_allclose(g.numpy(), [2.0])


def test_diamond_graph_adds_gradients():
    a = np.array([0.3, -1.2, 2.0])
    x = f64(a)
    h = x * 3.0
    left, right = h.exp(), h * h
    y = (left * right + left + right).sum()      # y = e^{3x} 9x^2 + e^{3x} + 9x^2
    y.backward()
    expected = np.exp(3 * a) * (27 * a ** 2 + 18 * a) + 3 * np.exp(3 * a) + 18 * a
    np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-12)


def test_tensor_used_many_times():
    x = f64([1.0, 2.0])
    y = x
    for _ in range(49):
        y = y + x
    (y * x).sum().backward()                      # 50 x^2
    np.testing.assert_allclose(x.grad.numpy(), 100 * np.array([1.0, 2.0]))


class _TwoOutputs(td.Function):
    """(2x, x^3): a Function with two outputs."""

    def forward(self, x):
        return 2 * x, x ** 3

    def backward(self, g_double, g_cube):
        x, = self.inputs
        return g_double * 2.0 + g_cube * 3.0 * x * x


def test_multi_output_function_with_one_output_used():
    x = f64([1.0, 2.0])
    double, cube = _TwoOutputs()(x)
    cube.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [3.0, 12.0])
    x.grad = None
    double, cube = _TwoOutputs()(x)
    del cube                                       # the unused output may even be gone
    double.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 2.0])


def test_multi_output_function_with_both_outputs_used():
    x = f64([1.0, 2.0])
    double, cube = _TwoOutputs()(x)
    (double * cube).sum().backward()               # d/dx 2x^4 = 8 x^3
    np.testing.assert_allclose(x.grad.numpy(), [8.0, 64.0])


# ----------------------------------------------------------------------------- memory

def test_training_loop_memory_stays_flat():
    gen = np.random.default_rng(0)
    x = td.tensor(gen.standard_normal((8, 3)))
    t = td.tensor(gen.standard_normal((8, 2)))
    w = td.tensor(gen.standard_normal((3, 2)) * 0.1, requires_grad=True)
    b = td.tensor(np.zeros(2), requires_grad=True)

    def step():
        loss = (((x @ w + b) - t) ** 2).sum() / 8.0
        loss.backward()
        w.data = w.data - 0.01 * w.grad.data        # no in-place update; the graph is dropped
        b.data = b.data - 0.01 * b.grad.data
        w.grad = b.grad = None
        return loss.item()

    # gc.collect() also empties CPython's free lists (tuples, floats), which otherwise fill
    # up slowly with traced blocks and look like a leak; with the collector off in between,
    # garbage that only the cycle collector could free would show in its count.
    enabled = gc.isenabled()
    gc.disable()
    tracemalloc.start()
    try:
        for _ in range(100):
            first_loss = step()
        gc.collect()
        at_100 = tracemalloc.get_traced_memory()[0]
        for _ in range(900):
            last_loss = step()
        cyclic_garbage = gc.collect()
        at_1000 = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
        if enabled:
            gc.enable()
    assert last_loss < first_loss                   # the loop really trained
    assert cyclic_garbage == 0, f"{cyclic_garbage} objects in reference cycles after 900 steps"
    assert at_1000 - at_100 < 16 * 1024, f"memory grew by {at_1000 - at_100} bytes over 900 steps"


def test_dropped_graph_is_freed_by_reference_counting():
    enabled = gc.isenabled()
    gc.disable()
    try:
        x = f64([1.0, 2.0])
        h = (x * 2.0).exp()
        f_ref = weakref.ref(h.creator)
        h_ref = weakref.ref(h)
        out = (h * h).sum()
        del h
        assert h_ref() is not None                  # the graph of out keeps h alive
        del out
        assert h_ref() is None and f_ref() is None
        # after a backward without retain_graph, the graph is released too
        h = (x * 2.0).exp()
        h_ref = weakref.ref(h)
        out = (h * h).sum()
        del h
        out.backward()
        assert h_ref() is None
    finally:
        if enabled:
            gc.enable()


# ----------------------------------------------------------------------------- no_grad

def test_no_grad_records_no_graph():
    x = f64([1.0, 2.0])
    with td.no_grad():
        assert not td.is_grad_enabled()
        y = (x * 2.0).exp()
    assert td.is_grad_enabled()
    assert y.creator is None and not y.requires_grad


def test_enable_grad_inside_no_grad():
    x = f64([1.0, 2.0])
    with td.no_grad():
        with td.enable_grad():
            y = x * 3.0
        z = x * 3.0
        assert not td.is_grad_enabled()
    assert y.requires_grad and y.creator is not None
    assert not z.requires_grad
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [3.0, 3.0])


def test_no_grad_restores_mode_after_exception():
    with pytest.raises(ZeroDivisionError):
        with td.no_grad():
            1 / 0
    assert td.is_grad_enabled()


# ----------------------------------------------------------------------------- dtypes

BINARY_WITH_SCALARS = {
    "add": lambda a: a + 2.0, "radd": lambda a: 2.0 + a,
    "sub": lambda a: a - 2.0, "rsub": lambda a: 2.0 - a,
    "mul": lambda a: a * 2.0, "rmul": lambda a: 2.0 * a,
    "div": lambda a: a / 2.0, "rdiv": lambda a: 2.0 / a,
    "pow": lambda a: a ** 2.0, "rpow": lambda a: 2.0 ** a,
    "pow_int": lambda a: a ** 3, "mul_int": lambda a: a * 3,
    "neg": lambda a: -a, "matmul": lambda a: a @ a,
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("op", list(BINARY_WITH_SCALARS))
def test_dtype_preserved_with_python_scalars(op, dtype):
    x = td.tensor(np.array([0.5, 1.5, 2.0]), dtype=dtype, requires_grad=True)
    y = BINARY_WITH_SCALARS[op](x)
    assert y.dtype == np.dtype(dtype)
    y.sum().backward()
    assert x.grad.dtype == np.dtype(dtype) and x.grad.shape == x.shape


def test_float32_gradients_through_a_composition():
    x = td.tensor(np.array([[0.5, 1.5], [2.0, 0.1]]), dtype="float32", requires_grad=True)
    w = td.tensor(np.array([0.3, -0.2]), dtype="float32", requires_grad=True)
    y = ((x * w + 1.0).log() * 0.5 + (x @ w).exp().sum() / 3.0).sum()
    assert y.dtype == np.float32
    y.backward()
    assert x.grad.dtype == np.float32 and w.grad.dtype == np.float32


def test_default_dtype_of_new_tensors():
    assert td.tensor([1.0, 2.0]).dtype == np.float32
    with td.default_dtype("float64"):
        assert td.tensor([1.0, 2.0]).dtype == np.float64
    assert td.tensor([1.0, 2.0]).dtype == np.float32
    assert td.tensor([1, 2]).dtype.kind == "i"
    assert td.tensor(np.array([1.0], dtype=np.float64)).dtype == np.float64   # arrays keep theirs


# ----------------------------------------------------------------------------- debug mode

class _WrongShapeGrad(td.Function):
    def forward(self, x):
        return x * 2

    def backward(self, gy):
        return gy.sum()                              # shape () instead of x.shape


class _WrongDtypeGrad(td.Function):
    def forward(self, x):
        return x * 2

    def backward(self, gy):
        return td.tensor(gy.numpy() * 2, dtype="float64")   # float64 for a float32 input


def test_debug_mode_names_function_with_wrong_gradient_shape():
    assert td.is_debug()                             # conftest turns it on
    x = td.tensor(np.ones((2, 3)), requires_grad=True)
    with pytest.raises(RuntimeError, match=r"_wrongshapegrad.backward.*input 0.*shape \(\).*\(2, 3\)"):
        _WrongShapeGrad()(x).sum().backward()


def test_debug_mode_names_function_with_wrong_gradient_dtype():
    x = td.tensor(np.ones((2, 3)), dtype="float32", requires_grad=True)
    with pytest.raises(RuntimeError, match=r"_wrongdtypegrad.backward.*float64.*float32"):
        _WrongDtypeGrad()(x).sum().backward()


def test_debug_off_does_not_check():
    x = td.tensor(np.ones((2, 3)), dtype="float32", requires_grad=True)
    td.set_debug(False)
    try:
        _WrongDtypeGrad()(x).sum().backward()
    finally:
        td.set_debug(True)
    assert x.grad.dtype == np.float64                # the broken gradient went through unchecked


# ----------------------------------------------------------------------------- errors

def test_matmul_misaligned_shapes():
    a, b = td.tensor(np.ones((3, 4))), td.tensor(np.ones((5, 2)))
    with pytest.raises(ValueError, match=re.escape("matmul: shapes (3, 4) and (5, 2) are not aligned")):
        a @ b


def test_broadcast_mismatch_names_op_and_shapes():
    a, b = td.tensor(np.ones((2, 3))), td.tensor(np.ones(4))
    with pytest.raises(ValueError) as info:
        a + b
    message = str(info.value)
    assert message.startswith("add:")
    assert "(2, 3)" in message and "(4,)" in message


def test_backward_on_non_scalar_explains_itself():
    x = td.tensor(np.ones((2, 3)), requires_grad=True)
    with pytest.raises(RuntimeError) as info:
        (x * 2.0).backward()
    assert "(2, 3)" in str(info.value) and "grad=" in str(info.value)


def test_backward_grad_argument_with_wrong_shape():
    x = td.tensor(np.ones((2, 3)), requires_grad=True)
    with pytest.raises(ValueError, match=r"\(3,\).*\(2, 3\)"):
        (x * 2.0).backward(np.ones(3))


def test_backward_without_graph_explains_itself():
    with pytest.raises(RuntimeError, match="does not require grad"):
        td.tensor([1.0]).backward()


def test_requires_grad_on_integer_tensor():
    with pytest.raises(TypeError, match="floating"):
        td.tensor([1, 2], requires_grad=True)
    with pytest.raises(TypeError, match="floating"):
        td.tensor([1, 2]).requires_grad_()


class _FakeCudaArray(np.ndarray):
    """A NumPy array that pretends to live on the GPU (for the device check without CuPy)."""


def test_mixing_devices_raises(monkeypatch):
    real_device_of = backend.device_of
    monkeypatch.setattr(backend, "device_of",
                        lambda a: "cuda" if isinstance(a, _FakeCudaArray) else real_device_of(a))
    cpu = td.tensor([1.0, 2.0])
    gpu = core.Tensor(np.array([1.0, 2.0], dtype=np.float32).view(_FakeCudaArray))
    assert gpu.device == "cuda" and cpu.device == "cpu"
    with pytest.raises(RuntimeError, match=r"add: inputs are on different devices.*\.to\(device\)"):
        cpu + gpu
    with pytest.raises(RuntimeError, match=r"matmul: inputs are on different devices"):
        gpu @ cpu


def test_tensor_from_list_points_to_td_tensor():
    with pytest.raises(TypeError, match=r"tinydgm\.tensor"):
        td.Tensor([1.0, 2.0])


# ----------------------------------------------------------------------------- Tensor API

def test_tensor_api():
    a = np.arange(6.0).reshape(2, 3)
    x = td.tensor(a, requires_grad=True)
    assert isinstance(x.data, np.ndarray) and x.grad is None
    assert x.shape == (2, 3) and x.ndim == 2 and x.size == 6 and len(x) == 2
    assert x.dtype == np.float64 and x.device == "cpu"
    assert not np.shares_memory(x.data, a)            # tensor() copies
    assert isinstance(x.numpy(), np.ndarray)
    np.testing.assert_array_equal(x.numpy(), a)
    assert x.to("cpu") is x
    np.testing.assert_array_equal(x.T.numpy(), a.T)
    assert td.tensor(3.5).item() == 3.5
    with pytest.raises(ValueError, match="item"):
        x.item()
    r = repr(x)
    assert r.startswith("tensor(") and "float64" in r and "requires_grad=True" in r
    assert "requires_grad" not in repr(td.tensor([1.0]))


def test_detach_shares_data_without_graph():
    x = f64([1.0, 2.0])
    y = x * 2.0
    d = y.detach()
    assert d.data is y.data
    assert d.creator is None and not d.requires_grad


def test_requires_grad_():
    x = td.tensor([1.0, 2.0])
    assert x.requires_grad_() is x and x.requires_grad
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 4.0])
    x.requires_grad_(False)
    assert not x.requires_grad


def test_to_cuda_without_cupy_says_how_to_install():
    if backend.cupy is not None:
        pytest.skip("CuPy is installed: the install hint is not shown")
    with pytest.raises(RuntimeError) as info:
        td.tensor([1.0]).to("cuda")
    assert "pip install" in str(info.value) and "cuda12" in str(info.value)


def test_to_unknown_device():
    with pytest.raises(ValueError, match="gpu"):
        td.tensor([1.0]).to("gpu")


@pytest.mark.cuda
def test_to_cuda_and_back_is_differentiable():
    x = f64([1.0, 2.0])
    y = x.to("cuda")
    assert y.device == "cuda"
    (y * y).sum().to("cpu").backward()
    assert x.grad.device == "cpu"
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 4.0])
