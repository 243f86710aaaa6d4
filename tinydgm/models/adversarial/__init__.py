"""Adversarial models: a generator trained against a discriminator or critic (intro lecture
part I).

    gan_losses.py             V(D, G), the minimax and non-saturating generator losses, the
                              WGAN critic/generator losses, the WGAN-GP gradient penalty
    gan.py                    GAN: alternating updates, k discriminator steps per generator step
    wgan.py                   WGAN (weight clipping, RMSProp) and WGAN-GP (gradient penalty)
    dcgan.py                  DCGAN-style convolutional generator and discriminator, 28 x 28
    toy_networks.py           MLP generator and discriminator for 2-D toys
    cyclegan.py               CycleGAN: two translators, least-squares discriminators, cycle loss
    optimal_discriminator.py  D* = p_data / (p_data + p_G) and V(D*, G) = -ln 4 + 2 JSD by quadrature
    latent_arithmetic.py      linear and spherical interpolation, averaged-z vector arithmetic
    bigan.py                  BiGAN: an encoder E, a generator G and a discriminator D(x, z) of pairs
    infogan.py                InfoGAN: categorical and continuous codes, Q on the discriminator's body, L_I
"""
from tinydgm.models.adversarial.bigan import BiGAN, JointDiscriminator, optimal_joint_discriminator
from tinydgm.models.adversarial.cyclegan import (ConvTranslator, CycleGAN, ResidualMLP, cycle_consistency_loss,
                                                 least_squares_discriminator_loss, least_squares_generator_loss)
from tinydgm.models.adversarial.dcgan import DCGANDiscriminator, DCGANGenerator
from tinydgm.models.adversarial.gan import GAN
from tinydgm.models.adversarial.gan_losses import (discriminator_loss, gan_value, gradient_penalty, interpolates,
                                                   minimax_generator_loss, non_saturating_generator_loss,
                                                   wasserstein_critic_loss, wasserstein_estimate,
                                                   wasserstein_generator_loss)
from tinydgm.models.adversarial.infogan import Codes, InfoDiscriminator, InfoGAN, code_entropy, log_q_codes
from tinydgm.models.adversarial.latent_arithmetic import interpolate, lerp, slerp, vector_arithmetic
from tinydgm.models.adversarial.optimal_discriminator import (compare_to_optimal, discriminator_value,
                                                              jensen_shannon_divergence, optimal_discriminator,
                                                              optimal_value, quadrature_grid)
from tinydgm.models.adversarial.toy_networks import MLPDiscriminator, MLPGenerator
from tinydgm.models.adversarial.wgan import WGAN, WGANGP, clip_weights_

__all__ = [
    "GAN", "WGAN", "WGANGP", "clip_weights_",
    "gan_value", "discriminator_loss", "minimax_generator_loss", "non_saturating_generator_loss",
    "wasserstein_estimate", "wasserstein_critic_loss", "wasserstein_generator_loss", "interpolates",
    "gradient_penalty",
    "DCGANGenerator", "DCGANDiscriminator", "MLPGenerator", "MLPDiscriminator",
    "quadrature_grid", "optimal_discriminator", "optimal_value", "discriminator_value",
    "jensen_shannon_divergence", "compare_to_optimal",
    "lerp", "slerp", "interpolate", "vector_arithmetic",
    "BiGAN", "JointDiscriminator", "optimal_joint_discriminator",
    "InfoGAN", "InfoDiscriminator", "Codes", "code_entropy", "log_q_codes",
    "CycleGAN", "ResidualMLP", "ConvTranslator", "cycle_consistency_loss", "least_squares_discriminator_loss",
    "least_squares_generator_loss",
]
