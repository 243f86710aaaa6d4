"""Image flow layers: squeeze, the multi-scale architecture with factored-out latents,
batch norm / act-norm as transforms, and Glow's invertible 1x1 convolution.

intro lecture part II, "Implementation" (squeeze, factor out half of the latents) and
"Illustration multi-scale feature hierarchy"; Dinh et al. 2017 ("Density
estimation using Real NVP"), sec. 3.6 (squeeze, multi-scale) and 3.7 (batch norm);
Kingma & Dhariwal 2018 (Glow), sec. 3.1-3.2 (act-norm, invertible 1x1 convolution).
Images are (N, C, H, W).
"""
from tinydgm import backend
from tinydgm.autodiff.core import Tensor, no_grad
from tinydgm.autodiff.elementwise import exp
from tinydgm.autodiff.shape import concatenate, split
from tinydgm.models.flows.base import Transform
from tinydgm.nn import init
from tinydgm.nn.module import ModuleList, Parameter
from tinydgm.nn.norm import ActNorm, BatchNorm

__all__ = ["Squeeze", "MultiScale", "BatchNormTransform", "ActNormTransform", "InvertibleConv1x1"]


def _check_image(x, who):
    if x.ndim != 4:
        raise ValueError(f"{who}: input must have 4 dimensions (N, C, H, W), got shape {tuple(x.shape)}")


def _zeros(x):
    return Tensor(backend.xp_of(x.data).zeros((x.shape[0],), dtype=x.dtype))


# ----------------------------------------------------------------------------- squeeze

