"""The fused NADE kernels (tinydgm/kernels/nade_logits.py) against their vectorized twins and
against the recursion written out, serial and parallel builds, float64 and float32."""
import numba
import numpy as np
import pytest

from tinydgm.kernels import nade_logits as kernels
from tinydgm.kernels.nade_logits import (history_offsets, nade_logits_backward_kernel, nade_logits_backward_xp,
                                         nade_logits_kernel, nade_logits_xp)


def _problem(n, d, h, seed=0, p_one=0.3, real=False, dtype=np.float64):
    gen = np.random.default_rng(seed)
    x = (gen.random((n, d)) < p_one).astype(dtype)
    if real:                                        # real values, with the zeros kept
        x *= gen.normal(0, 1.5, (n, d)).astype(dtype)
    W, V = gen.normal(0, 1.0, (d, h)).astype(dtype), gen.normal(0, 1.0, (d, h)).astype(dtype)
    c, g = gen.normal(0, 1.0, h).astype(dtype), gen.normal(0, 1.0, (n, d)).astype(dtype)
    return x, W, c, V, g


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _recursion(x, W, c, V, g):
    """y and every gradient by the textbook loops: a_1 = c, a_{d+1} = a_d + x_d w_d forward, then
    the reverse accumulation R_j = sum_{d>j} dL/da_d."""
    n, n_dims = x.shape
    y = np.zeros((n, n_dims))
    gx, gW, gc, gV = np.zeros(x.shape), np.zeros(W.shape), np.zeros(c.shape), np.zeros(V.shape)
    for i in range(n):
        a = [c.astype(np.float64)]
        for d in range(n_dims - 1):
            a.append(a[-1] + x[i, d] * W[d])
        h = [_sigmoid(a_d) for a_d in a]
        R = np.zeros(W.shape[1])
        for d in range(n_dims - 1, -1, -1):
            y[i, d] = V[d] @ h[d]
            gx[i, d] = W[d] @ R
            gW[d] += x[i, d] * R
            gV[d] += g[i, d] * h[d]
            R = R + g[i, d] * V[d] * h[d] * (1 - h[d])
        gc += R
    return y, (gx, gW, gc, gV)


@pytest.fixture(params=["serial", "parallel"])
def build(request, monkeypatch):
    """Run with the serial build, or with the parallel one on 2 threads even for tiny problems."""
    if request.param == "parallel":
        if numba.config.NUMBA_NUM_THREADS < 2:
            pytest.skip("Numba has one thread here")
        monkeypatch.setattr(kernels, "PARALLEL_ABOVE", 0)
        old = numba.get_num_threads()
        numba.set_num_threads(2)
        yield "parallel"
        numba.set_num_threads(old)
    else:
        monkeypatch.setattr(kernels, "PARALLEL_ABOVE", 1 << 62)
        yield "serial"


@pytest.mark.parametrize("real", [False, True], ids=["binary-x", "real-x"])
def test_kernels_follow_the_recursion(build, real):
    x, W, c, V, g = _problem(7, 11, 5, seed=1, real=real)
    y_want, grads_want = _recursion(x, W, c, V, g)
    y, states = nade_logits_kernel(x, W, c, V)
    np.testing.assert_allclose(y, y_want, rtol=1e-12, atol=1e-12)
    for got, want in zip(nade_logits_backward_kernel(x, W, V, g, states), grads_want):
        np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("real", [False, True], ids=["binary-x", "real-x"])
def test_twins_follow_the_recursion(real):
    x, W, c, V, g = _problem(6, 9, 4, seed=2, real=real)
    y_want, grads_want = _recursion(x, W, c, V, g)
    np.testing.assert_allclose(nade_logits_xp(x, W, c, V), y_want, rtol=1e-12, atol=1e-12)
    for got, want in zip(nade_logits_backward_xp(x, W, c, V, g), grads_want):
        np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-12)


def test_float32_kernels_match_the_twins(build):
    """float32: the vectorized sigmoid and a reassociated dot product, within float32 rounding."""
    x, W, c, V, g = _problem(20, 60, 40, seed=3, dtype=np.float32)
    y, states = nade_logits_kernel(x, W, c, V)
    assert y.dtype == np.float32
    x64, W64, c64, V64, g64 = (a.astype(np.float64) for a in (x, W, c, V, g))
    np.testing.assert_allclose(y, nade_logits_xp(x64, W64, c64, V64), rtol=1e-4, atol=1e-4)
    for got, want in zip(nade_logits_backward_kernel(x, W, V, g, states), nade_logits_backward_xp(x64, W64, c64, V64, g64)):
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_states_are_one_per_nonzero_before_the_last_position():
    x = np.array([[0, 1, 0, 1, 1], [0, 0, 0, 0, 1], [2.5, 0, -1, 0, 0]], dtype=np.float64)
    np.testing.assert_array_equal(history_offsets(x), [0, 3, 4, 7])     # 1 + nonzeros of x[:, :4]
    W = np.arange(10.0).reshape(5, 2) / 10
    _, (offsets, hidden) = nade_logits_kernel(x, W, np.zeros(2), W)
    assert hidden.shape == (7, 2)
    np.testing.assert_allclose(hidden[offsets[2]:], _sigmoid(np.array([[0, 0], [0, 0.25], [-0.4, -0.25]])))


def test_gradient_of_x_only_when_asked():
    x, W, c, V, g = _problem(4, 6, 3, seed=4)
    _, states = nade_logits_kernel(x, W, c, V)
    gx, gW, _, _ = nade_logits_backward_kernel(x, W, V, g, states, need_x=False)
    assert gx is None
    np.testing.assert_allclose(gW, nade_logits_backward_kernel(x, W, V, g, states)[1], rtol=1e-14)
    assert nade_logits_backward_xp(x, W, c, V, g, need_x=False)[0] is None


def test_edge_sizes():
    x, W, c, V, g = _problem(3, 1, 4, seed=5)                  # D = 1: y = V_1 . sigmoid(c), nothing else
    y, states = nade_logits_kernel(x, W, c, V)
    np.testing.assert_allclose(y[:, 0], V[0] @ _sigmoid(c))
    gx, gW, gc, gV = nade_logits_backward_kernel(x, W, V, g, states)
    assert not gx.any() and not gW.any()
    x, W, c, V, g = _problem(0, 5, 3, seed=6)                  # an empty batch
    y, states = nade_logits_kernel(x, W, c, V)
    assert y.shape == (0, 5)
    assert not any(a.any() for a in nade_logits_backward_kernel(x, W, V, g, states))


def test_bad_shapes_and_dtypes_raise():
    x, W, c, V, _ = _problem(2, 5, 3)
    with pytest.raises(ValueError, match=r"nade_logits_kernel: x must have shape \(N, D\) = \(N, 5\)"):
        nade_logits_kernel(x[:, :4], W, c, V)
    with pytest.raises(ValueError, match=r"nade_logits_xp: V must have shape \(5, 3\)"):
        nade_logits_xp(x, W, c, V.T)
    with pytest.raises(TypeError, match="must share one float dtype"):
        nade_logits_kernel(x.astype(np.float32), W, c, V)
