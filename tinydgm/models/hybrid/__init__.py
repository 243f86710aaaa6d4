"""Models that combine families (ermon-song-cs236-l16, kuleshov-l12): an autoregressive
decoder in a VAE (PixelVAE), a multimodal VAE with a product of Gaussian experts, a flow trained
adversarially, an autoencoder with an adversarial prior, a VAE at every step of an RNN (VRNN)."""
from tinydgm.models.hybrid.aae import (AdversarialAutoencoder, GaussianMixturePrior2D, GaussianPrior,  # noqa: F401
                                      SwissRollPrior)
from tinydgm.models.hybrid.flowgan import FlowGAN, FlowGenerator  # noqa: F401
from tinydgm.models.hybrid.multimodal_vae import CategoricalDecoder, MultimodalVAE, product_of_experts  # noqa: F401
from tinydgm.models.hybrid.pixelvae import PixelCNNDecoder, PixelVAE  # noqa: F401
from tinydgm.models.hybrid.vrnn import VRNN  # noqa: F401
