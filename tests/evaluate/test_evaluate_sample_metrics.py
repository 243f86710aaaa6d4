"""Two-sample statistics (tinydgm/evaluate/sample_metrics.py) against exact values."""
import math

import numpy as np
import pytest

from tinydgm import evaluate


def test_mmd_of_two_points_is_the_closed_form():
    # x = {0}, y = {d}: MMD^2 = k(0, 0) + k(d, d) - 2 k(0, d) = 2 - 2 exp(-d^2 / (2 h^2))
    for d, h in ((0.5, 1.0), (2.0, 1.0), (1.0, 0.3)):
        want = 2 - 2 * math.exp(-d * d / (2 * h * h))
        assert evaluate.mmd(np.zeros((1, 1)), np.full((1, 1), d), bandwidth=h) == pytest.approx(want, rel=1e-12)


def test_mmd_matches_the_double_sum():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(7, 3)), rng.normal(size=(5, 3)) + 0.5

    def mean_k(a, b):
        return np.mean([[math.exp(-np.sum((u - v) ** 2) / (2 * 0.8 ** 2)) for v in b] for u in a])

    want = mean_k(x, x) + mean_k(y, y) - 2 * mean_k(x, y)
    assert evaluate.mmd(x, y, bandwidth=0.8) == pytest.approx(want, rel=1e-10)


def test_mmd_separates_shifted_samples():
    rng = np.random.default_rng(0)
    x, y = rng.normal(0, 1, (300, 2)), rng.normal(0, 1, (300, 2))
    assert evaluate.mmd(x, x) == pytest.approx(0, abs=1e-12)
    assert evaluate.mmd(x, y) == pytest.approx(evaluate.mmd(y, x))
    assert evaluate.mmd(x, y) < 0.02 < evaluate.mmd(x, y + 1.0)


def test_mmd_rejects_bad_input():
    x = np.zeros((4, 2))
    with pytest.raises(ValueError, match=r"mmd: x and y must be \(n, d\) and \(m, d\), got \(4, 2\) and \(4, 1\)"):
        evaluate.mmd(x, x[:, :1])
    with pytest.raises(ValueError, match="bandwidth must be positive, got 0"):
        evaluate.mmd(x, x, bandwidth=0)


# ----------------------------------------------------------------------------- Frechet distance

def _random_covariance(rng, d, rank=None):
    a = rng.normal(size=(d, rank or d))
    return a @ a.T


def _frechet_by_sqrtm(mu1, s1, mu2, s2):
    """The closed form with scipy's general matrix square root (an independent computation)."""
    scipy_linalg = pytest.importorskip("scipy.linalg")
    cross = scipy_linalg.sqrtm(s1 @ s2)
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(cross).real)


def test_frechet_distance_of_identical_gaussians_is_zero():
    rng = np.random.default_rng(0)
    mu, s = rng.normal(size=6), _random_covariance(rng, 6)
    assert evaluate.frechet_distance_gaussians(mu, s, mu, s) == pytest.approx(0, abs=1e-9)
    f = rng.normal(size=(50, 4))
    assert evaluate.frechet_distance(f, f) == pytest.approx(0, abs=1e-10)


@pytest.mark.parametrize("d, rank", [(1, None), (5, None), (12, None), (8, 3)])
def test_frechet_distance_equals_the_closed_form_with_sqrtm(d, rank):
    """Full-rank and singular (rank 3 of 8) covariances against scipy.linalg.sqrtm(S1 S2).
    (With a singular S1 the square roots of eigenvalues that are 0 up to rounding, ~1e-15,
    are ~3e-8: the tolerance is absolute 1e-6.)"""
    rng = np.random.default_rng(d)
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    s1, s2 = _random_covariance(rng, d, rank), _random_covariance(rng, d)
    want = _frechet_by_sqrtm(mu1, s1, mu2, s2)
    got = evaluate.frechet_distance_gaussians(mu1, s1, mu2, s2)
    assert got == pytest.approx(want, rel=1e-9, abs=1e-6)
    assert evaluate.frechet_distance_gaussians(mu2, s2, mu1, s1) == pytest.approx(got, rel=1e-9, abs=1e-6)  # symmetric


