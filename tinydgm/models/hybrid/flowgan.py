"""Flow-GAN: a normalizing flow used as a GAN's generator, trained by maximum likelihood, by
an adversarial game, or by both (Grover et al. 2018, "Flow-GAN: Combining Maximum
Likelihood and Adversarial Learning in Generative Models"; kuleshov-l12, "Flows + GANs: FlowGAN").

A flow x = G_theta(z) = f_theta^{-1}(z), z ~ N(0, I), is a generator whose density is exact
(kuleshov-l12, the change-of-variables formula on the FlowGAN slide):

    log p_theta(x) = log p_Z(f_theta(x)) + log |det df_theta(x)/dx|

so the same parameters can be trained three ways (the slide's table; Grover et al.):

    MLE      min_theta  -E_{p_data}[log p_theta(x)]                          (KL(p_data || p_theta))
    ADV      min_theta max_phi  V(G_theta, D_phi)                            (here WGAN-GP's V)
    Hybrid   min_theta max_phi  V(G_theta, D_phi) - lambda E_{p_data}[log p_theta(x)]

with V the critic's Wasserstein estimate E_{p_data}[D(x)] - E_z[D(G(z))] and the critic held
near 1-Lipschitz by the gradient penalty (Gulrajani et al. 2017; ``WGANGP``). The lecture's
point: the two objectives are minimised by the same p_theta = p_data, but not at the same
rate along the way; ADV makes sharper samples with a far worse test NLL, MLE the reverse,
and the hybrid sits between (Inception 2.92 / 5.76 / 3.90 and NLL 3.54 / 8.53 / 4.21
bits/dim for MLE / ADV / Hybrid lambda = 1: the slide's table, from the paper's CIFAR-10
runs with a Real NVP generator as we recall; the slide does not name the data set).

What this class adds to ``WGANGP``: the generator is the flow's inverse (``FlowGenerator``),
the generator's step minimises the chosen objective (``generator_objective``), and the
model keeps the flow's exact ``log_prob`` and ``bits_per_dim``, untouched by the critic.
``objective="mle"`` trains the flow alone (no critic step).

Data-dependent layers (act-norm) initialise themselves on the first batch they see. A GAN
would show them latents first (G(z) runs the flow backwards); here the flow's first pass is
always forward, on real data: construction does not run the generator, and the first
``train_step`` starts with a no-graph log p(x) of its batch, as maximum likelihood would.
"""
import math

from tinydgm import backend
from tinydgm.autodiff.core import Tensor, no_grad
from tinydgm.autodiff.shape import split
from tinydgm.models.adversarial.gan import _eval_mode, _frozen
from tinydgm.models.adversarial.wgan import WGANGP
from tinydgm.models.flows.base import Flow
from tinydgm.nn.module import Module

__all__ = ["FlowGAN", "FlowGenerator", "OBJECTIVES"]

OBJECTIVES = ("mle", "adv", "hybrid")


class FlowGenerator(Module):
    """x = G(z) = f^{-1}(z) for a ``Flow``: its sampling direction as a GAN generator. z comes
    flat, (N, D) with D the size of one example, and is reshaped to the flow's event shape."""

    def __init__(self, flow):
        super().__init__()
        if not isinstance(flow, Flow):
            raise TypeError(f"FlowGenerator: flow must be a tinydgm Flow, got {type(flow).__name__}")
        self.flow = flow
        self.latent_dim = math.prod(flow.event_shape)

    def forward(self, z):
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"FlowGenerator: z must have shape (N, {self.latent_dim}), got {tuple(z.shape)}")
        x, _ = self.flow.transform.inverse(z.reshape(z.shape[0], *self.flow.event_shape))
        return x

    def extra_repr(self):
        return f"f^-1 of Flow(event_shape={self.flow.event_shape})"


