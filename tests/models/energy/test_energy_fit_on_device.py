"""The energy models' own training loops on the "cuda" device (a GPU, else the CuPy stand-in,
tinydgm.standin): CD/PCD fit of the RBMs, greedy DBN training, DBM pretraining and PCD fit,
moment matching of the exponential family, and reconstructions. The protocol table trains
them through their surrogate losses only; these loops have device branches of their own.
Each compares the device run with the CPU run from the same initial parameters and the same
CPU generator."""
import numpy as np
import pytest

import tinydgm as td
from tinydgm.models import DBM, DBN, BernoulliRBM, ExponentialFamily, GaussianBernoulliRBM
from tinydgm.models.energy.ebm import ising_chain_statistics

TOL = dict(rtol=1e-8, atol=1e-10)


def _binary(n, d, seed=0):
    return (np.random.default_rng(seed).random((n, d)) < 0.35).astype(np.float64)


def _assert_same_parameters(cpu, dev, device):
    for (name, p_cpu), p_dev in zip(cpu.named_parameters(), dev.parameters()):
        assert p_dev.device == device, name
        np.testing.assert_allclose(p_dev.numpy(), p_cpu.numpy(), err_msg=name, **TOL)


FITS = {
    "BernoulliRBM CD-1": (lambda: BernoulliRBM(6, 4, rng=td.rng(0), dtype="float64"),
                          lambda m, x, rng: m.fit(x, epochs=2, batch_size=8, lr=0.1, k=1, persistent=False,
                                                  momentum=0.5, weight_decay=1e-3, rng=rng, shuffle=True)),
    "BernoulliRBM PCD-2": (lambda: BernoulliRBM(6, 4, rng=td.rng(0), dtype="float64"),
                           lambda m, x, rng: m.fit(x, epochs=2, batch_size=8, k=2, persistent=True, rng=rng)),
    "GaussianBernoulliRBM": (lambda: GaussianBernoulliRBM(6, 3, rng=td.rng(0), dtype="float64"),
                             lambda m, x, rng: m.fit(x - 0.3, epochs=2, batch_size=8, lr=0.01, rng=rng)),
    "DBN": (lambda: DBN([6, 4, 3], rng=td.rng(0), dtype="float64"),
            lambda m, x, rng: m.fit(x, epochs=2, batch_size=8, rng=rng, propagate="samples")),
    "DBM pretrain and fit": (lambda: DBM(6, 4, 3, rng=td.rng(0), dtype="float64"),
                             lambda m, x, rng: (m.pretrain(x, epochs=1, batch_size=8, rng=rng),
                                                m.fit(x, epochs=2, batch_size=8, rng=rng, mf_steps=5))),
    "ExponentialFamily moment matching": (
        lambda: ExponentialFamily(ising_chain_statistics, 4, 7, dtype="float64", n_chains=16, n_steps=4),
        lambda m, x, rng: m.fit_moment_matching(x[:, :4], n_iters=5, n_chains=16, n_steps=4, rng=rng)),
    "ExponentialFamily exact": (
        lambda: ExponentialFamily(ising_chain_statistics, 4, 7, dtype="float64"),
        lambda m, x, rng: m.fit_exact(x[:, :4], n_iters=5)),
}


@pytest.mark.parametrize("name", list(FITS))
def test_fit_on_the_device_follows_the_cpu(name, cuda_device):
    build, fit = FITS[name]
    x = _binary(32, 6)
    cpu, dev = build(), build().to(cuda_device)
    fit(cpu, x, td.rng(1))
    fit(dev, td.tensor(x, device=cuda_device).data, td.rng(1))
    _assert_same_parameters(cpu, dev, cuda_device)


@pytest.mark.parametrize("build", [lambda: BernoulliRBM(6, 4, rng=td.rng(0), dtype="float64"),
                                   lambda: GaussianBernoulliRBM(6, 4, rng=td.rng(0), dtype="float64")],
                         ids=["bernoulli", "gaussian"])
def test_reconstructions_on_the_device_equal_the_cpus(build, cuda_device):
    x = _binary(5, 6, seed=3)
    cpu, dev = build(), build().to(cuda_device)
    for rng in (None, 4):
        expected = cpu.reconstruct(x, rng=None if rng is None else td.rng(rng))
        got = dev.reconstruct(td.tensor(x, device=cuda_device), rng=None if rng is None else td.rng(rng))
        assert got.device == cuda_device
        np.testing.assert_allclose(got.numpy(), expected.numpy(), **TOL)
