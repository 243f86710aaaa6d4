"""Normalisation layers that flows use, each with the log-determinant it contributes.

    BatchNorm  (Ioffe & Szegedy 2015; as a flow layer, Dinh et al. 2017, RealNVP)
    ActNorm    (Kingma & Dhariwal 2018, Glow)

Both act per feature (per channel of an image) as an affine map y = a * x + c, so their
Jacobian is diagonal and, per example,

    log |det dy/dx| = P * sum_c log |a_c|,   P = positions per feature (H * W for images, 1 for vectors).

``log_det(x)`` returns it per example (shape (N,)) and ``inverse(y)`` undoes the map.
The feature axis is ``axis`` (1 by default: (N, C) or (N, C, H, W)); axis 0 is the batch.
"""
from tinydgm import backend
from tinydgm.autodiff.core import Tensor, no_grad
from tinydgm.autodiff.elementwise import abs, log, sqrt
from tinydgm.autodiff.reduce import mean, var
from tinydgm.autodiff.shape import broadcast_to
from tinydgm.nn import init
from tinydgm.nn.module import Module, Parameter


def _check_axis(axis, who):
    if isinstance(axis, bool) or not isinstance(axis, int) or axis == 0:
        raise ValueError(f"{who}: axis must be an int other than 0 (axis 0 is the batch), got {axis!r}")


def _feature_geometry(layer, x):
    """(reduced axes, broadcast shape, positions per feature) of ``x`` for ``layer``.

    Statistics are taken over every axis but the feature axis; parameters of shape (C,)
    are reshaped to ``shape`` (C on the feature axis, 1 elsewhere) to broadcast."""
    who = f"{type(layer).__name__}({layer.num_features})"
    if not isinstance(x, Tensor):
        raise TypeError(f"{who}: input must be a Tensor, got {type(x).__name__}")
    if x.ndim < 2:
        raise ValueError(f"{who}: input must have at least 2 dimensions (N, C, ...), got shape {x.shape}")
    if not -x.ndim <= layer.axis < x.ndim or layer.axis % x.ndim == 0:
        raise ValueError(f"{who}: feature axis {layer.axis} is not a non-batch axis of an input of shape {x.shape}")
    axis = layer.axis % x.ndim
    if x.shape[axis] != layer.num_features:
        raise ValueError(f"{who}: input has {x.shape[axis]} features on axis {axis} (shape {x.shape}) "
                         f"but the layer expects {layer.num_features}")
    axes = tuple(i for i in range(x.ndim) if i != axis)
    shape = tuple(n if i == axis else 1 for i, n in enumerate(x.shape))
    positions = 1
    for i in axes[1:]:
        positions *= x.shape[i]
    return axes, shape, positions


def _per_example(total, x):
    """A scalar log-det (the same for every example) as shape (N,)."""
    return broadcast_to(total, (x.shape[0],))


# ----------------------------------------------------------------------------- BatchNorm

class BatchNorm(Module):
    """Batch normalisation, per feature c (gamma = ``weight``, beta = ``bias``):

        y = gamma * (x - mu) / sqrt(sigma^2 + eps) + beta

    Training mode: mu and sigma^2 are the batch mean and (biased) variance over every axis
    but the feature axis, computed with engine ops, so gradients (of any order) flow
    through them. The running statistics are updated as in PyTorch:

        running_mean <- (1 - momentum) running_mean + momentum mu
        running_var  <- (1 - momentum) running_var  + momentum sigma^2 n / (n - 1)

    (n values per feature; the unbiased variance). Evaluation mode: mu, sigma^2 are the
    running statistics, and the layer is a fixed affine map of each example.

    log_det(x), per example: P * sum_c [log|gamma_c| - 0.5 log(sigma_c^2 + eps)]. In training
    mode this treats the batch statistics as constants, as RealNVP does: the true Jacobian
    of the batch map couples the examples, and this is the log-det of the per-example
    affine map that the batch statistics define (its value still depends on x through
    sigma^2, and the gradient flows through it). In evaluation mode it is exact.
    """

    def __init__(self, num_features, axis=1, eps=1e-5, momentum=0.1, dtype=None, device=None):
        super().__init__()
        _check_axis(axis, "BatchNorm")
        self.num_features, self.axis, self.eps, self.momentum = num_features, axis, eps, momentum
        self.weight = Parameter(init.zeros((num_features,), dtype, device) + 1)
        self.bias = Parameter(init.zeros((num_features,), dtype, device))
        self.register_buffer("running_mean", init.zeros((num_features,), dtype, device))
        self.register_buffer("running_var", init.zeros((num_features,), dtype, device) + 1)

    def _statistics(self, x, axes, shape, update):
        """(mu, sigma^2) with ``shape``: batch statistics in training mode (and, with
        ``update``, the running statistics move towards them), running ones otherwise."""
        if not self.training:
            return Tensor(self.running_mean.reshape(shape)), Tensor(self.running_var.reshape(shape))
        n = x.size // self.num_features
        if n < 2:
            raise ValueError(f"BatchNorm({self.num_features}): training mode needs more than one value per "
                             f"feature for batch statistics, got input shape {x.shape}")
        mu = mean(x, axes, keepdims=True)
        sigma2 = var(x, axes, keepdims=True)
        if update:
            self._update_running(mu.data.reshape(-1), sigma2.data.reshape(-1) * (n / (n - 1)))
        return mu, sigma2

    def _update_running(self, batch_mean, batch_var):
        """Move the running statistics towards the batch's, per feature, only where both
        batch statistics are finite: a batch holding NaN or inf (whose output is then not
        finite either) must not poison the statistics used in evaluation."""
        m, dtype = self.momentum, self.running_mean.dtype
        xp = backend.xp_of(self.running_mean)
        finite = xp.isfinite(batch_mean) & xp.isfinite(batch_var)
        new_mean = (1 - m) * self.running_mean + m * batch_mean.astype(dtype)
        new_var = (1 - m) * self.running_var + m * batch_var.astype(dtype)
        self.running_mean = xp.where(finite, new_mean, self.running_mean)
        self.running_var = xp.where(finite, new_var, self.running_var)

    def forward(self, x):
        axes, shape, _ = _feature_geometry(self, x)
        mu, sigma2 = self._statistics(x, axes, shape, update=True)
        x_hat = (x - mu) / sqrt(sigma2 + self.eps)
        return x_hat * self.weight.reshape(shape) + self.bias.reshape(shape)

    def log_det(self, x):
        """log|det dy/dx| per example, shape (N,): P * sum_c [log|gamma_c| - 0.5 log(sigma_c^2 + eps)]
        (batch variance in training mode, treated as a constant of the per-example map;
        running variance in evaluation mode). Does not update the running statistics."""
        axes, shape, positions = _feature_geometry(self, x)
        _, sigma2 = self._statistics(x, axes, shape, update=False)
        per_feature = log(abs(self.weight)) - 0.5 * log(sigma2.reshape(-1) + self.eps)
        return _per_example(per_feature.sum() * positions, x)

    def inverse(self, y):
        """x = (y - beta) / gamma * sqrt(running_var + eps) + running_mean (evaluation mode only:
        in training mode the map depends on the batch being normalised)."""
        if self.training:
            raise RuntimeError(f"BatchNorm({self.num_features}).inverse: only defined in evaluation mode "
                               "(running statistics); call .eval() first")
        axes, shape, _ = _feature_geometry(self, y)
        mu, sigma2 = self._statistics(y, axes, shape, update=False)
        return (y - self.bias.reshape(shape)) / self.weight.reshape(shape) * sqrt(sigma2 + self.eps) + mu

    def extra_repr(self):
        return f"{self.num_features}, axis={self.axis}, eps={self.eps}, momentum={self.momentum}"


