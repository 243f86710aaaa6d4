"""Generative adversarial network (Goodfellow et al. 2014; intro lecture part I).

Sample z ~ p(z) = N(0, I), map it through the generator, x = G(z); the density p_G(x) is never
evaluated. Instead a discriminator D(x) in [0, 1] (here D = sigmoid(logit)) says whether x is
real or generated, and the two play

    min_G max_D V(D, G),   V(D, G) = E_{x ~ p_data}[ln D(x)] + E_{z ~ p(z)}[ln(1 - D(G(z)))].

Training in practice (Goodfellow et al. 2014, Algorithm 1; intro lecture, "training GANs in
practice"): the expectations become minibatch averages and the players take alternating
gradient steps, k discriminator steps (each on its own minibatch) per generator step:

    repeat k times:  x ~ p_data (m examples), z ~ p(z) (m),  ascend V in D's parameters
    once:            z ~ p(z) (m),  descend the generator loss in G's parameters

The generator loss is the game's own, E_z[ln(1 - D(G(z)))] ("minimax"), or -E_z[ln D(G(z))]
("non_saturating", the default), which has the same fixed point but does not vanish when D
confidently rejects the fakes (see ``gan_losses``).

The protocol of a two-player model: ``train_step(x, rng)`` (instead of ``loss``), and
``sample(n, rng)``. No ``log_prob``: p_G has no tractable density. WGAN and WGAN-GP
(``wgan.py``) reuse the alternation with other losses.
"""
import contextlib

from tinydgm import backend
from tinydgm.autodiff.core import Tensor, no_grad
from tinydgm.autodiff.shape import split
from tinydgm.data.transforms import as_generator
from tinydgm.distributions import StandardNormal
from tinydgm.models.adversarial import gan_losses
from tinydgm.nn.module import Module
from tinydgm.optim import Adam, Optimizer

__all__ = ["GAN"]

def _check_players(who, generator, discriminator):
    for name, module in (("generator", generator), ("discriminator", discriminator)):
        if not isinstance(module, Module):
            raise TypeError(f"{who}: {name} must be a Module, got {type(module).__name__}")


