"""The table of small models that tests/models/test_protocol.py walks through the model
protocol (tinydgm/models/protocol.py): loss, log_prob or its named bound, sample,
bits_per_dim, train.fit, repr.

How to add a model (the protocol test FAILS for every model exported from a
``tinydgm.models`` family package, or from ``tinydgm.models`` itself, without a case):

    Case("VAE",                                       # the exported name ("VAE:variant" for more)
         build=lambda rng: VAE(6, 2, hidden=(8,), rng=rng, dtype="float64"),
         data=binary_data((6,)),                      # rng -> NumPy batch (N, *event_shape)
         event_shape=(6,),
         likelihood="elbo", exact=False)              # the bound it has, named for what it is

Fields (defaults in brackets):
    likelihood   the method giving log p(x) or its named bound as a Tensor (N,) ["log_prob"];
                 None for a model with neither (an unnormalised EBM, a GAN).
    exact        likelihood is log p(x) itself (not a bound) [True].
    needs_rng    likelihood / bits_per_dim draw random numbers: they get rng= [False].
    likelihood_kwargs  extra arguments of likelihood and bits_per_dim (e.g. k=50 samples) [{}].
    bits         the model has bits_per_dim, checked against -likelihood / (D ln 2) [True
                 when likelihood is not None].
    objective    "likelihood": one short epoch of train.fit raises the mean likelihood;
                 "moves": it changes every parameter group and the loss stays finite (a CD
                 surrogate, an adversarial game) ["likelihood"].
    step         "loss" (train.fit on model.loss) or "train_step" (GANs: model.train_step(x)) ["loss"].
    sample_kwargs  extra arguments that keep sample() fast (e.g. k=5 Gibbs sweeps) [{}].
    samples      the model defines a distribution to sample; False only for a model that
                 defines none (a plain autoencoder), which then must have no sample() [True].
    sample_dtype   dtype of the samples [the model's parameter dtype].
    optimizer    params -> optimizer for train.fit [Adam(lr=1e-2)].

Every model is float64 and tiny, so the whole table runs in seconds.
"""
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

import tinydgm as td
from tinydgm import models, optim
from tinydgm.models import (DBM, DBN, MADE, NADE, BernoulliRBM, DequantizedFlow, ExponentialFamily,
                            FullyVisibleBoltzmannMachine, GatedPixelCNN, GaussianBernoulliRBM, NeuralEBM,
                            PixelCNN, build_maf, image_glow, image_realnvp, planar_flow, radial_flow,
                            toy_realnvp)
from tinydgm.models.adversarial import GAN, WGAN, WGANGP, MLPDiscriminator, MLPGenerator
from tinydgm.models.adversarial import BiGAN, InfoDiscriminator, InfoGAN, JointDiscriminator
from tinydgm.models.energy.ebm import ising_chain_statistics
from tinydgm.models.flows import LogitTransform, UniformDequantization
from tinydgm.models.latent.density_network import DensityNetwork
from tinydgm.models.latent.gmm import GaussianMixture
from tinydgm.models.latent.linear_gaussian import FactorAnalysis, PPCA
from tinydgm.models.latent import (IWAE, PPCA, VAE, DensityNetwork, FactorAnalysis, GaussianMixture,
                                   LinearAutoencoder, MLPDecoder, MLPEncoder)
from tinydgm.models.latent.m2 import M2
from tinydgm.models.latent.posteriors import IAFPosterior, PlanarPosterior
from tinydgm.models.latent.infovae import InfoVAE
from tinydgm.models.latent.priors import VampPrior

N = 32               # examples in a case's batch
BATCH_SIZE = 8       # train.fit: 4 steps in the one epoch


def adam(params):
    return optim.Adam(params, lr=1e-2)


def sgd(params):
    return optim.SGD(params, lr=0.1)


