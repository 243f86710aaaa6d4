"""Weight initialisation. Each function returns a new backend array of ``shape`` drawn
with ``rng`` (a NumPy Generator; the default generator when None, see ``td.seed``), in
``dtype`` (the default float dtype when None), on ``device``. Draws happen on the CPU,
so the same seed gives the same weights on every device.

fan_in / fan_out of a weight: for a dense weight (in_features, out_features),
fan_in = in_features, fan_out = out_features; for a convolution weight
(C_out, C_in/groups, kH, kW), fan_in = C_in/groups * kH * kW, fan_out = C_out * kH * kW.
"""
import math

from tinydgm import backend


def fans(shape, layout="dense"):
    """(fan_in, fan_out) of a weight of ``shape`` ("dense": (in, out); "conv": (out, in, kH, kW))."""
    if layout == "dense":
        if len(shape) != 2:
            raise ValueError(f"fans: a dense weight has 2 dimensions (in, out), got shape {shape}")
        return shape[0], shape[1]
    if layout == "conv":
        if len(shape) != 4:
            raise ValueError(f"fans: a conv weight has 4 dimensions (C_out, C_in, kH, kW), got shape {shape}")
        receptive = shape[2] * shape[3]
        return shape[1] * receptive, shape[0] * receptive
    raise ValueError(f'fans: layout must be "dense" or "conv", got {layout!r}')


def _finish(values, dtype, device):
    dtype = backend.get_default_dtype() if dtype is None else dtype
    return backend.to_device(values.astype(dtype), device or "cpu")


def _gen(rng):
    return backend.default_generator() if rng is None else rng


def uniform(shape, low, high, rng=None, dtype=None, device=None):
    """U(low, high) entries."""
    return _finish(_gen(rng).uniform(low, high, size=shape), dtype, device)


def normal(shape, std, rng=None, dtype=None, device=None):
    """N(0, std^2) entries."""
    return _finish(_gen(rng).normal(0.0, std, size=shape), dtype, device)


def zeros(shape, dtype=None, device=None):
    """All zeros (biases; the last layer of a coupling network, so it starts as the identity)."""
    dtype = backend.get_default_dtype() if dtype is None else dtype
    return backend.module_for_device(device or "cpu").zeros(shape, dtype=dtype)


def lecun_uniform(shape, layout="dense", rng=None, dtype=None, device=None):
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)): PyTorch's default for Linear and Conv2d
    (its kaiming_uniform with a = sqrt(5) reduces to this bound)."""
    bound = 1.0 / math.sqrt(max(fans(shape, layout)[0], 1))
    return uniform(shape, -bound, bound, rng, dtype, device)


def xavier_uniform(shape, layout="dense", gain=1.0, rng=None, dtype=None, device=None):
    """Glorot & Bengio 2010: U(-a, a), a = gain * sqrt(6 / (fan_in + fan_out)); keeps the
    variance of activations and gradients equal across layers for tanh/linear units."""
    fan_in, fan_out = fans(shape, layout)
    a = gain * math.sqrt(6.0 / max(fan_in + fan_out, 1))
    return uniform(shape, -a, a, rng, dtype, device)


def xavier_normal(shape, layout="dense", gain=1.0, rng=None, dtype=None, device=None):
    """Glorot & Bengio 2010: N(0, std^2), std = gain * sqrt(2 / (fan_in + fan_out))."""
    fan_in, fan_out = fans(shape, layout)
    return normal(shape, gain * math.sqrt(2.0 / max(fan_in + fan_out, 1)), rng, dtype, device)


def kaiming_uniform(shape, layout="dense", rng=None, dtype=None, device=None):
    """He et al. 2015: U(-b, b), b = sqrt(6 / fan_in) (variance 2 / fan_in, for ReLU units)."""
    b = math.sqrt(6.0 / max(fans(shape, layout)[0], 1))
    return uniform(shape, -b, b, rng, dtype, device)


def kaiming_normal(shape, layout="dense", rng=None, dtype=None, device=None):
    """He et al. 2015: N(0, 2 / fan_in), for ReLU units."""
    return normal(shape, math.sqrt(2.0 / max(fans(shape, layout)[0], 1)), rng, dtype, device)


def default_weight_and_bias(shape, layout, n_out, bias=True, zero_init=False, rng=None, dtype=None,
                            device=None):
    """The weight and bias arrays of a dense or conv layer, initialised as PyTorch does:
    W, b ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)); both zero with ``zero_init`` (the last layer
    of a coupling network). The bias is None when ``bias`` is False."""
    if zero_init:
        weight = zeros(shape, dtype, device)
    else:
        weight = lecun_uniform(shape, layout, rng, dtype, device)
    if not bias:
        return weight, None
    bound = 1.0 / math.sqrt(max(fans(shape, layout)[0], 1))
    b = zeros((n_out,), dtype, device) if zero_init else uniform((n_out,), -bound, bound, rng, dtype, device)
    return weight, b
