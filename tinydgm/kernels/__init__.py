"""Numba kernels for the loops autodiff cannot make fast, each with a plain vectorized
``xp`` twin that serves CuPy and is the reference the kernel is tested against.

Kernels work on NumPy arrays by design (this package is exempt from the backend rule that
code outside ``backend.py`` must not call NumPy on tensor data); the dispatching function
of each kernel picks the twin for CuPy arrays.
"""

from tinydgm.threads import apply_environment as _apply_thread_environment

_apply_thread_environment()      # TINYDGM_NUM_THREADS, if set (see tinydgm/threads.py)
