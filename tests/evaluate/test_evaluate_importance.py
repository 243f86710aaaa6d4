"""tinydgm.evaluate.importance: the importance-sampled log-likelihood of latent-variable models
against the exact log p(x) of a linear-Gaussian VAE (error shrinking with k, standard errors
that match the observed spread), chunked evaluation equal to the direct formula, memory that
does not grow with k, the bounds table, bits/dim and bad input."""
import math
import tracemalloc

import numpy as np
import pytest

import tinydgm as td
from linear_vae_oracle import decoder_weights, exact_log_px, linear_vae, set_encoder_to_posterior
from tinydgm.evaluate import (bounds_table, format_bounds_table, importance_log_likelihood)


def gaussian_data(n, n_dims, seed=0):
    return np.random.default_rng(seed).standard_normal((n, n_dims)) + 0.3


def imperfect_linear_vae(sigma=0.5, seed=2):
    """A linear-Gaussian VAE whose q is the posterior shifted and widened (bounded weights, a real gap)."""
    model = linear_vae(4, 2, sigma=sigma, seed=seed)
    set_encoder_to_posterior(model, sigma, mean_shift=np.array([0.5, -0.4]), log_var_shift=np.log(2.0))
    return model


class RecordingModel:
    """Wraps a model and keeps every (k, N) block of log-weights it hands out."""

    def __init__(self, model):
        self.model, self.blocks = model, []

    def log_importance_weights(self, x, k, rng=None):
        log_w = self.model.log_importance_weights(x, k, rng=rng)
        self.blocks.append(log_w.numpy())
        return log_w


def test_chunks_and_batches_combine_to_the_direct_formula():
    """log 1/k sum_i w_i and se = sd(w) / (sqrt(k) mean(w)), from the very weights the chunks drew."""
    recorder = RecordingModel(imperfect_linear_vae())
    x = gaussian_data(7, 4)
    result = importance_log_likelihood(recorder, x, k=23, batch_size=3, chunk_size=5, rng=np.random.default_rng(0))
    chunk_counts = [b.shape[0] for b in recorder.blocks]
    assert chunk_counts == [5, 5, 5, 5, 3] * 3                   # 3 batches of examples, 5 chunks each
    per_batch = [np.concatenate(recorder.blocks[i:i + 5]) for i in range(0, 15, 5)]
    log_w = np.concatenate(per_batch, axis=1)                     # (k, N)
    w = np.exp(log_w)
    np.testing.assert_allclose(result.log_px.numpy(), np.log(w.mean(0)), rtol=1e-12)
    np.testing.assert_allclose(result.stderr.numpy(), w.std(0, ddof=1) / (np.sqrt(23) * w.mean(0)), rtol=1e-9)
    np.testing.assert_allclose(np.exp(result.log_ess.numpy()), w.sum(0) ** 2 / (w ** 2).sum(0), rtol=1e-9)
    assert result.k == 23 and result.log_px.shape == (7,)
    np.testing.assert_allclose(result.mean, np.log(w.mean(0)).mean(), rtol=1e-12)
    np.testing.assert_allclose(result.mean_stderr, np.sqrt((result.stderr.numpy() ** 2).sum()) / 7, rtol=1e-12)


def test_error_shrinks_as_k_grows_and_the_standard_error_is_calibrated():
    sigma = 0.5
    model = imperfect_linear_vae(sigma)
    x = gaussian_data(4, 4, seed=3)
    W, b = decoder_weights(model)
    log_px = exact_log_px(W, b, sigma, x)
    gen = np.random.default_rng(1)
    rms_errors = []
    for k in (10, 100, 1000):
        runs = [importance_log_likelihood(model, x, k=k, chunk_size=250, rng=gen) for _ in range(30)]
        estimates = np.stack([r.log_px.numpy() for r in runs])              # (30, N)
        rms_errors.append(np.sqrt(((estimates - log_px) ** 2).mean()))
        if k == 1000:
            # the delta-method standard error predicts the spread of repeated estimates
            reported = np.stack([r.stderr.numpy() for r in runs]).mean(0)
            observed = estimates.std(0, ddof=1)
            assert np.all((observed > reported / 1.6) & (observed < reported * 1.6)), (observed, reported)
            assert np.all(np.abs(estimates.mean(0) - log_px) < 4 * observed / np.sqrt(30) + 1e-4)
    assert rms_errors[0] > 2 * rms_errors[1] > 4 * rms_errors[2], rms_errors


