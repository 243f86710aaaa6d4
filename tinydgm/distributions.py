"""Probability distributions with differentiable, gradient-checked log-densities.

    Normal(mu, sigma=... | log_var=... | log_scale=...)    diagonal Gaussian
    StandardNormal(shape)                                  N(0, I), the usual prior
    Bernoulli(logits=... | probs=...)                      binary pixels, from logits
    Categorical(logits)                                    over the last axis
    MixtureOfGaussians(weights_logits, means, log_scales)  toy targets and priors
    DiscretizedLogistic(mean, log_scale)                   8-bit pixels (PixelCNN++)
    DiscretizedLogisticMixture(logit_probs, means, log_scales)
    kl_divergence(p, q)                                    closed forms

Conventions shared by every class:

- Parameters are Tensors; Python numbers and arrays are converted, taking the dtype and
  device of the first Tensor parameter (else the default dtype, on the CPU). Parameter
  shapes broadcast like NumPy; their broadcast shape is ``batch_shape``, and
  ``event_shape`` is the shape of one draw from one distribution of the batch.
- ``log_prob(x)`` is in nats and made of engine ops, so it is differentiable (twice)
  with respect to the parameters and, for continuous distributions, to ``x``. It is
  *elementwise* for Normal, Bernoulli and the discretised logistics (sum over the last
  axis, or over all pixel axes, yourself), one value per class index for Categorical,
  and one value per point (already summed over the D dimensions) for MixtureOfGaussians.
  ``x`` broadcasts against ``batch_shape``.
- ``sample(shape=(), rng=None)`` returns a Tensor of shape ``shape + batch_shape +
  event_shape`` without a graph. ``rng`` is a NumPy Generator (draws happen on the CPU
  and are moved to the parameters' device, so a seed gives the same draws on every
  device) or a device generator (``tinydgm.backend.rng(seed, "cuda")``); None means the
  default generator reseeded by ``td.seed``.
- ``rsample`` (a reparameterised, differentiable draw) exists only where the draw is a
  smooth function of the parameters and parameter-free noise: Normal and StandardNormal,
  z = mu + sigma * eps (Kingma & Welling 2014). Bernoulli, Categorical and the discretised
  logistics are discrete and the mixtures choose a component discretely, so they have no
  ``rsample`` (``has_rsample`` says which is which).
- ``mean`` and ``variance`` are properties; ``entropy()`` is in closed form (or an exact
  finite sum for the discretised logistics). MixtureOfGaussians has no closed-form
  entropy and says so.
"""
import math

from tinydgm import backend
from tinydgm.autodiff import functional as F
from tinydgm.autodiff.core import Tensor, no_grad
from tinydgm.autodiff.functional import (binary_cross_entropy_with_logits, broadcast_to, exp,
                                         expand_dims, log, log1mexp, log1p, log_sigmoid,
                                         log_softmax, logsumexp, minimum, sigmoid, softmax, softplus,
                                         square, where)

__all__ = ["Distribution", "Normal", "StandardNormal", "Bernoulli", "Categorical",
           "MixtureOfGaussians", "DiscretizedLogistic", "DiscretizedLogisticMixture",
           "kl_divergence"]

_LOG_2PI = math.log(2 * math.pi)
_TINY_UNIFORM = 2.0 ** -53      # the smallest positive draw of Generator.random()


# ----------------------------------------------------------------------------- helpers

def _params(owner, **values):
    """The named parameters as floating Tensors of one dtype and device.

    Tensors are kept as they are (so gradients flow to them); numbers and arrays take the
    dtype and device of the first Tensor parameter, else of the first converted value
    (Python floats: the default dtype; integers become the default dtype).
    """
    like = next((v for v in values.values() if isinstance(v, Tensor)), None)
    out = []
    for name, value in values.items():
        if isinstance(value, Tensor):
            if not backend.is_floating(value.dtype):
                raise TypeError(f"{owner}: {name} must be a floating tensor, got dtype {value.dtype}")
            out.append(value)
            continue
        if like is None:
            array = backend.as_array(value)
            if not backend.is_floating(array.dtype):
                array = array.astype(backend.get_default_dtype())
            like = Tensor(array)
            out.append(like)
        else:
            out.append(Tensor(backend.as_array(value, dtype=like.dtype, device=like.device)))
    return out


def _broadcast(owner, **shapes):
    """NumPy's broadcast of the named shapes, or an error that names them."""
    try:
        return tuple(backend.broadcast_shapes(*shapes.values()))
    except ValueError:
        listed = ", ".join(f"{name} {tuple(shape)}" for name, shape in shapes.items())
        raise ValueError(f"{owner}: shapes do not broadcast: {listed}") from None


def _value(owner, x, like, batch_shape):
    """``x`` as a floating Tensor in ``like``'s dtype and device (a Tensor is kept, so it
    can carry a gradient), checked to broadcast against ``batch_shape`` (unless None)."""
    if isinstance(x, Tensor):
        if not backend.is_floating(x.dtype):
            x = Tensor(x.data.astype(like.dtype))      # integer or boolean pixels, labels
    else:
        x = Tensor(backend.as_array(x, dtype=like.dtype, device=like.device))
    if batch_shape is not None:
        _broadcast(owner, x=x.shape, batch_shape=batch_shape)
    return x


def _shape(shape):
    """A sample shape: an int or a sequence of ints, as a tuple."""
    if isinstance(shape, int):
        return (shape,)
    return tuple(int(n) for n in shape)


