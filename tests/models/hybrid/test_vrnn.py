"""The variational RNN: with a zero-width latent its ELBO (and its importance estimate and
samples) is the RNN baseline's exact log-likelihood; per-step KLs against Monte Carlo; the
exact log p(x) of a tiny model by quadrature over z_1, z_2 against the importance-sampled
estimate, the ELBO below it, and the sampler against the exact distribution (chi-square);
causality of the per-step terms from the engine's Jacobian; gradcheck and gradgradcheck of
the ELBO with the noise held fixed; errors."""
import numpy as np
import pytest

import tinydgm as td
from contracts import all_binary, chi_square_pvalue, dependency_matrix
from tinydgm.data import switching_walk
from tinydgm.models.autoregressive.rnn import AutoregressiveRNN
from tinydgm.models.hybrid.vrnn import VRNN


def tiny_vrnn(seed=0, **kw):
    args = dict(x_dim=2, z_dim=1, hidden_size=4, phi_size=4, length=3, rng=np.random.default_rng(seed),
                dtype="float64")
    args.update(kw)
    return VRNN(**args)


def walk(n, length, seed=0):
    return switching_walk(n, length, rng=seed, dtype="float64")


def parameter_fn(model, fn):
    """(fn as a function of every parameter, the parameters as float64 leaves)."""
    owners = [(module, name) for module in model.modules() for name, value in module.__dict__.items()
              if isinstance(value, td.nn.Parameter) and value.size > 0]
    values = [td.tensor(getattr(m, name).numpy(), dtype="float64", requires_grad=True) for m, name in owners]

    def call(*params):
        saved = [getattr(m, name) for m, name in owners]
        for (m, name), p in zip(owners, params):
            object.__setattr__(m, name, p)
        try:
            return fn()
        finally:
            for (m, name), p in zip(owners, saved):
                object.__setattr__(m, name, p)
    return call, values


# ----------------------------------------------------------------------------- zero-width latent

@pytest.mark.parametrize("output", ["gaussian", "bernoulli"])
def test_zero_width_latent_reduces_to_the_rnn_log_likelihood(output):
    vrnn = tiny_vrnn(z_dim=0, output=output, length=6)
    rnn = AutoregressiveRNN(2, hidden_size=4, phi_size=4, output=output, length=6, dtype="float64")
    shared = {name: value for name, value in vrnn.state_dict().items() if name in rnn.state_dict()}
    assert set(shared) == set(rnn.state_dict())                     # the RNN is the VRNN without z
    rnn.load_state_dict(shared)
    x = walk(5, 6) if output == "gaussian" else (np.random.default_rng(1).random((5, 6, 2)) < 0.4) * 1.0
    log_px_z, kl = vrnn.elbo_terms(x)
    np.testing.assert_array_equal(kl.numpy(), 0.0)
    np.testing.assert_allclose(log_px_z.numpy(), rnn.log_prob_steps(x).numpy(), rtol=1e-12)
    np.testing.assert_allclose(vrnn.elbo(x).numpy(), rnn.log_prob(x).numpy(), rtol=1e-12)
    np.testing.assert_allclose(vrnn.log_prob_estimate(x, k=3).numpy(), rnn.log_prob(x).numpy(), rtol=1e-12)
    np.testing.assert_array_equal(vrnn.sample(4, rng=td.rng(2)).numpy(), rnn.sample(4, rng=td.rng(2)).numpy())


# ----------------------------------------------------------------------------- the ELBO's terms

def test_per_step_kls_against_monte_carlo():
    model = tiny_vrnn(z_dim=3, length=4, seed=1)
    x = walk(2, 4, seed=2)
    eps = np.random.default_rng(3).standard_normal((2, 4, 3))
    _, kl = model.elbo_terms(x, eps=eps)
    pairs = model.step_distributions(x, eps=eps)
    assert len(pairs) == 4
    rng = np.random.default_rng(4)
    for t, (q, p) in enumerate(pairs):
        z = q.sample((20000,), rng=rng)                                   # (M, N, z_dim)
        log_ratio = (q.log_prob(z) - p.log_prob(z)).sum(axis=-1).numpy()
        estimate, se = log_ratio.mean(axis=0), log_ratio.std(axis=0) / np.sqrt(20000)
        assert np.all(np.abs(kl.numpy()[:, t] - estimate) < 4 * se + 1e-9), (t, kl.numpy()[:, t], estimate, se)
    assert kl.numpy().min() > 0


