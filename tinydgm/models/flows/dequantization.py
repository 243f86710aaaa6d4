"""Dequantization: fitting a continuous flow to discrete data (isachenko-l07, "Dequantization",
"Uniform dequantization", "Variational dequantization", "Flow++"), and the logit
pre-processing of RealNVP with its log-determinant counted in bits/dim.

Constructors (the names other modules import):

    UniformDequantization(n_levels=256, rng=None)
    VariationalDequantization(event_shape, n_levels=256, n_couplings=2, hidden=(64, 64),
                              hidden_channels=32, rng=None, dtype=None, device=None)
    LogitTransform(alpha=0.05, n_levels=256)
    DequantizedFlow(flow, dequantization, preprocess=None)

Discrete data x in {0, ..., K - 1}^D (K = n_levels, 256 for 8-bit images) has a probability
P(x), a flow a density p(y) on R^D. Spreading each x over its unit cube x + [0, 1)^D
defines P(x) = int_{[0,1)^D} p(x + u) du, and Jensen's inequality gives the lower bounds

    uniform     (Theis et al. 2016)   log P(x) >= E_{u ~ U[0,1)^D} [log p(x + u)]
    variational (Ho et al. 2019)      log P(x) >= E_{u ~ q(u|x)} [log p(x + u) - log q(u|x)]

(the uniform bound is the variational one with q = U[0,1)^D, log q = 0). Each
dequantizer returns (y, log_q): y = x + u for one draw u per example and log q(u|x) per
example, so log p(y) - log q is a one-sample unbiased estimate of the bound
(``DequantizedFlow.log_prob_lower_bound``). Maximising it trains p and q together.

Variational dequantization: q(u|x) is a conditional flow on Gaussian noise (Flow++ sec. 3.1,
the lecture's "Flow-based variational dequantization"), small and exact:

    eps ~ N(0, I)
    h   = mu(x) + exp(s(x)) * eps                         conditional affine
    h   = coupling_k(h; x), k = 1..n_couplings            h_b <- h_b exp(s_k(h_a, x)) + t_k(h_a, x)
    u   = sigmoid(h)                                      into the unit cube
    log q(u|x) = log N(eps; 0, I) - log |det du/deps|     change of variables, exact

with log|det du/deps| = sum s(x) + sum_k sum_b s_k + sum log sigmoid(h) + log sigmoid(-h).
The conditioners are tinydgm.nn.conditioners networks (MLPConditioner for vector data,
CNNConditioner for images (C, H, W)) reading x scaled to [-1/2, 1/2) and, for the
couplings, the masked h concatenated with it; their last layer starts at zero, so a fresh
q is sigmoid(N(0, I)): smooth, not yet uniform. The couplings split h by index parity
(vectors) or a checkerboard (images), alternating between layers.

Logit pre-processing (Dinh et al. 2017, RealNVP sec. 4.1; Papamakarios et al. 2017 sec. 4.3):
a flow on the unbounded logit space models y in [0, K)^D through

    w = logit(alpha + (1 - 2 alpha) y / K),
    log |det dw/dy| = sum_d [log(1 - 2 alpha) - log K - log s_d - log(1 - s_d)],  s = alpha + (1 - 2 alpha) y / K

(the symmetric form with (1 - 2 alpha), as in MAF and Glow-era code; RealNVP's paper writes
(1 - alpha), a slightly asymmetric squeeze). ``LogitTransform`` is a Transform whose
log-det includes the -D log K of the 1/K scaling, so the bound in the discrete space is
log p_W(w) + log_det - log q, and

    bits/dim = -(log p_W(w) + log_det - log q) / (D ln 2)
             = -(log p_W(w) + log_det_[0,1) - D log K - log q) / (D ln 2)

exactly the lecture's bits/dim (log_det_[0,1) the log-det of the logit map from y / K in
[0, 1); the two forms are the same number).

Limitations: the bound is estimated with one draw of u per example (pass the same rng for
repeatable values); tighter estimates average (``log_prob_lower_bound(x, n_samples=...)``).
Flow++'s full q (attention couplings, logistic mixtures) is not reproduced: the point here
is the bound and its exact log q.
"""
import math

