"""InfoGAN: a GAN whose latent codes stay readable from its samples (Chen et al. 2016;
kuleshov-l12, "Information Preference": add a mutual-information term to the objective).

The generator's input is split into incompressible noise z ~ N(0, I) and latent codes c:

    c_cat   one of K categories, uniform: p(c_cat = k) = 1/K            (one-hot into G)
    c_cont  n_continuous codes, each ~ U(-1, 1)
    x = G(z, c)                                                          (G sees [z, one_hot(c_cat), c_cont])

A plain GAN may ignore c. InfoGAN asks for a large mutual information I(c; G(z, c)), which is
intractable (it needs p(c | x)), and maximises its variational lower bound instead, with an
auxiliary distribution Q(c | x) (Chen et al. 2016, section 5; the lecture's slide writes the same
bound as MI - E_x KL(p(c | x) || Q(c | x))):

    I(c; G(z, c)) = H(c) - H(c | x) = H(c) + E_{c, x}[ln p(c | x)]
                  >= H(c) + E_{c ~ p(c), x ~ G(z, c)}[ln Q(c | x)]  =:  L_I(G, Q)

with equality when Q(c | x) = p(c | x) (the gap is E_x KL(p(c | x) || Q(c | x)) >= 0). Here

    H(c) = ln K + n_continuous ln 2                  (uniform categories; U(-1, 1) has entropy ln 2)
    ln Q(c | x) = log_softmax(q_logits(x))[c_cat] + sum_j ln N(c_cont_j; q_mean_j(x), 1)

(a factored Gaussian with unit variance for the continuous codes, as the authors' released
code fixes it; a differential entropy, so only the categorical part of L_I is a bound in nats
that cannot go below zero). The game becomes

    min_{G, Q} max_D V(D, G) - lambda L_I(G, Q)

Q shares the discriminator's body: ``InfoDiscriminator`` computes features h(x) once and
two heads read them, the discriminator's logit and Q's parameters (K category logits and
n_continuous means), so the information term costs one extra linear layer. Each
discriminator step minimises -V(D, G) - lambda L_I (training the D head, the Q head and the
shared body); each generator step minimises the non-saturating loss -mean ln D(G(z, c)) -
lambda L_I (training G, the discriminator and Q frozen). Chen et al. set lambda = 1 for the
categorical code on MNIST and weigh continuous codes less: ``lam_continuous`` weighs the continuous
part of L_I on its own, lambda H(c_cat) + lambda E ln Q(c_cat | x) + lambda_cont (n ln 2 + E ln Q(c_cont | x)).
"""
import math

from tinydgm import backend
from tinydgm.autodiff.core import Tensor, no_grad
from tinydgm.autodiff.elementwise import leaky_relu
from tinydgm.autodiff.reduce import log_softmax, mean
from tinydgm.autodiff.shape import concatenate
from tinydgm.distributions import StandardNormal
from tinydgm.models.adversarial import gan_losses
from tinydgm.models.adversarial.gan import GAN, _check_count, _eval_mode, _frozen
from tinydgm.models.adversarial.toy_networks import _check_sizes, _dense_stack
from tinydgm.nn.linear import Linear
from tinydgm.nn.module import Module

__all__ = ["InfoGAN", "InfoDiscriminator", "Codes", "code_entropy", "log_q_codes", "log_q_parts"]

LOG_2PI = math.log(2.0 * math.pi)


class Codes:
    """A batch of latent codes: ``categories`` (N,) integer xp array, ``one_hot`` (N, K) and
    ``continuous`` (N, n_continuous) Tensors (constants, in the model's dtype)."""

    def __init__(self, categories, one_hot, continuous):
        self.categories, self.one_hot, self.continuous = categories, one_hot, continuous

    def __len__(self):
        return int(self.one_hot.shape[0])

    def as_input(self):
        """[one_hot(c_cat), c_cont], shape (N, K + n_continuous): the codes as G sees them."""
        return concatenate([self.one_hot, self.continuous], axis=1) if self.continuous.shape[1] else self.one_hot


