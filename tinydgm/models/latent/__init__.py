"""Latent-variable models: p(x) = integral of p(z) p(x | z) dz (tomczak-dgm, intro lecture
part II, isachenko-l07). Home of the linear-Gaussian models, density networks, VAEs and the
semi-supervised M2."""
from tinydgm.models.latent.encoders import GaussianEncoder, MLPEncoder, ConvEncoder  # noqa: F401
from tinydgm.models.latent.decoders import Decoder, MLPDecoder, ConvDecoder  # noqa: F401
from tinydgm.models.latent.priors import (AggregatedPosterior, AutoregressivePrior, FlowPrior,  # noqa: F401
                                          MixtureOfGaussiansPrior, Prior, StandardNormalPrior, VampPrior,
                                          encoder_mixture_log_prob)
from tinydgm.models.latent.vae import VAE, kl_standard_normal, reparameterize  # noqa: F401
from tinydgm.models.latent.posteriors import (FlowPosterior, IAFPosterior, PlanarPosterior,  # noqa: F401
                                              planar_step, planar_u_hat)
from tinydgm.models.latent.elbo_surgery import (BetaVAEDecomposition, ElboSurgery,  # noqa: F401
                                                beta_vae_decomposition, elbo_surgery, elbo_surgery_table,
                                                format_elbo_surgery_table)
from tinydgm.models.latent.infovae import InfoVAE, imq_kernel, mmd_squared, rbf_kernel  # noqa: F401
from tinydgm.models.latent.iwae import IWAE, log_mean_exp  # noqa: F401
from tinydgm.models.latent.linear_gaussian import FactorAnalysis, PPCA, linear_gaussian_log_prob  # noqa: F401
from tinydgm.models.latent.gmm import GaussianMixture  # noqa: F401
from tinydgm.models.latent.linear_autoencoder import LinearAutoencoder, principal_angles  # noqa: F401
from tinydgm.models.latent.density_network import DensityNetwork  # noqa: F401
from tinydgm.models.latent.m2 import (M2, UNLABELLED, class_conditional_grid, paper_alpha,  # noqa: F401
                                      semi_supervised_data)
