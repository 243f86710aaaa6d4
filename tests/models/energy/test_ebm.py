"""Energy-based models: exponential family by moment matching (vs the exact MLE), the fully
visible Boltzmann machine (exact log Z, gradcheck, CD direction, PCD training), the neural EBM
(gradient w.r.t. x, MMD after training)."""
import contextlib

import numpy as np
import pytest

import tinydgm as td
from tinydgm.data.toy import sample_toy
from tinydgm.evaluate import binary_states, mmd
from tinydgm.models.energy import ebm
from contracts import assert_normalised, chi_square_pvalue


@contextlib.contextmanager
def one_blas_thread():
    """The neural EBM multiplies tiny matrices: multi-threaded BLAS only adds contention."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


# ----------------------------------------------------------------------------- exponential family

def ising_data(n=3000, D=4, seed=0):
    """Samples from an Ising chain with known theta, drawn exactly by enumeration."""
    rng = np.random.default_rng(seed)
    theta_true = np.array([0.5, -0.3, 0.2, -0.6, 0.8, -0.7, 0.4])
    states = binary_states(D, dtype=np.float64)
    log_p = ebm.ising_chain_statistics(states) @ theta_true
    p = np.exp(log_p - np.logaddexp.reduce(log_p))
    return states[rng.choice(len(states), n, p=p)]


def test_exponential_family_exact_mle_matches_moments():
    x = ising_data()
    model = ebm.ExponentialFamily(ebm.ising_chain_statistics, 4, 7, dtype="float64")
    model.fit_exact(x)
    np.testing.assert_allclose(model.exact_moments(), model.data_moments(x), atol=1e-10)
    assert_normalised(lambda s: model.log_prob(s).numpy(), 4)
    # the exact gradient of the mean log-likelihood is data moments minus model moments
    model.theta.data = np.array([0.1, 0.2, -0.1, 0.3, 0.0, 0.5, -0.2])
    (g,) = td.grad(model.log_prob(x).mean(), model.theta)
    np.testing.assert_allclose(g.numpy(), model.data_moments(x) - model.exact_moments(), atol=1e-12)


def test_exponential_family_moment_matching_with_mcmc_reaches_exact_mle():
    x = ising_data()
    exact = ebm.ExponentialFamily(ebm.ising_chain_statistics, 4, 7, dtype="float64")
    theta_mle = exact.fit_exact(x)
    model = ebm.ExponentialFamily(ebm.ising_chain_statistics, 4, 7, dtype="float64")
    history = model.fit_moment_matching(x, n_iters=1500, lr=0.5, n_chains=1000, n_steps=8, rng=np.random.default_rng(1))
    assert history.shape == (1500, 7)
    np.testing.assert_allclose(model.theta.numpy(), theta_mle, atol=0.06)
    np.testing.assert_allclose(model.exact_moments(), model.data_moments(x), atol=0.01)
    assert np.abs(model.theta.numpy() - theta_mle).max() < 0.1 * np.abs(theta_mle).max()


# ----------------------------------------------------------------------------- Boltzmann machine

def fvbm(D=5, seed=0, **kw):
    model = ebm.FullyVisibleBoltzmannMachine(D, rng=np.random.default_rng(seed), dtype="float64", **kw)
    rng = np.random.default_rng(seed + 1)
    model.W.data = rng.normal(0, 0.5, (D, D))
    model.b.data = rng.normal(0, 0.5, D)
    return model


def test_fvbm_exact_log_partition_and_normalisation():
    model = fvbm()
    np.testing.assert_allclose(model.log_partition().item(), model.log_partition_by_enumeration(), rtol=1e-12)
    assert_normalised(lambda s: model.log_prob(s).numpy(), 5)
    W = model.coupling().numpy()
    np.testing.assert_array_equal(W, W.T)
    np.testing.assert_array_equal(np.diag(W), 0)
    x = binary_states(5, dtype=np.float64)
    np.testing.assert_allclose(model.energy(x).numpy(), -((x @ W) * x).sum(1) - x @ model.b.numpy(), rtol=1e-12)


def test_fvbm_exact_log_likelihood_gradcheck_and_moment_form():
    model = fvbm(D=4)
    x = (np.random.default_rng(2).random((30, 4)) < 0.5).astype(np.float64)
    W = td.tensor(model.W.numpy(), dtype="float64", requires_grad=True)
    b = td.tensor(model.b.numpy(), dtype="float64", requires_grad=True)

    def mean_log_lik(W, b):
        model.W, model.b = W, b
        return model.log_prob(x).mean()

    td.gradcheck(mean_log_lik, [W, b])
    gW, gb = td.grad(mean_log_lik(W, b), [W, b])
    states = binary_states(4, dtype=np.float64)
    p = np.exp(model.log_prob(states).numpy())
    mask = 1 - np.eye(4)
    np.testing.assert_allclose(gW.numpy(), (x.T @ x / len(x) - (states.T * p) @ states) * mask, atol=1e-12)
    np.testing.assert_allclose(gb.numpy(), x.mean(0) - p @ states, atol=1e-12)


@pytest.mark.parametrize("persistent", [False, True])
def test_fvbm_cd_gradient_points_along_exact_gradient(persistent):
    D = 5
    data_model = fvbm(D, seed=3)
    x = data_model.sample(2000, np.random.default_rng(4), n_sweeps=30).numpy()
    model = fvbm(D, seed=5, k=1, persistent=persistent, n_chains=2000)
    gW, gb = td.grad(model.log_prob(x).mean(), [model.W, model.b])
    exact = np.concatenate([gW.numpy().ravel(), gb.numpy()])
    rng = np.random.default_rng(6)
    cd = [np.concatenate([a.ravel(), c]) for a, c in (model.cd_gradient(x, rng) for _ in range(5 if persistent else 1))]
    cd = cd[-1]
    cosine = cd @ exact / np.linalg.norm(cd) / np.linalg.norm(exact)
    assert cosine > 0.5, cosine
    # the surrogate loss's gradient is minus the CD estimate (same negative samples)
    x_model = model.negative_samples(x, np.random.default_rng(7))
    lW, lb = td.grad(model.contrastive_loss(x, x_model), [model.W, model.b])
    pos, neg = model.statistics(x), model.statistics(x_model)
    np.testing.assert_allclose(-lW.numpy(), pos[0] - neg[0], atol=1e-12)
    np.testing.assert_allclose(-lb.numpy(), pos[1] - neg[1], atol=1e-12)


def test_fvbm_pcd_training_increases_exact_log_likelihood_and_samples_are_exact():
    D = 5
    data_model = fvbm(D, seed=8)
    x = data_model.sample(2000, np.random.default_rng(9), n_sweeps=30).numpy()
    model = ebm.FullyVisibleBoltzmannMachine(D, persistent=True, n_chains=200, rng=np.random.default_rng(0),
                                             dtype="float64")
    before = model.log_prob(x).mean().item()
    history = td.train.fit(model, x, td.optim.Adam(model.parameters(), lr=0.05), epochs=4, batch_size=200, seed=1,
                           progress=False)
    after = model.log_prob(x).mean().item()
    best = data_model.log_prob(x).mean().item()
    assert after > before + 0.5 * (best - before), (before, after, best)
    assert np.isfinite(history["loss"]).all()
    s = model.sample(3000, np.random.default_rng(10), n_sweeps=30).numpy()
    assert chi_square_pvalue(s, model.log_prob(binary_states(D, dtype=np.float64)).numpy()) > 1e-3


# ----------------------------------------------------------------------------- neural EBM

def test_neural_ebm_gradient_wrt_x_gradcheck():
    model = ebm.NeuralEBM(2, hidden=(8, 8), rng=np.random.default_rng(0), dtype="float64")
    x = td.tensor(np.random.default_rng(1).normal(0, 1, (6, 2)), dtype="float64", requires_grad=True)
    td.gradcheck(model.f, [x])
    td.gradgradcheck(model.f, [x])
    np.testing.assert_allclose(model.energy(x).numpy(), -model.f(x).numpy())


def test_neural_ebm_loss_is_du_mordatch():
    model = ebm.NeuralEBM(2, hidden=(8,), n_steps=3, alpha=0.3, rng=np.random.default_rng(0), dtype="float64")
    x = np.random.default_rng(1).normal(0, 1, (10, 2))
    model.rng = np.random.default_rng(2)
    loss = model.loss(x)
    model.rng = np.random.default_rng(2)
    model.buffer = None
    x_model = model.negative_samples(10, model.rng)
    f_d, f_m = model.f(x).numpy(), model.f(x_model).numpy()
    want = f_m.mean() - f_d.mean() + 0.3 * ((f_d ** 2).mean() + (f_m ** 2).mean())
    assert loss.item() == pytest.approx(want, rel=1e-10)
    assert model.buffer.shape == (model.buffer_size, 2)


def test_neural_ebm_samples_match_target_better_than_initialisation():
    """After 150 PCD steps (Langevin chains) on 8 Gaussians, the squared MMD (Gaussian kernel,
    bandwidth 1) between the model's samples and fresh data is below half of that of the
    initialisation (chains from the uniform start, through the untrained model)."""
    with one_blas_thread():
        model, losses = _fit_on_eight_gaussians(n_iters=150, batch_size=128, seed=0)
        rng = np.random.default_rng(11)
        data = sample_toy("eight_gaussians", 400, rng)
        untrained = ebm.NeuralEBM(2, rng=td.rng(0))
        initial = untrained.sample(400, np.random.default_rng(12), n_steps=50).numpy()
        samples = model.sample(400, np.random.default_rng(12), n_steps=50).numpy()
    before, after = mmd(initial, data, 1.0), mmd(samples, data, 1.0)
    assert after < 0.5 * before, (before, after)
    assert len(losses) == 150 and np.isfinite(losses).all()


def _fit_on_eight_gaussians(n_iters, batch_size, seed):
    """PCD on fresh draws of the toy each step, Adam without momentum (Du & Mordatch)."""
    rng = td.rng(seed)
    model = ebm.NeuralEBM(2, rng=rng)
    model.rng = rng
    optimizer = td.optim.Adam(model.parameters(), lr=5e-3, betas=(0.0, 0.999))
    losses = []
    for _ in range(n_iters):
        optimizer.zero_grad()
        loss = model.loss(td.tensor(sample_toy("eight_gaussians", batch_size, rng), dtype=model.dtype))
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return model, losses


@pytest.mark.parametrize("sampler", ["mh", "mala"])
def test_neural_ebm_other_samplers_run(sampler):
    model = ebm.NeuralEBM(2, hidden=(8,), sampler=sampler, n_steps=4, buffer_size=50, rng=np.random.default_rng(0))
    model.rng = np.random.default_rng(1)
    loss = model.loss(np.zeros((16, 2), dtype=np.float32))
    loss.backward()
    assert np.isfinite(loss.item()) and 0 <= model.last_accept_rate <= 1
    assert model.net[0].weight.grad is not None

