"""NADE (tinydgm/models/autoregressive/nade.py) and its sampler (tinydgm/kernels/nade_sampler.py): the
shared autoregressive contracts, the log-likelihood against the recursion written out,
gradients, the three samplers against each other and against the exact distribution."""
import math
import os
import pathlib

import numba
import numpy as np
import pytest

import tinydgm as td
from tinydgm import optim
from tinydgm.data import mnist
from tinydgm.kernels import nade_sampler
from tinydgm.kernels.nade_sampler import (nade_sample, nade_sample_kernel, nade_sample_naive,
                                          nade_sample_xp)
from tinydgm.models.autoregressive.nade import NADE, PAPER_CONFIG, reproduce

from contracts import all_binary, assert_autoregressive, assert_normalised, chi_square_pvalue
from paths import DATA_DIR

SHARED = DATA_DIR
needs_shared = pytest.mark.skipif(not (SHARED / "binarized_mnist.npz").is_file(),
                                  reason=f"binarized MNIST is not here ({SHARED}/binarized_mnist.npz: the "
                                         "project's shared/data folder, or set TINYDGM_DATA)")


def _model(n_inputs=6, n_hidden=5, seed=0, spread=1.5):
    """A float64 NADE with nonzero biases and weights large enough for sharp conditionals."""
    model = NADE(n_inputs, n_hidden, rng=td.rng(seed), dtype="float64")
    gen = np.random.default_rng(seed + 100)
    for p in (model.W, model.c, model.V, model.b):
        p.data = gen.normal(0.0, spread, p.shape)
    return model


def _binary(n, d, seed=0, p=0.5):
    return (np.random.default_rng(seed).random((n, d)) < p).astype(np.float64)


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _log_prob_recursion(model, x):
    """log p(x) by the paper's loop: a_1 = c, a_{d+1} = a_d + x_d w_d, p_d = sigmoid(b_d + V_d . sigmoid(a_d))."""
    W, c, V, b = (p.numpy() for p in (model.W, model.c, model.V, model.b))
    out = np.zeros(len(x))
    for i, xi in enumerate(x):
        a = c.copy()
        for d in range(len(xi)):
            p_d = _sigmoid(b[d] + V[d] @ _sigmoid(a))
            out[i] += math.log(p_d if xi[d] == 1 else 1 - p_d)
            a += xi[d] * W[d]
    return out


# ----------------------------------------------------------------------------- the density

def test_log_prob_equals_the_recursion(device):
    model = _model(7, 4).to(device)
    x = _binary(9, 7, seed=1)
    log_p = model.log_prob(td.tensor(x, device=device)).numpy()
    assert log_p.shape == (9,)
    np.testing.assert_allclose(log_p, _log_prob_recursion(model, x), rtol=1e-12, atol=1e-12)


def test_hidden_preactivations_follow_the_history_recursion():
    model = _model(5, 3)
    x = _binary(4, 5, seed=2)
    a = model.hidden_preactivations(x).numpy()
    W, c = model.W.numpy(), model.c.numpy()
    np.testing.assert_allclose(a[:, 0], np.broadcast_to(c, (4, 3)))          # a_1 = c
    for d in range(4):
        np.testing.assert_allclose(a[:, d + 1], a[:, d] + x[:, d:d + 1] * W[d], atol=1e-14)


def test_fused_logits_equal_the_reference_composition(device):
    model = _model(9, 6, seed=21).to(device)
    x = td.tensor(_binary(8, 9, seed=22), device=device)
    np.testing.assert_allclose(model.logits(x).numpy(), model.logits_reference(x).numpy(), rtol=1e-12, atol=1e-12)


def test_autoregressive_property_from_the_jacobian():
    model = _model(8, 6)
    for logits in (model.logits, model.logits_reference):        # the fused op and the composition
        dep = assert_autoregressive(logits, _binary(4, 8, seed=3), order=np.arange(8))
        # and the allowed dependencies are really there (logit d sees every x_j, j < d)
        assert dep[np.tril_indices(8, k=-1)].all()


@pytest.mark.parametrize("n_inputs, n_hidden", [(6, 5), (8, 3), (1, 2)])
def test_normalised_over_all_binary_vectors(n_inputs, n_hidden):
    model = _model(n_inputs, n_hidden, seed=n_inputs)
    assert_normalised(lambda x: model.log_prob(x).numpy(), n_inputs, atol=1e-10)


def test_chunked_log_prob_equals_whole_batch():
    model = _model(6, 5)
    x = _binary(23, 6, seed=4)
    np.testing.assert_allclose(model.log_prob(x, chunk_size=5).numpy(), model.log_prob(x).numpy(), rtol=1e-14)