from tinydgm import backend
from tinydgm.autodiff.core import Tensor, no_grad
from tinydgm.autodiff.elementwise import exp, log, log_sigmoid, sigmoid
from tinydgm.autodiff.reduce import logsumexp
from tinydgm.autodiff.shape import concatenate, stack
from tinydgm.models.flows.base import Flow, Transform, sum_per_example
from tinydgm.nn.conditioners import CNNConditioner, MLPConditioner
from tinydgm.nn.module import Module, ModuleList

__all__ = ["UniformDequantization", "VariationalDequantization", "LogitTransform", "DequantizedFlow",
           "dequantized_bits_per_dim"]

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def _generator(owner, rng):
    if rng is not None:
        return rng
    return owner.rng if owner.rng is not None else backend.default_generator()


def _as_float(x, dtype, who):
    """Integer data (array or Tensor) as a floating constant Tensor of ``dtype``."""
    data = x.data if isinstance(x, Tensor) else x
    if not backend.is_array(data):
        data = backend.as_array(data)
    if data.ndim < 2:
        raise ValueError(f"{who}: x must have a batch axis, shape (N, ...), got shape {tuple(data.shape)}")
    return Tensor(data.astype(dtype))


def _check_levels(x, n_levels, who):
    data = x.data
    if data.size and (bool((data < 0).any()) or bool((data > n_levels - 1).any())
                      or bool((data != backend.xp_of(data).floor(data)).any())):
        raise ValueError(f"{who}: x must hold integers in {{0, ..., {n_levels - 1}}} (n_levels={n_levels}), "
                         f"got values in [{float(data.min())}, {float(data.max())}]")


# ----------------------------------------------------------------------------- uniform

class UniformDequantization(Module):
    """y = x + u, u ~ U[0, 1)^D (Theis, van den Oord & Bethge 2016; isachenko-l07 "Uniform
    dequantization"): q(u|x) = 1 on the unit cube, log q = 0, and

        log P(x) >= E_{u ~ U[0,1)^D} [log p(x + u)].

    ``forward(x, rng=None) -> (y, log_q)``: x integers in {0, ..., n_levels - 1}, shape
    (N, ...); y float (the default dtype unless ``dtype`` is given), log_q zeros (N,).
    rng: a NumPy Generator (default ``self.rng``, then the package's default generator);
    ``train.fit`` lends its generator to ``self.rng``.
    """

    def __init__(self, n_levels=256, rng=None, dtype=None):
        super().__init__()
        self.n_levels, self.rng, self.dtype = int(n_levels), rng, dtype

    def forward(self, x, rng=None):
        x = _as_float(x, self.dtype or backend.get_default_dtype(), "UniformDequantization")
        _check_levels(x, self.n_levels, "UniformDequantization")
        xp = backend.xp_of(x.data)
        u = backend.to_device(_generator(self, rng).random(x.shape), x.device).astype(x.dtype)
        return x + Tensor(u), Tensor(xp.zeros((x.shape[0],), dtype=x.dtype))

    def extra_repr(self):
        return f"n_levels={self.n_levels}"


# ----------------------------------------------------------------------------- variational

def _parity_mask(event_shape, parity, xp, dtype):
    """1 on the entries that condition (h_a), 0 on those transformed (h_b): index parity for
    vectors (D,), a checkerboard over (H, W) for images (C, H, W)."""
    if len(event_shape) == 1:
        mask = (xp.arange(event_shape[0]) % 2) == parity
    else:
        _, height, width = event_shape
        mask = ((xp.arange(height)[:, None] + xp.arange(width)[None, :]) % 2) == parity
        mask = xp.broadcast_to(mask[None], event_shape)
    return mask.astype(dtype)[None]