def test_elbo_is_the_sum_of_its_per_step_terms_and_uses_the_noise():
    model = tiny_vrnn(seed=5)
    x = walk(3, 3, seed=6)
    eps = np.random.default_rng(7).standard_normal((3, 3, 1))
    log_px_z, kl = model.elbo_terms(x, eps=eps)
    np.testing.assert_allclose(model.elbo(x, eps=eps).numpy(), (log_px_z - kl).numpy().sum(axis=1), rtol=1e-13)
    assert not np.allclose(model.elbo(x, eps=eps + 1).numpy(), model.elbo(x, eps=eps).numpy())


def test_per_step_terms_depend_only_on_the_past():
    """log p(x_t | z_<=t, x_<t) and the KL at step t, with the noise fixed, depend on x_<=t only."""
    model = tiny_vrnn(length=4, seed=8)
    eps = np.random.default_rng(9).standard_normal((2, 4, 1))
    for k in range(2):
        dep = dependency_matrix(lambda t: model.elbo_terms(t, eps=eps)[k], walk(2, 4, seed=10))   # (T, T x_dim)
        step_of_input = np.repeat(np.arange(4), 2)
        for t in range(4):
            assert not dep[t, step_of_input > t].any(), f"term {k} of step {t} sees the future"
            assert dep[t, step_of_input == t].any()                  # x_t enters through q (and p(x_t|...))
        assert dep[3, step_of_input < 3].any()                       # the state carries the past


# ----------------------------------------------------------------------------- exact log p(x) by quadrature

def exact_log_prob(model, x, half_width=8.0, n_grid=161):
    """log p(x) for T = 2, z_dim = 1: log of the integral of exp(log_joint(x, (z_1, z_2)))
    over a grid of (z_1, z_2) (trapezoid rule; the integrand is smooth and its tails vanish)."""
    z = np.linspace(-half_width, half_width, n_grid)
    dz = z[1] - z[0]
    weights = np.full(n_grid, dz)
    weights[[0, -1]] = dz / 2
    z1, z2 = np.meshgrid(z, z, indexing="ij")
    zz = np.stack([z1.ravel(), z2.ravel()], axis=1)[:, :, None]          # (G, 2, 1)
    log_w = np.log(np.outer(weights, weights).ravel())
    out = []
    for seq in x:
        xs = np.broadcast_to(seq, (len(zz),) + seq.shape)
        with td.no_grad():
            log_joint = model.log_joint(xs, zz).numpy()
        out.append(np.logaddexp.reduce(log_joint + log_w))
    return np.array(out)


@pytest.fixture(scope="module")
def binary_vrnn():
    model = tiny_vrnn(output="bernoulli", length=2, seed=11)
    x_all = all_binary(4).reshape(16, 2, 2)
    return model, x_all, exact_log_prob(model, x_all)


def test_quadrature_normalises_over_all_binary_sequences(binary_vrnn):
    _, _, log_p = binary_vrnn
    assert abs(np.exp(log_p).sum() - 1) < 1e-6
    assert log_p.std() > 0.1


def test_importance_estimate_approaches_the_exact_log_likelihood(binary_vrnn):
    model, x_all, log_p = binary_vrnn
    with td.no_grad():
        estimate = td.evaluate.importance_log_likelihood(model, x_all, k=4000, chunk_size=1000, rng=td.rng(12))
        elbo = np.mean([model.elbo(x_all, rng=td.rng(13 + r)).numpy() for r in range(200)], axis=0)
    err = estimate.log_px.numpy() - log_p
    assert np.all(np.abs(err) < 4 * estimate.stderr.numpy() + 2e-3), (err, estimate.stderr.numpy())
    assert np.all(elbo < log_p)                                        # the ELBO is a lower bound
    assert np.all(log_p - elbo > 1e-3)                                 # with a gap (q is not the posterior)


