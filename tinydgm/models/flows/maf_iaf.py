"""Affine autoregressive flows: MAF and IAF (isachenko-l07, "Gaussian autoregressive flow
(MAF)" and "Inverse autoregressive flow (IAF)"; intro lecture part II, "Autoregressive flow
[Kingma et al., 2016]"; Papamakarios, Pavlakou & Murray 2017, "Masked Autoregressive Flow
for Density Estimation", eq. 2-5; Kingma et al. 2016, "Improving Variational Inference with
Inverse Autoregressive Flow").

A Gaussian MADE (tinydgm.models.autoregressive.made.MADE, output="gaussian") reads a vector and gives,
for every i, a shift mu_i and a log-scale alpha_i that depend on the entries before i in
its ordering only (the MADE masks). Two ways to use it as a flow, in the convention of
tinydgm.models.flows.base (forward: data x -> base u, the density direction):

    MAF  (Papamakarios et al. eq. 3-5; mu, alpha read x)
        forward   u_i = (x_i - mu_i(x_<i)) exp(-alpha_i(x_<i))    ONE pass (x is known)
                  log |det du/dx| = -sum_i alpha_i                  (triangular Jacobian, eq. 5)
        inverse   x_i = u_i exp(alpha_i(x_<i)) + mu_i(x_<i)         sequential in i (eq. 2)

    IAF  (Kingma et al. sec. 4; mu, alpha read u; the lecture's x_i = sigma_i(z_<i) z_i + mu_i(z_<i))
        inverse   x_i = u_i exp(alpha_i(u_<i)) + mu_i(u_<i)         ONE pass (u is known)
                  log |det dx/du| = +sum_i alpha_i
        forward   u_i = (x_i - mu_i(u_<i)) exp(-alpha_i(u_<i))      sequential in i

So MAF evaluates densities in one pass and samples in D, IAF the other way round (fast
sampling and fast density of its own samples: what a VAE posterior needs). Kingma et al.
write the step as z_t = mu_t + sigma_t * z_{t-1} and note that it equals the inverse of an
autoregressive Gaussian's normalisation; ``Inverse(MAFLayer(...))`` is the same family with
(mu, alpha) reparametrised, and IAFLayer is kept as its own class so that the code reads as
the lecture's formula. (Their numerically stabler LSTM-like update sigma = sigmoid(s),
z = sigma z + (1 - sigma) m is not used here.)

The sequential direction: with no gradient needed (sampling a trained MAF, evaluating an
IAF density under no_grad) it runs the Numba kernel of tinydgm.kernels.maf_sampler on the
MADE's masked weights (incremental first layer, each hidden unit once: about one forward
pass per example), or its batched twin on CuPy; otherwise D passes through the engine, so
gradients (of any order) flow. Results agree to rounding.

Between layers, the ordering is reversed (``Reverse``) or permuted (``Permutation``),
log-det 0, so every variable gets to depend on every other; MAF's paper also places batch
normalisation between MADEs (tinydgm.models.flows.image.BatchNormTransform). ``build_maf``
assembles a Flow.

Stability: alpha is the MADE's raw output softly bounded, alpha = B tanh(raw / B) with
B = ``alpha_bound`` (default 8: |alpha| < 8, so one layer scales by at most e^8 ~ 3000, and
alpha ~ raw while |raw| << B). Unbounded (alpha_bound=None, the paper's form) a confident layer
can overflow exp in float32 and training on sharp densities (the checkerboard) diverged.
Context (Kingma et al. 2016, sec. 4 and fig. 2): an IAF step in a VAE posterior also reads
the encoder's context h, mu, alpha = MADE(u, h), with h fed unmasked into every hidden layer
of the MADE (tinydgm.models.autoregressive.made, ``context_dim``). ``IAFLayer(..., context_dim=C)``
then takes ``inverse(u, context=h)`` and ``forward(x, context=h)``; h is held fixed by the
layer, so the Jacobian in u stays triangular and the log-determinant is unchanged. The
sequential direction with a context runs through the engine (the kernel knows no context).
Without a context (the default) both layers behave exactly as before.

Limitations: the MADE's hidden units are ReLU.
"""
import time

from tinydgm import backend
from tinydgm.autodiff.core import Tensor, is_grad_enabled
from tinydgm.autodiff.elementwise import exp
from tinydgm.autodiff.shape import flip, split, stack
from tinydgm.kernels import maf_sampler
from tinydgm.kernels.made_sampler import ordering_positions
from tinydgm.models.flows.base import Compose, Flow, Transform
from tinydgm.models.flows.image import BatchNormTransform
from tinydgm.models.autoregressive.made import MADE

