"""The adversarial objectives, as functions of the discriminator's (critic's) outputs.

GAN (Goodfellow et al. 2014; intro lecture part I, "GAN optimization problem"). The
discriminator outputs a logit l(x) and D(x) = sigmoid(l(x)), so that ln D = log_sigmoid(l)
and ln(1 - D) = log_sigmoid(-l) are computed stably from the logits:

    V(D, G) = E_{x ~ p_data}[ln D(x)] + E_{z ~ p(z)}[ln(1 - D(G(z)))],     min_G max_D V(D, G)

    discriminator_loss         -V(D, G)                     (D ascends V)
    minimax_generator_loss     E_z[ln(1 - D(G(z)))]         (G descends V: the game as written)
    non_saturating_generator_loss   -E_z[ln D(G(z))]        (the loss used in practice)

Why the non-saturating loss (intro lecture, "why is GAN training difficult", point 1-2):
per fake sample, d/dl ln(1 - sigmoid(l)) = -D and d/dl [-ln sigmoid(l)] = -(1 - D). When the
discriminator confidently rejects a fake (D -> 0, early in training) the minimax gradient
vanishes while the non-saturating one stays near -1; both push l (so D) up.

WGAN (Arjovsky et al. 2017; intro lecture, "Wasserstein GAN"): the critic's output D(x) is
an unbounded score (no log-sigmoid), and the dual form of the Wasserstein distance,

    D_WS(p_data || p_G) = (1/k) max_{||D||_L <= k} E_{p_data}[D(x)] - E_{p(z)}[D(G(z))],

gives the critic loss -(E[D(x)] - E[D(G(z))]) and the generator loss -E[D(G(z))].

WGAN-GP (Gulrajani et al. 2017, eq. 3): the Lipschitz constraint as a penalty on the norm of
the critic's input gradient at random interpolates of real and generated samples,

    lambda E_{x_hat}[(||grad_{x_hat} D(x_hat)||_2 - 1)^2],   x_hat = alpha x + (1 - alpha) x_tilde,
    alpha ~ U[0, 1] one per sample,

differentiated again with respect to the critic's parameters (a double backward).
"""
import math

from tinydgm import backend
from tinydgm.autodiff.core import Tensor, grad, no_grad
from tinydgm.autodiff.elementwise import log_sigmoid, sqrt
from tinydgm.autodiff.reduce import mean

__all__ = ["gan_value", "discriminator_loss", "minimax_generator_loss", "non_saturating_generator_loss",
           "wasserstein_estimate", "wasserstein_critic_loss", "wasserstein_generator_loss",
           "interpolates", "gradient_penalty"]


def _check_scores(scores, who, name):
    if not isinstance(scores, Tensor):
        raise TypeError(f"{who}: {name} must be a Tensor, got {type(scores).__name__}")
    if scores.ndim != 1:
        raise ValueError(f"{who}: {name} must have shape (N,), one output per example, got shape {scores.shape}")


# ----------------------------------------------------------------------------- GAN

def gan_value(real_logits, fake_logits):
    """V(D, G) = mean ln D(x) + mean ln(1 - D(G(z))) on a minibatch (intro lecture, the
    objective V(phi, theta) with expectations replaced by sample averages), from the
    discriminator's logits l on real (x) and generated (G(z)) examples, each shape (N,)."""
    _check_scores(real_logits, "gan_value", "real_logits")
    _check_scores(fake_logits, "gan_value", "fake_logits")
    return mean(log_sigmoid(real_logits)) + mean(log_sigmoid(-fake_logits))


def discriminator_loss(real_logits, fake_logits):
    """-V(D, G): the discriminator maximises V, so its optimizer minimises -V (0-d Tensor)."""
    return -gan_value(real_logits, fake_logits)


def minimax_generator_loss(fake_logits):
    """E_z[ln(1 - D(G(z)))]: the generator's side of min_G max_D V (it saturates when D
    rejects the fakes: d/dl = -D per sample)."""
    _check_scores(fake_logits, "minimax_generator_loss", "fake_logits")
    return mean(log_sigmoid(-fake_logits))


def non_saturating_generator_loss(fake_logits):
    """-E_z[ln D(G(z))] (Goodfellow et al. 2014, section 3): the same fixed point as the
    minimax loss, with gradient -(1 - D) per sample, strong when D rejects the fakes."""
    _check_scores(fake_logits, "non_saturating_generator_loss", "fake_logits")
    return -mean(log_sigmoid(fake_logits))


# ----------------------------------------------------------------------------- WGAN

def wasserstein_estimate(real_scores, fake_scores):
    """E[D(x)] - E[D(G(z))] on a minibatch: the dual-form estimate of the Wasserstein
    distance (times the critic's Lipschitz constant k), the quantity WGAN's critic ascends."""
    _check_scores(real_scores, "wasserstein_estimate", "real_scores")
    _check_scores(fake_scores, "wasserstein_estimate", "fake_scores")
    return mean(real_scores) - mean(fake_scores)


