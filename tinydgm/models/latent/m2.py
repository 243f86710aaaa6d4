"""The semi-supervised VAE "M2" (Kingma, Rezende, Mohamed & Welling 2014, "Semi-supervised
learning with deep generative models"; intro lecture part II eqs. 36-38, "Semi-supervised
learning with VAE").

Generative model: a class y (K classes, uniform) and a latent z holding the in-class style,

    p(y) = Cat(y; 1/K)        p(z) = N(z; 0, I)        p(x|y, z) = prod_d Bernoulli(x_d; sigmoid(logits(z, y)))

Inference networks:

    q(y|x) = Cat(y; softmax(logits_phi(x)))                 the classifier             (eq. 36)
    q(z|x, y) = N(z; mu_phi(x, y), diag(exp(log_var_phi(x, y))))   input [x, onehot(y)]  (eq. 37)

The intro lecture's p(x|y, z) is a Gaussian; for binary images (the paper's MNIST) it is a
Bernoulli, as here. Sign convention: the intro lecture writes L and U as the lower bounds
themselves (maximised); the paper writes their negatives (minimised). Here ``labelled_elbo``
and ``unlabelled_elbo`` return the bounds, in nats per example (the slide's U subtracts
q(z|x, y) where ln q(z|x, y) is meant):

    L(x, y) = E_q(z|x,y)[log p(x|y, z) + log p(y) + log p(z) - log q(z|x, y)]  <=  log p(x, y)
            = E_q(z|x,y)[log p(x|y, z)] - log K - KL(q(z|x, y) || N(0, I))

    U(x) = sum_y q(y|x) L(x, y) + H(q(y|x))  <=  log p(x)

The KL is the closed form of the VAE (eq. 30 with its squares and sum) and the sum over
the K classes in U is done exactly: the batch is evaluated once per class (K N rows).

The objective (eq. 38), maximised:

    J = sum_{(x, y) labelled} [L(x, y) + alpha log q(y|x)] + sum_{x unlabelled} U(x)

alpha weighs the classifier's log-likelihood on each labelled example, since q(y|x) gets no
other signal from labelled data. The paper writes alpha' E_labelled[-log q(y|x)] with
alpha' = 0.1 N; reading N as the number of examples and E_labelled as the mean over the N_l
labelled ones, that is alpha = 0.1 N / N_l per labelled example (``paper_alpha``; 50 for
MNIST's 50,000 training images with 100 labels).

Training with ``tinydgm.train.fit``: one stream of pairs (x, y) in which y = -1
(``UNLABELLED``) marks an unlabelled example; ``loss((x, y))`` is -J / (batch size), an
unbiased minibatch estimate of -J / N. With few labels, repeat the labelled examples so
most batches hold some (``semi_supervised_data(..., repeat=r)``; each repeat counts as an
example of J). ``loss(x)`` on a plain batch treats every example as unlabelled.

Evaluation: ``log_importance_weights`` draws (y, z) from the model's own q(y, z|x), so
tinydgm.evaluate.importance estimates log p(x) (``log_prob_estimate``, ``bits_per_dim``)
as for the VAE; ``predict`` gives the classifier's labels.

Randomness: eps comes from ``eps=`` (to hold the noise fixed) or from ``rng`` /
``self.rng`` (``train.fit`` lends its generator to ``self.rng``).
"""
import math
import numbers

from tinydgm import backend
from tinydgm.autodiff.core import Tensor, no_grad
from tinydgm.autodiff.shape import broadcast_to, concatenate
from tinydgm.distributions import Categorical, Normal, StandardNormal
from tinydgm.evaluate.importance import importance_log_likelihood
from tinydgm.evaluate.units import bits_per_dim as _bits_per_dim
from tinydgm.models.latent.decoders import MLPDecoder
from tinydgm.models.latent.encoders import MLPEncoder, as_event_shape, event_size, mlp, positive_int
from tinydgm.models.latent.vae import as_data, first_weight, kl_standard_normal, reparameterize
from tinydgm.nn.module import Module

__all__ = ["M2", "UNLABELLED", "paper_alpha", "semi_supervised_data", "class_conditional_grid"]

UNLABELLED = -1         # the label that marks an unlabelled example in a (x, y) stream


def paper_alpha(n_examples, n_labelled):
    """alpha per labelled example equal to the paper's alpha' = 0.1 N on E_labelled (the mean
    over the N_l labelled examples): 0.1 N / N_l (Kingma et al. 2014, section 3.1.2)."""
    return 0.1 * n_examples / n_labelled


