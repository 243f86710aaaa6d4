"""The energy models' ``loss`` (what train.fit minimises) is a contrastive surrogate whose
engine gradient is minus the CD / PCD / moment-matching estimate of the likelihood gradient:
checked against the readable statistics (rbm_gibbs.cd_statistics, DBM.gradient, the
exponential family's moments) on the same random numbers; train.fit with SGD reproduces the
RBM's own CD update; the exponential family's sampler faces its exact distribution."""
import numpy as np
import pytest

from contracts import all_binary, chi_square_pvalue
import tinydgm as td
from tinydgm import optim
from tinydgm.kernels import rbm_gibbs
from tinydgm.models.energy.dbm import DBM
from tinydgm.models.energy.dbn import DBN
from tinydgm.models.energy.ebm import ExponentialFamily, ising_chain_statistics
from tinydgm.models.energy.rbm import BernoulliRBM, GaussianBernoulliRBM
from tinydgm.train import fit


def random_rbm(cls, D, H, seed=0, **kwargs):
    rbm = cls(D, H, rng=td.rng(seed), dtype="float64", **kwargs)
    rng = np.random.default_rng(seed)
    rbm.W.data[...] = rng.normal(size=(D, H))
    rbm.b.data[...] = rng.normal(size=D)
    rbm.c.data[...] = rng.normal(size=H)
    return rbm


def batch(cls, n, D, seed=1):
    rng = np.random.default_rng(seed)
    if cls is GaussianBernoulliRBM:
        return rng.normal(size=(n, D))
    return (rng.random((n, D)) < 0.4).astype(np.float64)


@pytest.mark.parametrize("cls", [BernoulliRBM, GaussianBernoulliRBM])
@pytest.mark.parametrize("persistent", [False, True])
def test_rbm_loss_gradient_is_minus_the_cd_statistics(cls, persistent):
    D, H, n, k = 5, 4, 9, 3
    rbm = random_rbm(cls, D, H, k=k, persistent=persistent)
    v = batch(cls, n, D)
    h_chain = None
    if persistent:                                    # chains that have run before
        h_chain = (np.random.default_rng(2).random((n, H)) < 0.5).astype(np.float64)
        rbm.h_chain = h_chain.copy()
    rbm.rng = td.rng(5)
    loss = rbm.loss(v)
    loss.backward()
    u_h, r_v = rbm_gibbs.draw_noise(td.rng(5), k, n, D, H, rbm.visible, "float64", start_hidden=not persistent)
    stats = rbm_gibbs.cd_statistics(rbm.W.data, rbm.b.data, rbm.c.data, v, u_h, r_v, h_chain, rbm.visible,
                                    rbm._sigma())
    np.testing.assert_allclose(-rbm.W.grad.numpy(), stats.vh_data - stats.vh_model, atol=1e-12)
    np.testing.assert_allclose(-rbm.c.grad.numpy(), stats.h_data - stats.h_model, atol=1e-12)
    db = stats.v_data - stats.v_model       # Gaussian: statistics of v / sigma, and dF/db = -(v - b) / sigma^2
    np.testing.assert_allclose(-rbm.b.grad.numpy(), db if cls is BernoulliRBM else db / rbm.sigma, atol=1e-12)
    if persistent:
        np.testing.assert_array_equal(rbm.h_chain, stats.h_chain)    # the chains moved on


def test_fit_with_sgd_on_the_rbm_loss_takes_the_rbms_own_cd_steps():
    x = batch(BernoulliRBM, 40, 6)
    ours, theirs = random_rbm(BernoulliRBM, 6, 3), random_rbm(BernoulliRBM, 6, 3)
    fit(ours, x, optim.SGD(ours.parameters(), lr=0.05), epochs=2, batch_size=10, rng=td.rng(3), shuffle=False,
        progress=False)
    theirs.fit(x, epochs=2, batch_size=10, lr=0.05, k=1, persistent=False, momentum=0.0, rng=td.rng(3))
    for name in ("W", "b", "c"):
        np.testing.assert_allclose(getattr(ours, name).numpy(), getattr(theirs, name).numpy(), atol=1e-12)


