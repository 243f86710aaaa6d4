"""Elementwise ops: arithmetic, math functions, activations, stable fused ops, comparisons.

Binary ops broadcast like NumPy; their backward sums each gradient back to its input's
shape with ``sum_to`` (and casts it back to the input's dtype when the operands' dtypes
differ). Python numbers take the dtype of the tensor they meet, so a float32 tensor
times 0.5 stays float32.

Stable fused ops (``sigmoid``, ``softplus``, ``log_sigmoid``, ``binary_cross_entropy_with_logits``,
``log1mexp``) are single ops, not compositions: their forward only ever exponentiates
non-positive numbers, so it cannot overflow for any finite input (tiny terms underflow
to 0, which is the correctly rounded answer).

Kinks (relu, abs, clip, maximum, ...) get the usual subgradients: masks computed from
the inputs, constant almost everywhere, so they may be cached as arrays.
"""
import functools
import math

from tinydgm import backend
from tinydgm.autodiff.core import Function, Tensor, as_tensor

__all__ = ["add", "sub", "mul", "div", "neg", "pow", "exp", "log",
           "log1p", "expm1", "sqrt", "square", "sin", "cos", "tanh", "abs",
           "sigmoid", "log_sigmoid", "softplus", "relu", "leaky_relu", "elu",
           "maximum", "minimum", "clip", "where", "binary_cross_entropy_with_logits", "log1mexp",
           "less", "less_equal", "greater", "greater_equal", "equal", "not_equal",
           "to_device", "astype"]

_LOG2 = math.log(2.0)


def _pair(a, b):
    """Both operands as Tensors; a Python number takes the other operand's dtype and device."""
    if isinstance(a, Tensor):
        return a, as_tensor(b, like=a)
    b = as_tensor(b)
    return as_tensor(a, like=b), b


def _xp(x):
    return backend.xp_of(x)


def _reduce_to(g, x):
    """The gradient ``g`` of a broadcast result, summed back to ``x``'s shape, in ``x``'s dtype."""
    if g.shape != x.shape:
        g = g.sum_to(x.shape)
    if g.dtype != x.dtype:
        g = astype(g, x.dtype)
    return g


def _const(xp, array):
    """A constant Tensor (no gradient) from an array that is constant w.r.t. the inputs, such
    as a mask; ``asarray`` turns the NumPy scalars of 0-d comparisons back into arrays."""
    return Tensor(xp.asarray(array))


def _require_floating(x, op):
    if not backend.is_floating(x.dtype):
        raise TypeError(f"{op}: input must be a floating tensor, got dtype {x.dtype}")


def _at_least_1d(recipe):
    """Run an in-place array recipe on 0-d input as shape (1,): NumPy ufuncs return scalars,
    not arrays, for 0-d operands, and the recipe's in-place steps need arrays."""
    @functools.wraps(recipe)
    def run(xp, x):
        if x.ndim == 0:
            return recipe(xp, x.reshape(1)).reshape(())
        return recipe(xp, x)
    return run


# ----------------------------------------------------------------------------- arithmetic

class Add(Function):
    def forward(self, a, b):
        return a + b

    def backward(self, gy):
        a, b = self.inputs
        ga = _reduce_to(gy, a) if self.needs_input_grad[0] else None
        gb = _reduce_to(gy, b) if self.needs_input_grad[1] else None
        return ga, gb


class Sub(Function):
    def forward(self, a, b):
        return a - b

    def backward(self, gy):
        a, b = self.inputs
        ga = _reduce_to(gy, a) if self.needs_input_grad[0] else None
        gb = _reduce_to(-gy, b) if self.needs_input_grad[1] else None
        return ga, gb


class Mul(Function):
    def forward(self, a, b):
        return a * b

    def backward(self, gy):
        a, b = self.inputs
        ga = _reduce_to(gy * b, a) if self.needs_input_grad[0] else None
        gb = _reduce_to(gy * a, b) if self.needs_input_grad[1] else None
        return ga, gb