def wasserstein_critic_loss(real_scores, fake_scores):
    """-(E[D(x)] - E[D(G(z))]): the critic's loss (Arjovsky et al. 2017, Algorithm 1)."""
    return -wasserstein_estimate(real_scores, fake_scores)


def wasserstein_generator_loss(fake_scores):
    """-E[D(G(z))]: the generator's loss (the E[D(x)] term does not depend on G)."""
    _check_scores(fake_scores, "wasserstein_generator_loss", "fake_scores")
    return -mean(fake_scores)


# ----------------------------------------------------------------------------- WGAN-GP

def _check_pair(x_real, x_fake, who):
    for name, x in (("x_real", x_real), ("x_fake", x_fake)):
        if not isinstance(x, Tensor):
            raise TypeError(f"{who}: {name} must be a Tensor, got {type(x).__name__}")
        if x.ndim < 2:
            raise ValueError(f"{who}: {name} must have shape (N, ...), got shape {x.shape}")
    if x_real.shape != x_fake.shape:
        raise ValueError(f"{who}: x_real has shape {x_real.shape} but x_fake has shape {x_fake.shape}")


def _uniform_alpha(rng, n, like):
    """alpha ~ U[0, 1], one per sample, in ``like``'s dtype and device."""
    rng = backend.default_generator() if rng is None else rng
    alpha = backend.to_device(rng.random(n), like.device).astype(like.dtype)
    return Tensor(alpha)


def interpolates(x_real, x_fake, alpha):
    """x_hat = alpha x + (1 - alpha) x_tilde with one alpha per sample (shape (N,)), broadcast
    over every other dimension of the (N, ...) batches (Gulrajani et al. 2017, Algorithm 1)."""
    _check_pair(x_real, x_fake, "interpolates")
    alpha = alpha if isinstance(alpha, Tensor) else Tensor(backend.as_array(alpha, dtype=x_real.dtype,
                                                                           device=x_real.device))
    if alpha.shape != (x_real.shape[0],):
        raise ValueError(f"interpolates: alpha must have shape (N,) = ({x_real.shape[0]},), one per sample, "
                         f"got shape {alpha.shape}")
    alpha = alpha.reshape((-1,) + (1,) * (x_real.ndim - 1))
    return alpha * x_real + (1 - alpha) * x_fake


def gradient_penalty(critic, x_real, x_fake, lam=10.0, alpha=None, rng=None, eps=1e-12):
    """lambda E_{x_hat}[(||grad_{x_hat} D(x_hat)||_2 - 1)^2] (Gulrajani et al. 2017, eq. 3), a
    0-d Tensor whose gradient reaches the critic's parameters (``create_graph=True``).

    critic: a function or Module mapping a batch (N, ...) to scores of shape (N,) (or
        (N, 1)), each example's score depending on that example only (no batch norm: the
        penalty is per sample).
    x_real, x_fake: batches of the same shape (N, ...); both are treated as constants (the
        penalty trains the critic only), so x_fake may come from the generator's graph.
    alpha: (N,) interpolation weights in [0, 1]; drawn from U[0, 1] with ``rng`` when None.
    eps: added under the square root, so the norm stays differentiable where the input
        gradient vanishes (a ReLU critic with every unit off); it moves ||.|| by < 1e-6.

    The per-sample norm runs over all of a sample's dimensions (channels and pixels of an
    image). Because the scores of different examples do not interact, the gradient of
    their sum with respect to the batch x_hat holds every example's own input gradient.
    """
    _check_pair(x_real, x_fake, "gradient_penalty")
    lam = float(lam)
    if not lam >= 0.0 or math.isinf(lam):
        raise ValueError(f"gradient_penalty: lam (lambda) must be a finite number >= 0, got {lam}")
    n = x_real.shape[0]
    if alpha is None:
        alpha = _uniform_alpha(rng, n, x_real)
    with no_grad():
        x_hat = interpolates(x_real.detach(), x_fake.detach(), alpha)
    x_hat.requires_grad_()                                          # a leaf to differentiate at
    scores = critic(x_hat)
    if scores.shape not in ((n,), (n, 1)):
        raise ValueError(f"gradient_penalty: the critic must return one score per example, shape ({n},), "
                         f"got shape {scores.shape}")
    grad_x_hat, = grad(scores.sum(), x_hat, create_graph=True)      # (N, ...), differentiable
    squared = (grad_x_hat * grad_x_hat).reshape(n, -1).sum(axis=1)  # ||grad||^2 per sample
    grad_norm = sqrt(squared + eps)
    return lam * mean((grad_norm - 1) ** 2)
