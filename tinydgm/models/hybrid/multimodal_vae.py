"""The multimodal VAE (Wu & Goodman 2018, "Multimodal generative models for scalable weakly-
supervised learning"; kuleshov-l12 and ermon-song-cs236-l16, "multimodal VAEs": q(z | x1),
q(z | x2), q(z | x1, x2)).

M modalities x_1..x_M (an image and its label, the top and bottom halves of an image) share
one code z and are independent given it:

    p(x_1, ..., x_M, z) = p(z) prod_m p(x_m | z),      p(z) = N(0, I)

One Gaussian encoder per modality gives an "expert" q(z | x_m) = N(mu_m, diag(sigma_m^2)); the
posterior of any subset S of the modalities is the product of experts with the prior as one
more expert (Wu & Goodman eq. 3-4):

    q(z | x_S)  proportional to  p(z) prod_{m in S} q(z | x_m)

A product of Gaussians is Gaussian, in closed form, with precisions T = 1 / sigma^2 adding up:

    T = 1 + sum_{m in S} T_m,      mu = (sum_{m in S} T_m mu_m) / T,      sigma^2 = 1 / T

(``product_of_experts``; the prior's T = 1, mu = 0). A missing modality is simply absent from
the product, so inference works from any subset with the same networks.

The ELBO of a subset reconstructs the modalities it holds:

    ELBO(x_S) = E_q(z|x_S)[sum_{m in S} ln p(x_m | z)] - KL(q(z | x_S) || p(z))

and training sums it over sub-sampled subsets (Wu & Goodman sec. 3, "sub-sampled training"):
all modalities together, and each modality alone (the paper adds k random subsets, which for
M = 2 are already listed),

    loss = -mean_n [ELBO(x_1..x_M) + sum_m ELBO(x_m)]

so that every single-modality posterior is trained to stand on its own. Modalities of very
different sizes (784 pixels against one label) are balanced by weights lambda_m on their
reconstruction terms in the training objective (Wu & Goodman weight each term, upweighting the
small modality; ``weights``), E_q[sum_{m in S} lambda_m ln p(x_m | z)] - KL; ``elbo`` is always
the unweighted bound.

Data: a tuple of per-modality arrays (None for a missing one), or the modalities flattened and
concatenated along the columns (N, D_1 + ... + D_M), the layout ``train.fit`` batches and the
protocol's ``event_shape`` = (D_1 + ... + D_M,) use. ``CategoricalDecoder`` models a one-hot
label modality p(y | z) = Categorical(softmax(g(z))).
"""
from tinydgm import backend
from tinydgm.autodiff.core import Tensor, no_grad
from tinydgm.autodiff.elementwise import exp, log
from tinydgm.autodiff.reduce import log_softmax, softmax
from tinydgm.autodiff.shape import concatenate
from tinydgm.distributions import Normal, StandardNormal
from tinydgm.evaluate.importance import importance_log_likelihood
from tinydgm.evaluate.units import bits_per_dim as _bits_per_dim
from tinydgm.models.latent.encoders import event_size, mlp, positive_int
from tinydgm.models.latent.vae import first_weight, kl_standard_normal, reparameterize
from tinydgm.nn.module import Module, ModuleList

__all__ = ["product_of_experts", "CategoricalDecoder", "MultimodalVAE"]


def product_of_experts(mus, log_vars):
    """(mu, log_var) of N(0, I) x prod_m N(mu_m, diag(exp(log_var_m))), renormalised: the
    precisions add (T = 1 + sum_m T_m) and the mean is the precision-weighted mean of the
    experts' means (the prior's is 0). Empty lists give the prior itself."""
    if len(mus) != len(log_vars):
        raise ValueError(f"product_of_experts: {len(mus)} means but {len(log_vars)} log-variances")
    if not mus:
        raise ValueError("product_of_experts: at least one expert is needed to know the shape (use the prior)")
    precisions = [exp(-log_var) for log_var in log_vars]                  # T_m = 1 / sigma_m^2
    precision = 1.0
    weighted = 0.0
    for t, mu in zip(precisions, mus):
        precision = precision + t
        weighted = weighted + t * mu
    return weighted / precision, -log(precision)