def test_samples_follow_the_exact_distribution(binary_vrnn):
    model, _, log_p = binary_vrnn
    samples = model.sample(20000, rng=td.rng(14)).numpy()
    assert samples.shape == (20000, 2, 2) and set(np.unique(samples)) == {0.0, 1.0}
    assert chi_square_pvalue(samples.reshape(-1, 4), log_p) > 0.001
    other = exact_log_prob(tiny_vrnn(output="bernoulli", length=2, seed=15), all_binary(4).reshape(16, 2, 2))
    assert chi_square_pvalue(samples.reshape(-1, 4), other) < 1e-6   # the test has power


# ----------------------------------------------------------------------------- derivatives

def test_elbo_gradcheck_and_gradgradcheck_with_the_noise_fixed():
    model = tiny_vrnn(hidden_size=3, phi_size=3, seed=16)
    x = walk(2, 2, seed=17)
    eps = np.random.default_rng(18).standard_normal((2, 2, 1))
    fn, params = parameter_fn(model, lambda: model.elbo(x, eps=eps))
    td.gradcheck(fn, params)
    td.gradgradcheck(fn, params)
    x_leaf = td.tensor(x, dtype="float64", requires_grad=True)
    td.gradcheck(lambda x: model.elbo(x, eps=eps), [x_leaf])


def test_importance_weights_gradcheck():
    model = tiny_vrnn(hidden_size=3, phi_size=3, seed=19)
    x = walk(2, 3, seed=20)
    eps = np.random.default_rng(21).standard_normal((4, 2, 3, 1))
    fn, params = parameter_fn(model, lambda: model.log_importance_weights(x, 4, eps=eps))
    td.gradcheck(fn, params)


def test_training_raises_the_elbo_on_the_switching_walk():
    td.seed(0)
    model = tiny_vrnn(hidden_size=8, phi_size=8, length=6, seed=22)
    x = np.diff(walk(64, 7, seed=23), axis=1)                          # increments: what the walk draws
    before = model.elbo(x, rng=td.rng(24)).numpy().mean()
    td.train.fit(model, x, td.optim.Adam(model.parameters(), lr=1e-2), epochs=8, batch_size=16, seed=0,
                 progress=False)
    after = model.elbo(x, rng=td.rng(24)).numpy().mean()
    assert after > before + 5, (before, after)


def test_bounds_and_samples_stay_on_the_models_device(device):
    x = walk(3, 3, seed=25)
    eps = np.random.default_rng(26).standard_normal((3, 3, 1))
    cpu, here = tiny_vrnn(seed=27), tiny_vrnn(seed=27, device=device)
    elbo = here.elbo(td.tensor(x, dtype="float64", device=device), eps=td.tensor(eps, dtype="float64", device=device))
    assert elbo.device == device
    np.testing.assert_allclose(elbo.numpy(), cpu.elbo(x, eps=eps).numpy(), rtol=1e-12)
    assert here.sample(2, rng=td.rng(0)).device == device
    assert here.log_prob_estimate(x, k=4, rng=td.rng(1)).device == device


def test_errors_name_the_argument():
    model = tiny_vrnn()
    with pytest.raises(ValueError, match=r"x must have shape \(N, T, x_dim\) = \(N, T, 2\)"):
        model.elbo(np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"eps must have shape \(3, 4, 1\)"):
        model.elbo(np.zeros((3, 4, 2)), eps=np.zeros((3, 4, 2)))
    with pytest.raises(ValueError, match=r"z must have shape"):
        model.log_joint(np.zeros((3, 4, 2)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="z_dim must be an int >= 0"):
        VRNN(2, -1)
    assert model.sample(2, rng=td.rng(0), length=7).shape == (2, 7, 2)