def _generator(rng):
    return backend.default_generator() if rng is None else rng


def _constant(array):
    """A constant Tensor from an array (NumPy turns 0-d results into scalars: undo that)."""
    return Tensor(backend.xp_of(array).asarray(array))


def _onto(array, like):
    """A drawn array moved to ``like``'s device, in its dtype."""
    return backend.to_device(array, like.device).astype(like.dtype, copy=False)


def _standard_normal(rng, shape, like):
    """eps ~ N(0, I) of ``shape`` as a constant Tensor in ``like``'s dtype and device."""
    return _constant(_onto(_generator(rng).standard_normal(size=shape), like))


def _open_uniform(rng, shape):
    """u ~ U(0, 1) in float64 on the generator's device, never exactly 0 (so log u, the
    Gumbel and the logistic transforms stay finite; this moves a mass of 2^-53)."""
    u = _generator(rng).random(size=shape)
    return backend.xp_of(u).maximum(u, _TINY_UNIFORM)


def _standard_logistic(rng, shape, like):
    """Logistic(0, 1) noise by inverse CDF, log u - log(1 - u), as an array on ``like``'s device."""
    u = _open_uniform(rng, shape)
    xp = backend.xp_of(u)
    return _onto(xp.log(u) - xp.log1p(-u), like)


def _gumbel_argmax(logits, shape, rng):
    """Class indices of ``shape`` drawn from softmax(logits) over the last axis (the
    Gumbel-max trick: argmax_k (logits_k + g_k), g_k ~ Gumbel(0, 1) = -log(-log u))."""
    u = _open_uniform(rng, shape + logits.shape[-1:])
    xp = backend.xp_of(u)
    g = backend.to_device(-xp.log(-xp.log(u)), logits.device)
    return backend.xp_of(logits.data).argmax(logits.data + g, axis=-1)


def _pick(onehot, values):
    """sum_k onehot_k values_k over the component axis -2 (values: (..., K, D))."""
    return (expand_dims(onehot, -1) * values).sum(axis=-2)


def _one_hot(indices, n, like):
    """A constant Tensor: one-hot rows of length n for integer ``indices``, in ``like``'s dtype."""
    xp = backend.xp_of(indices)
    return _constant((indices[..., None] == xp.arange(n)).astype(like.dtype))


def _scaled(residual, log_scale):
    """residual / s = residual * exp(-log_scale), finite wherever the true quotient is.

    exp(-log_scale) overflows where s is below 1 / (the dtype's max), i.e. log s < -88.7
    in float32 (-709.8 in float64), and residual * inf would give NaN at residual = 0.
    There the quotient is taken from logs, sign(r) exp(log|r| - log s): 0 at r = 0, else a
    number or +-inf, as a constant (its gradient, of size 1 / s^2, is not representable
    either). Elsewhere it is the plain product, through a log_scale with those entries
    replaced by 0, so no inf reaches the graph (or its gradient) there.
    """
    xp = backend.xp_of(log_scale.data)
    overflow = -log_scale.data > math.log(float(xp.finfo(log_scale.dtype).max))
    if not bool(overflow.any()):                       # the usual case: the plain product
        return residual * exp(-log_scale)
    quotient = residual * exp(-where(overflow, 0, log_scale))
    r = xp.broadcast_to(residual.data, quotient.shape)
    magnitude = xp.where(r == 0, 1, xp.abs(r))
    with _quiet(xp):
        far = xp.exp(xp.log(magnitude) - log_scale.data)             # may overflow to inf: the honest value
    far = xp.where(r == 0, 0, xp.where(r < 0, -far, far))
    return where(overflow, _constant(far.astype(quotient.dtype)), quotient)


def _quiet(xp):
    """Silence overflow warnings where an overflow to inf is the right answer."""
    return xp.errstate(over="ignore") if hasattr(xp, "errstate") else _NoContext()


class _NoContext:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _entropy_terms(log_p):
    """-p log p from log p, with 0 log 0 = 0: a bin or class of zero probability (log p =
    -inf) adds nothing, instead of 0 * -inf = NaN, in value and gradient."""
    finite = backend.xp_of(log_p.data).isfinite(log_p.data)
    return -(exp(log_p) * where(finite, log_p, 0))


# ----------------------------------------------------------------------------- base

class Distribution:
    """What every distribution offers: ``batch_shape``, ``event_shape``, ``log_prob``,
    ``sample``, ``entropy``, ``mean``, ``variance``; ``rsample`` where ``has_rsample``."""

    has_rsample = False

    def __init__(self, batch_shape, event_shape=()):
        self.batch_shape = tuple(batch_shape)
        self.event_shape = tuple(event_shape)

    def log_prob(self, x):
        raise NotImplementedError(f"{type(self).__name__}.log_prob is not defined")

    def sample(self, shape=(), rng=None):
        raise NotImplementedError(f"{type(self).__name__}.sample is not defined")

    def entropy(self):
        raise NotImplementedError(f"{type(self).__name__}.entropy is not defined")

    @property
    def mean(self):
        raise NotImplementedError(f"{type(self).__name__}.mean is not defined")

    @property
    def variance(self):
        raise NotImplementedError(f"{type(self).__name__}.variance is not defined")

    def __repr__(self):
        return (f"{type(self).__name__}(batch_shape={self.batch_shape}, "
                f"event_shape={self.event_shape})")


# ----------------------------------------------------------------------------- Gaussians

