"""The fused Bernoulli log-likelihood: values against the formula and the Bernoulli
distribution, stability at extreme logits, first to third derivatives, dtypes and errors."""
import numpy as np
import pytest

import tinydgm as td
from tinydgm.autodiff.bernoulli_ops import bernoulli_log_likelihood
from tinydgm.distributions import Bernoulli

rng = np.random.default_rng(0)


def f64(a, grad=True):
    return td.tensor(a, dtype="float64", requires_grad=grad)


def test_matches_the_formula_and_the_distribution_with_broadcast_data():
    """x (N, D) against logits (k, N, D), as in an IWAE: sum_d x l - log(1 + e^l) per (k, N)."""
    logits, x = 3 * rng.standard_normal((4, 3, 7)), (rng.random((3, 7)) < 0.4).astype(float)
    got = bernoulli_log_likelihood(f64(logits), td.tensor(x)).numpy()
    assert got.shape == (4, 3)
    np.testing.assert_allclose(got, (x * logits - np.log1p(np.exp(logits))).sum(-1), rtol=1e-13)
    by_distribution = Bernoulli(logits=f64(logits)).log_prob(td.tensor(x)).sum(axis=-1).numpy()
    np.testing.assert_allclose(got, by_distribution, rtol=1e-13)


def test_sums_over_the_last_n_event_axes():
    logits, x = rng.standard_normal((2, 3, 4, 5)), rng.random((4, 5))
    full = x * logits - np.log1p(np.exp(logits))
    for n_event in (0, 1, 2, 3):
        got = bernoulli_log_likelihood(f64(logits), td.tensor(x), n_event=n_event).numpy()
        np.testing.assert_allclose(got, full.sum(axis=tuple(range(4 - n_event, 4))), rtol=1e-13)


def test_stable_at_extreme_logits():
    """log p(1 | 1000) = -log(1 + e^-1000) = 0, log p(0 | 1000) = -1000, and mirrored; the
    gradient x - sigmoid(l) is exactly 0 or -1 / +1 there."""
    logits = f64(np.array([[1000.0, 1000.0, -1000.0, -1000.0]]))
    x = td.tensor(np.array([[1.0, 0.0, 1.0, 0.0]]))
    terms = bernoulli_log_likelihood(logits, x, n_event=0)
    np.testing.assert_array_equal(terms.numpy(), [[0.0, -1000.0, -1000.0, 0.0]])
    terms.sum().backward()
    np.testing.assert_array_equal(logits.grad.numpy(), [[0.0, -1.0, 1.0, 0.0]])


def test_gradient_is_x_minus_sigmoid():
    logits, x = rng.standard_normal((2, 6)), (rng.random((2, 6)) < 0.5).astype(float)
    l_t = f64(logits)
    g = rng.standard_normal(2)
    (bernoulli_log_likelihood(l_t, td.tensor(x)) * td.tensor(g)).sum().backward()
    np.testing.assert_allclose(l_t.grad.numpy(), g[:, None] * (x - 1 / (1 + np.exp(-logits))), rtol=1e-13)


@pytest.mark.parametrize("n_event", [1, 2])
def test_gradcheck_and_gradgradcheck(n_event):
    """In the logits and in grey-level data x in (0, 1) (both get gradients), x broadcast
    over the leading axis and along a size-1 axis."""
    logits, x = f64(2 * rng.standard_normal((3, 2, 4))), f64(rng.uniform(0.1, 0.9, (2, 1)))
    fn = lambda l, x: bernoulli_log_likelihood(l, x, n_event=n_event)  # noqa: E731
    assert td.gradcheck(fn, [logits, x])
    assert td.gradgradcheck(fn, [logits, x])


def test_third_derivative():
    """The backward's backward is made of engine ops: d/dl of ||d log p / dl||^2 numerically."""
    x = td.tensor(rng.uniform(0.1, 0.9, (2, 5)))

    def squared_score(logits):
        score, = td.grad(bernoulli_log_likelihood(logits, x).sum(), [logits], create_graph=True)
        return (score * score).sum()

    assert td.gradgradcheck(squared_score, [f64(rng.standard_normal((2, 5)))])