@dataclass
class Case:
    name: str
    build: Callable
    data: Callable
    event_shape: tuple
    likelihood: Optional[str] = "log_prob"
    exact: bool = True
    needs_rng: bool = False
    likelihood_kwargs: dict = field(default_factory=dict)
    bits: Optional[bool] = None
    objective: str = "likelihood"
    step: str = "loss"
    sample_kwargs: dict = field(default_factory=dict)
    samples: bool = True
    sample_dtype: Optional[str] = None
    optimizer: Callable = adam

    def __post_init__(self):
        if self.bits is None:
            self.bits = self.likelihood is not None

    def __repr__(self):             # the pytest id
        return self.name


# ----------------------------------------------------------------------------- data

def binary_data(shape, p_high=0.85):
    """Binary examples with structure to learn: half the units on with p_high, half off."""
    def make(rng):
        p = np.where(np.arange(int(np.prod(shape))) % 2 == 0, p_high, 1 - p_high).reshape(shape)
        return (rng.random((N,) + tuple(shape)) < p).astype(np.float64)
    return make


def gaussian_data(dim, shift=1.5):
    """Real vectors N(shift, 0.5^2): a standard-normal model must move to fit them."""
    def make(rng):
        return shift + 0.5 * rng.standard_normal((N, dim))
    return make


def level_data(dim, n_levels):
    """Integer levels in {0, ..., n_levels - 1} (as floats), concentrated on the high ones."""
    def make(rng):
        return (n_levels - 1 - np.minimum(n_levels - 1, rng.poisson(0.5, (N, dim)))).astype(np.float64)
    return make


# ----------------------------------------------------------------------------- the table

CASES = [
    # energy-based models (losses are CD / moment-matching surrogates; the exact log p of
    # these small models is what fit must raise)
    Case("ExponentialFamily",
         lambda rng: ExponentialFamily(ising_chain_statistics, 4, 7, dtype="float64", n_chains=64, n_steps=8),
         binary_data((4,)), (4,), optimizer=sgd, sample_kwargs=dict(n_steps=40)),
    Case("FullyVisibleBoltzmannMachine",
         lambda rng: FullyVisibleBoltzmannMachine(4, rng=rng, dtype="float64"),
         binary_data((4,)), (4,), optimizer=sgd, sample_kwargs=dict(n_sweeps=5)),
    Case("NeuralEBM",
         lambda rng: NeuralEBM(2, hidden=(8,), n_steps=5, buffer_size=64, rng=rng, dtype="float64"),
         gaussian_data(2), (2,), likelihood=None, objective="moves", sample_kwargs=dict(n_steps=5)),
    Case("BernoulliRBM", lambda rng: BernoulliRBM(6, 3, rng=rng, dtype="float64"),
         binary_data((6,)), (6,), optimizer=sgd, sample_kwargs=dict(k=5)),
    Case("BernoulliRBM:pcd", lambda rng: BernoulliRBM(6, 3, rng=rng, dtype="float64", k=2, persistent=True),
         binary_data((6,)), (6,), optimizer=sgd, sample_kwargs=dict(k=5, mean=True)),
    Case("GaussianBernoulliRBM", lambda rng: GaussianBernoulliRBM(3, 2, rng=rng, dtype="float64"),
         gaussian_data(3, shift=1.0), (3,), optimizer=sgd, sample_kwargs=dict(k=5)),
    Case("DBN", lambda rng: DBN([6, 3, 2], rng=rng, dtype="float64"),
         binary_data((6,)), (6,), optimizer=sgd, sample_kwargs=dict(k=5)),
    Case("DBM", lambda rng: DBM(6, 3, 2, rng=rng, dtype="float64"),
         binary_data((6,)), (6,), optimizer=sgd, sample_kwargs=dict(k=5)),
    # autoregressive models
    Case("NADE", lambda rng: NADE(6, 5, rng=rng, dtype="float64"), binary_data((6,)), (6,)),
    Case("MADE", lambda rng: MADE(6, [8], rng=rng, dtype="float64"), binary_data((6,)), (6,)),
    Case("MADE:gaussian-masks", lambda rng: MADE(3, [8], "gaussian", n_masks=2, rng=rng, dtype="float64"),
         gaussian_data(3), (3,)),
    Case("PixelCNN", lambda rng: PixelCNN(1, channels=4, n_residual=1, kernel_size=3, image_size=(4, 4),
                                          rng=rng, dtype="float64"),
         binary_data((1, 4, 4)), (1, 4, 4)),
    Case("GatedPixelCNN", lambda rng: GatedPixelCNN(1, channels=4, n_layers=2, kernel_size=3, first_kernel_size=3,
                                                    image_size=(4, 4), rng=rng, dtype="float64"),
         binary_data((1, 4, 4)), (1, 4, 4)),
    # flows (the builders return a Flow)
    Case("toy_realnvp", lambda rng: toy_realnvp(2, n_couplings=2, hidden=(8,), rng=rng, dtype="float64"),
         gaussian_data(2), (2,)),
    Case("image_realnvp", lambda rng: image_realnvp((1, 4, 4), n_scales=1, hidden_channels=4, n_blocks=1,
                                                    n_final=1, rng=rng, dtype="float64"),
         gaussian_data(16), (1, 4, 4)),
    Case("image_glow", lambda rng: image_glow((1, 4, 4), n_scales=2, n_steps=1, hidden_channels=4, rng=rng,
                                              dtype="float64"),
         gaussian_data(16), (1, 4, 4)),
    Case("build_maf", lambda rng: build_maf(2, n_layers=2, hidden_sizes=(8,), rng=rng, dtype="float64"),
         gaussian_data(2), (2,)),
    Case("planar_flow", lambda rng: planar_flow(2, n_layers=2, rng=rng, dtype="float64"), gaussian_data(2), (2,)),
    Case("radial_flow", lambda rng: radial_flow(2, n_layers=2, rng=rng, dtype="float64"), gaussian_data(2), (2,)),
    Case("DequantizedFlow",
         lambda rng: DequantizedFlow(toy_realnvp(2, n_couplings=2, hidden=(8,), rng=rng, dtype="float64"),
                                     UniformDequantization(4, dtype="float64"), LogitTransform(0.05, 4)),
         level_data(2, 4), (2,), likelihood="log_prob_lower_bound", exact=False, needs_rng=True),
]