__all__ = ["MAFLayer", "IAFLayer", "Reverse", "Permutation", "build_maf", "PAPER_CONFIG",
           "reproduce"]


def _zeros(x):
    xp = backend.xp_of(x.data)
    return Tensor(xp.zeros((x.shape[0],), dtype=x.dtype))


def _check_vectors(x, n_dims, who):
    if not isinstance(x, Tensor):
        raise TypeError(f"{who}: input must be a Tensor, got {type(x).__name__}")
    if x.ndim != 2 or x.shape[1] != n_dims:
        raise ValueError(f"{who}: input must have shape (N, D) = (N, {n_dims}), got {x.shape}")


# ----------------------------------------------------------------------------- MAF and IAF layers

class _AffineAutoregressive(Transform):
    """The MADE and the two solves shared by MAF and IAF: ``params(v) -> (mu, alpha)`` in one
    pass, and ``solve(y, direction) -> (v, sum alpha)`` sequentially (see maf_sampler)."""

    def __init__(self, n_dims, hidden_sizes=(64, 64), ordering="natural", rng=None, dtype=None, alpha_bound=8.0,
                 context_dim=None):
        super().__init__()
        if alpha_bound is not None and not alpha_bound > 0:
            raise ValueError(f"{type(self).__name__}: alpha_bound must be positive or None, got {alpha_bound!r}")
        self.n_dims, self.alpha_bound = n_dims, alpha_bound
        self.made = MADE(n_dims, list(hidden_sizes), output="gaussian", ordering=ordering, connectivity="natural",
                         rng=rng, dtype=dtype, context_dim=context_dim)

    def params(self, v, context=None):
        """mu, alpha = split(MADE(v[, h])), alpha softly bounded (see the module docstring): each
        (N, D), entry i a function of v_<i (and of the context h, when the layer has one)."""
        mu, raw = split(self.made(v, context=context), 2, axis=-1)
        return mu, maf_sampler.soft_bound(raw, self.alpha_bound)

    def _needs_graph(self, y):
        return is_grad_enabled() and (y.requires_grad or any(p.requires_grad for p in self.parameters()))

    def solve(self, y, direction, context=None):
        """v with v_i = y_i exp(alpha_i(v_<i)) + mu_i(v_<i) ("sample") or
        v_i = (y_i - mu_i(v_<i)) exp(-alpha_i(v_<i)) ("normalize"), and sum_i alpha_i."""
        if context is None and not self._needs_graph(y):
            weights, biases, degrees = self.made._sampler_arrays()
            v, alpha_sum = maf_sampler.autoregressive_affine(weights, biases, degrees, y.data, direction,
                                                             alpha_bound=self.alpha_bound)
            return Tensor(v.astype(y.dtype)), Tensor(alpha_sum.astype(y.dtype))
        return self._solve_through_engine(y, direction, context)

    def _solve_through_engine(self, y, direction, context=None):
        """D passes through the engine, one variable per pass, differentiable."""
        columns = [_zeros(y)] * self.n_dims                   # v, column by column, unknowns at 0
        alpha = None
        for d in ordering_positions(self.made.ordering).tolist():
            mu, alpha = self.params(stack(columns, axis=1), context)
            if direction == "sample":
                columns[d] = y[:, d] * exp(alpha[:, d]) + mu[:, d]
            else:
                columns[d] = (y[:, d] - mu[:, d]) * exp(-alpha[:, d])
        # the last pass saw every v_<i of every i, so its alpha is the final one
        return stack(columns, axis=1), alpha.sum(axis=1)

    def extra_repr(self):
        context = "" if self.made.context_dim is None else f", context_dim={self.made.context_dim}"
        return f"n_dims={self.n_dims}, hidden_sizes={self.made.hidden_sizes}{context}"


class MAFLayer(_AffineAutoregressive):
    """One MAF layer (Papamakarios et al. 2017, eq. 2-5): mu, alpha = MADE(x),

        forward   u = (x - mu(x)) * exp(-alpha(x)),   log |det du/dx| = -sum_i alpha_i    (one pass)
        inverse   x_i = u_i exp(alpha_i(x_<i)) + mu_i(x_<i),  log |det dx/du| = +sum_i alpha_i  (sequential)

    MAFLayer(n_dims, hidden_sizes=(64, 64), ordering="natural", rng=None, dtype=None, alpha_bound=8.0):
    ordering is the MADE's m^0 ("natural", "random" or a permutation of 1..D); alpha_bound:
    the soft bound on alpha (None: unbounded, as in the paper).
    """

    def __init__(self, n_dims, hidden_sizes=(64, 64), ordering="natural", rng=None, dtype=None, alpha_bound=8.0):
        super().__init__(n_dims, hidden_sizes, ordering, rng, dtype, alpha_bound)

    def forward(self, x):
        _check_vectors(x, self.n_dims, "MAFLayer.forward")
        mu, alpha = self.params(x)
        neg_alpha = -alpha
        u = (x - mu) * exp(neg_alpha)                           # eq. 3
        return u, neg_alpha.sum(axis=1)                         # eq. 5: log|det| = -sum_i alpha_i

    def inverse(self, u):
        _check_vectors(u, self.n_dims, "MAFLayer.inverse")
        x, alpha_sum = self.solve(u, "sample")                  # eq. 2, one variable at a time
        return x, alpha_sum


