"""BernoulliRBM and GaussianBernoulliRBM: energies and free energies against brute force,
exact log-likelihood (normalised, gradchecked), CD gradient direction, conditionals, training."""
import os
import pathlib

import numpy as np
import pytest
from scipy.special import expit, logsumexp

from contracts import all_binary, assert_normalised
import tinydgm as td
from tinydgm import evaluate
from tinydgm.kernels import rbm_gibbs
from tinydgm.data import load_binarized_mnist, mnist
from tinydgm.models.energy.rbm import BernoulliRBM, GaussianBernoulliRBM, PAPER_CONFIG, reproduce
from paths import DATA_DIR


def make_rbm(D, H, scale=1.0, seed=0, cls=BernoulliRBM, **kwargs):
    rbm = cls(D, H, rng=td.rng(seed), dtype="float64", **kwargs)
    rng = np.random.default_rng(seed)
    rbm.W.data[...] = scale * rng.normal(size=(D, H))
    rbm.b.data[...] = rng.normal(size=D)
    rbm.c.data[...] = rng.normal(size=H)
    return rbm


def params(rbm):
    return rbm.W.data, rbm.b.data, rbm.c.data


def test_free_energy_sums_the_hidden_units_out():
    rbm = make_rbm(5, 4)
    v = all_binary(5)
    h = all_binary(4)
    energies = np.stack([rbm.energy(v, np.repeat(hk[None], len(v), 0)).numpy() for hk in h], axis=1)
    np.testing.assert_allclose(rbm.free_energy(v).numpy(), -logsumexp(-energies, axis=1), rtol=1e-12)
    W, b, c = params(rbm)
    np.testing.assert_allclose(energies[3, 5], -(b @ v[3]) - c @ h[5] - v[3] @ W @ h[5])


@pytest.mark.parametrize("D,H", [(5, 8), (8, 5)])     # enumerate v, then enumerate h
def test_exact_log_prob_is_normalised_and_matches_brute_force(D, H):
    rbm = make_rbm(D, H)
    log_p = assert_normalised(lambda v: rbm.log_prob(v).numpy(), D, atol=1e-10)
    v, h = all_binary(D), all_binary(H)
    W, b, c = params(rbm)
    joint = (v @ b)[:, None] + (h @ c)[None, :] + v @ W @ h.T
    np.testing.assert_allclose(rbm.log_partition().item(), logsumexp(joint), rtol=1e-12)
    np.testing.assert_allclose(log_p, logsumexp(joint, axis=1) - logsumexp(joint), atol=1e-10)
    assert evaluate.rbm_log_partition(W, b, c) == pytest.approx(logsumexp(joint), rel=1e-12)


def test_exact_log_likelihood_gradcheck():
    rng = np.random.default_rng(1)
    v = (rng.random((7, 4)) < 0.5).astype(float)
    W, b, c = (td.tensor(rng.normal(size=s), dtype="float64", requires_grad=True) for s in ((4, 6), (4,), (6,)))
    td.gradcheck(lambda W, b, c: evaluate.rbm_log_likelihood(W, b, c, v).mean(), [W, b, c])
    # D = 6 > H = 3: the enumeration runs over h, v summed out analytically
    v6 = (rng.random((5, 6)) < 0.5).astype(float)
    W6, b6, c3 = (td.tensor(rng.normal(size=s), dtype="float64", requires_grad=True) for s in ((6, 3), (6,), (3,)))
    td.gradcheck(lambda W, b, c: evaluate.rbm_log_likelihood(W, b, c, v6).mean(), [W6, b6, c3])


def exact_gradient(rbm, v):
    for p in rbm.parameters():
        p.grad = None
    rbm.log_prob(v).mean().backward()
    return np.concatenate([rbm.W.grad.numpy().ravel(), rbm.b.grad.numpy(), rbm.c.grad.numpy()])