def _vae(cls, rng, **kwargs):
    return cls(MLPEncoder((6,), 2, hidden=(8,), rng=rng, dtype="float64"),
               MLPDecoder(2, (6,), hidden=(8,), rng=rng, dtype="float64"), rng=rng, **kwargs)


def _vamp_vae(rng):
    encoder = MLPEncoder((6,), 2, hidden=(8,), rng=rng, dtype="float64")
    return VAE(encoder, MLPDecoder(2, (6,), hidden=(8,), rng=rng, dtype="float64"),
               prior=VampPrior(encoder, 3, init_std=0.5, rng=rng), rng=rng)


def _bigan(rng):
    return BiGAN(MLPGenerator(2, 2, hidden=(8,), rng=rng, dtype="float64"),
                 MLPGenerator(2, 2, hidden=(8,), rng=rng, dtype="float64"),
                 JointDiscriminator(2, 2, hidden=(8,), rng=rng, dtype="float64"), 2, lr=1e-2, rng=rng)


def _infogan(rng):
    return InfoGAN(MLPGenerator(2 + 3 + 1, 2, hidden=(8,), rng=rng, dtype="float64"),
                   InfoDiscriminator(2, 3, 1, hidden=(8,), rng=rng, dtype="float64"), 2, lr=1e-2, rng=rng)


def _gan(cls, rng, **kwargs):
    return cls(MLPGenerator(2, 2, hidden=(8,), rng=rng, dtype="float64"),
               MLPDiscriminator(2, hidden=(8,), rng=rng, dtype="float64"), 2, rng=rng, **kwargs)