class CategoricalDecoder(Module):
    """p(y | z) = Categorical(y; softmax(g(z))) for a one-hot label y (N, K); g an MLP.
    log_prob(y, z) for z (..., N, L) -> (..., N); mean(z) -> class probabilities;
    sample(z, rng) -> one-hot draws."""

    likelihood = "categorical"

    def __init__(self, latent_dim, n_classes, hidden=(64,), activation="relu", rng=None, dtype=None, device=None):
        super().__init__()
        who = "CategoricalDecoder"
        self.latent_dim = positive_int(latent_dim, "latent_dim", who)
        self.n_classes = positive_int(n_classes, "n_classes", who)
        self.event_shape = (n_classes,)
        self.hidden = tuple(positive_int(h, "hidden sizes", who) for h in hidden)
        self.net = mlp((self.latent_dim,) + self.hidden + (n_classes,), activation, who, rng, dtype, device)

    def logits(self, z):
        lead = tuple(z.shape[:-1])
        return self.net(z.reshape(-1, self.latent_dim)).reshape(lead + (self.n_classes,))

    def log_prob(self, y, z):
        """ln p(y | z) = sum_k y_k ln softmax(g(z))_k."""
        return (y * log_softmax(self.logits(z), axis=-1)).sum(axis=-1)

    def mean(self, z):
        return softmax(self.logits(z), axis=-1)

    def sample(self, z, rng):
        """One-hot draws y ~ p(y | z) by the inverse CDF of u ~ U(0, 1)."""
        p = self.mean(z).data
        xp = backend.get_array_module(p)
        u = backend.to_device(rng.random(p.shape[:-1] + (1,)), z.device)
        k = xp.minimum((xp.cumsum(p, axis=-1) < u).sum(axis=-1), self.n_classes - 1)
        return Tensor(xp.eye(self.n_classes, dtype=p.dtype)[k])

    def check_data(self, y, who):
        one_hot = ((y == 0) | (y == 1)).all(axis=-1) & (y.sum(axis=-1) == 1)
        if not bool(one_hot.all()):
            raise ValueError(f"{who}: a categorical modality needs one-hot rows, got {int((~one_hot).sum())} others")

    def extra_repr(self):
        return f"latent_dim={self.latent_dim}, n_classes={self.n_classes}, hidden={self.hidden}"


def _draw(decoder, z, rng):
    """x ~ p(x_m | z) for any decoder: its own sample(z, rng), or its distribution's."""
    if hasattr(decoder, "sample"):
        return decoder.sample(z, rng)
    return decoder.distribution(z).sample(rng=rng)


class _Marginal:
    """The weights of a subset S, for tinydgm.evaluate.importance (ln p(x_S))."""

    def __init__(self, model, present):
        self.model, self.present = model, present

    def log_importance_weights(self, x, k, rng=None):
        return self.model.log_importance_weights(x, k, rng=rng, present=self.present)