def test_frechet_distance_of_commuting_covariances():
    """Diagonal S1, S2: d^2 = |mu1 - mu2|^2 + sum_i (sqrt(a_i) - sqrt(b_i))^2."""
    a, b = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    want = 5.0 + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert evaluate.frechet_distance_gaussians(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(want, rel=1e-12)


def test_frechet_distance_of_samples_uses_mean_and_unbiased_covariance():
    rng = np.random.default_rng(3)
    f1, f2 = rng.normal(size=(40, 3)), rng.normal(size=(25, 3)) * [1.0, 2.0, 0.5] + 1.0
    mu, s = evaluate.gaussian_statistics(f1)
    np.testing.assert_allclose(mu, f1.mean(0), rtol=1e-12)
    np.testing.assert_allclose(s, np.cov(f1, rowvar=False), rtol=1e-12)
    want = _frechet_by_sqrtm(f1.mean(0), np.cov(f1, rowvar=False), f2.mean(0), np.cov(f2, rowvar=False))
    assert evaluate.frechet_distance(f1, f2) == pytest.approx(want, rel=1e-8)
    assert evaluate.frechet_distance(f2, f1) == pytest.approx(want, rel=1e-8)
    # float32 features (a classifier's) and Tensors are computed in float64 all the same
    import tinydgm as td
    assert evaluate.frechet_distance(td.tensor(f1), f2.astype(np.float32)) == pytest.approx(want, rel=1e-5)


def test_frechet_distance_of_large_samples_approaches_the_population_value():
    rng = np.random.default_rng(4)
    mu1, mu2, s1, s2 = np.zeros(3), np.array([1.0, 0, 0]), np.eye(3), np.diag([4.0, 1.0, 1.0])
    f1 = rng.multivariate_normal(mu1, s1, size=20000)
    f2 = rng.multivariate_normal(mu2, s2, size=20000)
    assert evaluate.frechet_distance(f1, f2) == pytest.approx(1.0 + 1.0, abs=0.1)   # |dmu|^2 + (2 - 1)^2


def test_frechet_distance_rejects_bad_input():
    f = np.zeros((10, 4))
    with pytest.raises(ValueError, match=r"features1 must be a 2-D array \(N samples, d features\), got shape \(10,\)"):
        evaluate.frechet_distance(f[:, 0], f)
    with pytest.raises(ValueError, match=r"same number of features, got shapes \(10, 4\) and \(10, 3\)"):
        evaluate.frechet_distance(f, f[:, :3])
    with pytest.raises(ValueError, match="features2 has 1 sample.*at least 2"):
        evaluate.frechet_distance(f, f[:1])
    with pytest.raises(ValueError, match="features1 contains NaN"):
        evaluate.frechet_distance(np.full((3, 4), np.nan), f)
    with pytest.raises(ValueError, match=r"got sigma2 of shape \(3, 3\)"):
        evaluate.frechet_distance_gaussians(np.zeros(4), np.eye(4), np.zeros(4), np.eye(3))


# ----------------------------------------------------------------------------- Inception Score

def test_inception_score_bounds():
    """K for confident predictions spread evenly over K classes, 1 for constant predictions."""
    for k in (2, 10):
        confident = np.eye(k)[np.arange(5 * k) % k]
        assert evaluate.inception_score(confident) == pytest.approx(k, rel=1e-12)
    rng = np.random.default_rng(0)
    constant = np.tile(rng.dirichlet(np.ones(10)), (30, 1))
    assert evaluate.inception_score(constant) == pytest.approx(1, abs=1e-12)
    collapsed = np.eye(10)[np.zeros(30, dtype=int)]            # every sample "a zero"
    assert evaluate.inception_score(collapsed) == pytest.approx(1, abs=1e-12)


def test_inception_score_equals_exp_mean_kl():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(1)
    p = rng.dirichlet(np.full(6, 0.3), size=200)
    p_y = p.mean(0)
    want = math.exp(np.mean([stats.entropy(row, p_y) for row in p]))
    assert evaluate.inception_score(p) == pytest.approx(want, rel=1e-10)
    assert 1 < evaluate.inception_score(p) < 6


def test_inception_score_rejects_bad_input():
    with pytest.raises(ValueError, match=r"probs must be a 2-D array \(N samples, K classes\).*got shape \(10,\)"):
        evaluate.inception_score(np.full(10, 0.1))
    with pytest.raises(ValueError, match="rows summing to 1 .*not logits"):
        evaluate.inception_score(np.random.default_rng(0).normal(size=(4, 10)))


# ----------------------------------------------------------------------------- modes of 2-D toys

def test_true_eight_gaussians_cover_all_modes_with_high_quality():
    from tinydgm.data import toy
    n = 5000
    result = evaluate.toy_mode_coverage("eight_gaussians", toy.eight_gaussians(n, 0))
    assert (result.modes_covered, result.n_modes) == (8, 8)
    p = 1 - math.exp(-4.5)                         # P(|eps| <= 3) for eps ~ N(0, I_2)
    assert abs(result.high_quality - p) < 4 * math.sqrt(p * (1 - p) / n)
    assert int(result.counts.sum()) == round(result.high_quality * n)
    grid = evaluate.toy_mode_coverage("grid_gaussians", toy.grid_gaussians(n, 1))
    assert (grid.modes_covered, grid.n_modes) == (25, 25) and grid.high_quality > 0.98


def test_a_collapsed_generator_covers_one_mode():
    """All samples from one component (perfect quality, one mode): 1 of 8 covered."""
    rng = np.random.default_rng(2)
    centres, std = evaluate.toy_modes("eight_gaussians")
    collapsed = centres[3] + std * rng.normal(size=(2000, 2))
    result = evaluate.mode_coverage(collapsed, centres, std)
    assert result.modes_covered == 1 and result.counts[3] == result.counts.sum()
    assert result.high_quality > 0.98


def test_uniform_noise_has_almost_no_high_quality_samples():
    """Uniform on [-5, 5]^2 against the grid (std 0.05): the expected fraction is the area of
    25 disks of radius 0.15 over 100, 0.0177."""
    x = np.random.default_rng(3).uniform(-5, 5, size=(20000, 2))
    result = evaluate.toy_mode_coverage("grid_gaussians", x)
    want = 25 * math.pi * 0.15 ** 2 / 100
    assert abs(result.high_quality - want) < 4 * math.sqrt(want / 20000)
    assert result.high_quality < 0.03


def test_mode_coverage_counts_by_hand():
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    x = np.array([[0.1, 0.0], [0.0, -0.29], [10.2, 0.1], [5.0, 5.0], [0.0, 9.65], [0.0, 10.31]])
    result = evaluate.mode_coverage(x, centres, std=0.1)           # within 0.3 of the nearest mode
    np.testing.assert_array_equal(result.counts, [2, 1, 0])        # 9.65 and 10.31 are 0.35, 0.31 away
    assert result.modes_covered == 2 and result.high_quality == pytest.approx(3 / 6)
    assert evaluate.mode_coverage(x, centres, std=0.1, min_count=2).modes_covered == 1
    assert evaluate.mode_coverage(x, centres, std=0.1, n_std=4).modes_covered == 3


def test_mode_coverage_rejects_bad_input():
    c = np.zeros((8, 2))
    with pytest.raises(ValueError, match=r"samples must have shape \(N, 2\).*got \(5, 3\)"):
        evaluate.mode_coverage(np.zeros((5, 3)), c, 0.1)
    with pytest.raises(ValueError, match="std and n_std must be positive, got std=0"):
        evaluate.mode_coverage(np.zeros((5, 2)), c, 0)
    with pytest.raises(ValueError, match="min_count must be a positive integer, got 0"):
        evaluate.mode_coverage(np.zeros((5, 2)), c, 0.1, min_count=0)
    with pytest.raises(ValueError, match="'rings' is not a mixture with known modes"):
        evaluate.toy_modes("rings")
    with pytest.raises(TypeError, match=r"unexpected parameters \['radiuss'\]"):
        evaluate.toy_modes("eight_gaussians", radiuss=1.0)


# ----------------------------------------------------------------------------- KL and JSD by quadrature

def _normal_log_density(mu, sigma):
    return lambda x: -0.5 * ((x[:, 0] - mu) / sigma) ** 2 - math.log(sigma) - 0.5 * math.log(2 * math.pi)


def test_quadrature_kl_of_1d_gaussians_is_the_closed_form():
    # KL(N(m1, s1^2) || N(m2, s2^2)) = log(s2/s1) + (s1^2 + (m1 - m2)^2) / (2 s2^2) - 1/2
    def kl(m1, s1, m2, s2):
        return math.log(s2 / s1) + (s1 ** 2 + (m1 - m2) ** 2) / (2 * s2 ** 2) - 0.5

    result = evaluate.divergences_by_quadrature(_normal_log_density(0, 1), _normal_log_density(1, 2),
                                                [(-25, 25)], resolution=5000)
    assert result.kl_pq == pytest.approx(kl(0, 1, 1, 2), rel=1e-8)
    assert result.kl_qp == pytest.approx(kl(1, 2, 0, 1), rel=1e-8)
    assert result.mass_p == pytest.approx(1, abs=1e-10) and result.mass_q == pytest.approx(1, abs=1e-10)


def test_quadrature_jsd_against_scipy_quad():
    integrate = pytest.importorskip("scipy.integrate")
    lp, lq = _normal_log_density(0, 1), _normal_log_density(1.5, 0.7)

    def point(f, t):
        return float(f(np.array([[t]]))[0])

    def half_kl_to_m(f, g, t):
        a, b = math.exp(point(f, t)), math.exp(point(g, t))
        return 0.5 * a * math.log(2 * a / (a + b)) if a > 0 else 0.0

    want = sum(integrate.quad(lambda t: half_kl_to_m(f, g, t), -12, 12, limit=200)[0] for f, g in ((lp, lq), (lq, lp)))
    result = evaluate.divergences_by_quadrature(lp, lq, [(-12, 12)], resolution=4000)
    assert result.jsd == pytest.approx(want, rel=1e-7)
    assert 0 < result.jsd < math.log(2)


def test_quadrature_jsd_of_identical_and_disjoint_densities():
    lp = _normal_log_density(0.3, 0.8)
    same = evaluate.divergences_by_quadrature(lp, lp, [(-10, 10)], resolution=1000)
    assert same.jsd == pytest.approx(0, abs=1e-12) and same.kl_pq == pytest.approx(0, abs=1e-12)

    def uniform_on(low, high):
        return lambda x: np.where((x[:, 0] > low) & (x[:, 0] < high), -math.log(high - low), -np.inf)

    apart = evaluate.divergences_by_quadrature(uniform_on(0, 1), uniform_on(2, 4), [(-1, 5)], resolution=600)
    assert apart.jsd == pytest.approx(math.log(2), rel=1e-12)
    assert apart.kl_pq == math.inf and apart.kl_qp == math.inf
    assert apart.mass_p == pytest.approx(1, rel=1e-12) and apart.mass_q == pytest.approx(1, rel=1e-12)


def test_quadrature_with_a_flow_generator_in_2d():
    """A flow with a known density (NICE scaling: x = exp(-s) z, so p_g = N(0, diag(exp(-2 s))))
    against N(0, I): the closed-form KL of two Gaussians, both ways."""
    import tinydgm as td
    from tinydgm.models.flows import Flow, Scaling
    flow = Flow([Scaling((2,), dtype="float64")], (2,))
    s = np.array([0.5, -0.3])
    flow.transform.transforms[0].log_scale.data[:] = s
    var = np.exp(-2 * s)

    def log_standard_normal(x):
        return -0.5 * (x ** 2).sum(axis=1) - math.log(2 * math.pi)

    result = evaluate.divergences_by_quadrature(log_standard_normal, lambda x: flow.log_prob(td.tensor(x)),
                                                [(-9, 9), (-9, 9)], resolution=300)
    assert result.kl_pq == pytest.approx(0.5 * np.sum(1 / var + np.log(var) - 1), rel=1e-8)
    assert result.kl_qp == pytest.approx(0.5 * np.sum(var - np.log(var) - 1), rel=1e-8)
    assert 0 < result.jsd < min(result.kl_pq, result.kl_qp)


def test_quadrature_against_a_toy_density():
    """The 8 Gaussians against themselves (0) and against a wide Gaussian that has them all."""
    from tinydgm.data import toy
    lp = lambda x: toy.eight_gaussians_log_density(x)                       # noqa: E731
    same = evaluate.divergences_by_quadrature(lp, lp, [(-3.5, 3.5), (-3.5, 3.5)], resolution=200)
    assert same.jsd == pytest.approx(0, abs=1e-12) and same.mass_p == pytest.approx(1, abs=1e-6)
    wide = evaluate.divergences_by_quadrature(lp, lambda x: -0.5 * (x ** 2).sum(1) / 4 - math.log(8 * math.pi),
                                              [(-10, 10), (-10, 10)], resolution=500)
    assert 0 < wide.jsd < math.log(2) and wide.kl_pq > 0 and wide.kl_qp > wide.kl_pq


def test_quadrature_rejects_bad_input():
    lp = _normal_log_density(0, 1)
    with pytest.raises(ValueError, match="bounds must be 1 to 3 pairs"):
        evaluate.divergences_by_quadrature(lp, lp, [(1, -1)])
    with pytest.raises(ValueError, match="resolution must be an integer >= 2, got 1"):
        evaluate.divergences_by_quadrature(lp, lp, [(-1, 1)], resolution=1)
    with pytest.raises(ValueError, match=r"log_q must map points \(M, 1\) to log-densities \(M,\)"):
        evaluate.divergences_by_quadrature(lp, lambda x: np.zeros((len(x), 3)), [(-1, 1)], resolution=10)
    with pytest.raises(ValueError, match="log_p returned NaN or \\+inf"):
        evaluate.divergences_by_quadrature(lambda x: np.full(len(x), np.nan), lp, [(-1, 1)], resolution=10)


def test_metrics_run_on_the_data_device(device):
    """The metrics take their array module from the data: CuPy arrays give the NumPy values."""
    import tinydgm as td
    rng = np.random.default_rng(5)
    f1, f2 = rng.normal(size=(60, 4)), rng.normal(size=(40, 4)) + 0.3
    p = rng.dirichlet(np.ones(5), size=30)
    x = rng.normal(size=(200, 2)) * 2
    on = lambda a: td.backend.to_device(a, device)                                     # noqa: E731
    assert evaluate.frechet_distance(on(f1), on(f2)) == pytest.approx(evaluate.frechet_distance(f1, f2), rel=1e-9)
    assert evaluate.inception_score(on(p)) == pytest.approx(evaluate.inception_score(p), rel=1e-12)
    centres, std = evaluate.toy_modes("eight_gaussians")
    got = evaluate.mode_coverage(on(x), centres, std)
    want = evaluate.mode_coverage(x, centres, std)
    assert got[:3] == want[:3] and td.backend.device_of(got.counts) == device
    np.testing.assert_array_equal(td.backend.to_numpy(got.counts), want.counts)
    lp, lq = _normal_log_density(0, 1), _normal_log_density(0.5, 1.5)
    assert evaluate.divergences_by_quadrature(lp, lq, [(-10, 10)], 500, device=device) == pytest.approx(
        evaluate.divergences_by_quadrature(lp, lq, [(-10, 10)], 500), rel=1e-10)