class Div(Function):
    """a / b;  d/da = 1 / b,  d/db = -a / b^2 = -y / b."""

    def forward(self, a, b):
        return a / b

    def backward(self, gy):
        a, b = self.inputs
        gy_over_b = gy / b
        ga = _reduce_to(gy_over_b, a) if self.needs_input_grad[0] else None
        gb = _reduce_to(-(gy_over_b * self.output()), b) if self.needs_input_grad[1] else None
        return ga, gb


class Neg(Function):
    def forward(self, x):
        return -x

    def backward(self, gy):
        return -gy


class Pow(Function):
    """a ** b for tensors a, b;  d/da = b a^(b-1),  d/db = a^b log a (only computed when b
    needs a gradient; it is nan where a <= 0, as log a is)."""

    def forward(self, a, b):
        return a ** b

    def backward(self, gy):
        a, b = self.inputs
        ga = _reduce_to(gy * b * a ** (b - 1), a) if self.needs_input_grad[0] else None
        gb = _reduce_to(gy * self.output() * log(a), b) if self.needs_input_grad[1] else None
        return ga, gb


class PowConstant(Function):
    """x ** c for a Python number c;  d/dx = c x^(c-1).

    A separate op because NumPy computes ``x ** 2`` (square), ``x ** 0.5`` (sqrt) and
    ``x ** -1`` by fast paths only when the exponent is a Python number.
    """

    def __init__(self, exponent):
        self.exponent = exponent

    def forward(self, x):
        return x ** self.exponent

    def backward(self, gy):
        x, = self.inputs
        c = self.exponent
        if c == 0:
            return gy * 0.0
        return gy * (c * pow(x, c - 1))


def add(a, b):
    return Add()(*_pair(a, b))


def sub(a, b):
    return Sub()(*_pair(a, b))


def mul(a, b):
    return Mul()(*_pair(a, b))


def div(a, b):
    return Div()(*_pair(a, b))


def neg(x):
    return Neg()(x)


def pow(a, b):
    """a ** b; a Python-number exponent uses a constant-exponent op (no gradient to it)."""
    if isinstance(a, Tensor) and isinstance(b, (int, float)) and not isinstance(b, bool):
        return PowConstant(b)(a)
    return Pow()(*_pair(a, b))


# ----------------------------------------------------------------------------- math functions

class Exp(Function):
    def forward(self, x):
        return _xp(x).exp(x)

    def backward(self, gy):
        return gy * self.output()          # d exp(x) = exp(x): reuse the output tensor


class Log(Function):
    def forward(self, x):
        return _xp(x).log(x)

    def backward(self, gy):
        x, = self.inputs
        return gy / x


class Log1p(Function):
    """log(1 + x), accurate for small x;  d/dx = 1 / (1 + x)."""

    def forward(self, x):
        return _xp(x).log1p(x)

    def backward(self, gy):
        x, = self.inputs
        return gy / (x + 1)


class Expm1(Function):
    """exp(x) - 1, accurate for small x;  d/dx = exp(x) = y + 1."""

    def forward(self, x):
        return _xp(x).expm1(x)

    def backward(self, gy):
        return gy * (self.output() + 1)


class Sqrt(Function):
    """sqrt(x);  d/dx = 1 / (2 sqrt(x)) = 1 / (2 y)."""

    def forward(self, x):
        return _xp(x).sqrt(x)

    def backward(self, gy):
        return gy / (self.output() * 2)


class Square(Function):
    """x^2;  d/dx = 2 x."""

    def forward(self, x):
        return x * x

    def backward(self, gy):
        x, = self.inputs
        return gy * (x * 2)


class Sin(Function):
    """sin(x);  d/dx = cos(x)."""

    def forward(self, x):
        return _xp(x).sin(x)

    def backward(self, gy):
        x, = self.inputs
        return gy * cos(x)


class Cos(Function):
    """cos(x);  d/dx = -sin(x)."""

    def forward(self, x):
        return _xp(x).cos(x)

    def backward(self, gy):
        x, = self.inputs
        return -(gy * sin(x))


class Tanh(Function):
    """tanh(x);  d/dx = 1 - tanh(x)^2 = 1 - y^2."""

    def forward(self, x):
        return _xp(x).tanh(x)

    def backward(self, gy):
        y = self.output()
        return gy * (1 - y * y)


