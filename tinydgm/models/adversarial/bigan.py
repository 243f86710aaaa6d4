"""Bidirectional GAN, BiGAN (Donahue et al. 2017; intro lecture part I, "Latent variable
inference in GANs", "Induced joint distributions over (x, z)" and "Bidirectional GANs").

A GAN's generator maps z to x but nothing maps x back to z. A BiGAN adds an encoder E: x -> z
and lets the discriminator judge pairs. Each player induces a joint distribution over (x, z):

    encoder     p_E(x, z) = p_data(x) delta(z - E(x))          pairs (x, E(x)),  x ~ p_data
    generator   p_G(x, z) = p(z) delta(x - G(z))               pairs (G(z), z),  z ~ p(z) = N(0, I)

and the discriminator D(x, z) in [0, 1] (here D = sigmoid(logit)) says which of the two made
a pair. The game is

    V(D, E, G) = E_{x ~ p_data}[ln D(x, E(x))] + E_{z ~ p(z)}[ln(1 - D(G(z), z))],
    min_{G, E} max_D V(D, E, G).

For fixed E and G the pointwise argument of the GAN (intro lecture eq. 14) applies to pairs:

    D*(x, z) = p_E(x, z) / (p_E(x, z) + p_G(x, z))                     (``optimal_joint_discriminator``)
    max_D V(D, E, G) = 2 JSD(p_E(x, z) || p_G(x, z)) - ln 4,

so the game is won when the two joints agree, and then (Donahue et al., Theorem 2) E and G
invert each other: x = G(E(x)) for p_data-almost every x and z = E(G(z)) for almost every z.

Training (as ``GAN``): k discriminator steps, each on its own minibatch of real x (paired
with E(x)) and as many fresh z (paired with G(z)); then one joint step of the encoder and the
generator, which share one optimizer. Their loss is the game's own V ("minimax"), or, by
default, the same game with the labels swapped, as Donahue et al. train it ("non_saturating"):

    L_{E,G} = -E_{p(z)}[ln D(G(z), z)] - E_{p_data}[ln(1 - D(x, E(x)))]

(the generator's pairs should look like the encoder's and the encoder's like the generator's).

The players are any Modules that fit together: ``encoder(x) -> z`` of shape (N, latent_dim),
``generator(z) -> x`` of shape (N, *event_shape) and ``discriminator(x, z)`` -> one logit per
pair, (N,) or (N, 1); ``JointDiscriminator`` is an MLP on the concatenation [x, z]. The theory
also holds for stochastic E and G (p_E(z|x), p_G(x|z)); the tests use noisy linear players so
that both joints have densities and D* can be computed on a grid.
"""
from tinydgm import backend
from tinydgm.autodiff.core import Tensor, no_grad
from tinydgm.autodiff.elementwise import leaky_relu
from tinydgm.autodiff.shape import concatenate, split
from tinydgm.models.adversarial import gan_losses
from tinydgm.models.adversarial.gan import GAN, _check_players, _eval_mode, _frozen, _short
from tinydgm.models.adversarial.toy_networks import _check_sizes, _dense_stack
from tinydgm.nn.module import Module
from tinydgm.optim import Adam, Optimizer

__all__ = ["BiGAN", "JointDiscriminator", "optimal_joint_discriminator"]


def optimal_joint_discriminator(log_p_data, log_p_e_z_given_x, log_p_z, log_p_g_x_given_z):
    """D*(x, z) = p_E(x, z) / (p_E(x, z) + p_G(x, z)) with p_E(x, z) = p_data(x) p_E(z|x) and
    p_G(x, z) = p(z) p_G(x|z), elementwise from log densities on the same grid of pairs (the
    GAN's eq. 14 for pairs; intro lecture, "Bidirectional GANs"), computed as
    sigmoid(ln p_E - ln p_G) so that tails do not underflow."""
    logs = dict(log_p_data=log_p_data, log_p_e_z_given_x=log_p_e_z_given_x, log_p_z=log_p_z,
                log_p_g_x_given_z=log_p_g_x_given_z)
    shapes = {name: tuple(a.shape) for name, a in logs.items()}
    if len(set(shapes.values())) != 1:
        raise ValueError("optimal_joint_discriminator: the log densities must have the same shape (one value per "
                         "pair (x, z) of the grid), got " + ", ".join(f"{k} {v}" for k, v in shapes.items()))
    xp = backend.get_array_module(*logs.values())
    log_p_e = log_p_data + log_p_e_z_given_x                # ln p_E(x, z)
    log_p_g = log_p_z + log_p_g_x_given_z                   # ln p_G(x, z)
    return xp.exp(log_p_e - xp.logaddexp(log_p_e, log_p_g))