class MultimodalVAE(Module):
    """MultimodalVAE(encoders, decoders, n_samples=1, rng=None, weights=None): the product-of-experts
    multimodal VAE (module docstring).

    encoders: one Gaussian encoder per modality (``forward(x_m) -> (mu, log_var)``).
    decoders: one decoder per modality (``log_prob(x_m, z)``; ``distribution(z)`` or
        ``sample(z, rng)``; ``mean(z)``; ``check_data``), same latent_dim and event shapes.
    n_samples: S, reparameterised samples per ELBO.
    weights: lambda_m per modality in the training objective (None: all 1).
    """

    def __init__(self, encoders, decoders, n_samples=1, rng=None, weights=None):
        super().__init__()
        who = "MultimodalVAE"
        if len(encoders) != len(decoders) or len(encoders) < 1:
            raise ValueError(f"{who}: one encoder and one decoder per modality, got {len(encoders)} and {len(decoders)}")
        for m, (enc, dec) in enumerate(zip(encoders, decoders)):
            if enc.latent_dim != encoders[0].latent_dim or dec.latent_dim != encoders[0].latent_dim:
                raise ValueError(f"{who}: modality {m}'s encoder/decoder latent_dim {enc.latent_dim}/{dec.latent_dim} "
                                 f"differs from {encoders[0].latent_dim}")
            if tuple(enc.event_shape) != tuple(dec.event_shape):
                raise ValueError(f"{who}: modality {m}'s encoder reads {tuple(enc.event_shape)} but its decoder "
                                 f"writes {tuple(dec.event_shape)}")
        self.encoders, self.decoders = ModuleList(list(encoders)), ModuleList(list(decoders))
        self.n_modalities, self.latent_dim = len(encoders), encoders[0].latent_dim
        self.shapes = [tuple(enc.event_shape) for enc in encoders]
        self.sizes = [event_size(s) for s in self.shapes]
        self.event_shape = (sum(self.sizes),)
        self.n_samples = positive_int(n_samples, "n_samples", who)
        self.rng = backend.default_generator() if rng is None else rng
        weights = [1.0] * self.n_modalities if weights is None else [float(w) for w in weights]
        if len(weights) != self.n_modalities or not all(w > 0 for w in weights):
            raise ValueError(f"{who}: weights must be {self.n_modalities} positive numbers, got {weights!r}")
        self.weights = weights

    def extra_repr(self):
        return (f"n_modalities={self.n_modalities}, shapes={self.shapes}, latent_dim={self.latent_dim}, "
                f"weights={self.weights}")

    # ----------------------------------------------------------------------------- data

    def modalities(self, x, who="modalities"):
        """x as a list of M Tensors (N, *shape_m) or None: from a tuple/list (None = missing) or
        from the flat concatenated layout (N, D_1 + ... + D_M)."""
        like = first_weight(self, f"{type(self).__name__}: no parameters")
        owner = f"{type(self).__name__}.{who}"
        if isinstance(x, (tuple, list)):
            if len(x) != self.n_modalities:
                raise ValueError(f"{owner}: {self.n_modalities} modalities expected, got {len(x)}")
            parts = list(x)
        else:
            x = x if isinstance(x, Tensor) else Tensor(backend.as_array(x, dtype=like.dtype, device=like.device))
            if x.ndim != 2 or x.shape[1] != self.event_shape[0]:
                raise ValueError(f"{owner}: flat data must have shape (N, {self.event_shape[0]}) = the modalities "
                                 f"{self.shapes} concatenated, got {tuple(x.shape)}")
            bounds = [sum(self.sizes[:m]) for m in range(self.n_modalities + 1)]
            parts = [x[:, a:b] for a, b in zip(bounds[:-1], bounds[1:])]
        out, n = [], None
        for m, part in enumerate(parts):
            if part is None:
                out.append(None)
                continue
            if not isinstance(part, Tensor):
                part = Tensor(backend.as_array(part, dtype=like.dtype, device=like.device))
            elif part.dtype != like.dtype:
                part = Tensor(part.data.astype(like.dtype))
            part = part.reshape((part.shape[0],) + self.shapes[m])
            if n is not None and part.shape[0] != n:
                raise ValueError(f"{owner}: modality {m} has {part.shape[0]} examples, the others {n}")
            n = part.shape[0]
            self.decoders[m].check_data(part.data, owner)
            out.append(part)
        if n is None:
            raise ValueError(f"{owner}: every modality is missing; give at least one")
        return out

    @staticmethod
    def present(xs):
        return tuple(m for m, x_m in enumerate(xs) if x_m is not None)

    # ----------------------------------------------------------------------------- inference

    def posterior(self, x):
        """(mu, log_var) of q(z | x_S) = PoE of the prior and the present modalities' experts, each (N, L)."""
        xs = self.modalities(x, "posterior")
        experts = [self.encoders[m](xs[m]) for m in self.present(xs)]
        return product_of_experts([mu for mu, _ in experts], [log_var for _, log_var in experts])

    def _latents(self, xs, n_samples, eps, rng, who):
        mu, log_var = self.posterior(xs)
        shape = (n_samples,) + tuple(mu.shape)
        if eps is None:
            eps = StandardNormal((), dtype=mu.dtype, device=mu.device).sample(shape, rng=self.rng if rng is None else rng)
        elif not isinstance(eps, Tensor):
            eps = Tensor(backend.as_array(eps, dtype=mu.dtype, device=mu.device))
        if tuple(eps.shape) != shape:
            raise ValueError(f"{type(self).__name__}.{who}: eps must have shape (S, N, L) = {shape}, got {tuple(eps.shape)}")
        return mu, log_var, reparameterize(mu, log_var, eps)

    def _log_px_z(self, xs, z, subset, weights=None):
        """sum_{m in subset} lambda_m ln p(x_m | z) (lambda_m = 1 without weights)."""
        return sum((1.0 if weights is None else weights[m]) * self.decoders[m].log_prob(xs[m], z) for m in subset)

    # ----------------------------------------------------------------------------- bounds

    def elbo(self, x, n_samples=None, eps=None, rng=None, weights=None):
        """ELBO(x_S) = E_q(z|x_S)[sum_{m in S} ln p(x_m | z)] - KL(q(z | x_S) || p(z)), (N,) in nats;
        S = the present modalities. ``weights`` (lambda_m) turn it into the training objective's term."""
        xs = self.modalities(x, "elbo")
        n_samples = eps.shape[0] if eps is not None else (self.n_samples if n_samples is None else n_samples)
        mu, log_var, z = self._latents(xs, n_samples, eps, rng, "elbo")
        return self._log_px_z(xs, z, self.present(xs), weights).mean(axis=0) - kl_standard_normal(mu, log_var)

    def subsets(self, xs):
        """The sub-sampled subsets (Wu & Goodman sec. 3): all present modalities, then each alone."""
        present = self.present(xs)
        singles = [(m,) for m in present] if len(present) > 1 else []
        return [present] + singles

    def objective(self, x, eps=None, rng=None):
        """sum over ``subsets`` of the lambda-weighted ELBO(x_S), (N,). eps: optional list of noise
        tensors, one per subset."""
        xs = self.modalities(x, "objective")
        total = 0.0
        for i, subset in enumerate(self.subsets(xs)):
            x_s = [xs[m] if m in subset else None for m in range(self.n_modalities)]
            total = total + self.elbo(x_s, eps=None if eps is None else eps[i], rng=rng, weights=self.weights)
        return total

    def loss(self, batch):
        """-mean_n objective(x_n): the sub-sampled ELBO that train.fit minimises."""
        return -self.objective(batch).mean()

    def log_importance_weights(self, x, k, eps=None, rng=None, present=None):
        """ln w_j = sum_{m in S} ln p(x_m | z_j) + ln p(z_j) - ln q(z_j | x_S), z_j ~ q(z | x_S), (k, N);
        S = ``present`` (indices) or every modality given."""
        xs = self.modalities(x, "log_importance_weights")
        if present is not None:
            xs = [xs[m] if m in present else None for m in range(self.n_modalities)]
        mu, log_var, z = self._latents(xs, k, eps, rng, "log_importance_weights")
        log_q = Normal(mu, log_var=log_var).log_prob(z).sum(axis=-1)
        log_pz = StandardNormal((), dtype=z.dtype, device=z.device).log_prob(z).sum(axis=-1)
        return self._log_px_z(xs, z, self.present(xs)) + log_pz - log_q

    def log_prob_estimate(self, x, k=1000, batch_size=100, chunk_size=100, rng=None, present=None):
        """ln p(x_S) ~ ln 1/k sum_j w_j (``tinydgm.evaluate.importance``), (N,) in nats, no graph.
        x: flat (N, D_1 + ... + D_M) or a tuple with every modality; present: score only these."""
        flat = self._flat(x)
        model = self if present is None else _Marginal(self, tuple(present))
        return importance_log_likelihood(model, flat, k, batch_size, chunk_size, rng).log_px

    def bits_per_dim(self, x, k=1000, batch_size=100, chunk_size=100, rng=None):
        return _bits_per_dim(-self.log_prob_estimate(x, k, batch_size, chunk_size, rng), self.event_shape[0])

    def _flat(self, x):
        if not isinstance(x, (tuple, list)):
            return x
        xs = self.modalities(x, "log_prob_estimate")
        if len(self.present(xs)) != self.n_modalities:
            raise ValueError(f"{type(self).__name__}.log_prob_estimate: give every modality and choose the scored "
                             "ones with present=")
        return concatenate([x_m.reshape(x_m.shape[0], -1) for x_m in xs], axis=1)

    # ----------------------------------------------------------------------------- generation

    def sample_modalities(self, n, rng=None):
        """z ~ p(z), then x_m ~ p(x_m | z) for every m: a list of M Tensors (n, *shape_m), no graph."""
        n = positive_int(n, "n", f"{type(self).__name__}.sample")
        rng = self.rng if rng is None else rng
        like = first_weight(self, "no parameters")
        with no_grad():
            z = StandardNormal((), dtype=like.dtype, device=like.device).sample((n, self.latent_dim), rng=rng)
            return [_draw(dec, z, rng) for dec in self.decoders]

    def sample(self, n, rng=None):
        """(n, D_1 + ... + D_M): ``sample_modalities`` flattened and concatenated."""
        xs = self.sample_modalities(n, rng)
        return Tensor(concatenate([x_m.reshape(n, -1) for x_m in xs], axis=1).data)

    def conditional(self, x, target, mean=True, rng=None):
        """Generate modality ``target`` from the present ones: z ~ q(z | x_S) (z = its mean when
        ``mean``), then E[x_target | z] (``mean``) or a draw. (N, *shape_target), no graph."""
        rng = self.rng if rng is None else rng
        with no_grad():
            mu, log_var = self.posterior(x)
            z = mu
            if not mean:
                eps = StandardNormal((), dtype=mu.dtype, device=mu.device).sample(mu.shape, rng=rng)
                z = reparameterize(mu, log_var, eps)
                return _draw(self.decoders[target], z, rng)
            return self.decoders[target].mean(z)

    def predict(self, x, target):
        """argmax_k E[x_target | z = mu(x_S)]: the class of a categorical modality from the others, (N,) int."""
        probs = self.conditional(x, target, mean=True)
        return Tensor(probs.data.argmax(axis=-1))