class Abs(Function):
    """|x|;  d/dx = sign(x) (0 at x = 0)."""

    def forward(self, x):
        return _xp(x).abs(x)

    def backward(self, gy):
        x, = self.inputs
        xp = _xp(x.data)
        return gy * _const(xp, xp.sign(x.data))


def exp(x):
    return Exp()(x)


def log(x):
    return Log()(x)


def log1p(x):
    return Log1p()(x)


def expm1(x):
    return Expm1()(x)


def sqrt(x):
    return Sqrt()(x)


def square(x):
    return Square()(x)


def sin(x):
    return Sin()(x)


def cos(x):
    return Cos()(x)


def tanh(x):
    return Tanh()(x)


def abs(x):
    return Abs()(x)


# ----------------------------------------------------------------------------- stable array recipes

def _positive_part(xp, x):
    """max(x, 0) in a fresh buffer. Taken against an array of zeros: NumPy's array-array
    maximum loop is vectorized, its array-scalar loop is 2-3 times slower."""
    zeros = xp.zeros_like(x)
    return xp.maximum(x, zeros, out=zeros)


def _negative_part(xp, x):
    """min(x, 0) in a fresh buffer (see ``_positive_part``)."""
    zeros = xp.zeros_like(x)
    return xp.minimum(x, zeros, out=zeros)


@_at_least_1d
def _exp_neg_abs(xp, x):
    """exp(-|x|) in a fresh buffer: in (0, 1], so it never overflows."""
    t = xp.abs(x)
    xp.negative(t, out=t)
    return xp.exp(t, out=t)


@_at_least_1d
def _log1p_exp_neg_abs(xp, x):
    """log(1 + exp(-|x|)) in a fresh buffer: the correction term of softplus, in (0, log 2]."""
    t = _exp_neg_abs(xp, x)
    return xp.log1p(t, out=t)


@_at_least_1d
def _sigmoid_array(xp, x):
    """sigmoid(x) with full relative accuracy in both tails and no overflow, branch-free:

        s = sigmoid(-|x|) = t / (1 + t)  in (0, 1/2],   t = exp(-|x|)
        sigmoid(x) = s for x < 0,  1 - s for x >= 0,   i.e.  | s - [x >= 0] |

    (arithmetic instead of ``where``, which is several times slower in NumPy).
    """
    s = _exp_neg_abs(xp, x)
    s /= s + 1
    s -= x >= 0
    return xp.abs(s, out=s)


@_at_least_1d
def _softplus_array(xp, x):
    """softplus(x) = log(1 + exp(x)) = max(x, 0) + log(1 + exp(-|x|))."""
    t = _log1p_exp_neg_abs(xp, x)
    t += _positive_part(xp, x)
    return t


@_at_least_1d
def _log_sigmoid_array(xp, x):
    """log sigmoid(x) = -softplus(-x) = min(x, 0) - log(1 + exp(-|x|))."""
    t = _log1p_exp_neg_abs(xp, x)
    return xp.subtract(_negative_part(xp, x), t, out=t)


# ----------------------------------------------------------------------------- activations and fused ops

class Sigmoid(Function):
    """sigmoid(x) = 1 / (1 + exp(-x));  d/dx = y (1 - y)."""

    def forward(self, x):
        return _sigmoid_array(_xp(x), x)

    def backward(self, gy):
        y = self.output()
        return gy * y * (1 - y)


class Softplus(Function):
    """softplus(x) = log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|));  d/dx = sigmoid(x)."""

    def forward(self, x):
        return _softplus_array(_xp(x), x)

    def backward(self, gy):
        x, = self.inputs
        return gy * sigmoid(x)


class LogSigmoid(Function):
    """log sigmoid(x) = -softplus(-x) = min(x, 0) - log1p(exp(-|x|));
    d/dx = 1 - sigmoid(x) = sigmoid(-x)."""

    def forward(self, x):
        return _log_sigmoid_array(_xp(x), x)

    def backward(self, gy):
        x, = self.inputs
        return gy * sigmoid(-x)