class JointDiscriminator(Module):
    """l = D(x, z): an MLP on the concatenation [flatten(x), z] (Linear -> LeakyReLU for each
    hidden layer, then a linear layer to one logit per pair, shape (N,)).

    data_dim: the size of one flattened x. latent_dim: the size of z.
    """

    def __init__(self, data_dim, latent_dim, hidden=(128, 128), negative_slope=0.2, rng=None, dtype=None,
                 device=None):
        super().__init__()
        hidden = tuple(hidden)
        _check_sizes("JointDiscriminator", data_dim=data_dim, latent_dim=latent_dim, hidden=hidden)
        self.data_dim, self.latent_dim, self.hidden = data_dim, latent_dim, hidden
        self.negative_slope = float(negative_slope)
        self.layers = _dense_stack((data_dim + latent_dim,) + hidden + (1,), rng, dtype, device)

    def forward(self, x, z):
        x = x.reshape(x.shape[0], -1)
        if x.shape[1] != self.data_dim or z.ndim != 2 or z.shape[1] != self.latent_dim or z.shape[0] != x.shape[0]:
            raise ValueError(f"JointDiscriminator: expects x with {self.data_dim} entries per example and z of shape "
                             f"(N, {self.latent_dim}) for the same N, got x {x.shape} (flattened) and z {z.shape}")
        h = concatenate([x, z], axis=1)                     # the pair (x, z) as one vector
        for layer in self.layers[:-1]:
            h = leaky_relu(layer(h), self.negative_slope)
        return self.layers[-1](h).reshape(-1)

    def extra_repr(self):
        return f"{self.data_dim} + {self.latent_dim} -> {list(self.hidden)} -> 1, negative_slope={self.negative_slope}"

    def __repr__(self):
        return f"JointDiscriminator({self.extra_repr()})"


