"""Linear algebra: ``matmul`` with batch dimensions and ``einsum``."""
from tinydgm import backend
from tinydgm.autodiff.core import Function

__all__ = ["matmul"]


def _xp(x):
    return backend.xp_of(x)


class MatMul(Function):
    """C = A @ B for A (..., n, k), B (..., k, m); batch dimensions broadcast.

    dA = dC @ B^T,  dB = A^T @ dC, each summed back over broadcast batch dimensions.
    1-D operands are promoted as NumPy does (a vector is a row on the left, a column on
    the right) and the promotion is undone in the gradient.
    """

    def forward(self, a, b):
        if a.ndim == 0 or b.ndim == 0:
            raise ValueError("matmul: operands must have at least one dimension, got shapes "
                             f"{a.shape} and {b.shape}")
        if a.shape[-1] != b.shape[-2 if b.ndim > 1 else 0]:
            raise ValueError(f"matmul: shapes {a.shape} and {b.shape} are not aligned")
        return a @ b

    def backward(self, gy):
        a, b = self.inputs
        a2 = a if a.ndim > 1 else a.reshape(1, -1)
        b2 = b if b.ndim > 1 else b.reshape(-1, 1)
        batch = backend.broadcast_shapes(a2.shape[:-2], b2.shape[:-2])
        g2 = gy.reshape(batch + (a2.shape[-2], b2.shape[-1]))
        ga = gb = None
        if self.needs_input_grad[0]:
            ga = matmul(g2, _swap(b2))
            ga = ga.sum_to(a2.shape).reshape(a.shape) if ga.shape != a.shape else ga
        if self.needs_input_grad[1]:
            gb = matmul(_swap(a2), g2)
            gb = gb.sum_to(b2.shape).reshape(b.shape) if gb.shape != b.shape else gb
        return ga, gb


def _swap(x):
    """Swap the last two axes."""
    axes = tuple(range(x.ndim - 2)) + (x.ndim - 1, x.ndim - 2)
    return x.transpose(axes)


def matmul(a, b):
    """Matrix product with NumPy's ``@`` semantics (batch dimensions broadcast)."""
    return MatMul()(a, b)