CASES += [
    # latent-variable models: the ELBO trains them, the importance-sampled estimate is their log p
    Case("VAE", lambda rng: _vae(VAE, rng), binary_data((6,)), (6,), likelihood="log_prob_estimate", exact=False,
         needs_rng=True, likelihood_kwargs=dict(k=50)),
    Case("IWAE", lambda rng: _vae(IWAE, rng, k=3), binary_data((6,)), (6,), likelihood="log_prob_estimate",
         exact=False, needs_rng=True, likelihood_kwargs=dict(k=50)),
    # flow posteriors (posteriors.py): the same VAE with an amortised planar or IAF q(z|x)
    Case("VAE:planar-posterior", lambda rng: _vae(VAE, rng, posterior=PlanarPosterior(
        (6,), 2, n_layers=2, hidden=(8,), rng=rng, dtype="float64")), binary_data((6,)), (6,),
         likelihood="log_prob_estimate", exact=False, needs_rng=True, likelihood_kwargs=dict(k=50)),
    Case("VAE:iaf-posterior", lambda rng: _vae(VAE, rng, posterior=IAFPosterior(
        (6,), 2, n_layers=2, hidden_sizes=(8,), context_dim=4, hidden=(8,), rng=rng, dtype="float64")),
         binary_data((6,)), (6,), likelihood="log_prob_estimate", exact=False, needs_rng=True,
         likelihood_kwargs=dict(k=50)),
    # InfoVAE: ELBO terms reweighted plus the MMD of the batch's aggregated posterior to the prior
    Case("InfoVAE", lambda rng: _vae(InfoVAE, rng, alpha=0.5, lambda_=2.0), binary_data((6,)), (6,),
         likelihood="log_prob_estimate", exact=False, needs_rng=True, likelihood_kwargs=dict(k=50)),
    # a VAE whose prior has parameters and shares the encoder (the VampPrior's pseudo-inputs train too)
    Case("VAE:vamp_prior", lambda rng: _vamp_vae(rng), binary_data((6,)), (6,), likelihood="log_prob_estimate",
         exact=False, needs_rng=True, likelihood_kwargs=dict(k=50)),
    Case("FactorAnalysis", lambda rng: FactorAnalysis(4, 2, rng=rng, dtype="float64"), gaussian_data(4), (4,)),
    Case("PPCA", lambda rng: PPCA(4, 2, rng=rng, dtype="float64"), gaussian_data(4), (4,)),
    Case("GaussianMixture", lambda rng: GaussianMixture(2, 2, rng=rng, dtype="float64"), gaussian_data(2), (2,)),
    Case("DensityNetwork", lambda rng: DensityNetwork(2, 6, hidden_sizes=(8,), n_samples=16, rng=rng, dtype="float64"),
         binary_data((6,)), (6,), likelihood="log_prob_estimate", exact=False, needs_rng=True, bits=False),
    Case("LinearAutoencoder", lambda rng: LinearAutoencoder(4, 2, rng=rng, dtype="float64"), gaussian_data(4), (4,),
         likelihood=None, objective="moves", samples=False),
    # M2 on a plain batch: every example unlabelled, the loss -mean U(x) (the exact sum over classes)
    Case("M2", lambda rng: M2(6, 2, latent_dim=2, hidden=(8,), rng=rng, dtype="float64"), binary_data((6,)), (6,),
         likelihood="log_prob_estimate", exact=False, needs_rng=True, likelihood_kwargs=dict(k=50)),
    # adversarial models: a train_step, no likelihood
    Case("GAN", lambda rng: _gan(GAN, rng, lr=1e-2), gaussian_data(2), (2,), likelihood=None, objective="moves",
         step="train_step"),
    Case("WGAN", lambda rng: _gan(WGAN, rng, n_critic=2), gaussian_data(2), (2,), likelihood=None,
         objective="moves", step="train_step"),
    Case("WGANGP", lambda rng: _gan(WGANGP, rng, n_critic=2), gaussian_data(2), (2,), likelihood=None,
         objective="moves", step="train_step"),
    # BiGAN: the encoder moves with the generator; InfoGAN: Q's head moves with the discriminator
    Case("BiGAN", _bigan, gaussian_data(2), (2,), likelihood=None, objective="moves", step="train_step"),
    Case("InfoGAN", _infogan, gaussian_data(2), (2,), likelihood=None, objective="moves", step="train_step"),
]


