"""Model families, one subpackage per family as the lectures group them:

    energy/           exponential family, FVBM, neural EBM, RBMs, DBN, DBM
    autoregressive/   NADE, MADE, PixelCNN, Gated PixelCNN, hierarchical and multiscale PixelCNN,
                      PixelRNN (Row LSTM), an RNN over sequences
    flows/            planar, radial, NICE, RealNVP, Glow's 1x1 conv, MAF, IAF, dequantization
    latent/           latent-variable models (linear-Gaussian, density networks, VAEs)
    adversarial/      GANs
    hybrid/           models that combine families (PixelVAE, the multimodal VAE, the VRNN, ...)

Every model offers the protocol of ``docs/architecture.md`` (``loss``, ``log_prob`` or the
bound it has, ``sample``, ``bits_per_dim``). The common classes import from here directly,
``from tinydgm.models import NADE, MADE, BernoulliRBM``; each subpackage is imported on
first use, so importing one family does not load the others.
"""
import importlib

# name -> the subpackage that defines it
_EXPORTS = {
    "ExponentialFamily": "energy", "FullyVisibleBoltzmannMachine": "energy", "NeuralEBM": "energy",
    "BernoulliRBM": "energy", "GaussianBernoulliRBM": "energy", "DBN": "energy", "DBM": "energy",
    "NADE": "autoregressive", "MADE": "autoregressive", "PixelCNN": "autoregressive",
    "GatedPixelCNN": "autoregressive", "HierarchicalPixelCNN": "autoregressive", "MultiscalePixelCNN": "autoregressive",
    "PixelVAE": "hybrid", "MultimodalVAE": "hybrid", "VRNN": "hybrid", "AutoregressiveRNN": "autoregressive",
    "PixelRNN": "autoregressive",
    "Flow": "flows", "toy_realnvp": "flows", "image_realnvp": "flows", "image_glow": "flows", "build_maf": "flows",
    "planar_flow": "flows", "radial_flow": "flows", "DequantizedFlow": "flows",
    "GAN": "adversarial", "WGAN": "adversarial", "WGANGP": "adversarial", "DCGANGenerator": "adversarial",
    "DCGANDiscriminator": "adversarial", "MLPGenerator": "adversarial", "MLPDiscriminator": "adversarial",
    "CycleGAN": "adversarial", "FlowGAN": "hybrid", "AdversarialAutoencoder": "hybrid",
    "BiGAN": "adversarial", "InfoGAN": "adversarial",
    "VAE": "latent", "IWAE": "latent", "MLPEncoder": "latent", "ConvEncoder": "latent",
    "MLPDecoder": "latent", "ConvDecoder": "latent", "StandardNormalPrior": "latent",
    "FactorAnalysis": "latent", "PPCA": "latent", "GaussianMixture": "latent", "DensityNetwork": "latent",
    "M2": "latent", "InfoVAE": "latent", "MixtureOfGaussiansPrior": "latent", "VampPrior": "latent",
    "FlowPrior": "latent", "AutoregressivePrior": "latent", "AggregatedPosterior": "latent",
}
_FAMILIES = ("energy", "autoregressive", "flows", "latent", "adversarial", "hybrid")

__all__ = sorted(_EXPORTS) + list(_FAMILIES)


def __getattr__(name):
    if name in _FAMILIES:
        return importlib.import_module(f"tinydgm.models.{name}")
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"tinydgm.models.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'tinydgm.models' has no attribute {name!r}")


def __dir__():
    return __all__