class BiGAN(GAN):
    """An encoder, a generator and a discriminator of pairs, trained by alternating updates.

    encoder: a Module mapping x (N, *event_shape) to z (N, latent_dim).
    generator: a Module mapping z (N, latent_dim) to x (N, *event_shape).
    discriminator: a Module mapping a pair (x, z) to one logit per example, (N,) or (N, 1).
    latent_dim: the size of z ~ N(0, I).
    objective: "non_saturating" (default: the labels swapped for E and G) or "minimax" (E and
        G descend V itself).
    k: discriminator steps per encoder-generator step.
    lr, betas: Adam for both sides when no optimizers are given (DCGAN's 2e-4, (0.5, 0.999)).
    d_optimizer: over the discriminator's parameters. g_optimizer: over the generator's AND
        the encoder's parameters (one step moves both: they play on the same side).
    rng: NumPy Generator, int seed or None: draws z when a step is given no rng of its own.

    The shapes are probed at construction: z -> G(z) -> E(G(z)) -> D(G(z), z); players that do
    not fit together fail there, with the shapes in the message.
    """

    def __init__(self, encoder, generator, discriminator, latent_dim, *, objective="non_saturating", k=1, lr=2e-4,
                 betas=(0.5, 0.999), d_optimizer=None, g_optimizer=None, rng=None):
        if not isinstance(encoder, Module):
            raise TypeError(f"BiGAN: encoder must be a Module, got {type(encoder).__name__}")
        _check_players("BiGAN", generator, discriminator)
        if g_optimizer is None:                            # E and G share the minimising side
            g_optimizer = Adam(list(generator.parameters()) + list(encoder.parameters()), lr=lr, betas=betas)
        elif not isinstance(g_optimizer, Optimizer):
            raise TypeError(f"BiGAN: g_optimizer must be a tinydgm.optim Optimizer, got {type(g_optimizer).__name__}")
        Module.__init__(self)
        self.encoder = encoder                             # before GAN.__init__ probes the shapes
        super().__init__(generator, discriminator, latent_dim, objective=objective, k=k, lr=lr, betas=betas,
                         d_optimizer=d_optimizer, g_optimizer=g_optimizer, rng=rng)

    def _probe_shapes(self):
        """z -> x = G(z) -> E(x) and D(x, z) for two z: the event shape, or a clear error."""
        z = self.sample_latent(2, rng=backend.rng(0))
        with no_grad(), _eval_mode(self.generator, self.encoder, self.discriminator):
            x = self._probe_generator(z)
            try:
                z_hat = self.encoder(x)
            except (ValueError, TypeError) as err:
                raise ValueError(f"BiGAN: the generator makes x of shape {x.shape[1:]} per example, which the "
                                 f"encoder does not take: {err}") from None
            if not isinstance(z_hat, Tensor) or z_hat.shape != z.shape:
                raise ValueError(f"BiGAN: the encoder must map x of shape {x.shape} to z of shape (N, latent_dim) = "
                                 f"{z.shape}, got {getattr(z_hat, 'shape', type(z_hat).__name__)}")
            try:
                scores = self.discriminator(x, z)
            except (ValueError, TypeError) as err:
                raise ValueError(f"BiGAN: the discriminator does not take the pair (x, z) with x of shape "
                                 f"{x.shape} and z of shape {z.shape}: {err}") from None
        if not isinstance(scores, Tensor) or scores.shape not in ((2,), (2, 1)):
            raise ValueError(f"BiGAN: the discriminator must return one output per pair, shape (N,) or (N, 1), got "
                             f"{getattr(scores, 'shape', type(scores).__name__)} for a batch of 2 pairs")
        return tuple(x.shape[1:])

    # --- the three players
    def D(self, x, z):
        """The discriminator's logit per pair (x, z), shape (N,): D(x, z) = sigmoid of it."""
        scores = self.discriminator(x, z)
        return scores.reshape(-1) if scores.ndim == 2 else scores

    def E(self, x):
        """z = E(x), shape (N, latent_dim)."""
        return self.encoder(x)

    # --- losses (one minibatch)
    def value(self, x, z):
        """V(D, E, G) on a minibatch: mean ln D(x, E(x)) + mean ln(1 - D(G(z), z)), 0-d Tensor,
        differentiable with respect to all three players (intro lecture, "Bidirectional GANs")."""
        return gan_losses.gan_value(self.D(x, self.E(x)), self.D(self.G(z), z))

    def discriminator_terms(self, x, z_hat, x_fake, z):
        """-V(D, E, G) for the encoder's pairs (x, z_hat = E(x)) and the generator's pairs
        (x_fake = G(z), z): the discriminator ascends V."""
        return {"discriminator_loss": gan_losses.discriminator_loss(self.D(x, z_hat), self.D(x_fake, z))}

    def encoder_generator_loss(self, x, z):
        """The loss of E and G on real x and prior z, 0-d Tensor: V itself ("minimax"), or with
        the labels swapped ("non_saturating"): -mean ln D(G(z), z) - mean ln(1 - D(x, E(x)))."""
        encoder_logits, generator_logits = self.D(x, self.E(x)), self.D(self.G(z), z)
        if self.objective == "minimax":
            return gan_losses.gan_value(encoder_logits, generator_logits)
        return gan_losses.discriminator_loss(generator_logits, encoder_logits)     # labels swapped

    def generator_loss(self, x_fake):
        raise NotImplementedError("BiGAN: the generator is trained with the encoder, on real x and prior z: "
                                  "use encoder_generator_loss(x, z)")

    # --- training
    def discriminator_step(self, x, rng=None):
        """One update of the discriminator on the encoder's pairs (x, E(x)) and as many generator
        pairs (G(z), z), neither E nor G getting a gradient; returns the loss as a float."""
        x = self._check_batch(x, "discriminator_step")
        z = self.sample_latent(x.shape[0], rng)
        with no_grad():
            z_hat, x_fake = self.E(x), self.G(z)
        terms = self.discriminator_terms(x, z_hat, x_fake, z)
        loss = sum(terms.values())
        self.d_optimizer.zero_grad()
        loss.backward()
        self.d_optimizer.step()
        return {name: value.item() for name, value in terms.items()}

    def generator_step(self, x, rng=None):
        """One joint update of the encoder and the generator on the real minibatch x (for the
        encoder's pairs) and as many fresh z (for the generator's), the discriminator frozen;
        returns the loss as a float."""
        x = self._check_batch(x, "generator_step")
        z = self.sample_latent(x.shape[0], rng)
        with _frozen(self.discriminator):
            loss = self.encoder_generator_loss(x, z)
            self.g_optimizer.zero_grad()
            loss.backward()
        self.g_optimizer.step()
        return loss.item()

    def train_step(self, x, rng=None):
        """k discriminator steps on k minibatches of x, then one encoder-generator step on the
        last of them. Returns {"discriminator_loss" (averaged over the k steps), "encoder_generator_loss"}."""
        rng = self._rng(rng)
        x = self._check_batch(x, "train_step")
        n = x.shape[0]
        if n % self.k:
            raise ValueError(f"BiGAN.train_step: the batch of {n} examples must split into k = {self.k} equal "
                             f"minibatches (one per discriminator step); pass a multiple of {self.k}")
        batches = split(x, self.k, axis=0)
        history = [self.discriminator_step(x_i, rng) for x_i in batches]
        return {"discriminator_loss": sum(h["discriminator_loss"] for h in history) / self.k,
                "encoder_generator_loss": self.generator_step(batches[-1], rng)}

    # --- inference: the reason for the encoder
    def encode(self, x):
        """z = E(x) without graph, in evaluation mode, shape (N, latent_dim): the learned features."""
        x = self._check_batch(x, "encode")
        with no_grad(), _eval_mode(self.encoder):
            return self.E(x)

    def reconstruct(self, x):
        """G(E(x)) without graph: equals x where E and G invert each other (Donahue et al., Theorem 2)."""
        x = self._check_batch(x, "reconstruct")
        with no_grad(), _eval_mode(self.encoder, self.generator):
            return self.G(self.E(x))

    def reconstruct_latent(self, z):
        """E(G(z)) without graph: equals z where E and G invert each other."""
        with no_grad(), _eval_mode(self.encoder, self.generator):
            return self.E(self.generate(z))

    def reconstruction_errors(self, x, z):
        """Mean squared errors per example of the two round trips, as floats:
        {"x": mean ||x - G(E(x))||^2, "z": mean ||z - E(G(z))||^2}."""
        x = self._check_batch(x, "reconstruction_errors")
        z = self._check_latent(z, "reconstruction_errors")
        x_err = ((x - self.reconstruct(x)) ** 2).reshape(x.shape[0], -1).sum(axis=1).mean()
        z_err = ((z - self.reconstruct_latent(z)) ** 2).sum(axis=1).mean()
        return {"x": x_err.item(), "z": z_err.item()}

    def _check_latent(self, z, who):
        p = self._param_like()
        z = z if isinstance(z, Tensor) else Tensor(backend.as_array(z, dtype=p.dtype, device=p.device))
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"BiGAN.{who}: z must have shape (n, {self.latent_dim}), got shape {z.shape}")
        return z

    def extra_repr(self):
        return f"objective={self.objective}, k={self.k}"

    def __repr__(self):
        return (f"BiGAN(latent_dim={self.latent_dim}, event_shape={self.event_shape}, {self.extra_repr()}): "
                f"{self.summary()}\n  (encoder): {_short(self.encoder)}\n  (generator): {_short(self.generator)}\n"
                f"  (discriminator): {_short(self.discriminator)}")

