"""Coupling layers: NICE's additive coupling with its diagonal scaling layer (Dinh et al.
2015) and RealNVP's affine coupling (Dinh et al. 2017), with their masks.

intro lecture part II, "Change of variable formula for invertible function", eq. 40-41
("Properties: Efficient inversion") and "Implementation" (the masks); isachenko-l07, "RealNVP:
Affine coupling law":

    z_1:d = x_1:d,   z_d:m = tau(x_d:m, c(x_1:d))   <=>   x_1:d = z_1:d,   x_d:m = tau^{-1}(z_d:m, c(z_1:d))

A binary mask b splits x into the part that passes through, b * x (x_1:d), and the part
that is transformed, (1 - b) * x (x_d:m):

    NICE, additive (Dinh et al. 2015, eq. 5 with g(a; m) = a + m):
        z = b * x + (1 - b) * (x + t(b * x)),                     log|det dz/dx| = 0
    NICE, diagonal scaling layer (sec. 3.3):
        z = exp(s) * x,                                           log|det dz/dx| = sum s
    RealNVP, affine (Dinh et al. 2017, eq. 9):
        z = b * x + (1 - b) * (x * exp(s(b * x)) + t(b * x)),     log|det dz/dx| = sum (1 - b) * s(b * x)

The Jacobian is triangular after the permutation that puts x1 first, so these are exact.
The inverse is as cheap as the forward pass (b * z = b * x, so s and t are recomputed):

        x = b * z + (1 - b) * (z - t(b * z)) * exp(-s(b * z))

The conditioners (s, t) are the networks of ``tinydgm.nn.conditioners`` (``MLPConditioner`` for
vectors, ``CNNConditioner`` for images), which return ``(shift, log_scale)`` = (t, s) with
the same shape as x and start at zero: every coupling starts as the identity.

Masks (constants, drawn for a 4 x 4 image / 4-vector; 1 = passes through):

    checkerboard (b_ij = (i + j + 1) mod 2)   channel-wise (C = 4)      halves (D = 4)
        1 0 1 0                               channels 0, 1: all 1      1 1 0 0
        0 1 0 1                               channels 2, 3: all 0
        1 0 1 0
        0 1 0 1
    ``flip=True`` swaps the roles (b -> 1 - b), so alternating layers transform every entry.
"""
from tinydgm import backend
from tinydgm.autodiff.core import Tensor
from tinydgm.autodiff.elementwise import exp
from tinydgm.models.flows.base import Transform, sum_per_example
from tinydgm.nn import init
from tinydgm.nn.module import Parameter

__all__ = ["checkerboard_mask", "channel_mask", "half_mask", "AdditiveCoupling", "AffineCoupling", "Scaling"]


# ----------------------------------------------------------------------------- masks

def _xp(device):
    return backend.module_for_device(device or "cpu")


def checkerboard_mask(shape, flip=False, dtype=None, device=None):
    """(C, H, W) mask with b[c, i, j] = (i + j + 1) mod 2 (1 on the top-left pixel); flipped: 1 - b."""
    if len(shape) != 3:
        raise ValueError(f"checkerboard_mask: shape must be (C, H, W), got {tuple(shape)}")
    xp = _xp(device)
    c, h, w = shape
    i, j = xp.arange(h)[:, None], xp.arange(w)[None, :]
    b = ((i + j + int(not flip)) % 2).astype(dtype or backend.get_default_dtype())
    return xp.broadcast_to(b, (c, h, w)).copy()


def channel_mask(shape, flip=False, dtype=None, device=None):
    """(C, H, W) mask: 1 on the first C/2 channels (the last C/2 with ``flip``). C must be even."""
    if len(shape) != 3 or shape[0] % 2:
        raise ValueError(f"channel_mask: shape must be (C, H, W) with C even, got {tuple(shape)}")
    xp = _xp(device)
    b = xp.zeros(tuple(shape), dtype=dtype or backend.get_default_dtype())
    half = shape[0] // 2
    if flip:
        b[half:] = 1
    else:
        b[:half] = 1
    return b