class ReLU(Function):
    """relu(x) = max(x, 0);  d/dx = [x > 0] (0 at the kink)."""

    def forward(self, x):
        return _positive_part(_xp(x), x)

    def backward(self, gy):
        x, = self.inputs
        return gy * _const(_xp(x.data), x.data > 0)


class LeakyReLU(Function):
    """leaky_relu(x) = x for x > 0, negative_slope * x otherwise;
    d/dx = 1 for x > 0, negative_slope otherwise.

    y = scale * x with scale in {1, negative_slope}: the scale depends on the sign of x
    only (constant almost everywhere), so it is cached for the backward.
    """

    def __init__(self, negative_slope):
        self.negative_slope = negative_slope

    def forward(self, x):
        xp = _xp(x)
        scale = xp.asarray(x <= 0, dtype=x.dtype)
        scale *= self.negative_slope
        scale += x > 0                   # exactly 1 or exactly negative_slope
        self.scale = scale
        return x * scale

    def backward(self, gy):
        return gy * Tensor(self.scale)


class ELU(Function):
    """elu(x) = x for x > 0, alpha (exp(x) - 1) otherwise;
    d/dx = 1 for x > 0, alpha exp(x) = y + alpha otherwise."""

    def __init__(self, alpha):
        self.alpha = alpha

    def forward(self, x):
        xp = _xp(x)
        # max(x, 0) + alpha expm1(min(x, 0)): one of the two terms is exactly 0, nothing can
        # overflow, and it avoids where(), which is several times slower in NumPy
        y = xp.expm1(_negative_part(xp, x))
        y *= self.alpha
        y += _positive_part(xp, x)
        return y

    def backward(self, gy):
        x, = self.inputs
        positive = _const(_xp(x.data), x.data > 0)
        return gy * where(positive, 1, self.output() + self.alpha)


def sigmoid(x):
    """sigmoid(x) = 1 / (1 + exp(-x)), stable and accurate in both tails."""
    _require_floating(x, "sigmoid")
    return Sigmoid()(x)


def softplus(x):
    """softplus(x) = log(1 + exp(x)), stable: softplus(1000) = 1000, softplus(-1000) = 0."""
    _require_floating(x, "softplus")
    return Softplus()(x)


def log_sigmoid(x):
    """log sigmoid(x) = -softplus(-x), stable: log_sigmoid(-1000) = -1000."""
    _require_floating(x, "log_sigmoid")
    return LogSigmoid()(x)


def relu(x):
    """max(x, 0); its gradient at 0 is 0."""
    return ReLU()(x)


def leaky_relu(x, negative_slope=0.01):
    """x for x > 0, negative_slope * x otherwise."""
    return LeakyReLU(negative_slope)(x)


def elu(x, alpha=1.0):
    """x for x > 0, alpha (exp(x) - 1) otherwise (Clevert et al. 2016)."""
    return ELU(alpha)(x)


class Maximum(Function):
    """max(a, b) elementwise (broadcasting); the gradient goes to the larger operand and is
    split half-half at ties (so d max(x, x)/dx = 1, as in PyTorch)."""

    def forward(self, a, b):
        return _xp(a).maximum(a, b)

    def backward(self, gy):
        a, b = self.inputs
        return _to_winner(self, gy, _winner_weight(a.data, b.data, gy.dtype))


class Minimum(Function):
    """min(a, b) elementwise (broadcasting); the gradient goes to the smaller operand and is
    split half-half at ties."""

    def forward(self, a, b):
        return _xp(a).minimum(a, b)

    def backward(self, gy):
        a, b = self.inputs
        return _to_winner(self, gy, _winner_weight(b.data, a.data, gy.dtype))


def _winner_weight(first, second, dtype):
    """([first > second] + [first >= second]) / 2: 1 where ``first`` wins, 1/2 at ties, else 0."""
    xp = _xp(first)
    weight = xp.asarray(first >= second, dtype=dtype)
    weight += first > second
    weight *= 0.5
    return weight


