"""Array backends: NumPy on the CPU, CuPy on CUDA.

This is the only module of tinydgm that names ``numpy`` for tensor data. Everything
else asks the data which array module it lives in::

    xp = get_array_module(x)        # numpy or cupy
    y = xp.exp(x)

so the same code runs on both devices. CuPy is optional: without it, asking for the
"cuda" device raises an error that says how to install it.

The "cuda" device can also be served by ``tinydgm.standin``, a strict CuPy stand-in on
NumPy that refuses every implicit trip to the host (``TINYDGM_CUDA_STANDIN=1`` in the
environment, or ``with cuda_standin():``): the test suite runs the CUDA path on it.

Also here: the default floating dtype (float32, switchable to float64 for checks) and
seeded random number generators (``rng(seed)``) that give the same draws for the same
seed on the CPU.
"""
import contextlib
import os

import numpy

from tinydgm import standin

DEVICES = ("cpu", "cuda")
_CUPY_HINT = ('CuPy is not installed: install the wheel that matches your CUDA toolkit, '
              'e.g. pip install -e ".[cuda12]" or pip install -e ".[cuda13]"')

try:  # CuPy is an optional extra
    import cupy
except Exception:  # ImportError, or a CUDA library missing at import time
    cupy = None


_standin_on = os.environ.get("TINYDGM_CUDA_STANDIN", "0") not in ("", "0")


def cuda_standin_active():
    """True while the "cuda" device is served by the CuPy stand-in (tinydgm.standin)."""
    return _standin_on


@contextlib.contextmanager
def cuda_standin(active=True):
    """Serve the "cuda" device by the CuPy stand-in (or not) inside the block."""
    global _standin_on
    old, _standin_on = _standin_on, bool(active)
    try:
        yield standin.cupy
    finally:
        _standin_on = old


def cuda_available():
    """True when CuPy imports and sees at least one CUDA device (a real GPU; the
    stand-in does not count)."""
    if cupy is None:
        return False
    try:
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def _require_cupy():
    if _standin_on:
        return standin.cupy
    if cupy is None:
        raise RuntimeError(f'device "cuda" requested but {_CUPY_HINT}')
    if not cuda_available():
        raise RuntimeError('device "cuda" requested but CuPy finds no CUDA device on this machine')
    return cupy


# ----------------------------------------------------------------------------- modules

def get_array_module(*arrays):
    """The array module (numpy or cupy) of the given arrays or Tensors.

    Mirrors ``cupy.get_array_module``: numpy unless one of the arguments is a CuPy array
    (or a stand-in device array). A Tensor is read through its ``.data``; an array's own
    ``.data`` is not (on CuPy it is a memory pointer).
    """
    for a in arrays:
        if type(a) is numpy.ndarray:
            continue
        if not is_array(a):
            a = getattr(a, "data", a)
        if type(a) is standin.ndarray:
            return standin.cupy
        if cupy is not None and isinstance(a, cupy.ndarray):
            return cupy
    return numpy


def xp_of(array):
    """Fast path of ``get_array_module`` for one backend array (the ops' hot path)."""
    return numpy if type(array) is numpy.ndarray else get_array_module(array)


def module_for_device(device):
    """numpy for "cpu", cupy for "cuda" (the stand-in's namespace while it is active)."""
    device = check_device(device)
    return numpy if device == "cpu" else _require_cupy()


def check_device(device):
    """Validate a device name; None means "cpu"."""
    if device is None:
        return "cpu"
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    return device


def device_of(array):
    """"cpu" for NumPy arrays (and scalars), "cuda" for CuPy (and stand-in) arrays."""
    if type(array) is standin.ndarray or (cupy is not None and isinstance(array, cupy.ndarray)):
        return "cuda"
    return "cpu"


ARRAY_TYPES = (numpy.ndarray, standin.ndarray) + (() if cupy is None else (cupy.ndarray,))


def ensure_array(value, kind=numpy.ndarray):
    """Wrap a NumPy scalar (what NumPy returns for 0-d results) back into a 0-d array."""
    if kind is standin.ndarray:
        return standin.cupy.asarray(value)
    if cupy is not None and kind is cupy.ndarray:
        return cupy.asarray(value)
    return numpy.asarray(value)


