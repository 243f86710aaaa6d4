"""The Bernoulli log-likelihood of a decoder's logits, summed over the event axes, as one op.

For binary (or grey-level, in [0, 1]) x and logits l, p = sigmoid(l) (tomczak-dgm, the VAE's
Bernoulli decoder; intro lecture eq. 28, the reconstruction term log p(x|z)):

    log p(x | l) = sum_d [x_d l_d - softplus(l_d)]
                 = sum_d [x_d l_d - max(l_d, 0) - log(1 + exp(-|l_d|))]      (no overflow)

    d/dl_d = x_d - sigmoid(l_d),      d/dx_d = l_d

Why one op: in an IWAE step the (k, N, D) logits are the largest arrays (5 x 100 x 784), and
written with the elementwise ops the term costs about twenty passes over them (softplus,
the product, the negation, the sum, and in the backward sigmoid, the difference, the
product), each into a fresh array. Here the forward is one pass and so is the backward's
score g (x - sigmoid(l)) (``BernoulliScore``): Numba kernels over the rows of the logits
for float32 NumPy arrays (``tinydgm.kernels.bernoulli``; on the calling thread at any
thread count: see there why).
Elsewhere (float64, CuPy, data that broadcasts along the event axes) the kernels'
vectorized twins run: nine NumPy passes that keep e = exp(-|l|), from which the score's
sigmoid(l) = |e / (1 + e) - [l >= 0]| takes five more. Both Functions' backwards are
written with engine ops, so every order of derivative exists (gradgradchecked in the tests).

x broadcasts to l's shape (x (N, D) against l (k, N, D) in an IWAE); the sum runs over
the last ``n_event`` axes of l.
"""
from tinydgm import backend
from tinydgm.autodiff.core import Function, Tensor
from tinydgm.autodiff.elementwise import sigmoid

__all__ = ["bernoulli_log_likelihood"]


def _kernels():
    from tinydgm.kernels import bernoulli     # Numba loads on first use, not on ``import tinydgm``
    return bernoulli


def _sum_to(g, like):
    """g summed back to like's shape (like was broadcast to g's)."""
    return g if g.shape == like.shape else g.sum_to(like.shape)


def _expand(g, n_event):
    """g (batch shape) with n_event trailing axes of size 1, to broadcast over the events."""
    return g.reshape(tuple(g.shape) + (1,) * n_event)


class BernoulliLogLikelihood(Function):
    """log p(x | l) = sum over the last n_event axes of x l - softplus(l) (module docstring).
    Backward: dl = g (x - sigmoid(l)) (``BernoulliScore``), dx = g l."""

    def __init__(self, n_event):
        self.n_event = n_event

    @classmethod
    def name(cls):
        return "bernoulli_log_likelihood"

    def forward(self, logits, x):
        kernels = _kernels()
        self.layout = kernels.fast_layout(logits, x, self.n_event)
        if self.layout is not None:                        # one pass; the score recomputes exp(-|l|)
            self.e = None
            return kernels.bernoulli_log_likelihood_kernel(logits, x, self.n_event, self.layout)
        log_px, self.e = kernels.bernoulli_log_likelihood_xp(logits, x, self.n_event)   # keeps e = exp(-|l|)
        return log_px

    def backward(self, g):
        logits, x = self.inputs
        g_event = _expand(g, self.n_event)
        gl = (BernoulliScore(self.e, self.n_event, self.layout)(logits, x, g_event)
              if self.needs_input_grad[0] else None)
        gx = _sum_to(g_event * logits, x) if self.needs_input_grad[1] else None
        return gl, gx


class BernoulliScore(Function):
    """s = g (x - sigmoid(l)), the gradient of log p(x | l) w.r.t. l for an incoming g
    (broadcast to l's shape): the kernel's one pass, or the twin's from the forward's
    e = exp(-|l|):

        sigmoid(l) = |e / (1 + e) - [l >= 0]|

    Backward (engine ops): d/dl = -g sigmoid(l) (1 - sigmoid(l)) ds, d/dx = g ds,
    d/dg = (x - sigmoid(l)) ds, each summed back to its input's shape."""

    def __init__(self, e, n_event, layout):
        self.e, self.n_event, self.layout = e, n_event, layout

    @classmethod
    def name(cls):
        return "bernoulli_score"

    def forward(self, logits, x, g):
        kernels = _kernels()
        if self.layout is not None:
            return kernels.bernoulli_score_kernel(logits, x, g, self.n_event, self.layout)
        return kernels.bernoulli_score_xp(logits, x, g, self.e)

    def backward(self, ds):
        logits, x, g = self.inputs
        need = self.needs_input_grad
        p = sigmoid(logits) if need[0] or need[2] else None
        gl = _sum_to(-(g * p * (1 - p) * ds), logits) if need[0] else None
        gx = _sum_to(g * ds, x) if need[1] else None
        gg = _sum_to((x - p) * ds, g) if need[2] else None
        return gl, gx, gg


def bernoulli_log_likelihood(logits, x, n_event=1):
    """log p(x | logits) = sum over the last ``n_event`` axes of x l - softplus(l), one value
    per leading index of ``logits`` (module docstring); x in [0, 1] must broadcast to the
    logits' shape and is cast to their dtype."""
    if not isinstance(logits, Tensor):
        raise TypeError(f"bernoulli_log_likelihood: logits must be a Tensor, got {type(logits).__name__}")
    if not backend.is_floating(logits.dtype):
        raise TypeError(f"bernoulli_log_likelihood: logits must be floating, got dtype {logits.dtype}")
    if isinstance(n_event, bool) or not isinstance(n_event, int) or not 0 <= n_event <= logits.ndim:
        raise ValueError(f"bernoulli_log_likelihood: n_event must be an int in [0, {logits.ndim}] (the logits "
                         f"have shape {logits.shape}), got {n_event!r}")
    if not isinstance(x, Tensor):
        x = Tensor(backend.as_array(x, dtype=logits.dtype, device=logits.device))
    if x.dtype != logits.dtype:
        x = Tensor(x.data.astype(logits.dtype)) if not x.requires_grad else x.astype(logits.dtype)
    try:
        fits = tuple(backend.broadcast_shapes(x.shape, logits.shape)) == tuple(logits.shape)
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(f"bernoulli_log_likelihood: x of shape {x.shape} must broadcast to the logits' shape "
                         f"{logits.shape}")
    return BernoulliLogLikelihood(n_event)(logits, x)