def test_bits_per_dim_and_loss_from_nats():
    model = _model(6, 5)
    x = _binary(10, 6, seed=5)
    log_p = model.log_prob(x).numpy()
    np.testing.assert_allclose(model.bits_per_dim(x).numpy(), -log_p / (6 * math.log(2)), rtol=1e-14)
    assert model.loss(x).item() == pytest.approx(-log_p.mean(), rel=1e-14)


def test_float32_model_stays_float32():
    model = NADE(10, 7, rng=td.rng(0))
    x = _binary(3, 10, seed=6).astype(np.uint8)           # integer data is cast to the model's dtype
    assert model.W.dtype == np.float32 and model.V.shape == (10, 7) and model.c.shape == (7,)
    log_p = model.log_prob(x)
    assert log_p.dtype == np.float32 and log_p.shape == (3,)
    np.testing.assert_allclose(log_p.numpy(), _log_prob_recursion(model, x.astype(np.float64)), rtol=1e-5)


# ----------------------------------------------------------------------------- gradients

def _log_prob_of_parameters(model, x):
    """fn(W, c, V, b) -> log p(x) with the given tensors in the model's place."""
    def fn(W, c, V, b):
        model.W, model.c, model.V, model.b = W, c, V, b
        return model.log_prob(x)
    return fn


def test_gradcheck_log_prob_wrt_parameters():
    model = _model(6, 4, spread=1.0)
    params = [td.tensor(p.numpy(), dtype="float64", requires_grad=True) for p in (model.W, model.c, model.V, model.b)]
    fn = _log_prob_of_parameters(model, td.tensor(_binary(5, 6, seed=7), dtype="float64"))
    assert td.gradcheck(fn, params, mode="full")


def test_gradgradcheck_log_prob_wrt_parameters():
    model = _model(4, 3, spread=1.0)
    params = [td.tensor(p.numpy(), dtype="float64", requires_grad=True) for p in (model.W, model.c, model.V, model.b)]
    fn = _log_prob_of_parameters(model, td.tensor(_binary(3, 4, seed=8), dtype="float64"))
    assert td.gradgradcheck(fn, params)


def test_loss_decreases_under_adam_on_a_toy_dataset():
    # x_2..x_6 copy x_1 with 10% flips: strongly dependent bits an independent model cannot fit
    gen = np.random.default_rng(9)
    first = gen.random((256, 1)) < 0.5
    x = (first ^ (gen.random((256, 6)) < 0.1)).astype(np.float64)
    model = NADE(6, 8, rng=td.rng(1), dtype="float64")
    opt = optim.Adam(model.parameters(), lr=0.05)
    data = td.tensor(x, dtype="float64")
    losses = []
    for _ in range(60):
        opt.zero_grad()
        loss = model.loss(data)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 1.0, losses[::10]
    assert losses[-1] < 6 * math.log(2) - 1.0          # clearly better than the uniform distribution


# ----------------------------------------------------------------------------- sampling

def test_fast_vectorized_and_naive_samplers_agree_for_the_same_seed():
    model = _model(10, 6)
    fast = model.sample(300, td.rng(3), method="fast").numpy()
    vectorized = model.sample(300, td.rng(3), method="vectorized").numpy()
    naive = model.sample(300, td.rng(3), method="naive").numpy()
    assert fast.shape == (300, 10) and fast.dtype == np.float64
    assert set(np.unique(fast)) <= {0.0, 1.0}
    np.testing.assert_array_equal(fast, naive)
    np.testing.assert_array_equal(fast, vectorized)
    assert not np.array_equal(fast, model.sample(300, td.rng(4)).numpy())      # the seed matters


def test_samples_follow_the_exact_distribution():
    model = _model(6, 5, seed=11)
    log_p_all = model.log_prob(all_binary(6)).numpy()
    samples = model.sample(20000, td.rng(12)).numpy()
    assert chi_square_pvalue(samples, log_p_all) > 1e-3
    # and the test has power: samples of a different model are rejected
    other = _model(6, 5, seed=13).sample(20000, td.rng(12)).numpy()
    assert chi_square_pvalue(other, log_p_all) < 1e-3


