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
