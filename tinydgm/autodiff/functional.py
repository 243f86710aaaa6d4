"""Every differentiable op of the engine, as functions: ``F.exp(x)``, ``F.matmul(a, b)``.

The ops live in a handful of modules grouped by kind, each op's forward and backward
side by side:

    elementwise.py  arithmetic, math functions, activations, stable fused ops, comparisons
    reduce.py       sum, mean, var, max, min, logsumexp, softmax, log_softmax, cumsum
    shape.py        reshape, transpose, broadcasting, concatenate/stack/split, flip, pad, indexing
    linalg.py       matmul (with batch dimensions), einsum
    conv_ops.py     conv2d, conv_transpose2d, pooling, nearest upsampling (im2col)
    nade_ops.py     nade_logits: NADE's hidden layer as one op (Numba kernels)
"""
from tinydgm.autodiff.elementwise import *  # noqa: F401,F403
from tinydgm.autodiff.reduce import *  # noqa: F401,F403
from tinydgm.autodiff.shape import *  # noqa: F401,F403
from tinydgm.autodiff.linalg import *  # noqa: F401,F403
from tinydgm.autodiff.conv_ops import *  # noqa: F401,F403
from tinydgm.autodiff.nade_ops import *  # noqa: F401,F403

# Ops that are also Tensor methods: x.exp(), x.sum(axis=0), x.reshape(2, -1), ...
TENSOR_METHODS = (
    "abs", "exp", "log", "log1p", "expm1", "sqrt", "square", "sin", "cos", "tanh",
    "sigmoid", "log_sigmoid", "softplus", "relu", "leaky_relu", "elu", "clip", "astype",
    "sum", "mean", "var", "max", "min", "logsumexp", "softmax", "log_softmax", "cumsum",
    "reshape", "transpose", "expand_dims", "squeeze", "broadcast_to", "flip", "sum_to",
)
