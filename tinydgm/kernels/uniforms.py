"""Uniform random numbers for the samplers' kernels, drawn by a seeded NumPy Generator.

The kernels take their random numbers as inputs (docs/architecture.md: the same seed gives the same
chains with any thread count, and the Numba path equals its xp twin). Drawing them can cost
as much as the sampling itself: a block Gibbs sweep of 100 chains of a 784 x 500 RBM needs
128k uniforms, and NumPy's ``Generator.random(dtype=float32)`` spends one 64-bit draw of the
bit generator per float32 number (0.23 ms on this project's 2-core machine, a quarter of the
sweep's two matrix products).

``uniform(rng, shape, "float32")`` spends each 64-bit draw on TWO float32 uniforms. NumPy's
float64 uniform is d = (w >> 11) / 2^53 for a 64-bit draw w of its 64-bit bit generators (PCG64,
the default, Philox, SFC64; MT19937 builds the 53 bits from two 32-bit draws): 53 random bits.
Its top 24 bits and the next 24 bits are two independent uniforms on the grid
{0, ..., 2^24 - 1} / 2^24:

    u_1 = floor(2^24 d) / 2^24                        (bits 63..40 of w)
    u_2 = floor(2^24 (2^24 d - floor(2^24 d))) / 2^24  (bits 39..16 of w)

exact in float64 and exactly representable in float32; 24 bits is also the resolution of
NumPy's own float32 ``random``. Half the draws: 0.14 ms + a 0.02 ms split for the sweep above.

Hot loops pass ``out`` (and the float64 draws go to a reused per-thread scratch array): on
this project's machine a fresh array of half a megabyte costs ~0.2 ms of page faults on first
touch, as much as drawing its numbers.
"""
import threading

import numba
import numpy as np

from tinydgm import backend

__all__ = ["uniform", "split_float64_uniforms", "split_float64_uniforms_xp"]

_TWO24 = float(1 << 24)
_SCRATCH = threading.local()


@numba.njit(cache=True, error_model="numpy")
def _split_kernel(d, out):
    """out[2k], out[2k + 1] = the top and next 24 bits of the float64 uniform d[k], as float32."""
    n = out.shape[0]
    for k in range((n + 1) // 2):
        x = d[k] * _TWO24
        high = np.floor(x)
        out[2 * k] = np.float32(high / _TWO24)
        if 2 * k + 1 < n:
            out[2 * k + 1] = np.float32(np.floor((x - high) * _TWO24) / _TWO24)


def split_float64_uniforms(d, n):
    """The n float32 uniforms carried by the float64 uniforms d ((n + 1) // 2 of them), Numba."""
    out = np.empty(n, np.float32)
    _split_kernel(np.ascontiguousarray(d, dtype=np.float64).reshape(-1), out)
    return out


def split_float64_uniforms_xp(d, n):
    """The twin of ``split_float64_uniforms`` in array operations (NumPy or CuPy)."""
    xp = backend.get_array_module(d)
    x = d.reshape(-1) * _TWO24
    high = xp.floor(x)
    low = xp.floor((x - high) * _TWO24)
    return (xp.stack([high, low], axis=1).reshape(-1)[:n] / _TWO24).astype(xp.float32)


def _scratch(m):
    buf = getattr(_SCRATCH, "d", None)
    if buf is None or buf.shape[0] < m:
        buf = _SCRATCH.d = np.empty(max(m, 2 * (0 if buf is None else buf.shape[0])))
    return buf[:m]


def uniform(rng, shape, dtype="float32", out=None):
    """Uniforms on [0, 1) of the given shape and dtype from the NumPy Generator ``rng``:
    float32 two per 64-bit draw (module docstring), float64 ``rng.random``. out: a
    C-contiguous array of that shape and dtype to fill (returned)."""
    if not isinstance(rng, np.random.Generator):          # e.g. a CuPy generator: these draws are host-side
        raise TypeError(f"uniform: rng must be a NumPy Generator (the draws are made on the CPU and moved to "
                        f"the device), got {type(rng).__module__}.{type(rng).__name__}")
    dtype = np.dtype(dtype)
    shape = (int(shape),) if np.ndim(shape) == 0 else tuple(int(s) for s in shape)
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"uniform: dtype must be float32 or float64, got {dtype}")
    if out is None:
        out = np.empty(shape, dtype)
    elif out.shape != shape or out.dtype != dtype or not out.flags.c_contiguous:
        raise ValueError(f"uniform: out must be a C-contiguous {dtype} array of shape {shape}, got "
                         f"{out.dtype} {out.shape}{'' if out.flags.c_contiguous else ' (not contiguous)'}")
    if dtype == np.float64:
        return rng.random(out=out)
    n = out.size
    d = _scratch((n + 1) // 2)
    rng.random(out=d)
    _split_kernel(d, out.reshape(-1))
    return out
