"""Uniforms for the samplers' kernels: two float32 uniforms per 64-bit draw. They are the bits
the module docstring says they are, uniform on their grid, the two halves of a draw independent,
the Numba split equals its twin, and ``out`` is checked."""
import numpy as np
import pytest
from scipy import stats

from tinydgm import backend
from tinydgm.kernels import uniforms

SIGNIFICANCE = 1e-3        # chi-square tests fail below this p-value (fixed seeds: deterministic)


def test_float32_uniforms_are_the_top_bits_of_the_raw_draws():
    """u[2k] = bits 63..40 and u[2k + 1] = bits 39..16 of the k-th 64-bit draw, / 2^24."""
    n = 1001                                                  # odd: the last draw gives one number
    u = uniforms.uniform(np.random.default_rng(7), n)
    raw = np.random.default_rng(7).bit_generator.random_raw((n + 1) // 2)
    high = (raw >> np.uint64(40)).astype(np.float64) / 2 ** 24
    low = ((raw >> np.uint64(16)) & np.uint64(2 ** 24 - 1)).astype(np.float64) / 2 ** 24
    expected = np.stack([high, low], axis=1).reshape(-1)[:n]
    assert u.dtype == np.float32 and u.shape == (n,)
    np.testing.assert_array_equal(u.astype(np.float64), expected)


def test_float32_uniforms_lie_on_the_24_bit_grid_in_the_unit_interval():
    u = uniforms.uniform(np.random.default_rng(0), (300, 401)).astype(np.float64)
    assert u.shape == (300, 401) and u.min() >= 0 and u.max() < 1
    np.testing.assert_array_equal(u * 2 ** 24, np.floor(u * 2 ** 24))


def test_float32_uniforms_are_uniform_and_the_halves_independent():
    u = uniforms.uniform(np.random.default_rng(1), 400_000).astype(np.float64)
    counts = np.bincount(np.floor(u * 64).astype(int), minlength=64)
    assert stats.chisquare(counts).pvalue > SIGNIFICANCE
    # the two numbers of one draw: their 8 x 8 joint histogram is the product of the marginals
    high, low = u[0::2], u[1::2]
    joint = np.bincount(np.floor(high * 8).astype(int) * 8 + np.floor(low * 8).astype(int), minlength=64)
    assert stats.chisquare(joint).pvalue > SIGNIFICANCE
    # and so are consecutive draws' numbers (lag 1 within the stream)
    assert abs(np.corrcoef(u[:-1], u[1:])[0, 1]) < 4 / np.sqrt(len(u))


def test_split_kernel_equals_twin():
    d = np.random.default_rng(2).random(513)
    for n in (1025, 1026):
        np.testing.assert_array_equal(uniforms.split_float64_uniforms(d[:(n + 1) // 2], n),
                                      uniforms.split_float64_uniforms_xp(d[:(n + 1) // 2], n))


def test_float64_uniforms_are_numpy_random_and_out_is_filled():
    np.testing.assert_array_equal(uniforms.uniform(np.random.default_rng(3), (4, 5), "float64"),
                                  np.random.default_rng(3).random((4, 5)))
    out = np.empty((6, 7), np.float32)
    got = uniforms.uniform(np.random.default_rng(4), (6, 7), out=out)
    assert got is out
    np.testing.assert_array_equal(out, uniforms.uniform(np.random.default_rng(4), (6, 7)))


def test_bad_arguments_name_what_is_wrong():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="dtype must be float32 or float64, got int32"):
        uniforms.uniform(rng, 3, "int32")
    with pytest.raises(ValueError, match=r"out must be a C-contiguous float32 array of shape \(2, 3\), got "
                                         r"float64 \(2, 3\)"):
        uniforms.uniform(rng, (2, 3), out=np.empty((2, 3)))
    with pytest.raises(ValueError, match="not contiguous"):
        uniforms.uniform(rng, (3, 2), out=np.empty((2, 3), np.float32).T)


@pytest.mark.cuda
def test_split_twin_on_cupy_equals_numba():
    cupy = backend.module_for_device("cuda")       # CuPy, or the stand-in without a GPU
    d = np.random.default_rng(5).random(100)
    np.testing.assert_array_equal(cupy.asnumpy(uniforms.split_float64_uniforms_xp(cupy.asarray(d), 199)),
                                  uniforms.split_float64_uniforms(d, 199))
