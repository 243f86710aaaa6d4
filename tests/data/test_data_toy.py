"""tinydgm/data/toy.py: seeded toy samplers, exact log-densities (normalised, equal to
independent formulas) and agreement of the samples with those densities."""
import math

import numpy as np
import pytest
from scipy import special, stats

import tinydgm as td
from tinydgm.data import toy

NAMES = list(toy.TOYS)
EXACT = [name for name, t in toy.TOYS.items() if t.log_density is not None]


def _grid(low, high, step):
    """Cell midpoints of a square grid over [low, high]^2: (points (M, 2), cell area)."""
    centres = np.arange(low + step / 2, high, step)
    gx, gy = np.meshgrid(centres, centres, indexing="ij")
    return np.stack([gx.ravel(), gy.ravel()], axis=1), step * step


# ----------------------------------------------------------------------------- samplers

def test_registry_lists_every_toy():
    assert NAMES == ["two_moons", "eight_gaussians", "grid_gaussians", "checkerboard", "rings", "spirals",
                     "swiss_roll"]
    assert EXACT == ["eight_gaussians", "grid_gaussians", "checkerboard", "rings"]
    for name, t in toy.TOYS.items():
        assert t.name == name and callable(t.sample)


@pytest.mark.parametrize("name", NAMES)
def test_shape_and_default_dtype(name):
    x = toy.sample_toy(name, 37, 0)
    assert isinstance(x, np.ndarray) and x.shape == (37, 2) and x.dtype == np.float32
    assert np.isfinite(x).all()
    with td.default_dtype("float64"):
        assert toy.sample_toy(name, 5, 0).dtype == np.float64
    assert toy.TOYS[name].sample(4, 0, dtype="float64").dtype == np.float64
    assert toy.sample_toy(name, 0, 0).shape == (0, 2)


@pytest.mark.parametrize("name", NAMES)
def test_seeding(name):
    a = toy.sample_toy(name, 100, np.random.default_rng(5))
    b = toy.sample_toy(name, 100, np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, toy.sample_toy(name, 100, 5))          # an int seed is the same
    assert not np.array_equal(a, toy.sample_toy(name, 100, 6))
    rng = np.random.default_rng(5)                                          # a Generator advances
    assert not np.array_equal(toy.sample_toy(name, 100, rng), toy.sample_toy(name, 100, rng))
    td.seed(11)                                                             # None: the td.seed generator
    c = toy.sample_toy(name, 50)
    td.seed(11)
    np.testing.assert_array_equal(c, toy.sample_toy(name, 50))


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown toy 'moons'.*two_moons.*swiss_roll"):
        toy.sample_toy("moons", 10)
    with pytest.raises(ValueError, match="two_moons: n must be a non-negative integer, got -1"):
        toy.two_moons(-1)
    with pytest.raises(ValueError, match="n must be"):
        toy.rings(2.5)
    with pytest.raises(TypeError, match="rng must be a numpy.random.Generator.*float"):
        toy.eight_gaussians(10, 0.3)                      # a shape parameter passed as rng
    with pytest.raises(TypeError):
        toy.eight_gaussians(10, None, 2.0)                # shape parameters are keyword-only
    with pytest.raises(ValueError, match="'spirals' has no closed-form density.*eight_gaussians, grid_gaussians, "
                                         "checkerboard, rings"):
        toy.log_density("spirals", np.zeros((1, 2)))
    with pytest.raises(ValueError, match=r"x must have shape \(\.\.\., 2\), got shape \(4, 3\)"):
        toy.log_density("rings", np.zeros((4, 3)))
    with pytest.raises(ValueError, match="weights must be 2 non-negative numbers summing to 1"):
        toy.rings(5, radii=(1.0, 2.0), weights=(0.5, 0.6))
    with pytest.raises(ValueError, match="cells must be a positive integer"):
        toy.checkerboard(5, cells=0)
    with pytest.raises(ValueError, match="grid_gaussians: size must be a positive integer, got 2.5"):
        toy.grid_gaussians(5, size=2.5)
    with pytest.raises(ValueError, match="grid_gaussians_log_density: std must be positive, got 0"):
        toy.grid_gaussians_log_density(np.zeros((1, 2)), std=0)


# ----------------------------------------------------------------------------- the shapes the docstrings promise

