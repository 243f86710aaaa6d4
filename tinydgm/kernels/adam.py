"""The Adam update (Kingma & Ba 2015, Algorithm 1) as one fused pass over a parameter.

    m <- beta1 m + (1 - beta1) g
    v <- beta2 v + (1 - beta2) g^2
    p <- p - lr * m_hat / (sqrt(v_hat) + eps),   m_hat = m / (1 - beta1^t),  v_hat = v / (1 - beta2^t)

Weight decay: ``decoupled=False`` adds ``weight_decay * p`` to g first (L2, Adam);
``decoupled=True`` shrinks p by ``lr * weight_decay * p`` (AdamW, Loshchilov & Hutter 2019).

NumPy's version of this update makes about a dozen passes over each parameter, each
allocating or streaming the whole array; the Numba kernel makes one. It runs on one
thread on purpose: in a training step it follows BLAS calls whose worker threads are still
spinning, and a parallel (OpenMP) kernel fighting them for 2 cores was 3x slower overall
than this serial pass (about 0.25 ms for 785k float32 parameters here; with Numba's default
"python" error model, each division checks for zero and the loop is not vectorized: 8x slower). ``adam_update_xp`` is the vectorized twin (CuPy, non-contiguous arrays, and the
reference in the tests).
"""
import math

import numba
import numpy as np


@numba.njit(cache=True, error_model="numpy")   # IEEE division (no ZeroDivisionError check): lets LLVM vectorize
def _adam_kernel(p, g, m, v, beta1, one_minus_beta1, beta2, one_minus_beta2, step_size, eps_hat,
                 l2, shrink):
    """One pass: p -= step_size * m / (sqrt(v) + eps_hat), the bias corrections folded into
    step_size = lr sqrt(1 - beta2^t) / (1 - beta1^t) and eps_hat = eps sqrt(1 - beta2^t)
    (algebraically the update above). Scalars come in the arrays' dtype so that float32
    parameters are updated in float32 arithmetic."""
    for i in range(p.size):
        gi = g[i] + l2 * p[i]
        mi = beta1 * m[i] + one_minus_beta1 * gi
        vi = beta2 * v[i] + one_minus_beta2 * gi * gi
        m[i] = mi
        v[i] = vi
        p[i] = p[i] * shrink - step_size * mi / (math.sqrt(vi) + eps_hat)


def adam_update_xp(p, g, m, v, lr, beta1, beta2, eps, t, weight_decay=0.0, decoupled=False):
    """The vectorized twin: the same update with array operations, in place."""
    if weight_decay and not decoupled:
        g = g + weight_decay * p
    m *= beta1
    m += (1 - beta1) * g
    v *= beta2
    v += (1 - beta2) * (g * g)
    m_hat = m / (1 - beta1 ** t)
    v_hat = v / (1 - beta2 ** t)
    step = lr * m_hat / ((v_hat ** 0.5) + eps)
    if weight_decay and decoupled:
        step += lr * weight_decay * p
    p -= step.astype(p.dtype, copy=False)


def adam_update(p, g, m, v, lr, beta1, beta2, eps, t, weight_decay=0.0, decoupled=False):
    """Update parameter ``p`` and moments ``m``, ``v`` in place (step number ``t`` >= 1).

    Runs the fused Numba kernel for contiguous NumPy arrays of one dtype, else the twin.
    """
    if t < 1:
        raise ValueError(f"adam_update: step t must be >= 1, got {t}")
    arrays = (p, g, m, v)
    if all(type(a) is np.ndarray and a.flags.c_contiguous and a.dtype == p.dtype for a in arrays):
        scalar = p.dtype.type
        root_bias2 = math.sqrt(1.0 - beta2 ** t)
        l2 = weight_decay if not decoupled else 0.0
        shrink = 1.0 - lr * weight_decay if decoupled else 1.0
        _adam_kernel(p.reshape(-1), g.reshape(-1), m.reshape(-1), v.reshape(-1),
                     scalar(beta1), scalar(1.0 - beta1), scalar(beta2), scalar(1.0 - beta2),
                     scalar(lr * root_bias2 / (1.0 - beta1 ** t)), scalar(eps * root_bias2),
                     scalar(l2), scalar(shrink))
    else:
        adam_update_xp(p, g, m, v, lr, beta1, beta2, eps, t, weight_decay, decoupled)