def code_entropy(n_categories, n_continuous):
    """H(c) = ln K + n_continuous ln 2: a uniform category and independent U(-1, 1) codes."""
    return math.log(n_categories) + n_continuous * math.log(2.0)


def log_q_parts(q_logits, q_mean, codes):
    """(ln Q(c_cat | x), ln Q(c_cont | x)) per example, each shape (N,): log_softmax(q_logits)[c_cat]
    and sum_j ln N(c_j; q_mean_j, 1) (zeros when there are no continuous codes).

    q_logits: (N, K) Tensor, Q's category logits. q_mean: (N, n_continuous) Tensor (may have
    zero columns). codes: the ``Codes`` the examples were generated from."""
    n, k = codes.one_hot.shape
    if q_logits.shape != (n, k) or q_mean.shape != tuple(codes.continuous.shape):
        raise ValueError(f"log_q_codes: Q's outputs must match the codes: q_logits {(n, k)} and q_mean "
                         f"{tuple(codes.continuous.shape)}, got q_logits {q_logits.shape} and q_mean {q_mean.shape}")
    log_q_cat = (codes.one_hot * log_softmax(q_logits, axis=1)).sum(axis=1)        # ln Q(c_cat | x)
    residual = codes.continuous - q_mean
    log_q_cont = (-0.5 * residual * residual - 0.5 * LOG_2PI).sum(axis=1)         # ln N(c; mean, 1)
    return log_q_cat, log_q_cont


def log_q_codes(q_logits, q_mean, codes):
    """ln Q(c | x) = ln Q(c_cat | x) + ln Q(c_cont | x) per example, shape (N,) (see ``log_q_parts``)."""
    log_q_cat, log_q_cont = log_q_parts(q_logits, q_mean, codes)
    return log_q_cat + log_q_cont


class InfoDiscriminator(Module):
    """The discriminator D and the auxiliary network Q on one shared body.

        h = body(x)       flatten, then Linear -> LeakyReLU per hidden layer (h = x when hidden = ())
        logit = d_head(h)                       (N,)     D(x) = sigmoid(logit)
        q_logits, q_mean = split(q_head(h))     (N, K), (N, n_continuous)

    ``forward(x)`` returns the logit (so it is a discriminator for ``GAN``); ``features(x)``,
    ``heads(h)`` give everything from one pass of the body.
    """

    def __init__(self, data_dim, n_categories=10, n_continuous=2, hidden=(256, 256), negative_slope=0.2, rng=None,
                 dtype=None, device=None):
        super().__init__()
        hidden = tuple(hidden)
        _check_sizes("InfoDiscriminator", data_dim=data_dim, n_categories=n_categories)
        if hidden:
            _check_sizes("InfoDiscriminator", hidden=hidden)
        if isinstance(n_continuous, bool) or not isinstance(n_continuous, int) or n_continuous < 0:
            raise ValueError(f"InfoDiscriminator: n_continuous must be an int >= 0, got {n_continuous!r}")
        self.data_dim, self.n_categories, self.n_continuous = data_dim, n_categories, n_continuous
        self.hidden, self.negative_slope = hidden, float(negative_slope)
        self.body = _dense_stack((data_dim,) + hidden, rng, dtype, device)
        width = hidden[-1] if hidden else data_dim
        self.d_head = Linear(width, 1, rng=rng, dtype=dtype, device=device)
        self.q_head = Linear(width, n_categories + n_continuous, rng=rng, dtype=dtype, device=device)

    def features(self, x):
        """h = body(x), shape (N, width)."""
        h = x.reshape(x.shape[0], -1)
        if h.shape[1] != self.data_dim:
            raise ValueError(f"InfoDiscriminator: x must have {self.data_dim} entries per example, got shape {x.shape}")
        for layer in self.body:
            h = leaky_relu(layer(h), self.negative_slope)
        return h

    def heads(self, h):
        """(logit (N,), q_logits (N, K), q_mean (N, n_continuous)) from the shared features."""
        q = self.q_head(h)
        return self.d_head(h).reshape(-1), q[:, :self.n_categories], q[:, self.n_categories:]

    def forward(self, x):
        return self.d_head(self.features(x)).reshape(-1)

    def extra_repr(self):
        return (f"{self.data_dim} -> {list(self.hidden)} -> 1 + Q({self.n_categories} categories, "
                f"{self.n_continuous} continuous)")

    def __repr__(self):
        return f"InfoDiscriminator({self.extra_repr()})"


