"""Energy-based models and Boltzmann machines (kuleshov-l12, tomczak-dgm).

    ebm.py   exponential family by moment matching, fully visible Boltzmann machine
             (exact log Z), neural EBM trained by persistent contrastive divergence
    rbm.py   Bernoulli and Gaussian-Bernoulli RBMs, CD-k/PCD-k, reproduce()
    dbn.py   deep belief network (greedy stacking of RBMs)
    dbm.py   two-layer deep Boltzmann machine (mean field + PCD, AIS)

Samplers and CD statistics run on the Numba kernels of ``tinydgm.kernels``.
"""
from tinydgm.models.energy.dbm import DBM
from tinydgm.models.energy.dbn import DBN
from tinydgm.models.energy.ebm import ExponentialFamily, FullyVisibleBoltzmannMachine, NeuralEBM
from tinydgm.models.energy.rbm import BernoulliRBM, GaussianBernoulliRBM

__all__ = ["ExponentialFamily", "FullyVisibleBoltzmannMachine", "NeuralEBM", "BernoulliRBM",
           "GaussianBernoulliRBM", "DBN", "DBM"]
