"""PixelVAE (Gulrajani et al. 2017, "PixelVAE: a latent variable model for natural images";
intro lecture part III eq. 43-44, "Hybrid models: PixelVAE"; ermon-song-cs236-l16 and kuleshov-l12):
a VAE whose decoder is a small PixelCNN conditioned on the code.

    p(z) = N(0, I)        q(z | x) = N(mu(x), diag(exp(log_var(x))))        (a Gaussian encoder)
    p(x | z) = prod_i p(x_i | x_<i, z)                                     (intro lecture eq. 43)
    ln p(x) >= E_q[ln p(x | z)] - KL(q(z | x) || p(z))                     (eq. 44: the ELBO)

The decoder (``PixelCNNDecoder``) upsamples the code to a feature map the size of the image,

    f(z) = ConvT(... ConvT(relu(Linear(relu(Linear(z))))))   (C_f, H, W), n_upsample 2x steps

and conditions a few masked convolutions on it (``ConditionalPixelCNN``: V_l f(z) added at
every layer). Each conditional p(x_i | x_<i, z) sees the code everywhere and the pixels
before i within the stack's receptive field, so the PixelCNN models local texture and the code
the global structure (Gulrajani et al. sec. 3). Training, the ELBO, the importance-sampled
log-likelihood ln p(x) ~ ln 1/k sum_j p(x | z_j) p(z_j) / q(z_j | x) and the information
terms (``tinydgm.models.latent.elbo_surgery``: KL(q || p) and I_q[x, z]) are the VAE's.

The information preference (Chen et al. 2017; kuleshov-l12): with a decoder powerful enough to
model p(x) alone, the ELBO is best with q(z | x) = p(z), an unused code. ``n_layers`` (the
number of masked convolutions; 0 = the factorised decoder of a plain VAE) is the knob of that
experiment (benchmarks/quality_hybrid.py, demos/hybrid.py).

Limitations: binary one-channel images; one level of latents (the paper's hierarchical
two-level PixelVAE is not built); samples are drawn pixel by pixel (H W small network passes).
"""
from tinydgm import backend
from tinydgm.autodiff.core import Tensor, no_grad
from tinydgm.autodiff.elementwise import relu
from tinydgm.autodiff.shape import broadcast_to
from tinydgm.models.autoregressive.conditional_pixelcnn import ConditionalPixelCNN
from tinydgm.models.latent.encoders import as_event_shape, event_size, mlp, positive_int
from tinydgm.models.latent.vae import VAE, reparameterize
from tinydgm.nn.conv import ConvTranspose2d
from tinydgm.nn.module import Module, Sequential

__all__ = ["PixelCNNDecoder", "PixelVAE", "PAPER_CONFIG"]


