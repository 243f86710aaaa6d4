"""Elementwise ops: arithmetic, math functions, activations, stable fused ops, comparisons.

Binary ops broadcast like NumPy; their backward sums each gradient back to its input's
shape with ``sum_to``. Python numbers take the dtype of the tensor they meet, so a
float32 tensor times 0.5 stays float32.
"""
from tinydgm import backend
from tinydgm.autodiff.core import Function, Tensor, as_tensor

__all__ = ["add", "sub", "mul", "div", "neg", "pow", "exp", "log",
           "less", "less_equal", "greater", "greater_equal", "equal", "not_equal",
           "to_device", "astype"]


def _pair(a, b):
    """Both operands as Tensors; a Python number takes the other operand's dtype and device."""
    if isinstance(a, Tensor):
        return a, as_tensor(b, like=a)
    b = as_tensor(b)
    return as_tensor(a, like=b), b


def _xp(x):
    return backend.xp_of(x)


# ----------------------------------------------------------------------------- arithmetic

class Add(Function):
    def forward(self, a, b):
        return a + b

    def backward(self, gy):
        a, b = self.inputs
        return gy.sum_to(a.shape), gy.sum_to(b.shape)


class Sub(Function):
    def forward(self, a, b):
        return a - b

    def backward(self, gy):
        a, b = self.inputs
        gb = (-gy).sum_to(b.shape) if self.needs_input_grad[1] else None
        return gy.sum_to(a.shape), gb


class Mul(Function):
    def forward(self, a, b):
        return a * b

    def backward(self, gy):
        a, b = self.inputs
        ga = (gy * b).sum_to(a.shape) if self.needs_input_grad[0] else None
        gb = (gy * a).sum_to(b.shape) if self.needs_input_grad[1] else None
        return ga, gb


class Div(Function):
    def forward(self, a, b):
        return a / b

    def backward(self, gy):
        a, b = self.inputs
        ga = (gy / b).sum_to(a.shape) if self.needs_input_grad[0] else None
        gb = (-gy * a / (b * b)).sum_to(b.shape) if self.needs_input_grad[1] else None
        return ga, gb


class Neg(Function):
    def forward(self, x):
        return -x

    def backward(self, gy):
        return -gy


class Pow(Function):
    """a ** b; d/da = b a^(b-1), d/db = a^b log a (only computed when b needs a gradient)."""

    def forward(self, a, b):
        return a ** b

    def backward(self, gy):
        a, b = self.inputs
        ga = (gy * b * a ** (b - 1)).sum_to(a.shape) if self.needs_input_grad[0] else None
        gb = (gy * self.output() * log(a)).sum_to(b.shape) if self.needs_input_grad[1] else None
        return ga, gb


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


def exp(x):
    return Exp()(x)


def log(x):
    return Log()(x)


# ----------------------------------------------------------------------------- comparisons (no gradient)

def _compare(name):
    def compare(a, b):
        a, b = _pair(a, b)
        return Tensor(getattr(_xp(a.data), name)(a.data, b.data))
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
