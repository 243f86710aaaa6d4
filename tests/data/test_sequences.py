"""The switching walk: seeded draws, the generator's statistics against its definition
(stay frequency, step headings, Laplace noise), the forward-algorithm log-density against
brute-force enumeration of regime paths and against quadrature (it integrates to 1), its
multimodal one-step conditional; MNIST as row sequences."""
import itertools
import math

import numpy as np
import pytest

from paths import DATA_DIR
from tinydgm.data import load_mnist_rows, mnist_rows, switching_walk, switching_walk_log_density
from tinydgm.data.sequences import switching_walk_headings

PARAMS = dict(n_regimes=3, stay=0.8, speed=0.5, noise=0.1, init_scale=1.0)


def test_seeded_draws_repeat_and_have_the_documented_shape():
    a = switching_walk(5, 7, rng=3, **PARAMS)
    b = switching_walk(5, 7, rng=np.random.default_rng(3), **PARAMS)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (5, 7, 2) and a.dtype == np.float32
    assert not np.array_equal(a, switching_walk(5, 7, rng=4, **PARAMS))
    assert switching_walk(2, 3, rng=0, dtype="float64").dtype == np.float64


def test_generator_statistics_follow_the_definition():
    x, regimes = switching_walk(4000, 12, rng=0, return_regimes=True, **PARAMS)
    x = x.astype(np.float64)
    stays = (regimes[:, 1:] == regimes[:, :-1]).mean()
    assert abs(stays - PARAMS["stay"]) < 0.01                        # 44,000 transitions: se 0.002
    assert abs(np.bincount(regimes[:, 0], minlength=3) / 4000 - 1 / 3).max() < 0.03
    residual = np.diff(x, axis=1) - PARAMS["speed"] * switching_walk_headings(3)[regimes]
    # Laplace(0, b): E|e| = b and Var = 2 b^2 (a Gaussian of that variance has E|e| = 1.13 b)
    assert abs(np.abs(residual).mean() - 0.1) < 0.002
    assert abs(residual.var() - 2 * 0.01) < 0.001
    assert abs(x[:, 0].std() - 1.0) < 0.03


def _brute_force_log_density(x, n_regimes, stay, speed, noise, init_scale):
    """log p(x) summed over every regime path (K^(T-1) of them), straight from the definition."""
    headings = switching_walk_headings(n_regimes)
    dx = np.diff(x, axis=0)
    total = 0.0
    for path in itertools.product(range(n_regimes), repeat=len(dx)):
        p = 1.0 / n_regimes
        for t in range(1, len(path)):
            p *= stay if path[t] == path[t - 1] else (1 - stay) / (n_regimes - 1)
        for t, k in enumerate(path):
            e = dx[t] - speed * headings[k]
            p *= np.prod(np.exp(-np.abs(e) / noise) / (2 * noise))
        total += p
    log_x1 = -math.log(2 * math.pi * init_scale ** 2) - 0.5 * (x[0] ** 2).sum() / init_scale ** 2
    return log_x1 + math.log(total)


def test_log_density_equals_the_sum_over_regime_paths():
    x = switching_walk(3, 5, rng=1, dtype="float64", **PARAMS)
    log_p = switching_walk_log_density(x, **PARAMS)
    expected = [_brute_force_log_density(seq, **PARAMS) for seq in x]
    np.testing.assert_allclose(log_p, expected, rtol=1e-10)
    assert log_p.shape == (3,)


def test_log_density_integrates_to_one():
    """T = 2 with x_1 fixed: the density of x_2 on a fine grid sums to 1 (and T = 1 is the Gaussian)."""
    grid = np.linspace(-1.5, 1.5, 601)
    step = grid[1] - grid[0]
    x2 = np.stack(np.meshgrid(grid, grid, indexing="ij"), -1).reshape(-1, 2)
    x = np.stack([np.zeros_like(x2), x2], axis=1)                     # (M, 2, 2), x_1 = 0
    log_p = switching_walk_log_density(x, **PARAMS) - switching_walk_log_density(x[:, :1], **PARAMS)
    assert abs(np.exp(log_p).sum() * step ** 2 - 1) < 2e-3


def test_one_step_conditional_is_multimodal():
    """Given a past that heads one way, the next step has a bump at each heading: a turn is
    much more likely than a straight continuation of length 0 (a single Gaussian would put its
    mode between the bumps)."""
    past = np.array([[0.0, 0.0], [0.5, 0.0], [1.0, 0.0]])            # heading k = 0, twice
    headings = switching_walk_headings(3)

    def log_p_next(step):
        return switching_walk_log_density(np.concatenate([past, past[-1:] + step[None]]), **PARAMS)
    bumps = [log_p_next(0.5 * u) for u in headings]
    between = log_p_next(0.5 * (headings[1] + headings[2]) / 2)
    assert bumps[0] > bumps[1] and abs(bumps[1] - bumps[2]) < 1e-9
    assert bumps[1] - between > 3                                      # a dip between the turning modes
    mean = 0.5 * (0.8 * headings[0] + 0.1 * headings[1] + 0.1 * headings[2])
    assert log_p_next(mean) < bumps[0] - 1                            # the mixture's mean is not a mode


def test_bad_parameters_name_the_argument():
    with pytest.raises(ValueError, match="stay must be a probability"):
        switching_walk(2, 3, stay=1.5)
    with pytest.raises(ValueError, match="n_regimes must be an int >= 2"):
        switching_walk_log_density(np.zeros((1, 3, 2)), n_regimes=1)
    with pytest.raises(ValueError, match=r"x must have shape \(\.\.\., T, 2\)"):
        switching_walk_log_density(np.zeros((3, 3)))


# ----------------------------------------------------------------------------- MNIST rows

def test_mnist_rows_reads_row_t_as_step_t():
    images = np.arange(2 * 784).reshape(2, 784)
    rows = mnist_rows(images)
    assert rows.shape == (2, 28, 28)
    np.testing.assert_array_equal(rows[1, 5], images[1, 5 * 28:6 * 28])
    np.testing.assert_array_equal(mnist_rows(rows), rows)
    with pytest.raises(ValueError, match=r"\(N, 784\) or \(N, 28, 28\)"):
        mnist_rows(np.zeros((2, 100)))


def test_load_mnist_rows_from_the_binarized_split():
    if not (DATA_DIR / "binarized_mnist.npz").exists():
        pytest.skip(f"binarized MNIST not found in {DATA_DIR} (set TINYDGM_DATA)")
    rows = load_mnist_rows("valid", path=DATA_DIR)
    assert rows.shape == (10000, 28, 28) and set(np.unique(rows)) == {0, 1}
    with pytest.raises(ValueError, match="split must be"):
        load_mnist_rows("dev", path=DATA_DIR)
