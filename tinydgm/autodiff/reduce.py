"""Reductions: sum, mean, var, max, min, logsumexp, softmax, log_softmax, cumsum, sum_to.

Reductions take NumPy's ``axis`` (None, an int or a tuple of ints, negatives allowed)
and ``keepdims``. Their backward puts the reduced axes back (``_unreduce``) and
broadcasts the gradient over them. logsumexp, softmax and log_softmax are single,
numerically stable ops (they subtract the maximum first), so inputs of +-1000 give
exact, finite results where the composition exp -> sum -> log overflows.
"""
import builtins
import math

from tinydgm import backend
from tinydgm.autodiff.core import Function, Tensor
from tinydgm.autodiff.elementwise import exp
from tinydgm.autodiff.shape import broadcast_to, flip, normalize_axis, reshape  # noqa: F401

__all__ = ["sum", "sum_to", "mean", "var", "max", "min", "logsumexp", "softmax", "log_softmax",
           "cumsum"]


def _xp(x):
    return backend.xp_of(x)


def _kept_shape(in_shape, axes):
    """The shape of a reduction over ``axes`` with keepdims=True."""
    return tuple(1 if i in axes else n for i, n in enumerate(in_shape))


def _reduced_shape(in_shape, axes, keepdims):
    if keepdims:
        return _kept_shape(in_shape, axes)
    return tuple(n for i, n in enumerate(in_shape) if i not in axes)


def _unreduce(gy, in_shape, axes, keepdims):
    """Reshape a reduced gradient so it broadcasts against the input again."""
    if keepdims or not in_shape or gy.ndim == 0:     # a 0-d gradient broadcasts as it is
        return gy
    return reshape(gy, _kept_shape(in_shape, axes))


def _count(shape, axes):
    """How many entries a reduction over ``axes`` combines."""
    return math.prod(shape[a] for a in axes)


def _stable_shift(xp, x, axes):
    """max(x) over ``axes`` (keepdims), with non-finite maxima replaced by 0 so that a
    slice of all -inf does not compute -inf - (-inf)."""
    m = xp.asarray(x.max(axis=axes, keepdims=True))
    return xp.where(xp.isfinite(m), m, xp.zeros_like(m))


# ----------------------------------------------------------------------------- sum

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
    """Sum over ``axis`` (all axes by default). d sum / dx_i = 1: the gradient is broadcast."""
    return Sum(axis, keepdims)(x)


# ----------------------------------------------------------------------------- moments

def mean(x, axis=None, keepdims=False):
    """mean(x) = sum(x) / n over ``axis``, n the number of entries combined.

    An empty reduction gives nan (0 / 0), as in NumPy."""
    axes = normalize_axis(axis, x.ndim, "mean")
    n = _count(x.shape, axes)
    if n == 0:   # nan that does not depend on x: dividing by 0 would put 0 * inf in the 2nd derivative
        return sum(x, axes, keepdims) * 0.0 + float("nan")
    return sum(x, axes, keepdims) * (1.0 / n)


def var(x, axis=None, keepdims=False, ddof=0):
    """var(x) = sum((x - mean(x))^2) / (n - ddof) over ``axis`` (NumPy's definition;
    ddof=1 gives the unbiased estimate). d var / dx_i = 2 (x_i - mean) / (n - ddof).

    n - ddof <= 0 divides by zero (inf or nan), as NumPy does."""
    axes = normalize_axis(axis, x.ndim, "var")
    if _count(x.shape, axes) == 0:   # nan that does not depend on x (see mean)
        return sum(x, axes, keepdims) * 0.0 + float("nan")
    d = x - mean(x, axes, keepdims=True)
    return sum(d * d, axes, keepdims) / builtins.max(_count(x.shape, axes) - ddof, 0)


# ----------------------------------------------------------------------------- max and min

class _Extremum(Function):
    """max or min over ``axes``. The gradient goes to the entries equal to the result;
    when several entries tie, it is split evenly among them (each gets gy / k for k
    tied entries), so the gradient of a constant slice sums to gy. The tie mask is
    computed from the values and treated as a constant (the function is piecewise
    linear, so this is its derivative almost everywhere), and the second derivative
    is zero. A NaN result (NaN in the slice) gives NaN gradients for that slice.
    """
    reducer = None

    def __init__(self, axes, keepdims):
        self.axes, self.keepdims = axes, keepdims

    def forward(self, x):
        return getattr(x, self.reducer)(axis=self.axes, keepdims=self.keepdims)

    def backward(self, gy):
        x, = self.inputs
        kept = _kept_shape(x.shape, self.axes)
        y = self.output().data.reshape(kept)
        mask = (x.data == y).astype(x.dtype)
        share = mask / mask.sum(axis=self.axes, keepdims=True)     # ties split evenly
        return _unreduce(gy, x.shape, self.axes, self.keepdims) * Tensor(_xp(x.data).asarray(share))


class Max(_Extremum):
    reducer = "max"


class Min(_Extremum):
    reducer = "min"


def _extremum(cls, x, axis, keepdims):
    op = cls.reducer
    axes = normalize_axis(axis, x.ndim, op)
    for a in axes:
        if x.shape[a] == 0:
            raise ValueError(f"{op}: cannot reduce over axis {a} of size 0 of a tensor of shape "
                             f"{x.shape} ({op} of an empty set has no identity)")
    return cls(axes, keepdims)(x)