@pytest.mark.parametrize("persistent", [False, True])
def test_cd_gradient_points_along_the_exact_gradient(persistent):
    D, H = 8, 5
    rbm = make_rbm(D, H, scale=0.5)
    data_model = make_rbm(D, H, scale=2.0, seed=3)      # data from another RBM
    v = data_model.sample(500, td.rng(0), k=200).numpy()
    exact = exact_gradient(rbm, v)
    rng = np.random.default_rng(2)
    cd = np.zeros_like(exact)
    for _ in range(20):                                  # average the noisy estimates
        grad = rbm.cd_gradient(v, k=1, rng=rng, persistent=persistent)
        cd += np.concatenate([grad["W"].ravel(), grad["b"], grad["c"]])
    cosine = lambda a, b: a @ b / np.linalg.norm(a) / np.linalg.norm(b)      # noqa: E731
    n_w = D * H
    assert cosine(cd, exact) > 0.9, cosine(cd, exact)
    assert cosine(cd[:n_w], exact[:n_w]) > 0.9, cosine(cd[:n_w], exact[:n_w])      # not only the biases


def test_contrastive_free_energy_gradient_is_minus_the_cd_gradient():
    rbm = make_rbm(6, 4)
    rng = np.random.default_rng(4)
    v = (rng.random((10, 6)) < 0.5).astype(float)
    u_h, r_v = rbm_gibbs.draw_noise(rng, 2, 10, 6, 4, dtype="float64", start_hidden=True)
    stats = rbm_gibbs.cd_statistics(*params(rbm), v, u_h, r_v)
    rbm.contrastive_free_energy(v, stats.v_chain).backward()
    np.testing.assert_allclose(-rbm.W.grad.numpy(), stats.vh_data - stats.vh_model, atol=1e-12)
    np.testing.assert_allclose(-rbm.b.grad.numpy(), stats.v_data - stats.v_model, atol=1e-12)
    np.testing.assert_allclose(-rbm.c.grad.numpy(), stats.h_data - stats.h_model, atol=1e-12)


def test_conditionals_are_the_lectures_sigmoids():
    rbm = make_rbm(5, 3)
    W, b, c = params(rbm)
    v = all_binary(5)
    np.testing.assert_allclose(rbm.hidden_probs(v).numpy(), expit(v @ W + c), rtol=1e-12)
    h = all_binary(3)
    np.testing.assert_allclose(rbm.visible_probs(h).numpy(), expit(h @ W.T + b), rtol=1e-12)


def test_pcd_training_raises_the_exact_log_likelihood():
    D, H = 10, 6
    data_model = make_rbm(D, H, scale=2.0, seed=5)
    x = data_model.sample(1000, td.rng(1), k=200).numpy().astype("float32")
    rbm = BernoulliRBM(D, H, rng=td.rng(0), dtype="float32")
    before = rbm.log_prob(x).numpy().mean()
    history = rbm.fit(x, epochs=15, batch_size=50, lr=0.1, k=1, persistent=True, momentum=0.5,
                      rng=np.random.default_rng(0), shuffle=True,
                      monitor=lambda m, e: m.pseudo_likelihood(x[:200]).mean())
    after = rbm.log_prob(x).numpy().mean()
    best = data_model.log_prob(x).numpy().mean()
    assert after > before + 0.5 and after < best + 0.1, (before, after, best)
    assert len(history["time"]) == 15 and history["monitor"][-1] > history["monitor"][0]


def test_sampling_and_reconstruction_shapes():
    rbm = make_rbm(7, 4)
    s = rbm.sample(5, td.rng(0), k=10).numpy()
    assert s.shape == (5, 7) and set(np.unique(s)) <= {0.0, 1.0}
    assert np.array_equal(s, rbm.sample(5, td.rng(0), k=10).numpy())        # same seed, same chains
    m = rbm.sample(5, td.rng(0), k=10, mean=True).numpy()
    assert m.shape == (5, 7) and ((m > 0) & (m < 1)).all()
    r = rbm.reconstruct(s)
    assert r.shape == (5, 7)
    v, h = rbm.gibbs(s, k=3, rng=td.rng(1))
    assert v.shape == (5, 7) and h.shape == (5, 4)
    with pytest.raises(ValueError, match=r"v must have shape \(N, D\) = \(N, 7\), got \(5, 6\)"):
        rbm.free_energy(np.zeros((5, 6)))


