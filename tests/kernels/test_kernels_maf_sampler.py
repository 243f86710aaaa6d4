"""The sequential affine solve of MAF/IAF: Numba kernel == batched xp twin == naive D-pass
engine loop (float64, 1e-10), and each solves the equation it claims to."""
import numpy as np
import pytest

import tinydgm as td
from tinydgm.kernels import made_sampler
from tinydgm.kernels.maf_sampler import (autoregressive_affine, autoregressive_affine_kernel,
                                         autoregressive_affine_naive, autoregressive_affine_xp, soft_bound)
from tinydgm.models.autoregressive.made import MADE


def _made(d=5, hidden=(16, 12), ordering="random", connectivity="random", direct=False, seed=0):
    made = MADE(d, list(hidden), output="gaussian", ordering=ordering, connectivity=connectivity, direct=direct,
                rng=np.random.default_rng(seed), dtype="float64")
    for p in made.parameters():                          # larger weights: alpha far from 0
        p.data = 1.5 * p.data
    return made


def _arrays(made):
    weights, biases, degrees = made._sampler_arrays()
    return weights, biases, degrees, made._direct_array()


def _params_fn(made):
    def params(v):
        y = made._forward_array(v)
        return y[:, :made.n_inputs], y[:, made.n_inputs:]
    return params


CASES = [dict(), dict(ordering="natural", connectivity="natural"), dict(hidden=(9,)), dict(hidden=(8, 7, 6)),
         dict(direct=True), dict(d=1, hidden=(3,)), dict(d=2, hidden=(4, 4))]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("direction", ["sample", "normalize"])
