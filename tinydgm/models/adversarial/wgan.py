"""Wasserstein GANs: WGAN with weight clipping (Arjovsky et al. 2017) and WGAN-GP with a
gradient penalty (Gulrajani et al. 2017); intro lecture part I, "Wasserstein GAN" and
"experimental comparison GAN and WGAN".

The earth-mover distance D_WS(p || q) = inf_{gamma in Gamma(p, q)} E_gamma ||x - y|| (lecture
eq. 18) measures how far mass must move, so it stays informative when the supports of p_data
and p_G do not overlap (where JS is ln 2 and KL infinite). Its dual form (Kantorovich-
Rubinstein),

    D_WS(p_data || p_G) = (1/k) max_{||D||_L <= k} E_{p_data}[D(x)] - E_{p(z)}[D(G(z))],

turns the discriminator into a critic: an unconstrained score (no log-sigmoid) trained to
ascend E[D(x)] - E[D(G(z))] over a set of k-Lipschitz functions, while the generator descends
-E[D(G(z))]. The critic is trained n_critic steps per generator step, so that the generator's
gradient comes from a nearly optimal critic; unlike the GAN's, that gradient does not vanish
when the critic wins.

The Lipschitz constraint, two ways:

    WGAN     clip every critic weight to [-c, c] after each update (a compact parameter set
             makes the network K-Lipschitz for some K); RMSProp, lr = 5e-5, c = 0.01,
             n_critic = 5 (Arjovsky et al., Algorithm 1).
    WGAN-GP  add lambda E[(||grad_x_hat D(x_hat)||_2 - 1)^2] at random interpolates x_hat of
             real and generated samples (the optimal critic has unit gradient norm on the lines
             between coupled points); Adam (lr = 1e-4, beta1 = 0, beta2 = 0.9), lambda = 10,
             n_critic = 5 (Gulrajani et al., Algorithm 1), no clipping.

The reported "wasserstein_estimate" E[D(x)] - E[D(G(z))] is the lecture's loss curve for
the GAN-vs-WGAN comparison: it decreases as the samples improve.
"""
import math

from tinydgm import backend
from tinydgm.models.adversarial import gan_losses
from tinydgm.models.adversarial.gan import GAN, _check_players
from tinydgm.optim import Adam, RMSProp

__all__ = ["WGAN", "WGANGP", "clip_weights_"]


def clip_weights_(params, c):
    """w <- clip(w, -c, c) for every parameter, in place (Arjovsky et al. 2017, Algorithm 1)."""
    for p in params:
        p.data = backend.get_array_module(p.data).clip(p.data, -c, c)


class WGAN(GAN):
    """WGAN: a generator and a critic trained on the dual form of the Wasserstein distance.

    generator, critic: Modules as for ``GAN`` (the critic returns one score per example).
    n_critic: critic steps per generator step (>= 1); ``train_step`` splits its batch into
        n_critic minibatches, one per critic step.
    clip_value: c, the box [-c, c] every critic parameter is clipped to after each update
        (and at construction, so the critic starts inside it); None turns clipping off.
    lr: RMSProp's learning rate for both players (ignored for an optimizer that is given).
    """

    _objectives = ("wasserstein",)
    _k_name = "n_critic"

    def __init__(self, generator, critic, latent_dim, *, n_critic=5, clip_value=0.01, lr=5e-5, d_optimizer=None,
                 g_optimizer=None, rng=None):
        _check_players(type(self).__name__, generator, critic)
        if clip_value is not None:
            clip_value = float(clip_value)
            if not clip_value > 0.0 or math.isinf(clip_value):
                raise ValueError(f"{type(self).__name__}: clip_value (c) must be a finite number > 0 or None, "
                                 f"got {clip_value}")
        d_optimizer = RMSProp(critic.parameters(), lr=lr) if d_optimizer is None else d_optimizer
        g_optimizer = RMSProp(generator.parameters(), lr=lr) if g_optimizer is None else g_optimizer
        super().__init__(generator, critic, latent_dim, objective="wasserstein", k=n_critic, d_optimizer=d_optimizer,
                         g_optimizer=g_optimizer, rng=rng)
        self.clip_value = clip_value
        self._after_discriminator_step()

    @property
    def critic(self):
        return self.discriminator

    @property
    def n_critic(self):
        return self.k

    def discriminator_terms(self, x_real, x_fake, rng=None):
        """The critic's loss -(E[D(x)] - E[D(G(z))])."""
        return {"critic_loss": gan_losses.wasserstein_critic_loss(self.D(x_real), self.D(x_fake))}

    def generator_loss(self, x_fake):
        """-E[D(G(z))]."""
        return gan_losses.wasserstein_generator_loss(self.D(x_fake))

    def discriminator_step(self, x, rng=None):
        """One critic update; the returned terms add "wasserstein_estimate" = -critic_loss."""
        terms = super().discriminator_step(x, rng)
        terms["wasserstein_estimate"] = -terms["critic_loss"]
        return terms

    def _after_discriminator_step(self):
        if self.clip_value is not None:
            clip_weights_(self.critic.parameters(), self.clip_value)

    def extra_repr(self):
        return f"n_critic={self.k}, clip_value={self.clip_value}"


class WGANGP(WGAN):
    """WGAN-GP: WGAN with the gradient penalty instead of weight clipping.

    lam: lambda >= 0, the weight of the penalty (10 in the paper, for images; the authors'
        released code uses 0.1 on 2-D toys; with 10, the small toy networks of the tests
        kept jumping between modes for thousands of steps).
    lr, betas: Adam for both players (Gulrajani et al.: 1e-4, (0, 0.9)).
    The critic must score each example on its own (no batch norm): the penalty is per sample.
    """

    def __init__(self, generator, critic, latent_dim, *, n_critic=5, lam=10.0, lr=1e-4, betas=(0.0, 0.9),
                 d_optimizer=None, g_optimizer=None, rng=None):
        _check_players(type(self).__name__, generator, critic)
        lam = float(lam)
        if not lam >= 0.0 or math.isinf(lam):
            raise ValueError(f"WGANGP: lam (lambda) must be a finite number >= 0, got {lam}")
        d_optimizer = Adam(critic.parameters(), lr=lr, betas=betas) if d_optimizer is None else d_optimizer
        g_optimizer = Adam(generator.parameters(), lr=lr, betas=betas) if g_optimizer is None else g_optimizer
        super().__init__(generator, critic, latent_dim, n_critic=n_critic, clip_value=None, d_optimizer=d_optimizer,
                         g_optimizer=g_optimizer, rng=rng)
        self.lam = lam

    def discriminator_terms(self, x_real, x_fake, rng=None):
        """-(E[D(x)] - E[D(G(z))]) + lambda E[(||grad D(x_hat)||_2 - 1)^2] (Gulrajani et al., eq. 3)."""
        terms = super().discriminator_terms(x_real, x_fake, rng)
        terms["gradient_penalty"] = gan_losses.gradient_penalty(self.D, x_real, x_fake, lam=self.lam,
                                                                rng=self._rng(rng))
        return terms

    def extra_repr(self):
        return f"n_critic={self.k}, lam={self.lam}"