class Normal(Distribution):
    """Diagonal Gaussian N(mu, diag(sigma^2)), elementwise:

        log N(x | mu, sigma^2) = -1/2 log(2 pi) - log sigma - 1/2 ((x - mu) / sigma)^2

    ``log_prob`` and ``entropy`` are per element: for a D-dimensional diagonal Gaussian
    sum over the last axis, ``Normal(mu, log_var=log_var).log_prob(z).sum(axis=-1)``.

    The scale is given in exactly one way: ``sigma`` (> 0), ``log_var`` = log sigma^2
    (what a VAE encoder outputs) or ``log_scale`` = log sigma. From the log forms the
    density uses log sigma = log_var / 2 and 1 / sigma = exp(-log_var / 2) directly, so
    no exp(log_var) can overflow or underflow into log(0) on the way, and (x - mu) / sigma
    stays exact where 1 / sigma overflows (``_scaled``): log_prob is finite at x = mu for
    any finite log_var, and -inf, never NaN, where the true value is beyond the dtype.

    rsample: z = mu + sigma * eps, eps ~ N(0, I) (the reparameterisation trick).
    """

    has_rsample = True

    def __init__(self, mu, sigma=None, log_var=None, log_scale=None):
        given = {name: value for name, value in
                 (("sigma", sigma), ("log_var", log_var), ("log_scale", log_scale)) if value is not None}
        if len(given) != 1:
            named = ", ".join(sorted(given)) if given else "none"
            raise ValueError(f"Normal: pass exactly one of sigma, log_var, log_scale (got {named})")
        (self._kind, _), = given.items()
        self.mu, self._scale_param = _params("Normal", mu=mu, **given)
        if self._kind == "sigma" and not bool((self._scale_param.data > 0).all()):
            smallest = float(backend.to_numpy(self._scale_param.data).min())
            raise ValueError(f"Normal: sigma must be positive, got a minimum of {smallest}")
        super().__init__(_broadcast("Normal", mu=self.mu.shape, **{self._kind: self._scale_param.shape}))

    @property
    def log_scale(self):
        """log sigma."""
        if self._kind == "log_scale":
            return self._scale_param
        if self._kind == "log_var":
            return 0.5 * self._scale_param
        return log(self._scale_param)

    @property
    def sigma(self):
        """The standard deviation sigma."""
        if self._kind == "sigma":
            return self._scale_param
        return exp(self.log_scale)

    def _inv_sigma(self):
        """1 / sigma, from the log forms without forming sigma first."""
        if self._kind == "sigma":
            return 1 / self._scale_param
        return exp(-self.log_scale)

    @property
    def mean(self):
        return broadcast_to(self.mu, self.batch_shape)

    @property
    def variance(self):
        """sigma^2 (exp(log_var) for the log-variance form)."""
        if self._kind == "log_var":
            variance = exp(self._scale_param)
        else:
            variance = square(self.sigma)
        return broadcast_to(variance, self.batch_shape)

    def log_prob(self, x):
        x = _value("Normal.log_prob", x, self.mu, self.batch_shape)
        z = self._standardised(x - self.mu)
        return -0.5 * _LOG_2PI - self.log_scale - 0.5 * square(z)

    def _standardised(self, residual):
        """residual / sigma: from the log forms through ``_scaled`` (exact where 1 / sigma
        overflows), from sigma as residual * (1 / sigma)."""
        if self._kind == "sigma":
            return residual * self._inv_sigma()
        return _scaled(residual, self.log_scale)

    def rsample(self, shape=(), rng=None):
        """z = mu + sigma * eps, differentiable in mu and sigma; shape ``shape + batch_shape``."""
        eps = _standard_normal(rng, _shape(shape) + self.batch_shape, self.mu)
        return self.mu + self.sigma * eps

    def sample(self, shape=(), rng=None):
        with no_grad():
            return self.rsample(shape, rng)

    def entropy(self):
        """H = 1/2 log(2 pi e) + log sigma, per element."""
        return broadcast_to(0.5 * (1 + _LOG_2PI) + self.log_scale, self.batch_shape)


class StandardNormal(Normal):
    """N(0, I) of a given ``shape`` (the prior of VAEs and flows):

        log N(x | 0, 1) = -1/2 log(2 pi) - x^2 / 2          (per element)

    A Normal with mu = 0 and log sigma = 0, so kl_divergence(Normal(...), StandardNormal(...))
    is the VAE's closed form 1/2 (mu^2 + sigma^2 - 1 - log sigma^2).
    """

    def __init__(self, shape=(), dtype=None, device=None):
        xp = backend.module_for_device(device)
        dtype = backend.get_default_dtype() if dtype is None else dtype
        shape = _shape(shape)
        super().__init__(Tensor(xp.zeros(shape, dtype=dtype)), log_scale=Tensor(xp.zeros(shape, dtype=dtype)))

    def log_prob(self, x):
        x = _value("StandardNormal.log_prob", x, self.mu, self.batch_shape)
        shape = _broadcast("StandardNormal.log_prob", x=x.shape, batch_shape=self.batch_shape)
        return broadcast_to(-0.5 * _LOG_2PI - 0.5 * square(x), shape)

    def rsample(self, shape=(), rng=None):
        """eps ~ N(0, I) of shape ``shape + batch_shape`` (there is nothing to differentiate)."""
        return _standard_normal(rng, _shape(shape) + self.batch_shape, self.mu)