def test_two_moons_without_noise_lies_on_the_two_arcs():
    x = toy.two_moons(2000, 0, noise=0.0, dtype="float64")
    m = (x - np.array([-1.0, -0.2])) / 2                     # undo FFJORD's scaling
    upper = np.isclose(np.hypot(*m.T), 1) & (m[:, 1] >= -1e-12)
    lower = np.isclose(np.hypot(m[:, 0] - 1, m[:, 1] - 0.5), 1) & (m[:, 1] <= 0.5 + 1e-12)
    assert (upper | lower).all()
    assert abs(upper.mean() - 0.5) < 0.05                     # each moon with probability 1/2


def test_spirals_without_noise_follow_the_arms():
    x = toy.spirals(2000, 0, noise=0.0, turns=1.5, dtype="float64")
    t = 3 * np.hypot(*x.T)                                     # |x| = t / 3
    assert t.min() >= 0 and t.max() <= 3 * math.pi + 1e-9
    arm = np.stack([-t * np.cos(t), t * np.sin(t)], axis=1) / 3
    on_plus = np.isclose(x, arm).all(axis=1)
    on_minus = np.isclose(x, -arm).all(axis=1)
    assert (on_plus | on_minus).all() and abs(on_plus.mean() - 0.5) < 0.05
    # t = sqrt(u) * 3 pi: t^2 is uniform on [0, (3 pi)^2]
    assert stats.kstest((t / (3 * math.pi)) ** 2, "uniform").pvalue > 1e-3


def test_swiss_roll_without_noise_is_the_roll():
    x = toy.swiss_roll(2000, 0, noise=0.0, dtype="float64")
    t = 5 * np.hypot(*x.T)
    assert t.min() >= 1.5 * math.pi - 1e-9 and t.max() <= 4.5 * math.pi + 1e-9
    np.testing.assert_allclose(5 * x, np.stack([t * np.cos(t), t * np.sin(t)], axis=1), atol=1e-9)
    assert stats.kstest((t - 1.5 * math.pi) / (3 * math.pi), "uniform").pvalue > 1e-3


@pytest.mark.parametrize("sampler, scale", [(toy.spirals, 1), (toy.swiss_roll, 1), (toy.two_moons, 2)])
def test_noise_is_gaussian_with_the_given_std(sampler, scale):
    """The samplers draw the noise last, so the same seed with noise=0 gives the clean
    points: the difference is noise * eps (times FFJORD's factor 2 for two moons)."""
    noisy = sampler(4000, 1, noise=0.3, dtype="float64")
    clean = sampler(4000, 1, noise=0.0, dtype="float64")
    eps = (noisy - clean) / (0.3 * scale)
    for axis in range(2):
        assert stats.kstest(eps[:, axis], "norm").pvalue > 1e-3
    assert abs(np.corrcoef(eps.T)[0, 1]) < 0.05


# ----------------------------------------------------------------------------- exact densities

def test_eight_gaussians_log_density_equals_the_mixture():
    x = np.random.default_rng(0).normal(scale=2.0, size=(200, 2))
    centres = [2.0 * np.array([math.cos(2 * math.pi * k / 8), math.sin(2 * math.pi * k / 8)]) for k in range(8)]
    expected = np.log(np.mean([stats.multivariate_normal(c, 0.2 ** 2 * np.eye(2)).pdf(x)
                               for c in centres], axis=0))
    np.testing.assert_allclose(toy.eight_gaussians_log_density(x), expected, rtol=1e-10)
    np.testing.assert_allclose(toy.log_density("eight_gaussians", x, radius=1.0, std=0.5),
                               np.log(np.mean([stats.multivariate_normal(c / 2, 0.25 * np.eye(2)).pdf(x)
                                               for c in centres], axis=0)), rtol=1e-10)
    far = toy.eight_gaussians_log_density(np.array([[50.0, 50.0]]))      # no underflow to -inf
    assert np.isfinite(far).all() and far[0] < -1e4


def test_grid_gaussians_log_density_equals_the_mixture():
    x = np.random.default_rng(0).uniform(-5, 5, size=(300, 2))
    centres = [(-4.0 + 2 * i, -4.0 + 2 * j) for j in range(5) for i in range(5)]
    for std in (0.05, 0.6):
        expected = np.log(np.mean([stats.multivariate_normal(c, std ** 2 * np.eye(2)).pdf(x)
                                   for c in centres], axis=0))
        np.testing.assert_allclose(toy.grid_gaussians_log_density(x, std=std), expected, rtol=1e-10)
    np.testing.assert_array_equal(toy.grid_gaussians_centres(), centres)
    np.testing.assert_array_equal(toy.grid_gaussians_centres(size=2, spacing=1.0),
                                  [[-0.5, -0.5], [0.5, -0.5], [-0.5, 0.5], [0.5, 0.5]])
    assert toy.grid_gaussians_log_density(x, size=1, std=1.0)[0] == pytest.approx(
        stats.multivariate_normal([0, 0], np.eye(2)).logpdf(x[0]), rel=1e-12)
    assert np.isfinite(toy.grid_gaussians_log_density(np.array([[30.0, -30.0]]))).all()   # no underflow