class InfoGAN(GAN):
    """A GAN with a categorical and continuous latent codes and the information term.

    generator: a Module mapping [z, one_hot(c_cat), c_cont] of shape (N, noise_dim + K +
        n_continuous) to x (N, *event_shape).
    discriminator: an ``InfoDiscriminator`` (or any Module with ``features(x)`` and
        ``heads(h) -> (logit, q_logits, q_mean)`` and the attributes n_categories, n_continuous).
    noise_dim: the size of the incompressible noise z ~ N(0, I).
    lam: lambda >= 0, the weight of the information term (1 in Chen et al. for MNIST).
    lam_continuous: the weight of its continuous-code part (None: lam, one weight for L_I).
    k, lr, betas, d_optimizer, g_optimizer, rng: as for ``GAN`` (the discriminator's optimizer
        covers the Q head too: it is part of the discriminator).

    ``latent_dim`` (the generator's input size) is noise_dim + K + n_continuous.
    """

    def __init__(self, generator, discriminator, noise_dim, *, lam=1.0, lam_continuous=None, k=1, lr=2e-4,
                 betas=(0.5, 0.999),
                 d_optimizer=None, g_optimizer=None, rng=None):
        for attr in ("features", "heads", "n_categories", "n_continuous"):
            if not hasattr(discriminator, attr):
                raise TypeError(f"InfoGAN: the discriminator must share its body with Q (an InfoDiscriminator, with "
                                f"features(x), heads(h), n_categories, n_continuous); {type(discriminator).__name__} "
                                f"has no {attr!r}")
        lam = float(lam)
        lam_continuous = lam if lam_continuous is None else float(lam_continuous)
        for name, value in (("lam (lambda)", lam), ("lam_continuous", lam_continuous)):
            if not value >= 0.0 or math.isinf(value):
                raise ValueError(f"InfoGAN: {name} must be a finite number >= 0, got {value}")
        noise_dim = _check_count("InfoGAN", "noise_dim", noise_dim)
        n_cat, n_cont = discriminator.n_categories, discriminator.n_continuous
        super().__init__(generator, discriminator, noise_dim + n_cat + n_cont, objective="non_saturating", k=k,
                         lr=lr, betas=betas, d_optimizer=d_optimizer, g_optimizer=g_optimizer, rng=rng)
        self.noise_dim, self.n_categories, self.n_continuous, self.lam = noise_dim, n_cat, n_cont, lam
        self.lam_continuous = lam_continuous

    # --- the codes
    def sample_codes(self, n, rng=None, categories=None):
        """c ~ p(c): uniform categories (or the given ``categories``, ints in [0, K)) and U(-1, 1)
        continuous codes, as ``Codes`` in the model's dtype and device."""
        rng, p = self._rng(rng), self._param_like()
        xp = backend.module_for_device(p.device)
        if categories is None:
            categories = rng.integers(0, self.n_categories, size=n)
        categories = backend.to_device(backend.as_array(categories, dtype="int64"), p.device)
        # min/max without NumPy's initial= (CuPy's reductions do not take it): guard n = 0 instead
        if categories.shape != (n,) or n and (int(categories.min()) < 0 or
                                             int(categories.max()) >= self.n_categories):
            raise ValueError(f"InfoGAN.sample_codes: categories must be {n} ints in [0, {self.n_categories}), got "
                             f"shape {categories.shape}")
        one_hot = (categories[:, None] == xp.arange(self.n_categories)[None, :]).astype(p.dtype)
        continuous = backend.to_device(rng.uniform(-1.0, 1.0, size=(n, self.n_continuous)), p.device).astype(p.dtype)
        return Codes(categories, Tensor(one_hot), Tensor(continuous))

    def sample_noise(self, n, rng=None):
        """z ~ N(0, I), shape (n, noise_dim)."""
        p = self._param_like()
        return StandardNormal((self.noise_dim,), dtype=p.dtype, device=p.device).sample((n,), self._rng(rng))

    def generator_input(self, z, codes):
        """[z, one_hot(c_cat), c_cont], shape (N, latent_dim)."""
        if z.ndim != 2 or z.shape[1] != self.noise_dim or z.shape[0] != len(codes):
            raise ValueError(f"InfoGAN: z must have shape ({len(codes)}, {self.noise_dim}) to go with {len(codes)} "
                             f"codes, got shape {z.shape}")
        return concatenate([z, codes.as_input()], axis=1)

    def code_entropy(self):
        """H(c) = ln K + n_continuous ln 2."""
        return code_entropy(self.n_categories, self.n_continuous)

    # --- the information term
    def log_q(self, x, codes):
        """ln Q(c | x) per example, shape (N,) (one pass of the discriminator's body)."""
        _, q_logits, q_mean = self.discriminator.heads(self.discriminator.features(x))
        return log_q_codes(q_logits, q_mean, codes)

    def mutual_information_bound(self, x_fake, codes):
        """L_I = H(c) + mean ln Q(c | x) over generated pairs (c, x = G(z, c)), 0-d Tensor: a lower
        bound of I(c; G(z, c)) in nats (Chen et al. 2016, section 5), exact when Q(c | x) = p(c | x)."""
        return mean(self.log_q(x_fake, codes)) + self.code_entropy()

    def estimate_mutual_information_bound(self, n, rng=None):
        """L_I estimated on n fresh (z, c) without graph, as a float."""
        codes, z = self.sample_codes(n, rng), self.sample_noise(n, rng)
        with no_grad(), _eval_mode(self.generator, self.discriminator):
            return self.mutual_information_bound(self.G(self.generator_input(z, codes)), codes).item()

    # --- losses and training
    def weighted_information(self, q_logits, q_mean, codes):
        """lambda (ln K + mean ln Q(c_cat | x)) + lambda_cont (n_continuous ln 2 + mean ln Q(c_cont | x)):
        lambda L_I when lam_continuous = lam, 0-d Tensor."""
        log_q_cat, log_q_cont = log_q_parts(q_logits, q_mean, codes)
        categorical = mean(log_q_cat) + math.log(self.n_categories)
        if not self.n_continuous:
            return self.lam * categorical
        return self.lam * categorical + self.lam_continuous * (mean(log_q_cont) + self.n_continuous * math.log(2.0))

    def discriminator_terms(self, x_real, x_fake, codes):
        """-V(D, G) and -lambda L_I: the D head, Q head and shared body descend their sum."""
        h_real, h_fake = self.discriminator.features(x_real), self.discriminator.features(x_fake)
        real_logits, _, _ = self.discriminator.heads(h_real)
        fake_logits, q_logits, q_mean = self.discriminator.heads(h_fake)
        return {"discriminator_loss": gan_losses.discriminator_loss(real_logits, fake_logits),
                "information_loss": -self.weighted_information(q_logits, q_mean, codes)}

    def generator_terms(self, x_fake, codes):
        """-mean ln D(G(z, c)) and -lambda L_I: the generator descends their sum."""
        fake_logits, q_logits, q_mean = self.discriminator.heads(self.discriminator.features(x_fake))
        return {"generator_loss": gan_losses.non_saturating_generator_loss(fake_logits),
                "information_loss": -self.weighted_information(q_logits, q_mean, codes)}

    def generator_loss(self, x_fake):
        raise NotImplementedError("InfoGAN: the generator's loss needs the codes: use generator_terms(x_fake, codes)")

    def discriminator_step(self, x, rng=None):
        """One update of D and Q on the real minibatch x and as many fakes G(z, c) (no graph
        into G); returns {"discriminator_loss", "information_loss"} as floats."""
        x = self._check_batch(x, "discriminator_step")
        n = x.shape[0]
        codes, z = self.sample_codes(n, rng), self.sample_noise(n, rng)
        with no_grad():
            x_fake = self.G(self.generator_input(z, codes))
        terms = self.discriminator_terms(x, x_fake, codes)
        loss = sum(terms.values())
        self.d_optimizer.zero_grad()
        loss.backward()
        self.d_optimizer.step()
        return {name: value.item() for name, value in terms.items()}

    def generator_step(self, m, rng=None):
        """One update of G on m fresh (z, c), the discriminator and Q frozen; returns
        {"generator_loss", "information_loss"} as floats."""
        _check_count("InfoGAN", "m", m)
        codes, z = self.sample_codes(m, rng), self.sample_noise(m, rng)
        with _frozen(self.discriminator):
            terms = self.generator_terms(self.G(self.generator_input(z, codes)), codes)
            loss = sum(terms.values())
            self.g_optimizer.zero_grad()
            loss.backward()
        self.g_optimizer.step()
        return {name: value.item() for name, value in terms.items()}

    def train_step(self, x, rng=None):
        """k discriminator-and-Q steps on k minibatches of x, then one generator step. Returns
        "discriminator_loss" and "information_loss" (averaged over the k steps), "generator_loss"
        and "generator_information_loss"."""
        report = super().train_step(x, rng)             # GAN's alternation; the generator step returns a dict
        g_terms = report.pop("generator_loss")
        report["generator_loss"] = g_terms["generator_loss"]
        report["generator_information_loss"] = g_terms["information_loss"]
        return report

    def sample(self, n, rng=None):
        """x = G(z, c) with z ~ N(0, I) and c ~ p(c): a Tensor (n, *event_shape) without graph."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"InfoGAN.sample: n must be a non-negative int, got {n!r}")
        codes, z = self.sample_codes(n, rng), self.sample_noise(n, rng)
        return self.generate(self.generator_input(z, codes))

    # --- inference and generation with chosen codes
    def infer_codes(self, x):
        """Q's reading of x, without graph: (the most probable category (N,) xp int array,
        Q(c_cat | x) (N, K) Tensor, the continuous codes' means (N, n_continuous) Tensor)."""
        x = self._check_batch(x, "infer_codes")
        with no_grad(), _eval_mode(self.discriminator):
            _, q_logits, q_mean = self.discriminator.heads(self.discriminator.features(x))
            probs = log_softmax(q_logits, axis=1).exp()
        return backend.get_array_module(probs.data).argmax(probs.data, axis=1), probs, q_mean

    def generate_with_codes(self, z, categories, continuous):
        """x = G(z, c) without graph for chosen codes: z (n, noise_dim), categories n ints,
        continuous (n, n_continuous) values (the code sweeps: vary one code, fix the rest)."""
        p = self._param_like()
        z = z if isinstance(z, Tensor) else Tensor(backend.as_array(z, dtype=p.dtype, device=p.device))
        n = z.shape[0]
        codes = self.sample_codes(n, rng=backend.rng(0), categories=categories)
        continuous = backend.as_array(continuous, dtype=p.dtype, device=p.device)
        if tuple(continuous.shape) != (n, self.n_continuous):
            raise ValueError(f"InfoGAN.generate_with_codes: continuous must have shape ({n}, {self.n_continuous}), "
                             f"got shape {tuple(continuous.shape)}")
        codes.continuous = Tensor(continuous)
        return self.generate(self.generator_input(z, codes))

    def extra_repr(self):
        return (f"noise_dim={self.noise_dim}, codes={self.n_categories} categories + {self.n_continuous} "
                f"continuous, lam={self.lam}, "
                + (f"lam_continuous={self.lam_continuous}, " if self.lam_continuous != self.lam else "") + f"k={self.k}")