class MixtureOfGaussians(Distribution):
    """Mixture of K diagonal Gaussians in D dimensions, pi = softmax(weights_logits):

        log p(x) = logsumexp_k [ log pi_k + sum_d log N(x_d | mu_kd, sigma_kd^2) ]

    Unlike Normal, ``log_prob`` returns one value per point: the D dimensions are summed
    inside the mixture (they cannot be separated outside it). x has shape (..., D).

    Shapes: weights_logits (..., K), means (..., K, D), log_scales (..., K, D) or anything
    that broadcasts to it, e.g. (K, 1) for isotropic components. ``mean`` is
    sum_k pi_k mu_k and ``variance`` the diagonal of the covariance,
    sum_k pi_k (sigma_k^2 + mu_k^2) - mean^2. The component choice is discrete: no
    rsample, and the entropy has no closed form.
    """

    def __init__(self, weights_logits, means, log_scales):
        self.weights_logits, self.means, self.log_scales = _params(
            "MixtureOfGaussians", weights_logits=weights_logits, means=means, log_scales=log_scales)
        components = _broadcast("MixtureOfGaussians", means=self.means.shape, log_scales=self.log_scales.shape)
        if len(components) < 2 or self.weights_logits.ndim < 1:
            raise ValueError("MixtureOfGaussians: means and log_scales must have shape (..., K, D) and "
                             f"weights_logits (..., K), got means {self.means.shape}, log_scales "
                             f"{self.log_scales.shape}, weights_logits {self.weights_logits.shape}")
        self.n_components, dim = components[-2], components[-1]
        if self.weights_logits.shape[-1] != self.n_components:
            raise ValueError(f"MixtureOfGaussians: weights_logits has {self.weights_logits.shape[-1]} "
                             f"components (shape {self.weights_logits.shape}) but means/log_scales have "
                             f"{self.n_components} (shape {components})")
        batch = _broadcast("MixtureOfGaussians", weights_logits=self.weights_logits.shape[:-1],
                           means=components[:-2])
        super().__init__(batch, (dim,))

    def _log_weights(self):
        return log_softmax(self.weights_logits, axis=-1)     # log pi_k

    def log_prob(self, x):
        """log p(x) = logsumexp_k [log pi_k + log N(x | mu_k, diag(sigma_k^2))], x (..., D) -> (...).

        With unbatched parameters (means (K, D)) the component terms come from two GEMMs
        (``_component_log_probs_gemm``) instead of a (..., K, D) array; batched parameters
        and scales whose 1 / sigma^2 overflows use the direct form.
        """
        owner = "MixtureOfGaussians.log_prob"
        x = _value(owner, x, self.means, None)
        if x.ndim < 1 or x.shape[-1] != self.event_shape[0]:
            raise ValueError(f"{owner}: x must have shape (..., {self.event_shape[0]}), got {x.shape}")
        _broadcast(owner, x=x.shape[:-1], batch_shape=self.batch_shape)
        if self.batch_shape == () and not self._inverse_variance_overflows():
            log_px_k = self._component_log_probs_gemm(x)
        else:
            log_px_k = self._component_log_probs_direct(x)
        return logsumexp(self._log_weights() + log_px_k, axis=-1)

    def _component_log_probs_direct(self, x):
        """log N(x | mu_k, sigma_k^2) summed over D, through a (..., K, D) array: (..., K)."""
        components = Normal(self.means, log_scale=self.log_scales)
        return components.log_prob(expand_dims(x, -2)).sum(axis=-1)

    def _inverse_variance_overflows(self):
        """True where 1 / sigma^2 = exp(-2 log sigma) is not representable in the dtype."""
        xp = backend.xp_of(self.log_scales.data)
        return bool((-2 * self.log_scales.data > math.log(float(xp.finfo(self.log_scales.dtype).max))).any())

    def _component_log_probs_gemm(self, x):
        """The same (..., K) terms with the squared Mahalanobis distance as two GEMMs:

            sum_d (x_d - mu_kd)^2 / sigma_kd^2
                = (x^2) @ (1 / sigma^2)^T - 2 x @ (mu / sigma^2)^T + sum_d mu_kd^2 / sigma_kd^2

            log N(x | mu_k, sigma_k^2) = -D/2 log(2 pi) - sum_d log sigma_kd - 1/2 (that sum)

        an (M, K) result from (M, D) rows, never an (M, K, D) array. The expansion cancels:
        three terms of size |x|^2 / sigma^2 add up to a small one, so the absolute rounding
        error grows like eps * sum_d (|x_d|^2 + |mu_kd|^2) / sigma_kd^2. Two guards: x and mu
        are centred on the mean of the K means, c (the distance is unchanged; a constant, so
        the gradient is too), which removes a common offset; and float32 (or float16) inputs
        are expanded in float64 and the distance cast back, which keeps the error at the
        direct form's where the means spread far wider than the scales (means spread 10,
        sigma 0.01: 22 nats off in float32 alone; see tests/test_distributions.py).
        """
        n_components, dim = self.n_components, self.event_shape[0]
        wide = "float64" if self.means.dtype.itemsize < 8 else self.means.dtype
        means = F.astype(broadcast_to(self.means, (n_components, dim)), wide)
        log_scales = broadcast_to(self.log_scales, (n_components, dim))
        centre = _constant(means.data.mean(axis=0))                               # c, (D,)
        mu = means - centre
        inv_var = exp(-2 * F.astype(log_scales, wide))                            # 1 / sigma^2, (K, D)
        rows = (F.astype(x, wide) - centre).reshape(-1, dim)                      # (M, D)
        mahalanobis = (F.matmul(square(rows), inv_var.T) - 2 * F.matmul(rows, (mu * inv_var).T)
                       + (square(mu) * inv_var).sum(axis=-1))                     # (M, K)
        log_norm = -0.5 * dim * _LOG_2PI - log_scales.sum(axis=-1)                # (K,)
        log_px_k = log_norm - 0.5 * F.astype(mahalanobis, x.dtype)
        return log_px_k.reshape(tuple(x.shape[:-1]) + (n_components,))

    @property
    def mean(self):
        pi = softmax(self.weights_logits, axis=-1)
        return broadcast_to(_pick(pi, self.means), self.batch_shape + self.event_shape)

    @property
    def variance(self):
        """Diagonal of the covariance: sum_k pi_k (sigma_k^2 + mu_k^2) - mean^2."""
        pi = softmax(self.weights_logits, axis=-1)
        second_moment = _pick(pi, exp(2 * self.log_scales) + square(self.means))
        return broadcast_to(second_moment - square(self.mean), self.batch_shape + self.event_shape)

    def sample(self, shape=(), rng=None):
        """k ~ Categorical(pi), then x = mu_k + sigma_k * eps; shape ``shape + batch + (D,)``."""
        shape = _shape(shape) + self.batch_shape
        with no_grad():
            k = _gumbel_argmax(self.weights_logits, shape, rng)
            onehot = _one_hot(k, self.n_components, self.means)
            mu = _pick(onehot, self.means)
            sigma = _pick(onehot, exp(self.log_scales))
            return mu + sigma * _standard_normal(rng, shape + self.event_shape, self.means)

    def entropy(self):
        raise NotImplementedError("MixtureOfGaussians.entropy: a Gaussian mixture has no closed-form "
                                  "entropy; estimate it by Monte Carlo, -log_prob(sample(n)).mean(axis=0)")