def test_grid_gaussians_samples_fall_on_each_mode_equally():
    """Each sample's nearest mean is its component (the modes are 40 std apart): equal counts
    (chi-square), and the offsets from the mean are N(0, std^2) in each axis (KS)."""
    x = toy.grid_gaussians(10000, 0, dtype="float64")
    centres = toy.grid_gaussians_centres()
    nearest = ((x[:, None, :] - centres) ** 2).sum(-1).argmin(1)
    assert stats.chisquare(np.bincount(nearest, minlength=25)).pvalue > 1e-3
    eps = (x - centres[nearest]) / 0.05
    for axis in range(2):
        assert stats.kstest(eps[:, axis], "norm").pvalue > 1e-3


def test_rings_log_density_equals_the_blurred_circles():
    """p(x) = sum_k w_k (1/2pi) int N(x | R_k u(theta), std^2 I) dtheta, by the trapezoid rule
    over theta (spectrally accurate for a periodic integrand), against the Bessel form."""
    radii, std, weights = (0.5, 1.0, 2.0), 0.15, (0.2, 0.3, 0.5)
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(scale=1.5, size=(60, 2)), [[0.0, 0.0], [2.0, 0.0], [0.0, 1.02]]])
    theta = 2 * math.pi * np.arange(4096) / 4096
    circle = np.stack([np.cos(theta), np.sin(theta)], axis=1)
    density = 0
    for R, w in zip(radii, weights):
        sq = ((x[:, None, :] - R * circle) ** 2).sum(axis=-1)
        density = density + w * np.exp(-sq / (2 * std ** 2)).mean(axis=1) / (2 * math.pi * std ** 2)
    got = toy.rings_log_density(x, radii=radii, std=std, weights=weights)
    np.testing.assert_allclose(got, np.log(density), rtol=1e-9, atol=1e-9)
    # log(I0(z) e^-z): series below z = 50, asymptotic expansion above, both against scipy
    z = np.concatenate([np.linspace(0, 60, 601), [49.999999, 50.000001, 200.0, 1e4, 1e7]])
    np.testing.assert_allclose(toy._log_i0e(np, z), np.log(special.i0e(z)), rtol=1e-12, atol=1e-12)
    assert toy.rings_log_density(np.zeros((1, 2), np.float32)).dtype == np.float32          # x's dtype
    assert toy.rings_log_density([[0.0, 0.0]]).dtype == np.float32                           # lists: default


def test_checkerboard_log_density_values():
    x = np.array([[-1.5, -1.5], [-0.5, -1.5], [-0.5, -0.5], [0.5, 1.5], [2.5, 0.0], [0.0, 0.0], [-2.0, -2.0]])
    got = toy.checkerboard_log_density(x)
    # cells (0,0) dark, (1,0) light, (1,1) dark, (2,3) light, off board, (2,2) dark, (0,0) corner
    inside = -math.log(8)
    np.testing.assert_array_equal(got, [inside, -np.inf, inside, -np.inf, -np.inf, inside, inside])


@pytest.mark.parametrize("name", EXACT)
def test_log_density_runs_on_the_data_device(name, device):
    """log_density takes its array module from x: CuPy arrays stay on the GPU."""
    x = np.random.default_rng(2).normal(scale=1.5, size=(50, 2))
    on_device = td.backend.to_device(x, device)
    got = toy.log_density(name, on_device)
    assert td.backend.device_of(got) == device and got.shape == (50,)
    np.testing.assert_allclose(td.backend.to_numpy(got), toy.log_density(name, x), rtol=1e-12)