def test_gaussian_rbm_conditionals_and_partition_function_are_exact():
    D, H = 2, 3
    sigma = np.array([0.7, 1.3])
    rbm = make_rbm(D, H, scale=0.6, cls=GaussianBernoulliRBM, sigma=sigma)
    W, b, c = params(rbm)
    rng = np.random.default_rng(6)
    v = rng.normal(size=(9, D))
    h = all_binary(H)
    # p(h | v) from the joint energy equals the product of the lecture's sigmoids
    energies = np.stack([rbm.energy(v, np.repeat(hk[None], len(v), 0)).numpy() for hk in h], axis=1)
    p_h_given_v = np.exp(-energies - logsumexp(-energies, axis=1, keepdims=True))
    p_units = rbm.hidden_probs(v).numpy()
    np.testing.assert_allclose(p_h_given_v, np.prod(np.where(h[None] == 1, p_units[:, None], 1 - p_units[:, None]),
                                                    axis=2), rtol=1e-10)
    # -E(v, h) - log N(v; b + sigma W h, sigma^2) does not depend on v
    for hk in h:
        mean = rbm.visible_mean(hk[None]).numpy()[0]
        e = rbm.energy(v, np.repeat(hk[None], len(v), 0)).numpy()
        log_n = (-0.5 * ((v - mean) / sigma) ** 2).sum(1)
        assert np.ptp(-e - log_n) < 1e-10
    # log Z against a numerical integral of exp(-F(v)) on a grid
    grid = np.linspace(-12, 12, 801)
    vv = np.stack(np.meshgrid(grid, grid, indexing="ij"), -1).reshape(-1, 2)
    log_z_grid = logsumexp(-rbm.free_energy(vv).numpy()) + 2 * np.log(grid[1] - grid[0])
    assert rbm.log_partition().item() == pytest.approx(log_z_grid, rel=1e-8)


def test_gaussian_rbm_training_moves_toward_the_data():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(600, 3)) + np.array([1.0, -2.0, 0.5])
    rbm = GaussianBernoulliRBM(3, 4, rng=td.rng(0), dtype="float64")
    before = (rbm.log_prob(x).numpy()).mean()
    rbm.fit(x, epochs=10, batch_size=20, lr=0.05, k=1, persistent=False, rng=rng)
    after = (rbm.log_prob(x).numpy()).mean()
    assert after > before + 1.0, (before, after)


def test_paper_config_names_the_paper():
    assert PAPER_CONFIG["n_hidden"] == 500 and PAPER_CONFIG["cd_k"] == 25
    assert "Salakhutdinov & Murray 2008" in PAPER_CONFIG["paper"]


def test_plot_helpers_for_filters_and_samples(tmp_path):
    from tinydgm import plot
    rbm = make_rbm(16, 6)
    images = plot.filter_images(rbm.W.data, image_shape=(4, 4), n=5)
    assert images.shape == (5, 4, 4) and images.min() == 0 and images.max() == 1
    w0 = rbm.W.data[:, 0]
    np.testing.assert_allclose(images[0].ravel(), (w0 - w0.min()) / (w0.max() - w0.min()))
    assert (tmp_path / "f.png").exists() is False
    plot.rbm_filters(rbm, tmp_path / "f.png", image_shape=(4, 4))
    plot.rbm_samples(rbm, tmp_path / "s.png", n=4, rng=td.rng(0), k=5, image_shape=(4, 4))
    assert (tmp_path / "f.png").stat().st_size > 0 and (tmp_path / "s.png").stat().st_size > 0
    with pytest.raises(ValueError, match=r"W must have shape \(D, H\) with D = prod\(image_shape\) = 784"):
        plot.filter_images(rbm.W.data)


@pytest.mark.parametrize("parallel", [False, True])
def test_fit_on_sparse_data_same_seed_same_model_on_either_product_path(monkeypatch, parallel):
    """PCD on MNIST-like sparse gray levels: the zero-skipping products (rbm_gibbs.SPARSE_BELOW,
    SPARSE_HIDDEN_BELOW) and BLAS train the same float64 model from the same seed (same chains, parameters to rounding);
    with SPARSE_PARALLEL the result does not depend on the number of Numba threads."""
    numba = pytest.importorskip("numba")
    rng = np.random.default_rng(8)
    x = np.where(rng.random((300, 40)) < 0.15, rng.random((300, 40)), 0.0)
    monkeypatch.setattr(rbm_gibbs, "SPARSE_PARALLEL", parallel)
    runs = {}
    before = numba.get_num_threads()
    try:
        for name, below, threads in (("blas", 0.0, 1), ("sparse", 1.01, 1), ("sparse, 2 threads", 1.01, 2)):
            monkeypatch.setattr(rbm_gibbs, "SPARSE_BELOW", below)
            monkeypatch.setattr(rbm_gibbs, "SPARSE_HIDDEN_BELOW", below)     # h W^T too
            numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
            rbm = BernoulliRBM(40, 12, rng=td.rng(0), dtype="float64")
            rbm.b.data[...] = -2.0                          # sparse chains from the first step on
            rbm.fit(x, epochs=2, batch_size=50, lr=0.1, k=1, persistent=True, rng=np.random.default_rng(0))
            runs[name] = (rbm.h_chain.copy(),) + tuple(a.copy() for a in params(rbm))
    finally:
        numba.set_num_threads(before)
    for name in ("sparse", "sparse, 2 threads"):
        np.testing.assert_array_equal(runs[name][0], runs["blas"][0])      # same chains
        for got, want in zip(runs[name][1:], runs["blas"][1:]):
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    for got, want in zip(runs["sparse, 2 threads"], runs["sparse"]):
        np.testing.assert_array_equal(got, want)
    assert not np.allclose(runs["blas"][1], BernoulliRBM(40, 12, rng=td.rng(0), dtype="float64").W.data)   # it trained