def semi_supervised_data(x_labelled, y_labelled, x_unlabelled, repeat=1):
    """One stream for ``train.fit``: (x, y) arrays with the labelled examples repeated
    ``repeat`` times, then the unlabelled ones with y = UNLABELLED (-1). fit shuffles it."""
    positive_int(repeat, "repeat", "semi_supervised_data")
    xp = backend.get_array_module(x_labelled)
    if len(x_labelled) != len(y_labelled):
        raise ValueError(f"semi_supervised_data: {len(x_labelled)} labelled examples but {len(y_labelled)} labels")
    if tuple(x_labelled.shape[1:]) != tuple(x_unlabelled.shape[1:]):
        raise ValueError(f"semi_supervised_data: labelled examples of shape {tuple(x_labelled.shape[1:])}, "
                         f"unlabelled of shape {tuple(x_unlabelled.shape[1:])}")
    x = xp.concatenate([x_labelled] * repeat + [x_unlabelled], axis=0)
    y_l = xp.asarray(y_labelled).astype("int64")
    y = xp.concatenate([y_l] * repeat + [xp.full(len(x_unlabelled), UNLABELLED, dtype="int64")])
    return x, y


class M2(Module):
    """M2(event_shape, n_classes, latent_dim=50, hidden=(500,), activation="softplus",
    alpha=1.0, n_samples=1, rng=None, dtype=None, device=None).

    event_shape: D or the shape of one binary example. n_classes: K. latent_dim: L.
    hidden, activation: the MLPs of all three networks (the paper: one layer of 500 softplus units).
    alpha: the weight of log q(y|x) per labelled example (eq. 38; see ``paper_alpha``).
    n_samples: S, samples of z per example and class in the bounds.
    rng: NumPy Generator for the noise (None: the default generator).
    """

    def __init__(self, event_shape, n_classes, latent_dim=50, hidden=(500,), activation="softplus", alpha=1.0,
                 n_samples=1, rng=None, dtype=None, device=None):
        super().__init__()
        who = "M2"
        self.event_shape = as_event_shape(event_shape, who)
        self.n_classes = positive_int(n_classes, "n_classes", who)
        if self.n_classes < 2:
            raise ValueError(f"{who}: n_classes must be >= 2, got {n_classes}")
        self.latent_dim = positive_int(latent_dim, "latent_dim", who)
        self.hidden = tuple(positive_int(h, "hidden sizes", who) for h in hidden)
        if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not alpha >= 0:
            raise ValueError(f"{who}: alpha must be a number >= 0, got {alpha!r}")
        self.alpha = float(alpha)
        self.n_samples = positive_int(n_samples, "n_samples", who)
        d, k = event_size(self.event_shape), self.n_classes
        kw = dict(rng=rng, dtype=dtype, device=device)
        self.classifier = mlp((d,) + self.hidden + (k,), activation, who, **kw)                 # q(y|x)
        self.encoder = MLPEncoder(d + k, self.latent_dim, self.hidden, activation, **kw)        # q(z|x, y)
        self.decoder = MLPDecoder(self.latent_dim + k, self.event_shape, self.hidden, activation, **kw)  # p(x|y, z)
        self.rng = backend.default_generator() if rng is None else rng

    # ----------------------------------------------------------------------------- networks

    def classify(self, x):
        """q(y|x) = Cat(softmax(logits(x))), batch shape (N,) (eq. 36); differentiable."""
        x = self._as_data(x, "classify")
        return self._q_y(x)

    def _q_y(self, x):
        return Categorical(self.classifier(x.reshape(x.shape[0], -1)))

    def predict(self, x):
        """argmax_y q(y|x): int64 class indices (N,), no graph."""
        with no_grad():
            logits = self.classify(x).logits.data
        return Tensor(backend.get_array_module(logits).argmax(logits, axis=-1).astype("int64"))

    def encode(self, x, y):
        """(mu, log_var) of q(z|x, y), each (N, L) (eq. 37): the style of x given its class."""
        x = self._as_data(x, "encode")
        return self._encode(x, self._one_hot(self._as_labels(y, x.shape[0], "encode"), x))

    def _encode(self, x, onehot):
        return self.encoder(concatenate([x.reshape(x.shape[0], -1), onehot], axis=1))

    def _decoder_input(self, z, onehot):
        """[z, onehot(y)] for p(x|y, z); onehot (M, K) broadcast over z's sample axes."""
        return concatenate([z, broadcast_to(onehot, tuple(z.shape[:-1]) + (self.n_classes,))], axis=-1)

    # ----------------------------------------------------------------------------- bounds

    def _bound(self, x, onehot, eps):
        """L(x, y) for rows x (M, ...) with classes onehot (M, K) and noise eps (S, M, L):
        1/S sum_s log p(x|y, z_s) + log p(y) - KL(q(z|x, y) || N(0, I)), shape (M,)."""
        mu, log_var = self._encode(x, onehot)
        z = reparameterize(mu, log_var, eps)                                         # eq. 33, (S, M, L)
        log_px_yz = self.decoder.log_prob(x, self._decoder_input(z, onehot)).mean(axis=0)
        log_py = -math.log(self.n_classes)                                           # uniform p(y)
        return log_px_yz + log_py - kl_standard_normal(mu, log_var)

    def labelled_elbo(self, x, y, eps=None, n_samples=None, rng=None):
        """L(x, y) <= log p(x, y), (N,) in nats (eq. 37's bound; the paper's -L(x, y)).
        eps: optional noise (S, N, L)."""
        x = self._as_data(x, "labelled_elbo")
        y = self._as_labels(y, x.shape[0], "labelled_elbo")
        eps = self._noise(eps, n_samples, rng, (x.shape[0], self.latent_dim), x, "labelled_elbo", "(S, N, L)")
        return self._bound(x, self._one_hot(y, x), eps)

    def elbo_per_class(self, x, eps=None, n_samples=None, rng=None):
        """L(x, k) for every class k, (N, K): the batch is run once per class.
        eps: optional noise (S, K, N, L), independent draws per class."""
        x = self._as_data(x, "elbo_per_class")
        return self._elbo_per_class(x, eps, n_samples, rng, "elbo_per_class")

    def _elbo_per_class(self, x, eps, n_samples, rng, who):
        n, k = x.shape[0], self.n_classes
        eps = self._noise(eps, n_samples, rng, (k, n, self.latent_dim), x, who, "(S, K, N, L)")
        xp = backend.get_array_module(x.data)
        classes = xp.repeat(xp.arange(k), n)                                         # class k for block k
        x_k = concatenate([x] * k, axis=0)                                           # (K N, ...)
        eps = eps.reshape(eps.shape[0], k * n, self.latent_dim)
        return self._bound(x_k, self._one_hot(classes, x), eps).reshape(k, n).T

    def unlabelled_elbo(self, x, eps=None, n_samples=None, rng=None):
        """U(x) = sum_y q(y|x) L(x, y) + H(q(y|x)) <= log p(x), (N,) in nats, the sum over
        all K classes exact (the paper's -U(x)). eps: optional noise (S, K, N, L)."""
        x = self._as_data(x, "unlabelled_elbo")
        return self._unlabelled(x, eps, n_samples, rng, "unlabelled_elbo")

    def _unlabelled(self, x, eps, n_samples, rng, who):
        q_y = self._q_y(x)
        bounds = self._elbo_per_class(x, eps, n_samples, rng, who)                   # (N, K)
        return (q_y.probs * bounds).sum(axis=-1) + q_y.entropy()

    def objective(self, x_labelled, y_labelled, x_unlabelled, eps_labelled=None, eps_unlabelled=None):
        """J = sum_l [L(x, y) + alpha log q(y|x)] + sum_u U(x), a 0-d Tensor to maximise
        (eq. 38). Either set may be None (or empty)."""
        total = None
        if x_labelled is not None and len(x_labelled) > 0:
            x = self._as_data(x_labelled, "objective")
            y = self._as_labels(y_labelled, x.shape[0], "objective")
            eps = self._noise(eps_labelled, None, None, (x.shape[0], self.latent_dim), x, "objective",
                              "(S, N_l, L)")
            log_q_y = self._q_y(x).log_prob(y)
            total = (self._bound(x, self._one_hot(y, x), eps) + self.alpha * log_q_y).sum()
        if x_unlabelled is not None and len(x_unlabelled) > 0:
            x = self._as_data(x_unlabelled, "objective")
            unlabelled = self._unlabelled(x, eps_unlabelled, None, None, "objective").sum()
            total = unlabelled if total is None else total + unlabelled
        if total is None:
            raise ValueError("M2.objective: no examples (both x_labelled and x_unlabelled are empty)")
        return total

    def loss(self, batch):
        """-J / B for a minibatch of B examples, what ``train.fit`` minimises (for a shuffled
        stream, an unbiased estimate of -J / N over the whole stream).

        batch: a Tensor x (all unlabelled: -mean U(x)), or a pair (x, y) with y = -1
        (UNLABELLED) for the unlabelled examples.
        """
        if not isinstance(batch, (tuple, list)):
            x = self._as_data(batch, "loss")
            return -self._unlabelled(x, None, None, None, "loss").sum() / x.shape[0]
        if len(batch) != 2:
            raise ValueError(f"M2.loss: batch must be x or a pair (x, y), got a sequence of {len(batch)}")
        x, y = batch
        x = self._as_data(x, "loss")
        y = self._as_labels(y, x.shape[0], "loss", allow_unlabelled=True)
        xp = backend.get_array_module(y)
        labelled = xp.flatnonzero(y != UNLABELLED)
        unlabelled = xp.flatnonzero(y == UNLABELLED)
        return -self.objective(Tensor(x.data[labelled]), y[labelled], Tensor(x.data[unlabelled])) / x.shape[0]

    # ----------------------------------------------------------------------------- evaluation

    def log_importance_weights(self, x, k, rng=None):
        """log w_i = log p(x, y_i, z_i) - log q(y_i, z_i|x), y_i ~ q(y|x), z_i ~ q(z|x, y_i):
        shape (k, N), the interface of tinydgm.evaluate.importance (Burda et al. 2016). The
        proposal is the model's own q(y, z|x), so E[log w] = U(x). y is drawn discretely:
        for evaluation, not a training objective."""
        x = self._as_data(x, "log_importance_weights")
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
            raise ValueError(f"M2.log_importance_weights: k must be an int >= 1, got {k!r}")
        k, n = int(k), x.shape[0]
        rng = self.rng if rng is None else rng
        q_y = self._q_y(x)
        y = q_y.sample((k,), rng=rng)                                               # (k, N)
        x_k, onehot = concatenate([x] * k, axis=0), self._one_hot(y.data.reshape(-1), x)
        mu, log_var = self._encode(x_k, onehot)
        eps = StandardNormal((), dtype=mu.dtype, device=mu.device).sample(tuple(mu.shape), rng=rng)
        z = reparameterize(mu, log_var, eps)                                         # (k N, L)
        log_joint = (self.decoder.log_prob(x_k, self._decoder_input(z, onehot)) - math.log(self.n_classes)
                     + StandardNormal((), dtype=z.dtype, device=z.device).log_prob(z).sum(axis=-1))
        log_qz = Normal(mu, log_var=log_var).log_prob(z).sum(axis=-1)
        return (log_joint - log_qz).reshape(k, n) - q_y.log_prob(y)

    def log_prob_estimate(self, x, k=5000, batch_size=100, chunk_size=100, rng=None):
        """log p(x) ~ log 1/k sum_i w_i (the importance-sampled estimate, a draw of the IWAE
        bound F_k over (y, z)), (N,) in nats, no graph; standard errors from
        tinydgm.evaluate.importance.importance_log_likelihood."""
        return importance_log_likelihood(self, x, k, batch_size, chunk_size, rng).log_px

    def bits_per_dim(self, x, k=5000, batch_size=100, chunk_size=100, rng=None):
        """-log p(x) / (D ln 2) from the k-sample estimate, (N,)."""
        return _bits_per_dim(-self.log_prob_estimate(x, k, batch_size, chunk_size, rng), event_size(self.event_shape))

    # ----------------------------------------------------------------------------- generation

    def sample(self, n, y=None, rng=None, mean=False):
        """x ~ p(x|y, z) p(z): z ~ N(0, I) and y the given class (an int, or n ints) or, for
        y=None, y ~ p(y) uniform. A draw (``mean=False``) or E[x|y, z] (``mean=True``); a
        Tensor (n, *event_shape) without a graph."""
        n = positive_int(n, "n", "M2.sample")
        rng = self.rng if rng is None else rng
        like = self._parameter()
        with no_grad():
            y = self._classes_to_sample(n, y, rng, like)
            z = StandardNormal((), dtype=like.dtype, device=like.device).sample((n, self.latent_dim), rng=rng)
            p_x = self.decoder.distribution(self._decoder_input(z, self._one_hot(y, like)))
            return p_x.mean if mean else p_x.sample(rng=rng)

    def _classes_to_sample(self, n, y, rng, like):
        """n class labels: y ~ p(y) = 1/K for y=None, n copies of an int y, or y itself."""
        xp = backend.module_for_device(like.device)
        if y is None:
            y = Categorical(Tensor(xp.zeros(self.n_classes, dtype=like.dtype))).sample((n,), rng=rng).data
        elif isinstance(y, numbers.Integral) and not isinstance(y, bool):
            y = xp.full(n, int(y), dtype="int64")
        return self._as_labels(y, n, "sample")

    def class_grid(self, n_rows, z=None, rng=None, mean=True):
        """The class-conditional grid (n_rows, K, *event_shape): z fixed along each row (drawn
        from N(0, I), or given as (n_rows, L), e.g. ``encode(x, y)[0]`` for style transfer),
        class k in column k; E[x|y, z] (``mean=True``) or draws. A Tensor without a graph."""
        n_rows = positive_int(n_rows, "n_rows", "M2.class_grid")
        like = self._parameter()
        k = self.n_classes
        with no_grad():
            if z is None:
                z = StandardNormal((), dtype=like.dtype, device=like.device).sample(
                    (n_rows, self.latent_dim), rng=self.rng if rng is None else rng)
            elif not isinstance(z, Tensor):
                z = Tensor(backend.as_array(z, dtype=like.dtype, device=like.device))
            if tuple(z.shape) != (n_rows, self.latent_dim):
                raise ValueError(f"M2.class_grid: z must have shape (n_rows, L) = {(n_rows, self.latent_dim)}, "
                                 f"got {tuple(z.shape)}")
            xp = backend.get_array_module(like.data)
            classes = xp.tile(xp.arange(k), n_rows)                                  # row-major: (row, class)
            z_rows = concatenate([z.reshape(n_rows, 1, self.latent_dim)] * k, axis=1).reshape(n_rows * k, -1)
            p_x = self.decoder.distribution(self._decoder_input(z_rows, self._one_hot(classes, like)))
            x = p_x.mean if mean else p_x.sample(rng=self.rng if rng is None else rng)
            return x.reshape((n_rows, k) + self.event_shape)

    # ----------------------------------------------------------------------------- inputs

    def _parameter(self):
        return first_weight(self, "M2: the networks have no parameters")

    def _one_hot(self, y, like):
        """onehot(y) (M, K) as a constant Tensor in ``like``'s dtype and device."""
        xp = backend.get_array_module(like.data)
        y = backend.to_device(y, like.device)
        return Tensor((y[:, None] == xp.arange(self.n_classes)).astype(like.dtype))

    def _noise(self, eps, n_samples, rng, shape, like, who, spelled):
        """eps ~ N(0, I) of shape (S,) + shape, drawn or checked."""
        if eps is None:
            s = self.n_samples if n_samples is None else n_samples
            if isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 1:
                raise ValueError(f"M2.{who}: n_samples must be an int >= 1, got {s!r}")
            rng = self.rng if rng is None else rng
            return StandardNormal((), dtype=like.dtype, device=like.device).sample((int(s),) + shape, rng=rng)
        eps = eps if isinstance(eps, Tensor) else Tensor(backend.as_array(eps, dtype=like.dtype, device=like.device))
        if eps.ndim != len(shape) + 1 or tuple(eps.shape[1:]) != shape:
            raise ValueError(f"M2.{who}: eps must have shape {spelled} = (S, {', '.join(map(str, shape))}), "
                             f"got {tuple(eps.shape)}")
        return eps

    def _as_data(self, x, who):
        """x checked (shape (N, *event_shape), finite, binary for the Bernoulli decoder) and
        in the parameters' dtype and device."""
        return as_data(x, self._parameter(), self.event_shape, self.decoder, f"M2.{who}")

    def _as_labels(self, y, n, who, allow_unlabelled=False):
        """y as an int64 array (n,) on the parameters' device, every entry in [0, K)
        (or -1 where unlabelled examples are allowed)."""
        owner = f"M2.{who}"
        like = self._parameter()
        y = y.data if isinstance(y, Tensor) else backend.as_array(y, device=like.device)
        if y.dtype.kind not in "iu":
            raise TypeError(f"{owner}: y must hold integer class labels, got dtype {y.dtype}")
        if tuple(y.shape) != (n,):
            raise ValueError(f"{owner}: y must have shape (N,) = ({n},), got {tuple(y.shape)}")
        low = UNLABELLED if allow_unlabelled else 0
        if n and not bool(((y >= low) & (y < self.n_classes)).all()):
            allowed = f"[0, {self.n_classes}) or {UNLABELLED} (unlabelled)" if allow_unlabelled else \
                f"[0, {self.n_classes})"
            raise ValueError(f"{owner}: labels must lie in {allowed}, got values in [{int(y.min())}, {int(y.max())}]")
        return backend.to_device(y, like.device).astype("int64", copy=False)

    def extra_repr(self):
        return (f"event_shape={self.event_shape}, n_classes={self.n_classes}, latent_dim={self.latent_dim}, "
                f"hidden={self.hidden}, alpha={self.alpha}, n_samples={self.n_samples}")


def class_conditional_grid(model, n_rows, z=None, rng=None, mean=True):
    """``model.class_grid`` as a backend array (n_rows, K, *event_shape) for plotting:
    z fixed per row, the class per column."""
    return model.class_grid(n_rows, z=z, rng=rng, mean=mean).data
