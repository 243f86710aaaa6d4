"""AIS for RBM partition functions (Salakhutdinov & Murray 2008) against exact enumeration,
the test log-likelihood, and pseudo-likelihood."""
import math

import numpy as np
import pytest
from scipy.special import expit, logsumexp

from contracts import all_binary
from tinydgm import evaluate


def small_rbm(D, H, scale=1.0, seed=0):
    rng = np.random.default_rng(seed)
    return scale * rng.normal(size=(D, H)), rng.normal(size=D) - 1, rng.normal(size=H)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ais_agrees_with_the_exact_log_partition_within_its_error(seed):
    W, b, c = small_rbm(20, 10, scale=0.5)           # exact: enumerate the 2^10 hidden states
    exact = evaluate.rbm_log_partition(W, b, c)
    result = evaluate.rbm_ais(W, b, c, n_runs=100, betas=evaluate.ais_betas("linear", n_betas=500),
                              base_visible_bias=b, rng=np.random.default_rng(seed))
    assert 0 < result["log_z_se"] < 0.05
    assert abs(result["log_z"] - exact) < 4 * result["log_z_se"], (result["log_z"], exact, result["log_z_se"])
    assert result["log_z_lower"] < exact < result["log_z_upper"]
    assert result["log_w"].shape == (100,) and result["n_betas"] == 500


def test_ais_with_a_short_schedule_has_a_larger_error():
    W, b, c = small_rbm(20, 10, scale=1.0)
    short = evaluate.rbm_ais(W, b, c, n_runs=100, betas=evaluate.ais_betas("linear", n_betas=10),
                             rng=np.random.default_rng(0))
    long = evaluate.rbm_ais(W, b, c, n_runs=100, betas=evaluate.ais_betas("linear", n_betas=1000),
                            rng=np.random.default_rng(0))
    assert short["log_z_se"] > 3 * long["log_z_se"]


def test_ais_is_exact_when_the_base_is_the_target():
    """W = 0 and b_A = b: every importance weight is exp(H log 2 terms that cancel) = 1."""
    D, H = 6, 4
    b = np.random.default_rng(0).normal(size=D)
    W, c = np.zeros((D, H)), np.zeros(H)
    result = evaluate.rbm_ais(W, b, c, n_runs=10, betas=evaluate.ais_betas("linear", n_betas=5),
                              base_visible_bias=b, rng=np.random.default_rng(0))
    assert result["log_z"] == pytest.approx(evaluate.rbm_log_partition(W, b, c), abs=1e-12)
    assert result["log_z_se"] == pytest.approx(0, abs=1e-12)


def test_paper_schedule_and_base_rates():
    betas = evaluate.ais_betas()
    assert len(betas) == 14501 and betas[0] == 0 and betas[-1] == 1 and (np.diff(betas) > 0).all()
    assert ((betas > 0.5) & (betas <= 0.9)).sum() == 4000
    x = np.array([[1, 0, 1], [1, 0, 0]], float)
    b_A = evaluate.base_rate_visible_bias(x, smoothing=0.0 + 1e-9)
    np.testing.assert_allclose(expit(b_A), [1, 0, 0.5], atol=1e-6)
    with pytest.raises(ValueError, match="betas must increase from 0 to 1"):
        evaluate.rbm_ais(*small_rbm(3, 2), betas=np.array([0.0, 0.7, 0.5, 1.0]))


def test_test_log_likelihood_with_the_exact_log_partition():
    W, b, c = small_rbm(8, 5)
    v = (np.random.default_rng(3).random((2500, 8)) < 0.4).astype(float)
    log_z = evaluate.rbm_log_partition(W, b, c)
    expected = evaluate.rbm_log_likelihood(W, b, c, v).mean()
    assert evaluate.rbm_test_log_likelihood(W, b, c, v, log_z, batch_size=1000) == pytest.approx(expected, rel=1e-12)


def test_pseudo_likelihood_exact_and_stochastic():
    D, H = 5, 3
    W, b, c = small_rbm(D, H)
    v = all_binary(D)
    log_p = evaluate.rbm_log_likelihood(W, b, c, v)
    # sum_i log p(v_i | v_-i) by brute force from the exact joint
    index = (v @ (1 << np.arange(D - 1, -1, -1))).astype(int)
    expected = np.zeros(len(v))
    for i in range(D):
        flipped = index ^ (1 << (D - 1 - i))
        expected += log_p[index] - np.logaddexp(log_p[index], log_p[flipped])
    np.testing.assert_allclose(evaluate.rbm_pseudo_likelihood(W, b, c, v), expected, rtol=1e-10)
    rng = np.random.default_rng(0)
    draws = np.stack([evaluate.rbm_pseudo_likelihood(W, b, c, v, rng=rng) for _ in range(2000)])
    se = draws.std(0) / math.sqrt(len(draws))
    assert (np.abs(draws.mean(0) - expected) < 4 * se + 1e-9).all()     # unbiased for the sum


def test_rbm_log_partition_rejects_too_large_models():
    with pytest.raises(ValueError, match="smaller layer has 31 units"):
        evaluate.rbm_log_partition(np.zeros((40, 31)), np.zeros(40), np.zeros(31))
