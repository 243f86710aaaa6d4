"""Data transforms and the seeded minibatch iterator.

Two kinds, by where they run:

Dataset side (NumPy arrays in, NumPy arrays out; applied to raw pixels before a batch
becomes a Tensor):
    dynamic_binarize(x, rng)      x ~ Bernoulli(pixel / 255), fresh draws each call
    scale_to_unit(x)              pixels -> [0, 1]
    scale_to_symmetric(x)         pixels -> [-1, 1]
    batches(x, batch_size, rng)   seeded minibatches (arrays or tuples of arrays)

Model side (Tensors in, Tensors out, engine ops, so gradients and log-determinants flow
through them; NumPy/CuPy arrays are accepted and wrapped as constant Tensors):
    logit_transform(x, alpha)          y = logit(alpha + (1 - 2 alpha) x), with log|det dy/dx|
    inverse_logit_transform(y, alpha)  its inverse, with log|det dx/dy|
    symmetric_to_unit(y)               [-1, 1] -> [0, 1] (e.g. tanh outputs for plotting)

Both sides:
    uniform_dequantize(x, rng)    (x + u) / 256, u ~ U[0, 1): NumPy pixels give a NumPy
                                  array; a Tensor gives a Tensor (noise drawn on the CPU
                                  generator and moved to x's device).

Pixel convention: integer arrays hold 8-bit values 0..255; floating arrays hold values
already in [0, 1]. Randomness comes from an explicit NumPy Generator (or an int seed;
None means the process-wide generator that ``td.seed`` resets).
"""
import math
import numbers

import numpy as np

from tinydgm import backend
from tinydgm.autodiff.core import Tensor, as_tensor
from tinydgm.autodiff import functional as F

__all__ = ["as_generator", "dynamic_binarize", "uniform_dequantize", "scale_to_unit",
           "scale_to_symmetric", "symmetric_to_unit", "logit_transform",
           "inverse_logit_transform", "batches", "n_batches"]


def as_generator(rng):
    """A NumPy Generator from ``rng``: a Generator (returned as is), an int seed, or None
    (the process-wide default generator, reseeded by ``td.seed``)."""
    if rng is None:
        return backend.default_generator()
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, numbers.Integral) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise TypeError(f"rng must be a numpy.random.Generator, an int seed or None, got {type(rng).__name__}")


# ----------------------------------------------------------------------------- dataset side

def _unit_pixels(x, who):
    """Pixels as float64 in [0, 1]: integers 0..255 are divided by 255; floats must be in [0, 1]."""
    x = np.asarray(x)
    if x.dtype.kind in "ui":
        if x.size and (x.min() < 0 or x.max() > 255):
            raise ValueError(f"{who}: integer pixels must lie in 0..255, got range "
                             f"[{x.min()}, {x.max()}]")
        return x / 255.0
    if x.dtype.kind == "f":
        if x.size and not (x.min() >= 0 and x.max() <= 1):        # also catches NaN
            raise ValueError(f"{who}: floating pixels must lie in [0, 1], got range "
                             f"[{x.min()}, {x.max()}]")
        return x.astype(np.float64)
    raise TypeError(f"{who}: expected integer pixels (0..255) or floats in [0, 1], got dtype {x.dtype}")


def _float_dtype(dtype):
    dtype = backend.get_default_dtype() if dtype is None else np.dtype(dtype)
    if dtype.kind != "f":
        raise ValueError(f"expected a floating dtype, got {dtype}")
    return dtype


def dynamic_binarize(x, rng=None, dtype=np.uint8):
    """Dynamic binarization: a fresh binary image per call, b ~ Bernoulli(p), p = pixel / 255
    (for integer pixels) or p = x (for floats in [0, 1]).

    Re-drawn every epoch, it acts as a regulariser (Salakhutdinov & Murray 2008 used one
    fixed draw: that is statically binarized MNIST, ``load_binarized_mnist``). Returns
    {0, 1} values of ``dtype`` (uint8, like the static set, by default), same shape as x.
    """
    p = _unit_pixels(x, "dynamic_binarize")
    return (as_generator(rng).random(p.shape) < p).astype(dtype)


def scale_to_unit(x, dtype=None):
    """Pixels 0..255 -> x / 255 in [0, 1] (floats in [0, 1] are only cast), default float dtype."""
    return _unit_pixels(x, "scale_to_unit").astype(_float_dtype(dtype))


def scale_to_symmetric(x, dtype=None):
    """Pixels 0..255 -> 2 x / 255 - 1 in [-1, 1] (floats in [0, 1]: 2 x - 1), default float dtype."""
    return (2 * _unit_pixels(x, "scale_to_symmetric") - 1).astype(_float_dtype(dtype))


def uniform_dequantize(x, rng=None, dtype=None):
    """Uniform dequantization of 8-bit pixels: y = (x + u) / 256, u ~ U[0, 1)^D.

    y lies in bin k's interval [k/256, (k+1)/256) for pixel value k, so a continuous density
    p(y) on [0, 1]^D gives a lower bound on the discrete model (Theis et al. 2016):
        log P(x) >= E_u[ log p((x + u) / 256) ] - D log 256.
    NumPy input: integer pixels 0..255 in, array of ``dtype`` (default float dtype) out.
    Tensor input: a floating Tensor of pixel values 0..255 in, Tensor out (engine ops; u is
    drawn on the CPU generator and moved to x's device).
    """
    rng = as_generator(rng)
    if isinstance(x, Tensor):
        if not backend.is_floating(x.dtype):
            raise TypeError(f"uniform_dequantize: a Tensor input must be floating (pixel values "
                            f"0..255), got dtype {x.dtype}")
        u = backend.as_array(rng.random(x.shape), dtype=x.dtype, device=x.device)
        return (x + Tensor(u)) / 256
    x = np.asarray(x)
    if x.dtype.kind not in "ui":
        raise TypeError(f"uniform_dequantize: expected integer pixels 0..255, got dtype {x.dtype}")
    if x.size and (x.min() < 0 or x.max() > 255):
        raise ValueError(f"uniform_dequantize: pixels must lie in 0..255, got range [{x.min()}, {x.max()}]")
    dtype = _float_dtype(dtype)
    k = x.astype(np.float64)                                  # (uint8 255 + 1 would wrap to 0)
    y = ((k + rng.random(x.shape)) / 256).astype(dtype)
    # rounding to float32 may land (k + u)/256 on the next bin's edge (k+1)/256: stay below it
    upper = np.nextafter(((k + 1) / 256).astype(dtype), dtype.type(0))
    return np.minimum(y, upper)