def _to_winner(f, gy, weight_a):
    """Gradients (weight_a gy, (1 - weight_a) gy) of f's inputs (a, b), summed back to their shapes."""
    a, b = f.inputs
    xp = _xp(weight_a)
    ga = _reduce_to(gy * _const(xp, weight_a), a) if f.needs_input_grad[0] else None
    gb = _reduce_to(gy * _const(xp, 1 - weight_a), b) if f.needs_input_grad[1] else None
    return ga, gb


def maximum(a, b):
    """Elementwise max(a, b) with broadcasting; the gradient is split half-half at ties."""
    return Maximum()(*_pair(a, b))


def minimum(a, b):
    """Elementwise min(a, b) with broadcasting; the gradient is split half-half at ties."""
    return Minimum()(*_pair(a, b))


class Clip(Function):
    """clip(x, a_min, a_max);  d/dx = 1 for a_min <= x <= a_max (bounds included), 0 outside."""

    def __init__(self, a_min, a_max):
        self.a_min, self.a_max = a_min, a_max

    def forward(self, x):
        xp = _xp(x)
        if self.a_max is None:
            return xp.maximum(x, self.a_min)
        if self.a_min is None:
            return xp.minimum(x, self.a_max)
        return xp.clip(x, self.a_min, self.a_max)

    def backward(self, gy):
        x, = self.inputs
        if self.a_max is None:
            inside = x.data >= self.a_min
        elif self.a_min is None:
            inside = x.data <= self.a_max
        else:
            inside = (x.data >= self.a_min) & (x.data <= self.a_max)
        return gy * _const(_xp(x.data), inside)


def clip(x, a_min, a_max):
    """``x`` limited to [a_min, a_max] (Python numbers; None leaves that side open).

    The gradient is 1 inside the interval and on its bounds, 0 outside. For tensor-valued
    bounds use ``maximum``/``minimum``.
    """
    for name, bound in (("a_min", a_min), ("a_max", a_max)):
        if bound is not None and (not isinstance(bound, (int, float)) or isinstance(bound, bool)):
            raise TypeError(f"clip: {name} must be a Python number or None, got {type(bound).__name__}; "
                            "use maximum()/minimum() for tensor bounds")
    if a_min is None and a_max is None:
        return x
    if a_min is not None and a_max is not None and a_min > a_max:
        raise ValueError(f"clip: a_min ({a_min}) must not exceed a_max ({a_max})")
    return Clip(a_min, a_max)(x)


class Where(Function):
    """where(condition, a, b): a where condition holds, else b (broadcasting).

    The gradient goes to a where the condition holds and to b elsewhere; the boolean
    condition gets none. The backward uses where itself, not a product with the mask, so
    an inf in the gradient of one branch does not become nan in the other.
    """

    def forward(self, condition, a, b):
        return _xp(a).where(condition, a, b)

    def backward(self, gy):
        condition, a, b = self.inputs
        zero = as_tensor(0, like=gy)
        ga = _reduce_to(Where()(condition, gy, zero), a) if self.needs_input_grad[1] else None
        gb = _reduce_to(Where()(condition, zero, gy), b) if self.needs_input_grad[2] else None
        return None, ga, gb


def where(condition, a, b):
    """Elementwise ``a if condition else b`` with NumPy broadcasting.

    condition: a boolean Tensor, or an array moved to the device of a/b (no gradient).
    a, b: Tensors or Python numbers (a number takes the other operand's dtype; two numbers
    give a tensor of the default dtype on the condition's device).
    """
    if not isinstance(condition, Tensor):
        like = a if isinstance(a, Tensor) else b if isinstance(b, Tensor) else None
        condition = Tensor(backend.as_array(condition, device=None if like is None else like.device))
    if condition.dtype.kind != "b":
        raise TypeError(f"where: condition must be boolean, got dtype {condition.dtype}; "
                        "compare first, e.g. where(x > 0, a, b)")
    if not isinstance(a, Tensor) and not isinstance(b, Tensor):
        a = Tensor(backend.as_array(a, device=condition.device))
    a, b = _pair(a, b)
    return Where()(condition, a, b)


