"""sigmoid(z) = 1 / (1 + exp(-z)) for Numba loops, in a form LLVM vectorizes.

Numba compiles ``math.exp`` to one call of the C library per element (no SIMD without
Intel's SVML, which is not a dependency): about 5-9 ns per float32 element here, while
NumPy's SIMD ``exp`` costs about 1 ns. A Numba loop that needs millions of sigmoids (the
NADE history vector, 39M hidden units per batch) would spend most of its time there.

So ``sigmoid`` dispatches on the argument's type when a kernel is compiled:

- float32: exp(-|z|) from the Cephes ``expf`` scheme, written with plain arithmetic so
  the loop around it is vectorized (about 0.3 ns per element):

      -|z| = n ln2 + r,   n = round(-|z| / ln2),   |r| <= ln2 / 2
      exp(r) ~ 1 + r + r^2 p(r)       (p: the degree-5 Cephes polynomial)
      exp(-|z|) = exp(r) 2^n          (2^n built from its IEEE bits: (n + 127) << 23)

  then sigmoid(z) = 1 / (1 + e) for z >= 0 and e / (1 + e) for z < 0, e = exp(-|z|) <= 1
  (never overflows). Relative error within 3e-7 (2-3 float32 ulps) of the float64 sigmoid
  wherever sigmoid(z) >= 1e-37; for z < -87 it returns 0 (the true value is below 1.7e-38),
  as NumPy's float32 1 / (1 + exp(-z)) does. NaN stays NaN.
- float64 (and anything else): the exact two-branch form with ``math.exp``; the gradient
  checks run in float64, so they see the exact function.

Call it from ``numba.njit`` code only (``sigmoid_array`` applies it to an array, for the tests
and as an example). ``exp_minus_abs`` is its first half, exp(-|z|), on the same dispatch (the
Bernoulli log-likelihood kernels need it for softplus too).
"""
import math

import numba
import numpy as np
from numba import types
from numba.extending import overload

__all__ = ["sigmoid", "sigmoid_array", "exp_minus_abs"]

# Cephes expf: ln 2 split into a part exact in float32 and the remainder; the polynomial
# p(r) with exp(r) = 1 + r + r^2 p(r) on |r| <= ln2 / 2.
_LOG2E = np.float32(1.4426950408889634)
_LN2_HI = np.float32(0.693359375)
_LN2_LO = np.float32(-2.12194440e-4)
_P = tuple(np.float32(c) for c in (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3,
                                   4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1))
_LOWEST = np.float32(-87.0)     # below this, 2^n would leave the normal float32 range
_ONE, _HALF, _ZERO = np.float32(1.0), np.float32(0.5), np.float32(0.0)


def sigmoid(z):
    """sigmoid(z) of a float scalar; usable inside ``numba.njit`` functions only."""
    raise TypeError("tinydgm.kernels.sigmoid.sigmoid is compiled into Numba kernels; call it from "
                    "numba.njit code (or use sigmoid_array on an array)")


def exp_minus_abs(z):
    """exp(-|z|) of a float scalar, in (0, 1]; usable inside ``numba.njit`` functions only (float32:
    the vectorizable Cephes scheme of the module docstring, 0 below -87; float64: ``math.exp``)."""
    raise TypeError("tinydgm.kernels.sigmoid.exp_minus_abs is compiled into Numba kernels; call it from "
                    "numba.njit code")


def _exp_minus_abs_float32(z):
    minus_abs = min(z, -z)                                    # -|z| (NaN stays NaN)
    clamped = max(minus_abs, _LOWEST)
    n = np.int32(clamped * _LOG2E - _HALF)                    # round(-|z| / ln2): truncation of a value <= -0.5
    n_f = np.float32(n)
    r = clamped - n_f * _LN2_HI - n_f * _LN2_LO               # -|z| - n ln2, in two parts for accuracy
    p = _P[0]
    p = p * r + _P[1]
    p = p * r + _P[2]
    p = p * r + _P[3]
    p = p * r + _P[4]
    p = p * r + _P[5]
    two_n = np.int32((n + 127) << 23).view(np.float32)       # 2^n from its exponent bits
    e = (p * r * r + r + _ONE) * two_n                        # exp(-|z|)
    return _ZERO if minus_abs < _LOWEST else e                # (NaN compares False: stays NaN)


def _exp_minus_abs_exact(z):
    return math.exp(-abs(z))


def _sigmoid_float32(z):
    e = exp_minus_abs(z)
    s = _ONE / (_ONE + e)
    return s if z >= _ZERO else e * s                         # sigmoid(z), or sigmoid(-|z|) = e / (1 + e)


def _sigmoid_exact(z):
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    t = math.exp(z)
    return t / (1.0 + t)


@overload(exp_minus_abs, jit_options={"error_model": "numpy", "fastmath": {"reassoc", "contract", "nsz", "arcp"}})
def _exp_minus_abs_overload(z):
    if z == types.float32:
        return _exp_minus_abs_float32
    return _exp_minus_abs_exact


@overload(sigmoid, jit_options={"error_model": "numpy", "fastmath": {"reassoc", "contract", "nsz", "arcp"}})
def _sigmoid_overload(z):
    if z == types.float32:
        return _sigmoid_float32
    return _sigmoid_exact


@numba.njit(cache=True, error_model="numpy", fastmath={"reassoc", "contract", "nsz", "arcp"})
def _sigmoid_loop(a, out):
    for i in range(a.size):
        out[i] = sigmoid(a[i])


def map_entries(loop, a, who):
    """out = loop over every entry of the float32 or float64 NumPy array a (``loop(a_flat, out_flat)``,
    a compiled loop of one of the kernels' scalar functions); ``who`` names the caller in the error."""
    a = np.ascontiguousarray(a)
    if a.dtype not in (np.float32, np.float64):
        raise TypeError(f"{who}: the array must be float32 or float64, got dtype {a.dtype}")
    out = np.empty_like(a)
    loop(a.reshape(-1), out.reshape(-1))
    return out


def sigmoid_array(a):
    """sigmoid of every entry of a float32 or float64 NumPy array, by the kernels' ``sigmoid``."""
    return map_entries(_sigmoid_loop, a, "sigmoid_array")