@pytest.mark.parametrize("parallel", [False, True], ids=["serial", "parallel"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernel_equals_twin(dtype, parallel, monkeypatch):
    """The serial build, and the parallel one on 2 threads (forced even at this size)."""
    if parallel and numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("Numba has one thread here")
    monkeypatch.setattr(nade_sampler, "PARALLEL_ABOVE", 0 if parallel else 1 << 62)
    threads = numba.get_num_threads()
    numba.set_num_threads(2 if parallel else threads)
    try:
        _kernel_equals_twin(dtype)
    finally:
        numba.set_num_threads(threads)


def _kernel_equals_twin(dtype):
    gen = np.random.default_rng(14)
    D, H, n = 12, 9, 400
    W, V = gen.normal(0, 1.5, (D, H)).astype(dtype), gen.normal(0, 1.5, (D, H)).astype(dtype)
    c, b = gen.normal(0, 1, H).astype(dtype), gen.normal(0, 1, D).astype(dtype)
    u = gen.random((n, D))
    x_kernel = nade_sample_kernel(W, c, V, b, u)
    x_twin = nade_sample_xp(W, c, V, b, u)
    assert x_kernel.dtype == dtype and x_twin.dtype == dtype
    np.testing.assert_array_equal(x_kernel, x_twin)
    np.testing.assert_array_equal(nade_sample(W, c, V, b, u), x_kernel)      # the dispatcher picks the kernel


def test_kernel_thresholds_the_exact_conditionals():
    """With u = 0.5 everywhere, x_d = 1 exactly when p(x_d = 1 | x_<d) > 1/2 along the sample."""
    model = _model(8, 4, seed=15)
    x = nade_sample_kernel(*(p.numpy() for p in (model.W, model.c, model.V, model.b)), np.full((1, 8), 0.5))
    p = _sigmoid(model.logits(x).numpy())[0]
    np.testing.assert_array_equal(x[0], (p > 0.5).astype(np.float64))


@pytest.mark.cuda
def test_cuda_sampling_matches_cpu():
    model = _model(10, 6)
    cpu = model.sample(200, td.rng(5)).numpy()
    model.to("cuda")
    np.testing.assert_array_equal(model.sample(200, td.rng(5)).numpy(), cpu)
    np.testing.assert_array_equal(model.sample(200, td.rng(5), method="naive").numpy(), cpu)


def test_naive_sampler_reads_logit_d_of_the_partial_sample():
    """The reference on a hand-made logits_fn: logit_d = 5 (x_{d-1} - 1/2) alternates when u = 1/2."""
    def logits_fn(x):
        shifted = td.concatenate([td.tensor(np.ones((x.shape[0], 1))), x[:, :-1]], axis=1)
        return 10.0 * (shifted - 0.5)
    x = nade_sample_naive(logits_fn, np.full((2, 5), 0.5), dtype=np.float64)
    np.testing.assert_array_equal(x, np.ones((2, 5)))          # x_0 = 1 (logit +5), then each copies the last


# ----------------------------------------------------------------------------- errors

@pytest.mark.parametrize("shape", [(4, 7), (6,), (2, 1, 6)])
def test_wrong_input_shapes_raise(shape):
    model = _model(6, 3)
    with pytest.raises(ValueError, match=r"NADE.log_prob: x must have shape \(N, D\) = \(N, 6\)"):
        model.log_prob(np.zeros(shape))


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="n_hidden must be a positive int"):
        NADE(5, 0)
    with pytest.raises(ValueError, match="n_inputs must be a positive int"):
        NADE(2.5, 3)
    model = _model(6, 3)
    with pytest.raises(ValueError, match="method must be one of"):
        model.sample(3, td.rng(0), method="gibbs")
    with pytest.raises(ValueError, match="n must be a non-negative int"):
        model.sample(-1)
    with pytest.raises(ValueError, match="chunk_size must be a positive int"):
        model.log_prob(np.zeros((2, 6)), chunk_size=0)
    W = np.zeros((6, 3))
    with pytest.raises(ValueError, match=r"nade_sample_kernel: V must have shape \(6, 3\)"):
        nade_sample_kernel(W, np.zeros(3), np.zeros((3, 6)), np.zeros(6), np.zeros((2, 6)))
    with pytest.raises(ValueError, match=r"nade_sample_xp: u must have shape \(n, D\) = \(n, 6\)"):
        nade_sample_xp(W, np.zeros(3), W, np.zeros(6), np.zeros((2, 5)))


def test_sample_of_zero_examples():
    assert _model(6, 3).sample(0, td.rng(0)).shape == (0, 6)


# ----------------------------------------------------------------------------- the paper's set-up

def test_paper_config_documents_the_setup():
    assert PAPER_CONFIG["n_hidden"] == 500
    assert PAPER_CONFIG["published_test_nll"] == 88.33
    for key in ("optimizer", "lr", "batch_size", "max_epochs", "evaluation", "data", "ordering"):
        assert key in PAPER_CONFIG


@needs_shared
def test_reproduce_runs_a_tiny_configuration():
    result = reproduce(epochs=2, data_path=str(SHARED), batch_size=100, lr=1e-2, optimizer="adam", n_hidden=4,
                       n_train=500, eval_batch_size=2000, progress=False)
    assert result["epochs_run"] == 2 and len(result["valid_nll"]) == 2 and len(result["epoch_loss"]) == 2
    assert result["best_epoch"] in (1, 2)
    assert result["best_valid_nll"] == min(result["valid_nll"])
    assert 60 < result["test_nll"] < 543.5            # finite, and better than uniform bits (784 ln 2)
    assert result["test_bits_per_dim"] == pytest.approx(result["test_nll"] / (784 * math.log(2)))
    assert result["config"]["optimizer"] == "adam" and result["config"]["n_train"] == 500