def n_batches(n, batch_size, drop_last=False):
    """How many minibatches ``batches`` yields for n examples."""
    return n // batch_size if drop_last else -(-n // batch_size)


def batches(x, batch_size, rng=None, shuffle=True, drop_last=False):
    """Yield one epoch of minibatches of ``x`` (an array, or a tuple of arrays of equal length
    whose rows belong together, e.g. ``(images, labels)``), in a seeded random order.

    Every index appears exactly once per epoch (the last batch is smaller unless
    ``drop_last``). ``rng``: a Generator (advanced, so successive epochs differ), an int
    seed, or None (the default generator). With ``shuffle=False`` the order is 0..n-1 and
    the batches are views.
    """
    is_tuple = isinstance(x, (tuple, list))
    arrays = tuple(x) if is_tuple else (x,)
    if not arrays:
        raise ValueError("batches: x is an empty tuple; pass an array or a tuple of arrays")
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"batches: batch_size must be a positive integer, got {batch_size!r}")
    lengths = [len(a) for a in arrays]
    if len(set(lengths)) != 1:
        raise ValueError(f"batches: all arrays must have the same length (first dimension), "
                         f"got lengths {lengths}")
    return _batches(arrays, is_tuple, lengths[0], int(batch_size),
                    as_generator(rng) if shuffle else None, drop_last)


def _batches(arrays, is_tuple, n, batch_size, rng, drop_last):
    order = rng.permutation(n) if rng is not None else None
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        if drop_last and stop - start < batch_size:
            return
        index = slice(start, stop) if order is None else order[start:stop]
        batch = tuple(a[index] for a in arrays)
        yield batch if is_tuple else batch[0]


# ----------------------------------------------------------------------------- model side

def _as_float_tensor(x, who):
    x = as_tensor(x)
    if not backend.is_floating(x.dtype):
        raise TypeError(f"{who}: expected a floating Tensor, got dtype {x.dtype}")
    if x.ndim < 1:
        raise ValueError(f"{who}: expected a batch (N, ...), got a 0-d tensor")
    return x


def _check_alpha(alpha, who):
    if not 0 <= alpha < 0.5:
        raise ValueError(f"{who}: alpha must lie in [0, 0.5), got {alpha!r}")


def _per_example(t):
    """Sum over every axis but the batch axis: (N, ...) -> (N,)."""
    return t.reshape(t.shape[0], -1).sum(axis=1)


def logit_transform(x, alpha=0.05):
    """The logit transform of RealNVP (Dinh et al. 2017, sec. 4.1), x in [0, 1] (dequantized
    pixels) to the real line:

        p = alpha + (1 - 2 alpha) x,    y = logit(p) = log p - log(1 - p),
        log|det dy/dx| = sum_d [ log(1 - 2 alpha) - log p_d - log(1 - p_d) ]   (per example).

    alpha keeps p away from 0 and 1 (alpha = 0.05 as in RealNVP; RealNVP's reported
    bits/dim also count the 1/256 dequantization scaling: see ``uniform_dequantize``).
    Returns (y, log_det) with log_det of shape (N,); differentiable in x.
    """
    _check_alpha(alpha, "logit_transform")
    x = _as_float_tensor(x, "logit_transform")
    if x.size:
        low, high = float(x.data.min()), float(x.data.max())
        if not (low >= 0 and high <= 1):
            raise ValueError(f"logit_transform: x must lie in [0, 1] (dequantized pixels), "
                             f"got range [{low:.6g}, {high:.6g}]")
    p = alpha + (1 - 2 * alpha) * x
    log_p, log_1mp = F.log(p), F.log1p(-p)
    y = log_p - log_1mp
    log_det = _per_example(math.log(1 - 2 * alpha) - log_p - log_1mp)
    return y, log_det


def inverse_logit_transform(y, alpha=0.05):
    """Inverse of ``logit_transform``: x = (sigmoid(y) - alpha) / (1 - 2 alpha), with

        log|det dx/dy| = sum_d [ log sigmoid(y_d) + log sigmoid(-y_d) - log(1 - 2 alpha) ]
    (= minus the forward log-det at x; log_sigmoid keeps it finite for large |y|).
    Returns (x, log_det) with log_det of shape (N,).
    """
    _check_alpha(alpha, "inverse_logit_transform")
    y = _as_float_tensor(y, "inverse_logit_transform")
    x = (F.sigmoid(y) - alpha) / (1 - 2 * alpha)
    log_det = _per_example(F.log_sigmoid(y) + F.log_sigmoid(-y) - math.log(1 - 2 * alpha))
    return x, log_det


def symmetric_to_unit(y):
    """[-1, 1] -> [0, 1]: (y + 1) / 2 (Tensors or arrays), e.g. tanh samples before plotting."""
    return (y + 1) / 2