def test_fit_lends_its_generator_to_the_chains():
    # the RBM's rng attribute is None (the default generator): fit points it at the run's
    # generator, so the same seed gives the same parameters whatever the default generator did
    x = batch(BernoulliRBM, 40, 6)
    results = []
    for default_seed in (0, 1):
        td.seed(default_seed)
        rbm = random_rbm(BernoulliRBM, 6, 3)
        fit(rbm, x, optim.SGD(rbm.parameters(), lr=0.05), epochs=1, batch_size=10, seed=8, progress=False)
        assert rbm.rng is None                        # given back
        results.append(rbm.W.numpy())
    np.testing.assert_array_equal(results[0], results[1])


def test_dbn_loss_is_each_layers_cd_surrogate_on_the_probabilities_below():
    dbn = DBN([6, 4, 3], rng=td.rng(0), dtype="float64")
    v = batch(BernoulliRBM, 8, 6)
    dbn.rbms[0].rng, dbn.rbms[1].rng = td.rng(1), td.rng(2)
    dbn.loss(v).backward()
    bottom, top = random_rbm(BernoulliRBM, 6, 4), random_rbm(BernoulliRBM, 4, 3)
    for mine, theirs in ((dbn.rbms[0], bottom), (dbn.rbms[1], top)):
        for name in ("W", "b", "c"):
            getattr(theirs, name).data[...] = getattr(mine, name).data
    with td.no_grad():
        h1 = bottom.hidden_probs(v).numpy()
    bottom.rng, top.rng = td.rng(1), td.rng(2)
    bottom.loss(v).backward()
    top.loss(h1).backward()
    for mine, theirs in ((dbn.rbms[0], bottom), (dbn.rbms[1], top)):
        for name in ("W", "b", "c"):
            np.testing.assert_allclose(getattr(mine, name).grad.numpy(), getattr(theirs, name).grad.numpy(),
                                       atol=1e-12)


def test_dbm_loss_gradient_is_minus_its_gradient_estimate():
    dbm = DBM(5, 4, 3, rng=td.rng(0), dtype="float64", k=2)
    rng = np.random.default_rng(0)
    for p in dbm.parameters():
        p.data[...] = rng.normal(size=p.shape)
    v = batch(BernoulliRBM, 7, 5)
    twin = DBM(5, 4, 3, rng=td.rng(0), dtype="float64")
    twin.load_state_dict(dbm.state_dict())
    dbm.rng = td.rng(4)
    dbm.loss(v).backward()
    expected = twin.gradient(v, k=2, rng=td.rng(4))
    for name, value in expected.items():
        np.testing.assert_allclose(-getattr(dbm, name).grad.numpy(), value, atol=1e-12, err_msg=name)
    for mine, theirs in zip(dbm.chains, twin.chains):
        np.testing.assert_array_equal(mine, theirs)


def ising(**kwargs):
    model = ExponentialFamily(ising_chain_statistics, 4, 7, dtype="float64", **kwargs)
    model.theta.data[...] = np.random.default_rng(0).normal(size=7)
    return model


def test_exponential_family_loss_gradient_is_model_minus_data_moments():
    model, twin = ising(n_chains=30, n_steps=6), ising()
    x = batch(BernoulliRBM, 20, 4)
    model.rng = td.rng(9)
    model.loss(x).backward()
    expected = twin.data_moments(x) - twin.mcmc_moments(30, 6, td.rng(9))     # the ascent direction
    np.testing.assert_allclose(-model.theta.grad.numpy(), expected, atol=1e-12)


def test_exponential_family_samples_follow_the_exact_distribution():
    model = ising()
    samples = model.sample(4000, rng=td.rng(1), n_steps=60).numpy()
    with td.no_grad():
        log_p = model.log_prob(all_binary(4)).numpy()
    assert chi_square_pvalue(samples, log_p) > 1e-3
