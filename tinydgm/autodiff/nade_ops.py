"""The NADE hidden layer as one op (Larochelle & Murray 2011; intro lecture part III, eq. 42):

    nade_logits(x, W, c, V)[n, d] = V_d . h_d,   h_d = sigmoid(a_d),   a_d = c + sum_{j<d} x_j w_j

for x (N, D), W (D, H) with row j = w_j, c (H,), V (D, H) with row d = V_d. NADE's logits
are this plus the output biases b (``tinydgm.models.autoregressive.nade.NADE.logits``); the
same equation written with engine ops (cumsum, sigmoid, einsum) is
``NADE.logits_reference``, and the tests hold the two equal.

Why an op: written with engine ops the equation builds (N, D, H) arrays (the history of
every position: 157 MB each in float32 for a batch of 100 MNIST digits, H = 500) and
walks them a dozen times per training step. The op runs the recursion a_{d+1} = a_d + x_d w_d
in Numba kernels instead (``tinydgm.kernels.nade_logits``): a hidden vector only per
nonzero x_d, no (N, D, H) array.

Gradients, with gA_d = g_d V_d h_d (1 - h_d) and R_j = sum_{d>j} gA_d (g = dL/dy):

    dL/dV_d = sum_n g_d h_d,   dL/dc = sum_n sum_d gA_d,   dL/dw_j = sum_n x_j R_j,   dL/dx_j = w_j . R_j

The backward runs the fused kernel when no graph is recorded (a training step). Under
``create_graph=True`` (second derivatives) it computes the same formulas with engine ops,
so the gradient is itself differentiable; the tests check both against finite
differences and against each other. On CuPy arrays the forward and the graph-free backward
are the kernels' vectorized twins.
"""
from tinydgm import backend
from tinydgm.autodiff.core import Function, Tensor, is_grad_enabled
from tinydgm.autodiff.elementwise import sigmoid
from tinydgm.autodiff.linalg import einsum
from tinydgm.autodiff.reduce import cumsum
from tinydgm.autodiff.shape import broadcast_to, concatenate

__all__ = ["nade_logits"]


def _kernels():
    from tinydgm.kernels import nade_logits     # Numba loads on first use, not on ``import tinydgm``
    return nade_logits


class NadeLogits(Function):
    """y = nade_logits(x, W, c, V); the kernel's states are kept for the graph-free backward."""

    @classmethod
    def name(cls):
        return "nade_logits"

    def forward(self, x, W, c, V):
        kernels = _kernels()
        if backend.device_of(W) == "cpu":
            y, self.states = kernels.nade_logits_kernel(x, W, c, V)
            return y
        self.states = None
        return kernels.nade_logits_xp(x, W, c, V)

    def backward(self, gy):
        x, W, c, V = self.inputs
        need_x = self.needs_input_grad[0]
        if is_grad_enabled():                   # create_graph: a differentiable backward
            gx, gW, gc, gV = _backward_ops(x, W, c, V, gy)
            return (gx if need_x else None), gW, gc, gV
        kernels = _kernels()
        if self.states is not None:
            grads = kernels.nade_logits_backward_kernel(x.data, W.data, V.data, gy.data, self.states, need_x)
        else:
            grads = kernels.nade_logits_backward_xp(x.data, W.data, c.data, V.data, gy.data, need_x)
        return tuple(None if g is None else Tensor(g) for g in grads)


def _backward_ops(x, W, c, V, gy):
    """The gradients of the module docstring written with engine ops (through (N, D, H) arrays)."""
    h = sigmoid(_history(x, W, c))                             # h_d (N, D, H)
    gV = einsum("nd,ndh->dh", gy, h)                           # sum_n g_d h_d
    gA = einsum("nd,dh->ndh", gy, V) * h * (1 - h)             # dL/da_d
    R = gA.sum(axis=1, keepdims=True) - cumsum(gA, axis=1)     # R_j = sum_{d>j} gA_d
    gW = einsum("nj,njh->jh", x, R)
    gx = einsum("njh,jh->nj", R, W)
    return gx, gW, gA.sum(axis=(0, 1)), gV


def _history(x, W, c):
    """a (N, D, H): a_d = c + sum_{j<d} x_j w_j (a_1 = c, then c plus the cumsum of x_j w_j)."""
    c = c.reshape(1, 1, -1)
    contributions = einsum("nj,jh->njh", x[:, :-1], W[:-1])   # x_j w_j, j < D - 1
    first = broadcast_to(c, (x.shape[0], 1, c.shape[2]))
    return concatenate([first, c + cumsum(contributions, axis=1)], axis=1)


def nade_logits(x, W, c, V):
    """y (N, D): y[:, d] = V_d . sigmoid(c + sum_{j<d} x_j w_j), differentiable in x, W, c and V.

    x (N, D) (binary data in NADE, but any real values work: a zero x_j simply adds
    nothing), W (D, H), c (H,), V (D, H), all floating and of one dtype.
    """
    for name, t, ndim in (("x", x, 2), ("W", W, 2), ("c", c, 1), ("V", V, 2)):
        if t.ndim != ndim:
            raise ValueError(f"nade_logits: {name} must have {ndim} dimensions, got shape {tuple(t.shape)}")
        if not backend.is_floating(t.dtype):
            raise TypeError(f"nade_logits: {name} must be floating, got dtype {t.dtype}")
    n_dims, n_hidden = W.shape
    if x.shape[1] != n_dims or tuple(V.shape) != (n_dims, n_hidden) or tuple(c.shape) != (n_hidden,):
        raise ValueError(f"nade_logits: expected x (N, D), W (D, H), c (H,), V (D, H) with D = {n_dims}, "
                         f"H = {n_hidden} (from W); got x {tuple(x.shape)}, c {tuple(c.shape)}, V {tuple(V.shape)}")
    if len({x.dtype, W.dtype, c.dtype, V.dtype}) != 1:
        raise TypeError(f"nade_logits: x, W, c and V must share one dtype, got {x.dtype}, {W.dtype}, {c.dtype}, "
                        f"{V.dtype}")
    return NadeLogits()(x, W, c, V)