class BinaryCrossEntropyWithLogits(Function):
    """-[t log sigmoid(l) + (1 - t) log(1 - sigmoid(l))] = softplus(l) - t l, elementwise:
    the negative Bernoulli log-likelihood of targets t under logits l, stable for any l.

        d/dl = sigmoid(l) - t,     d/dt = -l
    """

    def forward(self, logits, targets):
        xp = _xp(logits)
        loss = _softplus_array(xp, logits)
        target_term = xp.asarray(targets * logits)        # has the result's shape and dtype
        return xp.subtract(loss, target_term, out=target_term)

    def backward(self, gy):
        logits, targets = self.inputs
        gl = _reduce_to(gy * (sigmoid(logits) - targets), logits) if self.needs_input_grad[0] else None
        gt = _reduce_to(-(gy * logits), targets) if self.needs_input_grad[1] else None
        return gl, gt


def binary_cross_entropy_with_logits(logits, targets):
    """Elementwise softplus(logits) - targets * logits (no reduction).

    Targets are probabilities in [0, 1], usually 0/1 labels (boolean or integer labels are
    cast to the logits' dtype); the arguments broadcast and both get gradients.
    """
    logits, targets = _pair(logits, targets)
    _require_floating(logits, "binary_cross_entropy_with_logits")
    if not backend.is_floating(targets.dtype):
        targets = Tensor(targets.data.astype(logits.dtype))
    return BinaryCrossEntropyWithLogits()(logits, targets)


class Log1mexp(Function):
    """log(1 - exp(x)) for x <= 0, stable (Maechler 2012, "Accurately computing
    log(1 - exp(-|a|))"):

        log(-expm1(x))     for -log 2 < x <= 0   (1 - e^x is small: expm1 keeps its digits)
        log1p(-exp(x))     for x <= -log 2        (e^x is small: log1p keeps its digits)

    d/dx = -e^x / (1 - e^x) = -exp(x - y), from the output: no overflow for x << 0.
    nan for x > 0 (like the log of a negative number), -inf at x = 0.
    """

    def forward(self, x):
        xp = _xp(x)
        near_zero = xp.log(-xp.expm1(x))
        # min(x, -log 2): the branch that where() drops must not evaluate log1p(-1) near 0
        far = xp.log1p(-xp.exp(xp.minimum(x, -_LOG2)))
        return xp.where(x > -_LOG2, near_zero, far)

    def backward(self, gy):
        x, = self.inputs
        return -(gy * exp(x - self.output()))


def log1mexp(x):
    """log(1 - exp(x)) for x <= 0, stable in both regimes (Maechler's switch at -log 2)."""
    _require_floating(x, "log1mexp")
    return Log1mexp()(x)


# ----------------------------------------------------------------------------- comparisons (no gradient)

def _compare(name):
    def compare(a, b):
        a, b = _pair(a, b)
        xp = _xp(a.data)
        return Tensor(xp.asarray(getattr(xp, name)(a.data, b.data)))   # 0-d: a NumPy bool
    compare.__name__ = name
    compare.__doc__ = f"Elementwise ``{name}`` as a boolean Tensor (no gradient)."
    return compare


less = _compare("less")
less_equal = _compare("less_equal")
greater = _compare("greater")
greater_equal = _compare("greater_equal")
equal = _compare("equal")
not_equal = _compare("not_equal")


# ----------------------------------------------------------------------------- device and dtype

class ToDevice(Function):
    def __init__(self, device):
        self.device = backend.check_device(device)

    def __call__(self, x):          # the inputs may be on another device than the output
        return super().__call__(x)

    def forward(self, x):
        self.source = backend.device_of(x)
        return backend.to_device(x, self.device)

    def backward(self, gy):
        return to_device(gy, self.source)


class AsType(Function):
    def __init__(self, dtype):
        self.dtype = dtype

    def forward(self, x):
        self.source = x.dtype
        return x.astype(self.dtype, copy=False)

    def backward(self, gy):
        return astype(gy, self.source)


def to_device(x, device):
    """A copy of ``x`` on ``device``; the gradient flows back to ``x``'s device."""
    if x.device == backend.check_device(device):
        return x
    return ToDevice(device)(x)


def astype(x, dtype):
    """``x`` cast to ``dtype``; the gradient is cast back to ``x``'s dtype."""
    if x.dtype == dtype:
        return x
    return AsType(dtype)(x)