# ----------------------------------------------------------------------------- discrete

class Bernoulli(Distribution):
    """Bernoulli over x in {0, 1} with p = sigmoid(l), from logits l (stable for any l):

        log p(x) = x l - softplus(l) = -BCE_with_logits(l, x)          (per element)

    ``log_prob`` is elementwise: sum over the pixels yourself. It is also defined (and
    differentiable) for x in [0, 1], as the cross-entropy used with grey-level targets.
    ``probs`` (strictly inside (0, 1)) are turned into logits log p - log(1 - p); pass
    logits whenever you have them. mean = sigmoid(l), variance = sigmoid(l) sigmoid(-l),
    entropy = softplus(-|l|) + |l| sigmoid(-|l|) (two positive terms: no cancellation).
    """

    def __init__(self, logits=None, probs=None):
        if (logits is None) == (probs is None):
            raise ValueError("Bernoulli: pass exactly one of logits, probs "
                             f"(got {'both' if logits is not None else 'none'})")
        if logits is not None:
            self.logits, = _params("Bernoulli", logits=logits)
        else:
            probs, = _params("Bernoulli", probs=probs)
            if not bool(((probs.data > 0) & (probs.data < 1)).all()):
                raise ValueError("Bernoulli: probs must lie strictly between 0 and 1 (got values in "
                                 f"[{float(probs.data.min())}, {float(probs.data.max())}]); pass logits "
                                 "for saturated probabilities")
            self.logits = log(probs) - log1p(-probs)
        super().__init__(self.logits.shape)

    @property
    def probs(self):
        return sigmoid(self.logits)

    @property
    def mean(self):
        return self.probs

    @property
    def variance(self):
        return sigmoid(self.logits) * sigmoid(-self.logits)      # p (1 - p) without 1 - p cancelling

    def log_prob(self, x):
        x = _value("Bernoulli.log_prob", x, self.logits, self.batch_shape)
        return -binary_cross_entropy_with_logits(self.logits, x)

    def sample(self, shape=(), rng=None):
        """x = [u < p], u ~ U(0, 1); 0.0/1.0 in the logits' dtype."""
        shape = _shape(shape) + self.batch_shape
        # u stays in float64: rounded to float32 it could become 1.0 and turn p = 1 into a 0
        u = backend.to_device(_open_uniform(rng, shape), self.logits.device)
        with no_grad():
            p = self.probs.data
        return _constant((u < p).astype(self.logits.dtype))

    def entropy(self):
        """H = -p log p - (1 - p) log(1 - p) = softplus(-|l|) + |l| sigmoid(-|l|), per element."""
        magnitude = F.abs(self.logits)
        return softplus(-magnitude) + magnitude * sigmoid(-magnitude)


