"""A serial and a parallel build of one kernel body, each with its own on-disk cache entry.

Several kernels run the same loop either on one thread or split over the chains with
``prange`` (``parallel=True``), and choose at the call. Numba names a function's cache files
after its qualified name and line, and does not tell ``parallel=True`` apart when it loads
them: two builds of the same Python function with ``cache=True`` load each other's machine
code (measured: after the serial build was cached, the "parallel" build of a fresh process
was a cache hit, and ran the serial code). So the parallel build compiles a copy of the body
renamed with a ``_parallel`` suffix, whose cache entry is its own.
"""
import types

import numba

__all__ = ["serial_and_parallel"]


def _renamed(fn, suffix):
    """The same code, globals and defaults under the name fn.__name__ + suffix."""
    copy = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + suffix, fn.__defaults__, fn.__closure__)
    copy.__qualname__ = fn.__qualname__ + suffix
    copy.__doc__, copy.__module__ = fn.__doc__, fn.__module__
    return copy


def serial_and_parallel(body, **options):
    """(serial, parallel): ``numba.njit(**options)(body)`` and the ``parallel=True`` build of a
    renamed copy of body (see the module docstring)."""
    return numba.njit(**options)(body), numba.njit(parallel=True, **options)(_renamed(body, "_parallel"))