def max(x, axis=None, keepdims=False):
    """Maximum over ``axis``. Gradient: to the argmax entries, split evenly among ties."""
    return _extremum(Max, x, axis, keepdims)


def min(x, axis=None, keepdims=False):
    """Minimum over ``axis``. Gradient: to the argmin entries, split evenly among ties."""
    return _extremum(Min, x, axis, keepdims)


# ----------------------------------------------------------------------------- log-sum-exp and softmax

class LogSumExp(Function):
    """y = log sum_i exp(x_i) = m + log sum_i exp(x_i - m), m = max_i x_i (stable).

    d y / d x_i = exp(x_i - y) = softmax(x)_i, written with the output tensor y so
    that second derivatives flow through it. An empty reduction gives -inf (log 0).
    """

    def __init__(self, axes, keepdims):
        self.axes, self.keepdims = axes, keepdims

    def forward(self, x):
        xp = _xp(x)
        out_shape = _reduced_shape(x.shape, self.axes, self.keepdims)
        if _count(x.shape, self.axes) == 0:
            return xp.full(out_shape, -xp.inf, dtype=x.dtype)
        m = _stable_shift(xp, x, self.axes)
        y = xp.log(xp.exp(x - m).sum(axis=self.axes, keepdims=True)) + m
        return y.reshape(out_shape)

    def backward(self, gy):
        x, = self.inputs
        y = _unreduce(self.output(), x.shape, self.axes, self.keepdims)
        return _unreduce(gy, x.shape, self.axes, self.keepdims) * exp(x - y)


def logsumexp(x, axis=None, keepdims=False):
    """log(sum(exp(x))) over ``axis``, computed stably (finite for inputs of +-1000)."""
    return LogSumExp(normalize_axis(axis, x.ndim, "logsumexp"), keepdims)(x)


class Softmax(Function):
    """y_i = exp(x_i - m) / sum_j exp(x_j - m), m = max_j x_j (stable).

    Backward: gx = y * (gy - sum_j gy_j y_j), with the output tensor y.
    """

    def __init__(self, axes):
        self.axes = axes

    def forward(self, x):
        xp = _xp(x)
        if x.size == 0:
            return xp.exp(x)
        e = xp.exp(x - _stable_shift(xp, x, self.axes))
        return e / e.sum(axis=self.axes, keepdims=True)

    def backward(self, gy):
        y = self.output()
        return y * (gy - sum(gy * y, self.axes, keepdims=True))


def softmax(x, axis=-1):
    """exp(x) / sum(exp(x)) over ``axis`` (the last by default), computed stably."""
    return Softmax(normalize_axis(axis, x.ndim, "softmax"))(x)


class LogSoftmax(Function):
    """y_i = x_i - logsumexp(x) = (x_i - m) - log sum_j exp(x_j - m) (stable).

    Backward: gx = gy - softmax(x) * sum_j gy_j, with softmax(x) = exp(y) from the
    output tensor y.
    """

    def __init__(self, axes):
        self.axes = axes

    @classmethod
    def name(cls):
        return "log_softmax"

    def forward(self, x):
        xp = _xp(x)
        if x.size == 0:
            return x - x
        shifted = x - _stable_shift(xp, x, self.axes)
        return shifted - xp.log(xp.exp(shifted).sum(axis=self.axes, keepdims=True))

    def backward(self, gy):
        y = self.output()
        return gy - exp(y) * sum(gy, self.axes, keepdims=True)


def log_softmax(x, axis=-1):
    """log(softmax(x)) over ``axis`` (the last by default), computed stably."""
    return LogSoftmax(normalize_axis(axis, x.ndim, "log_softmax"))(x)


# ----------------------------------------------------------------------------- cumulative sum

class Cumsum(Function):
    """y_i = sum_{j <= i} x_j along ``axis``.

    Backward: gx_j = sum_{i >= j} gy_i, the reversed cumulative sum, flip(cumsum(flip(gy))).
    """

    def __init__(self, axis):
        self.axis = axis

    def forward(self, x):
        xp = _xp(x)
        n = x.shape[self.axis] if x.ndim else 0
        if x.ndim < 2 or self.axis == x.ndim - 1 or x.size < 2 ** 16 or x.size // builtins.max(n, 1) < 256:
            return xp.cumsum(x, axis=self.axis)
        # Along a leading axis of a big array, NumPy's cumsum walks the strided axis innermost
        # (6x slower than this); adding whole contiguous slabs y_k = y_(k-1) + x_k is fast.
        y = xp.moveaxis(x.copy(), self.axis, 0)
        for k in range(1, n):
            xp.add(y[k - 1], y[k], out=y[k])
        return xp.moveaxis(y, 0, self.axis)

    def backward(self, gy):
        return flip(cumsum(flip(gy, self.axis), self.axis), self.axis)


def cumsum(x, axis=None):
    """Cumulative sum along ``axis``; ``axis=None`` sums over the flattened tensor (NumPy)."""
    if axis is None:
        return Cumsum(0)(reshape(x, -1))
    if isinstance(axis, (tuple, list)):
        raise TypeError(f"cumsum: axis must be an int or None, got {axis!r}")
    return Cumsum(normalize_axis(axis, x.ndim, "cumsum")[0])(x)