class VariationalDequantization(Module):
    """u ~ q(u|x) by a small conditional flow (Ho et al. 2019, Flow++ sec. 3.1; isachenko-l07
    "Variational dequantization"): see the module docstring for the layers and log q.

        log P(x) >= E_{u ~ q(u|x)} [log p(x + u) - log q(u|x)]

    event_shape: (D,) (MLP conditioners) or (C, H, W) (convolutional conditioners).
    n_levels: K; the conditioners read x / K - 1/2. n_couplings: conditional affine
    couplings after the first conditional affine layer (0: a conditional Gaussian pushed
    through a sigmoid, a "logit-normal" q). hidden: MLP widths; hidden_channels: CNN width.
    ``forward(x, rng=None) -> (y, log_q)`` with y = x + u. ``rng`` as UniformDequantization.
    """

    def __init__(self, event_shape, n_levels=256, n_couplings=2, hidden=(64, 64), hidden_channels=32, rng=None,
                 dtype=None, device=None):
        super().__init__()
        self.event_shape = tuple(event_shape)
        if len(self.event_shape) not in (1, 3):
            raise ValueError(f"VariationalDequantization: event_shape must be (D,) or (C, H, W), got "
                             f"{self.event_shape}")
        if isinstance(n_couplings, bool) or not isinstance(n_couplings, int) or n_couplings < 0:
            raise ValueError(f"VariationalDequantization: n_couplings must be a non-negative int, got {n_couplings!r}")
        self.n_levels, self.rng = int(n_levels), rng
        kw = dict(rng=rng, dtype=dtype, device=device)
        features = self.event_shape[0]                    # D, or C for images

        def conditioner(in_features):
            if len(self.event_shape) == 1:
                return MLPConditioner(in_features, features, hidden=hidden, **kw)
            return CNNConditioner(in_features, features, hidden_channels=hidden_channels, n_blocks=1, **kw)

        self.affine = conditioner(features)                                   # (mu(x), s(x))
        self.couplings = ModuleList([conditioner(2 * features) for _ in range(n_couplings)])

    def _context(self, x):
        return x * (1.0 / self.n_levels) - 0.5

    def transform(self, eps, x):
        """u = g(eps; x) and log |det du/deps| per example (the conditional flow of q)."""
        context = self._context(x)
        mu, s = self.affine(context)
        h = mu + exp(s) * eps                                               # conditional affine
        log_det = sum_per_example(s)
        xp = backend.xp_of(eps.data)
        for k, coupling in enumerate(self.couplings):
            mask = Tensor(_parity_mask(self.event_shape, k % 2, xp, eps.dtype))
            t_k, s_k = coupling(concatenate([h * mask, context], axis=1))
            s_k = s_k * (1 - mask)                                          # only h_b is scaled
            h = h * mask + (h * exp(s_k) + t_k) * (1 - mask)
            log_det = log_det + sum_per_example(s_k)
        u = sigmoid(h)
        log_det = log_det + sum_per_example(log_sigmoid(h) + log_sigmoid(-h))  # du/dh = s(h) s(-h)
        return u, log_det

    def forward(self, x, rng=None):
        dtype = self.affine.last.weight.dtype
        x = _as_float(x, dtype, "VariationalDequantization")
        _check_levels(x, self.n_levels, "VariationalDequantization")
        if tuple(x.shape[1:]) != self.event_shape:
            shape = ", ".join(map(str, self.event_shape))
            raise ValueError(f"VariationalDequantization: x must have shape (N, {shape}), got {tuple(x.shape)}")
        eps = Tensor(backend.to_device(_generator(self, rng).standard_normal(x.shape), x.device).astype(dtype))
        u, log_det = self.transform(eps, x)
        log_q = sum_per_example(-0.5 * eps * eps - _HALF_LOG_2PI) - log_det   # log N(eps) - log|du/deps|
        return x + u, log_q

    def extra_repr(self):
        return f"event_shape={self.event_shape}, n_levels={self.n_levels}, n_couplings={len(self.couplings)}"


# ----------------------------------------------------------------------------- logit pre-processing

class LogitTransform(Transform):
    """w = logit(s), s = alpha + (1 - 2 alpha) y / K, for y in [0, K)^D (RealNVP sec. 4.1):

        log |det dw/dy| = sum_d log(1 - 2 alpha) - log K - log s_d - log(1 - s_d)

    (the 1/K scaling included: see the module docstring for the bits/dim it gives).
    inverse: y = K (sigmoid(w) - alpha) / (1 - 2 alpha), log-det the negative, with
    log s = log_sigmoid(w) and log(1 - s) = log_sigmoid(-w) (stable where sigmoid(w) rounds to 1).
    """

    def __init__(self, alpha=0.05, n_levels=256):
        super().__init__()
        if not 0 <= alpha < 0.5:
            raise ValueError(f"LogitTransform: alpha must be in [0, 0.5), got {alpha!r}")
        self.alpha, self.n_levels = float(alpha), int(n_levels)

    def _log_det(self, log_s, log_1ms):
        per_dim = math.log(1 - 2 * self.alpha) - math.log(self.n_levels) - log_s - log_1ms
        return sum_per_example(per_dim)

    def forward(self, y):
        s = self.alpha + (1 - 2 * self.alpha) * (1.0 / self.n_levels) * y
        log_s, log_1ms = log(s), log(1 - s)
        return log_s - log_1ms, self._log_det(log_s, log_1ms)

    def inverse(self, w):
        s = sigmoid(w)
        y = (s - self.alpha) * (self.n_levels / (1 - 2 * self.alpha))
        return y, -self._log_det(log_sigmoid(w), log_sigmoid(-w))

    def extra_repr(self):
        return f"alpha={self.alpha}, n_levels={self.n_levels}"