def test_kernel_equals_twin_equals_naive(case, direction):
    made = _made(**case)
    weights, biases, degrees, direct = _arrays(made)
    y = np.random.default_rng(1).normal(size=(9, made.n_inputs))
    v_kernel, a_kernel = autoregressive_affine_kernel(weights, biases, degrees, y, direction, direct)
    assert np.isfinite(v_kernel).all()
    v_twin, a_twin = autoregressive_affine_xp(weights, biases, degrees, y, direction, direct)
    order = made_sampler.ordering_positions(made.ordering)
    v_naive, a_naive = autoregressive_affine_naive(_params_fn(made), y, order, direction)
    for v, a in [(v_twin, a_twin), (v_naive, a_naive)]:
        np.testing.assert_allclose(v_kernel, v, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(a_kernel, a, rtol=1e-10, atol=1e-10)
    dispatched, _ = autoregressive_affine(weights, biases, degrees, y, direction, direct)
    np.testing.assert_array_equal(dispatched, v_kernel)


@pytest.mark.parametrize("direction", ["sample", "normalize"])
def test_soft_bound_is_applied_alike_by_kernel_twin_and_naive(direction):
    made = _made(d=4, hidden=(10, 10))
    for p in made.parameters():                          # raw alphas of several units: the bound bites
        p.data = 4 * p.data
    weights, biases, degrees, direct = _arrays(made)
    y = np.random.default_rng(2).normal(size=(7, 4))
    bound = 1.5
    raw_params = _params_fn(made)

    def bounded(v):
        mu, raw = raw_params(v)
        return mu, bound * np.tanh(raw / bound)

    v_naive, a_naive = autoregressive_affine_naive(bounded, y, made_sampler.ordering_positions(made.ordering),
                                                   direction)
    for solve in (autoregressive_affine_kernel, autoregressive_affine_xp):
        v, a = solve(weights, biases, degrees, y, direction, direct, alpha_bound=bound)
        np.testing.assert_allclose(v, v_naive, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(a, a_naive, rtol=1e-10, atol=1e-10)
    assert (np.abs(a_naive) < 4 * bound).all()           # a sum of 4 alphas, each inside (-B, B)
    unbounded, _ = autoregressive_affine_kernel(weights, biases, degrees, y, direction, direct)
    assert not np.allclose(unbounded, v_naive)           # the bound changed something: the test can fail


def test_soft_bound_on_arrays_and_tensors():
    raw = np.array([-100.0, -1e-3, 0.0, 2.0, 50.0])
    out = soft_bound(raw, 8.0)
    assert (np.abs(out) < 8).all() and out[1] == pytest.approx(-1e-3, rel=1e-6)
    assert soft_bound(raw, None) is raw
    t = td.tensor(raw, dtype="float64", requires_grad=True)
    np.testing.assert_allclose(soft_bound(t, 8.0).numpy(), out)
    assert td.gradcheck(lambda x: soft_bound(x, 8.0), (t,))


@pytest.mark.parametrize("n", [64, 150])
def test_several_blocks_of_examples(n):
    # the kernel solves BLOCK = 64 examples together: full blocks and a remainder
    made = _made(direct=True, seed=14)
    for p in made.parameters():
        p.data = 0.5 * p.data                             # keep 150 sequential solves finite
    weights, biases, degrees, direct = _arrays(made)
    y = np.random.default_rng(15).normal(size=(n, 5))
    v_kernel, a_kernel = autoregressive_affine_kernel(weights, biases, degrees, y, "sample", direct)
    assert np.isfinite(v_kernel).all()
    v_twin, a_twin = autoregressive_affine_xp(weights, biases, degrees, y, "sample", direct)
    np.testing.assert_allclose(v_kernel, v_twin, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(a_kernel, a_twin, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("direction", ["sample", "normalize"])
def test_the_solution_satisfies_its_equation(direction):
    made = _made(seed=2)
    weights, biases, degrees, direct = _arrays(made)
    y = np.random.default_rng(3).normal(size=(6, 5))
    v, alpha_sum = autoregressive_affine_kernel(weights, biases, degrees, y, direction, direct)
    mu, alpha = _params_fn(made)(v)                       # one pass at the solution
    if direction == "sample":
        np.testing.assert_allclose(v, y * np.exp(alpha) + mu, rtol=1e-12, atol=1e-12)
    else:
        np.testing.assert_allclose(v, (y - mu) * np.exp(-alpha), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(alpha_sum, alpha.sum(axis=1), rtol=1e-12, atol=1e-12)


def test_naive_sample_equals_made_gaussian_sampler():
    made = _made(seed=4)
    eps = np.random.default_rng(5).normal(size=(8, 5))
    order = made_sampler.ordering_positions(made.ordering)
    v, _ = autoregressive_affine_naive(_params_fn(made), eps, order, "sample")
    # MADE's Gaussian sampler takes its noise in ordering order
    expected = made_sampler.sample_gaussian_naive(_params_fn(made), eps[:, order], order)
    np.testing.assert_allclose(v, expected, rtol=1e-12, atol=1e-12)


def test_sample_then_normalize_is_the_identity_only_through_the_forward_map():
    # "normalize" solves IAF's equation, not MAF's inverse: both directions share the MADE but
    # read different variables, so normalize(sample(y)) != y in general, while MAF's one-pass
    # forward (x - mu(x)) exp(-alpha(x)) does recover y
    made = _made(seed=6)
    weights, biases, degrees, direct = _arrays(made)
    y = np.random.default_rng(7).normal(size=(5, 5))
    x, _ = autoregressive_affine_kernel(weights, biases, degrees, y, "sample")
    mu, alpha = _params_fn(made)(x)
    np.testing.assert_allclose((x - mu) * np.exp(-alpha), y, rtol=1e-12, atol=1e-12)
    back, _ = autoregressive_affine_kernel(weights, biases, degrees, x, "normalize")
    assert not np.allclose(back, y)


def test_float32_weights_computed_in_float64():
    made = _made(seed=8)
    weights, biases, degrees, _ = _arrays(made)
    y = np.random.default_rng(9).normal(size=(4, 5))
    v64, _ = autoregressive_affine_kernel(weights, biases, degrees, y, "sample")
    v32, _ = autoregressive_affine_kernel([w.astype(np.float32) for w in weights],
                                          [b.astype(np.float32) for b in biases], degrees,
                                          y.astype(np.float32), "sample")
    assert v32.dtype == np.float64
    np.testing.assert_allclose(v32, v64, rtol=1e-5, atol=1e-5)


def test_empty_batch():
    made = _made(seed=10)
    weights, biases, degrees, _ = _arrays(made)
    v, a = autoregressive_affine_kernel(weights, biases, degrees, np.zeros((0, 5)), "sample")
    assert v.shape == (0, 5) and a.shape == (0,)


def test_cuda_twin(device):
    if device != "cuda":
        pytest.skip("the CuPy path of the twin")
    made = _made(seed=11)
    weights, biases, degrees, _ = _arrays(made)
    y = np.random.default_rng(12).normal(size=(6, 5))
    expected, _ = autoregressive_affine_kernel(weights, biases, degrees, y, "sample")
    to = lambda a: td.tensor(a, dtype="float64", device="cuda").data       # noqa: E731
    got, _ = autoregressive_affine([to(w) for w in weights], [to(b) for b in biases], degrees, to(y), "sample")
    np.testing.assert_allclose(td.backend.to_numpy(got), expected, rtol=1e-10, atol=1e-10)


def test_errors():
    made = _made(seed=13)
    weights, biases, degrees, _ = _arrays(made)
    with pytest.raises(ValueError, match='direction must be "sample" or "normalize"'):
        autoregressive_affine_kernel(weights, biases, degrees, np.zeros((2, 5)), "backward")
    with pytest.raises(ValueError, match=r"y must have shape \(n, D\) = \(n, 5\), got \(2, 4\)"):
        autoregressive_affine_xp(weights, biases, degrees, np.zeros((2, 4)), "sample")
    bernoulli = MADE(5, [8], rng=np.random.default_rng(0), dtype="float64")
    w, b, m = bernoulli._sampler_arrays()
    with pytest.raises(ValueError, match=r"\[mu \| alpha\], 2D = 10 columns, got 5"):
        autoregressive_affine_kernel(w, b, m, np.zeros((2, 5)), "sample")