def test_float32_stays_float32_and_integer_data_is_cast():
    logits = td.tensor(rng.standard_normal((3, 4)).astype(np.float32), requires_grad=True)
    x = td.tensor(np.array([[0, 1, 1, 0]] * 3, dtype=np.int64))
    out = bernoulli_log_likelihood(logits, x)
    assert out.dtype == np.float32 and out.shape == (3,)
    out.sum().backward()
    assert logits.grad.dtype == np.float32


def test_errors():
    logits = f64(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="n_event must be an int in \\[0, 2\\]"):
        bernoulli_log_likelihood(logits, td.tensor(np.zeros(3)), n_event=3)
    with pytest.raises(ValueError, match="must broadcast to the logits' shape"):
        bernoulli_log_likelihood(logits, td.tensor(np.zeros((2, 4))))
    with pytest.raises(TypeError, match="must be floating"):
        bernoulli_log_likelihood(td.tensor(np.zeros((2, 3), dtype=np.int64)), td.tensor(np.zeros(3)))


def test_float32_runs_the_kernel_and_agrees_with_float64():
    """x (N, D) against logits (k, N, D) in float32 take the Numba kernels (one pass each way):
    the value and the gradient x - sigmoid(l) agree with the float64 op to float32 rounding."""
    from tinydgm.kernels import bernoulli as kb
    logits = 3 * rng.standard_normal((5, 20, 64))
    logits[0, 0, :4] = [1e4, -1e4, 90.0, -90.0]
    x = (rng.random((20, 64)) < 0.4).astype(float)
    l32 = td.tensor(logits.astype(np.float32), requires_grad=True)
    assert kb.fast_layout(l32.data, x.astype(np.float32), 1) is not None
    out = bernoulli_log_likelihood(l32, td.tensor(x))
    out.sum().backward()
    l64 = f64(logits)
    bernoulli_log_likelihood(l64, td.tensor(x)).sum().backward()
    np.testing.assert_allclose(out.numpy(), bernoulli_log_likelihood(f64(logits, False), td.tensor(x)).numpy(),
                               rtol=2e-6)
    np.testing.assert_allclose(l32.grad.numpy(), l64.grad.numpy(), atol=3e-7)


@pytest.mark.parametrize("n_event", [1, 2])
def test_gradcheck_and_gradgradcheck_through_the_kernels(monkeypatch, n_event):
    """The op takes the kernels for float32 only; here they are forced in float64 so that the
    kernel path (its layout, the score recomputing exp(-|l|)) faces central differences."""
    from tinydgm.kernels import bernoulli as kb
    monkeypatch.setattr(kb, "fast_layout", kb.kernel_layout)
    logits, x = f64(2 * rng.standard_normal((3, 2, 4))), f64(rng.uniform(0.1, 0.9, (2, 4)))
    assert kb.fast_layout(logits.data, x.data, n_event) is not None
    fn = lambda l, x: bernoulli_log_likelihood(l, x, n_event=n_event)  # noqa: E731
    assert td.gradcheck(fn, [logits, x])
    assert td.gradgradcheck(fn, [logits, x])


@pytest.mark.cuda
def test_device_arrays_take_the_numpy_twins():
    """On CuPy arrays (or the stand-in) the op runs the vectorized twins: same values and gradients."""
    logits = rng.standard_normal((3, 4, 6)).astype(np.float32)
    x = (rng.random((4, 6)) < 0.5).astype(np.float32)
    cpu = td.tensor(logits, requires_grad=True)
    gpu = td.tensor(logits, device="cuda", requires_grad=True)
    a = bernoulli_log_likelihood(cpu, td.tensor(x))
    b = bernoulli_log_likelihood(gpu, td.tensor(x, device="cuda"))
    a.sum().backward()
    b.sum().backward()
    assert b.device == "cuda" and gpu.grad.device == "cuda"
    np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-6)
    np.testing.assert_allclose(gpu.grad.numpy(), cpu.grad.numpy(), atol=1e-6)