# ----------------------------------------------------------------------------- the bound

def dequantized_bits_per_dim(log_prob_lower_bound, n_dims):
    """bits/dim of discrete data from the lower bound on log P(x) (nats, per example):
    -bound / (D ln 2), an upper bound on the model's true bits/dim."""
    return -log_prob_lower_bound / (n_dims * math.log(2.0))


class DequantizedFlow(Module):
    """A flow fitted to discrete data through a dequantizer (and an optional pre-processing
    transform such as ``LogitTransform``):

        y, log q = dequantization(x)                     y = x + u, u ~ q(u|x)
        w, log_det = preprocess(y)                       (identity if None)
        bound(x) = log p_W(w) + log_det - log q          <= log P(x)   (isachenko-l07)

    ``log_prob_lower_bound(x, rng=None, n_samples=1)`` (nats, (N,)): one-sample bound, or
    with n_samples = S the average of S draws (still a bound; use ``importance`` below for
    the tighter log-mean-exp). ``bits_per_dim(x)``: -bound / (D ln 2) in the DISCRETE space.
    ``loss(x)``: -mean bound (trains p and q together). ``sample(n)``: x = floor(y) clipped
    to {0, ..., K - 1} from y = preprocess^{-1}(flow sample).
    """

    def __init__(self, flow, dequantization, preprocess=None):
        super().__init__()
        if not isinstance(flow, Flow):
            raise TypeError(f"DequantizedFlow: flow must be a Flow, got {type(flow).__name__}")
        if preprocess is not None and not isinstance(preprocess, Transform):
            raise TypeError(f"DequantizedFlow: preprocess must be a Transform or None, got {type(preprocess).__name__}")
        self.flow, self.dequantization, self.preprocess = flow, dequantization, preprocess

    def extra_repr(self):
        return f"event_shape={self.flow.event_shape}"

    @property
    def n_dims(self):
        d = 1
        for s in self.flow.event_shape:
            d *= s
        return d

    def _one_bound(self, x, rng):
        y, log_q = self.dequantization(x, rng=rng)
        log_det = 0
        if self.preprocess is not None:
            y, log_det = self.preprocess(y)
        return self.flow.log_prob(y) + log_det - log_q

    def log_prob_lower_bound(self, x, rng=None, n_samples=1, importance=False):
        """E_q[log p(x + u) - log q(u|x)] estimated with ``n_samples`` draws per example.
        importance=True returns log (1/S sum_s p(x + u_s) / q(u_s|x)) instead: still a lower
        bound in expectation, tighter with S (the importance-weighted bound)."""
        bounds = [self._one_bound(x, rng) for _ in range(n_samples)]
        if n_samples == 1:
            return bounds[0]
        bounds = stack(bounds, axis=0)
        if importance:
            return logsumexp(bounds, axis=0) - math.log(n_samples)
        return bounds.mean(axis=0)

    def bits_per_dim(self, x, rng=None, n_samples=1):
        """-bound / (D ln 2) in the discrete space: an upper bound on the bits/dim, (N,)."""
        return dequantized_bits_per_dim(self.log_prob_lower_bound(x, rng, n_samples), self.n_dims)

    def loss(self, x):
        """-mean bound of the batch (one draw of u per example): trains p and q together."""
        return -self.log_prob_lower_bound(x).mean()

    def sample(self, n, rng=None):
        """n discrete samples (a Tensor of integers as floats, shape (n, *event_shape))."""
        with no_grad():
            y = self.flow.sample(n, rng=rng)
            if self.preprocess is not None:
                y, _ = self.preprocess.inverse(y)
            xp = backend.xp_of(y.data)
            levels = getattr(self.dequantization, "n_levels", 256)
            return Tensor(xp.clip(xp.floor(y.data), 0, levels - 1))