def half_mask(d, flip=False, dtype=None, device=None):
    """(D,) mask: 1 on the first ceil(D/2) entries (the others with ``flip``)."""
    if isinstance(d, bool) or not isinstance(d, int) or d < 2:
        raise ValueError(f"half_mask: d must be an int >= 2 (something must pass through and something "
                         f"be transformed), got {d!r}")
    xp = _xp(device)
    b = xp.zeros((d,), dtype=dtype or backend.get_default_dtype())
    b[:(d + 1) // 2] = 1
    return 1 - b if flip else b


# ----------------------------------------------------------------------------- couplings

class _Coupling(Transform):
    """Shared: the constant mask b (a buffer, broadcast over the batch) and the conditioner."""

    def __init__(self, mask, conditioner):
        super().__init__()
        mask = backend.as_array(mask)
        if not bool(((mask == 0) | (mask == 1)).all()):
            raise ValueError(f"{type(self).__name__}: mask must contain only 0 and 1")
        if bool((mask == 1).all()) or bool((mask == 0).all()):
            raise ValueError(f"{type(self).__name__}: mask must have both 0s and 1s, got all "
                             f"{int(mask.reshape(-1)[0])}s (the layer would be the identity or not invertible)")
        self.register_buffer("mask", mask)
        self.conditioner = conditioner

    def _masks(self, x):
        """b and 1 - b as constant Tensors in x's dtype (computed once per dtype and device)."""
        if tuple(x.shape[1:]) != tuple(self.mask.shape):
            raise ValueError(f"{type(self).__name__}: input must have shape (N, {', '.join(map(str, self.mask.shape))}) "
                             f"to match the mask, got {tuple(x.shape)}")
        key = (x.dtype, backend.device_of(x.data), id(self.mask))
        cache = self.__dict__.get("_mask_cache")
        if cache is None or cache[0] != key:
            b = self.mask.astype(x.dtype)
            if backend.device_of(b) != backend.device_of(x.data):
                b = backend.to_device(b, backend.device_of(x.data))
            cache = (key, Tensor(b), Tensor(1 - b))
            object.__setattr__(self, "_mask_cache", cache)
        return cache[1], cache[2]

    def extra_repr(self):
        return f"mask shape {tuple(self.mask.shape)}"


class AdditiveCoupling(_Coupling):
    """NICE additive coupling (Dinh et al. 2015, eq. 5-6; isachenko-l07, "RealNVP: Affine coupling law"
    with an additive tau):

        z = b * x + (1 - b) * (x + t(b * x)),    log|det dz/dx| = 0 (volume preserving)
        x = b * z + (1 - b) * (z - t(b * z))

    ``conditioner`` maps b * x to (t, _) (an ``MLPConditioner``/``CNNConditioner``; its
    log-scale output is ignored) or to t alone. Put a ``Scaling`` layer at the end of a
    NICE flow so that it can change volume.
    """

    def _shift(self, x_b):
        out = self.conditioner(x_b)
        return out[0] if isinstance(out, tuple) else out

    def forward(self, x):
        b, b_c = self._masks(x)
        x_b = x * b
        t = self._shift(x_b)
        z = x_b + b_c * (x + t)
        return z, _zeros(x)

    def inverse(self, z):
        b, b_c = self._masks(z)
        z_b = z * b
        t = self._shift(z_b)
        x = z_b + b_c * (z - t)
        return x, _zeros(z)


class AffineCoupling(_Coupling):
    """RealNVP affine coupling (Dinh et al. 2017, eq. 6-9; intro lecture eq. 40-41;
    isachenko-l07, "RealNVP: Affine coupling law"):

        (t, s) = conditioner(b * x)
        z = b * x + (1 - b) * (x * exp(s) + t),          log|det dz/dx| = sum (1 - b) * s
        x = b * z + (1 - b) * (z - t) * exp(-s),         (t, s) = conditioner(b * z)

    ``conditioner`` returns (shift t, log-scale s) shaped like x (``MLPConditioner(D, D)``
    or ``CNNConditioner(C, C)``; zero-initialised last layer: identity at the start).
    """

    def forward(self, x):
        b, b_c = self._masks(x)
        x_b = x * b
        t, s = self.conditioner(x_b)
        s = s * b_c                                     # only x2 is scaled
        z = x_b + b_c * (x * exp(s) + t)
        return z, sum_per_example(s)

    def inverse(self, z):
        b, b_c = self._masks(z)
        z_b = z * b
        t, s = self.conditioner(z_b)
        s = s * b_c
        x = z_b + b_c * (z - t) * exp(-s)
        return x, -sum_per_example(s)


def _zeros(x):
    return Tensor(backend.xp_of(x.data).zeros((x.shape[0],), dtype=x.dtype))


class Scaling(Transform):
    """NICE's diagonal scaling layer (Dinh et al. 2015, sec. 3.3), the last layer of NICE:

        z = exp(s) * x,   log|det dz/dx| = sum_i s_i        (s of shape ``event_shape``, init 0)

    It lets the otherwise volume-preserving NICE weigh its latent dimensions (a large s_i
    marks an unimportant direction, in the paper's words)."""

    def __init__(self, event_shape, dtype=None, device=None):
        super().__init__()
        self.event_shape = tuple(event_shape)
        self.log_scale = Parameter(init.zeros(self.event_shape, dtype, device))

    def _check(self, x):
        if tuple(x.shape[1:]) != self.event_shape:
            raise ValueError(f"Scaling: input must have shape (N, {', '.join(map(str, self.event_shape))}), "
                             f"got {tuple(x.shape)}")

    def forward(self, x):
        self._check(x)
        s = self.log_scale
        return x * exp(s), _broadcast_sum(s, x)

    def inverse(self, z):
        self._check(z)
        s = self.log_scale
        return z * exp(-s), -_broadcast_sum(s, z)

    def extra_repr(self):
        return f"event_shape={self.event_shape}"


def _broadcast_sum(s, x):
    return s.sum().broadcast_to((x.shape[0],))