@pytest.mark.parametrize("name, params, half_width, step", [
    ("eight_gaussians", {}, 4.0, 0.01),
    ("eight_gaussians", {"radius": 1.0, "std": 0.4}, 4.0, 0.02),
    ("grid_gaussians", {}, 5.0, 0.01),
    ("grid_gaussians", {"size": 3, "spacing": 1.0, "std": 0.3}, 4.0, 0.02),
    ("checkerboard", {}, 3.0, 0.05),
    ("checkerboard", {"cells": 3, "side": 0.5}, 1.0, 0.01),
    ("rings", {}, 4.0, 0.01),
    ("rings", {"radii": (0.0, 1.0), "std": 0.2, "weights": (0.25, 0.75)}, 3.0, 0.01),
])
def test_exact_density_integrates_to_one(name, params, half_width, step):
    x, area = _grid(-half_width, half_width, step)
    total = np.exp(toy.log_density(name, x.astype(np.float64), **params)).sum() * area
    assert abs(total - 1) < 1e-6, total


# ----------------------------------------------------------------------------- samples follow the density

def _chi_square_pvalue(observed, expected, min_expected=5.0):
    """Pearson's chi-square with the bins of small expectation pooled into one."""
    small = expected < min_expected
    obs = np.append(observed[~small], observed[small].sum())
    exp = np.append(expected[~small], expected[small].sum())
    keep = exp > 0
    statistic = ((obs[keep] - exp[keep]) ** 2 / exp[keep]).sum()
    return stats.chi2.sf(statistic, keep.sum() - 1)


def test_eight_gaussians_samples_match_the_density():
    """2-D histogram (0.25-wide bins over [-3, 3]^2) of 20,000 samples against the density
    integrated over each bin (10 x 10 midpoints per bin): chi-square p-value > 0.001."""
    n, edges = 20000, np.linspace(-3, 3, 25)
    x = toy.eight_gaussians(n, 0, dtype="float64")
    observed, _, _ = np.histogram2d(x[:, 0], x[:, 1], bins=[edges, edges])
    fine, area = _grid(-3, 3, 0.025)
    p = np.exp(toy.eight_gaussians_log_density(fine)) * area
    expected = n * np.histogram2d(fine[:, 0], fine[:, 1], bins=[edges, edges], weights=p)[0]
    outside = n - expected.sum()                     # mass outside [-3, 3]^2
    observed = np.append(observed.ravel(), n - observed.sum())
    expected = np.append(expected.ravel(), outside)
    assert _chi_square_pvalue(observed, expected) > 1e-3


def test_rings_radius_follows_the_density():
    """KS test of |x| against the radial CDF F(r) = int_0^r 2 pi s p(s, 0) ds of the exact
    density (20,000 samples; p-value > 0.001)."""
    x = toy.rings(20000, 0, dtype="float64")
    s = np.linspace(0, 4.5, 45001)
    radial = 2 * math.pi * s * np.exp(toy.rings_log_density(np.stack([s, 0 * s], axis=1).astype(np.float64)))
    cdf = np.concatenate([[0], np.cumsum((radial[1:] + radial[:-1]) / 2 * np.diff(s))])
    assert abs(cdf[-1] - 1) < 1e-6
    result = stats.kstest(np.hypot(*x.T), lambda r: np.interp(r, s, cdf))
    assert result.pvalue > 1e-3, result
    # and the angle is uniform
    assert stats.kstest((np.arctan2(x[:, 1], x[:, 0]) + math.pi) / (2 * math.pi), "uniform").pvalue > 1e-3


def test_rings_with_weights_put_the_right_mass_on_each_ring():
    x = toy.rings(20000, 3, radii=(1.0, 2.0, 3.0), std=0.05, weights=(0.2, 0.3, 0.5), dtype="float64")
    ring = np.round(np.hypot(*x.T)).astype(int)
    counts = np.bincount(ring, minlength=4)[1:]
    assert stats.chisquare(counts, 20000 * np.array([0.2, 0.3, 0.5])).pvalue > 1e-3


def test_checkerboard_samples_are_uniform_on_the_dark_squares():
    n = 16000
    x = toy.checkerboard(n, 0, dtype="float64")
    assert np.isfinite(toy.checkerboard_log_density(x)).all()             # never on a light square
    cells = np.floor(x + 2).astype(int)
    counts = np.bincount(cells[:, 0] * 4 + cells[:, 1], minlength=16)
    dark = [(i * 4 + j) for i in range(4) for j in range(4) if (i + j) % 2 == 0]
    assert counts[dark].sum() == n
    assert stats.chisquare(counts[dark]).pvalue > 1e-3                     # equal mass per square
    within = x + 2 - cells                                                 # position inside the cell
    for axis in range(2):
        assert stats.kstest(within[:, axis], "uniform").pvalue > 1e-3
