"""Adversarial autoencoder (Makhzani, Shlens, Jaitly, Goodfellow & Frey 2016, "Adversarial
Autoencoders"; kuleshov-l12, "Adversarial Autoencoder (VAE + GAN)").

An autoencoder whose codes are matched to a chosen prior p(z) by a GAN played in the latent
space. With the encoder q(z|x) and the data, the aggregated posterior is

    q(z) = E_{p_data(x)}[q(z|x)]                                    (Makhzani et al., eq. 1)

The VAE matches q(z|x) to p(z) example by example through KL(q(z|x) || p(z)); the AAE matches
q(z) as a whole to p(z) through a discriminator D(z) that tells prior draws from codes. In the
lecture's terms, the VAE objective in its "symmetric" factorisation is

    -KL(q(z) || p(z)) - E_{q(z)}[KL(q(x|z) || p(x|z))]

and the AAE replaces the first term with a Jensen-Shannon one that a GAN estimates, -JSD(q(z) || p(z)),
keeping a reconstruction term for the second. Since p(z) is only ever sampled, any prior with
a sampler will do: a mixture of 10 Gaussians or a swiss roll in 2-D (the priors of the
paper's MNIST figures).

Training, each minibatch (Makhzani et al., sec. 2):

    reconstruction phase     encoder and decoder descend  -E_x[log p(x | z)],  z = E(x)
    regularisation phase     D ascends  E_{p(z)}[ln D(z)] + E_x[ln(1 - D(E(x)))]
                             the encoder (the generator) descends  -E_x[ln D(E(x))]

(the non-saturating generator loss, see ``tinydgm.models.adversarial.gan_losses``). The encoder
is deterministic, z = mu(x) (the paper's main choice), or Gaussian, z = mu(x) + sigma(x) eps
(``deterministic=False``): a ``GaussianEncoder`` either way.

Limitations: no ELBO, so no likelihood (``sample`` draws z ~ p(z), then x ~ p(x|z)); the
labelled-prior and semi-supervised variants of the paper are not implemented.
"""
import math

from tinydgm import backend
from tinydgm.autodiff.core import Tensor, no_grad
from tinydgm.autodiff.elementwise import exp
from tinydgm.data.toy import swiss_roll
from tinydgm.data.transforms import as_generator
from tinydgm.distributions import StandardNormal
from tinydgm.models.adversarial import gan_losses
from tinydgm.models.adversarial.gan import _eval_mode, _frozen, _short
from tinydgm.models.latent.decoders import Decoder
from tinydgm.models.latent.encoders import GaussianEncoder
from tinydgm.models.latent.vae import as_data
from tinydgm.nn.module import Module
from tinydgm.optim import Adam

__all__ = ["AdversarialAutoencoder", "GaussianMixturePrior2D", "SwissRollPrior", "GaussianPrior"]


# ----------------------------------------------------------------------------- priors (samplers)

def _device_tensor(array, dtype, device):
    return Tensor(backend.to_device(array, device or "cpu").astype(dtype or backend.get_default_dtype()))