def _check_count(who, name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{who}: {name} must be an int >= 1, got {value!r}")
    return value


def _short(module):
    """A one-line description of a network: its class, its settings, its size."""
    extra = module.extra_repr() if isinstance(module, Module) else ""
    size = f", {module.num_parameters():,} parameters" if isinstance(module, Module) else ""
    return f"{type(module).__name__}({extra}{size})"


@contextlib.contextmanager
def _frozen(module):
    """The module's parameters stop requiring gradients (the generator step needs none for
    the discriminator: its weight-gradient products are skipped)."""
    params = [p for p in module.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad = False
    try:
        yield
    finally:
        for p in params:
            p.requires_grad = True


@contextlib.contextmanager
def _eval_mode(*modules):
    """Evaluation mode (batch norm on its running statistics) for the block, then the old modes."""
    modes = [m.training for m in modules]
    for m in modules:
        m.eval()
    try:
        yield
    finally:
        for m, mode in zip(modules, modes):
            m.train(mode)


class GAN(Module):
    """A generator trained against a discriminator by alternating updates.

    generator: a Module mapping z of shape (N, latent_dim) to x of shape (N, *event_shape).
    discriminator: a Module mapping x to one logit per example, shape (N,) (or (N, 1)).
    latent_dim: the size of z ~ N(0, I).
    objective: the generator's loss, "non_saturating" (default) or "minimax".
    k: discriminator steps per generator step (Algorithm 1; Goodfellow et al. used k = 1).
    lr, betas: Adam for both players when no optimizers are given; DCGAN's setting
        (Radford et al. 2016: lr = 2e-4, beta1 = 0.5).
    d_optimizer, g_optimizer: optimizers over the discriminator's and the generator's
        parameters (each made here with Adam(lr, betas) when None).
    rng: NumPy Generator, int seed or None (the process-wide generator): draws z (and the
        interpolation weights of WGAN-GP) when a step is given no rng of its own.

    The event shape is found by passing two latent vectors through the generator (in
    evaluation mode, no graph) and its output through the discriminator; a generator and
    discriminator that do not fit together fail here, with both shapes in the message.
    """

    _objectives = ("non_saturating", "minimax")   # the generator losses this class offers
    _k_name = "k"                                  # what the paper calls the inner step count

    def __init__(self, generator, discriminator, latent_dim, *, objective="non_saturating", k=1, lr=2e-4,
                 betas=(0.5, 0.999), d_optimizer=None, g_optimizer=None, rng=None):
        super().__init__()
        who = self._who
        _check_players(who, generator, discriminator)
        objective = str(objective).replace("-", "_")
        if objective not in self._objectives:
            raise ValueError(f"{who}: objective must be one of {self._objectives}, got {objective!r}")
        self.generator, self.discriminator = generator, discriminator
        self.latent_dim = _check_count(who, "latent_dim", latent_dim)
        self.objective = objective
        self.k = _check_count(who, self._k_name, k)
        self.rng = as_generator(rng)
        self.event_shape = self._probe_shapes()
        self.d_optimizer = self._optimizer(d_optimizer, discriminator, "d_optimizer", lr, betas)
        self.g_optimizer = self._optimizer(g_optimizer, generator, "g_optimizer", lr, betas)

    # --- construction
    @property
    def _who(self):
        return type(self).__name__

    def _optimizer(self, given, module, name, lr, betas):
        """``given``, or Adam(lr, betas) over the module's parameters."""
        if given is None:
            return Adam(module.parameters(), lr=lr, betas=betas)
        if not isinstance(given, Optimizer):
            raise TypeError(f"{self._who}: {name} must be a tinydgm.optim Optimizer, got {type(given).__name__}")
        return given

    def _probe_shapes(self):
        """x = G(z) for two z, then D(x): the event shape, or a clear error."""
        who = self._who
        z = self.sample_latent(2, rng=backend.rng(0))
        with no_grad(), _eval_mode(self.generator, self.discriminator):
            x = self._probe_generator(z)
            try:
                scores = self.discriminator(x)
            except (ValueError, TypeError) as err:
                raise ValueError(f"{who}: the generator makes x of shape {x.shape[1:]} per example, which the "
                                 f"discriminator does not take: {err}") from None
        if not isinstance(scores, Tensor) or scores.shape not in ((2,), (2, 1)):
            raise ValueError(f"{who}: the discriminator must return one output per example, shape (N,) or "
                             f"(N, 1), got {getattr(scores, 'shape', type(scores).__name__)} for a batch of "
                             f"{x.shape}")
        return tuple(x.shape[1:])

    def _probe_generator(self, z):
        """x = G(z) for the two probe z (under no_grad, eval mode), or a clear error."""
        who = self._who
        try:
            x = self.generator(z)
        except (ValueError, TypeError) as err:
            raise ValueError(f"{who}: the generator does not take z of shape (N, latent_dim) = "
                             f"{z.shape}: {err}") from None
        if not isinstance(x, Tensor) or x.ndim < 2 or x.shape[0] != 2:
            raise ValueError(f"{who}: the generator must map z of shape {z.shape} to a batch (2, ...), got "
                             f"{getattr(x, 'shape', type(x).__name__)}")
        return x

    def _param_like(self):
        return next(iter(self.generator.parameters()))

    # --- the two players
    def sample_latent(self, n, rng=None):
        """z ~ p(z) = N(0, I), shape (n, latent_dim), in the generator's dtype and device."""
        p = self._param_like()
        return StandardNormal((self.latent_dim,), dtype=p.dtype, device=p.device).sample((n,), self._rng(rng))

    def D(self, x):
        """The discriminator's output per example, shape (N,): a logit (D(x) = sigmoid of it)
        for a GAN, the critic's score for a WGAN."""
        scores = self.discriminator(x)
        return scores.reshape(-1) if scores.ndim == 2 else scores

    def G(self, z):
        """x = G(z), shape (N, *event_shape)."""
        return self.generator(z)

    # --- losses (one minibatch)
    def discriminator_terms(self, x_real, x_fake, rng=None):
        """The discriminator's loss as named 0-d Tensors whose sum it minimises: here -V(D, G)."""
        return {"discriminator_loss": gan_losses.discriminator_loss(self.D(x_real), self.D(x_fake))}

    def generator_loss(self, x_fake):
        """E_z[ln(1 - D(G(z)))] (minimax) or -E_z[ln D(G(z))] (non-saturating), 0-d Tensor."""
        logits = self.D(x_fake)
        if self.objective == "minimax":
            return gan_losses.minimax_generator_loss(logits)
        return gan_losses.non_saturating_generator_loss(logits)

    # --- training
    def discriminator_step(self, x, rng=None):
        """One update of the discriminator on the real minibatch x and as many fakes G(z)
        (the generator gets no gradient); returns the terms of its loss as floats."""
        x = self._check_batch(x, "discriminator_step")
        with no_grad():
            x_fake = self.G(self.sample_latent(x.shape[0], rng))
        terms = self.discriminator_terms(x, x_fake, rng=self._rng(rng))
        loss = sum(terms.values())
        self.d_optimizer.zero_grad()
        loss.backward()
        self.d_optimizer.step()
        self._after_discriminator_step()
        return {name: value.item() for name, value in terms.items()}

    def _after_discriminator_step(self):
        """A hook for constraints on the discriminator after its update (WGAN clips)."""

    def generator_step(self, m, rng=None):
        """One update of the generator on m fresh z; returns its loss as a float."""
        _check_count(self._who, "m", m)
        with _frozen(self.discriminator):
            loss = self.generator_loss(self.G(self.sample_latent(m, rng)))
            self.g_optimizer.zero_grad()
            loss.backward()
        self.g_optimizer.step()
        return loss.item()

    def train_step(self, x, rng=None):
        """One round of Algorithm 1: x (k m examples) is split into k minibatches of m, one
        per discriminator step, then the generator takes one step on m fresh z.

        Returns a dict of floats: each discriminator term averaged over the k steps, and
        "generator_loss". x: a Tensor or array of shape (k m, *event_shape).
        """
        rng = self._rng(rng)
        x = self._check_batch(x, "train_step")
        n = x.shape[0]
        if n % self.k:
            raise ValueError(f"{self._who}.train_step: the batch of {n} examples must split into k = {self.k} "
                             f"equal minibatches (one per discriminator step); pass a multiple of {self.k}")
        history = [self.discriminator_step(x_i, rng) for x_i in split(x, self.k, axis=0)]
        report = {name: sum(h[name] for h in history) / self.k for name in history[0]}
        report["generator_loss"] = self.generator_step(n // self.k, rng)
        return report

    # --- sampling
    def sample(self, n, rng=None):
        """x = G(z), z ~ N(0, I): a Tensor (n, *event_shape) without graph, on the model's
        device (the generator in evaluation mode: batch norm on its running statistics)."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"{self._who}.sample: n must be a non-negative int, got {n!r}")
        with no_grad(), _eval_mode(self.generator):
            return self.G(self.sample_latent(n, rng))

    def generate(self, z):
        """x = G(z) for given latent vectors z (n, latent_dim), without graph, in evaluation
        mode: for interpolations and latent arithmetic."""
        z = z if isinstance(z, Tensor) else Tensor(backend.as_array(z, dtype=self._param_like().dtype,
                                                                    device=self._param_like().device))
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"{self._who}.generate: z must have shape (n, {self.latent_dim}), got shape {z.shape}")
        with no_grad(), _eval_mode(self.generator):
            return self.G(z)

    # --- helpers
    def _rng(self, rng):
        return self.rng if rng is None else as_generator(rng)

    def _check_batch(self, x, who):
        """x as a Tensor in the model's dtype and device, shape (N, *event_shape)."""
        p = self._param_like()
        if not isinstance(x, Tensor):
            x = Tensor(backend.as_array(x, dtype=p.dtype, device=p.device))
        elif x.dtype != p.dtype:
            x = x.astype(p.dtype)
        if x.ndim < 1 or tuple(x.shape[1:]) != self.event_shape or x.shape[0] < 1:
            raise ValueError(f"{self._who}.{who}: x must have shape (N, {', '.join(map(str, self.event_shape))}) "
                             f"with N >= 1, the generator's output shape, got shape {x.shape}")
        return x.detach()

    def extra_repr(self):
        return f"objective={self.objective}, k={self.k}"

    def __repr__(self):
        # the Module summary's first line (parameter count, dtype, device), then one line per player
        return (f"{type(self).__name__}(latent_dim={self.latent_dim}, event_shape={self.event_shape}, "
                f"{self.extra_repr()}): {self.summary()}\n  (generator): {_short(self.generator)}\n"
                f"  (discriminator): {_short(self.discriminator)}")