def test_memory_does_not_grow_with_k():
    """The peak allocation for k = 4000 is that of one chunk, not of 4000 samples."""
    model = imperfect_linear_vae()
    x = gaussian_data(50, 4)
    peaks = []
    for k in (200, 4000):
        tracemalloc.start()
        importance_log_likelihood(model, x, k=k, batch_size=50, chunk_size=200, rng=np.random.default_rng(0))
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    assert peaks[1] < 1.5 * peaks[0], peaks
    # holding all 4000 samples at once would need at least the (k, N, D) decoder means
    assert peaks[1] < 4000 * 50 * 4 * 8, peaks


def test_vae_protocol_methods_use_the_estimator():
    model = imperfect_linear_vae()
    x = gaussian_data(3, 4)
    estimate = model.log_prob_estimate(x, k=50, rng=np.random.default_rng(4)).numpy()
    direct = importance_log_likelihood(model, x, k=50, rng=np.random.default_rng(4)).log_px.numpy()
    np.testing.assert_allclose(estimate, direct, rtol=1e-12)
    bpd = model.bits_per_dim(x, k=50, rng=np.random.default_rng(4)).numpy()
    np.testing.assert_allclose(bpd, -direct / (4 * math.log(2)), rtol=1e-12)


def test_bounds_table_rises_with_k_and_stays_below_log_px():
    sigma = 0.5
    model = imperfect_linear_vae(sigma)
    x = gaussian_data(20, 4, seed=5)
    W, b = decoder_weights(model)
    log_px = exact_log_px(W, b, sigma, x).mean()
    rows = bounds_table(model, x, ks=(1, 10, 300), n_repeats=8, rng=np.random.default_rng(2))
    assert [(r["bound"], r["k"]) for r in rows] == [("ELBO", 1), ("F_k", 1), ("F_k", 10), ("F_k", 300)]
    nats = np.array([r["nats"] for r in rows])
    se = np.array([r["stderr"] for r in rows])
    assert abs(nats[0] - nats[1]) < 4 * np.hypot(se[0], se[1])         # the ELBO is F_1 in expectation
    assert nats[1] < nats[2] < nats[3] <= log_px + 3 * se[3]
    assert log_px - nats[3] < 0.05 * (log_px - nats[1])
    for r in rows:
        assert r["bits_per_dim"] == pytest.approx(-r["nats"] / (4 * math.log(2)))
    text = format_bounds_table(rows)
    assert text.splitlines()[0].split() == ["bound", "k", "nats", "stderr", "bits/dim"]
    assert len(text.splitlines()) == 5


def test_k_equal_one_has_no_standard_error():
    result = importance_log_likelihood(imperfect_linear_vae(), gaussian_data(2, 4), k=1)
    assert np.all(np.isnan(result.stderr.numpy())) and np.all(np.isfinite(result.log_px.numpy()))


def test_bad_input():
    model = imperfect_linear_vae()
    x = gaussian_data(2, 4)
    for k in (0, -5, 2.5):
        with pytest.raises(ValueError, match="k must be an int >= 1"):
            importance_log_likelihood(model, x, k=k)
    with pytest.raises(ValueError, match="chunk_size must be an int >= 1"):
        importance_log_likelihood(model, x, k=5, chunk_size=0)
    with pytest.raises(TypeError, match="has no log_importance_weights"):
        importance_log_likelihood(object(), x, k=5)
    with pytest.raises(ValueError, match="x has no examples"):
        importance_log_likelihood(model, np.zeros((0, 4)), k=5)
    with pytest.raises(ValueError, match="non-finite"):
        importance_log_likelihood(model, np.full((2, 4), np.nan), k=5)
    with pytest.raises(ValueError, match=r"x must have shape \(N, 4\)"):
        model.log_prob_estimate(np.zeros((2, 3)), k=5)
    assert isinstance(importance_log_likelihood(model, td.tensor(x, dtype="float64"), k=3).log_px, td.Tensor)
