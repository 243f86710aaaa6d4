"""The Bernoulli log-likelihood kernels (tinydgm/kernels/bernoulli.py): the float32 log1p within
an ulp, the forward and the score equal to the NumPy formula in float32 and float64 (extreme
logits included) on 1 and 2 threads, the layouts they accept."""
import numpy as np
import pytest

import tinydgm as td
from tinydgm.kernels import bernoulli as kb

rng = np.random.default_rng(0)
EXTREMES = [1e4, -1e4, 100.0, -100.0, 88.0, -88.0, 87.0, -87.0, 20.0, -20.0, 1e-3, -1e-3, 0.0, -0.0]


def exact_log_px(logits, x, n_event):
    """sum over the last n_event axes of x l - softplus(l), in float64."""
    l, x = logits.astype(np.float64), x.astype(np.float64)
    terms = x * l - np.maximum(l, 0) - np.log1p(np.exp(-np.abs(l)))
    return terms.sum(axis=tuple(range(l.ndim - n_event, l.ndim)))


def exact_score(logits, x, g):
    l = logits.astype(np.float64)
    return g.astype(np.float64) * (x.astype(np.float64) - 0.5 * (1 + np.tanh(l / 2)))


def logits_with_extremes(shape, dtype):
    l = 4 * rng.standard_normal(shape)
    flat = l.reshape(-1)
    flat[:len(EXTREMES)] = EXTREMES                 # the first row holds every extreme
    return l.astype(dtype)


def test_log1p_unit_float32_within_an_ulp_on_the_unit_interval():
    e = np.concatenate([rng.random(200_000), np.linspace(0, 1, 100_001), np.geomspace(1.2e-38, 1, 20_000),
                        [np.sqrt(2) - 1 - 1e-8, np.sqrt(2) - 1 + 1e-8, 0.5, 1.0]]).astype(np.float32)
    got = kb.log1p_unit_array(e)
    assert got.dtype == np.float32
    want = np.log1p(e.astype(np.float64))
    assert got[e == 0].tolist() == [0.0] * int((e == 0).sum())
    rel = np.abs(got - want)[e > 0] / want[e > 0]
    assert rel.max() < 1.3e-7                      # float32 ulp: 2^-23 = 1.19e-7 relative (at most)
    e64 = rng.random(1000)
    np.testing.assert_allclose(kb.log1p_unit_array(e64), np.log1p(e64), rtol=4e-16)   # float64: the C library's
    with pytest.raises(TypeError, match="float32 or float64"):
        kb.log1p_unit_array(np.arange(3))
    with pytest.raises(TypeError, match="numba.njit"):
        kb.log1p_unit(0.5)


@pytest.mark.parametrize("dtype,rtol", [(np.float32, 2e-6), (np.float64, 1e-13)])
@pytest.mark.parametrize("shapes,n_event", [(((5, 30, 40), (30, 40)), 1),     # x broadcast over k (an IWAE)
                                            (((6, 50), (6, 50)), 1),          # x the logits' shape
                                            (((3, 4, 5, 6), (5, 6)), 2),      # two event axes
                                            (((4, 7), (7,)), 0)])             # per entry