class PixelCNNDecoder(Module):
    """p(x | z) = prod_i p(x_i | x_<i, f(z)): the PixelVAE decoder (module docstring).

    latent_dim: L. image_shape: (1, H, W), H and W divisible by 2^n_upsample.
    cond_channels: C_f, maps of f(z). hidden: width of the dense layer after z.
    n_upsample: 2x transposed convolutions (4x4, stride 2) in f; 0 maps z to (C_f, H, W) densely.
    n_layers, channels, kernel_size: the conditional PixelCNN (``ConditionalPixelCNN``).

    The decoder interface of ``tinydgm.models.latent.decoders`` where it applies: log_prob(x, z)
    for z (..., N, L), check_data; no distribution(z) (the pixels are not independent given z):
    use ``sample(z, rng)``.
    """

    likelihood = "bernoulli"

    def __init__(self, latent_dim, image_shape=(1, 28, 28), n_layers=3, channels=32, cond_channels=8, hidden=128,
                 n_upsample=2, kernel_size=5, rng=None, dtype=None, device=None):
        super().__init__()
        who = "PixelCNNDecoder"
        self.latent_dim = positive_int(latent_dim, "latent_dim", who)
        self.event_shape = as_event_shape(image_shape, who)
        if len(self.event_shape) != 3 or self.event_shape[0] != 1:
            raise ValueError(f"{who}: image_shape must be (1, H, W) (binary one-channel images), got {image_shape!r}")
        _, h, w = self.event_shape
        factor = 2 ** n_upsample
        if h % factor or w % factor:
            raise ValueError(f"{who}: H={h} and W={w} must be divisible by 2^n_upsample = {factor}")
        self.n_upsample, self.cond_channels = n_upsample, cond_channels
        self.base_shape = (cond_channels, h // factor, w // factor)
        kw = dict(rng=rng, dtype=dtype, device=device)
        self.dense = mlp((self.latent_dim, hidden, event_size(self.base_shape)), "relu", who, rng, dtype, device)
        self.upsample = Sequential(*[ConvTranspose2d(cond_channels, cond_channels, 4, stride=2, padding=1, **kw)
                                     for _ in range(n_upsample)])
        self.pixelcnn = ConditionalPixelCNN(cond_channels, channels, n_layers, kernel_size, **kw)

    @property
    def n_layers(self):
        return self.pixelcnn.n_layers

    def features(self, z2):
        """f(z): (M, L) -> (M, C_f, H, W); a ReLU after every layer but the last."""
        f = relu(self.dense(z2)).reshape((z2.shape[0],) + self.base_shape)
        for i, deconv in enumerate(self.upsample):
            f = deconv(f) if i == len(self.upsample) - 1 else relu(deconv(f))
        return f

    def log_prob(self, x, z):
        """ln p(x | z) = sum_i ln p(x_i | x_<i, z), shape z.shape[:-1]: z (..., N, L), x (N, 1, H, W)
        (each of the S codes of an example decodes that example)."""
        if z.ndim < 2 or z.shape[-1] != self.latent_dim or z.shape[-2] != x.shape[0]:
            raise ValueError(f"PixelCNNDecoder: z must have shape (..., N, {self.latent_dim}) with N = "
                             f"{x.shape[0]} examples, got {tuple(z.shape)}")
        lead = tuple(z.shape[:-1])
        x_rep = broadcast_to(x, lead + tuple(x.shape[1:])).reshape((-1,) + self.event_shape)
        log_px_z = self.pixelcnn.log_prob(x_rep, self.features(z.reshape(-1, self.latent_dim)))
        return log_px_z.reshape(lead)

    def sample(self, z, rng=None, method="window"):
        """x ~ p(x | z) for z (N, L): f(z) once, then the pixels in raster order."""
        with no_grad():
            return self.pixelcnn.sample(self.features(z), rng, method)

    def distribution(self, z):
        """Not available: the pixels are not independent given z (e.g. the beta-VAE decomposition's
        KL(q(x|z) || p(x|z)) needs it); raises TypeError naming what to use instead."""
        raise TypeError("PixelCNNDecoder: p(x | z) is autoregressive (its pixels are not independent given z), so "
                        "there is no factorised distribution(z); use log_prob(x, z) or sample(z, rng)")

    def check_data(self, x, who):
        binary = (x == 0) | (x == 1)
        if not bool(binary.all()):
            raise ValueError(f"{who}: the PixelVAE decoder needs binary images (0 or 1), got "
                             f"{int((~binary).sum())} other values")

    def extra_repr(self):
        return (f"latent_dim={self.latent_dim}, image_shape={self.event_shape}, n_upsample={self.n_upsample}, "
                f"cond_channels={self.cond_channels}")


class PixelVAE(VAE):
    """PixelVAE(encoder, decoder, beta=1.0, n_samples=1, rng=None): a ``VAE`` with a
    ``PixelCNNDecoder`` and the N(0, I) prior (closed-form KL, eq. 30). ``elbo``, ``loss``,
    ``log_prob_estimate`` and ``bits_per_dim`` are the VAE's; sampling is ancestral:
    z ~ p(z), then x ~ p(x | z) pixel by pixel."""

    def __init__(self, encoder, decoder, beta=1.0, n_samples=1, rng=None):
        if not isinstance(decoder, PixelCNNDecoder):
            raise TypeError(f"PixelVAE: decoder must be a PixelCNNDecoder, got {type(decoder).__name__}")
        super().__init__(encoder, decoder, beta=beta, n_samples=n_samples, rng=rng)

    def sample(self, n, rng=None, method="window"):
        """x ~ p(x) = int p(z) p(x | z) dz: (n, 1, H, W) Tensor of 0.0/1.0, no graph."""
        n = positive_int(n, "n", "PixelVAE.sample")
        rng = self.rng if rng is None else rng
        like = self._parameter()
        with no_grad():
            z = self.prior.sample(n, rng=rng)
            z = Tensor(backend.to_device(z.data, like.device).astype(like.dtype, copy=False))
            return self.decoder.sample(z, rng, method)

    def reconstruct(self, x, rng=None, sample_latent=False):
        """x' ~ p(x | z) at z = mu(x) (or z ~ q(z | x)): a draw, since p(x | z) has no cheap mean."""
        with no_grad():
            x = self._as_data(x, "reconstruct")
            mu, log_var = self.encoder(x)
            z = mu
            if sample_latent:
                rng = self.rng if rng is None else rng
                eps = Tensor(backend.to_device(rng.standard_normal(mu.shape), mu.device).astype(mu.dtype))
                z = reparameterize(mu, log_var, eps)
            return self.decoder.sample(z, self.rng if rng is None else rng)


PAPER_CONFIG = dict(
    # Gulrajani et al. 2017 on statically binarized MNIST. The decoder's size is the authors' own
    # MNIST command (their code's README: 12 PixelCNN layers, 5x5 filters, 16 feature maps, a
    # 16-dimensional latent, conditioning "cond_z_bias": f(z) as a bias of every layer, as here).
    # UNCERTAIN: the encoder, the upsampling of f(z) and the optimiser below are our choices.
    model=dict(latent_dim=16, image_shape=(1, 28, 28), n_layers=12, channels=16, cond_channels=16, hidden=256,
               n_upsample=2, kernel_size=5),
    encoder=dict(channels=(32, 64), hidden=(256,)),
    data="binarized_mnist",
    optimizer=dict(name="Adam", lr=1e-3),
    batch_size=50,
    evaluation="importance-sampled test NLL in nats",
    published_nll=79.66,
    # UNVERIFIED: recalled from the paper's binarized-MNIST table; the search tools available here
    # could not open that table to check it.
    published_source="Gulrajani et al. 2017, binarized MNIST table (recalled, not checked against the paper)",
)