class GaussianMixturePrior2D:
    """The AAE's mixture of K elongated Gaussians in 2-D: component k is N((r, 0), diag(s_r^2, s_t^2))
    turned by 2 pi k / K, so the K petals point away from the origin (the mixture prior of
    Makhzani et al.'s MNIST figures; our sizes r = 1.4, s_r = 0.5, s_t = 0.05 draw ten
    separate petals). Weights 1/K.

        sample(n, rng) -> Tensor (n, 2);  mean() and covariance(): the exact moments
    """

    latent_dim = 2

    def __init__(self, n_components=10, radius=1.4, radial_std=0.5, tangential_std=0.05, dtype=None, device=None):
        if isinstance(n_components, bool) or not isinstance(n_components, int) or n_components < 1:
            raise ValueError(f"GaussianMixturePrior2D: n_components must be a positive int, got {n_components!r}")
        for name, value in (("radial_std", radial_std), ("tangential_std", tangential_std)):
            if not float(value) > 0:
                raise ValueError(f"GaussianMixturePrior2D: {name} must be > 0, got {value!r}")
        self.n_components, self.radius = n_components, float(radius)
        self.radial_std, self.tangential_std = float(radial_std), float(tangential_std)
        self.dtype, self.device = dtype, device

    def _angles(self, xp):
        return 2 * math.pi * xp.arange(self.n_components) / self.n_components

    def sample(self, n, rng=None):
        """z = R(2 pi k / K) (r + s_r eps_1, s_t eps_2), k ~ U{0..K-1}: a Tensor (n, 2)."""
        rng = as_generator(rng)
        xp = backend.module_for_device("cpu")
        k = rng.integers(0, self.n_components, n)
        eps = rng.standard_normal((n, 2))
        radial, tangential = self.radius + self.radial_std * eps[:, 0], self.tangential_std * eps[:, 1]
        angle = self._angles(xp)[k]
        z = xp.stack([radial * xp.cos(angle) - tangential * xp.sin(angle),
                      radial * xp.sin(angle) + tangential * xp.cos(angle)], axis=1)
        return _device_tensor(z, self.dtype, self.device)

    def mean(self):
        """E[z] = (1/K) sum_k R_k (r, 0): a (2,) host array (0 for K >= 2)."""
        xp = backend.module_for_device("cpu")
        angle = self._angles(xp)
        return self.radius * xp.stack([xp.cos(angle), xp.sin(angle)], axis=1).mean(axis=0)

    def covariance(self):
        """Cov[z] = (1/K) sum_k R_k (diag(s_r^2, s_t^2) + (r, 0)(r, 0)^T) R_k^T - E[z] E[z]^T: (2, 2)."""
        xp = backend.module_for_device("cpu")
        second = xp.zeros((2, 2))
        local = xp.diag(xp.array([self.radial_std ** 2 + self.radius ** 2, self.tangential_std ** 2]))
        for angle in self._angles(xp):
            rotation = xp.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
            second = second + rotation @ local @ rotation.T / self.n_components
        mu = self.mean()
        return second - xp.outer(mu, mu)

    def __repr__(self):
        return (f"GaussianMixturePrior2D(n_components={self.n_components}, radius={self.radius}, "
                f"radial_std={self.radial_std}, tangential_std={self.tangential_std})")


class SwissRollPrior:
    """The swiss roll in 2-D (Makhzani et al.'s other 2-D prior): ``tinydgm.data.toy.swiss_roll``
    times ``scale``, with a thin noise. No closed-form density: only sampled."""

    latent_dim = 2

    def __init__(self, scale=0.5, noise=0.05, dtype=None, device=None):
        if not float(scale) > 0 or not float(noise) >= 0:
            raise ValueError(f"SwissRollPrior: scale must be > 0 and noise >= 0, got scale={scale!r}, noise={noise!r}")
        self.scale, self.noise, self.dtype, self.device = float(scale), float(noise), dtype, device

    def sample(self, n, rng=None):
        """z = scale * swiss_roll(n): a Tensor (n, 2)."""
        return _device_tensor(self.scale * swiss_roll(n, as_generator(rng), noise=self.noise, dtype="float64"),
                              self.dtype, self.device)

    def __repr__(self):
        return f"SwissRollPrior(scale={self.scale}, noise={self.noise})"


class GaussianPrior:
    """p(z) = N(0, I) in ``latent_dim`` dimensions, as a sampler (a prior without parameters
    that is not a Module, so it adds no sub-module to the model)."""

    def __init__(self, latent_dim, dtype=None, device=None):
        if isinstance(latent_dim, bool) or not isinstance(latent_dim, int) or latent_dim < 1:
            raise ValueError(f"GaussianPrior: latent_dim must be a positive int, got {latent_dim!r}")
        self.latent_dim, self.dtype, self.device = latent_dim, dtype, device

    def sample(self, n, rng=None):
        return StandardNormal((self.latent_dim,), dtype=self.dtype, device=self.device).sample((n,), as_generator(rng))

    def __repr__(self):
        return f"GaussianPrior(latent_dim={self.latent_dim})"


# ----------------------------------------------------------------------------- the model