class FlowGAN(WGANGP):
    """A flow trained as a generator by MLE, WGAN-GP (ADV) or the hybrid of both.

    flow: a ``Flow`` (its base must be N(0, I): the GAN draws z from it).
    critic: a Module scoring a batch of the flow's event shape, one score per example (no
        batch norm: the penalty is per sample).
    objective: "mle", "adv" or "hybrid" (Grover et al.; default "hybrid").
    mle_weight: lambda of the hybrid objective (1 in the slide's table).
    n_critic, gp_weight (the penalty's lambda), lr, betas: as for ``WGANGP``; the defaults
        are WGAN-GP's (n_critic 5, lambda 10, Adam(1e-4, (0, 0.9))).
    """

    def __init__(self, flow, critic, *, objective="hybrid", mle_weight=1.0, n_critic=5, gp_weight=10.0, lr=1e-4,
                 betas=(0.0, 0.9), d_optimizer=None, g_optimizer=None, rng=None):
        if not isinstance(flow, Flow):
            raise TypeError(f"FlowGAN: flow must be a tinydgm Flow, got {type(flow).__name__}")
        if flow.base is not None:
            raise ValueError("FlowGAN: the flow's base must be the standard normal (base=None): the generator "
                             "draws z ~ N(0, I)")
        objective = str(objective).lower()
        if objective not in OBJECTIVES:
            raise ValueError(f"FlowGAN: objective must be one of {OBJECTIVES}, got {objective!r}")
        mle_weight = float(mle_weight)
        if not mle_weight >= 0 or math.isinf(mle_weight):
            raise ValueError(f"FlowGAN: mle_weight (lambda) must be a finite number >= 0, got {mle_weight}")
        generator = FlowGenerator(flow)
        super().__init__(generator, critic, generator.latent_dim, n_critic=n_critic, lam=gp_weight, lr=lr,
                         betas=betas, d_optimizer=d_optimizer, g_optimizer=g_optimizer, rng=rng)
        self.objective = objective
        self.mle_weight = mle_weight
        self._seen_data = False

    @property
    def flow(self):
        return self.generator.flow

    def _probe_shapes(self):
        """The flow's event shape, and the critic checked on two zero examples of it. The
        generator is not run (see the module docstring: act-norm would initialise on latents)."""
        p = self._param_like()
        x = Tensor(backend.xp_of(p.data).zeros((2,) + self.generator.flow.event_shape, dtype=p.dtype))
        with no_grad(), _eval_mode(self.discriminator):
            try:
                scores = self.discriminator(x)
            except (ValueError, TypeError) as err:
                raise ValueError(f"FlowGAN: the critic does not take the flow's examples, shape {x.shape[1:]}: "
                                 f"{err}") from None
        if not isinstance(scores, Tensor) or scores.shape not in ((2,), (2, 1)):
            raise ValueError(f"FlowGAN: the critic must return one score per example, shape (N,) or (N, 1), got "
                             f"{getattr(scores, 'shape', type(scores).__name__)} for a batch of {x.shape}")
        return tuple(self.generator.flow.event_shape)

    # --- the exact likelihood (the flow's own)
    def log_prob(self, x):
        """log p_theta(x) in nats, shape (N,): the flow's change of variables, exactly."""
        return self.flow.log_prob(self._check_batch_graph(x, "log_prob"))

    def bits_per_dim(self, x):
        """-log p_theta(x) / (D ln 2), shape (N,)."""
        return self.flow.bits_per_dim(self._check_batch_graph(x, "bits_per_dim"))

    # --- the generator's objectives
    def mle_loss(self, x):
        """-E_{p_data}[log p_theta(x)] on the batch (0-d): the MLE objective."""
        return -self.flow.log_prob(x).mean()

    def adversarial_loss(self, z):
        """-E_z[D(G_theta(z))] (0-d): the generator's side of V (the E[D(x)] term does not
        depend on theta)."""
        return self.generator_loss(self.G(z))

    def generator_objective(self, x, z):
        """The objective the generator's step minimises, with its parts:

            mle     -mean log p_theta(x)
            adv     -mean D(G_theta(z))
            hybrid  adv + lambda mle

        Returns (objective, {"nll": mle, "adversarial": adv}); the part not in the objective is
        computed only when asked for by training reports (``train_step``)."""
        if self.objective == "mle":
            nll = self.mle_loss(x)
            return nll, {"nll": nll}
        adv = self.adversarial_loss(z)
        if self.objective == "adv":
            return adv, {"adversarial": adv}
        nll = self.mle_loss(x)
        return adv + self.mle_weight * nll, {"nll": nll, "adversarial": adv}

    # --- training
    def train_step(self, x, rng=None):
        """One round: for ADV and Hybrid, n_critic critic steps (WGAN-GP, one minibatch of x
        each), then one generator step on ``generator_objective`` over the whole batch x and
        as many fresh z; for MLE, the generator step alone. Returns floats: the critic's
        terms (averaged), "generator_objective", "nll" (nats per example, also for ADV:
        measured on x without graph) and "adversarial" where computed."""
        rng = self._rng(rng)
        x = self._check_batch(x, "train_step")
        if not self._seen_data:
            with no_grad():
                self.flow.log_prob(x)            # data-dependent layers initialise on data, not on G(z)
            self._seen_data = True
        report = {}
        if self.objective != "mle":
            n = x.shape[0]
            if n % self.k:
                raise ValueError(f"FlowGAN.train_step: the batch of {n} examples must split into n_critic = "
                                 f"{self.k} equal minibatches; pass a multiple of {self.k}")
            history = [self.discriminator_step(x_i, rng) for x_i in split(x, self.k, axis=0)]
            report = {name: sum(h[name] for h in history) / self.k for name in history[0]}
        z = self.sample_latent(x.shape[0], rng)
        with _frozen(self.critic):
            objective, parts = self.generator_objective(x, z)
            self.g_optimizer.zero_grad()
            objective.backward()
        self.g_optimizer.step()
        report["generator_objective"] = objective.item()
        report.update({name: value.item() for name, value in parts.items()})
        if "nll" not in report:
            with no_grad():
                report["nll"] = self.mle_loss(x).item()
        return report

    # --- helpers
    def _check_batch_graph(self, x, who):
        """x as a Tensor in the model's dtype, shape (N, *event_shape); a Tensor that
        requires gradients keeps its graph (log p_theta(x) is differentiable in x)."""
        if isinstance(x, Tensor) and x.requires_grad:
            if tuple(x.shape[1:]) != self.event_shape:
                raise ValueError(f"FlowGAN.{who}: x must have shape (N, {', '.join(map(str, self.event_shape))}), "
                                 f"got shape {x.shape}")
            return x
        return self._check_batch(x, who)

    def extra_repr(self):
        weight = f", mle_weight={self.mle_weight}" if self.objective == "hybrid" else ""
        return f"objective={self.objective}{weight}, n_critic={self.k}, gp_weight={self.lam}"