def test_forward_and_score_equal_the_formula(shapes, n_event, dtype, rtol):
    """Against the float64 formula, and against the NumPy twins on 1 and 2 threads (the kernels
    run on the calling thread either way: the same values)."""
    l_shape, x_shape = shapes
    logits = logits_with_extremes(l_shape, dtype)
    x = (rng.random(x_shape) < 0.4).astype(dtype)
    batch = l_shape[:len(l_shape) - n_event]
    g = rng.standard_normal(batch + (1,) * n_event).astype(dtype)
    n_rows, n_cols, n_x_rows = layout = kb.kernel_layout(logits, x, n_event)
    assert n_rows * n_cols == logits.size and n_x_rows * n_cols == x.size
    want = exact_log_px(logits, x, n_event)
    scale = np.abs(want).max()
    np.testing.assert_allclose(kb.bernoulli_log_likelihood_kernel(logits, x, n_event), want, rtol=0, atol=rtol * scale)
    np.testing.assert_allclose(kb.bernoulli_score_kernel(logits, x, g, n_event), exact_score(logits, x, g),
                               rtol=rtol, atol=rtol)
    # the public functions against the NumPy twins, on the threads tinydgm is set to
    for n in (1, 2):
        with td.num_threads(n):
            got = kb.bernoulli_log_likelihood_kernel(logits, x, n_event, layout)
            twin, e = kb.bernoulli_log_likelihood_xp(logits, x, n_event)
            assert got.dtype == dtype and got.shape == batch
            np.testing.assert_allclose(got, twin, rtol=0, atol=rtol * scale)
            np.testing.assert_allclose(kb.bernoulli_score_kernel(logits, x, g, n_event),
                                       kb.bernoulli_score_xp(logits, x, g, e), rtol=rtol, atol=rtol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_extreme_logits_give_exact_values(dtype):
    """log p(1 | 1e4) = 0, log p(0 | 1e4) = -1e4 and mirrored; the score is exactly x - 0 or x - 1."""
    logits = np.array([[1e4, 1e4, -1e4, -1e4, 0.0]], dtype=dtype)
    x = np.array([[1.0, 0.0, 1.0, 0.0, 1.0]], dtype=dtype)
    got = kb.bernoulli_log_likelihood_kernel(logits, x, 0)
    np.testing.assert_array_equal(got[0, :4], [0.0, -1e4, -1e4, 0.0])
    np.testing.assert_allclose(got[0, 4], -np.log(2), rtol=1e-7)
    score = kb.bernoulli_score_kernel(logits, x, np.ones((1, 5), dtype=dtype), 0)
    np.testing.assert_array_equal(score, [[0.0, -1.0, 1.0, 0.0, 0.5]])


def test_one_and_two_threads_give_the_same_values():
    logits = rng.standard_normal((5, 100, 784)).astype(np.float32)     # an IWAE's logits
    x = (rng.random((100, 784)) < 0.3).astype(np.float32)
    g = rng.standard_normal((5, 100, 1)).astype(np.float32)
    results = []
    for n in (1, 2):
        with td.num_threads(n):
            results.append((kb.bernoulli_log_likelihood_kernel(logits, x, 1),
                            kb.bernoulli_score_kernel(logits, x, g, 1)))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])
    np.testing.assert_allclose(results[0][0], exact_log_px(logits, x, 1), rtol=2e-6)


def test_layouts_the_kernels_accept():
    l32 = np.zeros((5, 3, 4), dtype=np.float32)
    assert kb.kernel_layout(l32, np.zeros((3, 4), np.float32), 1) == (15, 4, 3)
    assert kb.kernel_layout(l32, np.zeros((5, 3, 4), np.float32), 2) == (5, 12, 5)
    assert kb.kernel_layout(l32, np.zeros((4,), np.float32), 1) == (15, 4, 1)
    assert kb.kernel_layout(l32, np.zeros((3, 1), np.float32), 1) is None         # broadcast along the event
    assert kb.kernel_layout(l32, np.zeros((4,), np.float32), 2) is None           # x shorter than the event
    assert kb.kernel_layout(l32, np.zeros((3, 4), np.float64), 1) is None         # dtypes differ
    assert kb.kernel_layout(l32.transpose(1, 0, 2), np.zeros((5, 4), np.float32), 1) is None  # not contiguous
    assert kb.kernel_layout(l32.astype(np.float16), np.zeros((3, 4), np.float16), 1) is None
    assert kb.kernel_layout(np.zeros((0, 4), np.float32), np.zeros((4,), np.float32), 1) is None
    # the op's choice: float32 only (float64 runs NumPy's SIMD passes, faster than the C library's scalar calls)
    assert kb.fast_layout(l32, np.zeros((3, 4), np.float32), 1) == (15, 4, 3)
    assert kb.fast_layout(l32.astype(np.float64), np.zeros((3, 4)), 1) is None