class AdversarialAutoencoder(Module):
    """An autoencoder whose aggregated posterior q(z) a discriminator pushes to the prior p(z).

    encoder: a ``GaussianEncoder`` (MLPEncoder, ConvEncoder): x -> (mu, log_var).
    decoder: a ``Decoder`` (MLPDecoder, ConvDecoder): its log p(x|z) is the reconstruction term.
    discriminator: a Module z (N, L) -> one logit per example (e.g. ``MLPDiscriminator(L)``).
    prior: anything with ``sample(n, rng) -> Tensor (n, L)`` (``GaussianMixturePrior2D``,
        ``SwissRollPrior``, ``GaussianPrior``, tinydgm.models.latent's priors).
    deterministic: z = mu(x) (True, default) or z = mu(x) + exp(log_var(x) / 2) eps.
    lr, betas: Adam for the three updates (autoencoder, discriminator, encoder as generator).
    rng: draws eps, prior samples and decoder samples when a call gets no rng of its own.
    """

    def __init__(self, encoder, decoder, discriminator, prior, *, deterministic=True, lr=1e-3, betas=(0.5, 0.999),
                 rng=None):
        super().__init__()
        who = "AdversarialAutoencoder"
        if not isinstance(encoder, GaussianEncoder):
            raise TypeError(f"{who}: encoder must be a GaussianEncoder (MLPEncoder, ConvEncoder), got "
                            f"{type(encoder).__name__}")
        if not isinstance(decoder, Decoder):
            raise TypeError(f"{who}: decoder must be a Decoder (MLPDecoder, ConvDecoder), got {type(decoder).__name__}")
        if not isinstance(discriminator, Module):
            raise TypeError(f"{who}: discriminator must be a Module, got {type(discriminator).__name__}")
        if not callable(getattr(prior, "sample", None)):
            raise TypeError(f"{who}: prior must have sample(n, rng), got {type(prior).__name__}")
        if encoder.latent_dim != decoder.latent_dim or tuple(encoder.event_shape) != tuple(decoder.event_shape):
            raise ValueError(f"{who}: the encoder maps {encoder.event_shape} -> {encoder.latent_dim} latents but the "
                             f"decoder maps {decoder.latent_dim} latents -> {decoder.event_shape}")
        self.encoder, self.decoder, self.discriminator = encoder, decoder, discriminator
        self.prior = prior
        self.latent_dim, self.event_shape = encoder.latent_dim, tuple(encoder.event_shape)
        self.deterministic = bool(deterministic)
        self.rng = as_generator(rng)
        self._probe_prior()
        self.ae_optimizer = Adam(encoder.parameters() + decoder.parameters(), lr=lr, betas=betas)
        self.d_optimizer = Adam(discriminator.parameters(), lr=lr, betas=betas)
        self.g_optimizer = Adam(encoder.parameters(), lr=lr, betas=betas)

    def _probe_prior(self):
        z = self.sample_prior(2, rng=0)
        if not isinstance(z, Tensor) or tuple(z.shape) != (2, self.latent_dim):
            raise ValueError(f"AdversarialAutoencoder: prior.sample(2) must give a Tensor (2, {self.latent_dim}), got "
                             f"{getattr(z, 'shape', type(z).__name__)}")
        with no_grad(), _eval_mode(self.discriminator):
            scores = self.discriminator(z)
        if tuple(scores.shape) not in ((2,), (2, 1)):
            raise ValueError(f"AdversarialAutoencoder: the discriminator must return one logit per code, shape (N,), "
                             f"got {tuple(scores.shape)} for codes of shape {tuple(z.shape)}")

    # --- the pieces
    def encode(self, x, eps=None, rng=None):
        """z = mu(x) (deterministic), or z = mu(x) + exp(log_var(x) / 2) eps, eps ~ N(0, I): (N, L)."""
        mu, log_var = self.encoder(x)
        if self.deterministic:
            return mu
        if eps is None:
            eps = StandardNormal((), dtype=mu.dtype, device=mu.device).sample(mu.shape, self._rng(rng))
        return mu + exp(0.5 * log_var) * eps

    def D(self, z):
        """The discriminator's logit per code, (N,): D(z) = sigmoid(logit), 1 for prior draws."""
        scores = self.discriminator(z)
        return scores.reshape(-1) if scores.ndim == 2 else scores

    def sample_prior(self, n, rng=None):
        """z ~ p(z), (n, L), in the model's dtype and on its device."""
        like = self._param_like()
        z = self.prior.sample(n, rng=self._rng(rng))
        z = z if isinstance(z, Tensor) else Tensor(backend.as_array(z))
        return Tensor(backend.to_device(z.data, like.device).astype(like.dtype, copy=False))

    # --- the three losses
    def reconstruction_loss(self, x, z):
        """-E_x[log p(x|z)] on the batch, z = E(x): the reconstruction phase (0-d)."""
        return -self.decoder.log_prob(x, z).mean()

    def discriminator_loss(self, z_prior, z_code):
        """-(E_{p(z)}[ln D(z)] + E_x[ln(1 - D(E(x)))]): prior draws are "real", codes "fake"."""
        return gan_losses.discriminator_loss(self.D(z_prior), self.D(z_code))

    def encoder_adversarial_loss(self, z_code):
        """-E_x[ln D(E(x))]: the encoder, as the latent GAN's generator, fools D."""
        return gan_losses.non_saturating_generator_loss(self.D(z_code))

    # --- training
    def train_step(self, x, rng=None):
        """One minibatch of both phases: the reconstruction update (encoder and decoder), the
        discriminator's update on as many prior draws as codes, then the encoder's adversarial
        update (discriminator frozen). Returns floats: "reconstruction" (nats per example),
        "discriminator_loss", "encoder_loss"."""
        rng = self._rng(rng)
        x = self._as_data(x, "train_step")
        eps = None if self.deterministic else StandardNormal(
            (), dtype=x.dtype, device=x.device).sample((x.shape[0], self.latent_dim), rng)
        # reconstruction phase
        reconstruction = self.reconstruction_loss(x, self.encode(x, eps))
        self.ae_optimizer.zero_grad()
        reconstruction.backward()
        self.ae_optimizer.step()
        # regularisation phase: the discriminator, then the encoder
        with no_grad():
            z_code = self.encode(x, eps)
        d_loss = self.discriminator_loss(self.sample_prior(x.shape[0], rng), z_code)
        self.d_optimizer.zero_grad()
        d_loss.backward()
        self.d_optimizer.step()
        with _frozen(self.discriminator):
            g_loss = self.encoder_adversarial_loss(self.encode(x, eps))
            self.g_optimizer.zero_grad()
            g_loss.backward()
        self.g_optimizer.step()
        return {"reconstruction": reconstruction.item(), "discriminator_loss": d_loss.item(),
                "encoder_loss": g_loss.item()}

    # --- using it
    def codes(self, x, rng=None):
        """z = E(x) for a batch, without graph (evaluation mode): draws of q(z) for plots."""
        with no_grad(), _eval_mode(self.encoder):
            return self.encode(self._as_data(x, "codes"), rng=rng)

    def reconstruct(self, x):
        """E[x | z = mu(x)], without graph."""
        with no_grad(), _eval_mode(self.encoder, self.decoder):
            mu, _ = self.encoder(self._as_data(x, "reconstruct"))
            return self.decoder.mean(mu)

    def decode(self, z):
        """E[x|z] for given codes (n, L), without graph: the decoder's view of latent space."""
        like = self._param_like()
        z = z if isinstance(z, Tensor) else Tensor(backend.as_array(z, dtype=like.dtype, device=like.device))
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"AdversarialAutoencoder.decode: z must have shape (n, {self.latent_dim}), got {z.shape}")
        with no_grad(), _eval_mode(self.decoder):
            return self.decoder.mean(z)

    def sample(self, n, rng=None, mean=False):
        """x ~ p(x|z), z ~ p(z) (``mean=True``: E[x|z]): a Tensor (n, *event_shape), no graph."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"AdversarialAutoencoder.sample: n must be a non-negative int, got {n!r}")
        rng = self._rng(rng)
        with no_grad(), _eval_mode(self.decoder):
            p_x_z = self.decoder.distribution(self.sample_prior(n, rng))
            return p_x_z.mean if mean else p_x_z.sample(rng=rng)

    # --- helpers
    def _rng(self, rng):
        return self.rng if rng is None else as_generator(rng)

    def _param_like(self):
        return next(iter(self.encoder.parameters()))

    def _as_data(self, x, who):
        return as_data(x, self._param_like(), self.event_shape, self.decoder, f"AdversarialAutoencoder.{who}")

    def extra_repr(self):
        return (f"latent_dim={self.latent_dim}, event_shape={self.event_shape}, prior={self.prior!r}, "
                f"deterministic={self.deterministic}")

    def __repr__(self):
        return (f"AdversarialAutoencoder({self.extra_repr()}): {self.summary()}\n"
                f"  (encoder): {_short(self.encoder)}\n  (decoder): {_short(self.decoder)}\n"
                f"  (discriminator): {_short(self.discriminator)}")
