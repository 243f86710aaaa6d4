"""The kernels' sigmoid (tinydgm/kernels/sigmoid.py): float32 within a few ulps of the float64
sigmoid over the whole float32 range, float64 exact, NaN and infinities handled."""
import numpy as np
import pytest

from tinydgm.kernels.sigmoid import sigmoid, sigmoid_array


def _exact(z):
    z = np.asarray(z, dtype=np.float64)
    return np.where(z >= 0, 1 / (1 + np.exp(-np.abs(z))), np.exp(-np.abs(z)) / (1 + np.exp(-np.abs(z))))


def test_float32_relative_error_over_the_range():
    gen = np.random.default_rng(0)
    z = np.concatenate([gen.normal(0, 3, 200_000), gen.uniform(-87, 88, 200_000), np.linspace(-87, 20, 100_001),
                        [0.0, -0.0, 1e-30, -1e-30, 0.5 * np.log(2), -0.5 * np.log(2)]]).astype(np.float32)
    got = sigmoid_array(z)
    assert got.dtype == np.float32
    want = _exact(z)
    assert np.max(np.abs(got - want) / want) < 4e-7            # a few float32 ulps (2^-23 = 1.2e-7)


def test_float32_extremes_and_nan():
    z = np.array([np.inf, -np.inf, 100.0, -100.0, -87.5, np.nan, 0.0], dtype=np.float32)
    got = sigmoid_array(z)
    np.testing.assert_array_equal(got[:5], [1.0, 0.0, 1.0, 0.0, 0.0])   # below -87: 0, as NumPy's float32 form
    assert np.isnan(got[5]) and got[6] == 0.5


def test_float64_is_the_exact_form():
    z = np.random.default_rng(1).normal(0, 20, 10_000)
    np.testing.assert_allclose(sigmoid_array(z), _exact(z), rtol=1e-15, atol=0)
    np.testing.assert_array_equal(sigmoid_array(np.array([-800.0, 800.0])), [0.0, 1.0])     # no overflow


def test_only_from_numba_and_only_floats():
    with pytest.raises(TypeError, match="numba.njit"):
        sigmoid(0.5)
    with pytest.raises(TypeError, match="float32 or float64"):
        sigmoid_array(np.arange(3))
