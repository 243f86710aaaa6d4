"""How many threads tinydgm's numerical work uses: one number for BLAS and Numba together.

tinydgm computes with two thread pools: the BLAS library behind NumPy's matrix products
(OpenBLAS in NumPy's wheels) and Numba's pool for the kernels in ``tinydgm.kernels``. Both
start one thread per core, both split each call statically over their threads, and
OpenBLAS's and GNU OpenMP's idle threads spin for a while before they sleep. That is fast on a
quiet machine and slow on a busy one: when another process keeps a core busy, every
matrix product waits for the thread that shares the busy core, a whole time slice at a
time (benchmarks/bench_threads.py measures it).

The policy:

- ``tinydgm.set_num_threads(n)`` sets both pools to n threads (BLAS through ``threadpoolctl``,
  Numba through ``numba.set_num_threads``), once, for the whole process;
  ``tinydgm.num_threads(n)`` does the same inside a ``with`` block only.
- At import nothing is changed: the libraries' defaults (one thread per core) stay, unless
  the environment variable ``TINYDGM_NUM_THREADS`` is set; then ``set_num_threads`` is
  applied with it on the first use of tinydgm's kernels or of this module.
- On a machine shared with other CPU-bound work (a laptop running other jobs, a CI runner, a
  server with neighbours), use ONE thread: ``tinydgm.set_num_threads(1)`` or
  ``TINYDGM_NUM_THREADS=1``. One thread never waits for another, so a busy neighbour costs
  at most its share of the core instead of a stall per call. On an idle machine keep the
  default: two threads are up to 2x faster where the work is large (GEMMs, the NADE op).

``threadpoolctl`` is a dependency (a small pure-Python package; scikit-learn depends on it
as well). Without it ``set_num_threads`` still sets Numba and says that BLAS was left alone.
"""
import contextlib
import os
import warnings

__all__ = ["set_num_threads", "get_num_threads", "num_threads", "thread_info"]

ENV_VAR = "TINYDGM_NUM_THREADS"
_blas_limiter = None         # threadpoolctl's handle: the process-wide BLAS limit stays while it lives


def _check(n, who):
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"{who}: n must be a positive int (threads), got {n!r}")


def _numba_max():
    import numba
    return numba.config.NUMBA_NUM_THREADS


def set_num_threads(n):
    """Use n threads for BLAS and for Numba kernels from now on (Numba: at most its pool size,
    ``NUMBA_NUM_THREADS``, the number of cores by default). Returns ``thread_info()``."""
    global _blas_limiter
    _check(n, "set_num_threads")
    import numba
    numba.set_num_threads(min(n, _numba_max()))
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        warnings.warn("tinydgm.set_num_threads: threadpoolctl is not installed, so the BLAS threads were not "
                      "changed (pip install threadpoolctl)", RuntimeWarning, stacklevel=2)
    else:
        if _blas_limiter is not None:
            _blas_limiter.restore_original_limits()
        _blas_limiter = threadpool_limits(limits=n, user_api="blas")
    return thread_info()


def get_num_threads():
    """The Numba threads the kernels use now (BLAS follows ``set_num_threads``; see ``thread_info``)."""
    import numba
    return numba.get_num_threads()


@contextlib.contextmanager
def num_threads(n):
    """``with tinydgm.num_threads(1): ...``: n threads for BLAS and Numba inside the block only."""
    _check(n, "num_threads")
    import numba
    old = numba.get_num_threads()
    numba.set_num_threads(min(n, _numba_max()))
    try:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            limiter = contextlib.nullcontext()
        else:
            limiter = threadpool_limits(limits=n, user_api="blas")
        with limiter:
            yield
    finally:
        numba.set_num_threads(old)


def thread_info():
    """{"numba": threads now, "numba_pool": pool size, "blas": [(library, threads)] or None without threadpoolctl}."""
    import numba
    info = {"numba": numba.get_num_threads(), "numba_pool": _numba_max(), "blas": None}
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return info
    info["blas"] = [(d.get("internal_api"), d.get("num_threads")) for d in threadpool_info() if d.get("user_api") == "blas"]
    return info


def apply_environment():
    """``set_num_threads(int($TINYDGM_NUM_THREADS))`` when the variable is set (a clear error if it is not
    a positive int); nothing otherwise. Called on the first use of tinydgm's kernels."""
    value = os.environ.get(ENV_VAR)
    if value is None or value == "":
        return
    try:
        n = int(value)
    except ValueError:
        raise ValueError(f"{ENV_VAR} must be a positive int (threads), got {value!r}") from None
    set_num_threads(n)