class Categorical(Distribution):
    """Categorical over classes 0..K-1 of the last axis of ``logits`` (..., K):

        log p(x = k) = log_softmax(logits)_k = logits_k - logsumexp(logits)

    ``log_prob(k)`` takes integer class indices of any shape that broadcasts against the
    batch shape ``logits.shape[:-1]`` and returns one value per index. ``entropy`` and
    kl_divergence sum over the K classes. ``mean``/``variance`` are those of the class
    index, meaningful when the classes are ordered (e.g. 256 pixel intensities).
    Sampling uses the Gumbel-max trick and returns int64 indices. Logits must be finite
    (a -inf logit makes the entropy 0 * -inf = nan).
    """

    def __init__(self, logits):
        self.logits, = _params("Categorical", logits=logits)
        if self.logits.ndim < 1 or self.logits.shape[-1] == 0:
            raise ValueError("Categorical: logits must have shape (..., K) with K >= 1, "
                             f"got {self.logits.shape}")
        self.n_classes = self.logits.shape[-1]
        super().__init__(self.logits.shape[:-1])

    @property
    def probs(self):
        return softmax(self.logits, axis=-1)

    def _class_indices(self):
        xp = backend.xp_of(self.logits.data)
        return Tensor(xp.arange(self.n_classes, dtype=self.logits.dtype))

    @property
    def mean(self):
        """E[k] = sum_k k p_k."""
        return (self.probs * self._class_indices()).sum(axis=-1)

    @property
    def variance(self):
        """E[k^2] - E[k]^2."""
        k = self._class_indices()
        return (self.probs * square(k)).sum(axis=-1) - square(self.mean)

    def log_prob(self, x):
        owner = "Categorical.log_prob"
        k = x.data if isinstance(x, Tensor) else backend.as_array(x, device=self.logits.device)
        if k.dtype.kind not in "iu":
            raise TypeError(f"{owner}: values must be integer class indices, got dtype {k.dtype}; "
                            "cast with .astype('int64') if they are whole numbers")
        if k.size and not bool(((k >= 0) & (k < self.n_classes)).all()):
            raise ValueError(f"{owner}: class indices must lie in [0, {self.n_classes}), got values in "
                             f"[{int(k.min())}, {int(k.max())}]")
        shape = _broadcast(owner, x=k.shape, batch_shape=self.batch_shape)
        xp = backend.xp_of(self.logits.data)
        k = xp.broadcast_to(backend.to_device(k, self.logits.device), shape).reshape(-1)
        log_p = log_softmax(self.logits, axis=-1)
        log_p = broadcast_to(log_p, shape + (self.n_classes,)).reshape(-1, self.n_classes)
        return log_p[xp.arange(k.size), k].reshape(shape)       # log_softmax gathered at k

    def sample(self, shape=(), rng=None):
        k = _gumbel_argmax(self.logits, _shape(shape) + self.batch_shape, rng)
        return _constant(k.astype("int64", copy=False))

    def entropy(self):
        """H = -sum_k p_k log p_k, one value per distribution of the batch."""
        log_p = log_softmax(self.logits, axis=-1)
        return -(exp(log_p) * log_p).sum(axis=-1)


# ----------------------------------------------------------------------------- discretised logistics

def _log1mexp_of_width(width, log_scale):
    """log(1 - exp(-t)) with t = width / s given as log t = log(width) - log s.

    Where t underflows (a logistic much wider than a bin), log(1 - e^-t) = log t - t/2 +
    O(t^2) is taken from log t itself, so the mass stays log(width / s) + ... instead of
    log(0); where t overflows (much narrower), it is 0. The two branches meet at t = 1e-8, where the series error t^2/24 is below
    float64's resolution; each branch is fed only values it can take (no inf in the graph)."""
    log_t = math.log(width) - log_scale
    small = log_t.data < math.log(1e-8)
    if not bool(small.any() | (log_t.data > 50).any()):     # the usual case
        return log1mexp(-exp(log_t))
    t = exp(minimum(where(small, 0, log_t), 50.0))   # e^-t is 0 beyond t = e^50: no t = inf in the graph
    series = where(small, log_t, 0) - 0.5 * exp(where(small, log_t, 0)) * _constant(small.astype(log_t.dtype))
    return where(small, series, log1mexp(-t))


def _log_bin_mass(x, mu, log_scale, half_width, low, high):
    """log P(x) of a logistic(mu, s = exp(log_scale)) integrated over the bin [x - h, x + h],
    the lowest bin extended to -inf and the highest to +inf (Salimans et al. 2017, eq. 2).

    With a = (x - h - mu) / s and b = (x + h - mu) / s:

        interior   log[sigmoid(b) - sigmoid(a)] = log_sigmoid(b) - softplus(a) + log1mexp(a - b)
        lowest     log sigmoid(b)
        highest    log[1 - sigmoid(a)] = log_sigmoid(-a)

    The interior identity follows from sigmoid(b) - sigmoid(a) = (e^b - e^a) / ((1 + e^a)(1 + e^b)).
    Its three terms are each computed stably and are all <= 0, so they cannot cancel, and
    a - b = -2h/s is formed directly. The mass is therefore exact in log space even where
    it underflows in linear space; the PixelCNN++ code computes sigmoid(b) - sigmoid(a) in
    linear space and, where it is below 1e-5, falls back to the mid-point density
    pdf(x) 2h: that fallback (and the jump of its threshold) is not needed here.
    """
    centred = x - mu
    a = _scaled(centred - half_width, log_scale)
    b = _scaled(centred + half_width, log_scale)
    interior = log_sigmoid(b) - softplus(a) + _log1mexp_of_width(2 * half_width, log_scale)
    lowest = log_sigmoid(b)
    highest = log_sigmoid(-a)
    # the edge bins are chosen by which level x is (a constant mask: x is data, not a parameter)
    at_low = _constant(x.data < low + half_width)
    at_high = _constant(x.data > high - half_width)
    return where(at_low, lowest, where(at_high, highest, interior))


