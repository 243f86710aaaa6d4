"""Timing helpers shared by the benchmark scripts.

A benchmark here compares tinydgm with the tool a user would pick instead (PyTorch on
the CPU, scikit-learn, raw NumPy) **in one process**, both sides pinned to the same
number of threads. The machines we run on are small and noisy, so:

- every case is warmed up first (caches, lazy imports, allocator pools, BLAS buffers);
- the cases of one comparison are timed **interleaved** (A B C, A B C, ...), so a burst
  of noise from the neighbours hits every side alike, and each repeat gives a *paired*
  ratio;
- each sample times ``number`` back-to-back calls (chosen so a sample lasts at least
  ``min_sample_s``), and we report the **median** over repeats with the spread
  (interquartile range, min and max);
- the garbage collector is paused inside a sample, as ``timeit`` does (tinydgm frees
  its graphs by reference counting, so there are no cycles to collect).

These scripts are the only place where torch, threadpoolctl and scikit-learn are
imported: they are benchmark-only dependencies (``pip install -e ".[bench]"``).
"""
import gc
import os
import platform
import statistics
import sys
import time

import numpy as np

# ----------------------------------------------------------------------------- threads

_limiter = None     # keeps threadpoolctl's limits alive for the whole run


def pin_threads(n):
    """Pin NumPy's BLAS (and every OpenMP runtime threadpoolctl finds) and PyTorch to ``n``
    threads. Returns a description of what was pinned, for the report."""
    global _limiter
    from threadpoolctl import threadpool_limits
    _limiter = threadpool_limits(limits=n)
    pinned = {"threadpoolctl": n}
    if "torch" in sys.modules:
        import torch
        torch.set_num_threads(n)
        pinned["torch"] = torch.get_num_threads()
    return pinned


def blas_info():
    """The BLAS libraries threadpoolctl sees: [(prefix, kernel architecture, version, threads)]."""
    from threadpoolctl import threadpool_info
    return [(d.get("prefix"), d.get("architecture"), d.get("version"), d.get("num_threads"))
            for d in threadpool_info() if d.get("user_api") == "blas"]


# ----------------------------------------------------------------------------- machine

def cpu_model():
    """The CPU model name from /proc/cpuinfo (platform.processor() elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def usable_cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count()


THREAD_ENV_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
                   "MKL_NUM_THREADS", "MKL_DEBUG_CPU_TYPE", "MKL_ENABLE_INSTRUCTIONS")


def machine_info():
    """A dict describing the machine and library versions (for the report header)."""
    info = {
        "cpu": cpu_model(),
        "cores": usable_cores(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numpy BLAS": "; ".join(f"{p} {v} (kernel {a})" for p, a, v, _ in blas_info()[:1]) or "unknown",
        "env": {k: os.environ[k] for k in THREAD_ENV_VARS if k in os.environ},
    }
    if "torch" in sys.modules:
        import torch
        info["torch"] = torch.__version__
        cfg = torch.__config__.show()
        info["torch BLAS"] = "MKL" if "BLAS_INFO=mkl" in cfg else ("OpenBLAS" if "open" in cfg.lower() else "?")
        info["torch CPU capability"] = torch.backends.cpu.get_cpu_capability()
    return info


def machine_markdown(info, threads):
    env = ", ".join(f"{k}={v}" for k, v in info["env"].items()) or "none set"
    lines = [
        f"- CPU: {info['cpu']}, {info['cores']} usable cores; **{threads} threads** on every side",
        f"- Python {info['python']}, NumPy {info['numpy']} with {info['numpy BLAS']}",
    ]
    if "torch" in info:
        lines.append(f"- PyTorch {info['torch']} (CPU build, BLAS {info['torch BLAS']}, "
                     f"CPU capability {info['torch CPU capability']})")
    lines.append(f"- thread/BLAS environment variables: {env}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- timing

class Stats:
    """Per-call times (seconds) of one case over the repeats."""

    def __init__(self, times):
        self.raw = list(times)          # in repeat order, for paired ratios
        self.times = sorted(times)

    @property
    def median(self):
        return statistics.median(self.times)

    def quantile(self, q):
        t = self.times
        if len(t) == 1:
            return t[0]
        pos = q * (len(t) - 1)
        lo = int(pos)
        hi = min(lo + 1, len(t) - 1)
        return t[lo] + (t[hi] - t[lo]) * (pos - lo)

    @property
    def iqr(self):
        return self.quantile(0.25), self.quantile(0.75)

    @property
    def min(self):
        return self.times[0]

    @property
    def max(self):
        return self.times[-1]


def _time_once(fn, number):
    gc_was_on = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        for _ in range(number):
            fn()
        return (time.perf_counter() - start) / number
    finally:
        if gc_was_on:
            gc.enable()


def calibrate(fn, min_sample_s):
    """How many back-to-back calls of ``fn`` make a sample of at least ``min_sample_s``."""
    number = 1
    while True:
        t = _time_once(fn, number) * number
        if t >= min_sample_s or number >= 1 << 20:
            return number
        number = max(number * 2, int(number * min_sample_s / max(t, 1e-9) * 1.2))


def compare(cases, repeats=15, warmup=3, min_sample_s=0.02):
    """Time the callables of ``cases`` ({name: fn}) interleaved.

    Returns ({name: Stats of the per-call time}, {name: number of calls per sample}).
    The order inside each round rotates, so no case always runs right after another.
    """
    names = list(cases)
    for name in names:
        for _ in range(warmup):
            cases[name]()
    numbers = {name: calibrate(cases[name], min_sample_s) for name in names}
    samples = {name: [] for name in names}
    for r in range(repeats):
        gc.collect()
        k = r % len(names)
        for name in names[k:] + names[:k]:
            samples[name].append(_time_once(cases[name], numbers[name]))
    return {name: Stats(samples[name]) for name in names}, numbers


def paired_ratio(a, b):
    """Median and (min, max) of the per-repeat ratios a/b of two interleaved cases."""
    ratios = sorted(x / y for x, y in zip(a.raw, b.raw))
    return statistics.median(ratios), (ratios[0], ratios[-1])


# ----------------------------------------------------------------------------- formatting

def fmt_time(seconds):
    """A time in the most readable unit: 12.3 µs, 4.56 ms, 1.23 s."""
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def fmt_stats(stats):
    """``median [q1–q3]``."""
    q1, q3 = stats.iqr
    return f"{fmt_time(stats.median)} [{fmt_time(q1)}–{fmt_time(q3)}]"


def markdown_table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)