CASES += [
    # linear-Gaussian models, the Gaussian mixture and the density network (gradient training on loss;
    # their EM fits are tested in tests/models/latent)
    Case("FactorAnalysis", lambda rng: FactorAnalysis(3, 1, rng=rng, dtype="float64"), gaussian_data(3), (3,)),
    Case("PPCA", lambda rng: PPCA(3, 1, rng=rng, dtype="float64"), gaussian_data(3), (3,)),
    Case("GaussianMixture", lambda rng: GaussianMixture(2, 2, rng=rng, dtype="float64"), gaussian_data(2), (2,)),
    Case("GaussianMixture:diag", lambda rng: GaussianMixture(2, 2, "diag", rng=rng, dtype="float64"),
         gaussian_data(2), (2,)),
    Case("DensityNetwork", lambda rng: DensityNetwork(2, 6, hidden_sizes=(8,), n_samples=16, rng=rng, dtype="float64"),
         binary_data((6,)), (6,), likelihood="log_prob_estimate", exact=False, needs_rng=True, bits=False),
]


CASES += [
    # sequence models (N, T, x_dim): the RNN's log p is exact, the VRNN has its ELBO and the
    # importance-sampled estimate
    Case("AutoregressiveRNN", lambda rng: models.AutoregressiveRNN(2, hidden_size=4, phi_size=4, length=3, rng=rng,
                                                                  dtype="float64"), gaussian_data(6), (3, 2)),
    Case("AutoregressiveRNN:mixture", lambda rng: models.AutoregressiveRNN(
        2, hidden_size=4, phi_size=4, n_components=2, length=3, rng=rng, dtype="float64"), gaussian_data(6), (3, 2)),
    Case("VRNN", lambda rng: models.VRNN(2, 2, hidden_size=4, phi_size=4, length=3, rng=rng, dtype="float64"),
         gaussian_data(6), (3, 2), likelihood="log_prob_estimate", exact=False, needs_rng=True,
         likelihood_kwargs=dict(k=50)),
    Case("VRNN:bernoulli", lambda rng: models.VRNN(2, 2, hidden_size=4, phi_size=4, output="bernoulli", length=3,
                                                   rng=rng, dtype="float64"),
         binary_data((3, 2)), (3, 2), likelihood="log_prob_estimate", exact=False, needs_rng=True,
         likelihood_kwargs=dict(k=50)),
    Case("PixelRNN", lambda rng: models.PixelRNN(1, channels=4, n_layers=1, kernel_size=3, image_size=(4, 4), rng=rng,
                                                 dtype="float64"), binary_data((1, 4, 4)), (1, 4, 4)),
]


def data_of(case, seed=0):
    """The case's batch, reshaped to (N, *event_shape)."""
    return case.data(np.random.default_rng(seed)).reshape((N,) + tuple(case.event_shape))


def build(case, seed=0):
    return case.build(td.rng(seed))


def _pixelvae(rng):
    from tinydgm.models.hybrid import PixelCNNDecoder, PixelVAE
    encoder = MLPEncoder((1, 4, 4), 2, hidden=(8,), rng=rng, dtype="float64")
    decoder = PixelCNNDecoder(2, (1, 4, 4), n_layers=2, channels=4, cond_channels=2, hidden=8, n_upsample=1,
                              kernel_size=3, rng=rng, dtype="float64")
    return PixelVAE(encoder, decoder, rng=rng)


def _multimodal_vae(rng):
    from tinydgm.models.hybrid import CategoricalDecoder, MultimodalVAE
    encoders = [MLPEncoder((6,), 2, hidden=(8,), rng=rng, dtype="float64"),
                MLPEncoder((3,), 2, hidden=(8,), rng=rng, dtype="float64")]
    decoders = [MLPDecoder(2, (6,), hidden=(8,), rng=rng, dtype="float64"),
                CategoricalDecoder(2, 3, hidden=(8,), rng=rng, dtype="float64")]
    return MultimodalVAE(encoders, decoders, rng=rng)