class _Discretized(Distribution):
    """Shared by the discretised logistics: ``n_bins`` levels low, low + 2h, ..., high
    with h = (high - low) / (2 (n_bins - 1)); mean, variance and entropy are exact sums
    over the levels, from ``bin_log_probs`` (batch_shape + (n_bins,))."""

    def _check_bins(self, owner, n_bins, low, high):
        if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 2:
            raise ValueError(f"{owner}: n_bins must be an integer >= 2, got {n_bins!r}")
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise ValueError(f"{owner}: need finite low < high, got low={low}, high={high}")
        self.n_bins, self.low, self.high = n_bins, float(low), float(high)
        self.half_width = (self.high - self.low) / (2 * (n_bins - 1))

    def bin_centres(self, like):
        """The n_bins levels as a constant Tensor in ``like``'s dtype and device."""
        xp = backend.xp_of(like.data)
        levels = self.low + 2 * self.half_width * xp.arange(self.n_bins, dtype="float64")
        return Tensor(levels.astype(like.dtype))

    def _snap(self, y):
        """Continuous draws y (an array) to the nearest level, clipped into [low, high]:
        exactly the bins of ``log_prob``, edge bins extended to +-inf."""
        xp = backend.xp_of(y)
        k = xp.clip(xp.rint((y - self.low) / (2 * self.half_width)), 0, self.n_bins - 1)
        return (self.low + 2 * self.half_width * k).astype(y.dtype, copy=False)

    def bin_log_probs(self):
        raise NotImplementedError

    @property
    def mean(self):
        """sum_i c_i P(c_i) over the levels c_i (not mu: the edge bins clip the tails)."""
        centres = self.bin_centres(self._like())
        return (exp(self.bin_log_probs()) * centres).sum(axis=-1)

    @property
    def variance(self):
        centres = self.bin_centres(self._like())
        return (exp(self.bin_log_probs()) * square(centres)).sum(axis=-1) - square(self.mean)

    def entropy(self):
        """H = -sum_i P(c_i) log P(c_i) over the n_bins levels (exact; 0 log 0 = 0), per element."""
        return _entropy_terms(self.bin_log_probs()).sum(axis=-1)


class DiscretizedLogistic(_Discretized):
    """Discretised logistic for pixels on ``n_bins`` levels scaled to [low, high]
    (Salimans et al. 2017, PixelCNN++, eq. 2; with the defaults, 8-bit pixels in [-1, 1]):

        P(x) = sigmoid((x + h - mu) / s) - sigmoid((x - h - mu) / s),   s = exp(log_scale)

    with half-bin h = (high - low) / (2 (n_bins - 1)) (1/255 for 256 levels on [-1, 1]) and
    the two edge bins extended to -inf and +inf, so the n_bins masses sum to 1. Computed in
    log space (see ``_log_bin_mass``). ``log_prob`` is elementwise (per sub-pixel) and
    differentiable in mean and log_scale; x is expected on the levels. Exact for any scale
    whose 1/s is finite in the dtype; the PixelCNN++ code also clamps log_scale >= -7, which
    is the model's choice, not done here.
    """

    def __init__(self, mean, log_scale, n_bins=256, low=-1.0, high=1.0):
        self._check_bins("DiscretizedLogistic", n_bins, low, high)
        self.mu, self.log_scale = _params("DiscretizedLogistic", mean=mean, log_scale=log_scale)
        super().__init__(_broadcast("DiscretizedLogistic", mean=self.mu.shape, log_scale=self.log_scale.shape))

    def _like(self):
        return self.mu

    def log_prob(self, x):
        x = _value("DiscretizedLogistic.log_prob", x, self.mu, self.batch_shape)
        return _log_bin_mass(x, self.mu, self.log_scale, self.half_width, self.low, self.high)

    def bin_log_probs(self):
        """log P of every level, shape batch_shape + (n_bins,) (they logsumexp to 0)."""
        mu = expand_dims(broadcast_to(self.mu, self.batch_shape), -1)
        log_scale = expand_dims(broadcast_to(self.log_scale, self.batch_shape), -1)
        centres = self.bin_centres(self.mu)
        return _log_bin_mass(centres, mu, log_scale, self.half_width, self.low, self.high)

    def sample(self, shape=(), rng=None):
        """y = mu + s L, L ~ Logistic(0, 1), snapped to its level."""
        shape = _shape(shape) + self.batch_shape
        noise = _standard_logistic(rng, shape, self.mu)
        with no_grad():
            y = (self.mu + exp(self.log_scale) * _constant(noise)).data
        return _constant(self._snap(y))


