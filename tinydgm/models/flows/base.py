"""The flow API: invertible transforms with log-determinants, and the flow density they
define by the change-of-variables formula (intro lecture part II, "Normalizing flows" and
"Change of variable formula for invertible function"; kuleshov-l12, "Autoregressive flows";
Rezende & Mohamed 2015, eq. 1-3).

A ``Transform`` maps data x to latents z and back:

    forward(x) -> (z, log_det)     log_det = log |det dz/dx|       per example, shape (N,)
    inverse(z) -> (x, log_det)     log_det = log |det dx/dz|       = -forward's log_det at x

so that composing transforms adds their log-dets, and a ``Flow`` with base density p_Z has

    log p_X(x) = log p_Z(f(x)) + log |det df/dx|                    (change of variables)

and samples x = f^{-1}(z), z ~ p_Z. ``brute_force_log_det`` computes log |det J| from the
engine's Jacobian: the oracle every transform here is tested against, and the one a user
can point at their own flow.
"""
from tinydgm import backend
from tinydgm.autodiff.core import Tensor, no_grad
from tinydgm.autodiff.gradcheck import jacobian
from tinydgm.distributions import StandardNormal
from tinydgm.evaluate import bits_per_dim as _bits_per_dim
from tinydgm.nn.module import Module, ModuleList

__all__ = ["Transform", "Compose", "Inverse", "Flow", "brute_force_log_det", "sum_per_example"]


def sum_per_example(t):
    """Sum a (N, ...) tensor over every axis but the first: one value per example."""
    return t.reshape(t.shape[0], -1).sum(axis=1)


class Transform(Module):
    """An invertible map x -> z. Subclasses implement ``forward(x) -> (z, log_det)`` and
    ``inverse(z) -> (x, log_det)``, log_det of shape (N,) (the log |det| of the map that
    was applied, so ``inverse`` returns minus the forward log-det at the result)."""

    def forward(self, x):
        raise NotImplementedError(f"{type(self).__name__}.forward")

    def inverse(self, z):
        raise NotImplementedError(f"{type(self).__name__}.inverse")


class Compose(Transform):
    """f = f_K o ... o f_1: forward applies the transforms in order and adds their log-dets
    (the chain rule for determinants); inverse undoes them in reverse order."""

    def __init__(self, transforms):
        super().__init__()
        transforms = list(transforms)
        for i, t in enumerate(transforms):
            if not isinstance(t, Transform):
                raise TypeError(f"Compose: transforms[{i}] must be a Transform, got {type(t).__name__}")
        self.transforms = ModuleList(transforms)

    def forward(self, x):
        total = 0
        for t in self.transforms:
            x, log_det = t(x)
            total = total + log_det
        return x, _as_per_example(total, x)

    def inverse(self, z):
        total = 0
        for t in reversed(list(self.transforms)):
            z, log_det = t.inverse(z)
            total = total + log_det
        return z, _as_per_example(total, z)


class Inverse(Transform):
    """The inverse of a transform, as a transform: swaps forward and inverse. IAF is an
    inverse autoregressive transform in this sense (one-pass sampling, sequential density)."""

    def __init__(self, transform):
        super().__init__()
        if not isinstance(transform, Transform):
            raise TypeError(f"Inverse: expected a Transform, got {type(transform).__name__}")
        self.transform = transform

    def forward(self, x):
        return self.transform.inverse(x)

    def inverse(self, z):
        return self.transform(z)


def _as_per_example(total, x):
    """An empty Compose adds nothing: turn the Python 0 into zeros of shape (N,)."""
    if isinstance(total, Tensor):
        return total
    xp = backend.xp_of(x.data)
    return Tensor(xp.zeros((x.shape[0],), dtype=x.dtype))


class Flow(Module):
    """A normalizing flow: base density p_Z (default N(0, I)) and a transform f: x -> z.

        log p(x) = sum_i log p_Z(z_i) + log |det df/dx|,   z = f(x)
        sample:    z ~ p_Z,  x = f^{-1}(z)

    ``event_shape`` is the shape of one example (e.g. (2,) or (1, 28, 28)); the base is
    evaluated elementwise and summed over it. ``loss`` is the mean negative log-likelihood.
    """

    def __init__(self, transform, event_shape, base=None):
        super().__init__()
        if isinstance(transform, (list, tuple)):
            transform = Compose(transform)
        if not isinstance(transform, Transform):
            raise TypeError(f"Flow: transform must be a Transform or a list of them, got {type(transform).__name__}")
        self.transform = transform
        self.event_shape = tuple(event_shape)
        self.base = base

    def extra_repr(self):
        return f"event_shape={self.event_shape}"

    def _base(self, like):
        if self.base is not None:
            return self.base
        return StandardNormal(self.event_shape, dtype=like.dtype, device=backend.device_of(like.data))

    def _check(self, x, who):
        if not isinstance(x, Tensor):
            x = Tensor(x)
        if tuple(x.shape[1:]) != self.event_shape:
            raise ValueError(f"Flow.{who}: x must have shape (N, {', '.join(map(str, self.event_shape))}), "
                             f"got {tuple(x.shape)}")
        return x

    def forward(self, x):
        """z = f(x) and log |det df/dx|."""
        return self.transform(self._check(x, "forward"))

    def log_prob(self, x):
        """log p(x) in nats, shape (N,), by the change-of-variables formula."""
        x = self._check(x, "log_prob")
        z, log_det = self.transform(x)
        return sum_per_example(self._base(z).log_prob(z)) + log_det

    def bits_per_dim(self, x):
        """-log p(x) / (D ln 2) with D the number of entries of one example (for dequantized
        images, add the dequantization and pre-processing terms: see dequantization.py)."""
        d = 1
        for s in self.event_shape:
            d *= s
        return _bits_per_dim(-self.log_prob(x), d)

    def loss(self, x):
        """Mean negative log-likelihood of the batch."""
        return -self.log_prob(x).mean()

    def sample(self, n, rng=None, dtype=None, device=None):
        """n draws x = f^{-1}(z), z ~ p_Z, as a Tensor of shape (n, *event_shape) (no graph), in
        the parameters' dtype and on their device unless ``dtype`` / ``device`` say otherwise."""
        dtype = dtype or self._param_dtype()
        device = device or self._param_device()
        base = self.base or StandardNormal(self.event_shape, dtype=dtype, device=device)
        with no_grad():
            z = base.rsample((n,), rng=rng)
            x, _ = self.transform.inverse(z)
        return x

    def _param_dtype(self):
        for p in self.parameters():
            return p.dtype
        return backend.get_default_dtype()

    def _param_device(self):
        for p in self.parameters():
            return p.device
        return "cpu"


def brute_force_log_det(fn, x):
    """log |det J| per example from the engine's full Jacobian of ``fn`` at the batch x.

    fn maps (N, *shape) -> (N, *shape) one example at a time (no coupling between
    examples); it may return a tuple (then its first element is used). O(N D^2) memory and
    D backward passes per example: for checking small transforms, not for training.
    """
    x = x if isinstance(x, Tensor) else Tensor(x)
    n = x.shape[0]
    d = x.size // n if n else 0

    def flat(t):
        y = fn(t)
        y = y[0] if isinstance(y, tuple) else y
        return y.reshape(n, -1)

    jac = jacobian(flat, Tensor(x.data, requires_grad=True))          # (N, D, N, *shape)
    xp = backend.xp_of(jac)
    jac = jac.reshape(n, d, n, d)
    blocks = xp.stack([jac[k, :, k, :] for k in range(n)])             # (N, D, D)
    _, logabsdet = xp.linalg.slogdet(blocks)
    return logabsdet