class IAFLayer(_AffineAutoregressive):
    """One IAF layer (Kingma et al. 2016; isachenko-l07 "Inverse autoregressive flow"):
    mu, alpha = MADE(u) read the BASE variable,

        inverse   x = u * exp(alpha(u)) + mu(u),   log |det dx/du| = +sum_i alpha_i          (one pass)
        forward   u_i = (x_i - mu_i(u_<i)) exp(-alpha_i(u_<i)),  log |det du/dx| = -sum_i alpha_i  (sequential)

    IAFLayer(n_dims, hidden_sizes=(64, 64), ordering="natural", rng=None, dtype=None,
    alpha_bound=8.0, context_dim=None): as MAFLayer, plus context_dim = C for a layer whose
    MADE also reads a context h (N, C) in every hidden layer (Kingma et al. 2016, fig. 2):
    mu, alpha = MADE(u, h); pass ``context=h`` to ``inverse`` and ``forward``.
    """

    def __init__(self, n_dims, hidden_sizes=(64, 64), ordering="natural", rng=None, dtype=None, alpha_bound=8.0,
                 context_dim=None):
        super().__init__(n_dims, hidden_sizes, ordering, rng, dtype, alpha_bound, context_dim)

    def forward(self, x, context=None):
        _check_vectors(x, self.n_dims, "IAFLayer.forward")
        u, alpha_sum = self.solve(x, "normalize", context)
        return u, -alpha_sum

    def inverse(self, u, context=None):
        _check_vectors(u, self.n_dims, "IAFLayer.inverse")
        mu, alpha = self.params(u, context)
        return u * exp(alpha) + mu, alpha.sum(axis=1)


# ----------------------------------------------------------------------------- between layers

class Reverse(Transform):
    """z = (x_D, ..., x_1): reverses the feature axis (axis 1), log-det 0. Placed between
    autoregressive layers so that the next one conditions in the opposite order
    (Papamakarios et al. sec. 3.1: "each layer ... reverses the ordering")."""

    def forward(self, x):
        return flip(x, axis=1), _zeros(x)

    def inverse(self, z):
        return flip(z, axis=1), _zeros(z)


class Permutation(Transform):
    """z = x[:, pi]: a fixed permutation of the feature axis, log-det 0 (|det| of a
    permutation matrix is 1). Permutation(n_dims, permutation=None, rng=None): pi given, or
    drawn uniformly with ``rng`` (default generator). ``permutation`` is stored as a buffer."""

    def __init__(self, n_dims, permutation=None, rng=None):
        super().__init__()
        xp = backend.module_for_device("cpu")
        if permutation is None:
            permutation = (backend.default_generator() if rng is None else rng).permutation(n_dims)
        permutation = xp.asarray(backend.to_numpy(permutation.data if isinstance(permutation, Tensor)
                                                  else backend.as_array(permutation)))
        if permutation.shape != (n_dims,) or permutation.dtype.kind not in "iu" or \
                not bool((xp.sort(permutation) == xp.arange(n_dims)).all()):
            raise ValueError(f"Permutation: permutation must be a permutation of 0..{n_dims - 1}, "
                             f"got {permutation.tolist()!r}")
        self.n_dims = n_dims
        self.register_buffer("permutation", permutation.astype(xp.int64))
        self.register_buffer("inverse_permutation", xp.argsort(permutation).astype(xp.int64))

    def forward(self, x):
        _check_vectors(x, self.n_dims, "Permutation.forward")
        return x[:, self.permutation], _zeros(x)

    def inverse(self, z):
        _check_vectors(z, self.n_dims, "Permutation.inverse")
        return z[:, self.inverse_permutation], _zeros(z)

    def extra_repr(self):
        return f"n_dims={len(self.permutation)}"


# ----------------------------------------------------------------------------- the flow