def image_and_label_data(rng):
    """Binary 6-vectors whose pattern follows a label in {0, 1, 2}, then the label one-hot: (N, 6 + 3)."""
    y = rng.integers(0, 3, N)
    p = np.where(np.arange(6)[None, :] // 2 == y[:, None], 0.9, 0.1)
    return np.concatenate([(rng.random((N, 6)) < p).astype(np.float64), np.eye(3)[y]], axis=1)


CASES += [
    # models combining families (issue 17): PixelVAE's bound is the VAE's; the hierarchical
    # PixelCNN has the lecture's bound ln p(x_hat) + ln p(x | x_hat); the multiscale one is exact
    Case("PixelVAE", _pixelvae, binary_data((1, 4, 4)), (1, 4, 4), likelihood="log_prob_estimate", exact=False,
         needs_rng=True, likelihood_kwargs=dict(k=50)),
    Case("MultimodalVAE", _multimodal_vae, image_and_label_data, (9,), likelihood="log_prob_estimate", exact=False,
         needs_rng=True, likelihood_kwargs=dict(k=50)),
    Case("HierarchicalPixelCNN", lambda rng: models.HierarchicalPixelCNN(
        (4, 4), 2, channels=4, n_residual=1, kernel_size=3, cond_channels=4, cond_layers=2, cond_kernel_size=3,
        context_channels=2, rng=rng, dtype="float64"), binary_data((1, 4, 4)), (1, 4, 4),
         likelihood="log_prob_lower_bound", exact=False),
    Case("MultiscalePixelCNN", lambda rng: models.MultiscalePixelCNN(
        (4, 4), (2, 2), channels=4, n_residual=1, kernel_size=3, group_channels=4, group_layers=1, rng=rng,
        dtype="float64"), binary_data((1, 4, 4)), (1, 4, 4)),
]


def _cyclegan(rng):
    from tinydgm.models.adversarial import CycleGAN
    return CycleGAN(MLPGenerator(2, 2, hidden=(8,), rng=rng, dtype="float64"),
                    MLPGenerator(2, 2, hidden=(8,), rng=rng, dtype="float64"),
                    MLPDiscriminator(2, hidden=(8,), rng=rng, dtype="float64"),
                    MLPDiscriminator(2, hidden=(8,), rng=rng, dtype="float64"), 2, lr=1e-2, rng=rng)


def _flowgan(rng):
    from tinydgm.models.hybrid import FlowGAN
    return FlowGAN(toy_realnvp(2, n_couplings=2, hidden=(8,), rng=rng, dtype="float64"),
                   MLPDiscriminator(2, hidden=(8,), rng=rng, dtype="float64"), n_critic=2, lr=1e-2, rng=rng)


def _aae(rng):
    from tinydgm.models.hybrid import AdversarialAutoencoder, GaussianMixturePrior2D
    return AdversarialAutoencoder(MLPEncoder((6,), 2, hidden=(8,), rng=rng, dtype="float64"),
                                  MLPDecoder(2, (6,), hidden=(8,), rng=rng, dtype="float64"),
                                  MLPDiscriminator(2, hidden=(8,), rng=rng, dtype="float64"),
                                  GaussianMixturePrior2D(10, dtype="float64"), lr=1e-2, rng=rng)


CASES += [
    # issue 16, second half: CycleGAN translates (no distribution to sample; a batch row holds one
    # unpaired example of each domain), FlowGAN keeps its flow's exact log p, the AAE has no likelihood
    Case("CycleGAN", _cyclegan, gaussian_data(4), (2, 2), likelihood=None, objective="moves", step="train_step",
         samples=False),
    Case("FlowGAN", _flowgan, gaussian_data(2), (2,), objective="moves", step="train_step"),
    Case("AdversarialAutoencoder", _aae, binary_data((6,)), (6,), likelihood=None, objective="moves",
         step="train_step"),
]