class DiscretizedLogisticMixture(_Discretized):
    """Mixture of K discretised logistics per sub-pixel (Salimans et al. 2017, PixelCNN++):

        log P(x) = logsumexp_k [ log pi_k + log P_k(x) ],   pi = softmax(logit_probs)

    with P_k the DiscretizedLogistic(means_k, log_scales_k) bin mass. The K components lie
    on the last axis of logit_probs, means and log_scales (..., K), which broadcast;
    ``log_prob(x)`` takes x of the batch shape (...) and returns one value per sub-pixel.
    Limitation: no coupling between colour channels; PixelCNN++'s linear dependence of the
    green and blue means on the red (and green) value belongs to the model, which passes the
    resulting means here.
    """

    def __init__(self, logit_probs, means, log_scales, n_bins=256, low=-1.0, high=1.0):
        self._check_bins("DiscretizedLogisticMixture", n_bins, low, high)
        self.logit_probs, self.means, self.log_scales = _params(
            "DiscretizedLogisticMixture", logit_probs=logit_probs, means=means, log_scales=log_scales)
        shape = _broadcast("DiscretizedLogisticMixture", logit_probs=self.logit_probs.shape,
                           means=self.means.shape, log_scales=self.log_scales.shape)
        if len(shape) < 1 or shape[-1] == 0:
            raise ValueError("DiscretizedLogisticMixture: logit_probs, means and log_scales need a last "
                             f"axis of K >= 1 components, got broadcast shape {shape}")
        self.n_components = shape[-1]
        super().__init__(shape[:-1])

    def _like(self):
        return self.means

    def _log_weights(self):
        return log_softmax(self.logit_probs, axis=-1)       # log pi_k

    def log_prob(self, x):
        x = _value("DiscretizedLogisticMixture.log_prob", x, self.means, self.batch_shape)
        log_px_k = _log_bin_mass(expand_dims(x, -1), self.means, self.log_scales,
                                 self.half_width, self.low, self.high)
        return logsumexp(self._log_weights() + log_px_k, axis=-1)

    def bin_log_probs(self):
        """log P of every level, shape batch_shape + (n_bins,) (they logsumexp to 0)."""
        component_shape = self.batch_shape + (self.n_components, 1)
        means = broadcast_to(expand_dims(self.means, -1), component_shape)
        log_scales = broadcast_to(expand_dims(self.log_scales, -1), component_shape)
        centres = self.bin_centres(self.means)
        log_px_k = _log_bin_mass(centres, means, log_scales, self.half_width, self.low, self.high)
        return logsumexp(expand_dims(self._log_weights(), -1) + log_px_k, axis=-2)

    def sample(self, shape=(), rng=None):
        """k ~ Categorical(pi), y = mu_k + s_k L, L ~ Logistic(0, 1), snapped to its level."""
        shape = _shape(shape) + self.batch_shape
        with no_grad():
            k = _gumbel_argmax(self.logit_probs, shape, rng)
            onehot = _one_hot(k, self.n_components, self.means)
            mu = (onehot * self.means).sum(axis=-1)
            s = (onehot * exp(self.log_scales)).sum(axis=-1)
            y = (mu + s * _constant(_standard_logistic(rng, shape, self.means))).data
        return _constant(self._snap(y))


# ----------------------------------------------------------------------------- KL divergence

def _kl_normal_normal(p, q):
    """log(s_q / s_p) + (s_p^2 + (m_p - m_q)^2) / (2 s_q^2) - 1/2, from log-scales."""
    var_ratio = exp(2 * (p.log_scale - q.log_scale))               # s_p^2 / s_q^2
    mahalanobis = square(q._standardised(p.mu - q.mu))             # (m_p - m_q)^2 / s_q^2
    return (q.log_scale - p.log_scale) + 0.5 * (var_ratio + mahalanobis) - 0.5


def _kl_bernoulli_bernoulli(p, q):
    """p (log p - log q) + (1 - p)(log(1 - p) - log(1 - q)) with p = sigmoid(l_p),
    1 - p = sigmoid(-l_p) and every log a log_sigmoid: finite for any logits, and no large
    terms that cancel (the shorter sigmoid(l_p)(l_p - l_q) + softplus(l_q) - softplus(l_p)
    computes KL(l_p = 1000 || l_q = 0) = log 2 as 1000.69 - 1000, losing float32's digits)."""
    l_p, l_q = p.logits, q.logits
    return (sigmoid(l_p) * (log_sigmoid(l_p) - log_sigmoid(l_q))
            + sigmoid(-l_p) * (log_sigmoid(-l_p) - log_sigmoid(-l_q)))


def _kl_categorical_categorical(p, q):
    """sum_k p_k (log p_k - log q_k) over the classes."""
    if p.n_classes != q.n_classes:
        raise ValueError(f"kl_divergence: Categorical distributions over {p.n_classes} and "
                         f"{q.n_classes} classes")
    log_p = log_softmax(p.logits, axis=-1)
    log_q = log_softmax(q.logits, axis=-1)
    return (exp(log_p) * (log_p - log_q)).sum(axis=-1)


_KL_RULES = (
    (Normal, Normal, _kl_normal_normal),
    (Bernoulli, Bernoulli, _kl_bernoulli_bernoulli),
    (Categorical, Categorical, _kl_categorical_categorical),
)


def kl_divergence(p, q):
    """KL(p || q) = E_p[log p(x) - log q(x)] in closed form, over the broadcast batch shape.

        Normal-Normal            log(s_q / s_p) + (s_p^2 + (m_p - m_q)^2) / (2 s_q^2) - 1/2
                                 per element: sum over the last axis for diagonal Gaussians
        Bernoulli-Bernoulli      p (log p - log q) + (1 - p)(log(1 - p) - log(1 - q)),
                                 per element, from log_sigmoid: stable for any logits
        Categorical-Categorical  sum_k p_k (log p_k - log q_k), one value per distribution

    Other pairs raise NotImplementedError: estimate those by Monte Carlo,
    ``(p.log_prob(z) - q.log_prob(z)).mean(axis=0)`` with ``z = p.sample(n)``.
    """
    for p_type, q_type, rule in _KL_RULES:
        if isinstance(p, p_type) and isinstance(q, q_type):
            _broadcast("kl_divergence", p=p.batch_shape, q=q.batch_shape)
            return rule(p, q)
    raise NotImplementedError(
        f"kl_divergence: no closed form for the pair ({type(p).__name__}, {type(q).__name__}); "
        "closed forms exist for Normal-Normal, Bernoulli-Bernoulli and Categorical-Categorical. "
        "Estimate it by Monte Carlo: (p.log_prob(z) - q.log_prob(z)).mean(axis=0), z = p.sample(n)")