def build_maf(n_dims, n_layers=5, hidden_sizes=(100, 100), batch_norm=False, permute="reverse", rng=None,
              dtype=None, alpha_bound=8.0):
    """A MAF (Papamakarios et al. 2017) for vectors of n_dims: ``n_layers`` MADE layers
    (MAFLayer, ``hidden_sizes`` ReLU units each), the ordering reversed ("reverse") or
    randomly permuted ("random") between consecutive layers, and with ``batch_norm`` a
    BatchNormTransform after each MADE but the last; ``alpha_bound`` goes to every layer. Returns a Flow with a N(0, I) base.

    Density direction x -> MAF_1 -> [BN] -> Reverse -> MAF_2 -> ... -> MAF_K -> u.
    """
    if permute not in ("reverse", "random"):
        raise ValueError(f'build_maf: permute must be "reverse" or "random", got {permute!r}')
    rng = backend.default_generator() if rng is None else rng
    transforms = []
    for k in range(n_layers):
        if k > 0:
            if batch_norm:
                transforms.append(BatchNormTransform(n_dims, dtype=dtype))
            transforms.append(Reverse() if permute == "reverse" else Permutation(n_dims, rng=rng))
        transforms.append(MAFLayer(n_dims, hidden_sizes, rng=rng, dtype=dtype, alpha_bound=alpha_bound))
    return Flow(Compose(transforms), (n_dims,))


# ----------------------------------------------------------------------------- the paper's set-up

PAPER_CONFIG = {
    "paper": "Papamakarios, Pavlakou & Murray, Masked Autoregressive Flow for Density Estimation, NeurIPS 2017, "
             "sec. 4.2 (UCI and BSDS300) and Table 1",
    # Recollection of the paper's set-up, NOT verified against its text here (no copy in this workplace):
    "n_layers": 5,                      # "MAF (5)"; a "MAF (10)" row also exists
    "hidden_sizes": [100, 100],         # UCI data sets (BSDS300 used wider layers, 2 x 512 as we recall)
    "activation": "relu or tanh, chosen on validation data (tinydgm: ReLU only)",
    "batch_norm": True,                 # between MADE layers, as in RealNVP
    "ordering": "reversed between layers (the first layer's ordering as the data)",
    "optimizer": "adam", "lr": 1e-4, "batch_size": 100, "weight_decay": 1e-6,
    "early_stopping_patience": 30,      # epochs without a better validation log-likelihood
    # average test log-likelihood in nats (higher is better), MAF (5), as we recall Table 1:
    "published_test_log_likelihood": {"POWER": 0.14, "GAS": 9.07, "HEPMASS": -17.70, "MINIBOONE": -11.75,
                                      "BSDS300": 155.69},
    "note": "the UCI data sets are not in this workplace; tinydgm.models.flows.maf_iaf.reproduce runs the "
            "architecture on the 2-D toys of tinydgm.data.toy, where the true log-density is known",
}


def reproduce(toy="eight_gaussians", n_train=20000, n_test=5000, epochs=20, batch_size=512, lr=1e-3,
              hidden_sizes=(64, 64), n_layers=5, batch_norm=False, seed=0, dtype="float32", max_time=None,
              log=print):
    """Train build_maf(2, ...) on a 2-D toy density (tinydgm.data.toy) and return a dict with
    the test log-likelihood (nats) and, where the toy has one, the true density's value on the
    same test points, plus the wall time. A short run by default; the lead reruns it for the
    quality table. ``max_time`` (seconds) stops training early."""
    from tinydgm import optim
    from tinydgm.autodiff.core import no_grad, tensor
    from tinydgm.data import toy as toy_data

    gen = backend.rng(seed)
    x_train = toy_data.sample_toy(toy, n_train, rng=gen)
    x_test = toy_data.sample_toy(toy, n_test, rng=gen)
    flow = build_maf(2, n_layers=n_layers, hidden_sizes=hidden_sizes, batch_norm=batch_norm, rng=gen, dtype=dtype)
    optimizer = optim.Adam(flow.parameters(), lr=lr)
    start = time.perf_counter()
    for epoch in range(epochs):
        order = gen.permutation(n_train)
        for i in range(0, n_train, batch_size):
            loss = flow.loss(tensor(x_train[order[i:i + batch_size]], dtype=dtype))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        if log:
            log(f"epoch {epoch + 1}: train NLL {loss.item():.4f}")
        if max_time is not None and time.perf_counter() - start > max_time:
            break
    seconds = time.perf_counter() - start
    flow.eval()
    with no_grad():
        test_ll = float(flow.log_prob(tensor(x_test, dtype=dtype)).mean().item())
    result = {"toy": toy, "test_log_likelihood": test_ll, "train_seconds": seconds, "epochs": epoch + 1}
    if toy_data.TOYS[toy].log_density is not None:
        result["true_log_likelihood"] = float(toy_data.log_density(toy, x_test).mean())
    return result