def scalar_array(value, like):
    """A 0-d array holding the Python number ``value``, in ``like``'s dtype when that is
    floating (so float32 stays float32) and on its device."""
    dtype = like.dtype if like.dtype.kind == "f" else None
    if type(like) is numpy.ndarray:
        return numpy.array(value, dtype=dtype)
    return get_array_module(like).asarray(value, dtype=dtype)


def ones_like(array):
    return get_array_module(array).ones_like(array)


def zeros(shape, dtype, like):
    """Zeros of ``shape`` and ``dtype`` on the device of the array ``like``."""
    return get_array_module(like).zeros(shape, dtype=dtype)


def is_array(obj):
    """True for a backend array (numpy.ndarray, cupy.ndarray or the stand-in's)."""
    return isinstance(obj, ARRAY_TYPES)


def to_device(array, device):
    """Copy (if needed) ``array`` to ``device``."""
    device = check_device(device)
    if device == "cpu":
        return to_numpy(array)
    cp = _require_cupy()
    return cp.asarray(array)


def to_numpy(array):
    """A NumPy copy of a backend array (a no-op for NumPy arrays)."""
    if type(array) is standin.ndarray:
        return standin.asnumpy(array)
    if cupy is not None and isinstance(array, cupy.ndarray):
        return cupy.asnumpy(array)
    return numpy.asarray(array)


def as_array(data, dtype=None, device=None):
    """A backend array on ``device`` from array-like ``data``.

    Python floats and float lists get the default dtype (not float64), so that
    ``tensor([1.0, 2.0])`` is float32 unless the default was changed.
    """
    if device is None:
        device = device_of(data)
    xp = module_for_device(device)
    if dtype is None and not is_array(data):
        probe = numpy.asarray(to_numpy(data) if hasattr(data, "__cuda_array_interface__") else data)
        if probe.dtype.kind == "f":
            dtype = get_default_dtype()
    if device == "cuda":
        return xp.asarray(data, dtype=dtype)
    return numpy.asarray(to_numpy(data), dtype=dtype)


def scatter_add(xp, target, index, values):
    """In-place ``target[index] += values`` that adds repeated indices (unbuffered)."""
    if xp is numpy:
        numpy.add.at(target, index, values)
    elif xp is standin.cupy:
        standin.cupyx.scatter_add(target, index, values)
    else:
        import cupyx
        cupyx.scatter_add(target, index, values)
    return target


def broadcast_shapes(*shapes):
    """The shape that ``shapes`` broadcast to (NumPy's rule; shapes are not tensor data)."""
    return numpy.broadcast_shapes(*shapes)


def is_floating(dtype):
    """True for floating dtypes (the only ones that can carry gradients)."""
    return numpy.dtype(dtype).kind == "f"


# ----------------------------------------------------------------------------- dtype

_default_dtype = numpy.dtype(numpy.float32)


def get_default_dtype():
    """The dtype of new floating tensors (float32 unless changed)."""
    return _default_dtype


def set_default_dtype(dtype):
    """Set the dtype of new floating tensors: float32 or float64."""
    global _default_dtype
    dtype = numpy.dtype(dtype)
    if dtype not in (numpy.dtype(numpy.float32), numpy.dtype(numpy.float64)):
        raise ValueError(f"default dtype must be float32 or float64, got {dtype}")
    _default_dtype = dtype


@contextlib.contextmanager
def default_dtype(dtype):
    """Temporarily change the default floating dtype, e.g. ``with default_dtype("float64"):``."""
    old = get_default_dtype()
    set_default_dtype(dtype)
    try:
        yield
    finally:
        set_default_dtype(old)


# ----------------------------------------------------------------------------- randomness

_default_generator = numpy.random.default_rng(0)


def seed(value):
    """Reseed the default generator (used by layer initialisation and samplers when no
    generator is passed): ``td.seed(0)`` makes a whole script repeatable."""
    global _default_generator
    _default_generator = numpy.random.default_rng(value)


def default_generator():
    """The process-wide NumPy Generator behind ``seed``."""
    return _default_generator


def rng(seed=None, device="cpu"):
    """A seeded random Generator on ``device`` (numpy's PCG64 or cupy.random.Generator).

    The same seed gives the same draws on the CPU, whatever the thread count.
    """
    device = check_device(device)
    if device == "cpu":
        return numpy.random.default_rng(seed)
    return _require_cupy().random.default_rng(seed)
