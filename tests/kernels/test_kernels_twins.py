"""The serial and parallel builds of a kernel body keep separate on-disk cache entries (Numba
would otherwise load one build's machine code for the other: see tinydgm/kernels/twins.py)."""
import os
import subprocess
import sys
import textwrap

import pytest

from tinydgm.kernels import gibbs, mh, nade_sampler

_PROBE = textwrap.dedent("""
    import sys
    import numba
    import numpy as np
    from tinydgm.kernels.twins import serial_and_parallel

    def body(x):
        s = 0.0
        for i in numba.prange(x.shape[0]):
            s += x[i]
        return s

    serial, parallel = serial_and_parallel(body, cache=True)
    kernel = serial if sys.argv[1] == "serial" else parallel
    assert kernel(np.ones(10)) == 10.0
    print(sum(kernel.stats.cache_hits.values()), sum(kernel.stats.cache_misses.values()))
""")


def _run(which, cache_dir, script):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir))
    out = subprocess.run([sys.executable, str(script), which], env=env, capture_output=True, text=True, check=True)
    hits, misses = (int(v) for v in out.stdout.split())
    return hits, misses


def test_parallel_build_does_not_load_the_serial_builds_cache(tmp_path):
    script = tmp_path / "probe.py"
    script.write_text(_PROBE)
    cache = tmp_path / "cache"
    assert _run("serial", cache, script) == (0, 1)        # compiled and written
    assert _run("parallel", cache, script) == (0, 1)      # its own entry: compiled, not loaded
    assert _run("serial", cache, script) == (1, 0)        # both entries now load
    assert _run("parallel", cache, script) == (1, 0)


@pytest.mark.parametrize("serial,parallel", [
    (gibbs._gibbs_serial, gibbs._gibbs_parallel),
    (mh._mh_serial, mh._mh_parallel),
    (mh._mh_binary_serial, mh._mh_binary_parallel),
    (nade_sampler._nade_serial, nade_sampler._nade_parallel),
])
def test_kernel_twins_are_built_apart(serial, parallel):
    assert parallel.targetoptions.get("parallel") and not serial.targetoptions.get("parallel")
    assert parallel.py_func.__qualname__ == serial.py_func.__qualname__ + "_parallel"
    assert parallel.py_func.__code__ is serial.py_func.__code__          # one body, two builds