@pytest.mark.parametrize("momentum", [0.0, 0.5])          # 0: the old velocity is not read
@pytest.mark.parametrize("parallel", [False, True])
@pytest.mark.parametrize("persistent", [False, True])
def test_step_with_the_fused_weight_update_equals_gradient_then_update(monkeypatch, persistent, parallel, momentum):
    # sparse binary data (10% ones) takes the fused path: W's rows are updated as its gradient
    # rows are computed; the result must equal cd_gradient followed by sgd_update exactly
    monkeypatch.setattr(rbm_gibbs, "SPARSE_PARALLEL", parallel)
    rng = np.random.default_rng(0)
    v = (rng.random((20, 30)) < 0.1).astype(np.float64)
    fused = BernoulliRBM(30, 12, rng=np.random.default_rng(1), dtype="float64", init_std=0.3)
    plain = BernoulliRBM(30, 12, rng=np.random.default_rng(1), dtype="float64", init_std=0.3)
    for model in (fused, plain):
        model.b.data[...] = -3.0                                  # sparse chains too: p(v = 1 | h) ~ 5%
    velocity = {name: np.zeros_like(getattr(plain, name).data) for name in ("W", "b", "c")}
    for step in range(3):
        grad = fused.step(v, lr=0.05, k=2, persistent=persistent, momentum=momentum, weight_decay=0.01,
                          rng=np.random.default_rng(step))
        assert grad["W"] is None                                    # the fused path was taken
        ref = plain.cd_gradient(v, k=2, rng=np.random.default_rng(step), persistent=persistent)
        for name in ("W", "b", "c"):
            rbm_gibbs.sgd_update(getattr(plain, name).data, ref[name], velocity[name], 0.05, momentum,
                                 0.01 if name == "W" else 0.0)
        for name in ("W", "b", "c"):
            np.testing.assert_array_equal(getattr(fused, name).data, getattr(plain, name).data)



SHARED = DATA_DIR


@pytest.mark.skipif(not (SHARED / "binarized_mnist.npz").is_file(),
                    reason=f"binarized_mnist.npz is not here ({SHARED}: shared/data, or set TINYDGM_DATA)")
def test_reproduce_runs_a_tiny_configuration():
    result = reproduce(epochs=2, k=2, n_hidden=10, n_train=500, n_test=200, ais_runs=5, ais_betas=50,
                       data_path=str(SHARED), progress=False, return_model=True)
    rbm = result["model"]
    assert isinstance(rbm, BernoulliRBM) and rbm.n_hidden == 10
    assert -543.5 < result["test_log_likelihood"] < 0          # finite, better than fair coins (784 ln 2 nats)
    # the training-set figure: the first (here all 500) training images under the same AIS log Z
    x_train = load_binarized_mnist(path=str(SHARED))["train"][:500].astype("float32")
    assert result["train_log_likelihood"] == pytest.approx(
        evaluate.rbm_test_log_likelihood(rbm.W.data, rbm.b.data, rbm.c.data, x_train, result["log_z"]), rel=1e-9)
    assert result["config"]["epochs"] == 2 and result["config"]["cd_k"] == 2 and result["config"]["n_train"] == 500
    assert "model" not in reproduce(epochs=1, n_hidden=4, n_train=200, n_test=50, ais_runs=2, ais_betas=5,
                                    data_path=str(SHARED), progress=False)
