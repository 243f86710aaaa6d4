"""DBN (greedy RBM stacking) and DBM (mean-field + PCD) on small models where everything can
be enumerated."""
import itertools

import numpy as np
import pytest
from scipy.special import logsumexp

from contracts import all_binary, assert_normalised
import tinydgm as td
from tinydgm import evaluate
from tinydgm.models.energy.dbm import DBM
from tinydgm.models.energy.dbn import DBN


def toy_data(n=2000, d=12, seed=0):
    """Four random binary prototypes with 5% of the bits flipped."""
    rng = np.random.default_rng(seed)
    protos = (rng.random((4, d)) < 0.5).astype(float)
    x = protos[rng.integers(0, 4, n)]
    return np.abs(x - (rng.random(x.shape) < 0.05))


def randomise(module, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    for p in module.parameters():
        p.data[...] = scale * rng.normal(size=p.shape)
    return module


# ----------------------------------------------------------------------------- DBN

def test_dbn_tied_to_its_first_rbm_has_the_rbms_likelihood_and_a_tight_bound():
    dbn = DBN([7, 5, 7], rng=td.rng(0), dtype="float64")
    randomise(dbn.rbms[0], seed=1)
    assert dbn.tie_to_layer_below(1)
    v = all_binary(7)
    rbm_log_p = dbn.rbms[0].log_prob(v).numpy()
    np.testing.assert_allclose(dbn.log_prob(v).numpy(), rbm_log_p, atol=1e-10)
    np.testing.assert_allclose(dbn.variational_bound(v).numpy(), rbm_log_p, atol=1e-10)


def test_dbn_log_prob_is_normalised_and_bounded_by_the_variational_bound():
    dbn = randomise(DBN([6, 4, 5], rng=td.rng(0), dtype="float64"), seed=2)
    log_p = assert_normalised(lambda v: dbn.log_prob(v).numpy(), 6, atol=1e-10)
    bound = dbn.variational_bound(all_binary(6)).numpy()
    assert (bound <= log_p + 1e-10).all() and (log_p - bound).max() > 1e-3


def test_greedy_training_of_the_second_layer_raises_the_bound():
    x = toy_data()
    dbn = DBN([12, 6, 12], rng=td.rng(0), dtype="float64")
    rng = np.random.default_rng(1)
    dbn.fit(x, epochs=20, batch_size=50, lr=0.1, rng=rng, layers=[0])
    dbn.tie_to_layer_below(1)
    before = dbn.variational_bound(x).numpy().mean()       # = the first RBM's log-likelihood
    assert before == pytest.approx(dbn.rbms[0].log_prob(x).numpy().mean(), abs=1e-9)
    dbn.fit(x, epochs=20, batch_size=50, lr=0.01, rng=rng, layers=[1])
    after = dbn.variational_bound(x).numpy().mean()
    assert after > before + 0.3, (before, after)
    assert dbn.log_prob(x).numpy().mean() >= after


def test_dbn_sampling_shapes():
    dbn = DBN([12, 6, 5, 4], rng=td.rng(0))
    dbn.fit(toy_data(200), epochs=1, batch_size=50, rng=np.random.default_rng(0))
    mean = dbn.sample(7, td.rng(0), k=20).numpy()
    binary = dbn.sample(7, td.rng(0), k=20, mean=False).numpy()
    assert mean.shape == binary.shape == (7, 12) and mean.dtype == np.float32
    assert ((mean > 0) & (mean < 1)).all() and set(np.unique(binary)) <= {0.0, 1.0}
    assert [p.shape for p in dbn.hidden_probs(toy_data(3))] == [(3, 6), (3, 5), (3, 4)]
    with pytest.raises(ValueError, match="exact evaluation is written for two RBMs"):
        dbn.log_prob(toy_data(3))


# ----------------------------------------------------------------------------- DBM

def small_dbm(seed=0):
    return randomise(DBM(5, 4, 3, rng=td.rng(0), dtype="float64"), seed=seed)


def test_dbm_exact_log_partition_and_log_prob():
    dbm = small_dbm()
    states = np.array(list(itertools.product([0, 1], repeat=12)), float)
    neg_energy = -dbm.energy(states[:, :5], states[:, 5:9], states[:, 9:]).numpy()
    assert dbm.log_partition().item() == pytest.approx(logsumexp(neg_energy), rel=1e-12)
    log_p = assert_normalised(lambda v: dbm.log_prob(v).numpy(), 5, atol=1e-10)
    index = (states[:, :5] @ (1 << np.arange(4, -1, -1))).astype(int)
    brute = np.array([logsumexp(neg_energy[index == i]) for i in range(32)]) - logsumexp(neg_energy)
    np.testing.assert_allclose(log_p, brute, atol=1e-10)


def test_dbm_mean_field_reaches_its_fixed_point_and_bounds_the_likelihood():
    dbm = small_dbm(seed=1)
    v = all_binary(5)
    mu1, mu2, steps = dbm.mean_field(v, mf_steps=500, mf_tol=1e-12, return_steps=True)
    assert steps < 500
    W1, W2, c1, c2 = (p.data for p in (dbm.W1, dbm.W2, dbm.c1, dbm.c2))
    sig = lambda a: 1 / (1 + np.exp(-a))        # noqa: E731
    np.testing.assert_allclose(mu1, sig(c1 + v @ W1 + mu2 @ W2.T), atol=1e-10)
    np.testing.assert_allclose(mu2, sig(c2 + mu1 @ W2), atol=1e-10)
    # each pass of coordinate updates raises the bound; the bound stays below log p(v)
    log_z = dbm.log_partition().item()
    bounds = [dbm.mean_field_bound(v, *dbm.mean_field(v, mf_steps=s, mf_tol=0)).numpy() - log_z for s in range(6)]
    assert all((b1 >= b0 - 1e-10).all() for b0, b1 in zip(bounds, bounds[1:]))
    assert (bounds[-1] <= dbm.log_prob(v).numpy() + 1e-10).all()


def test_dbm_pcd_training_raises_the_likelihood():
    x = toy_data()
    dbm = DBM(12, 6, 4, rng=td.rng(0), dtype="float64")
    before = dbm.log_prob(x).numpy().mean()
    history = dbm.fit(x, epochs=15, batch_size=50, lr=0.05, rng=np.random.default_rng(0))
    after = dbm.log_prob(x).numpy().mean()
    assert after > before + 1.0, (before, after)
    assert len(history["time"]) == 15 and dbm.chains[0].shape == (50, 12)
    s = dbm.sample(6, td.rng(0), k=20).numpy()
    assert s.shape == (6, 12) and ((s > 0) & (s < 1)).all()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dbm_ais_agrees_with_the_exact_log_partition_within_its_error(seed):
    """AIS over h1 (v and h2 summed out) against the exact log Z enumerating h1's 2^8 states."""
    dbm = randomise(DBM(12, 8, 6, rng=td.rng(0), dtype="float64"), seed=seed)
    exact = dbm.log_partition().item()
    result = dbm.ais(n_runs=100, betas=evaluate.ais_betas("linear", n_betas=500),
                     base_visible_bias=dbm.b.data, rng=np.random.default_rng(seed))
    assert 0 < result["log_z_se"] < 0.1
    assert abs(result["log_z"] - exact) < 4 * result["log_z_se"], (result["log_z"], exact, result["log_z_se"])
    assert result["log_z_lower"] < exact < result["log_z_upper"]
    assert result["log_w"].shape == (100,) and result["n_betas"] == 500


def test_dbm_ais_is_exact_without_weights_and_hidden_biases():
    """W1 = W2 = 0, c1 = c2 = 0 and b_A = b: the target is the base, every weight is 1."""
    dbm = DBM(6, 4, 3, rng=td.rng(0), dtype="float64")
    for p in (dbm.W1, dbm.W2, dbm.c1, dbm.c2):
        p.data[...] = 0
    dbm.b.data[...] = np.random.default_rng(0).normal(size=6)
    result = dbm.ais(n_runs=10, betas=evaluate.ais_betas("linear", n_betas=5), base_visible_bias=dbm.b.data,
                     rng=np.random.default_rng(0))
    assert result["log_z"] == pytest.approx(dbm.log_partition().item(), abs=1e-12)
    assert result["log_z_se"] == pytest.approx(0, abs=1e-12)


def test_dbm_log_prob_bound_is_below_the_exact_log_prob():
    dbm = small_dbm(seed=2)
    v = (np.random.default_rng(4).random((50, 5)) < 0.5).astype(float)
    bound = dbm.log_prob_bound(v, dbm.log_partition().item()).numpy()
    exact = dbm.log_prob(v).numpy()
    assert (bound <= exact + 1e-10).all() and (exact - bound).mean() < 1.0


def test_dbm_ais_checks_its_arguments():
    dbm = small_dbm()
    with pytest.raises(ValueError, match="n_runs must be an int >= 2"):
        dbm.ais(n_runs=1)
    with pytest.raises(ValueError, match="betas must increase from 0 to 1"):
        dbm.ais(betas=np.array([0.0, 0.5, 0.4, 1.0]))
    with pytest.raises(ValueError, match=r"dbm_ais: need W1 \(D, H1\)"):
        evaluate.dbm_ais(dbm.W1.data, dbm.W2.data.T, dbm.b.data, dbm.c1.data, dbm.c2.data)