class Squeeze(Transform):
    """Squeeze (Dinh et al. 2017, sec. 3.6, fig. 3): each 2 x 2 x c block becomes a 1 x 1 x 4c
    pixel, (N, C, 2n, 2n) -> (N, 4C, n, n); channel 4c' + 2i + j of the output holds
    position (i, j) of the 2 x 2 block of input channel c'. A permutation: log_det = 0,
    the inverse is exact."""

    def forward(self, x):
        _check_image(x, "Squeeze")
        n, c, h, w = x.shape
        if h % 2 or w % 2:
            raise ValueError(f"Squeeze: height and width must be even, got shape {tuple(x.shape)}")
        z = x.reshape(n, c, h // 2, 2, w // 2, 2).transpose(0, 1, 3, 5, 2, 4).reshape(n, 4 * c, h // 2, w // 2)
        return z, _zeros(x)

    def inverse(self, z):
        _check_image(z, "Squeeze.inverse")
        n, c4, h, w = z.shape
        if c4 % 4:
            raise ValueError(f"Squeeze.inverse: channels must be a multiple of 4, got shape {tuple(z.shape)}")
        c = c4 // 4
        x = z.reshape(n, c, 2, 2, h, w).transpose(0, 1, 4, 2, 5, 3).reshape(n, c, 2 * h, 2 * w)
        return x, _zeros(z)


# ----------------------------------------------------------------------------- multi-scale

class MultiScale(Transform):
    """The multi-scale architecture of Real NVP (Dinh et al. 2017, sec. 3.6, eq. 15-17):

        h^(0) = x
        (z^(k), h^(k)) = factor_out(f^(k)(h^(k-1)))      k = 1..K   (each f^(k) ends with a Squeeze)
        z^(K+1) = f^(K+1)(h^(K))                                    (the final block)
        z = (z^(1), ..., z^(K+1))

    factor_out splits the channels in half: z^(k) (the first half) is kept as a latent and
    only h^(k) (the second half) goes on to the next scale, so later scales work on fewer,
    coarser variables. The transform returns all latents PACKED into one tensor of x's shape
    (each z^(k) flattened, concatenated, reshaped to (N, C, H, W)): a fixed permutation of
    the entries, log_det 0, so a ``Flow`` over x's event shape sums the base density over
    every factored-out latent, log p(x) = sum_k log N(z^(k); 0, I) + sum_k log_det_k.
    ``latents(x)`` returns the list [z^(1), ..., z^(K+1)] with their own shapes.

    ``scales``: K transforms, each mapping (C, H, W) -> (4C, H/2, W/2) (couplings and a
    Squeeze); ``final``: a transform on the last (2C', H', W') variables.
    """

    def __init__(self, scales, final, event_shape):
        super().__init__()
        self.scales = ModuleList(list(scales))
        self.final = final
        self.event_shape = tuple(event_shape)
        if len(self.event_shape) != 3:
            raise ValueError(f"MultiScale: event_shape must be (C, H, W), got {self.event_shape}")
        self.latent_shapes = self._latent_shapes()

    def _latent_shapes(self):
        c, h, w = self.event_shape
        shapes = []
        for k in range(len(self.scales)):
            if h % 2 or w % 2:
                raise ValueError(f"MultiScale: scale {k + 1} squeezes a {c}x{h}x{w} input: height and width "
                                 f"must be even ({self.event_shape} allows {k} scales)")
            c, h, w = 4 * c, h // 2, w // 2
            shapes.append((c // 2, h, w))                    # factored out
            c = c // 2                                       # goes on
        shapes.append((c, h, w))                             # the final block's output
        return shapes

    def _check(self, x, who):
        _check_image(x, who)
        if tuple(x.shape[1:]) != self.event_shape:
            raise ValueError(f"{who}: input must have shape (N, {', '.join(map(str, self.event_shape))}), "
                             f"got {tuple(x.shape)}")

    def latents(self, x):
        """([z^(1), ..., z^(K+1)], log_det): every scale's latent with its own shape."""
        self._check(x, "MultiScale")
        h, log_det, zs = x, 0, []
        for k, scale in enumerate(self.scales):
            h, ld = scale(h)
            log_det = log_det + ld
            expected = (2 * self.latent_shapes[k][0],) + self.latent_shapes[k][1:]
            if tuple(h.shape[1:]) != expected:
                raise ValueError(f"MultiScale: scale {k + 1} must output (N, {', '.join(map(str, expected))}) "
                                 f"(it should end with a Squeeze), got {tuple(h.shape)}")
            z_k, h = split(h, 2, axis=1)                     # factor out half of the channels
            zs.append(z_k)
        h, ld = self.final(h)
        zs.append(h)
        return zs, log_det + ld

    def forward(self, x):
        zs, log_det = self.latents(x)
        n = x.shape[0]
        z = concatenate([z_k.reshape(n, -1) for z_k in zs], axis=1).reshape(n, *self.event_shape)
        return z, log_det

    def inverse(self, z):
        self._check(z, "MultiScale.inverse")
        n = z.shape[0]
        sizes = [c * h * w for c, h, w in self.latent_shapes]
        bounds, total = [], 0
        for size in sizes[:-1]:
            total += size
            bounds.append(total)
        flat = split(z.reshape(n, -1), bounds, axis=1)
        zs = [z_k.reshape(n, *shape) for z_k, shape in zip(flat, self.latent_shapes)]
        h, log_det = self.final.inverse(zs[-1])
        for k in reversed(range(len(self.scales))):
            h = concatenate([zs[k], h], axis=1)              # undo the factor-out
            h, ld = self.scales[k].inverse(h)
            log_det = log_det + ld
        return h, log_det

    def extra_repr(self):
        return f"event_shape={self.event_shape}, latent shapes {self.latent_shapes}"


# ----------------------------------------------------------------------------- normalisation

class BatchNormTransform(Transform):
    """Batch normalisation as a flow layer (Dinh et al. 2017, sec. 3.7, eq. 18), wrapping
    ``tinydgm.nn.norm.BatchNorm`` (feature axis 1: (N, D) vectors or (N, C, H, W) images):

        y = gamma (x - mu) / sqrt(sigma^2 + eps) + beta,   log|det| = P sum_c [log|gamma_c| - 0.5 log(sigma_c^2 + eps)]

    In training mode mu and sigma^2 are the batch statistics and the log-det treats them as
    constants (as Real NVP does; the true Jacobian of the batch map couples examples). In
    evaluation mode (running averages) the layer is an exact per-example affine map and
    ``inverse`` is defined; sample and test in ``.eval()`` mode."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, dtype=None, device=None):
        super().__init__()
        self.norm = BatchNorm(num_features, eps=eps, momentum=momentum, dtype=dtype, device=device)

    def forward(self, x):
        return self.norm(x), self.norm.log_det(x)

    def inverse(self, y):
        x = self.norm.inverse(y)
        return x, -self.norm.log_det(x)


class ActNormTransform(Transform):
    """Act-norm as a flow layer (Kingma & Dhariwal 2018, sec. 3.1), wrapping
    ``tinydgm.nn.norm.ActNorm``: y = s * x + b per channel, log|det| = P sum_c log|s_c|,
    initialised from the first batch (zero mean, unit variance per channel)."""

    def __init__(self, num_features, eps=1e-6, dtype=None, device=None):
        super().__init__()
        self.norm = ActNorm(num_features, eps=eps, dtype=dtype, device=device)

    def forward(self, x):
        return self.norm(x), self.norm.log_det(x)

    def inverse(self, y):
        x = self.norm.inverse(y)
        return x, -self.norm.log_det(x)


# ----------------------------------------------------------------------------- 1x1 convolution

class InvertibleConv1x1(Transform):
    """Glow's invertible 1x1 convolution (Kingma & Dhariwal 2018, sec. 3.2, eq. 9-10), LU form:

        z[:, :, i, j] = W x[:, :, i, j] at every pixel,      W = P L (U + diag(s))
        log|det dz/dx| = H W log|det W| = H W sum_c log|s_c|

    P a fixed permutation, L unit lower triangular, U strictly upper triangular (the free
    entries masked), s = sign * exp(log_s) with a fixed sign: so the log-det needs no
    determinant op, only sum(log_s). Initialisation: L = I, U = 0, log_s = 0 and a random
    permutation P (drawn from ``rng``): W starts as a random channel permutation, which is
    orthogonal like Glow's random rotation (no LU decomposition needed).

    The inverse uses W^{-1} from the backend's ``linalg.inv`` on the data (no graph: for
    sampling; exact up to the rounding of a C x C inverse). ``forward`` is engine ops.
    """

    def __init__(self, num_channels, rng=None, dtype=None, device=None):
        super().__init__()
        c = num_channels
        if isinstance(c, bool) or not isinstance(c, int) or c < 1:
            raise ValueError(f"InvertibleConv1x1: num_channels must be a positive int, got {c!r}")
        self.num_channels = c
        dtype = dtype or backend.get_default_dtype()
        xp = backend.module_for_device(device or "cpu")
        gen = backend.default_generator() if rng is None else rng
        perm = gen.permutation(c)
        p = xp.zeros((c, c), dtype=dtype)
        p[xp.arange(c), xp.asarray(perm)] = 1
        self.register_buffer("permutation", p)
        self.register_buffer("lower_mask", xp.tril(xp.ones((c, c), dtype=dtype), -1))
        self.register_buffer("eye", xp.eye(c, dtype=dtype))
        self.register_buffer("sign_s", xp.ones((c,), dtype=dtype))
        self.lower = Parameter(init.zeros((c, c), dtype, device))
        self.upper = Parameter(init.zeros((c, c), dtype, device))
        self.log_s = Parameter(init.zeros((c,), dtype, device))

    def weight(self):
        """W = P L (U + diag(s)) as a (C, C) Tensor (engine ops: differentiable)."""
        lower = self.lower * Tensor(self.lower_mask) + Tensor(self.eye)
        upper_mask = Tensor(self.lower_mask.T)
        s = Tensor(self.sign_s) * exp(self.log_s)
        upper = self.upper * upper_mask + Tensor(self.eye) * s             # diag(s) = I * s
        return Tensor(self.permutation) @ lower @ upper

    def _check(self, x, who):
        _check_image(x, who)
        if x.shape[1] != self.num_channels:
            raise ValueError(f"{who}: input has {x.shape[1]} channels (shape {tuple(x.shape)}), "
                             f"expected {self.num_channels}")

    @staticmethod
    def _apply(weight, x):
        """weight applied to every pixel's channel vector: (N, C, H, W) -> (N, C, H, W)."""
        n, c, h, w = x.shape
        flat = x.reshape(n, c, h * w)
        return (weight @ flat).reshape(n, c, h, w)

    def forward(self, x):
        self._check(x, "InvertibleConv1x1")
        z = self._apply(self.weight(), x)
        log_det = (self.log_s.sum() * (x.shape[2] * x.shape[3])).broadcast_to((x.shape[0],))
        return z, log_det

    def inverse(self, z):
        self._check(z, "InvertibleConv1x1.inverse")
        with no_grad():
            w_data = self.weight().data
            xp = backend.xp_of(w_data)
            w_inv = Tensor(xp.linalg.inv(w_data))
            x = self._apply(w_inv, z)
            log_det = (-self.log_s.sum() * (z.shape[2] * z.shape[3])).broadcast_to((z.shape[0],))
        return Tensor(x.data), Tensor(log_det.data)

    def extra_repr(self):
        return f"{self.num_channels}"