# ----------------------------------------------------------------------------- ActNorm

class ActNorm(Module):
    """Activation normalisation (Kingma & Dhariwal 2018, Glow, section 3.1), per channel c:

        y = s_c * x + b_c,    log|det dy/dx| = P * sum_c log|s_c|   (P = H * W for images)

    Data-dependent initialisation: the first batch seen (by ``forward`` or ``log_det``, or
    an explicit ``initialize(x)``) sets s_c = 1 / (std_c + eps) and b_c = -mean_c s_c, so
    that this batch's output has zero mean and (up to eps) unit variance per channel;
    after that s and b are ordinary parameters. The buffer ``initialized`` records it, so a
    model restored from a state dict is not re-initialised. A channel that is constant on
    the first batch gets s = 1 / eps. A batch holding NaN or inf never initialises it
    (``initialize`` raises ValueError; forward and log_det leave it uninitialised, with a
    non-finite output, until a finite batch comes).
    """

    def __init__(self, num_features, axis=1, eps=1e-6, dtype=None, device=None):
        super().__init__()
        _check_axis(axis, "ActNorm")
        self.num_features, self.axis, self.eps = num_features, axis, eps
        self.scale = Parameter(init.zeros((num_features,), dtype, device) + 1)
        self.bias = Parameter(init.zeros((num_features,), dtype, device))
        self.register_buffer("initialized", backend.module_for_device(device).zeros((), dtype=bool))

    def initialize(self, x):
        """Set s and b from the batch x so that s * x + b has zero mean and unit variance per channel."""
        axes, _, _ = _feature_geometry(self, x)
        with no_grad():
            data = x.data
            std = data.std(axis=axes)
            scale = 1 / (std + self.eps)
            bias = -data.mean(axis=axes) * scale
            xp = backend.xp_of(data)
            if not bool(xp.isfinite(scale).all() & xp.isfinite(bias).all()):
                raise ValueError(f"ActNorm({self.num_features}): the initialising batch (shape {x.shape}) holds "
                                 "NaN or infinite values; the layer stays uninitialised")
            self.scale.data = scale.astype(self.scale.dtype)
            self.bias.data = bias.astype(self.bias.dtype)
        self.initialized = backend.xp_of(self.initialized).ones((), dtype=bool)

    def _maybe_initialize(self, x):
        # a batch that is not finite does not initialise the layer: its output is then not
        # finite either (train.fit refuses the step), and the next finite batch initialises it
        if bool(self.initialized):
            return
        _feature_geometry(self, x)                      # the shape and type errors first
        if bool(backend.xp_of(x.data).isfinite(x.data).all()):
            self.initialize(x)

    def forward(self, x):
        self._maybe_initialize(x)
        _, shape, _ = _feature_geometry(self, x)
        return self.scale.reshape(shape) * x + self.bias.reshape(shape)

    def log_det(self, x):
        """log|det dy/dx| per example, shape (N,): P * sum_c log|s_c|."""
        self._maybe_initialize(x)
        _, _, positions = _feature_geometry(self, x)
        return _per_example(log(abs(self.scale)).sum() * positions, x)

    def inverse(self, y):
        """x = (y - b) / s."""
        _, shape, _ = _feature_geometry(self, y)
        return (y - self.bias.reshape(shape)) / self.scale.reshape(shape)

    def extra_repr(self):
        return f"{self.num_features}, axis={self.axis}, initialized={bool(self.initialized)}"
