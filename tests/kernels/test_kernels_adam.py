"""The fused Adam kernel against its vectorized twin and against Algorithm 1 written out."""
import math

import numba
import numpy as np
import pytest

from tinydgm import backend

from tinydgm.kernels.adam import adam_update, adam_update_xp

HYPER = dict(lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-8)


def _algorithm_1(p, grads, lr, beta1, beta2, eps, weight_decay=0.0, decoupled=False):
    """Kingma & Ba's Algorithm 1 on one float, step by step (plus L2 / decoupled decay)."""
    m = v = 0.0
    for t, g in enumerate(grads, start=1):
        if weight_decay and not decoupled:
            g = g + weight_decay * p
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        m_hat, v_hat = m / (1 - beta1 ** t), v / (1 - beta2 ** t)
        p = p - lr * m_hat / (math.sqrt(v_hat) + eps) - (lr * weight_decay * p if decoupled else 0.0)
    return p


@pytest.mark.parametrize("weight_decay, decoupled", [(0.0, False), (0.1, False), (0.1, True)])
def test_kernel_follows_algorithm_1(weight_decay, decoupled):
    rng = np.random.default_rng(0)
    p0 = rng.standard_normal(7)
    grads = rng.standard_normal((5, 7))
    p, m, v = p0.copy(), np.zeros(7), np.zeros(7)
    for t, g in enumerate(grads, start=1):
        adam_update(p, g, m, v, t=t, weight_decay=weight_decay, decoupled=decoupled, **HYPER)
    expected = [_algorithm_1(p0[i], grads[:, i], weight_decay=weight_decay, decoupled=decoupled, **HYPER)
                for i in range(7)]
    np.testing.assert_allclose(p, expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("dtype, rtol", [(np.float32, 2e-6), (np.float64, 1e-13)])
@pytest.mark.parametrize("weight_decay, decoupled", [(0.0, False), (0.05, False), (0.05, True)])
def test_kernel_equals_twin(dtype, rtol, weight_decay, decoupled):
    rng = np.random.default_rng(1)
    shape = (33, 17)
    p = rng.standard_normal(shape).astype(dtype)
    p_twin, m, v = p.copy(), np.zeros(shape, dtype), np.zeros(shape, dtype)
    m_twin, v_twin = m.copy(), v.copy()
    for t in range(1, 6):
        g = rng.standard_normal(shape).astype(dtype)
        adam_update(p, g, m, v, t=t, weight_decay=weight_decay, decoupled=decoupled, **HYPER)
        adam_update_xp(p_twin, g, m_twin, v_twin, t=t, weight_decay=weight_decay, decoupled=decoupled, **HYPER)
    assert p.dtype == dtype and m.dtype == dtype
    np.testing.assert_allclose(p, p_twin, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(m, m_twin, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(v, v_twin, rtol=rtol, atol=rtol)


def test_non_contiguous_arrays_use_the_twin_and_update_in_place():
    rng = np.random.default_rng(2)
    base = rng.standard_normal((6, 8))
    p = base[:, ::2]                      # a strided view: the kernel's flat loop cannot take it
    g = rng.standard_normal(p.shape)
    m, v = np.zeros(p.shape), np.zeros(p.shape)
    expected = p.copy()
    adam_update_xp(expected, g, np.zeros(p.shape), np.zeros(p.shape), t=1, **HYPER)
    adam_update(p, g, m, v, t=1, **HYPER)
    np.testing.assert_allclose(base[:, ::2], expected, rtol=1e-13)


def test_same_result_with_one_or_two_threads():
    rng = np.random.default_rng(3)
    p = rng.standard_normal(10_001).astype(np.float32)
    g = rng.standard_normal(p.size).astype(np.float32)
    results = []
    old = numba.get_num_threads()
    try:
        for threads in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            numba.set_num_threads(threads)
            q, m, v = p.copy(), np.zeros_like(p), np.zeros_like(p)
            adam_update(q, g, m, v, t=1, **HYPER)
            results.append(q)
    finally:
        numba.set_num_threads(old)
    np.testing.assert_array_equal(results[0], results[1])


def test_step_number_must_be_positive():
    p = np.zeros(3)
    with pytest.raises(ValueError, match="t must be >= 1, got 0"):
        adam_update(p, p, p.copy(), p.copy(), t=0, **HYPER)


@pytest.mark.cuda
def test_cupy_arrays_take_the_twin():
    cupy = backend.module_for_device("cuda")       # CuPy, or the stand-in without a GPU
    rng = np.random.default_rng(4)
    p = rng.standard_normal(100).astype(np.float32)
    g = rng.standard_normal(100).astype(np.float32)
    p_gpu, g_gpu = cupy.asarray(p), cupy.asarray(g)
    m_gpu, v_gpu = cupy.zeros_like(p_gpu), cupy.zeros_like(p_gpu)
    adam_update(p_gpu, g_gpu, m_gpu, v_gpu, t=1, **HYPER)
    adam_update(p, g, np.zeros_like(p), np.zeros_like(p), t=1, **HYPER)
    np.testing.assert_allclose(cupy.asnumpy(p_gpu), p, rtol=2e-6, atol=2e-6)
